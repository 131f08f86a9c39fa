// Losses and gradients along one axis of strided n-d arrays: cross-entropy (class indices
// or probabilities), NLL, entropy, KL divergence, the softmax / log-softmax backward
// products, and the elementwise sigmoid family with binary cross-entropy.
//
// As for softmax.hpp: the Python layer hands over aligned, native arrays of the right
// shapes (checked again here) and these functions never touch Python. `workers` (>= 1) is
// the most threads a call may use; results are bit-identical for every value.
#pragma once

#include <cstdint>

#include "softmax.hpp"
#include "strided.hpp"

namespace logitkit {

enum class Reduction { none, sum, mean };

struct CrossEntropyArgs {
  int axis;
  const StridedArray* labels;  // int64, logits' shape without axis; or null
  const StridedArray* probs;   // logits' dtype and shape; or null
  const void* weight;          // C contiguous class weights of logits' dtype; or null
  idx weight_size;             // how many: must be the number of classes
  std::int64_t ignore_index;
  double smoothing;
  Reduction reduction;
  const StridedArray* loss;  // per-row losses (logits' shape without axis); or null
  const StridedArray* grad;  // logits' shape; or null
  // Options (spec/options_spec.md); the defaults take the plain kernels, unchanged.
  double temperature = 1.0;  // finite > 0: the loss of z / temperature
  double softcap = 0.0;      // finite > 0: z -> softcap * tanh(z / softcap) first; 0: none
  double z_loss = 0.0;       // finite >= 0: + z_loss * lse(z')^2 per row
  const StridedArray* where = nullptr;  // uint8 (0: class left out), logits' shape; or null
  const StridedArray* sample_weight = nullptr;  // float64 per row (batch shape); or null
  bool has_options() const {
    return temperature != 1.0 || softcap != 0.0 || z_loss != 0.0 || where || sample_weight;
  }
};

// Outcome of a loss over integer labels. A bad label stops the call before any output is
// written: bad_label >= 0 is its flat (C-order) position among the rows.
struct LossResult {
  idx bad_label = -1;
  std::int64_t bad_value = 0;
  double loss_sum = 0;     // sum of the per-row losses
  double denominator = 0;  // what "mean" divides by: the total weight of the counted rows
  idx counted = 0;         // rows that count (not ignored); "mean" of none is 0
};

LossResult cross_entropy(DType dtype, const StridedArray& logits, const CrossEntropyArgs& args,
                         int workers = 1);

// nll_loss: -weight[t] * log_probs[t] per row (labels required; probs and smoothing unused).
LossResult nll_loss(DType dtype, const StridedArray& log_probs, const CrossEntropyArgs& args);

// entropy and kl_divergence take the softmax family's options (softmax.hpp's
// SoftmaxOptions: temperature's scale, a where= mask of the logits' shape); a default
// SoftmaxOptions is the plain path.
void entropy(DType dtype, const StridedArray& logits, const StridedArray& out, int axis,
             int workers, const SoftmaxOptions& options = SoftmaxOptions());

// KL(P || Q) * out_scale per row into out (float64 whatever the dtype); with grad (q_logits' shape),
// d KL / d q_logits * grad_scale.
void kl_divergence(DType dtype, const StridedArray& p_logits, const StridedArray& q_logits,
                   const StridedArray& out, double out_scale, const StridedArray* grad,
                   double grad_scale, int axis, int workers,
                   const SoftmaxOptions& options = SoftmaxOptions());

void softmax_backward(DType dtype, const StridedArray& grad_output, const StridedArray& probs,
                      const StridedArray& out, int axis, int workers = 1);
void log_softmax_backward(DType dtype, const StridedArray& grad_output,
                          const StridedArray& log_probs, const StridedArray& out, int axis,
                          int workers = 1);

// Elementwise over contiguous arrays of `size` elements.
void sigmoid(DType dtype, const void* x, void* out, idx size, int workers = 1);
void log_sigmoid(DType dtype, const void* x, void* out, idx size, int workers = 1);

// Binary cross-entropy over contiguous rows x n (weight full-size; pos_weight one row of n
// shared by all rows, or full-size with pos_weight_full; either may be null); loss (per
// element) and grad may be null. Returns the loss sum.
double binary_cross_entropy(DType dtype, const void* logits, const void* target,
                            const void* weight, const void* pos_weight, bool pos_weight_full,
                            idx rows, idx n, void* loss, void* grad, double grad_scale,
                            int workers = 1);
// With sample weights: `sample_weight` (float64, one per sample; null: none) weights each
// run of `sample_len` elements of the flat array (sample_len >= 1; the product of the
// logits' dimensions after the first).
double binary_cross_entropy(DType dtype, const void* logits, const void* target,
                            const void* weight, const void* pos_weight, bool pos_weight_full,
                            idx rows, idx n, void* loss, void* grad, double grad_scale,
                            int workers, const double* sample_weight, idx sample_len);

}  // namespace logitkit
