"""Eight Python threads calling logitkit at once (the core releases the GIL).

The inputs are shared and read-only (``writeable = False``: a kernel that wrote to its
input would raise, not silently corrupt the other threads); every call gets its own
output. Each job is one library call; its results are computed single-threaded first,
and every threaded call must reproduce them bit for bit.

Two runs:

- ``test_threads_on_one_target``: the SIMD target does not change during the run (once
  per supported target), so each result must equal that target's single-threaded one.
- ``test_threads_while_the_target_switches``: two of the eight threads switch the
  process-global SIMD target as fast as they can while six compute. A call then runs on
  whichever target was active when it started, and targets differ in the last bits, so
  each result must be bit-identical to the single-threaded result of *one* of the
  supported targets (all parts of it -- loss and gradient -- of the same one). We keep
  this check exact rather than comparing within a tolerance against the reference: a
  data race (a shared scratch buffer, a torn write) could produce values close to right,
  which a tolerance would let through, while the exact check costs only one
  precomputation per target.

  That is a valid expectation because the core reads the active target once per call:
  the row-or-column choice (by the target's vector width, which differs between targets
  for axis lengths 17 to 31, ``short_rows`` in csrc/logitkit/axis_plan.hpp) and the
  kernels come from the same target. (They once came from two reads, and a call that
  straddled a switch could run one target's kernels on the other's path; the 24-class
  inputs below are there for that.)

Threads start together on a barrier, are daemons, and are joined with a timeout, so a
deadlock fails the test instead of hanging the run.
"""

import itertools
import threading
import time

import numpy as np
import pytest

import logitkit

pytestmark = pytest.mark.filterwarnings("error")

N_THREADS = 8
N_SWITCHERS = 2
JOIN_TIMEOUT = 60.0
ROUNDS = 10
"""Passes of each worker over all jobs (in its own order)."""

SUPPORTED = list(logitkit.capabilities()["supported"])


def _readonly(a):
    a.flags.writeable = False
    return a


def _make_inputs():
    """Shared inputs: several dtypes, shapes and layouts (all read-only)."""
    rng = np.random.default_rng(20260101)

    def logits(shape, dtype, scale=3.0):
        return _readonly((rng.standard_normal(shape) * scale).astype(dtype))

    def probs(shape, dtype, axis=-1):
        z = rng.standard_normal(shape) * 2
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return _readonly((e / e.sum(axis=axis, keepdims=True)).astype(dtype))

    big32 = logits((64, 1000), np.float32)  # long rows with a vector tail
    rows64 = logits((257, 33), np.float64)
    wide32 = logits((100, 80), np.float32)
    cube64 = logits((40, 7, 65), np.float64)  # axis 1: a non-last axis of 7 classes
    tall32 = logits((37, 300), np.float32)  # .T: Fortran-ordered, axis 0 of 300 classes
    rev64 = logits((50, 100), np.float64)
    return {
        "short24_32": logits((300, 24), np.float32),  # row or column kernel by target
        "labels_short24": _readonly(rng.integers(0, 24, size=300)),
        "big32": big32,
        "rows64": rows64,
        "strided32": wide32[:, ::2],  # 40 classes, stride 2 along the axis
        "cube64": cube64,
        "T32": tall32.T,
        "reversed64": rev64[::-1, ::-1],
        "q_rows64": logits((257, 33), np.float64),
        "q_T32": logits((37, 300), np.float32).T,
        "labels_big": _readonly(rng.integers(0, 1000, size=64)),
        "labels_rows": _readonly(np.where(rng.random(257) < 0.1, -100,
                                          rng.integers(0, 33, size=257))),
        "labels_cube": _readonly(rng.integers(0, 7, size=(40, 65)).astype(np.int32)),
        "weight33": _readonly(rng.uniform(0.5, 2.0, size=33)),
        "probs_rows64": probs((257, 33), np.float64),
        "probs_big32": probs((64, 1000), np.float32),
        "probs_cube64": probs((40, 7, 65), np.float64, axis=1),
        "grad_big32": logits((64, 1000), np.float32, 1.0),
        "grad_cube64": logits((40, 7, 65), np.float64, 1.0),
        "grad_reversed64": logits((50, 100), np.float64, 1.0)[::-1],
        "bce_target32": _readonly(rng.uniform(0, 1, size=(64, 1000)).astype(np.float32)),
        "bce_weight32": _readonly(rng.uniform(0.5, 2, size=(64, 1000)).astype(np.float32)),
        "pos_weight32": _readonly(rng.uniform(0.5, 3, size=1000).astype(np.float32)),
    }


