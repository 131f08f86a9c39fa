"""softmax, log_softmax and logsumexp against the float64 reference: row lengths, every
axis of 1-D to 4-D arrays, memory layouts, keepdims, the accuracy of the vectorized exp,
and the overflow example of seed 001."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import (
    FLOAT_DTYPES,
    FUNC_NAMES,
    LAYOUTS,
    assert_close,
    call,
    dtype_id,
    random_logits,
    ref,
    result_shape,
    rng_for,
    with_layout,
)

pytestmark = pytest.mark.filterwarnings("error")

# Lengths around the vector widths (4/8/16 lanes), a typical class count and a
# 1M-entry row (an LLM vocabulary is 32k-128k).
LENGTHS = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 2**20]


def n_rows(n):
    """Enough rows to use every row scale of random_logits, few for the long rows."""
    if n >= 2**16:
        return 2
    if n >= 512:
        return 9
    return 40


# ---------------------------------------------------------------------------------------
# row lengths
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", LENGTHS, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_last_axis_lengths(simd_target, func, dtype, n):
    x = random_logits(rng_for("last", dtype_id(dtype), n), (n_rows(n), n), dtype)
    before = x.copy()
    assert_close(call(func, x, axis=-1), ref(func, x, -1), func, dtype)
    np.testing.assert_array_equal(x, before)  # the input is not modified


@pytest.mark.parametrize("n", LENGTHS, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_first_axis_lengths(simd_target, func, dtype, n):
    # reduction over a non-contiguous axis: the strided kernel
    x = random_logits(rng_for("first", dtype_id(dtype), n), (n, n_rows(n) - 1), dtype,
                      axis=0)
    assert_close(call(func, x, axis=0), ref(func, x, 0), func, dtype)


@pytest.mark.parametrize("inner", LENGTHS[:-1], ids=lambda n: f"inner{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_inner_lengths(simd_target, func, dtype, inner):
    # the strided kernel vectorizes across the inner positions: vary their count
    x = random_logits(rng_for("inner", dtype_id(dtype), inner), (3, 9, inner), dtype,
                      axis=1)
    assert_close(call(func, x, axis=1), ref(func, x, 1), func, dtype)
    assert_close(call(func, x, axis=-2), ref(func, x, 1), func, dtype)


# ---------------------------------------------------------------------------------------
# one dominant logit over a long tail: the sum of many small exponentials
# ---------------------------------------------------------------------------------------
# The typical LLM row: one large logit and a long tail of small probabilities. The sum
# s = 1 + (many terms far below 1) must not lose the tail: a float32 accumulator that
# starts at exp(0) = 1 rounds every added term to a multiple of 2**-23 (terms below
# 2**-24 vanish entirely), a bias that grows with the number of terms per accumulator.

DOMINANT_CASES = [  # (n, dominant logit, tail)
    (18, 12.0, "zeros"),
    (1000, 12.0, "zeros"),
    (2**17, 16.0, "zeros"),
    (2**17, 20.0, "normal"),
    (2**20, 20.0, "normal"),
]


def _dominant_row(n, big, tail, dtype):
    x = np.zeros(n) if tail == "zeros" else rng_for("tail", n).standard_normal(n)
    x[n // 3] = big
    return x.astype(dtype)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("case", DOMINANT_CASES,
                         ids=lambda c: f"n{c[0]}-top{c[1]:g}-{c[2]}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_dominant_logit_long_tail(simd_target, func, dtype, case, axis):
    n, big, tail = case
    row = _dominant_row(n, big, tail, dtype)
    # as a row, or as the columns of an (n, 3) array reduced along axis 0
    x = row[None, :] if axis == -1 else np.stack([row, row[::-1], row], axis=1)
    assert_close(call(func, x, axis=axis), ref(func, x, axis), func, dtype)


# s = 1 + (terms below the rounding of 1) exactly: logsumexp = log1p(s - 1) and the top
# class's log_softmax = -log1p(s - 1) must keep the tail, not round it to 0 (SciPy's
# test_gh18295: logsumexp([0, -40]) is 4.248e-18; scipy/scipy#19521 for log_softmax).
# Every kernel path: rows, in place, columns (axis 0), short rows and strided views.

TINY_TAIL_LENGTHS = [2, 3, 7, 16, 17, 33, 100, 1000, 2**17]
# A tail far below the rounding of 1 that each dtype still represents: e^-40 ~ 4e-18,
# e^-20 ~ 2e-9 (float32's 1 + 2e-9 is 1). Tolerances: the exp's own error (<= 1 ulp for
# double, < 5 ulp for the float kernels' exp, tests/test_exp.py) plus the sum's.
TINY_TAIL = {np.float64: (-40.0, 1e-14), np.float32: (-20.0, 1e-6)}


def _tiny_tail_rows(n, dtype):
    low, _ = TINY_TAIL[dtype]
    rows = np.full((3, n), low)
    for r, pos in enumerate([0, n // 3, n - 1]):
        rows[r, pos] = 0.0
    rows[1, : n // 3] = low - 1.0  # a second tail value
    return rows.astype(dtype)


def _tiny_tail_expected(rows):
    """log1p(s - 1) per row (maximum 0), in float64 from the rows' own values."""
    r = rows.astype(np.float64)
    e = np.exp(r)
    e[r == 0] = 0.0
    return np.log1p(e.sum(axis=-1))


