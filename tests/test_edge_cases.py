"""The numerical contract of DESIGN.md for special rows: -inf (masked classes), all -inf,
+inf, NaN, huge magnitudes, size-1 axes and empty arrays.  Warnings are errors here: none
of these inputs may emit a RuntimeWarning."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import (
    FLOAT_DTYPES,
    FUNC_NAMES,
    TOLERANCES,
    assert_close,
    call,
    dtype_id,
    ref,
    result_dtype,
    result_shape,
    rng_for,
)

pytestmark = pytest.mark.filterwarnings("error")

inf, nan = np.inf, np.nan

# ---------------------------------------------------------------------------------------
# special rows, at several positions, mixed with ordinary rows
# ---------------------------------------------------------------------------------------


def special_rows(rng, n, pos):
    """One row of length ``n`` per scenario of the contract table.  The special value is
    at index ``pos``; scenarios with two special values also use ``other``."""
    other = (pos + n // 2 + 1) % n
    base = rng.standard_normal(n) * 3

    def row(fill=None, **at):
        r = base.copy() if fill is None else np.full(n, fill)
        for where, value in at.items():
            r[{"pos": pos, "other": other}[where]] = value
        return r

    return {
        "finite": row(),
        "masked_one": row(pos=-inf),
        "masked_two": row(pos=-inf, other=-inf),
        "masked_all_but_one": row(fill=-inf, pos=base[pos]),
        "all_neginf": row(fill=-inf),
        "posinf": row(pos=inf),
        "posinf_neginf": row(pos=inf, other=-inf),
        "two_posinf": row(pos=inf, other=inf),
        "all_posinf": row(fill=inf),
        "nan": row(pos=nan),
        "nan_posinf": row(pos=nan, other=inf),
        "nan_neginf": row(pos=nan, other=-inf),
        "all_nan": row(fill=nan),
    }


def special_matrix(rng, n, pos, dtype):
    """Every special row between two ordinary rows (a special row must not leak)."""
    rows = []
    for special in special_rows(rng, n, pos).values():
        rows += [rng.standard_normal(n), special, rng.standard_normal(n) * 10]
    return np.array(rows, dtype=dtype)


@pytest.mark.parametrize("orientation", ["rows", "columns"])
@pytest.mark.parametrize("pos", ["first", "middle", "last"])
@pytest.mark.parametrize("n", [3, 16, 37])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_special_rows_match_reference(simd_target, func, dtype, n, pos, orientation):
    index = {"first": 0, "middle": n // 2, "last": n - 1}[pos]
    x = special_matrix(rng_for("special", n, pos), n, index, dtype)
    if orientation == "rows":
        x, axis = x, -1
    else:  # the same rows as columns of a C-contiguous array: the strided kernel
        x, axis = np.ascontiguousarray(x.T), 0
    assert_close(call(func, x, axis=axis), ref(func, x, axis), func, dtype)


# The contract table itself, spelled out (the reference implements the same table).


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_masked_classes(simd_target, dtype, axis):
    rng = rng_for("masked", dtype_id(dtype), axis)
    x = rng.standard_normal((20, 37)) * 5
    mask = rng.random(x.shape) < 0.3
    mask[:, 3] = False  # at least one class per row is not masked
    x[mask] = -inf
    x = x.astype(dtype)
    if axis == 0:
        x, mask = np.ascontiguousarray(x.T), mask.T

    p = logitkit.softmax(x, axis=axis)
    assert np.all(p[mask] == 0)
    assert np.all(p[~mask] > 0)
    assert_close(p, reference.softmax(x, axis), "softmax", dtype)

    logp = logitkit.log_softmax(x, axis=axis)
    assert np.all(logp[mask] == -inf)
    assert np.all(np.isfinite(logp[~mask]))
    assert_close(logp, reference.log_softmax(x, axis), "log_softmax", dtype)

    # logsumexp ignores the masked classes: compare with each row without them
    lse = logitkit.logsumexp(x, axis=axis)
    rows = np.moveaxis(x, axis, -1)
    kept = np.moveaxis(~mask, axis, -1)
    expected = [reference.logsumexp(r[k], -1) for r, k in zip(rows, kept)]
    assert_close(lse, np.array(expected), "logsumexp", dtype)


CONTRACT_ROWS = {
    # name: (row, logsumexp of the row); softmax and log_softmax are a NaN row for all
    "all_neginf": ([-inf, -inf, -inf], -inf),
    "posinf": ([1.0, inf, -2.0], inf),
    "posinf_neginf": ([-inf, inf, 0.0], inf),
    "posinf_nan": ([inf, nan, 0.0], nan),
    "nan": ([0.5, 1.0, nan], nan),
    "nan_neginf": ([nan, -inf, -inf], nan),
}


@pytest.mark.parametrize("case", list(CONTRACT_ROWS))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_contract_table(simd_target, dtype, case):
    row, lse_expected = CONTRACT_ROWS[case]
    x = np.array([[1.0, 2.0, 3.0], row, [3.0, 2.0, 1.0]], dtype=dtype)
    p = logitkit.softmax(x)
    logp = logitkit.log_softmax(x)
    lse = logitkit.logsumexp(x)
    assert np.all(np.isnan(p[1])), p[1]
    assert np.all(np.isnan(logp[1])), logp[1]
    if np.isnan(lse_expected):
        assert np.isnan(lse[1]), lse[1]
    else:
        assert lse[1] == lse_expected, lse[1]
    # the ordinary rows around it are untouched
    for i in (0, 2):
        assert_close(p[i], reference.softmax(x[i], -1), "softmax", dtype)
        assert_close(logp[i], reference.log_softmax(x[i], -1), "log_softmax", dtype)
        assert_close(lse[i], reference.logsumexp(x[i], -1), "logsumexp", dtype)


# ---------------------------------------------------------------------------------------
# huge magnitudes: finite, and softmax sums to 1
# ---------------------------------------------------------------------------------------


def huge_rows(dtype):
    rng = rng_for("huge", dtype_id(dtype))
    fmax = float(np.finfo(dtype).max)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    rows = {
        "offset+1e4": 1e4 + 3 * rng.standard_normal(37),
        "offset-1e4": -1e4 + 3 * rng.standard_normal(37),
        "offset+1e4_wide": 1e4 + 30 * rng.standard_normal(37),
        "near+88": [88.0, 87.5, -88.0, 88.7, 0.0, 88.72, 88.5],
        "near-88": [-88.0, -87.3, -89.0, -100.0, -103.9, -87.0],
        "at_exp_max_f32": [88.72283, 88.72283, 88.72283],
        "pm1e30": [1e30, -1e30, 1e30, 0.0, 5e29, 1e30 * (1 - 1e-6)],
        "minus1e30": [-1e30, -1e30, -1e30 - 1e25],
        "plus1e30_ties": [1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30],
        "fmax_pair": [fmax, fmax, 0.0],
        "minus_fmax": [-fmax, -fmax],
        "subnormals": [tiny, 0.0, -tiny, 1e3 * tiny],
        "mixed_scales": [1e30, 1e-30, -1e-30, 1e4, 88.0, 1e30 - 1e24],
    }
    if dtype == np.float64:
        rows.update({
            "pm1e300": [1e300, -1e300, 0.0, 1e300 * (1 - 1e-12)],
            "near+709": [709.7, 709.8, -745.0, 709.0],
            "near-745": [-745.0, -744.0, -708.0, -740.0],
            "offset+1e15": 1e15 + 100 * rng.standard_normal(17),
            "huge_pair": [1e308, 1.7e308, 0.0],
        })
    return {name: np.array(row, dtype=np.float64).astype(dtype) for name, row in
            rows.items()}


HUGE_CASES = [(dtype, name) for dtype in FLOAT_DTYPES for name in huge_rows(dtype)]


@pytest.mark.parametrize("dtype_name", HUGE_CASES,
                         ids=lambda p: f"{dtype_id(p[0])}-{p[1]}")
def test_huge_magnitudes_stay_finite(simd_target, dtype_name):
    dtype, name = dtype_name
    row = huge_rows(dtype)[name]
    assert np.all(np.isfinite(row))
    # the row alone, as a column (strided kernel) and repeated inside a longer row
    for x, axis in [(row, -1), (row[:, None].copy(), 0), (np.tile(row, (3, 5)), -1)]:
        p = logitkit.softmax(x, axis=axis)
        logp = logitkit.log_softmax(x, axis=axis)
        lse = logitkit.logsumexp(x, axis=axis)
        assert np.all(np.isfinite(p)), p
        assert np.all(np.isfinite(logp)), logp
        assert np.all(np.isfinite(lse)), lse
        n = x.shape[axis]
        total = np.sum(p.astype(np.float64), axis=axis)
        np.testing.assert_allclose(total, 1.0, rtol=0,
                                   atol=TOLERANCES[np.dtype(dtype)]["prob_rtol"] + n * 1e-16)
        assert_close(p, reference.softmax(x, axis), "softmax", dtype)
        assert_close(logp, reference.log_softmax(x, axis), "log_softmax", dtype)
        assert_close(lse, reference.logsumexp(x, axis), "logsumexp", dtype)


# ---------------------------------------------------------------------------------------
# size-1 axis
# ---------------------------------------------------------------------------------------

SIZE1_VALUES = [0.0, 1.0, -3.5, 1e30, -1e30, 88.7, -104.0, 1e4, -inf, inf, nan]


@pytest.mark.parametrize("shape_axis", [((11, 1), -1), ((1, 11), 0), ((11, 1, 1), 1),
                                        ((1, 11, 1), -3)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_size_one_axis(simd_target, dtype, shape_axis):
    shape, axis = shape_axis
    x = np.array(SIZE1_VALUES, dtype=dtype).reshape(shape)
    finite = np.isfinite(x)

    p = logitkit.softmax(x, axis=axis)
    assert np.all(p[finite] == 1)
    assert_close(p, reference.softmax(x, axis), "softmax", dtype)

    logp = logitkit.log_softmax(x, axis=axis)
    assert np.all(logp[finite] == 0)
    assert_close(logp, reference.log_softmax(x, axis), "log_softmax", dtype)

    lse = logitkit.logsumexp(x, axis=axis)
    assert_close(lse, np.squeeze(x, axis=axis).astype(np.float64), "logsumexp", dtype)
    assert_close(lse, reference.logsumexp(x, axis), "logsumexp", dtype)


# ---------------------------------------------------------------------------------------
# empty arrays
# ---------------------------------------------------------------------------------------

EMPTY_CASES = [((0,), 0), ((0,), -1), ((0, 5), 0), ((0, 5), 1), ((5, 0), 0),
               ((5, 0), -1), ((2, 0, 3), 0), ((2, 0, 3), 1), ((2, 0, 3), -1),
               ((0, 0), 1)]


FUNC_KEEPDIMS = [(func, False) for func in FUNC_NAMES] + [("logsumexp", True)]


@pytest.mark.parametrize("shape_axis", EMPTY_CASES,
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16, np.int64], ids=dtype_id)
@pytest.mark.parametrize("func_keepdims", FUNC_KEEPDIMS,
                         ids=lambda p: p[0] + ("-keepdims" if p[1] else ""))
def test_empty(simd_target, func_keepdims, dtype, shape_axis):
    func, keepdims = func_keepdims
    shape, axis = shape_axis
    x = np.zeros(shape, dtype=dtype)
    kwargs = {"keepdims": True} if keepdims else {}
    expected_shape = result_shape(func, shape, axis, keepdims=keepdims)
    expected = ref(func, x, axis, **kwargs)
    assert expected.shape == expected_shape

    result = np.asarray(call(func, x, axis=axis, **kwargs))
    assert result.shape == expected_shape
    assert_close(result, expected, func, result_dtype(dtype))
    if func == "logsumexp" and shape[axis] == 0:
        assert np.all(result == -inf)  # like scipy.special.logsumexp

    out = np.empty(expected_shape, dtype=result_dtype(dtype))
    assert call(func, x, axis=axis, out=out, **kwargs) is out
    assert_close(out, expected, func, result_dtype(dtype))
