// pybind11 bindings of the C++ core: check that buffers are what the core expects, release
// the GIL, call the core. No math here; argument handling and docs live in python/logitkit.
#include <pybind11/stl.h>

#include <string>

#include "bindings_common.hpp"
#include "logitkit/dispatch.hpp"
#include "logitkit/parallel.hpp"
#include "logitkit/softmax.hpp"

using namespace logitkit_bindings;

// A symbol only logitkit's core exports, by which threadpoolctl tells this _core.*.so from
// the many other extensions of that name (python/logitkit/_threadpoolctl.py). pybind11
// builds with hidden visibility, so it is exported explicitly. Never called.
#if defined(_WIN32)
#define LOGITKIT_EXPORT __declspec(dllexport)
#else
#define LOGITKIT_EXPORT __attribute__((visibility("default")))
#endif
extern "C" LOGITKIT_EXPORT int logitkit_threadpool_marker(void) { return 1; }

// No GIL needed (free-threaded CPython): the module keeps no Python state of its own; the
// SIMD target is an atomic pointer (dispatch.cpp), the pool has its own lock
// (parallel.cpp), per-thread scratch is thread_local, and the core touches only the
// buffers of each call.
PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
  m.doc() = "logitkit's compiled core. Use the functions in the logitkit package instead.";
  // Choose the SIMD target now, so that a bad LOGITKIT_SIMD fails the import.
  logitkit::active_kernels();
  logitkit::install_fork_handler();

  m.def(
      "softmax",
      [](const py::array& x, const py::array& out, int axis, std::int64_t workers_arg,
         std::optional<double> scale, const std::optional<py::array>& where) {
        const int workers = checked_workers(workers_arg);
        std::optional<StridedArray> mask;
        if (where) mask = mask_view(*where, x);
        logitkit::SoftmaxOptions options;
        options.scaled = scale.has_value();
        options.scale = scale.value_or(1.0);
        options.where = mask ? &*mask : nullptr;
        run_unary(x, out,
                  [axis, workers, &options](DType dt, const StridedArray& xv,
                                            const StridedArray& ov) {
                    logitkit::softmax(dt, xv, ov, axis, workers, options);
                  });
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("workers") = 1,
      py::arg("scale") = py::none(), py::arg("where") = py::none());
  m.def(
      "log_softmax",
      [](const py::array& x, const py::array& out, int axis, std::int64_t workers_arg,
         std::optional<double> scale, const std::optional<py::array>& where) {
        const int workers = checked_workers(workers_arg);
        std::optional<StridedArray> mask;
        if (where) mask = mask_view(*where, x);
        logitkit::SoftmaxOptions options;
        options.scaled = scale.has_value();
        options.scale = scale.value_or(1.0);
        options.where = mask ? &*mask : nullptr;
        run_unary(x, out,
                  [axis, workers, &options](DType dt, const StridedArray& xv,
                                            const StridedArray& ov) {
                    logitkit::log_softmax(dt, xv, ov, axis, workers, options);
                  });
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("workers") = 1,
      py::arg("scale") = py::none(), py::arg("where") = py::none());
  m.def(
      "logsumexp",
      [](const py::array& x, const py::array& out, int axis, std::int64_t workers_arg,
         std::optional<double> scale, const std::optional<py::array>& where) {
        const int workers = checked_workers(workers_arg);
        std::optional<StridedArray> mask;
        if (where) mask = mask_view(*where, x);
        logitkit::SoftmaxOptions options;
        options.scaled = scale.has_value();
        options.scale = scale.value_or(1.0);
        options.where = mask ? &*mask : nullptr;
        run_unary(x, out,
                  [axis, workers, &options](DType dt, const StridedArray& xv,
                                            const StridedArray& ov) {
                    logitkit::logsumexp(dt, xv, ov, axis, workers, options);
                  });
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("workers") = 1,
      py::arg("scale") = py::none(), py::arg("where") = py::none());
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

  m.def("_pool_thread_count", &logitkit::pool_thread_count,
        "Threads the core's pool has started in this process (for tests).");

  register_losses(m);
}
