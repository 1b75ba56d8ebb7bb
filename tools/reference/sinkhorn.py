"""SinkhornAttention from lucidrains/sinkhorn-transformer (sinkhorn_transformer/sinkhorn_transformer.py)
with its simple sort net (use_simple_sort_net=True: ReLU of the block sums times a learned
matrix, one column per block) and Sinkhorn normalisation (non_permutative=False), in float64 on
fixed inputs. Its Gumbel noise is drawn in every mode, so it is set to zero here (attnseg draws it
in training only). This path mixes every block by R (the dense R·blocks: attnseg's soft=true),
and it mixes the keys for the values too (b_v_r = b_k_r), so the fixture's values are its keys,
where that makes no difference. The file imports local_attention, axial_positional_embedding and
product_key_memory for parts this path does not use: empty stand-ins are given."""
import os

import torch

import common

REPO = "lucidrains/sinkhorn-transformer"
FILE = "sinkhorn_transformer/sinkhorn_transformer.py"


def _load(src):
    common.stub_modules({
        "local_attention": {"LocalAttention": object},
        "axial_positional_embedding": {"AxialPositionalEmbedding": object},
        "product_key_memory": {"PKM": object},
    })
    # The package without its __init__ (which imports the wrappers).
    common.package_without_init("sinkhorn_transformer", os.path.join(src, "sinkhorn_transformer"))
    ref = common.import_file(os.path.join(src, FILE), "ref_sinkhorn")
    ref.sample_gumbel = lambda shape, device, dtype, eps=1e-6: torch.zeros(shape, device=device, dtype=dtype)
    return ref


def fixture(src, repo_at_commit):
    ref = _load(src)
    torch.manual_seed(0)
    b, h, n, d, bucket = 2, 3, 35, 5, 7  # 5 blocks: an odd count
    q, k = (torch.randn(b, h, n, d, dtype=torch.float64) for _ in range(2))
    attention = ref.SinkhornAttention(bucket, h * d, d, h, n, temperature=0.75, non_permutative=False,
                                      sinkhorn_iter=5, use_simple_sort_net=True).double().eval()
    with torch.no_grad():
        r = attention.sort_net(q.reshape(b * h, n, d), k.reshape(b * h, n, d)).reshape(b, h, n // bucket, -1)
        y = attention(q, k, k)
    return f"{repo_at_commit} {FILE} (SinkhornAttention, simple sort net, no Gumbel noise)", {
        "q": q, "k": k, "weight": attention.sort_net.linear[0], "r": r, "y": y,
    }


def build_for(src, channels, height, width, heads=4, bucket_size=32):
    """SinkhornAttention with our defaults (buckets of 32, 5 Sinkhorn iterations, temperature
    0.75, the simple sort net); its sort net has one column per block of max_seq_len, so one is
    built per size. It mixes every block by the dense R (our soft=true), and its Gumbel noise
    is drawn in every mode."""
    import sequence

    attention = _load(src).SinkhornAttention(bucket_size, channels, channels // heads, heads, height * width,
                                             non_permutative=False, sinkhorn_iter=5, use_simple_sort_net=True)
    layer = sequence.HeadsLayer(channels, heads, attention)
    return sequence.OnFeatureMap(channels, layer)
