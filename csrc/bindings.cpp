// pybind11 bindings of the C++ core: check that buffers are what the core expects, release
// the GIL, call the core. No math here; argument handling and docs live in python/logitkit.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "logitkit/dispatch.hpp"
#include "logitkit/softmax.hpp"

namespace py = pybind11;
using logitkit::DType;
using logitkit::StridedArray;

namespace {

DType dtype_of(const py::array& a, const char* what) {
  const py::dtype dt = a.dtype();
  if (dt.is(py::dtype::of<float>())) return DType::float32;
  if (dt.is(py::dtype::of<double>())) return DType::float64;
  // Slow path for equal but distinct dtype objects.
  if (dt.equal(py::dtype::of<float>())) return DType::float32;
  if (dt.equal(py::dtype::of<double>())) return DType::float64;
  throw py::type_error(std::string(what) + " must be a native float32 or float64 array, got " +
                       py::str(dt).cast<std::string>());
}

StridedArray view_of(const py::array& a, const char* what, bool writeable) {
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

// Checks both arrays and runs fn(dtype, x, out) without the GIL.
template <class Fn>
void run_unary(const py::array& x, const py::array& out, Fn fn) {
  const DType dt = dtype_of(x, "x");
  if (dtype_of(out, "out") != dt) throw py::type_error("out must have the dtype of x");
  const StridedArray xv = view_of(x, "x", false);
  const StridedArray ov = view_of(out, "out", true);
  // Safe without the GIL: the core touches only these buffers, which x and out (held by
  // the caller's frame) keep alive; it calls no Python API.
  py::gil_scoped_release release;
  fn(dt, xv, ov);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "logitkit's compiled core. Use the functions in the logitkit package instead.";
  // Choose the SIMD target now, so that a bad LOGITKIT_SIMD fails the import.
  logitkit::active_kernels();

  m.def(
      "softmax",
      [](const py::array& x, const py::array& out, int axis) {
        run_unary(x, out, [axis](DType dt, const StridedArray& xv, const StridedArray& ov) {
          logitkit::softmax(dt, xv, ov, axis);
        });
      },
      py::arg("x"), py::arg("out"), py::arg("axis"));
  m.def(
      "log_softmax",
      [](const py::array& x, const py::array& out, int axis) {
        run_unary(x, out, [axis](DType dt, const StridedArray& xv, const StridedArray& ov) {
          logitkit::log_softmax(dt, xv, ov, axis);
        });
      },
      py::arg("x"), py::arg("out"), py::arg("axis"));
  m.def(
      "logsumexp",
      [](const py::array& x, const py::array& out, int axis) {
        run_unary(x, out, [axis](DType dt, const StridedArray& xv, const StridedArray& ov) {
          logitkit::logsumexp(dt, xv, ov, axis);
        });
      },
      py::arg("x"), py::arg("out"), py::arg("axis"));
  m.def(
      "_exp",
      [](const py::array& x, const py::array& out, bool nonpositive) {
        run_unary(x, out,
                  [nonpositive](DType dt, const StridedArray& xv, const StridedArray& ov) {
                    logitkit::exp(dt, xv, ov, nonpositive);
                  });
      },
      py::arg("x"), py::arg("out"), py::arg("nonpositive") = false,
      "The kernels' vector exp, for accuracy tests.");

  m.def("compiled_targets", &logitkit::compiled_targets);
  m.def("supported_targets", &logitkit::supported_targets);
  m.def("active_target", []() { return std::string(logitkit::active_kernels().name); });
  m.def("_set_target", &logitkit::set_active_target, py::arg("name"),
        "Switch the SIMD target (tests and benchmarks); returns the previous one.");
}
