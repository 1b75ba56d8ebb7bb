"""AxialAttention from lucidrains/axial-attention (axial_attention/axial_attention.py) on
[B, C, H, W] (dim_index 1), 8 heads, sum_axial_out=False, plus AxialPositionalEmbedding and
the residual of its AxialImageTransformer, as our block. The package's reversible module is
not needed and is stubbed."""
import os
import sys
import types

import torch

import common

REPO = "lucidrains/axial-attention"
FILE = "axial_attention/axial_attention.py"


def _load(src):
    rev = types.ModuleType("axial_attention.reversible")
    rev.ReversibleSequence = None
    sys.modules.setdefault("axial_attention", types.ModuleType("axial_attention"))
    sys.modules["axial_attention.reversible"] = rev
    return common.import_file(os.path.join(src, FILE), "ref_axial")


class Block(torch.nn.Module):
    """The reference's embedding has a fixed shape; for timing at several sizes one embedding
    per input size is made on first use (in the warm-up runs)."""

    def __init__(self, module, channels, size):
        super().__init__()
        self.module, self.channels = module, channels
        self.pos = module.AxialPositionalEmbedding(channels, size, 1)
        self.other_sizes = {}
        self.attention = module.AxialAttention(channels, 2, heads=8, dim_index=1, sum_axial_out=False)

    def forward(self, x):
        size = tuple(x.shape[2:])
        if size != tuple(self.pos.param_0.shape[2:3] + self.pos.param_1.shape[3:4]):
            if size not in self.other_sizes:
                self.other_sizes[size] = self.module.AxialPositionalEmbedding(self.channels, size, 1).to(x.dtype)
            x = self.other_sizes[size](x)
        else:
            x = self.pos(x)
        x = x + self.attention.axial_attentions[0](x)
        return x + self.attention.axial_attentions[1](x)


def build(src, channels, size=(32, 64)):
    return Block(_load(src), channels, size)


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    net = build(src, 16, (5, 7)).double()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        tensors = {"x": x, "y": net(x), "height_only": net.attention.axial_attentions[0](x),
                   "width_only": net.attention.axial_attentions[1](x)}
    tensors.update(net.state_dict())
    return f"{repo_at_commit} {FILE}", tensors
