"""Results are bit-identical for every number of workers, on every SIMD target.

The core cuts each call into tasks whose boundaries depend only on the shapes (row blocks,
pieces of long rows, pieces of elementwise arrays) and merges partial results (a long row's
(max, sum) pieces, the loss sums of binary cross-entropy) in task order, so which thread
runs which task cannot change a bit. These tests compare every output and every loss, as
bit patterns, for workers = 1, 2, 3, 4, 7, 16 and 64, on arrays large enough that the
core really uses that many threads (more than 2 * 65536 elements: parallel.hpp's grain),
in every layout family the drivers have: contiguous rows, short rows (column kernels),
a reduced axis that is not the last (contiguous columns), 3-d batches, rows that are not
contiguous (the gather path), and long rows cut into pieces.
"""

import numpy as np
import pytest

import logitkit
from helpers import random_logits, rng_for

WORKER_COUNTS = [1, 2, 3, 4, 7, 16, 64]

try:
    import ml_dtypes

    _HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
except ImportError:  # bfloat16 needs ml_dtypes (a test dependency); float16 does not
    _HALF = [np.dtype(np.float16)]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)] + _HALF
DTYPE_IDS = [d.name for d in DTYPES]

# (shape, axis, layout): every driver path, each above the threading grain.
CASES = {
    "rows": ((257, 1031), -1, "C"),
    "short_rows": ((20011, 10), -1, "C"),
    "rows_of_24": ((9001, 24), -1, "C"),
    "axis0": ((1031, 263), 0, "C"),
    "batch3d": ((3, 97, 1001), -1, "C"),
    "batch3d_middle": ((5, 301, 97), 1, "C"),
    "strided_rows": ((131, 2003), -1, "every_other"),
    "long_row": ((1, (1 << 18) + 123), -1, "C"),
    "long_rows": ((3, (1 << 18) + 5), -1, "C"),
}


def bits(value):
    """The bit pattern of an array or scalar result (NaN payloads and -0 included)."""
    a = np.ascontiguousarray(np.asarray(value))
    return a.view(np.dtype(f"u{a.dtype.itemsize}")).tobytes() + str(a.shape).encode()


def layout(x, kind):
    if kind == "C":
        return x
    base = np.zeros(tuple(2 * n for n in x.shape), dtype=x.dtype)
    view = base[(slice(None, None, 2),) * x.ndim]
    view[...] = x
    return view


def make(case, dtype, seed=0):
    shape, axis, kind = CASES[case]
    rng = rng_for("workers", case, dtype.name, seed)
    x = random_logits(rng, shape, np.float64, axis=axis).astype(dtype)
    return layout(x, kind), axis, rng


def labels_for(x, axis, rng):
    n = x.shape[axis]
    batch = x.shape[:axis % x.ndim] + x.shape[axis % x.ndim + 1 :]
    t = rng.integers(0, n, size=batch)
    t.flat[:: 7] = -100  # some ignored rows
    return t


def probs_for(x, axis, rng):
    y = logitkit.softmax(rng.standard_normal(x.shape).astype(np.float64), axis=axis)
    return y.astype(x.dtype)


# Each function: (x, axis, rng) -> callable(workers) returning a tuple of results.
def _softmax(x, axis, rng):
    return lambda w: (logitkit.softmax(x, axis=axis, workers=w),)


def _log_softmax(x, axis, rng):
    return lambda w: (logitkit.log_softmax(x, axis=axis, workers=w),)


def _logsumexp(x, axis, rng):
    return lambda w: (logitkit.logsumexp(x, axis=axis, workers=w),)


def _cross_entropy_labels(x, axis, rng):
    t = labels_for(x, axis, rng)

    def run(w):
        mean, grad = logitkit.cross_entropy(x, t, axis=axis, return_grad=True, workers=w)
        total = logitkit.cross_entropy(x, t, axis=axis, reduction="sum", workers=w)
        rows = logitkit.cross_entropy(
            x, t, axis=axis, reduction="none", label_smoothing=0.1, workers=w
        )
        return mean, grad, total, rows

    return run


def _cross_entropy_probs(x, axis, rng):
    y = probs_for(x, axis, rng)
    return lambda w: logitkit.cross_entropy(x, y, axis=axis, return_grad=True, workers=w)


def _entropy(x, axis, rng):
    return lambda w: (logitkit.entropy(x, axis=axis, workers=w),)


def _kl_divergence(x, axis, rng):
    q = (x.astype(np.float64) + rng.standard_normal(x.shape)).astype(x.dtype)
    return lambda w: logitkit.kl_divergence(
        x, q, axis=axis, reduction="mean", return_grad=True, workers=w
    )


def _softmax_backward(x, axis, rng):
    p = logitkit.softmax(x, axis=axis)
    g = rng.standard_normal(x.shape).astype(x.dtype)
    return lambda w: (logitkit.softmax_backward(g, p, axis=axis, workers=w),)


