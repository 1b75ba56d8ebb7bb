#!/usr/bin/python3
"""Converts a torchvision ResNet checkpoint (a state dict saved with torch.save, as torchvision
publishes them, e.g. resnet50-0676ba61.pth) into the file `model.backbone.pretrained` loads:
the same tensors under the backbone's names (conv1 -> stem.0, bn1 -> stem.1, layer1-4
unchanged), the classifier (fc.*) dropped. attnseg checks every name and shape when it loads
the file and lists what is missing, unexpected or of another shape. The backbone must use the
plain 7x7 stem: model.backbone.deep_stem: false.

  /usr/bin/python3 tools/convert_torchvision.py IN.pth OUT.pt     (Debian's python3-torch)
"""
import os
import sys

import torch


def backbone_name(name):
    if name.startswith("fc."):
        return None
    if name.startswith("conv1."):
        return "stem.0." + name[len("conv1."):]
    if name.startswith("bn1."):
        return "stem.1." + name[len("bn1."):]
    return name


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: convert_torchvision.py IN.pth OUT.pt")
    source, target = sys.argv[1], sys.argv[2]
    try:
        state = torch.load(source, map_location="cpu")
    except Exception as e:  # a missing or corrupt file: one line naming it
        sys.exit(f"error: {source}: not a torch.save checkpoint ({e})")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        sys.exit(f"error: {source}: not a name -> tensor state dict")
    known = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")
    unexpected = [n for n in state if not n.startswith(known)]
    if unexpected:
        sys.exit(f"error: {source}: names no torchvision ResNet has: {', '.join(unexpected[:8])}"
                 + (f", ... ({len(unexpected)} in all)" if len(unexpected) > 8 else ""))
    converted, dropped = {}, []
    for name, tensor in state.items():
        ours = backbone_name(name)
        if ours is None:
            dropped.append(name)
        else:
            converted[ours] = tensor.contiguous()
    if not any(n.startswith("layer4.") for n in converted) or "stem.0.weight" not in converted:
        sys.exit(f"error: {source}: no torchvision ResNet (conv1.weight and layer4.* expected)")
    # a plain dict (LibTorch's unpickler reads no OrderedDict), written under a temporary name
    tmp = target + ".tmp"
    torch.save(dict(converted), tmp)
    os.replace(tmp, target)
    print(f"converted {len(converted)} tensors of {source} into {target}; dropped {', '.join(dropped) or 'nothing'}")


if __name__ == "__main__":
    main()
