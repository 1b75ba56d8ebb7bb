"""Linear attention (elu(x)+1 feature map) from idiap/fast-transformers, the paper's own code,
in its AttentionLayer with 4 heads, on the feature map as attnseg's token host runs ours."""
import sequence

REPO = "idiap/fast-transformers"
FILE = "fast_transformers/attention/linear_attention.py"


def build(src, channels, heads=4):
    linear = sequence.fast_transformers(src, "attention.linear_attention")
    attention = linear.LinearAttention(channels // heads)
    return sequence.OnFeatureMap(channels, sequence.FastTransformersLayer(src, attention, channels, heads))
