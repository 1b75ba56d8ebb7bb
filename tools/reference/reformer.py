"""Reformer's LSH attention from lucidrains/reformer-pytorch (reformer_pytorch/reformer_pytorch.py,
LSHAttention): shared QK, random rotations, chunks attending to themselves and the previous
chunk, rounds combined by their logsumexps. Only LSHAttention is used; the file's imports of
other packages (einops, local_attention, ...) serve other classes and are stubbed. Its
rotations come from torch.randn inside hash_vectors; that call is given fixed rotations, stored
with the fixture, so the C++ core can hash with the same ones."""
import os

import torch

import common

REPO = "lucidrains/reformer-pytorch"
FILE = "reformer_pytorch/reformer_pytorch.py"


def _load(src):
    common.stub_modules({
        "local_attention": {"LocalAttention": None},
        "axial_positional_embedding": {"AxialPositionalEmbedding": None},
        "product_key_memory": {"PKM": None},
        "reformer_pytorch": {},
        "reformer_pytorch.reversible": {"ReversibleSequence": None},
        "einops": {"rearrange": None, "repeat": None},
    })
    return common.import_file(os.path.join(src, FILE), "ref_reformer")


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    batch_heads, n, d, bucket_size, n_hashes = 6, 48, 5, 8, 3
    n_buckets = n // bucket_size  # the reference's choice: one bucket per chunk
    qk = torch.randn(batch_heads, n, d, dtype=torch.float64)
    v = torch.randn(batch_heads, n, d, dtype=torch.float64)  # the reference needs dv = d
    rotations = torch.randn(d, n_hashes, n_buckets // 2, dtype=torch.float64)
    attention = _load(src).LSHAttention(bucket_size=bucket_size, n_hashes=n_hashes, causal=False)
    randn = torch.randn
    torch.randn = lambda shape, dtype=None, device=None: rotations.unsqueeze(0).to(dtype)
    try:
        with torch.no_grad():
            out, _, buckets = attention(qk, v)
    finally:
        torch.randn = randn
    # The reference offsets round r's buckets by r·n_buckets; stored per round, [BH, rounds, N].
    offsets = (torch.arange(n_hashes) * n_buckets).view(1, n_hashes, 1)
    buckets = buckets.view(batch_heads, n_hashes, n) - offsets
    tensors = {"qk": qk, "v": v, "rotations": rotations, "buckets": buckets.to(torch.float64), "out": out}
    return f"{repo_at_commit} {FILE}", tensors


def build(src, channels, heads=4, bucket_size=32, n_hashes=2):
    """LSHAttention (bucket_size 32, 2 hash rounds: our defaults; its buckets follow N as ours
    do) with shared query-key projections, on the feature map as our token host runs ours."""
    import sequence

    lsh = _load(src).LSHAttention(dropout=0.0, bucket_size=bucket_size, n_hashes=n_hashes)

    def core(q, k, v):
        b, h, n, d = q.shape
        return lsh(q.reshape(b * h, n, d), v.reshape(b * h, n, d))[0].view(b, h, n, d)

    layer = sequence.HeadsLayer(channels, heads, core, shared_qk=True)
    layer.lsh = lsh  # registered, so that eval() reaches it
    return sequence.OnFeatureMap(channels, layer)
