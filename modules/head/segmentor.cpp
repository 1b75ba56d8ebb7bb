#include "head/segmentor.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/upsampling.h>

#include <cmath>
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

torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels,
                                const torch::Tensor& pixels) {
  const torch::Tensor resized = resize_to(logits, {labels.size(1), labels.size(2)});
  const torch::Tensor per_pixel = F::cross_entropy(
      resized, labels, F::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
  const torch::Tensor valid = pixels.defined() ? pixels : (labels != kIgnoreIndex).sum().clamp_min(1);
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

Prediction SegmentorImpl::predict_with_block_input(const torch::Tensor& images) {
  const BackboneFeatures features = backbone_->forward(images);
  Prediction out;
  out.block_input = head_->block_input(features.stage4);
  out.scores = resize_to(head_->decode(features.stage4, out.block_input), {images.size(2), images.size(3)});
  return out;
}

SegmentorLoss SegmentorImpl::loss(const SegmentorOutput& out, const torch::Tensor& labels,
                                  const torch::Tensor& pixels) const {
  SegmentorLoss loss;
  loss.decode = segmentation_loss(out.logits, labels, pixels);
  loss.total = loss.decode;
  if (out.aux.defined()) {
    loss.aux = segmentation_loss(out.aux, labels, pixels);
    loss.total = loss.total + aux_weight_ * loss.aux;
  }
  if (at::Tensor block = head_->block()->aux_loss(); block.defined()) {
    loss.block = block.to(at::kFloat);
    loss.total = loss.total + loss.block;
  }
  return loss;
}

std::string SegmentorImpl::signature() const {
  std::ostringstream out;
  for (const auto& item : named_parameters()) out << item.key() << item.value().sizes() << ";";
  for (const auto& item : named_buffers()) out << item.key() << item.value().sizes() << ";";
  return out.str();
}

namespace {

// Runs an Options struct's check(), naming the config section in the error.
template <typename Options>
void check_section(const Options& options, const ConfigNode& node, const std::string& key) {
  try {
    options.check();
  } catch (const c10::Error& e) {
    throw Error("config key " + node.where(key) + ": " + one_line(e.what_without_backtrace()));
  }
}

}  // namespace

ModelSettings read_model_settings(const ConfigNode& model, int64_t num_classes) {
  ModelSettings m;
  const ConfigNode bb = model.child("backbone");
  const std::string type = bb.get<std::string>("type", "resnet18");
  if (type == "resnet18") {
    m.backbone.depth(18);
  } else if (type == "resnet50") {
    m.backbone.depth(50);
  } else {
    throw Error("config key " + bb.where("type") + ": unknown backbone '" + type +
                "'; accepted: resnet18, resnet50");
  }
  m.backbone.deep_stem(bb.get<bool>("deep_stem", m.backbone.deep_stem()));
  m.backbone.output_stride(bb.get<int64_t>("output_stride", m.backbone.output_stride()));
  m.backbone.width(bb.get<double>("width", m.backbone.width()));
  m.pretrained = bb.get<std::string>("pretrained", "");
  m.pretrained_key = bb.where("pretrained");
  bb.finish();
  check_section(m.backbone, model, "backbone");

  const ConfigNode hd = model.child("head");
  m.head.num_classes(num_classes);
  m.head.channels(hd.get<int64_t>("channels", m.head.channels()));
  m.head.dropout(hd.get<double>("dropout", m.head.dropout()));
  hd.finish();
  check_section(m.head, model, "head");

  const ConfigNode aux = model.child("aux_head");
  m.aux_enabled = aux.get<bool>("enabled", true);
  m.aux.num_classes(num_classes);
  m.aux.channels(aux.get<int64_t>("channels", m.aux.channels()));
  m.aux.dropout(aux.get<double>("dropout", m.aux.dropout()));
  m.aux_weight = aux.get<double>("loss_weight", m.aux_weight);
  aux.finish();
  if (m.aux_enabled) check_section(m.aux, model, "aux_head");
  if (!(m.aux_weight >= 0) || !std::isfinite(m.aux_weight)) {
    throw Error("config key " + aux.where("loss_weight") + " must be zero or positive");
  }

  m.block = configure_block(model.child("attention"), m.head.channels());
  m.sync_bn = model.get<bool>("sync_bn", m.sync_bn);
  model.finish();
  return m;
}

Segmentor build_segmentor(const ModelSettings& m) {
  ResNet backbone(m.backbone);
  if (!m.pretrained.empty()) {  // a checkpoint loaded later replaces them
    try {
      load_backbone_weights(backbone, m.pretrained);
    } catch (const Error& e) {
      throw Error("config key " + m.pretrained_key + ": " + e.what());
    }
  }
  AttentionHeadOptions head_options = m.head;
  head_options.in_channels(backbone->stage4_channels());
  // The start rule's gate sits on every block's branch, not on `none`'s (it has no branch).
  std::optional<double> gate;
  if (!m.block.start.paper && m.block.name != "none") gate = m.block.start.gate_init;
  AttentionHead head(head_options, m.block.build(), gate);
  FCNHead aux_head{nullptr};
  if (m.aux_enabled) {
    FCNHeadOptions aux_options = m.aux;
    aux_options.in_channels(backbone->stage3_channels());
    aux_head = FCNHead(aux_options);
  }
  return Segmentor(backbone, head, aux_head, m.aux_weight);
}

}  // namespace attnseg
