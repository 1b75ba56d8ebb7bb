"""Non-local block from AlexHex7/Non-local_pytorch (embedded Gaussian, 2-D, no sub-sampling,
BN after the output conv), the best-known PyTorch port of the paper's Caffe2 code. Used
for timing only: it has no 1/sqrt(d) scale, which our block (as mmsegmentation) applies."""
import os

import common

REPO = "AlexHex7/Non-local_pytorch"
FILE = "lib/non_local_embedded_gaussian.py"


def build(src, channels):
    module = common.import_file(os.path.join(src, FILE), "ref_nonlocal")
    return module.NONLocalBlock2D(channels, sub_sample=False, bn_layer=True)
