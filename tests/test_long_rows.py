"""Rows of 2^18 elements and more: the core cuts each into pieces of 2^16, computes each
piece's (max, sum of exponentials - 1) on any thread and merges them in piece order
(softmax.cpp's long_rows). Against the float64 reference, on every SIMD target and dtype,
with the maximum in any piece, several maxima, tails far below the maximum (the merged
sum - 1 must not be rounded against a 1), pieces of -inf, and the rows the merge hands
back to the row kernel (+inf, NaN, all -inf).
"""

import numpy as np
import pytest

import logitkit
import reference
from helpers import assert_close, rng_for

try:
    import ml_dtypes

    _HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
except ImportError:
    _HALF = [np.dtype(np.float16)]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)] + _HALF
DTYPE_IDS = [d.name for d in DTYPES]

PIECE = 1 << 16
LONG = (1 << 18) + 77  # five pieces, the last one short


def _row(kind, rng):
    x = rng.standard_normal(LONG) * 3.0
    if kind == "max_in_last_piece":
        x[LONG - 5] = 40.0
    elif kind == "max_in_first_piece":
        x[3] = 40.0
    elif kind == "two_maxima_in_two_pieces":
        x[10] = x[3 * PIECE + 10] = 25.0
    elif kind == "tail_far_below":
        x[:] = -40.0
        x[2 * PIECE + 1] = 0.0  # lse = log1p((LONG - 1) e^-40): 1.1e-12, not 0
    elif kind == "pieces_of_minus_inf":
        x[: 2 * PIECE] = -np.inf
        x[4 * PIECE :] = -np.inf
    elif kind == "plus_inf":
        x[PIECE + 3] = np.inf
    elif kind == "nan":
        x[4 * PIECE + 1] = np.nan
    elif kind == "all_minus_inf":
        x[:] = -np.inf
    elif kind == "offset":
        x += 1e4
    return x


KINDS = [
    "random",
    "max_in_last_piece",
    "max_in_first_piece",
    "two_maxima_in_two_pieces",
    "tail_far_below",
    "pieces_of_minus_inf",
    "plus_inf",
    "nan",
    "all_minus_inf",
    "offset",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_long_rows_match_the_reference(simd_target, dtype, kind):
    rng = rng_for("long", kind, dtype.name)
    # Two rows: a long row next to an ordinary random one (pieces of different rows
    # must not mix in the merge).
    x = np.stack([_row(kind, rng), rng.standard_normal(LONG)]).astype(dtype)
    exact = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        assert_close(logitkit.softmax(x, workers=2), reference.softmax(exact, -1),
                     "softmax", dtype)
        assert_close(logitkit.log_softmax(x, workers=2), reference.log_softmax(exact, -1),
                     "log_softmax", dtype)
        assert_close(logitkit.logsumexp(x, workers=2), reference.logsumexp(exact, -1),
                     "logsumexp", dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_long_row_tail_is_not_lost(dtype):
    # logsumexp of one 0 among 2^18 + 76 entries of -40: the answer is the tail's sum,
    # 1.1e-12, which adding the tail to the maximum's 1 would round to 0 (float32).
    if dtype.itemsize == 2:
        pytest.skip("-40 and the result are not representable to this precision")
    x = np.full(LONG, -40.0, dtype=dtype)
    x[2 * PIECE + 1] = 0
    expected = np.log1p((LONG - 1) * np.exp(-40.0))
    got = float(logitkit.logsumexp(x))
    assert abs(got - expected) <= 1e-6 * expected


def test_long_rows_in_place(simd_target):
    rng = rng_for("long in place")
    x = rng.standard_normal((2, LONG)).astype(np.float32) * 5
    expected = logitkit.softmax(x.copy())
    logitkit.softmax(x, out=x, workers=3)
    np.testing.assert_array_equal(x, expected)
