// pybind11 bindings of the C++ core: check that buffers are what the core expects, release
// the GIL, call the core. No math here; argument handling and docs live in python/logitkit.
#include <pybind11/stl.h>

#include <string>

#include "bindings_common.hpp"
#include "logitkit/dispatch.hpp"
#include "logitkit/parallel.hpp"
#include "logitkit/row_state.hpp"
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

  m.def("softmax", rows_with_options(&logitkit::softmax), py::arg("x"), py::arg("out"),
        py::arg("axis"), py::arg("workers") = 1, py::arg("scale") = py::none(),
        py::arg("where") = py::none());
  m.def("log_softmax", rows_with_options(&logitkit::log_softmax), py::arg("x"), py::arg("out"),
        py::arg("axis"), py::arg("workers") = 1, py::arg("scale") = py::none(),
        py::arg("where") = py::none());
  m.def("logsumexp", rows_with_options(&logitkit::logsumexp), py::arg("x"), py::arg("out"),
        py::arg("axis"), py::arg("workers") = 1, py::arg("scale") = py::none(),
        py::arg("where") = py::none());
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

  // Softmax states of blocks of rows, for the Dask layer (logitkit/_dask.py); see
  // logitkit/row_state.hpp. States are float64 arrays, C-contiguous; `scale` (None: 1) and
  // `where` (a uint8 mask of x's shape, rows contiguous) are the options.
  m.def(
      "_row_states",
      [](const py::array& x, const py::array& state, std::int64_t workers_arg,
         std::optional<double> scale, const std::optional<py::array>& where) {
        const int workers = checked_workers(workers_arg);
        const DType dt = dtype_of(x, "x");
        const StridedArray xv = view_of(x, "x", false);
        const StridedArray sv = view_as(state, DType::float64, "state", true);
        const OptionArgs options(scale, where, x);
        const ReleaseGilIfLarge release(x.size());
        logitkit::row_states(dt, xv, sv, workers, options.state());
      },
      py::arg("x"), py::arg("state"), py::arg("workers") = 1, py::arg("scale") = py::none(),
      py::arg("where") = py::none());
  m.def(
      "_merge_row_states",
      [](const py::array& states, const py::array& out, double scale) {
        const StridedArray sv = view_as(states, DType::float64, "states", false);
        const StridedArray ov = view_as(out, DType::float64, "out", true);
        logitkit::merge_row_states(sv, ov, scale);
      },
      py::arg("states"), py::arg("out"), py::arg("scale") = 1.0);
  m.def(
      "_rows_from_state",
      [](const py::array& x, const py::array& state, const std::optional<py::array>& row_scale,
         const py::array& out, bool log, std::int64_t workers_arg, std::optional<double> scale,
         const std::optional<py::array>& where) {
        const int workers = checked_workers(workers_arg);
        const DType dt = dtype_of(x, "x");
        const StridedArray xv = view_of(x, "x", false);
        const StridedArray sv = view_as(state, DType::float64, "state", false);
        const StridedArray ov = view_as(out, dt, "out", true);
        const double* row_scale_data = nullptr;
        if (row_scale) {
          const StridedArray rv = view_as(*row_scale, DType::float64, "row_scale", false);
          if (rv.shape.size() != 1 || rv.shape[0] != (xv.shape.empty() ? 0 : xv.shape[0]) ||
              (rv.shape[0] > 1 && rv.strides[0] != static_cast<std::ptrdiff_t>(sizeof(double))))
            throw py::value_error("row_scale must be a contiguous float64 vector, one per row");
          row_scale_data = static_cast<const double*>(rv.data);
        }
        const OptionArgs options(scale, where, x);
        const ReleaseGilIfLarge release(x.size());
        logitkit::rows_from_state(dt, xv, sv, row_scale_data, ov, log, workers,
                                  options.state());
      },
      py::arg("x"), py::arg("state"), py::arg("row_scale"), py::arg("out"), py::arg("log"),
      py::arg("workers") = 1, py::arg("scale") = py::none(), py::arg("where") = py::none());
  m.def("compiled_targets", &logitkit::compiled_targets);
  m.def("supported_targets", &logitkit::supported_targets);
  m.def("active_target", []() { return std::string(logitkit::active_kernels().name); });
  m.def("_set_target", &logitkit::set_active_target, py::arg("name"),
        "Switch the SIMD target (tests and benchmarks); returns the previous one.");

  m.def("_pool_thread_count", &logitkit::pool_thread_count,
        "Threads the core's pool has started in this process (for tests).");

  register_losses(m);
}
