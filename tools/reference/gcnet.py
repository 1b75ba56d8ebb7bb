"""ContextBlock from xvjiarui/GCNet (mmdet/ops/gcb/context_block.py), pooling 'att', fusion
'channel_add', ratio 1/4. It imports mmcv only for two initialisers; those are given here."""
import os
import sys
import types

import torch

import common

REPO = "xvjiarui/GCNet"
FILE = "mmdet/ops/gcb/context_block.py"


def _load(src):
    cnn = types.ModuleType("mmcv.cnn")

    def constant_init(module, val, bias=0):
        torch.nn.init.constant_(module.weight, val)
        if getattr(module, "bias", None) is not None:
            torch.nn.init.constant_(module.bias, bias)

    def kaiming_init(module, mode="fan_out", nonlinearity="relu", bias=0, distribution="normal"):
        torch.nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity=nonlinearity)
        if getattr(module, "bias", None) is not None:
            torch.nn.init.constant_(module.bias, bias)

    cnn.constant_init, cnn.kaiming_init = constant_init, kaiming_init
    sys.modules.setdefault("mmcv", types.ModuleType("mmcv"))
    sys.modules["mmcv.cnn"] = cnn
    return common.import_file(os.path.join(src, FILE), "ref_gcnet")


def build(src, channels):
    return _load(src).ContextBlock(channels, 0.25)


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    net = build(src, 16).double()
    with torch.no_grad():  # leave the identity start so the output depends on every weight
        for p in net.channel_add_conv[3].parameters():
            p.normal_()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
    tensors = {"x": x, "y": y}
    tensors.update(net.state_dict())
    return f"{repo_at_commit} {FILE}", tensors
