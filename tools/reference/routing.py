"""KmeansAttention from lucidrains/routing-transformer (routing_transformer/routing_transformer.py)
with separate queries and keys (shared_qk=False, the path attnseg's routing follows), in float64
on fixed q, k, v and fixed unit centroids: its output in eval mode, and after one training-mode
forward the commitment loss and the new cluster means (its kmeans_iter, before the moving
average). The file imports einops, local_attention, product_key_memory and mixture_of_experts
for parts this path does not use: empty stand-ins are given."""
import os

import torch

import common

REPO = "lucidrains/routing-transformer"
FILE = "routing_transformer/routing_transformer.py"


def _load(src):
    common.stub_modules({
        "einops": {"rearrange": None, "repeat": None},
        "einops.layers": {},
        "einops.layers.torch": {"Rearrange": object},
        "local_attention": {"LocalAttention": object},
        "product_key_memory": {"PKM": object},
        "mixture_of_experts": {"MoE": object},
    })
    # The package without its __init__ (which imports the encoder-decoder and wrappers).
    common.package_without_init("routing_transformer", os.path.join(src, "routing_transformer"))
    return common.import_file(os.path.join(src, FILE), "ref_routing")


def fixture(src, repo_at_commit):
    ref = _load(src)
    torch.manual_seed(0)
    b, h, n, d, clusters, window = 2, 3, 31, 5, 4, 9
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64) for _ in range(3))
    means = torch.nn.functional.normalize(torch.randn(h, clusters, d, dtype=torch.float64), dim=-1)
    attention = ref.KmeansAttention(clusters, window, h, d, shared_qk=False).double()
    attention.kmeans.means.copy_(means)
    attention.kmeans.initted.fill_(True)
    with torch.no_grad():
        attention.eval()
        y, _ = attention(q, k, v)
        attention.train()
        _, loss = attention(q, k, v)
    return f"{repo_at_commit} {FILE} (KmeansAttention, shared_qk=False)", {
        "q": q, "k": k, "v": v, "means": means, "y": y,
        "commitment": loss.reshape(1), "cluster_means": attention.kmeans.new_means,
    }


# Ours is timed with its routing heads only (bench --set), the part KmeansAttention is: the
# reference's local heads are lucidrains' 1-D LocalAttention from another package (local-attention,
# which needs einops, not in Debian), ours 2-D windows on the pattern engine.
OURS_SET = "routing.local_heads=0"


def build_for(src, channels, height, width, heads=4, clusters=16, trained_tokens=8 * 48):
    """KmeansAttention with 16 clusters and windows of ceil(384 / 16) = 24 tokens at every size
    (ours: the window set by the trained 8×48 map), separate q and k, in eval mode."""
    import sequence

    window = min((trained_tokens + clusters - 1) // clusters, height * width)
    attention = _load(src).KmeansAttention(clusters, window, heads, channels // heads)
    layer = sequence.HeadsLayer(channels, heads, lambda q, k, v: attention(q, k, v)[0])
    layer.attention = attention
    return sequence.OnFeatureMap(channels, layer)
