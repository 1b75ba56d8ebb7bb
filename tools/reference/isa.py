"""ISA_Block from openseg-group/openseg.pytorch (lib/models/modules/isa_block.py), the
authors' code: key channels C/2, value and output channels C, down factor 8×8 (4×4 and odd
sizes for the fixture). Its ModuleHelper.BNReLU is BatchNorm2d followed by ReLU."""
import os
import sys
import types

import torch

import common

REPO = "openseg-group/openseg.pytorch"
FILE = "lib/models/modules/isa_block.py"


def _load(src):
    helper = types.ModuleType("lib.models.tools.module_helper")

    class ModuleHelper:
        @staticmethod
        def BNReLU(channels, bn_type=None):
            return torch.nn.Sequential(torch.nn.BatchNorm2d(channels), torch.nn.ReLU())

    helper.ModuleHelper = ModuleHelper
    for name in ("lib", "lib.models", "lib.models.tools"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["lib.models.tools.module_helper"] = helper
    return common.import_file(os.path.join(src, FILE), "ref_isa")


class Block(torch.nn.Module):
    def __init__(self, isa):
        super().__init__()
        self.isa = isa

    def forward(self, x):
        return x + self.isa(x)


def build(src, channels):
    return Block(_load(src).ISA_Block(channels, channels // 2, channels, channels, [8, 8]))


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    isa = _load(src).ISA_Block(8, 4, 8, 8, [4, 4]).double().eval()
    with torch.no_grad():  # non-trivial BN statistics so the eval path is exercised
        for m in isa.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    x = torch.randn(2, 8, 9, 11, dtype=torch.float64)  # padded to 12×12
    with torch.no_grad():
        y = isa(x)
    tensors = {"x": x, "y": y}
    tensors.update({k: v for k, v in isa.state_dict().items() if "num_batches" not in k})
    return f"{repo_at_commit} {FILE}", tensors
