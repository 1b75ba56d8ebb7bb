"""The R-50-D8 segmentation model of configs/_base_/models/r50_d8.yaml written in plain PyTorch,
hosting a block's reference implementation, and timed the way `attnseg bench --model` times
ours: batch-1 forwards in eval and inference mode, warm-up, median and quartiles, each run
ending in .item() (which waits for the device). The same architecture as attnseg's (ResNetV1c:
deep stem, stages 3-4 dilated 2 and 4 with mmsegmentation's contracted first dilation; the
attention head: 3x3 reduce, the block, the start rule's gate, 3x3 post, concatenation with the
backbone feature, 3x3 bottleneck, classifier; logits resized to the input), so that the C++
pipeline's own overhead shows beside it. Prints one JSON document.

    python3 tools/reference/model.py --refs REFS --block ccnet --device cuda --sizes 512x1024
    /usr/bin/python3 tools/reference/model.py --refs REFS --block ccnet --sizes 64x128 --iters 3

--block none times the head without a block (its input passed through). The auxiliary FCN head
(2.37 M parameters) is left out: it only trains. On the CPU give it attnseg's allocator
settings (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=18446744073709551615, as
tools/bench_blocks.sh does): without them this model took 2.6x as long here (2 threads, 64x128).
"""
import argparse
import importlib
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def conv_bn_relu(cin, cout, k=3, stride=1, dilation=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride, dilation):
        super().__init__()
        out = planes * 4
        self.conv1 = conv_bn_relu(cin, planes, 1)
        self.conv2 = conv_bn_relu(planes, planes, 3, stride, dilation)
        self.conv3 = conv_bn_relu(planes, out, 1, relu=False)
        self.downsample = conv_bn_relu(cin, out, 1, stride, relu=False) if stride != 1 or cin != out else None

    def forward(self, x):
        y = self.conv3(self.conv2(self.conv1(x)))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet50D8(nn.Module):
    """ResNetV1c-50 at output stride 8: the deep stem, [3, 4, 6, 3] bottlenecks."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, 32, 3, 2), conv_bn_relu(32, 32), conv_bn_relu(32, 64),
                                  nn.MaxPool2d(3, 2, 1))
        strides, dilations, cin, layers = (1, 2, 1, 1), (1, 1, 2, 4), 64, []
        for s, blocks in enumerate((3, 4, 6, 3)):
            planes, stage = 64 << s, []
            for i in range(blocks):
                dilation = dilations[s] // 2 if i == 0 and dilations[s] > 1 else dilations[s]
                stage.append(Bottleneck(cin, planes, strides[s] if i == 0 else 1, dilation))
                cin = planes * 4
            layers.append(nn.Sequential(*stage))
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return x


class Segmentor(nn.Module):
    def __init__(self, block, classes=19, channels=512, gate_init=1.0):
        super().__init__()
        self.backbone = ResNet50D8()
        self.reduce = conv_bn_relu(2048, channels)
        self.block = block
        self.gate = nn.Parameter(torch.full((1,), gate_init))
        self.post = conv_bn_relu(channels, channels)
        self.bottleneck = conv_bn_relu(2048 + channels, channels)
        self.classifier = nn.Conv2d(channels, classes, 1)

    def forward(self, image):
        feature = self.backbone(image)
        x = self.reduce(feature)
        attended = x + self.gate * (self.block(x) - x)
        y = self.bottleneck(torch.cat([feature, self.post(attended)], 1))
        return F.interpolate(self.classifier(y), size=image.shape[2:], mode="bilinear", align_corners=False)



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", default="", help="the reference repositories' folder (not needed for none)")
    parser.add_argument("--block", default="ccnet")
    parser.add_argument("--sizes", default="512x1024")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0: all cores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count())
    device = torch.device(args.device)
    if device.type != "cpu":
        torch.set_default_device(device)
    reference = "-"
    if args.block == "none":
        block = nn.Identity()
    else:
        module = importlib.import_module(args.block)
        src, commit = common.reference_tree(args.refs, module.REPO)
        block, reference = module.build(src, 512), f"{module.REPO}@{commit}"
    net = Segmentor(block, args.classes).to(device).eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    entry = {"block": args.block, "reference": reference, "device": str(device), "precision": args.precision,
             "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in net.parameters()),
             "torch": torch.__version__, "sizes": []}
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        torch.manual_seed(0)
        image = torch.randn(1, 3, h, w, device=device)
        median, p25, p75 = common.timed_forwards(net, image, args.warmup, args.iters, autocast)
        entry["sizes"].append({"height": h, "width": w, "median_ms": median, "p25_ms": p25, "p75_ms": p75,
                               "fps": 1000 / median})
    json.dump(entry, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
