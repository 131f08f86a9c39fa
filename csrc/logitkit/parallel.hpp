// Running the tasks of one call on several threads: a small persistent pool of its own.
//
// Determinism is the callers' part: they cut their work into tasks whose boundaries depend
// only on the shapes (never on the number of workers), each task writes only its own
// outputs, and partial results (sums of a batch, a long row's (max, sum) pieces) are kept
// per task and merged by the caller in task order after parallel_for returns. Which thread
// runs which task then changes nothing in the results.
//
// The pool:
// - is created on first use, and grows to the largest number of helpers any call asked
//   for (workers - 1: the calling thread always works too). A thread that runs out of
//   work spins for 50 us (calls often come back to back), then sleeps on a condition
//   variable until the next job: an idle pool uses no CPU.
// - serves several calling threads at once: each call posts a job that at most its own
//   workers - 1 helpers may join, and the caller runs tasks itself until none are left, so a
//   call finishes even if no helper is free (no deadlock, and never more threads busy than
//   the callers asked for in total).
// - survives fork(): the child, which has none of the parent's threads, forgets the pool
//   (leaking it; its mutex may have been held by a thread that no longer exists) and makes
//   a new one when it first needs one.
// - never calls Python and never holds the GIL; the tasks touch only the buffers of their
//   call, which the caller keeps alive until parallel_for returns.
//
// Beyond 2 cores (what this was measured on). The kernels stream memory: on a 16-64 core
// socket the limit is its memory bandwidth (one Zen 4 core streams ~25-30 GB/s, a socket
// ~200-450 GB/s), so large arrays stop scaling at roughly bandwidth / per-core rate, 8-16
// threads, while arrays that fit the L3 keep scaling. The grain (kMinElementsPerWorker)
// is a fixed cost per woken thread and stays; the task size (kTaskElements) must stay a
// small fraction of the work per thread (64 threads need >= 4 tasks each to balance), so
// it is kept at 32K elements rather than scaled with the thread count. On several NUMA
// nodes, threads should work on the memory their node touched first; tasks are taken in
// order from a shared counter, so a node-aware version would hand each node a contiguous
// range of tasks (static partition by node, dynamic within): the tasks, their order and
// the merge stay as they are, so results would not change.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "kernel_table.hpp"

namespace logitkit {

// A borrowed callable `void(idx task)`: no allocation, unlike std::function.
class TaskRef {
 public:
  template <class F, class = std::enable_if_t<!std::is_same<std::decay_t<F>, TaskRef>::value>>
  TaskRef(F& f)  // NOLINT(google-explicit-constructor): a borrowed view, like a reference
      : object_(static_cast<void*>(&f)), call_([](void* o, idx t) { (*static_cast<F*>(o))(t); }) {}
  void operator()(idx task) const { call_(object_, task); }

 private:
  void* object_;
  void (*call_)(void*, idx);
};

// The most threads one call uses (and the pool starts), the calling thread included: more
// than any machine this is built for has cores; asking for more gets this many.
constexpr int kMaxThreads = 256;

// Runs task(0) ... task(count - 1), each exactly once, on up to `workers` threads (the
// calling thread included), and returns when all have finished. The first exception a task
// throws is rethrown here (tasks not yet started are then skipped).
void parallel_for(idx count, int workers, TaskRef task);

template <class F>
void parallel_for(idx count, int workers, F&& task) {
  if (workers <= 1 || count <= 1) {
    for (idx t = 0; t < count; ++t) task(t);
    return;
  }
  parallel_for(count, workers, TaskRef(task));
}

// Makes a child process after fork() forget the parent's pool. Called once, when the
// module is imported (before any thread can use the pool).
void install_fork_handler();

// Threads the pool has started in this process (0 before the first parallel call): for
// tests of its lifecycle.
int pool_thread_count();

// How work is cut into tasks. Elements are those of the input the kernels stream.
//
// A task of ~32K elements (128 KiB of float32) is several microseconds of kernel work, two
// orders of magnitude above the cost of taking it (an atomic increment), and small enough
// that 4096 x 1000 gives 128 tasks: enough to balance 64 threads.
constexpr idx kTaskElements = idx(1) << 15;
// Each worker gets at least this many elements, so small calls stay on the calling thread
// (waking a sleeping thread took 20-40 us here; a 32 x 10 softmax takes 0.2 us) and
// mid-sized ones wake only as many threads as pay for themselves. Measured with
// benchmarks/bench_grain.py: 128 x 1000 float32 gains nothing from a second thread,
// 192 x 1000 gains 1.5x (softmax).
constexpr idx kMinElementsPerWorker = idx(1) << 16;

// The number of threads worth using for `elements` elements of work.
inline int workers_for(idx elements, int workers) {
  const idx useful = elements / kMinElementsPerWorker;
  if (useful < 2 || workers <= 1) return 1;
  return useful < workers ? static_cast<int>(useful) : workers;
}

// Rows of n elements per task: about kTaskElements elements, at least one row, rounded up to
// a multiple of `multiple` (the column kernels' block of rows).
inline idx rows_per_task(idx n, idx multiple = 1) {
  idx rows = n > 0 ? kTaskElements / n : kTaskElements;
  if (rows < 1) rows = 1;
  return (rows + multiple - 1) / multiple * multiple;
}

}  // namespace logitkit
