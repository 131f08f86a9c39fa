"""The kernels' own exp (csrc/logitkit/exp.inl), measured in ulp on every SIMD target.

`_core._exp(x, out, nonpositive)` runs the vector exp over a contiguous array: the
general one (full range, subnormal results) or the cheaper one the kernels use for
arguments <= 0 (results below the smallest normal number flushed to zero). The bounds
here are the ones stated in exp.inl; a change to the polynomials that loses accuracy
fails them.
"""

from __future__ import annotations

import numpy as np
import pytest

from logitkit import _core

# (dtype, lowest argument with a normal result, highest argument with a finite result)
RANGES = {
    np.float32: (-87.33, 88.72),
    np.float64: (-708.39, 709.78),
}
# Max error in ulp of normal results: general exp, exp for arguments <= 0.
ULP_BOUNDS = {
    np.float32: (1.05, 5.0),
    np.float64: (1.0, 1.2),
}


def _exp(x, nonpositive):
    out = np.empty_like(x)
    _core._exp(x, out, nonpositive)
    return out


def _grid(dtype, lo, hi):
    dense = np.linspace(lo, hi, 2_000_001)
    near_zero = np.concatenate([-np.logspace(-12, 1, 200_000), np.logspace(-12, 1, 200_000)])
    near_zero = near_zero[(near_zero >= lo) & (near_zero <= hi)]
    return np.concatenate([dense, near_zero]).astype(dtype)


def _max_ulp(result, x):
    exact = np.exp(x.astype(np.longdouble))
    spacing = np.spacing(exact.astype(x.dtype)).astype(np.longdouble)
    return float(np.max(np.abs(result.astype(np.longdouble) - exact) / spacing))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_general_exp_ulp(simd_target, dtype):
    lo, hi = RANGES[dtype]
    x = _grid(dtype, lo, hi)
    assert _max_ulp(_exp(x, False), x) <= ULP_BOUNDS[dtype][0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nonpositive_exp_ulp(simd_target, dtype):
    lo, _ = RANGES[dtype]
    x = _grid(dtype, lo, 0.0)
    assert _max_ulp(_exp(x, True), x) <= ULP_BOUNDS[dtype][1]


@pytest.mark.parametrize("nonpositive", [False, True], ids=["general", "nonpositive"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_special_values(simd_target, dtype, nonpositive):
    x = np.array([-np.inf, np.nan, -1e30, -1e4, 0.0, -0.0], dtype)
    out = _exp(x, nonpositive)
    np.testing.assert_array_equal(out[[0, 2, 3]], 0.0)
    assert np.isnan(out[1])
    np.testing.assert_array_equal(out[4:], 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_general_exp_overflow_and_subnormals(simd_target, dtype):
    lo, hi = RANGES[dtype]
    x = np.array([np.inf, hi + 1, 1e30], dtype)
    np.testing.assert_array_equal(_exp(x, False), np.inf)
    # Subnormal results of the general exp are within one subnormal step.
    tiny = np.linspace(lo - 15, lo, 10_001).astype(dtype)
    exact = np.exp(tiny.astype(np.longdouble))
    step = np.finfo(dtype).smallest_subnormal
    assert float(np.max(np.abs(_exp(tiny, False) - exact))) <= float(step)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nonpositive_exp_flushes_below_normal(simd_target, dtype):
    lo, _ = RANGES[dtype]
    tiny = np.linspace(lo - 30, lo - 1, 1001).astype(dtype)
    out = _exp(tiny, True)
    assert np.all(out < np.finfo(dtype).smallest_normal)
    assert np.all(out >= 0)


# log_sigmoid is built on the general exp (not the flushing one): ~1 ulp, like SciPy's
# log_expit, with subnormal results. (It was up to ~3 ulp for float32 at x = 1, and 0 for
# results below the normal range.)
LOG_SIGMOID_ULP = {np.float32: 0.5 + 2**-12, np.float64: 1.0}


def _log_sigmoid_ref(x):
    lx = x.astype(np.longdouble)
    neg = lx < 0
    t = np.exp(np.where(neg, lx, -lx))
    return np.where(neg, lx - np.log1p(t), -np.log1p(t))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_log_sigmoid_ulp(simd_target, dtype):
    import logitkit

    dense = np.linspace(-60, 60, 600_001)
    near_zero = np.concatenate([-np.logspace(-12, 2, 50_000), np.logspace(-12, 2, 50_000)])
    x = np.concatenate([dense, near_zero, [1.0, -1.0, 0.0]]).astype(dtype)
    exact = _log_sigmoid_ref(x)
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
    ulps = np.abs(logitkit.log_sigmoid(x).astype(np.longdouble) - exact) / spacing
    assert float(ulps.max()) <= LOG_SIGMOID_ULP[dtype], x[np.argmax(ulps)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_log_sigmoid_subnormal_results(simd_target, dtype):
    import logitkit

    lo, hi = (80.0, 110.0) if dtype == np.float32 else (700.0, 760.0)
    x = np.linspace(lo, hi, 20_001).astype(dtype)
    exact = _log_sigmoid_ref(x)
    step = np.longdouble(np.finfo(dtype).smallest_subnormal)
    out = logitkit.log_sigmoid(x)
    sub = np.abs(exact) < np.finfo(dtype).smallest_normal
    assert sub.sum() > 1000
    err = np.abs(out.astype(np.longdouble) - exact)[sub] / step
    assert float(np.max(err)) <= 1.0
    nonzero = exact.astype(dtype) != 0
    assert np.all(out[nonzero] < 0) and np.all(np.signbit(out))
