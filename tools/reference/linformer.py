"""MHAttention from tatp22/linformer-pytorch (learnable E, F of k = 64, shared by the heads
as our block shares them: parameter_sharing='headwise'), 4 heads. Its projections are
Linear(N, k) layers, so one is built per map size (build_for)."""
import os

import common
import sequence

REPO = "tatp22/linformer-pytorch"
FILE = "linformer_pytorch/linformer_pytorch.py"


def build_for(src, channels, height, width, heads=4, k=64):
    module = common.import_file(os.path.join(src, FILE), "ref_linformer")
    layer = module.MHAttention(height * width, channels // heads, channels, k, heads, dropout=0.0,
                               checkpoint_level="C0", parameter_sharing="headwise", E_proj=None,
                               F_proj=None, full_attention=False, causal_mask=None)
    return sequence.OnFeatureMap(channels, layer, shared_input=True)