def _make_jobs(a):
    """name -> zero-argument callable making ONE library call and returning a tuple of
    its results; outputs are allocated per call (out= where the function has one)."""

    def with_out(fn, x, **kw):
        out = np.empty(x.shape, dtype=x.dtype)
        assert fn(x, out=out, **kw) is out
        return (out,)

    return {
        "softmax big32": lambda: with_out(logitkit.softmax, a["big32"]),
        "softmax strided32": lambda: (logitkit.softmax(a["strided32"]),),
        "softmax cube64 axis1": lambda: with_out(logitkit.softmax, a["cube64"], axis=1),
        "softmax T32 axis0": lambda: with_out(logitkit.softmax, a["T32"], axis=0),
        "log_softmax rows64": lambda: with_out(logitkit.log_softmax, a["rows64"]),
        "log_softmax reversed64": lambda: (logitkit.log_softmax(a["reversed64"]),),
        "log_softmax T32 axis0": lambda: (logitkit.log_softmax(a["T32"], axis=0),),
        "softmax short24_32": lambda: (logitkit.softmax(a["short24_32"]),),
        "logsumexp short24_32": lambda: (logitkit.logsumexp(a["short24_32"]),),
        "cross_entropy labels short24_32": lambda: logitkit.cross_entropy(
            a["short24_32"], a["labels_short24"], return_grad=True),
        "logsumexp big32": lambda: (logitkit.logsumexp(a["big32"]),),
        "logsumexp cube64 axis1": lambda: (logitkit.logsumexp(a["cube64"], axis=1,
                                                              keepdims=True),),
        "logsumexp strided32": lambda: (logitkit.logsumexp(a["strided32"]),),
        "cross_entropy labels big32": lambda: logitkit.cross_entropy(
            a["big32"], a["labels_big"], return_grad=True),
        "cross_entropy labels rows64 weighted": lambda: logitkit.cross_entropy(
            a["rows64"], a["labels_rows"], weight=a["weight33"], label_smoothing=0.05,
            reduction="none", return_grad=True,
            grad_out=np.empty(a["rows64"].shape)),
        "cross_entropy labels cube64 axis1": lambda: logitkit.cross_entropy(
            a["cube64"], a["labels_cube"], axis=1, reduction="sum", return_grad=True),
        "cross_entropy probs rows64": lambda: logitkit.cross_entropy(
            a["rows64"], a["probs_rows64"], weight=a["weight33"], return_grad=True),
        "binary_cross_entropy big32": lambda: logitkit.binary_cross_entropy(
            a["big32"], a["bce_target32"], weight=a["bce_weight32"],
            pos_weight=a["pos_weight32"], return_grad=True),
        "binary_cross_entropy none big32": lambda: (logitkit.binary_cross_entropy(
            a["big32"], a["bce_target32"], reduction="none"),),
        "sigmoid rows64": lambda: with_out(logitkit.sigmoid, a["rows64"]),
        "log_sigmoid big32": lambda: (logitkit.log_sigmoid(a["big32"]),),
        "entropy strided32": lambda: (logitkit.entropy(a["strided32"]),),
        "entropy T32 axis0": lambda: (logitkit.entropy(a["T32"], axis=0, base=2),),
        "kl_divergence rows64": lambda: logitkit.kl_divergence(
            a["rows64"], a["q_rows64"], return_grad=True),
        "kl_divergence T32 axis0": lambda: logitkit.kl_divergence(
            a["T32"], a["q_T32"], axis=0, reduction="mean", return_grad=True),
        "softmax_backward big32": lambda: logitkit.softmax_backward(
            a["grad_big32"], a["probs_big32"], out=np.empty((64, 1000), np.float32)),
        "softmax_backward cube64 axis1": lambda: logitkit.softmax_backward(
            a["grad_cube64"], a["probs_cube64"], axis=1),
        "log_softmax_backward reversed64": lambda: logitkit.log_softmax_backward(
            a["grad_reversed64"], a["reversed64"]),
    }


