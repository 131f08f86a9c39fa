"""Outputs of 24 MiB and more are written with streaming (non-temporal) stores: softmax,
log_softmax, the pieces of long rows, and the gradient of cross_entropy over rows (float
and double). The streamed values must be the plain kernels' bit for bit (which path runs
depends on the size of the whole output, so a row must not change with it): each large
result is compared with the same rows computed as a small array, below the threshold, on
every SIMD target, with every cross-entropy option; and the long-row pieces against the
float64 reference.
"""

import numpy as np
import pytest

import logitkit
import reference
from helpers import assert_close, rng_for

STREAM_BYTES = 24 << 20
FLOAT_DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
IDS = ["float32", "float64"]


def _large(dtype, n=32000, seed=0):
    """Logits whose output is just above the threshold, with a few special rows."""
    rows = STREAM_BYTES // (n * dtype.itemsize) + 3
    rng = rng_for("stream", dtype.name, n, seed)
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    x[1, 7] = 80.0  # one dominant class
    x[2, :100] = -np.inf
    x[3, 5] = np.inf
    x[4, 9] = np.nan
    assert x.nbytes >= STREAM_BYTES
    return x, rng


SMALL = 9  # rows recomputed as a small array (far below the threshold)


def _same(big, small, what):
    a = np.asarray(big)[:SMALL]
    b = np.asarray(small)
    assert a.dtype == b.dtype
    assert np.array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}")), what


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=IDS)
@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
def test_streamed_rows_equal_plain_rows(simd_target, dtype, function):
    x, _ = _large(dtype)
    f = getattr(logitkit, function)
    with np.errstate(invalid="ignore"):
        _same(f(x, workers=2), f(x[:SMALL].copy(), workers=1), function)
        out = x.copy()
        f(out, out=out, workers=2)  # in place
        _same(out, f(x[:SMALL].copy()), function + " in place")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=IDS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label_smoothing": 0.1},
        {"weight": "w", "label_smoothing": 0.05},
        {"weight": "w"},
        {"probs": True},
        {"probs": True, "weight": "w", "label_smoothing": 0.2},
    ],
    ids=["plain", "smoothing", "weight_smoothing", "weight", "probs", "probs_weight_smoothing"],
)
def test_streamed_gradient_equals_plain(simd_target, dtype, options):
    x, rng = _large(dtype)
    x = np.where(np.isfinite(x), x, 0).astype(dtype)  # finite: compare the numbers
    n = x.shape[1]
    options = dict(options)
    if options.pop("probs", False):
        target = logitkit.softmax(rng.standard_normal(x.shape), axis=-1).astype(dtype)
    else:
        target = rng.integers(0, n, x.shape[0])
        target[3] = -100
    if options.get("weight") == "w":
        options["weight"] = rng.random(n) + 0.5
    loss, grad = logitkit.cross_entropy(
        x, target, reduction="none", return_grad=True, workers=2, **options
    )
    small_loss, small_grad = logitkit.cross_entropy(
        x[:SMALL].copy(), target[:SMALL].copy(), reduction="none", return_grad=True, **options
    )
    _same(grad, small_grad, "gradient")
    _same(loss, small_loss, "loss")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=IDS)
def test_streamed_long_row_pieces_match_the_reference(simd_target, dtype):
    n = STREAM_BYTES // dtype.itemsize + 1000  # one row, cut into pieces, streamed
    rng = rng_for("stream pieces", dtype.name)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[12345] = 30.0
    exact = x.astype(np.float64)
    assert_close(logitkit.softmax(x, workers=2), reference.softmax(exact, -1), "softmax", dtype)
    assert_close(
        logitkit.log_softmax(x, workers=2), reference.log_softmax(exact, -1), "log_softmax", dtype
    )
