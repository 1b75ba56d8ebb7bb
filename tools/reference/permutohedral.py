"""Permutohedral Attention Module from SamuelJoutard/Permutohedral_attention_module: the pure
PyTorch lattice of PAM/ (PL_with_grad_torch_HT.py with HashTable_GPU.py, the version the
paper used; PAM_cuda/ needs a compiled CUDA hash-table kernel).

That code is CUDA-only by construction (.cuda() and torch.cuda.*Tensor everywhere). Here its
modules see a `torch` whose float tensor types are CPU ones (float64 for the fixture, built
under a float64 default dtype since its buffers come from torch.zeros; float32 for `build`)
and whose devices are the CPU; tensors' .cuda() is the identity and tqdm is stubbed. Its hash
table has 2^24 slots instead of 2^30, because its rank lookup densifies a table-sized vector
3(d+1) times per call: the fixture checks that no two lattice keys it looks up share a slot,
so there the smaller table changes nothing (at benchmark sizes a few vertices may merge, as
they rarely do in the original).
The module is 3D ([B, C, X, Y, Z], three coordinate channels); a 2D map is fed as Z = 1,
whose coordinate is 0 everywhere, so the third coordinate column of conv_feat and the third
spatial scale multiply zero and are left out of the weights we copy.
"""
import os
import sys
import types

import numpy as np
import torch

import common

REPO = "SamuelJoutard/Permutohedral_attention_module"
FILES = ("PAM/HashTable_GPU.py", "PAM/PL_with_grad_torch_HT.py", "PAM/PAM.py")
TABLE_SIZE = 2**24


class _CpuTorch:
    """torch as the reference sees it: its float tensor types are CPU ones of `float_type`."""

    def __init__(self, float_type):
        self.FloatTensor = float_type
        self.device = lambda name: torch.device("cpu")
        self.cuda = types.SimpleNamespace(FloatTensor=float_type, DoubleTensor=torch.DoubleTensor,
                                          LongTensor=torch.LongTensor, IntTensor=torch.IntTensor)

    def __getattr__(self, name):
        return getattr(torch, name)


def _load(src, float_type):
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    sys.modules.setdefault("tqdm", types.SimpleNamespace(tqdm=lambda it: it))
    cpu = _CpuTorch(float_type)
    table = common.import_file(os.path.join(src, FILES[0]), "HashTable_GPU")
    table.torch = cpu
    lattice = common.import_file(os.path.join(src, FILES[1]), "PL_with_grad_torch_HT")
    lattice.torch = cpu
    lattice.HashTable = lambda n_ch, dtype, size: table.HashTable(n_ch, dtype, TABLE_SIZE)
    pam = common.import_file(os.path.join(src, FILES[2]), "ref_pam")
    pam.torch = cpu
    return lattice, pam


def _check_no_slot_collision(feat):
    """Every key the reference hashes (simplex vertices and their blur neighbours) must own
    its slot of the smaller table, else its lookups would merge distinct vertices."""
    n = feat.size(1)
    scale = np.sqrt(2 / 3.0) * (n + 1)
    # The same elevation and simplices as the reference, to list the keys it will hash.
    basis = np.zeros((n + 1, n))
    for j in range(1, n + 1):
        basis[:j, j - 1] = 1
        basis[j, j - 1] = -j
        basis[:, j - 1] /= np.sqrt(j * (j + 1))
    keys = set()
    for p in feat.permute(0, 2, 1).reshape(-1, n).numpy():
        e = scale * basis @ p
        v = np.round(e / (n + 1))
        rem0 = v * (n + 1)
        rank = np.argsort(np.argsort(-(e - rem0))) + int(v.sum())
        rem0 = rem0 + (n + 1) * ((rank < 0).astype(int) - (rank > n).astype(int))
        rank = rank + (n + 1) * ((rank < 0).astype(int) - (rank > n).astype(int))
        for k in range(n + 1):
            vertex = rem0 + np.where(rank <= n - k, k, k - (n + 1))
            for j in range(n + 1):
                step = -np.ones(n + 1)
                step[j] = n
                for key in (vertex, vertex + step, vertex - step):
                    keys.add(tuple(int(x) for x in key[:n]))
    base = np.floor(np.power(np.iinfo(np.int64).max, 1.0 / (n + 2)))
    weights = np.power(base, np.arange(1, n + 1))
    slots = {int(np.sum(np.array(key) * weights)) % TABLE_SIZE for key in keys}
    assert len(slots) == len(keys), "hash slots collide; change the seed or TABLE_SIZE"


