// Bindings of the losses (csrc/logitkit/losses.hpp). As in bindings.cpp: check buffers,
// release the GIL, call the core; the Python layer validates arguments and reduces.
#include <pybind11/stl.h>

#include <optional>
#include <tuple>

#include "bindings_common.hpp"
#include "logitkit/losses.hpp"

namespace logitkit_bindings {

using logitkit::CrossEntropyArgs;
using logitkit::LossResult;
using logitkit::Reduction;

namespace {

using OptArray = std::optional<py::array>;

// Views of optional arrays, kept alive next to the pointers handed to the core.
struct OptionalView {
  std::optional<StridedArray> view;
  const StridedArray* get() const { return view ? &*view : nullptr; }
};

OptionalView optional_view(const OptArray& a, DType dt, const char* what, bool writeable) {
  OptionalView v;
  if (a) v.view = view_as(*a, dt, what, writeable);
  return v;
}

py::ssize_t size_of(const OptArray& a) { return a ? a->size() : 0; }

const void* contiguous_data(const OptArray& a, DType dt, const char* what) {
  if (!a) return nullptr;
  if (dtype_of(*a, what) != dt) throw py::type_error(std::string(what) + " has the wrong dtype");
  if (!(a->flags() & py::array::c_style))
    throw py::value_error(std::string(what) + " must be C-contiguous");
  if (!(a->flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(what) + " must be aligned");
  return a->data();
}

// Class weights are a small vector in the compute type (float32 for 16-bit input).
DType weight_dtype(DType dt) {
  return dt == DType::float16 || dt == DType::bfloat16 ? DType::float32 : dt;
}

StridedArray label_view(const py::array& labels) {
  if (!labels.dtype().equal(py::dtype::of<std::int64_t>()))
    throw py::type_error("labels must be int64");
  return view_of(labels, "labels", false);
}

std::tuple<py::ssize_t, std::int64_t, double, double, py::ssize_t> to_tuple(
    const LossResult& r) {
  return {r.bad_label, r.bad_value, r.loss_sum, r.denominator, r.counted};
}

}  // namespace

void register_losses(py::module_& m) {
  m.def(
      "cross_entropy",
      [](const py::array& logits, const OptArray& labels, const OptArray& probs,
         const OptArray& weight, std::int64_t ignore_index, double smoothing, int reduction,
         const OptArray& loss, const OptArray& grad, int axis, std::int64_t workers_arg,
         double temperature, double softcap, double z_loss, const OptArray& where,
         const OptArray& sample_weight) {
        const DType dt = dtype_of(logits, "logits");
        const int workers = checked_workers(workers_arg);
        const StridedArray zv = view_of(logits, "logits", false);
        std::optional<StridedArray> label_v;
        if (labels) label_v = label_view(*labels);
        const OptionalView probs_v = optional_view(probs, dt, "target", false);
        const OptionalView loss_v = optional_view(loss, dt, "loss", true);
        const OptionalView grad_v = optional_view(grad, dt, "grad_out", true);
        CrossEntropyArgs args{};
        args.axis = axis;
        args.labels = label_v ? &*label_v : nullptr;
        args.probs = probs_v.get();
        args.weight = contiguous_data(weight, weight_dtype(dt), "weight");
        args.weight_size = size_of(weight);
        args.ignore_index = ignore_index;
        args.smoothing = smoothing;
        args.reduction = static_cast<Reduction>(reduction);
        args.loss = loss_v.get();
        args.grad = grad_v.get();
        args.temperature = temperature;
        args.softcap = softcap;
        args.z_loss = z_loss;
        std::optional<StridedArray> where_v, sample_weight_v;
        if (where) {
          if (!where->dtype().equal(py::dtype::of<std::uint8_t>()))
            throw py::type_error("where must be a uint8 view of a boolean mask");
          where_v = view_of(*where, "where", false);
          args.where = &*where_v;
        }
        if (sample_weight) {
          if (!sample_weight->dtype().equal(py::dtype::of<double>()))
            throw py::type_error("sample_weight must be float64");
          sample_weight_v = view_of(*sample_weight, "sample_weight", false);
          args.sample_weight = &*sample_weight_v;
        }
        // Safe without the GIL: the core reads and writes only these buffers, which the
        // caller's arguments keep alive, and calls no Python API.
        const ReleaseGilIfLarge release(logits.size());
        return to_tuple(logitkit::cross_entropy(dt, zv, args, workers));
      },
      py::arg("logits"), py::arg("labels"), py::arg("probs"), py::arg("weight"),
      py::arg("ignore_index"), py::arg("smoothing"), py::arg("reduction"), py::arg("loss"),
      py::arg("grad"), py::arg("axis"), py::arg("workers") = 1, py::arg("temperature") = 1.0,
      py::arg("softcap") = 0.0, py::arg("z_loss") = 0.0, py::arg("where") = py::none(),
      py::arg("sample_weight") = py::none());

  m.def(
      "nll_loss",
      [](const py::array& log_probs, const py::array& labels, const OptArray& weight,
         std::int64_t ignore_index, int reduction, const OptArray& loss, int axis) {
        const DType dt = dtype_of(log_probs, "log_probs");
        const StridedArray lv = view_of(log_probs, "log_probs", false);
        const StridedArray label_v = label_view(labels);
        const OptionalView loss_v = optional_view(loss, dt, "loss", true);
        CrossEntropyArgs args{};
        args.axis = axis;
        args.labels = &label_v;
        args.weight = contiguous_data(weight, weight_dtype(dt), "weight");
        args.weight_size = size_of(weight);
        args.ignore_index = ignore_index;
        args.reduction = static_cast<Reduction>(reduction);
        args.loss = loss_v.get();
        py::gil_scoped_release release;  // as for cross_entropy
        return to_tuple(logitkit::nll_loss(dt, lv, args));
      },
      py::arg("log_probs"), py::arg("labels"), py::arg("weight"), py::arg("ignore_index"),
      py::arg("reduction"), py::arg("loss"), py::arg("axis"));

  m.def("entropy", rows_with_options(&logitkit::entropy), py::arg("x"), py::arg("out"),
        py::arg("axis"), py::arg("workers") = 1, py::arg("scale") = py::none(),
        py::arg("where") = py::none());

  m.def(
      "kl_divergence",
      [](const py::array& p, const py::array& q, const py::array& out, double out_scale,
         const OptArray& grad, double grad_scale, int axis, std::int64_t workers_arg,
         std::optional<double> scale, const OptArray& where) {
        const int workers = checked_workers(workers_arg);
        const DType dt = dtype_of(p, "p_logits");
        const OptionArgs options(scale, where, p);
        const StridedArray pv = view_of(p, "p_logits", false);
        const StridedArray qv = view_as(q, dt, "q_logits", false);
        const StridedArray ov = view_as(out, DType::float64, "out (float64)", true);
        const OptionalView gv = optional_view(grad, dt, "grad", true);
        py::gil_scoped_release release;  // only these buffers are touched
        logitkit::kl_divergence(dt, pv, qv, ov, out_scale, gv.get(), grad_scale, axis,
                                workers, options.softmax());
      },
      py::arg("p"), py::arg("q"), py::arg("out"), py::arg("out_scale"), py::arg("grad"),
      py::arg("grad_scale"), py::arg("axis"), py::arg("workers") = 1,
      py::arg("scale") = py::none(), py::arg("where") = py::none());

  auto backward = [](auto fn) {
    return [fn](const py::array& g, const py::array& y, const py::array& out, int axis,
                std::int64_t workers_arg) {
      const int workers = checked_workers(workers_arg);
      const DType dt = dtype_of(g, "grad_output");
      const StridedArray gv = view_of(g, "grad_output", false);
      const StridedArray yv = view_as(y, dt, "probabilities", false);
      const StridedArray ov = view_as(out, dt, "out", true);
      py::gil_scoped_release release;  // only these buffers are touched
      fn(dt, gv, yv, ov, axis, workers);
    };
  };
  m.def("softmax_backward", backward(&logitkit::softmax_backward), py::arg("grad_output"),
        py::arg("probs"), py::arg("out"), py::arg("axis"), py::arg("workers") = 1);
  m.def("log_softmax_backward", backward(&logitkit::log_softmax_backward),
        py::arg("grad_output"), py::arg("log_probs"), py::arg("out"), py::arg("axis"),
        py::arg("workers") = 1);

  auto elementwise = [](auto fn) {
    return [fn](const py::array& x, const py::array& out, std::int64_t workers_arg) {
      const int workers = checked_workers(workers_arg);
      const DType dt = dtype_of(x, "x");
      if (dtype_of(out, "out") != dt) throw py::type_error("out must have the dtype of x");
      if (!(x.flags() & py::array::c_style) || !(out.flags() & py::array::c_style) ||
          x.size() != out.size())
        throw py::value_error("x and out must be C-contiguous arrays of the same size");
      if (!out.writeable()) throw py::value_error("out must be writeable");
      const void* xp = x.data();
      void* op = const_cast<void*>(out.data());
      const py::ssize_t size = x.size();
      py::gil_scoped_release release;  // only these buffers are touched
      fn(dt, xp, op, size, workers);
    };
  };
  m.def("sigmoid", elementwise(&logitkit::sigmoid), py::arg("x"), py::arg("out"),
        py::arg("workers") = 1);
  m.def("log_sigmoid", elementwise(&logitkit::log_sigmoid), py::arg("x"), py::arg("out"),
        py::arg("workers") = 1);

  m.def(
      "binary_cross_entropy",
      [](const py::array& logits, const py::array& target, const OptArray& weight,
         const OptArray& pos_weight, const OptArray& loss, const OptArray& grad,
         double grad_scale, std::int64_t workers_arg, const OptArray& sample_weight,
         std::int64_t sample_len) {
        const int workers = checked_workers(workers_arg);
        const DType dt = dtype_of(logits, "logits");
        const void* z = contiguous_data(logits, dt, "logits");
        const void* y = contiguous_data(target, dt, "target");
        const void* w = contiguous_data(weight, dt, "weight");
        const void* pw = contiguous_data(pos_weight, dt, "pos_weight");
        const py::ssize_t size = logits.size();
        const py::ssize_t n = logits.ndim() > 0 ? logits.shape(logits.ndim() - 1) : 1;
        const bool pos_weight_full = pos_weight && pos_weight->size() == size && size != n;
        if (target.size() != size || (weight && weight->size() != size) ||
            (pos_weight && pos_weight->size() != n && !pos_weight_full) ||
            (loss && loss->size() != size) || (grad && grad->size() != size))
          throw py::value_error("binary_cross_entropy: operand sizes do not match");
        void* lo = loss ? const_cast<void*>(contiguous_data(loss, dt, "loss")) : nullptr;
        void* g = grad ? const_cast<void*>(contiguous_data(grad, dt, "grad_out")) : nullptr;
        if ((loss && !loss->writeable()) || (grad && !grad->writeable()))
          throw py::value_error("outputs must be writeable");
        const py::ssize_t rows = n > 0 ? size / n : 0;
        const double* sw = static_cast<const double*>(
            contiguous_data(sample_weight, DType::float64, "sample_weight"));
        if (sample_weight &&
            (sample_len < 1 || sample_weight->size() * sample_len != size))
          throw py::value_error("binary_cross_entropy: sample_weight size does not match");
        py::gil_scoped_release release;  // only these buffers are touched
        return logitkit::binary_cross_entropy(dt, z, y, w, pw, pos_weight_full, rows, n, lo, g,
                                              grad_scale, workers, sw, sample_len);
      },
      py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("pos_weight"),
      py::arg("loss"), py::arg("grad"), py::arg("grad_scale"), py::arg("workers") = 1,
      py::arg("sample_weight") = py::none(), py::arg("sample_len") = 1);
}

}  // namespace logitkit_bindings