def _log_softmax_backward(x, axis, rng):
    lp = logitkit.log_softmax(x, axis=axis)
    g = rng.standard_normal(x.shape).astype(x.dtype)
    return lambda w: (logitkit.log_softmax_backward(g, lp, axis=axis, workers=w),)


def _sigmoid(x, axis, rng):
    return lambda w: (logitkit.sigmoid(x, workers=w), logitkit.log_sigmoid(x, workers=w))


def _binary_cross_entropy(x, axis, rng):
    y = rng.random(x.shape).astype(x.dtype)
    pw = rng.random(x.shape[-1:]).astype(x.dtype) + 0.5

    def run(w):
        mean, grad = logitkit.binary_cross_entropy(x, y, return_grad=True, workers=w)
        total = logitkit.binary_cross_entropy(x, y, pos_weight=pw, reduction="sum", workers=w)
        return mean, grad, total

    return run


FUNCTIONS = {
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "logsumexp": _logsumexp,
    "cross_entropy_labels": _cross_entropy_labels,
    "cross_entropy_probs": _cross_entropy_probs,
    "entropy": _entropy,
    "kl_divergence": _kl_divergence,
    "softmax_backward": _softmax_backward,
    "log_softmax_backward": _log_softmax_backward,
    "sigmoid": _sigmoid,
    "binary_cross_entropy": _binary_cross_entropy,
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_bit_identical_for_every_worker_count(simd_target, function, dtype, case):
    x, axis, rng = make(case, dtype)
    run = FUNCTIONS[function](x, axis, rng)
    expected = [bits(r) for r in run(1)]
    for w in WORKER_COUNTS[1:]:
        got = [bits(r) for r in run(w)]
        assert got == expected, f"{function} {case} {dtype}: workers={w} differs from 1"


@pytest.mark.parametrize("shape", [(257, 1031), (1, (1 << 18) + 3), (40000, 7)])
def test_binary_cross_entropy_sum_in_double_is_bit_identical(simd_target, shape):
    # The double loss sum before it is rounded to the result dtype: the pieces' sums are
    # added in piece order.
    rng = rng_for("bce double", shape)
    z = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = rng.random(shape).astype(np.float32)
    totals = {
        w: logitkit._core.binary_cross_entropy(z, y, None, None, None, None, 1.0, w)
        for w in WORKER_COUNTS
    }
    assert len({np.float64(t).tobytes() for t in totals.values()}) == 1, totals


def test_the_pool_really_runs_threads():
    x = np.ones((512, 1024), np.float32)
    logitkit.softmax(x, workers=4)
    assert logitkit._core._pool_thread_count() >= 3


def test_small_calls_stay_on_the_calling_thread():
    # A 32 x 10 softmax is far below the grain: asking for 64 workers starts no thread
    # (checked in a fresh process, where the pool has not been made yet).
    import subprocess
    import sys

    code = (
        "import numpy as np, logitkit\n"
        "logitkit.softmax(np.ones((32, 10)), workers=64)\n"
        "logitkit.cross_entropy(np.ones((128, 10)), np.zeros(128, int), workers=64)\n"
        "print(logitkit._core._pool_thread_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


@pytest.mark.parametrize("case", ["rows", "short_rows", "long_row"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_outputs_over_their_inputs_with_threads(simd_target, dtype, case):
    # In place (out=x, grad_out=logits) with the work split between threads: each task
    # reads its own elements before writing them, whichever thread runs it.
    x, axis, rng = make(case, dtype)
    t = labels_for(x, axis, rng)
    for name in ("softmax", "log_softmax"):
        expected = getattr(logitkit, name)(x, axis=axis, workers=1)
        y = x.copy()
        getattr(logitkit, name)(y, axis=axis, out=y, workers=4)
        assert bits(y) == bits(expected), name
    loss, grad = logitkit.cross_entropy(x, t, axis=axis, return_grad=True, workers=1)
    y = x.copy()
    loss4, grad4 = logitkit.cross_entropy(y, t, axis=axis, return_grad=True, grad_out=y, workers=4)
    assert grad4 is y and bits(y) == bits(grad) and bits(loss4) == bits(loss)
    target = rng.random(x.shape).astype(dtype)
    loss, grad = logitkit.binary_cross_entropy(x, target, return_grad=True, workers=1)
    y = np.ascontiguousarray(x).copy()
    loss4, grad4 = logitkit.binary_cross_entropy(y, target, return_grad=True, grad_out=y, workers=4)
    assert bits(y) == bits(grad) and bits(loss4) == bits(loss)
    y = np.ascontiguousarray(x).copy()
    logitkit.sigmoid(y, out=y, workers=4)
    assert bits(y) == bits(logitkit.sigmoid(x, workers=1))
