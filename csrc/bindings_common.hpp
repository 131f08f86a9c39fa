// Shared by the binding files: turning NumPy arrays into the core's StridedArray, and the
// options (scale=, where=) into the core's options structs.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "logitkit/parallel.hpp"
#include "logitkit/row_state.hpp"
#include "logitkit/softmax.hpp"
#include "logitkit/strided.hpp"

namespace logitkit_bindings {

namespace py = pybind11;
using logitkit::DType;
using logitkit::StridedArray;

inline DType dtype_of(const py::array& a, const char* what) {
  const py::dtype dt = a.dtype();
  if (dt.is(py::dtype::of<float>())) return DType::float32;
  if (dt.is(py::dtype::of<double>())) return DType::float64;
  // Slow path for equal but distinct dtype objects, and the 16-bit formats: NumPy's
  // float16, and ml_dtypes.bfloat16 (recognized by its type code, without importing
  // ml_dtypes; the Python layer has checked that it is that dtype).
  if (dt.equal(py::dtype::of<float>())) return DType::float32;
  if (dt.equal(py::dtype::of<double>())) return DType::float64;
  if (dt.itemsize() == 2 && dt.byteorder() != '>') {
    if (dt.kind() == 'f') return DType::float16;
    if (dt.kind() == 'V' && dt.char_() == 'E') return DType::bfloat16;
  }
  throw py::type_error(std::string(what) +
                       " must be a native float32, float64, float16 or bfloat16 array, got " +
                       py::str(dt).cast<std::string>());
}

inline StridedArray view_of(const py::array& a, const char* what, bool writeable) {
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(what) + " must be aligned");
  if (writeable && !a.writeable())
    throw py::value_error(std::string(what) + " must be writeable");
  StridedArray v;
  v.data = const_cast<void*>(a.data());
  v.shape.assign(a.shape(), a.shape() + a.ndim());
  v.strides.assign(a.strides(), a.strides() + a.ndim());
  return v;
}

// An array of `dt` (the computation's dtype), checked and viewed.
inline StridedArray view_as(const py::array& a, DType dt, const char* what, bool writeable) {
  if (dtype_of(a, what) != dt)
    throw py::type_error(std::string(what) + " must have the dtype of the input");
  return view_of(a, what, writeable);
}

// A where= mask: a uint8 array (the Python layer's np.broadcast_to(where, shape) viewed as
// uint8; any strides, zero strides allowed) of the input's shape.
inline StridedArray mask_view(const py::array& where, const py::array& x) {
  const py::dtype dt = where.dtype();
  if (dt.itemsize() != 1 || (dt.kind() != 'u' && dt.kind() != 'b'))
    throw py::type_error("where must be a bool (uint8) array");
  if (where.ndim() != x.ndim())
    throw py::value_error("where must have the input's shape");
  for (py::ssize_t d = 0; d < x.ndim(); ++d)
    if (where.shape(d) != x.shape(d)) throw py::value_error("where must have the input's shape");
  return view_of(where, "where", false);
}

// The options scale= (None: not scaled) and where= (a mask of x's shape, checked by
// mask_view) of the softmax family, entropy, KL divergence and the row states, as the
// core's options structs. It owns the mask view those point to, so it is neither copied
// nor moved: keep it alive for the call.
class OptionArgs {
 public:
  OptionArgs(std::optional<double> scale, const std::optional<py::array>& where,
             const py::array& x)
      : scaled_(scale.has_value()), scale_(scale.value_or(1.0)) {
    if (where) mask_ = mask_view(*where, x);
  }
  OptionArgs(const OptionArgs&) = delete;
  OptionArgs& operator=(const OptionArgs&) = delete;

  logitkit::SoftmaxOptions softmax() const { return {scaled_, scale_, mask()}; }
  logitkit::StateOptions state() const { return {scaled_, scale_, mask()}; }

 private:
  const StridedArray* mask() const { return mask_ ? &*mask_ : nullptr; }

  bool scaled_;
  double scale_;
  std::optional<StridedArray> mask_;
};

// Releases the GIL for calls on at least kReleaseGilElements elements. Releasing it and
// taking it back costs about 40 ns, a tenth of a whole 32 x 10 softmax, while other
// threads gain nothing from a pause of a microsecond (NumPy's ufuncs keep it for small
// arrays too).
constexpr py::ssize_t kReleaseGilElements = 4096;

class ReleaseGilIfLarge {
 public:
  explicit ReleaseGilIfLarge(py::ssize_t elements) {
    if (elements >= kReleaseGilElements) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

// The Python layer resolves workers= to a positive count (logitkit/_workers.py); counts
// beyond what the pool starts (parallel.hpp's kMaxThreads) act as that many.
inline int checked_workers(std::int64_t workers) {
  if (workers < 1) throw py::value_error("workers must be a positive number of threads");
  return workers < logitkit::kMaxThreads ? static_cast<int>(workers) : logitkit::kMaxThreads;
}

// Checks both arrays and runs fn(dtype, x, out), without the GIL unless x is small.
template <class Fn>
void run_unary(const py::array& x, const py::array& out, Fn fn) {
  const DType dt = dtype_of(x, "x");
  const StridedArray xv = view_of(x, "x", false);
  const StridedArray ov = view_as(out, dt, "out", true);
  // Safe without the GIL: the core touches only these buffers, which x and out (held by
  // the caller's frame) keep alive; it calls no Python API.
  const ReleaseGilIfLarge release(x.size());
  fn(dt, xv, ov);
}

// The binding of a row function with options (softmax, log_softmax, logsumexp, entropy):
// fn(dtype, x, out, axis, workers, options) on checked arrays, as run_unary.
using RowsWithOptions = void (*)(DType, const StridedArray&, const StridedArray&, int, int,
                                 const logitkit::SoftmaxOptions&);

inline auto rows_with_options(RowsWithOptions fn) {
  return [fn](const py::array& x, const py::array& out, int axis, std::int64_t workers_arg,
              std::optional<double> scale, const std::optional<py::array>& where) {
    const int workers = checked_workers(workers_arg);
    const OptionArgs args(scale, where, x);
    const logitkit::SoftmaxOptions options = args.softmax();
    run_unary(x, out,
              [fn, axis, workers, &options](DType dt, const StridedArray& xv,
                                            const StridedArray& ov) {
                fn(dt, xv, ov, axis, workers, options);
              });
  };
}

void register_losses(py::module_& m);

}  // namespace logitkit_bindings
