#include "losses.hpp"

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "dispatch.hpp"
#include "parallel.hpp"
#include "row_driver.hpp"
#include "storage.hpp"

namespace logitkit {
namespace {

constexpr idx kLabelSize = sizeof(std::int64_t);


// The per-row losses as the kernels write them: a C-contiguous array of doubles of the
// batch shape, zeroed (a float32 row's loss may overflow float32 while the batch's mean
// does not; finish_rows rounds them for reduction "none").
struct LossBuffer {
  std::vector<double> values;
  StridedArray view;
  LossBuffer(const StridedArray& logits, int axis) {
    idx count = 1;
    for (size_t d = 0; d < logits.shape.size(); ++d) {
      if (static_cast<int>(d) == axis) continue;
      view.shape.push_back(logits.shape[d]);
      count *= logits.shape[d];
    }
    values.resize(static_cast<size_t>(count));
    view.data = values.data();
    view.strides.assign(view.shape.size(), 0);
    idx stride = sizeof(double);
    for (int d = static_cast<int>(view.shape.size()) - 1; d >= 0; --d) {
      view.strides[d] = stride;
      stride *= view.shape[d] > 0 ? view.shape[d] : 1;
    }
  }
};

// `condition ? a : b` without a branch (GCC branches on a select of doubles).
inline double select_bits(bool condition, double a, double b) {
  std::uint64_t a_bits, b_bits;
  std::memcpy(&a_bits, &a, sizeof a);
  std::memcpy(&b_bits, &b, sizeof b);
  const std::uint64_t mask = std::uint64_t(0) - std::uint64_t(condition);
  const std::uint64_t bits = (a_bits & mask) | (b_bits & ~mask);
  double result;
  std::memcpy(&result, &bits, sizeof result);
  return result;
}

// The sum of the per-row losses (in the kernels' double buffer), in C order; for
// reduction "none" also stores them, rounded to T, in the caller's array.
template <class S>
double finish_rows(const StridedArray& logits, const LossBuffer& rows,
                   const StridedArray* out, int axis) {
  const double* values = rows.values.data();
  // Neumaier's compensated sum: per-row losses of both signs and very different sizes
  // (nll_loss of log-probabilities of +-1e150 and 18.5) must not lose the small ones to
  // the order of summation. One pass over one value per row: negligible next to the rows.
  // The larger and the smaller in magnitude of total and v are selected as bits: with a
  // branch (mispredicted for rows of random sizes, and keeping `total` in memory) this
  // took 0.35 us for 128 rows.
  double total = 0, compensation = 0;
  for (const double v : rows.values) {
    const double t = total + v;
    const bool total_larger = std::fabs(total) >= std::fabs(v);
    const double larger = select_bits(total_larger, total, v);
    const double smaller = select_bits(total_larger, v, total);
    compensation += (larger - t) + smaller;
    total = t;
  }
  if (std::isfinite(total)) total += compensation;  // else NaN from inf - inf in it
  if (out) {
    S* dst = static_cast<S*>(out->data);
    idx i = 0;
    for_each_row_value({{&logits, true, sizeof(S), false}, {out, false, sizeof(S), true}}, axis,
                       [&](const auto& off) { dst[off[1]] = storage_from_double<S>(values[i++]); });
  }
  return total;
}

// Checks the labels and computes the denominator of "mean" (sum of the weights of the
// non-ignored labels). Stops at the first bad label.
template <class S>
LossResult check_labels(const StridedArray& logits, const CrossEntropyArgs& args) {
  using T = compute_t<S>;
  LossResult result;
  const idx n = logits.shape[args.axis];
  const T* weight = static_cast<const T*>(args.weight);
  const auto* labels = static_cast<const std::int64_t*>(args.labels->data);
  idx position = 0;
  bool bad = false;
  if (args.sample_weight) {
    // "mean" divides by sum over counted rows of s_r * w_{t_r}.
    const auto* sw = static_cast<const double*>(args.sample_weight->data);
    for_each_row_value({{&logits, true, sizeof(S), false},
                        {args.labels, false, kLabelSize, false},
                        {args.sample_weight, false, sizeof(double), false}},
                       args.axis, [&](const auto& off) {
                         if (bad) return;
                         const std::int64_t t = labels[off[1]];
                         if (t != args.ignore_index) {
                           if (t < 0 || t >= n) {
                             bad = true;
                             result.bad_label = position;
                             result.bad_value = t;
                             return;
                           }
                           result.denominator += sw[off[2]] * (weight ? double(weight[t]) : 1.0);
                           ++result.counted;
                         }
                         ++position;
                       });
    return result;
  }
  for_each_row_value({{&logits, true, sizeof(S), false}, {args.labels, false, kLabelSize, false}},
                     args.axis, [&](const auto& off) {
                       if (bad) return;
                       const std::int64_t t = labels[off[1]];
                       if (t != args.ignore_index) {
                         if (t < 0 || t >= n) {
                           bad = true;
                           result.bad_label = position;
                           result.bad_value = t;
                           return;
                         }
                         if (weight) result.denominator += double(weight[t]);
                         ++result.counted;
                       }
                       ++position;
                     });
  // Without weights the sum of ones is the count, exactly (a chain of dependent
  // additions otherwise: 4 cycles a row).
  if (!weight) result.denominator = double(result.counted);
  return result;
}

// Every entry point checks the axis before reading shape[axis] (the bindings pass it on
// unchecked; the Python layer has normalized it). check_args: that, the reduction code
// and the class-weight length of cross_entropy / nll_loss.
void check_axis(const StridedArray& x, int axis) {
  if (axis < 0 || axis >= static_cast<int>(x.shape.size()))
    throw std::invalid_argument("axis out of range");
}

void check_args(const StridedArray& logits, const CrossEntropyArgs& args) {
  check_axis(logits, args.axis);
  if (args.reduction != Reduction::none && args.reduction != Reduction::sum &&
      args.reduction != Reduction::mean)
    throw std::invalid_argument("unknown reduction code");
  if (args.weight && args.weight_size != logits.shape[args.axis])
    throw std::invalid_argument("weight must have one value per class");
  // The options (the Python layer has checked them; checked again, never trusted).
  if (!(std::isfinite(args.temperature) && args.temperature > 0))
    throw std::invalid_argument("temperature must be finite and > 0");
  if (!(std::isfinite(args.softcap) && args.softcap >= 0))
    throw std::invalid_argument("softcap must be finite and > 0");
  if (!(std::isfinite(args.z_loss) && args.z_loss >= 0))
    throw std::invalid_argument("z_loss must be finite and >= 0");
  if (args.where && (args.where->shape.size() != logits.shape.size() ||
                     !std::equal(logits.shape.begin(), logits.shape.end(),
                                 args.where->shape.begin())))
    throw std::invalid_argument("where must have the logits' shape");
  if (args.sample_weight) {
    if (args.sample_weight->shape.size() + 1 != logits.shape.size())
      throw std::invalid_argument("sample_weight must have the batch shape");
    for (size_t d = 0, e = 0; d < logits.shape.size(); ++d) {
      if (static_cast<int>(d) == args.axis) continue;
      if (args.sample_weight->shape[e++] != logits.shape[d])
        throw std::invalid_argument("sample_weight must have the batch shape");
    }
  }
}

idx batch_size(const StridedArray& logits, int axis) {
  idx count = 1;
  for (size_t d = 0; d < logits.shape.size(); ++d)
    if (static_cast<int>(d) != axis) count *= logits.shape[d];
  return count;
}

// Short rows, or a class axis that is not contiguous: the column kernel, vectorized across
// samples. Returns false when the rows kernel should run instead.
template <class S>
bool cross_entropy_by_columns(const KernelTable& table, const StridedArray& logits,
                              const CrossEntropyArgs& args, const StridedArray& loss,
                              const compute_t<S>* weight, double weight_sum,
                              double grad_scale, int workers) {
  using T = compute_t<S>;
  OperandList<const StridedArray*> arrays = {&logits, args.labels, &loss};
  OperandList<bool> has_axis = {true, false, false};
  OperandList<idx> sizes = {sizeof(S), kLabelSize, sizeof(double)};
  if (args.grad) {
    arrays.push_back(args.grad);
    has_axis.push_back(true);
    sizes.push_back(sizeof(S));
  }
  const AxisPlan plan = plan_axis(arrays, has_axis, args.axis, sizes);
  if (plan.empty_batch) return true;  // no samples: nothing to compute or write
  if (plan.batch.empty()) return false;
  const bool grad_contiguous = !args.grad || plan.axis_stride[3] == 1;
  const bool contiguous_rows = plan.axis_stride[0] == 1 && grad_contiguous;
  if (contiguous_rows && !short_rows(plan.n, lanes_for<S>(table))) return false;
  // The samples to vectorize across: a dimension contiguous in the logits (and gradient)
  // if there is one, else the longest.
  int d = pick_batch_dim(plan, [&](const BatchDim& b) {
    return b.stride[0] == 1 && (!args.grad || b.stride[3] == 1);
  });
  if (d < 0) d = pick_batch_dim(plan, [](const BatchDim&) { return true; });
  const BatchDim& b = plan.batch[d];
  const LossKernels<S>& kernels = loss_kernels_for<S>(table);
  const S* z = static_cast<const S*>(logits.data);
  const auto* labels = static_cast<const std::int64_t*>(args.labels->data);
  double* lo = static_cast<double*>(loss.data);
  S* g = args.grad ? static_cast<S*>(args.grad->data) : nullptr;
  bool contiguous_columns = true;
  for (int k = 0; k < plan.operands; ++k)
    if (k != 1 && k != 2 && b.stride[k] != 1) contiguous_columns = false;
  const idx block = rows_per_task(plan.n, contiguous_columns ? 256 : 64);
  for_each_block(plan, d, block, plan.n, workers, [&](auto off, idx begin, idx count) {
    for (int k = 0; k < plan.operands; ++k) off[k] += begin * b.stride[k];
    CrossEntropyCols<S> a{};
    a.logits = z + off[0];
    a.axis_stride = plan.axis_stride[0];
    a.col_stride = b.stride[0];
    a.n = plan.n;
    a.cols = count;
    a.labels = labels + off[1];
    a.label_stride = b.stride[1];
    a.ignore_index = args.ignore_index;
    a.weight = weight;
    a.weight_sum = static_cast<T>(weight_sum);
    a.smoothing = static_cast<T>(args.smoothing);
    a.loss = lo + off[2];
    a.loss_stride = b.stride[2];
    if (g) {
      a.grad = g + off[3];
      a.grad_axis_stride = plan.axis_stride[3];
      a.grad_col_stride = b.stride[3];
    }
    a.grad_scale = static_cast<T>(grad_scale);
    kernels.cross_entropy_cols(a);
  });
  return true;
}

template <class S>
void cross_entropy_by_rows(const KernelTable& table, const StridedArray& logits,
                           const CrossEntropyArgs& args, const StridedArray& loss,
                           const compute_t<S>* weight, double weight_sum,
                           double grad_scale, int workers) {
  using T = compute_t<S>;
  const int axis = args.axis;
  RowOperands ops = {{&logits, true, sizeof(S), false},
                     {&loss, false, sizeof(double), true}};
  const int k_grad = args.grad ? static_cast<int>(ops.size()) : -1;
  if (args.grad) ops.push_back({args.grad, true, sizeof(S), true});
  const int k_target = static_cast<int>(ops.size());
  if (args.labels)
    ops.push_back({args.labels, false, kLabelSize, false});
  else
    ops.push_back({args.probs, true, sizeof(S), false});

  // The options' per-row operands: the mask as a row value (its class stride goes to the
  // kernel, which gathers a row that is not contiguous) and the sample weights.
  const bool options = args.has_options();
  StridedArray mask_rows;
  idx mask_class_stride = 0;
  int k_mask = -1, k_weight = -1;
  if (options && args.where) {
    mask_rows.data = args.where->data;
    for (size_t d = 0; d < args.where->shape.size(); ++d) {
      if (static_cast<int>(d) == axis) continue;
      mask_rows.shape.push_back(args.where->shape[d]);
      mask_rows.strides.push_back(args.where->strides[d]);
    }
    mask_class_stride = args.where->strides[axis];  // bytes = elements (uint8)
    k_mask = static_cast<int>(ops.size());
    ops.push_back({&mask_rows, false, 1, false});
  }
  if (options && args.sample_weight) {
    k_weight = static_cast<int>(ops.size());
    ops.push_back({args.sample_weight, false, sizeof(double), false});
  }
  const LossKernels<S>& kernels = loss_kernels_for<S>(table);
  bool stream = false;
  if (args.grad) {
    idx grad_bytes = static_cast<idx>(sizeof(S));
    for (const idx len : args.grad->shape) grad_bytes *= len;
    stream = grad_bytes >= kStreamOutputBytes;
  }
  run_rows(ops, axis, workers, [&](const RowBatch& b) {
    CrossEntropyRows<S> a{};
    a.logits = b.at<const S>(0);
    a.logits_row_stride = b.row_stride[0];
    a.rows = b.rows;
    a.n = b.n;
    a.loss = b.at<double>(1);
    a.loss_stride = b.row_stride[1];
    if (k_grad >= 0) {
      a.grad = b.at<S>(k_grad);
      a.grad_row_stride = b.row_stride[k_grad];
    }
    if (args.labels) {
      a.labels = b.at<const std::int64_t>(k_target);
      a.label_stride = b.row_stride[k_target];
    } else {
      a.probs = b.at<const S>(k_target);
      a.probs_row_stride = b.row_stride[k_target];
    }
    a.ignore_index = args.ignore_index;
    a.weight = weight;
    a.weight_sum = static_cast<T>(weight_sum);
    a.smoothing = static_cast<T>(args.smoothing);
    a.grad_scale = static_cast<T>(grad_scale);
    a.stream = stream;
    if (!options) return kernels.cross_entropy_rows(a);
    a.inv_temperature = static_cast<T>(1.0 / args.temperature);
    a.softcap = static_cast<T>(args.softcap);
    a.z_loss = static_cast<T>(args.z_loss);
    if (k_mask >= 0) {
      a.mask = b.at<const std::uint8_t>(k_mask);
      a.mask_row_stride = b.row_stride[k_mask];
      a.mask_class_stride = mask_class_stride;
    }
    if (k_weight >= 0) {
      a.sample_weight = b.at<const double>(k_weight);
      a.sample_weight_stride = b.row_stride[k_weight];
    }
    kernels.cross_entropy_rows_options(a);
  });
}

template <class S>
LossResult cross_entropy_typed(const StridedArray& logits, const CrossEntropyArgs& args,
                               int workers) {
  using T = compute_t<S>;
  const int axis = args.axis;
  if ((args.labels == nullptr) == (args.probs == nullptr))
    throw std::invalid_argument("cross_entropy takes either labels or probabilities");
  check_args(logits, args);
  LossResult result;
  if (args.labels) {
    result = check_labels<S>(logits, args);
    if (result.bad_label >= 0) return result;
  } else {
    result.counted = batch_size(logits, axis);
    result.denominator = double(result.counted);
    if (args.sample_weight) {
      // Probability targets: "mean" divides by the sum of the sample weights.
      const auto* sw = static_cast<const double*>(args.sample_weight->data);
      double total = 0;
      for_each_row_value({{&logits, true, sizeof(S), false},
                          {args.sample_weight, false, sizeof(double), false}},
                         axis, [&](const auto& off) { total += sw[off[1]]; });
      result.denominator = total;
    }
  }
  const idx n = logits.shape[axis];
  const T* weight = static_cast<const T*>(args.weight);
  double weight_sum = 0;
  for (idx c = 0; c < n; ++c) weight_sum += weight ? double(weight[c]) : 1.0;

  // The kernels write per-row losses in double here; "none" gets them rounded after.
  LossBuffer buffer(logits, axis);
  const StridedArray& loss = buffer.view;
  double grad_scale = 1.0;
  // A mean over no rows is 0 with a zero gradient (a fully padded batch); otherwise it
  // divides by the total weight, whatever its sign (PyTorch's weighted mean).
  if (args.reduction == Reduction::mean)
    grad_scale = result.counted > 0 ? 1.0 / result.denominator : 0.0;

  if (n == 0) {
    // No classes: every loss is 0 (an empty sum) and there is no gradient to write.
    finish_rows<S>(logits, buffer, args.loss, axis);  // the buffer starts zeroed
    return result;
  }

  // The target is read once: the choice of kernel depends on its vector width, and a
  // switch by another thread must not pair one target's choice with another's kernels.
  const KernelTable& table = active_kernels();
  // Calls with options go through the rows kernel with options (gathering rows that are
  // not contiguous along the classes); the column kernels have none.
  const bool by_columns =
      args.labels && !args.has_options() &&
      cross_entropy_by_columns<S>(table, logits, args, loss, weight, weight_sum, grad_scale,
                                  workers);
  if (!by_columns)
    cross_entropy_by_rows<S>(table, logits, args, loss, weight, weight_sum, grad_scale,
                             workers);
  result.loss_sum = finish_rows<S>(logits, buffer, args.loss, axis);
  return result;
}

template <class S>
LossResult nll_loss_typed(const StridedArray& log_probs, const CrossEntropyArgs& args) {
  using T = compute_t<S>;
  if (!args.labels) throw std::invalid_argument("nll_loss takes labels");
  check_args(log_probs, args);
  LossResult result = check_labels<S>(log_probs, args);
  if (result.bad_label >= 0) return result;
  const T* weight = static_cast<const T*>(args.weight);
  const idx n = log_probs.shape[args.axis];
  LossBuffer buffer(log_probs, args.axis);
  const idx axis_stride = log_probs.strides[args.axis] / static_cast<idx>(sizeof(S));
  const S* lp = static_cast<const S*>(log_probs.data);
  const auto* labels = static_cast<const std::int64_t*>(args.labels->data);
  double* out = buffer.values.data();
  idx i = 0;
  // A gather, one value per row: no vector kernel needed. (Labels out of range here were
  // changed since they were validated: skipped, never indexed with.)
  for_each_row_value({{&log_probs, true, sizeof(S), false},
                      {args.labels, false, kLabelSize, false}},
                     args.axis, [&](const auto& off) {
                       const std::int64_t t = labels[off[1]];
                       double value = 0;
                       if (t != args.ignore_index && t >= 0 && t < n) {
                         const double w = weight ? double(weight[t]) : 1.0;
                         value = -(w * storage_to_double(lp[off[0] + t * axis_stride]));
                       }
                       out[i++] = value;
                     });
  result.loss_sum = finish_rows<S>(log_probs, buffer, args.loss, args.axis);
  return result;
}

template <class S>
void entropy_typed(const StridedArray& logits, const StridedArray& out, int axis,
                   int workers, const SoftmaxOptions& o) {
  check_axis(logits, axis);
  const LossKernels<S>& k = loss_kernels_for<S>(active_kernels());
  if (logits.shape[axis] == 0) {
    for_each_row_value({{&logits, true, sizeof(S), false}, {&out, false, sizeof(S), true}}, axis,
                       [&](const auto& off) {
                         static_cast<S*>(out.data)[off[1]] = storage_from_double<S>(0.0);
                       });
    return;
  }
  if (o.scaled || o.where) {
    // Options: the row kernel with options; rows not contiguous along the axis (and a
    // mask broadcast along it) gathered one at a time.
    using T = compute_t<S>;
    RowOperands ops = {{&logits, true, sizeof(S), false}, {&out, false, sizeof(S), true}};
    if (o.where) ops.push_back({o.where, true, 1, false});
    run_rows(ops, axis, workers, [&](const RowBatch& b) {
      RowOptions<S> ro{o.scaled, static_cast<T>(o.scale), nullptr, 0, false};
      if (o.where) {
        ro.mask = b.at<const std::uint8_t>(2);
        ro.mask_row_stride = b.row_stride[2];
      }
      k.entropy_rows_opt(b.at<const S>(0), b.row_stride[0], b.at<S>(1), b.row_stride[1],
                         b.rows, b.n, ro);
    });
    return;
  }
  run_rows({{&logits, true, sizeof(S), false}, {&out, false, sizeof(S), true}}, axis, workers,
           [&](const RowBatch& b) {
             k.entropy_rows(b.at<const S>(0), b.row_stride[0], b.at<S>(1), b.row_stride[1],
                            b.rows, b.n);
           });
}

template <class S>
void kl_typed(const StridedArray& p, const StridedArray& q, const StridedArray& out,
              double out_scale, const StridedArray* grad, double grad_scale, int axis,
              int workers, const SoftmaxOptions& o) {
  using T = compute_t<S>;
  check_axis(p, axis);
  const LossKernels<S>& k = loss_kernels_for<S>(active_kernels());
  if (p.shape[axis] == 0) {
    for_each_row_value({{&p, true, sizeof(S), false}, {&out, false, sizeof(double), true}},
                       axis, [&](const auto& off) { static_cast<double*>(out.data)[off[1]] = 0; });
    return;
  }
  RowOperands ops = {{&p, true, sizeof(S), false},
                     {&q, true, sizeof(S), false},
                     {&out, false, sizeof(double), true}};
  if (grad) ops.push_back({grad, true, sizeof(S), true});
  const int mask_operand = static_cast<int>(ops.size());
  if (o.where) ops.push_back({o.where, true, 1, false});
  auto kernel = [&](const RowBatch& b) {
    KlRows<S> a{};
    a.p_logits = b.at<const S>(0);
    a.p_row_stride = b.row_stride[0];
    a.q_logits = b.at<const S>(1);
    a.q_row_stride = b.row_stride[1];
    a.out = b.at<double>(2);
    a.out_stride = b.row_stride[2];
    a.out_scale = out_scale;
    a.rows = b.rows;
    a.n = b.n;
    if (grad) {
      a.grad = b.at<S>(3);
      a.grad_row_stride = b.row_stride[3];
    }
    a.grad_scale = static_cast<T>(grad_scale);
    a.scaled = o.scaled;
    a.scale = static_cast<T>(o.scale);
    if (o.where) {
      a.mask = b.at<const std::uint8_t>(mask_operand);
      a.mask_row_stride = b.row_stride[mask_operand];
    }
    k.kl_divergence_rows(a);
  };
  run_rows(ops, axis, workers, kernel);  // (it gathers the uint8 mask too)
}

template <class S, bool kLog>
void backward_typed(const StridedArray& g, const StridedArray& y, const StridedArray& out,
                    int axis, int workers) {
  check_axis(g, axis);
  const LossKernels<S>& k = loss_kernels_for<S>(active_kernels());
  if (g.shape[axis] == 0) return;
  auto fn = kLog ? k.log_softmax_backward_rows : k.softmax_backward_rows;
  run_rows({{&g, true, sizeof(S), false}, {&y, true, sizeof(S), false},
            {&out, true, sizeof(S), true}},
           axis, workers, [&](const RowBatch& b) {
             fn(b.at<const S>(0), b.row_stride[0], b.at<const S>(1), b.row_stride[1],
                b.at<S>(2), b.row_stride[2], b.rows, b.n);
           });
}

}  // namespace

LossResult cross_entropy(DType dtype, const StridedArray& logits, const CrossEntropyArgs& args,
                         int workers) {
  return with_storage_type(dtype, [&](auto s) {
    return cross_entropy_typed<decltype(s)>(logits, args, workers);
  });
}

LossResult nll_loss(DType dtype, const StridedArray& log_probs, const CrossEntropyArgs& args) {
  return with_storage_type(dtype, [&](auto s) {
    return nll_loss_typed<decltype(s)>(log_probs, args);
  });
}

void entropy(DType dtype, const StridedArray& logits, const StridedArray& out, int axis,
             int workers, const SoftmaxOptions& options) {
  with_storage_type(dtype, [&](auto s) {
    entropy_typed<decltype(s)>(logits, out, axis, workers, options);
  });
}

void kl_divergence(DType dtype, const StridedArray& p_logits, const StridedArray& q_logits,
                   const StridedArray& out, double out_scale, const StridedArray* grad,
                   double grad_scale, int axis, int workers, const SoftmaxOptions& options) {
  with_storage_type(dtype, [&](auto s) {
    kl_typed<decltype(s)>(p_logits, q_logits, out, out_scale, grad, grad_scale, axis, workers,
                          options);
  });
}

void softmax_backward(DType dtype, const StridedArray& grad_output, const StridedArray& probs,
                      const StridedArray& out, int axis, int workers) {
  with_storage_type(dtype, [&](auto s) {
    backward_typed<decltype(s), false>(grad_output, probs, out, axis, workers);
  });
}

void log_softmax_backward(DType dtype, const StridedArray& grad_output,
                          const StridedArray& log_probs, const StridedArray& out, int axis,
                          int workers) {
  with_storage_type(dtype, [&](auto s) {
    backward_typed<decltype(s), true>(grad_output, log_probs, out, axis, workers);
  });
}

namespace {
// Elementwise kernels over pieces of kTaskElements (fixed by the size).
template <class S, class Kernel>
void elementwise(Kernel kernel, const void* x, void* out, idx size, int workers) {
  const S* xp = static_cast<const S*>(x);
  S* op = static_cast<S*>(out);
  const idx pieces = (size + kTaskElements - 1) / kTaskElements;
  parallel_for(pieces, workers_for(size, workers), [&](idx t) {
    const idx begin = t * kTaskElements;
    kernel(xp + begin, op + begin, size - begin < kTaskElements ? size - begin : kTaskElements);
  });
}
}  // namespace

void sigmoid(DType dtype, const void* x, void* out, idx size, int workers) {
  with_storage_type(dtype, [&](auto s) {
    using S = decltype(s);
    elementwise<S>(loss_kernels_for<S>(active_kernels()).sigmoid, x, out, size, workers);
  });
}

void log_sigmoid(DType dtype, const void* x, void* out, idx size, int workers) {
  with_storage_type(dtype, [&](auto s) {
    using S = decltype(s);
    elementwise<S>(loss_kernels_for<S>(active_kernels()).log_sigmoid, x, out, size, workers);
  });
}

namespace {
// Binary cross-entropy in pieces fixed by the shape: blocks of rows, or pieces of
// kTaskElements of each row when rows are longer than that. The loss sum is the pieces'
// sums added in piece order.
template <class S>
double bce_typed(const void* logits, const void* target, const void* weight,
                 const void* pos_weight, bool pos_weight_full, idx rows, idx n, void* loss,
                 void* grad, double grad_scale, int workers, const double* sample_weight,
                 idx sample_len) {
  using T = compute_t<S>;
  // Sample weights in the compute type (one per sample: a short vector).
  std::vector<T> sample_t;
  if (sample_weight) {
    const idx samples = sample_len > 0 ? (rows * n + sample_len - 1) / sample_len : 0;
    sample_t.resize(static_cast<size_t>(samples));
    for (idx i = 0; i < samples; ++i) sample_t[static_cast<size_t>(i)] = static_cast<T>(sample_weight[i]);
  }
  const LossKernels<S>& k = loss_kernels_for<S>(active_kernels());
  const bool split_rows = n > kTaskElements;
  const idx row_block = split_rows ? 1 : rows_per_task(n);
  const idx row_pieces = split_rows ? (n + kTaskElements - 1) / kTaskElements : 1;
  const idx piece_width = split_rows ? kTaskElements : n;
  const idx tasks = (rows + row_block - 1) / row_block * row_pieces;
  std::vector<double> sums(static_cast<size_t>(tasks > 0 ? tasks : 0));
  auto at = [](const void* p, idx offset) {
    return p ? static_cast<const S*>(p) + offset : nullptr;
  };
  parallel_for(tasks, workers_for(rows * n, workers), [&](idx t) {
    const idx r0 = t / row_pieces * row_block;
    const idx c0 = t % row_pieces * piece_width;
    const idx offset = r0 * n + c0;
    BceRows<S> a{};
    a.logits = at(logits, offset);
    a.target = at(target, offset);
    a.weight = at(weight, offset);
    a.pos_weight = at(pos_weight, pos_weight_full ? offset : c0);
    a.pos_weight_row_stride = pos_weight_full ? n : 0;
    a.rows = rows - r0 < row_block ? rows - r0 : row_block;
    a.n = n - c0 < piece_width ? n - c0 : piece_width;
    a.loss = loss ? static_cast<S*>(loss) + offset : nullptr;
    a.grad = grad ? static_cast<S*>(grad) + offset : nullptr;
    a.grad_scale = static_cast<T>(grad_scale);
    if (sample_weight) {
      a.sample_weight = sample_t.data();
      a.sample_len = sample_len;
      a.offset = offset;
    }
    sums[static_cast<size_t>(t)] = k.bce_rows(a);
  });
  // Compensated, as within the pieces; an infinite or NaN total says so plainly.
  double total = 0, carry = 0, plain = 0;
  for (const double v : sums) {
    const double y = v - carry;
    const double t = total + y;
    carry = (t - total) - y;
    total = t;
    plain += v;
  }
  return plain - plain == 0.0 ? total - carry : plain;
}
}  // namespace

double binary_cross_entropy(DType dtype, const void* logits, const void* target,
                            const void* weight, const void* pos_weight, bool pos_weight_full,
                            idx rows, idx n, void* loss, void* grad, double grad_scale,
                            int workers) {
  return binary_cross_entropy(dtype, logits, target, weight, pos_weight, pos_weight_full, rows,
                              n, loss, grad, grad_scale, workers, nullptr, 1);
}

double binary_cross_entropy(DType dtype, const void* logits, const void* target,
                            const void* weight, const void* pos_weight, bool pos_weight_full,
                            idx rows, idx n, void* loss, void* grad, double grad_scale,
                            int workers, const double* sample_weight, idx sample_len) {
  if (sample_weight && sample_len < 1)
    throw std::invalid_argument("sample_len must be at least 1");
  return with_storage_type(dtype, [&](auto s) {
    return bce_typed<decltype(s)>(logits, target, weight, pos_weight, pos_weight_full, rows, n,
                                  loss, grad, grad_scale, workers, sample_weight, sample_len);
  });
}

}  // namespace logitkit