class Pam2d(torch.nn.Module):
    """The reference PAM on a 2D map: [B, C, H, W] → [B, C, H, W] through Z = 1, one sample
    at a time: the reference hashes a whole batch into one table, so vertices that only
    another sample occupies would carry this sample's blur (ours builds a lattice per sample)."""

    def __init__(self, pam):
        super().__init__()
        self.pam = pam

    def forward(self, x):
        return torch.cat([self.pam(x[b:b + 1].unsqueeze(-1)).squeeze(-1) for b in range(x.size(0))])


def build(src, channels):
    # The reference networks use filt_f = out_f = in_f / 2 with two splits; filt_f is capped
    # at our default filter_dim of 8, since a C/2-dimensional lattice is unaffordable at C=512.
    _, pam = _load(src, torch.FloatTensor)
    return Pam2d(pam.PAM(channels, 8, channels // 2, 2))


def _normalized(pl, feat, desc):
    """The reference lattice with a homogeneous channel of ones: Σ_j K_ij v_j / Σ_j K_ij."""
    out = pl(feat, torch.cat([desc, torch.ones_like(desc[:, :1])], 1))
    return out[:, :-1] / out[:, -1:]


def _pam_normalized(pl, pam, x):
    """PAM.forward with each split's filtering normalised as above (x: [B, C, H, W, 1])."""
    a, _, c, d, e = x.shape
    gx, gy, gz = torch.meshgrid(torch.arange(c), torch.arange(d), torch.arange(e), indexing="ij")
    spatial = torch.stack([gx - c // 2, gy - d // 2, gz - e // 2], 0).unsqueeze(0).repeat(a, 1, 1, 1, 1)
    spatial = spatial.double() * pam.scaling_spatial
    feat = torch.nn.functional.leaky_relu(pam.conv_feat(torch.cat([x, spatial], 1))).reshape(a, -1, c * d * e)
    desc = pam.conv_desc(x).reshape(a, -1, c * d * e)
    f, o = pam.filt_f, pam.out_f
    out = torch.cat([_normalized(pl, feat[:, k * f:(k + 1) * f], desc[:, k * o:(k + 1) * o])
                     for k in range(pam.n_split)], 1)
    return out.reshape(a, -1, c, d, e), feat


def fixture(src, repo_at_commit):
    # Its buffers are made with torch.zeros(...).cuda(), in the default dtype.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _fixture(src, repo_at_commit)
    finally:
        torch.set_default_dtype(default)


def _fixture(src, repo_at_commit):
    lattice, pam_module = _load(src, torch.DoubleTensor)
    pl = lattice.PermutohedralLattice.apply
    tensors = {}

    # The lattice alone: self-filtering of 4-d positions, its output and both gradients.
    torch.manual_seed(0)
    feat = (1.5 * torch.randn(1, 4, 40, dtype=torch.float64)).requires_grad_()
    desc = torch.randn(1, 3, 40, dtype=torch.float64).requires_grad_()
    _check_no_slot_collision(feat.detach())
    out = pl(feat, desc)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    tensors.update({"lattice.feat": feat, "lattice.desc": desc, "lattice.out": out, "lattice.grad_out": g,
                    "lattice.grad_feat": feat.grad, "lattice.grad_desc": desc.grad})
    with torch.no_grad():
        tensors["lattice.out_normalized"] = _normalized(pl, feat, desc)

    # The whole module on a 5×7 map, C=8: filt_f = out_f = 4, two splits (d = 4 per split).
    torch.manual_seed(1)
    pam = pam_module.PAM(8, 4, 4, 2).double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        y = Pam2d(pam)(x)
        y_normalized, positions = zip(*[_pam_normalized(pl, pam, x[b:b + 1].unsqueeze(-1)) for b in range(2)])
        y_normalized, positions = torch.cat(y_normalized), torch.cat(positions)
    for b in range(2):
        for split in range(2):
            _check_no_slot_collision(positions[b:b + 1, 4 * split:4 * (split + 1)])
    tensors.update({"x": x, "y": y, "y_normalized": y_normalized.squeeze(-1),
                    "conv_feat.weight": pam.conv_feat.weight[:, :10].detach(),
                    "conv_feat.bias": pam.conv_feat.bias.detach(),
                    "conv_desc.weight": pam.conv_desc.weight.detach(), "conv_desc.bias": pam.conv_desc.bias.detach(),
                    "scaling_spatial": pam.scaling_spatial[:, :2].detach()})
    return f"{repo_at_commit} {' '.join(FILES)}", tensors
