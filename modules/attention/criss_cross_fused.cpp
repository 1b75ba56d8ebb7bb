#include "attention/criss_cross_fused.h"

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <torch/csrc/autograd/custom_function.h>

#include "attention/criss_cross_kernel.h"
#ifdef ATTNSEG_WITH_CUDA
#include "attention/criss_cross_cuda.h"
#endif

namespace attnseg::criss_cross {
namespace {

constexpr int64_t kGrain = 64;

// The criss-cross weights of t's map, [B, H + W, H, W], in the accumulation type.
at::Tensor empty_weights(const at::Tensor& t) {
  const at::ScalarType type = t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return at::empty({t.size(0), t.size(2) + t.size(3), t.size(2), t.size(3)}, t.options().dtype(type));
}

at::Tensor softmax_of_dots(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor weights = empty_weights(a);
#ifdef ATTNSEG_WITH_CUDA
  if (a.is_cuda()) {
    gpu::softmax_of_dots(a, b, weights);
    return weights;
  }
#endif
  ATTNSEG_CC_DISPATCH(a, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t *pa = a.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>();
    acc_t* pw = weights.data_ptr<acc_t>();
    const Map m = map_of(a);
    each_index(m.batch * m.h * m.w, kGrain, [&](int64_t i) { criss_cross::softmax_of_dots<acc_t>(i, pa, pb, a.size(1), m, pw); });
  });
  return weights;
}

at::Tensor softmax_backward_of_dots(const at::Tensor& g, const at::Tensor& v, const at::Tensor& weights) {
  const at::Tensor grad = at::empty_like(weights);
#ifdef ATTNSEG_WITH_CUDA
  if (g.is_cuda()) {
    gpu::softmax_backward_of_dots(g, v, weights, grad);
    return grad;
  }
#endif
  ATTNSEG_CC_DISPATCH(g, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t *pg = g.data_ptr<scalar_t>(), *pv = v.data_ptr<scalar_t>();
    const acc_t* pw = weights.data_ptr<acc_t>();
    acc_t* out = grad.data_ptr<acc_t>();
    const Map m = map_of(g);
    each_index(m.batch * m.h * m.w, kGrain,
               [&](int64_t i) { criss_cross::softmax_backward_of_dots<acc_t>(i, pg, pv, g.size(1), m, pw, out); });
  });
  return grad;
}

// aggregate (transposed = false) or aggregate_transposed of src's channels by the weights.
at::Tensor aggregated(const at::Tensor& weights, const at::Tensor& src, bool transposed) {
  const at::Tensor out = at::empty_like(src);
#ifdef ATTNSEG_WITH_CUDA
  if (src.is_cuda()) {
    if (transposed) {
      gpu::aggregate_transposed(weights, src, out);
    } else {
      gpu::aggregate(weights, src, out);
    }
    return out;
  }
#endif
  ATTNSEG_CC_DISPATCH(src, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const acc_t* pw = weights.data_ptr<acc_t>();
    const scalar_t* ps = src.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const Map m = map_of(src);
    const int64_t ch = src.size(1);
    if (transposed) {
      each_index(src.numel(), kGrain, [&](int64_t i) { criss_cross::aggregate_transposed(i, pw, ps, ch, m, po); });
    } else {
      each_index(src.numel(), kGrain, [&](int64_t i) { criss_cross::aggregate(i, pw, ps, ch, m, po); });
    }
  });
  return out;
}

// Forward: the weights (materialised once, kept for the backward) and their aggregation of v.
// Backward: the energies' gradient from the output's, then q's, k's and v's as aggregations.
class FusedCrissCross : public torch::autograd::Function<FusedCrissCross> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v) {
    const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
    const at::Tensor weights = softmax_of_dots(qc, kc);
    ctx->save_for_backward({qc, kc, vc, weights});
    return aggregated(weights, vc, false);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &weights = saved[3];
    const at::Tensor g = grads[0].to(v.scalar_type()).contiguous();
    const at::Tensor energies = softmax_backward_of_dots(g, v, weights);
    return {aggregated(energies, k, false), aggregated(energies, q, true), aggregated(weights, g, true)};
  }
};

}  // namespace

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && k.scalar_type() == v.scalar_type(),
              "criss_cross: q, k and v must have one type, got ", q.scalar_type(), ", ", k.scalar_type(), ", ",
              v.scalar_type());
  TORCH_CHECK(q.device() == k.device() && k.device() == v.device(), "criss_cross: q, k and v must be on one device");
  TORCH_CHECK(kernels_run_on(q.device()), "criss_cross: the fused kernels run on the CPU",
              kernels_run_on(c10::Device(c10::kCUDA)) ? " and on CUDA devices" : " (this build has no CUDA kernels)",
              ", not on ", q.device());
  return FusedCrissCross::apply(q, k, v);
}

}  // namespace attnseg::criss_cross
