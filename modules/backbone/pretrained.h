// ImageNet-pretrained backbone weights: the file `model.backbone.pretrained` loads.
#pragma once

#include <filesystem>

#include "backbone/resnet.h"

namespace attnseg {

// The backbone's parameters and buffers as a name -> tensor dictionary, as
// tools/convert_torchvision.py writes it from a torchvision checkpoint (and Python's
// torch.load reads it), written atomically; and read back: every backbone parameter and buffer
// must be given with its shape, otherwise an Error lists the missing, unexpected and
// mis-shaped names.
void save_backbone_weights(ResNet& backbone, const std::filesystem::path& file);
void load_backbone_weights(ResNet& backbone, const std::filesystem::path& file);

}  // namespace attnseg
