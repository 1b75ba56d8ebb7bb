"""SelfAttention from lucidrains/compressive-transformer-pytorch, run segment after segment with
its memories, in float64, evaluation mode, no positional term. The reference is a causal language
model and our segments are not causal, so only the last query of each segment (which sees every
key of its segment either way) is compared. The reference keeps hidden states in its memories and
projects them; our core keeps keys and values. With bias-free projections the two agree when our
compression of keys is W_k·A_t·W_k⁻¹ (A_t the reference's conv taps), bias W_k·b, and likewise for
values: those are the weights stored. Compression rate 2, where the reference's front padding of
evicted memory (rows % c zeros) equals ours (to a multiple of c). It imports mogrifier only for an
option left off; a stand-in is given."""
import os

import torch

import common

REPO = "lucidrains/compressive-transformer-pytorch"
FILE = "compressive_transformer_pytorch/compressive_transformer_pytorch.py"


def _load(src):
    common.stub_modules({"mogrifier": {"Mogrifier": object}})
    return common.import_file(os.path.join(src, FILE), "ref_compressive")


def fixture(src, repo_at_commit):
    torch.manual_seed(0)
    dim, heads, segment, mem_len, cmem_len, ratio, segments = 6, 2, 3, 4, 3, 2, 5
    net = _load(src).SelfAttention(dim, segment, mem_len, cmem_len, ratio, heads).double().eval()
    with torch.no_grad():
        net.to_out.weight.copy_(torch.eye(dim, dtype=torch.float64))
        net.to_out.bias.zero_()
        net.compress_mem_fn.conv.weight.normal_(0.0, 0.4)
    x = torch.randn(2, segment * segments, dim, dtype=torch.float64)
    outputs, memories = [], None
    with torch.no_grad():
        for s in range(segments):
            out, memories, _ = net(x[:, s * segment:(s + 1) * segment], memories=memories)
            outputs.append(out)
    y = torch.cat(outputs, 1)  # [B, N, heads·d]
    wq = net.to_q.weight
    wk, wv = net.to_kv.weight.chunk(2, dim=0)
    conv = net.compress_mem_fn.conv

    def split(t):  # [B, N, heads·d] → [B, heads, N, d]
        return t.reshape(t.shape[0], t.shape[1], heads, dim // heads).transpose(1, 2)

    def conjugated(w):  # taps W·A_t·W⁻¹, bias W·b
        taps = torch.stack([w @ conv.weight[:, :, t] @ torch.linalg.inv(w) for t in range(ratio)], dim=2)
        return taps, w @ conv.bias

    k_weight, k_bias = conjugated(wk)
    v_weight, v_bias = conjugated(wv)
    tensors = {"q": split(x @ wq.t()), "k": split(x @ wk.t()), "v": split(x @ wv.t()), "y": split(y),
               "k_weight": k_weight, "k_bias": k_bias, "v_weight": v_weight, "v_bias": v_bias,
               "settings": torch.tensor([segment, mem_len, cmem_len, ratio], dtype=torch.float64)}
    return f"{repo_at_commit} {FILE}", tensors
