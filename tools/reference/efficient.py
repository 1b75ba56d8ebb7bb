"""EfficientAttention from cmsflash/efficient-attention (efficient_attention.py), with our
block's defaults: key and value widths C/2, 2 heads."""
import os

import torch

import common

REPO = "cmsflash/efficient-attention"
FILE = "efficient_attention.py"


def build(src, channels):
    module = common.import_file(os.path.join(src, FILE), "ref_efficient")
    return module.EfficientAttention(channels, channels // 2, 2, channels // 2)


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    net = build(src, 16).double()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
    tensors = {"x": x, "y": y}
    tensors.update(net.state_dict())
    return f"{repo_at_commit} {FILE}", tensors