def _fingerprint(results):
    """The exact bytes (with dtypes and shapes) of a job's results."""
    if not isinstance(results, tuple):
        results = (results,)
    return tuple((np.asarray(r).dtype.str, np.asarray(r).shape,
                  np.ascontiguousarray(r).tobytes()) for r in results)


def _run_threads(workers, extra=(), timeout=JOIN_TIMEOUT):
    """Start ``workers`` (callables taking the barrier) and ``extra`` threads together;
    return the error strings they report. Fails on a deadlock."""
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers) + len(extra), timeout=timeout)

    def guarded(fn, name):
        def body():
            try:
                fn(barrier)
            except Exception as e:  # noqa: BLE001 -- report anything, from any thread
                with lock:
                    errors.append(f"{name}: {type(e).__name__}: {e}")
        return body

    threads = [threading.Thread(target=guarded(fn, f"worker {i}"), daemon=True)
               for i, fn in enumerate(workers)]
    threads += [threading.Thread(target=guarded(fn, f"switcher {i}"), daemon=True)
                for i, fn in enumerate(extra)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not stuck, f"threads {stuck} still running after {timeout} s: deadlock?"
    return errors


def _worker(jobs, expected, seed, rounds=ROUNDS):
    """A worker: ``rounds`` passes over the jobs in its own order; each result's
    fingerprint must be one of ``expected[name]``."""
    names = list(jobs)

    def work(barrier):
        barrier.wait()
        order = np.random.default_rng(seed)
        problems = []
        for _ in range(rounds):
            for i in order.permutation(len(names)):
                name = names[i]
                if _fingerprint(jobs[name]()) not in expected[name]:
                    problems.append(name)
        if problems:
            raise AssertionError(
                f"{len(problems)} results differ from the single-threaded ones: "
                f"{sorted(set(problems))}")
    return work


def test_threads_on_one_target(simd_target):
    inputs = _make_inputs()
    jobs = _make_jobs(inputs)
    expected = {name: {_fingerprint(job())} for name, job in jobs.items()}
    errors = _run_threads([_worker(jobs, expected, seed) for seed in range(N_THREADS)])
    assert not errors, "\n".join(errors)
    assert logitkit._core.active_target() == simd_target


def test_threads_while_the_target_switches():
    inputs = _make_inputs()
    jobs = _make_jobs(inputs)
    original = logitkit._core.active_target()
    expected = {name: set() for name in jobs}
    try:
        for target in SUPPORTED:
            logitkit._core._set_target(target)
            for name, job in jobs.items():
                expected[name].add(_fingerprint(job()))
    finally:
        logitkit._core._set_target(original)

    done = threading.Event()  # set by the last worker to finish
    remaining = [N_THREADS - N_SWITCHERS]
    lock = threading.Lock()
    switches = [0] * N_SWITCHERS

    def switcher(k):
        def body(barrier):
            barrier.wait()
            for i in itertools.count(k):
                if done.is_set():
                    return
                logitkit._core._set_target(SUPPORTED[i % len(SUPPORTED)])
                switches[k] += 1
                time.sleep(0)  # let the workers have the GIL
        return body

    def worker(seed):
        work = _worker(jobs, expected, seed)

        def body(barrier):
            try:
                work(barrier)
            finally:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
        return body

    try:
        errors = _run_threads([worker(100 + i) for i in range(N_THREADS - N_SWITCHERS)],
                              extra=[switcher(k) for k in range(N_SWITCHERS)])
    finally:
        done.set()
        logitkit._core._set_target(original)
    assert not errors, "\n".join(errors)
    if len(SUPPORTED) > 1:
        assert sum(switches) > 0
