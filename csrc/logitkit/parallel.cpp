#include "parallel.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if !defined(_WIN32)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace logitkit {
namespace {

// One parallel_for call. Lives on the caller's stack; the pool's mutex guards the fields
// marked so, and the caller removes the job and waits for its helpers before returning.
struct Job {
  TaskRef task;
  idx count;
  std::atomic<idx> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // written once, by the thread that set `failed`
  int open_slots;            // mutex: helpers that may still join
  int running = 0;           // mutex: helpers that joined and have not left
  std::condition_variable done;

  Job(TaskRef t, idx n, int helpers) : task(t), count(n), open_slots(helpers) {}

  // Takes tasks until none are left (or one failed).
  void work() {
    for (;;) {
      const idx t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= count) return;
      try {
        task(t);
      } catch (...) {
        if (!failed.exchange(true)) error = std::current_exception();
        next.store(count, std::memory_order_relaxed);
        return;
      }
    }
  }
};

// A helper that finds no work spins this long before it sleeps: calls often come back to
// back (a training loop, a benchmark), and waking a sleeping thread took 20-40 us here, a
// third of a 512 x 1000 softmax. After that it sleeps until a job is posted.
constexpr std::chrono::microseconds kSpinBeforeSleep{50};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

struct Pool {
  std::mutex mutex;
  std::condition_variable wake;  // helpers sleep here while no job has an open slot
  std::vector<Job*> jobs;        // mutex: posted jobs, oldest first
  int threads = 0;               // mutex: helpers started
  std::atomic<unsigned long> posted{0};  // jobs posted so far (what spinning helpers watch)

  // mutex held. The oldest job a helper can join.
  Job* open_job() {
    for (Job* job : jobs)
      if (job->open_slots > 0 && job->next.load(std::memory_order_relaxed) < job->count)
        return job;
    return nullptr;
  }

  void helper_main() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      Job* job = open_job();
      if (!job) {
        // Spin a little (without the lock) for the next job, then sleep.
        const unsigned long seen = posted.load(std::memory_order_relaxed);
        lock.unlock();
        const auto until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
        bool more = false;
        while (!more && std::chrono::steady_clock::now() < until) {
          for (int i = 0; i < 64 && !more; ++i) {
            cpu_relax();
            more = posted.load(std::memory_order_relaxed) != seen;
          }
        }
        lock.lock();
        // Checked under the lock, where jobs are posted: a job posted after the spin is
        // seen here or wakes the wait.
        if (!more && !open_job()) wake.wait(lock);
        continue;
      }
      --job->open_slots;
      ++job->running;
      lock.unlock();
      job->work();
      lock.lock();
      if (--job->running == 0) job->done.notify_all();
    }
  }

  // mutex held. Starts helpers until there are `wanted` (fewer if the system refuses).
  void grow_to(int wanted) {
    while (threads < wanted) {
      try {
        // Detached: the pool lives until the process ends and is never destroyed, so its
        // threads never outlive it (no static destructor to race at exit).
        std::thread([this] { helper_main(); }).detach();
      } catch (const std::system_error&) {
        return;  // out of threads: the callers and the existing helpers do the work
      }
      ++threads;
    }
  }
};

std::atomic<Pool*> current_pool{nullptr};

#if !defined(_WIN32)
// In a child after fork() only the forking thread exists: forget the parent's pool.
void forget_pool_in_child() { current_pool.store(nullptr, std::memory_order_relaxed); }
#endif

Pool& pool() {
  Pool* p = current_pool.load(std::memory_order_acquire);
  if (p) return *p;
  // No lock to create it (a lock held by another thread at fork() would hang a child):
  // the first of racing threads to publish its pool wins.
  Pool* fresh = new Pool;
  Pool* expected = nullptr;
  if (current_pool.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel))
    return *fresh;
  delete fresh;
  return *expected;
}

}  // namespace

void install_fork_handler() {
#if !defined(_WIN32)
  // Once per process (a child inherits the registration). Not from the first parallel
  // call: a thread registering while another forks (glibc serializes the two) left
  // children with a pool but no handler, and a child then waited on a lock held by a
  // thread it does not have (tests/test_pool.py, one fork in a few hundred).
  static std::atomic<bool> installed{false};
  if (!installed.exchange(true)) pthread_atfork(nullptr, nullptr, &forget_pool_in_child);
#endif
}

void parallel_for(idx count, int workers, TaskRef task) {
  if (count <= 0) return;
  if (workers > kMaxThreads) workers = kMaxThreads;
  const int helpers = static_cast<int>(count < workers ? count : workers) - 1;
  if (helpers <= 0) {
    for (idx t = 0; t < count; ++t) task(t);
    return;
  }
  Pool& p = pool();
  Job job(task, count, helpers);
  int available;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    p.grow_to(helpers);
    available = p.threads < helpers ? p.threads : helpers;
    p.jobs.push_back(&job);
    p.posted.fetch_add(1, std::memory_order_relaxed);
  }
  for (int i = 0; i < available; ++i) p.wake.notify_one();
  job.work();
  {
    std::unique_lock<std::mutex> lock(p.mutex);
    for (size_t i = 0; i < p.jobs.size(); ++i)
      if (p.jobs[i] == &job) {
        p.jobs.erase(p.jobs.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    job.done.wait(lock, [&] { return job.running == 0; });
  }
  if (job.error) std::rethrow_exception(job.error);
}

int pool_thread_count() {
  Pool* p = current_pool.load(std::memory_order_acquire);
  if (!p) return 0;
  std::lock_guard<std::mutex> lock(p->mutex);
  return p->threads;
}

}  // namespace logitkit
