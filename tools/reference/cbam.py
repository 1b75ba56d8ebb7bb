"""CBAM from Jongchan/attention-module (MODELS/cbam.py), reduction 16, avg and max pooling.
Its BN is put in eval mode with random statistics so the fixture checks the affine path."""
import os

import torch

import common

REPO = "Jongchan/attention-module"
FILE = "MODELS/cbam.py"


def build(src, channels):
    return common.import_file(os.path.join(src, FILE), "ref_cbam").CBAM(channels, 16)


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    net = build(src, 32).double().eval()
    bn = net.SpatialGate.spatial.bn
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    x = torch.randn(2, 32, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
    tensors = {"x": x, "y": y}
    tensors.update({k: v for k, v in net.state_dict().items() if "num_batches" not in k})
    return f"{repo_at_commit} {FILE}", tensors
