"""The key/value compression of lucidrains/memory-compressed-attention (ConvCompress: a Conv1d,
kernel = stride = the compression factor, grouped by heads), run in float64 on a sequence whose
length is a multiple of the factor. Only the compression is recorded: the reference's module
also always left-pads (a whole window of zeros when the length is already a multiple) and adds
a learned null key and value for causal use; attnseg pads at the end, masks, and has no null
slot (see modules/attention/memory_compressed.h)."""
import os

import torch

import common

REPO = "lucidrains/memory-compressed-attention"
FILE = "memory_compressed_attention/memory_compressed_attention.py"


def fixture(src, repo_at_commit):
    module = common.import_file(os.path.join(src, FILE), "ref_memory_compressed")
    torch.manual_seed(0)
    heads, d, s, n = 3, 4, 3, 12
    compress = module.ConvCompress(heads * d, s, groups=heads).double()
    x = torch.randn(2, n, heads * d, dtype=torch.float64)  # (batch, tokens, heads·d), heads-major
    with torch.no_grad():
        y = compress(x)  # (batch, n / s, heads·d)
    return f"{repo_at_commit} {FILE}", {"x": x, "y": y, "weight": compress.conv.weight, "bias": compress.conv.bias}
