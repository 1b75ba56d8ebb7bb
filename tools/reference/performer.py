"""FAVOR+ (positive orthogonal random features) as idiap/fast-transformers implements it
(feature_maps.Favor inside its LinearAttention), with m = 64 features like our default, in its
AttentionLayer with 4 heads. The paper's own code (google-research/performer) is JAX."""
import sequence

REPO = "idiap/fast-transformers"
FILE = "fast_transformers/feature_maps/fourier_features.py"


def build(src, channels, heads=4, features=64):
    linear = sequence.fast_transformers(src, "attention.linear_attention")
    favor = sequence.fast_transformers(src, "feature_maps.fourier_features")
    feature_map = favor.Favor.factory(n_dims=features)
    attention = linear.LinearAttention(channels // heads, feature_map=feature_map)
    return sequence.OnFeatureMap(channels, sequence.FastTransformersLayer(src, attention, channels, heads))
