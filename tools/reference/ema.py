"""EMAU from XiaLiPKU/EMANet (network.py), K=64 bases, 3 stages, with the moving average of
the bases that its train.py applies after each training step (momentum 0.9). network.py
imports a synchronised BN and a settings module; plain BatchNorm2d and the values they need
are given here."""
import os
import sys
import types

import torch

import common

REPO = "XiaLiPKU/EMANet"
FILE = "network.py"


def _load(src):
    settings = types.ModuleType("settings")
    settings.BN_MOM, settings.STRIDE, settings.STAGE_NUM, settings.EM_MOM = 3e-4, 8, 3, 0.9
    sys.modules["settings"] = settings
    for name in ("bn_lib", "bn_lib.nn"):
        sys.modules[name] = types.ModuleType(name)
    modules = types.ModuleType("bn_lib.nn.modules")
    modules.SynchronizedBatchNorm2d = torch.nn.BatchNorm2d
    sys.modules["bn_lib.nn.modules"] = modules
    sys.path.insert(0, src)
    return common.import_file(os.path.join(src, FILE), "ref_ema")


class Block(torch.nn.Module):
    """EMAU returns (x, mu); the block is x."""

    def __init__(self, emau):
        super().__init__()
        self.emau = emau

    def forward(self, x):
        return self.emau(x)[0]


def build(src, channels):
    return Block(_load(src).EMAU(channels, 64, 3))


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    emau = _load(src).EMAU(16, 8, 3).double()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    tensors = {"x": x}
    tensors.update({k: v.clone() for k, v in emau.state_dict().items() if "num_batches" not in k})
    emau.eval()
    with torch.no_grad():
        tensors["y_eval"] = emau(x)[0]
        emau.train()
        y, mu = emau(x)
        tensors["y_train"] = y
        mu = mu.mean(dim=0, keepdim=True)  # train.py's moving average
        tensors["mu_after_train_step"] = emau.mu * 0.9 + mu * (1 - 0.9)
    return f"{repo_at_commit} {FILE} (moving average from train.py)", tensors
