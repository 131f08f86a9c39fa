"""Python threads computing at once while the core's thread pool works for each of them.

On free-threaded CPython (3.13t and later) nothing serialises the callers: the Python
layer (argument handling, ``workers=`` resolution, the output arrays) runs truly in
parallel, and each call above the pool's grain (``csrc/logitkit/parallel.hpp``) posts a
job to the one process-wide pool that several callers share. On a GIL build the same
tests still run: the core releases the GIL for large arrays, so the calls overlap there
too, only the Python parts take turns.

Where tests/test_thread_stress.py has eight threads share read-only inputs of many
layouts with mostly single-threaded calls, here

- every thread has arrays of its own, large enough (512 x 1024 float32: 8 pool-sized
  pieces) that ``workers=2`` really uses the pool, and calls softmax,
  cross_entropy(return_grad=True) and logsumexp 50 times each;
- some threads change their ``set_workers`` default (per thread: a ContextVar) as fast as
  they can while the others compute, each checking that it sees only its own default;
- a thread switches the process-wide SIMD target while the others compute through the
  pool: a call reads the target once, and its pool tasks must all use that one.

Every result is compared bit for bit (as unsigned integers: NaN payloads and -0 count)
with the result of a single-threaded call (``workers=1``) computed beforehand; results
do not depend on the number of workers (tests/test_workers_determinism.py). Where the
target switches, targets differ in the last bits, so a result must equal the
single-threaded result of one of the supported targets, all its parts (loss and gradient)
of the same one.

Threads start together on a barrier, are daemons, and are joined with a timeout, so a
deadlock fails the test instead of hanging the run.
"""

import os
import subprocess
import sys
import sysconfig
import threading
import time

import numpy as np
import pytest

import logitkit

pytestmark = pytest.mark.filterwarnings("error")

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
SUPPORTED = list(logitkit.capabilities()["supported"])

N_THREADS = 8
ITERATIONS = 50
SHAPE = (512, 1024)  # 2**19 float32 elements: 8 x parallel.hpp's kMinElementsPerWorker
WORKERS = 2
JOIN_TIMEOUT = 120.0


# -- inputs, jobs and their expected results ------------------------------------------


def _inputs(seed):
    """One thread's own arrays."""
    rng = np.random.default_rng([20261201, seed])
    x = (rng.standard_normal(SHAPE) * 4).astype(np.float32)
    x[seed % SHAPE[0], :: 97] = -np.inf  # some masked logits
    labels = rng.integers(0, SHAPE[1], size=SHAPE[0])
    labels[:: 13] = -100  # some ignored rows
    return {"x": x, "labels": labels}


# name -> (inputs, workers) -> tuple of results; workers=None: the context's default.
JOBS = {
    "softmax": lambda a, w: (logitkit.softmax(a["x"], workers=w),),
    "cross_entropy": lambda a, w: logitkit.cross_entropy(
        a["x"], a["labels"], return_grad=True, workers=w),
    "logsumexp": lambda a, w: (logitkit.logsumexp(a["x"], workers=w),),
}


def _bits(results):
    """(dtype, shape, bits as unsigned integers) of each part of a job's results."""
    out = []
    for r in results:
        a = np.ascontiguousarray(np.asarray(r))
        out.append((a.dtype, a.shape, a.view(np.dtype(f"u{a.dtype.itemsize}"))))
    return tuple(out)


def _same(got, expected):
    return len(got) == len(expected) and all(
        g[0] == e[0] and g[1] == e[1] and np.array_equal(g[2], e[2])
        for g, e in zip(got, expected))


def _expected(inputs):
    """Single-threaded results of every job on every thread's inputs, on the active
    target: {(thread, job): bits}."""
    return {(t, name): _bits(job(a, 1))
            for t, a in enumerate(inputs) for name, job in JOBS.items()}


# -- running threads -------------------------------------------------------------------


