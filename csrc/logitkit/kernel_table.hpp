// The table of kernels one SIMD target provides. Each target's translation unit
// (kernels_target.cpp, compiled once per target with its own -m flags) fills one table;
// dispatch.cpp picks a table at import from the CPU's features.
//
// Kernels take element pointers and element strides, work on a range of rows (or columns),
// and keep no state, so callers can split the rows between threads later.
#pragma once

#include <cstddef>
#include <cstdint>

namespace logitkit {

using idx = std::ptrdiff_t;

// The 16-bit storage formats, as bit patterns: IEEE binary16 (NumPy's float16) and
// bfloat16 (ml_dtypes.bfloat16: float32's upper half). The kernels read them, widen them to
// float in registers, compute in float and narrow the results back (half.inl); nothing
// converts whole arrays. A struct per format, so that overloads tell them apart.
struct Float16 {
  std::uint16_t bits;
};
struct BFloat16 {
  std::uint16_t bits;
};

// The type a kernel computes in for elements stored as S: S itself for float and double,
// float for the 16-bit formats. Kernels take two template parameters, the storage type S
// and this compute type T, so one source serves every dtype.
template <class S>
struct ComputeType {
  using type = S;
};
template <>
struct ComputeType<Float16> {
  using type = float;
};
template <>
struct ComputeType<BFloat16> {
  using type = float;
};
template <class S>
using compute_t = typename ComputeType<S>::type;

// Options of the softmax-family row kernels (temperature=, where=): the argument of exp,
// x - max, times `scale` (1/temperature) when `scaled`; a mask of n bytes per row
// (contiguous along the axis, rows mask_row_stride bytes apart, 0 for one shared row),
// 0 = left out, or null; `stream`: streaming stores (softmax, log_softmax).
template <class S>
struct RowOptions {
  using T = compute_t<S>;
  bool scaled;
  T scale;
  const std::uint8_t* mask;
  idx mask_row_stride;
  bool stream;
};

template <class S>
struct SoftmaxKernels {
  using T = compute_t<S>;  // scalars are in the compute type
  // rows x n, reduced axis contiguous; rows start *_row_stride elements apart.
  void (*softmax_rows)(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                       idx n);
  void (*log_softmax_rows)(const S* x, idx x_row_stride, S* out, idx out_row_stride,
                           idx rows, idx n);
  void (*logsumexp_rows)(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows,
                         idx n);
  // The same results, with streaming stores for outputs that do not fit in the cache
  // (float and double; the 16-bit formats' are the plain kernels).
  void (*softmax_rows_stream)(const S* x, idx x_row_stride, S* out, idx out_row_stride,
                              idx rows, idx n);
  void (*log_softmax_rows_stream)(const S* x, idx x_row_stride, S* out, idx out_row_stride,
                                  idx rows, idx n);
  // n x cols: the reduced axis is strided (*_axis_stride elements between classes) and the
  // kernel vectorizes across `cols` positions, *_col_stride elements apart (1: contiguous
  // columns; the row length: short contiguous rows, vectorized across rows).
  void (*softmax_cols)(const S* x, idx x_axis_stride, idx x_col_stride, S* out,
                       idx out_axis_stride, idx out_col_stride, idx n, idx cols);
  void (*log_softmax_cols)(const S* x, idx x_axis_stride, idx x_col_stride, S* out,
                           idx out_axis_stride, idx out_col_stride, idx n, idx cols);
  void (*logsumexp_cols)(const S* x, idx x_axis_stride, idx x_col_stride, S* out,
                         idx out_col_stride, idx n, idx cols);
  // Pieces of long rows, which the drivers split between threads (softmax.cpp) and merge.
  // The maximum of a contiguous piece of n elements and, as a double, the sum of
  // exp(x - max) over it minus 1 (split mode: no tail term is rounded against the 1 of the
  // maximum). max = -inf for a piece of -inf (sum 0); NaNs make the sum NaN.
  void (*logsumexp_piece)(const S* x, idx n, T* max, double* sum_minus_one);
  // out = exp(x - shift) * scale, and out = (x - shift) - log_sum: the second passes
  // (`stream`: with streaming stores, for float and double; see the *_stream kernels).
  void (*softmax_piece)(const S* x, S* out, idx n, T shift, T scale, bool stream);
  void (*log_softmax_piece)(const S* x, S* out, idx n, T shift, T log_sum, bool stream);
  // The same with options (temperature=, where=; `options.stream` unused): the maximum of
  // the included elements (-inf if none) and the sum over them of exp((x - max) * scale)
  // minus 1; out = exp((x - shift) * scale) * mul, and out = (x - shift) * scale - log_sum
  // (every element: the caller writes the masked ones). For blocks of a row split between
  // chunks (row_state.cpp).
  void (*logsumexp_piece_opt)(const S* x, idx n, const RowOptions<S>& options, T* max,
                              double* sum_minus_one);
  void (*softmax_piece_scaled)(const S* x, S* out, idx n, T shift, T scale, T mul,
                               bool stream);
  void (*log_softmax_piece_scaled)(const S* x, S* out, idx n, T shift, T scale, T log_sum,
                                   bool stream);
  // The row kernels with options (RowOptions; the drivers route every option call to
  // these, gathering rows that are not contiguous along the axis).
  void (*softmax_rows_opt)(const S* x, idx x_row_stride, S* out, idx out_row_stride, idx rows,
                           idx n, const RowOptions<S>& options);
  void (*log_softmax_rows_opt)(const S* x, idx x_row_stride, S* out, idx out_row_stride,
                               idx rows, idx n, const RowOptions<S>& options);
  void (*logsumexp_rows_opt)(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows,
                             idx n, const RowOptions<S>& options);
  // The vector exps themselves, elementwise over contiguous arrays (for accuracy tests):
  // full range, and the faster one for arguments <= 0 that the kernels use.
  void (*exp)(const S* x, S* out, idx n);
  void (*exp_nonpositive)(const S* x, S* out, idx n);
};

// Arguments of the fused cross-entropy kernel: `rows` rows of `n` classes, each contiguous.
// Exactly one of labels / probs is set.
template <class S>
struct CrossEntropyRows {
  using T = compute_t<S>;  // scalars are in the compute type
  const S* logits;
  idx logits_row_stride;
  idx rows;
  idx n;
  const std::int64_t* labels;  // class index per row (validated), or null
  idx label_stride;
  std::int64_t ignore_index;
  const S* probs;  // probability rows, or null
  idx probs_row_stride;
  const T* weight;  // n class weights (in the compute type: a small vector), or null
  T weight_sum;     // sum of the class weights (n without weights)
  T smoothing;      // label smoothing in [0, 1]
  // Per-row loss (always written), in double whatever T is: a float32 row's loss may
  // overflow float32 while the batch's mean does not.
  double* loss;
  idx loss_stride;
  S* grad;  // gradient rows, or null for the loss only
  idx grad_row_stride;
  T grad_scale;  // multiplies every gradient (1/denominator of a mean)
  bool stream;   // write the gradient with streaming stores (a gradient beyond the cache)
  // The options (options_spec.md), read only by cross_entropy_rows_options; the plain
  // kernel ignores them. Each row's logits z become
  //   z' = softcap * tanh(z / softcap) * inv_temperature   (softcap 0: z * inv_temperature)
  // and -inf where mask[c] is 0; the row's loss (plus z_loss * lse(z')^2) and gradient are
  // multiplied by sample_weight[r].
  T inv_temperature = T(1);
  T softcap = T(0);  // 0: none
  T z_loss = T(0);
  const std::uint8_t* mask = nullptr;  // row r, class c at mask[r * mask_row_stride + c * mask_class_stride]
  idx mask_row_stride = 0;
  idx mask_class_stride = 0;
  const double* sample_weight = nullptr;  // one per row, or null (all 1)
  idx sample_weight_stride = 0;
};

// Cross-entropy with class indices, vectorized across `cols` samples: logits of sample j,
// class c at logits[c * axis_stride + j * col_stride] (likewise grad).
template <class S>
struct CrossEntropyCols {
  using T = compute_t<S>;  // scalars are in the compute type
  const S* logits;
  idx axis_stride;
  idx col_stride;
  idx n;
  idx cols;
  const std::int64_t* labels;
  idx label_stride;
  std::int64_t ignore_index;
  const T* weight;
  T weight_sum;
  T smoothing;
  double* loss;  // as in CrossEntropyRows
  idx loss_stride;
  S* grad;  // or null
  idx grad_axis_stride;
  idx grad_col_stride;
  T grad_scale;
};

// KL(P || Q) per row from two sets of logits, optionally with d KL / d q_logits.
template <class S>
struct KlRows {
  using T = compute_t<S>;  // scalars are in the compute type
  const S* p_logits;
  idx p_row_stride;
  const S* q_logits;
  idx q_row_stride;
  idx rows;
  idx n;
  // Per-row divergences in double whatever T is (a float32 row's may overflow float32
  // while the batch's mean does not).
  double* out;
  idx out_stride;
  double out_scale;  // multiplies every divergence (1 / log(base))
  S* grad;  // or null
  idx grad_row_stride;
  T grad_scale;
  // Options (temperature=, where=; zero-initialized: none): both logits times `scale`
  // (1/T) when `scaled`; a mask of n bytes per row (contiguous along the axis, rows
  // mask_row_stride apart), 0 = class left out of both distributions, or null.
  bool scaled;
  T scale;
  const std::uint8_t* mask;
  idx mask_row_stride;
};

// Binary cross-entropy from logits over `rows` x `n` contiguous elements.
template <class S>
struct BceRows {
  using T = compute_t<S>;  // scalars are in the compute type
  const S* logits;
  const S* target;
  const S* weight;      // full-size weights, or null
  const S* pos_weight;  // rows of n (one shared row when pos_weight_row_stride is 0), or null
  idx pos_weight_row_stride;
  idx rows;
  idx n;
  S* loss;  // per-element loss, or null
  S* grad;  // or null
  T grad_scale;
  // sample_weight= (or null): one weight per run of sample_len elements of the flat
  // array (a sample: an index of the first axis), indexed from the flat index of this
  // call's first element, `offset`; the loss and gradient of each element times its
  // sample's weight.
  const T* sample_weight;
  idx sample_len;
  idx offset;
};

// Outputs of at least this many bytes are written with streaming stores (the *_stream
// kernels, CrossEntropyRows::stream): beyond the last-level cache, where the plain
// stores' reads of the lines they write are DRAM traffic. Smaller outputs stay in the
// cache for whatever reads them next. The choice depends on the shape only, and the
// streamed values are the plain kernels' bit for bit (tests/test_streaming.py).
// 24 MiB: 4096 x 1000 float32 (16 MB) stays plain, where the output stays in this
// machine's 32 MiB L3 for the next reader; 64 x 128256 (33 MB) streams.
constexpr idx kStreamOutputBytes = idx(24) << 20;

template <class S>
struct LossKernels {
  using T = compute_t<S>;  // scalars are in the compute type
  void (*cross_entropy_rows)(const CrossEntropyRows<S>& args);
  void (*cross_entropy_cols)(const CrossEntropyCols<S>& args);
  void (*entropy_rows)(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows, idx n);
  // entropy with options (RowOptions: temperature's scale, where='s mask; no streaming).
  void (*entropy_rows_opt)(const S* x, idx x_row_stride, S* out, idx out_stride, idx rows,
                           idx n, const RowOptions<S>& options);
  void (*kl_divergence_rows)(const KlRows<S>& args);
  void (*softmax_backward_rows)(const S* g, idx g_row_stride, const S* p, idx p_row_stride,
                                S* out, idx out_row_stride, idx rows, idx n);
  void (*log_softmax_backward_rows)(const S* g, idx g_row_stride, const S* logp,
                                    idx logp_row_stride, S* out, idx out_row_stride, idx rows,
                                    idx n);
  void (*sigmoid)(const S* x, S* out, idx n);
  void (*log_sigmoid)(const S* x, S* out, idx n);
  double (*bce_rows)(const BceRows<S>& args);  // returns the sum of the losses
  // cross_entropy_rows with the options of CrossEntropyRows (temperature, softcap, z_loss,
  // mask, sample weights) transformed on load: every option call goes through it.
  void (*cross_entropy_rows_options)(const CrossEntropyRows<S>& args);
};

struct KernelTable {
  const char* name;
  idx vector_bytes;  // width of this target's vectors
  SoftmaxKernels<float> f32;
  SoftmaxKernels<double> f64;
  SoftmaxKernels<Float16> f16;
  SoftmaxKernels<BFloat16> bf16;
  LossKernels<float> loss_f32;
  LossKernels<double> loss_f64;
  LossKernels<Float16> loss_f16;
  LossKernels<BFloat16> loss_bf16;
};

template <class S>
const SoftmaxKernels<S>& kernels_for(const KernelTable& table);
template <>
inline const SoftmaxKernels<float>& kernels_for<float>(const KernelTable& table) {
  return table.f32;
}
template <>
inline const SoftmaxKernels<double>& kernels_for<double>(const KernelTable& table) {
  return table.f64;
}
template <>
inline const SoftmaxKernels<Float16>& kernels_for<Float16>(const KernelTable& table) {
  return table.f16;
}
template <>
inline const SoftmaxKernels<BFloat16>& kernels_for<BFloat16>(const KernelTable& table) {
  return table.bf16;
}

template <class S>
const LossKernels<S>& loss_kernels_for(const KernelTable& table);
template <>
inline const LossKernels<float>& loss_kernels_for<float>(const KernelTable& table) {
  return table.loss_f32;
}
template <>
inline const LossKernels<double>& loss_kernels_for<double>(const KernelTable& table) {
  return table.loss_f64;
}
template <>
inline const LossKernels<Float16>& loss_kernels_for<Float16>(const KernelTable& table) {
  return table.loss_f16;
}
template <>
inline const LossKernels<BFloat16>& loss_kernels_for<BFloat16>(const KernelTable& table) {
  return table.loss_bf16;
}

// Elements of S's compute type in one of the table's vectors (the kernels' block width).
template <class S>
idx lanes_for(const KernelTable& table) {
  return table.vector_bytes / static_cast<idx>(sizeof(compute_t<S>));
}

}  // namespace logitkit
