#include "head/segmentor.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/upsampling.h>

#include <sstream>

#include "attention/registry.h"
#include "backbone/pretrained.h"

namespace attnseg {

namespace F = torch::nn::functional;

namespace {

torch::Tensor resize_to(const torch::Tensor& logits, at::IntArrayRef size) {
  if (logits.size(2) == size[0] && logits.size(3) == size[1]) return logits;
  return F::interpolate(logits, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{size[0], size[1]})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
}

}  // namespace

torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const torch::Tensor resized = resize_to(logits, {labels.size(1), labels.size(2)});
  const torch::Tensor per_pixel = F::cross_entropy(
      resized, labels, F::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
  const torch::Tensor valid = (labels != kIgnoreIndex).sum().clamp_min(1);
  return per_pixel / valid;
}

SegmentorImpl::SegmentorImpl(ResNet backbone, AttentionHead head, FCNHead aux_head,
                             double aux_weight)
    : backbone_(register_module("backbone", backbone)),
      head_(register_module("decode_head", head)),
      aux_weight_(aux_weight) {
  if (aux_head) aux_head_ = register_module("aux_head", aux_head);
}

SegmentorOutput SegmentorImpl::forward(const torch::Tensor& images) {
  const BackboneFeatures features = backbone_->forward(images);
  SegmentorOutput out;
  out.logits = head_->forward(features.stage4);
  if (aux_head_ && is_training()) out.aux = aux_head_->forward(features.stage3);
  return out;
}

torch::Tensor SegmentorImpl::predict(const torch::Tensor& images) {
  const BackboneFeatures features = backbone_->forward(images);
  return resize_to(head_->forward(features.stage4), {images.size(2), images.size(3)});
}

SegmentorLoss SegmentorImpl::loss(const SegmentorOutput& out, const torch::Tensor& labels) const {
  SegmentorLoss loss;
  loss.decode = segmentation_loss(out.logits, labels);
  loss.total = loss.decode;
  if (out.aux.defined()) {
    loss.aux = segmentation_loss(out.aux, labels);
    loss.total = loss.total + aux_weight_ * loss.aux;
  }
  return loss;
}

std::string SegmentorImpl::signature() const {
  std::ostringstream out;
  for (const auto& item : named_parameters()) out << item.key() << item.value().sizes() << ";";
  for (const auto& item : named_buffers()) out << item.key() << item.value().sizes() << ";";
  return out.str();
}

Segmentor build_segmentor(const ConfigNode& model, int64_t num_classes) {
  const ConfigNode bb = model.child("backbone");
  const std::string type = bb.get<std::string>("type", "resnet18");
  int64_t depth = 0;
  if (type == "resnet18") {
    depth = 18;
  } else if (type == "resnet50") {
    depth = 50;
  } else {
    throw Error("config key " + bb.where("type") + ": unknown backbone '" + type +
                "'; accepted: resnet18, resnet50");
  }
  ResNetOptions bo(depth);
  bo.deep_stem(bb.get<bool>("deep_stem", bo.deep_stem()));
  bo.output_stride(bb.get<int64_t>("output_stride", bo.output_stride()));
  bo.width(bb.get<double>("width", bo.width()));
  const std::string pretrained = bb.get<std::string>("pretrained", "");
  bb.finish();

  const ConfigNode hd = model.child("head");
  const ConfigNode aux = model.child("aux_head");
  const ConfigNode attention = model.child("attention");
  model.finish();

  try {
    ResNet backbone(bo);
    if (!pretrained.empty()) {  // from tools/convert_torchvision.py; a checkpoint loaded later replaces them
      try {
        load_backbone_weights(backbone, pretrained);
      } catch (const Error& e) {
        throw Error("config key " + bb.where("pretrained") + ": " + e.what());
      }
    }
    AttentionHeadOptions ho(backbone->stage4_channels(), num_classes);
    ho.channels(hd.get<int64_t>("channels", ho.channels()));
    ho.dropout(hd.get<double>("dropout", ho.dropout()));
    hd.finish();
    AttentionBlock block = build_block(attention, ho.channels());
    AttentionHead head(ho, block);

    FCNHead aux_head{nullptr};
    const bool aux_enabled = aux.get<bool>("enabled", true);
    FCNHeadOptions ao(backbone->stage3_channels(), num_classes);
    ao.channels(aux.get<int64_t>("channels", ao.channels()));
    ao.dropout(aux.get<double>("dropout", ao.dropout()));
    const double aux_weight = aux.get<double>("loss_weight", 0.4);
    aux.finish();
    if (aux_enabled) aux_head = FCNHead(ao);
    return Segmentor(backbone, head, aux_head, aux_weight);
  } catch (const c10::Error& e) {
    throw Error("config section 'model' (" + model.where("backbone") +
                "): " + e.what_without_backtrace());
  }
}

}  // namespace attnseg
