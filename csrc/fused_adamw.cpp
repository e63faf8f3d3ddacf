// PyTorch's fused AdamW (`torch.optim.AdamW(fused=True)`: one kernel over every tensor, on the CPU and
// on CUDA), for src/base/optimizer.rs. tch does not bind the `_fused_adamw_` operator (its arguments
// are lists of tensors updated in place), so this one C function does. A tch tensor handle is a
// pointer to an at::Tensor (torch-sys's libtch: `typedef torch::Tensor *tensor`).
#include <ATen/ATen.h>

#include <cstdio>
#include <exception>
#include <vector>

namespace {
std::vector<at::Tensor> list(at::Tensor *const *tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);  // shares storage: updates land in place
  return out;
}
}  // namespace

// Updates params, exp_avgs and exp_avg_sqs in place; grads are read (no grad scale, no maximize);
// steps hold each parameter's step count t (float tensors, as PyTorch's optimizer keeps them).
// Returns 0, or 1 with libtorch's message in `error` (cut to `error_len` bytes).
extern "C" int warpnet_fused_adamw(at::Tensor *const *params, at::Tensor *const *grads,
                                   at::Tensor *const *exp_avgs, at::Tensor *const *exp_avg_sqs,
                                   at::Tensor *const *steps, size_t n, double lr, double beta1,
                                   double beta2, double weight_decay, double eps, char *error,
                                   size_t error_len) {
  try {
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {},
                      list(steps, n), lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  } catch (const std::exception &e) {
    std::snprintf(error, error_len, "%s", e.what());
    return 1;
  }
}
