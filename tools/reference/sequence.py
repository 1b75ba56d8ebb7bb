"""What the sequence blocks' references need to run on a feature map the way attnseg's token
host runs our blocks (modules/attention/sequence.h): the map [B, C, H, W] flattened to N = H·W
tokens in raster order, a pre-norm LayerNorm, 2-D sinusoidal positions added to the
queries' and keys' input, the reference's own multi-head layer (its projections included),
and the residual. Used for timing: the same work around each reference's core as ours."""
import importlib
import os

import torch
from torch import nn

import common


def sinusoidal_2d(channels, height, width):
    """The first C/2 channels encode y, the rest x, as sin/cos pairs (attnseg's formula)."""
    def axis(m, size):
        pos = torch.arange(size, dtype=torch.float64).unsqueeze(0)
        pair = torch.div(torch.arange(m, dtype=torch.float64), 2, rounding_mode="floor").unsqueeze(1)
        angle = pos * torch.pow(torch.tensor(10000.0, dtype=torch.float64), -2.0 * pair / m)
        even = (torch.arange(m) % 2 == 0).unsqueeze(1)
        return torch.where(even, angle.sin(), angle.cos())
    cy = channels // 2
    cx = channels - cy
    ey = axis(cy, height).unsqueeze(2).expand(cy, height, width)
    ex = axis(cx, width).unsqueeze(1).expand(cx, height, width)
    return torch.cat([ey, ex], 0).float()


class OnFeatureMap(nn.Module):
    """x + layer(LN(tokens) + positions, LN(tokens)) on a [B, C, H, W] map. `layer(qk, v)`
    takes the queries' and keys' input and the values' input, [B, N, C] each; a reference
    layer that projects all three from one input gets qk (positions in its values too)."""

    def __init__(self, channels, layer, shared_input=False):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.layer = layer
        self.shared_input = shared_input
        self._positions = {}

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))
        if (h, w) not in self._positions:
            self._positions[(h, w)] = sinusoidal_2d(c, h, w).flatten(1).transpose(0, 1)
        qk = tokens + self._positions[(h, w)]
        y = self.layer(qk) if self.shared_input else self.layer(qk, tokens)
        return x + y.transpose(1, 2).reshape(b, c, h, w)


def fast_transformers(src, module):
    """Imports fast_transformers.<module> from idiap/fast-transformers without running the
    package's __init__ files, which load its C++ extensions (not built here): the packages
    are registered as empty modules with their directories as search paths."""
    root = os.path.join(src, "fast_transformers")
    common.package_without_init("fast_transformers", root)
    common.package_without_init("fast_transformers.attention", os.path.join(root, "attention"))
    return importlib.import_module(f"fast_transformers.{module}")


class FastTransformersLayer(nn.Module):
    """fast-transformers' AttentionLayer (its four projections) around one of its inner
    attentions, with full masks built once per length (as a caller that reuses them would)."""

    def __init__(self, src, attention, channels, heads):
        super().__init__()
        layer = fast_transformers(src, "attention.attention_layer")
        self.masking = fast_transformers(src, "masking")
        self.layer = layer.AttentionLayer(attention, channels, heads)
        self._masks = {}

    def forward(self, qk, v):
        b, n, _ = qk.shape
        if (b, n) not in self._masks:
            lengths = self.masking.LengthMask(torch.full((b,), n, dtype=torch.int64), max_len=n)
            self._masks[(b, n)] = (self.masking.FullMask(n, device=qk.device), lengths)
        mask, lengths = self._masks[(b, n)]
        return self.layer(qk, qk, v, mask, lengths, lengths)


class HeadsLayer(nn.Module):
    """Query, key, value and output projections around a reference core that takes
    heads-split q, k, v [B, heads, N, d] and has no projections of its own (lucidrains' LSH,
    k-means and Sinkhorn attentions). `core(q, k, v)` returns [B, heads, N, d]; with
    `shared_qk` the keys are the queries (Reformer) and no key projection is built."""

    def __init__(self, channels, heads, core, shared_qk=False):
        super().__init__()
        self.heads = heads
        self.core = core
        self.to_q = nn.Linear(channels, channels)
        self.to_k = None if shared_qk else nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, qk, v):
        b, n, c = qk.shape

        def split(t):
            return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)

        q = split(self.to_q(qk))
        k = q if self.to_k is None else split(self.to_k(qk))
        out = self.core(q, k, split(self.to_v(v)))
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))
