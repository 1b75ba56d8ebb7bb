"""Clustered and improved-clustered attention from idiap/fast-transformers, the paper's own code.
Its hashing, Hamming k-means, aggregation and top-k products are C++ extensions: they are
compiled here once with torch.utils.cpp_extension (under TORCH_EXTENSIONS_DIR, by default
~/.cache/torch_extensions, at a path fixed by each source's content) and registered under the names the package imports, so that its
Python modules run unchanged.

The fixture runs both forms in float32 (the extensions' only type) on fixed q, k, v with fixed
hyperplanes (its `normal_` draw replaced) and the k-means started from the tokens at
floor(i·L/C), the start attnseg uses (its random choice replaced): the rest, bits, Lloyd
iterations, grouping, the attention per centroid and the top-k correction, is its code."""
import hashlib
import os
import sys

import numpy as np
import torch

import common
import sequence

REPO = "idiap/fast-transformers"
FILE = "fast_transformers/attention/clustered_attention.py"

# module name → source, as fast-transformers' setup.py builds them for the CPU
_EXTENSIONS = {
    "hashing.hash_cpu": "hashing/hash_cpu.cpp",
    "aggregate.aggregate_cpu": "aggregate/aggregate_cpu.cpp",
    "clustering.hamming.cluster_cpu": "clustering/hamming/cluster_cpu.cpp",
    "sparse_product.sparse_product_cpu": "sparse_product/sparse_product_cpu.cpp",
    "sparse_product.clustered_sparse_product_cpu": "sparse_product/clustered_sparse_product_cpu.cpp",
}


def _load(src):
    from torch.utils import cpp_extension

    root = os.path.join(src, "fast_transformers")
    cache = os.environ.get("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions"))
    for name, source in _EXTENSIONS.items():
        full = f"fast_transformers.{name}"
        if full in sys.modules:
            continue
        # The export is a new directory each run: build from a copy at a path fixed by the
        # source's content, so that a second run loads the library instead of compiling again.
        with open(os.path.join(root, source), "rb") as f:
            text = f.read()
        stable = os.path.join(cache, "attnseg-fast-transformers", hashlib.sha1(text).hexdigest()[:16])
        os.makedirs(stable, exist_ok=True)
        copy = os.path.join(stable, os.path.basename(source))
        if not os.path.isfile(copy):
            with open(copy + ".part", "wb") as f:
                f.write(text)
            os.replace(copy + ".part", copy)
        sys.modules[full] = cpp_extension.load(
            name="ft_" + name.replace(".", "_"), sources=[copy], build_directory=stable,
            extra_cflags=["-fopenmp", "-ffast-math"], extra_ldflags=["-fopenmp"], verbose=False)
    clustered = sequence.fast_transformers(src, "attention.clustered_attention")
    improved = sequence.fast_transformers(src, "attention.improved_clustered_attention")
    return clustered, improved


def _evenly_spaced_start(module):
    """Replaces the module's k-means entry with one that starts from the tokens at floor(i·L/C)."""
    cluster = module.cluster

    def start_at_evenly_spaced(hashes, lengths, clusters=30, iterations=10, bits=32, **kwargs):
        length = hashes.shape[2]
        start = [i * length // clusters for i in range(clusters)]
        return cluster(hashes, lengths, centroids=hashes[:, :, start].contiguous(),
                       iterations=iterations, bits=bits)

    module.cluster = start_at_evenly_spaced


def _fixed_planes(module, planes):
    module.normal_ = lambda t: t.copy_(planes)


def fixture(src, repo_at_commit):
    clustered, improved = _load(src)
    masking = sequence.fast_transformers(src, "masking")
    torch.manual_seed(0)
    b, h, n, d, clusters, bits, iterations, topk = 2, 3, 37, 6, 5, 16, 10, 7
    q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
    planes = torch.randn(bits, d + 1)
    lengths = masking.LengthMask(torch.full((b,), n, dtype=torch.int64), max_len=n)
    mask = masking.FullMask(n)
    out = {"q": q, "k": k, "v": v, "planes": planes}
    for key, module, attention in (
            ("y", clustered, clustered.ClusteredAttention(clusters, iterations, bits)),
            ("y_improved", improved,
             improved.ImprovedClusteredAttention(clusters, iterations, bits, topk=topk))):
        _evenly_spaced_start(module)
        _fixed_planes(module, planes)
        attention.eval()
        with torch.no_grad():
            # fast-transformers' layout is [B, N, heads, d]
            y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, lengths, lengths)
            again = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, lengths, lengths)
        # An empty cluster is refilled from std::random_device: make sure none was.
        assert torch.equal(y, again), "the reference's k-means met an empty cluster: change the seed"
        out[key] = y.transpose(1, 2).contiguous()
    return (f"{repo_at_commit} {FILE} (ClusteredAttention; improved_clustered_attention.py "
            f"ImprovedClusteredAttention, topk={topk}), C={clusters}, bits={bits}, {iterations} iterations",
            out)


def build(src, channels, heads=4, clusters=32, iterations=10, bits=32):
    """ClusteredAttention with our defaults (32 clusters, 32 bits, 10 Lloyd iterations) in its
    AttentionLayer with 4 heads, in eval mode."""
    clustered, _ = _load(src)
    np.random.seed(0)
    attention = clustered.ClusteredAttention(clusters, iterations, bits)
    return sequence.OnFeatureMap(channels, sequence.FastTransformersLayer(src, attention, channels, heads))