@pytest.mark.parametrize("path", ["rows", "in_place", "columns", "strided"])
@pytest.mark.parametrize("n", TINY_TAIL_LENGTHS, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_tiny_tail_next_to_the_maximum(simd_target, dtype, n, path):
    rows = _tiny_tail_rows(n, dtype)
    expected = _tiny_tail_expected(rows)
    _, rtol = TINY_TAIL[dtype]
    top = rows.argmax(axis=-1)
    if path == "columns":
        lse = logitkit.logsumexp(np.ascontiguousarray(rows.T), axis=0)
        lsm = logitkit.log_softmax(np.ascontiguousarray(rows.T), axis=0).T
    elif path == "strided":
        wide = np.zeros((3, 2 * n), dtype)
        wide[:, ::2] = rows
        lse = logitkit.logsumexp(wide[:, ::2], axis=-1)
        lsm = logitkit.log_softmax(wide[:, ::2], axis=-1)
    elif path == "in_place":
        lse = logitkit.logsumexp(rows, axis=-1)
        lsm = rows.copy()
        logitkit.log_softmax(lsm, axis=-1, out=lsm)
    else:
        lse = logitkit.logsumexp(rows, axis=-1)
        lsm = logitkit.log_softmax(rows, axis=-1)
    assert lse.dtype == dtype and lsm.dtype == dtype
    np.testing.assert_allclose(lse, expected, rtol=rtol, atol=0)
    np.testing.assert_allclose(lsm[np.arange(3), top], -expected, rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_tiny_tail_with_ties(simd_target, dtype):
    # two maxima (s - 1 = 1 + tail) in the same lane, in different lanes, and far apart
    low, _ = TINY_TAIL[dtype]
    for n, second in [(40, 16), (40, 32), (40, 1), (5000, 4097)]:
        x = np.full(n, low, dtype)
        x[0] = x[second] = 0.0
        expected = np.log(2.0 + (n - 2) * np.exp(np.float64(low)))
        np.testing.assert_allclose(logitkit.logsumexp(x), expected, rtol=1e-6)
        np.testing.assert_allclose(logitkit.log_softmax(x)[0], -expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# every axis of 1-D to 4-D arrays, in every memory layout
# ---------------------------------------------------------------------------------------

SHAPES = [(7,), (1,), (33,), (3, 5), (1, 6), (6, 1), (3, 5, 7), (2, 1, 9), (3, 5, 7, 9),
          (1, 4, 1, 6), (2, 3, 1, 17)]

SHAPE_AXES = [(shape, axis) for shape in SHAPES for axis in range(-len(shape), len(shape))]


def _shape_axis_id(param):
    shape, axis = param
    return "x".join(map(str, shape)) + f"-axis{axis}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape_axis", SHAPE_AXES, ids=_shape_axis_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_every_axis_and_layout(simd_target, func, dtype, shape_axis, layout):
    shape, axis = shape_axis
    values = random_logits(rng_for("layout", shape, axis, dtype_id(dtype)), shape, dtype,
                           axis=axis)
    x = with_layout(values, layout)
    result = call(func, x, axis=axis)
    assert_close(result, ref(func, values, axis), func, dtype)
    np.testing.assert_array_equal(x, values)  # the input is not modified


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_positional_axis_and_default_axis(simd_target, func, dtype):
    x = random_logits(rng_for("default", dtype_id(dtype)), (4, 6, 5), dtype)
    fn = getattr(logitkit, func)
    assert_close(fn(x), ref(func, x, -1), func, dtype)
    assert_close(fn(x, 1), ref(func, x, 1), func, dtype)
    assert_close(fn(x, axis=np.int64(0)), ref(func, x, 0), func, dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_logsumexp_keepdims(simd_target, dtype, axis):
    x = random_logits(rng_for("keepdims", axis, dtype_id(dtype)), (4, 6, 5), dtype)
    kept = logitkit.logsumexp(x, axis=axis, keepdims=True)
    assert kept.shape == result_shape("logsumexp", x.shape, axis, keepdims=True)
    assert_close(kept, reference.logsumexp(x, axis, keepdims=True), "logsumexp", dtype)
    dropped = logitkit.logsumexp(x, axis=axis, keepdims=False)
    assert dropped.shape == result_shape("logsumexp", x.shape, axis)
    np.testing.assert_array_equal(np.squeeze(kept, axis=axis), dropped)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_broadcast_input(simd_target, func, dtype):
    # zero strides (np.broadcast_to gives a read-only view): constant along axis 0
    row = random_logits(rng_for("bcast", dtype_id(dtype)), (11,), dtype)
    x = np.broadcast_to(row, (6, 11))
    for axis in (0, 1):
        assert_close(call(func, x, axis=axis), ref(func, x, axis), func, dtype)


# ---------------------------------------------------------------------------------------
# the vectorized exp across its whole range
# ---------------------------------------------------------------------------------------

EXP_GRID = {
    np.float32: 100.0,  # exp(-100) ~ 4e-44 is a float32 subnormal
    np.float64: 745.0,  # exp(-745) ~ 5e-324 is the smallest float64 subnormal
}
EXP_LAYOUTS = ["pairs", "pairs_axis0", "rows17", "rows17_axis0"]


def _exp_grid_case(dtype, layout):
    """x and axis holding the dense grid t in [-T, T].

    pairs:  rows [0, t] -> softmax [1 / (1 + e^t), e^t / (1 + e^t)]: exp at -|t|
    rows17: rows [0, s_1, ..., s_16] with s_i = -|t| <= 0, so x - max = s_i exactly
            and each softmax entry is exp(s_i) / (1 + ...) -- 16 lanes of exp per row
    *_axis0: the same data transposed (C-contiguous), reduced along axis 0
    """
    big = EXP_GRID[dtype]
    t = np.linspace(-big, big, 100_000 + 1).astype(dtype)
    if layout.startswith("pairs"):
        x = np.stack([np.zeros_like(t), t], axis=1)
    else:
        s = -np.abs(t[: 16 * (t.size // 16)]).reshape(-1, 16)
        x = np.concatenate([np.zeros((s.shape[0], 1), dtype=dtype), s], axis=1)
    if layout.endswith("axis0"):
        return np.ascontiguousarray(x.T), 0
    return x, -1


@pytest.mark.parametrize("layout", EXP_LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_exp_accuracy_dense_grid(simd_target, func, dtype, layout):
    x, axis = _exp_grid_case(dtype, layout)
    assert_close(call(func, x, axis=axis), ref(func, x, axis), func, dtype)


# ---------------------------------------------------------------------------------------
# seed 001: naive softmax of [123, 456, 789] overflows to NaN
# ---------------------------------------------------------------------------------------


def test_seed001_naive_softmax_overflows():
    # the example of the seed, for the record: exp(789) overflows float64
    scores = np.array([123, 456, 789])
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(scores) / np.sum(np.exp(scores))
    assert np.isnan(naive).any()


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64], ids=dtype_id)
def test_seed001_stable_softmax(simd_target, dtype):
    scores = np.array([123, 456, 789], dtype=dtype)
    expected_dtype = np.float32 if dtype == np.float32 else np.float64

    p = logitkit.softmax(scores)
    assert p.dtype == expected_dtype
    assert not np.isnan(p).any()
    np.testing.assert_allclose(p, [0.0, 0.0, 1.0], rtol=0, atol=1e-100)
    assert_close(p, reference.softmax(scores, -1), "softmax", expected_dtype)

    logp = logitkit.log_softmax(scores)
    assert_close(logp, [-666.0, -333.0, 0.0], "log_softmax", expected_dtype)
    assert_close(logp, reference.log_softmax(scores, -1), "log_softmax", expected_dtype)

    lse = logitkit.logsumexp(scores)
    assert lse.shape == ()
    assert_close(np.asarray(lse), reference.logsumexp(scores, -1), "logsumexp",
                 expected_dtype)


# The README's claim about long rows: float32 log_softmax over 2^20 classes with a
# dominant logit stays within 2e-7 * max(1, |result|) of the float64 result (1-2 float32
# ulps of the larger of 1 and the value), on every target.
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_readme_claim_long_row_log_softmax_float32(simd_target, seed):
    x = np.random.default_rng(seed).standard_normal(2**20)
    x[2**20 // 3] = 20.0
    x32 = x.astype(np.float32)
    expected = reference.log_softmax(x32)
    err = np.abs(logitkit.log_softmax(x32).astype(np.float64) - expected)
    assert np.max(err / np.maximum(1.0, np.abs(expected))) <= 2e-7