def _run_threads(bodies, timeout=JOIN_TIMEOUT):
    """Run ``bodies`` (name -> callable taking the barrier) together; return the error
    strings they raised. Fails on a deadlock."""
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(bodies), timeout=timeout)

    def guarded(name, fn):
        def body():
            try:
                fn(barrier)
            except Exception as e:  # noqa: BLE001 -- report anything, from any thread
                with lock:
                    errors.append(f"{name}: {type(e).__name__}: {e}")
        return body

    threads = [threading.Thread(target=guarded(name, fn), daemon=True)
               for name, fn in bodies.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [name for name, t in zip(bodies, threads) if t.is_alive()]
    assert not stuck, f"{stuck} still running after {timeout} s: deadlock?"
    return errors


def _compute(t, inputs, accept, workers, iterations=ITERATIONS, check=None):
    """A computing thread: ``iterations`` rounds of every job on thread t's arrays; each
    result must pass ``accept((t, name), bits)``. ``check()``, if given, runs before
    every call (to see the thread's own workers default)."""

    def body(barrier):
        barrier.wait()
        wrong = []
        for i in range(iterations):
            for name, job in JOBS.items():
                if check is not None:
                    check()
                w = workers(i) if callable(workers) else workers
                if not accept((t, name), _bits(job(inputs[t], w))):
                    wrong.append(f"{name} (round {i})")
        if wrong:
            raise AssertionError(
                f"{len(wrong)} results differ from the single-threaded ones: {wrong[:5]}")
    return body


# -- the tests -------------------------------------------------------------------------


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded CPython build")
def test_import_keeps_the_gil_disabled():
    # A fresh interpreter without PYTHON_GIL: an extension module that does not declare
    # Py_mod_gil_not_used would re-enable the GIL with a RuntimeWarning (an error here).
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    code = ("import sys, logitkit, logitkit.special, logitkit._threadpoolctl\n"
            "print(sys._is_gil_enabled())\n")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", out.stdout + out.stderr


@pytest.mark.parametrize("workers", ["2", "mixed"])
def test_threads_with_their_own_arrays(workers):
    """8 threads, each 50 rounds of softmax, cross_entropy and logsumexp on its own
    arrays through the pool: ``workers=2`` for all, or 1, 2, 3 or 8 by thread and round
    (several callers' jobs of different sizes in the pool at once)."""
    inputs = [_inputs(t) for t in range(N_THREADS)]
    expected = _expected(inputs)

    def accept(key, got):
        return _same(got, expected[key])

    def per_thread(t):
        if workers == "2":
            return WORKERS
        return lambda i: (1, 2, 3, 8)[(t + i) % 4]

    errors = _run_threads({f"thread {t}": _compute(t, inputs, accept, per_thread(t))
                           for t in range(N_THREADS)})
    assert not errors, "\n".join(errors)
    assert logitkit._core._pool_thread_count() >= 1  # the calls really used the pool


def test_set_workers_in_some_threads_while_others_compute():
    """Two threads change their own set_workers default as fast as they can, computing
    with it; six compute meanwhile, three under a set_workers(2) of their own and three
    with workers=2 and the process default. Each must see only its own default."""
    n_setters = 2
    inputs = [_inputs(t) for t in range(N_THREADS)]
    expected = _expected(inputs)
    process_default = logitkit.get_workers()  # this thread has no set_workers

    def accept(key, got):
        return _same(got, expected[key])

    def setter(t):
        def body(barrier):
            barrier.wait()
            wrong = []
            for i in range(ITERATIONS):
                n = (1, 2, 3, 4)[(t + i) % 4]
                with logitkit.set_workers(n) as seen:
                    for name, job in JOBS.items():
                        if seen != n or logitkit.get_workers() != n:
                            wrong.append(f"default {logitkit.get_workers()} in set_workers({n})")
                        if not accept((t, name), _bits(job(inputs[t], None))):
                            wrong.append(f"{name} with set_workers({n}) (round {i})")
                # A plain call, restored by hand; in between the default is outside.
                setting = logitkit.set_workers(-1)
                if logitkit.get_workers() != logitkit._workers.usable_cores():
                    wrong.append(f"set_workers(-1) gave {logitkit.get_workers()}")
                setting.restore()
                if logitkit.get_workers() != process_default:
                    wrong.append(f"restored to {logitkit.get_workers()}, "
                                 f"not the process default {process_default}")
            if wrong:
                raise AssertionError(f"{len(wrong)} problems: {wrong[:5]}")
        return body

    def own_default(t):
        def check():
            if logitkit.get_workers() != WORKERS:
                raise AssertionError(f"own default {logitkit.get_workers()}, set {WORKERS}")
        compute = _compute(t, inputs, accept, None, check=check)

        def body(barrier):
            with logitkit.set_workers(WORKERS):
                compute(barrier)
        return body

    def process_default_thread(t):
        def check():
            if logitkit.get_workers() != process_default:
                raise AssertionError(f"default {logitkit.get_workers()}, not the process "
                                     f"default {process_default}")
        return _compute(t, inputs, accept, WORKERS, check=check)

    bodies = {f"setter {t}": setter(t) for t in range(n_setters)}
    for t in range(n_setters, N_THREADS):
        if t % 2:
            bodies[f"thread {t} (own set_workers)"] = own_default(t)
        else:
            bodies[f"thread {t} (process default)"] = process_default_thread(t)
    errors = _run_threads(bodies)
    assert not errors, "\n".join(errors)
    assert logitkit.get_workers() == process_default


def test_target_switches_while_threads_compute_through_the_pool():
    """One thread cycles the SIMD target through the supported ones while seven compute
    on their own arrays with workers=2: every result must be the single-threaded result
    of one target, all its parts of the same one."""
    n_computing = N_THREADS - 1
    inputs = [_inputs(t) for t in range(n_computing)]
    original = logitkit._core.active_target()
    per_target = []
    try:
        for target in SUPPORTED:
            logitkit._core._set_target(target)
            per_target.append(_expected(inputs))
    finally:
        logitkit._core._set_target(original)

    def accept(key, got):
        return any(_same(got, expected[key]) for expected in per_target)

    done = threading.Event()
    remaining = [n_computing]
    lock = threading.Lock()
    switches = [0]

    def switcher(barrier):
        barrier.wait()
        i = 0
        while not done.is_set():
            logitkit._core._set_target(SUPPORTED[i % len(SUPPORTED)])
            switches[0] += 1
            i += 1
            time.sleep(0.0002)  # a few switches during each call, on a 2-core machine too

    def computing(t):
        compute = _compute(t, inputs, accept, WORKERS)

        def body(barrier):
            try:
                compute(barrier)
            finally:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
        return body

    bodies = {f"thread {t}": computing(t) for t in range(n_computing)}
    bodies["switcher"] = switcher
    try:
        errors = _run_threads(bodies)
    finally:
        done.set()
        logitkit._core._set_target(original)
    assert not errors, "\n".join(errors)
    assert switches[0] > 0
    assert logitkit._core.active_target() == original
