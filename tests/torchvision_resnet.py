"""Writes what the converter test compares against: randomly initialised torchvision
ResNet-18 and ResNet-50 at output stride 8 (the strides of layer3 and layer4 replaced by
dilation: torchvision's own option for ResNet-50; for ResNet-18, whose BasicBlock refuses it,
the same pattern set on its convolutions: the first block of a stage half the dilation),
their state dicts as torchvision saves them, an input and the features of layer3 and layer4
in eval mode.  Usage: /usr/bin/python3 torchvision_resnet.py OUT_DIR"""
import sys

import torch
import torchvision

out = sys.argv[1]
torch.manual_seed(0)
image = torch.randn(1, 3, 75, 101)  # odd sizes
# two entries: LibTorch's unpickler reads no single-item dict (pickle's SETITEM)
torch.save({"image": image, "shape": torch.tensor(image.shape)}, f"{out}/input.pt")


def dilate(layer, dilation):
    for i, block in enumerate(layer):
        d = dilation // 2 if i == 0 else dilation
        for conv in (block.conv1, block.conv2):
            conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


for depth in (18, 50):
    if depth == 18:
        net = torchvision.models.resnet18()
        dilate(net.layer3, 2)
        dilate(net.layer4, 4)
    else:
        net = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    net.eval()
    with torch.no_grad():  # batch-norm statistics away from the identity, so they are checked too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    torch.save(net.state_dict(), f"{out}/resnet{depth}.pth")
    with torch.no_grad():
        x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
        stage3 = net.layer3(net.layer2(net.layer1(x)))
        stage4 = net.layer4(stage3)
    torch.save({"stage3": stage3, "stage4": stage4}, f"{out}/features{depth}.pt")
