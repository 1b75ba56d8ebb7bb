"""CCNet's criss-cross attention from speedinghzl/CCNet (cc_attention/functions.py, the
pure-PyTorch version). Its -inf diagonal mask is built with .cuda(); the same mask is built on
the input's device instead."""
import os

import torch

import common

REPO = "speedinghzl/CCNet"
FILE = "cc_attention/functions.py"


def _load(src):
    module = common.import_file(os.path.join(src, FILE), "ref_ccnet")

    def cpu_inf(b, h, w):
        return -torch.diag(torch.tensor(float("inf")).repeat(h), 0).unsqueeze(0).repeat(b * w, 1, 1)

    module.INF = cpu_inf
    return module


class Recurrent(torch.nn.Module):
    """RCCAModule's loop: the same criss-cross module applied `recurrence` times."""

    def __init__(self, cca, recurrence):
        super().__init__()
        self.cca, self.recurrence = cca, recurrence

    def forward(self, x):
        for _ in range(self.recurrence):
            x = self.cca(x)
        return x


def build(src, channels):
    return Recurrent(_load(src).CrissCrossAttention(channels), 2)


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    cca = _load(src).CrissCrossAttention(16)
    cca.INF = _load(src).INF
    with torch.no_grad():
        cca.gamma.fill_(0.7)
    net = Recurrent(cca, 2).double()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
    tensors = {"x": x, "y": y}
    tensors.update({k: v for k, v in cca.state_dict().items()})
    return f"{repo_at_commit} {FILE}", tensors
