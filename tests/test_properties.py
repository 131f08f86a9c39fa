"""Property-based tests (hypothesis): identities that hold for any finite input, and the
reference comparison on arbitrary arrays, also with -inf / +inf / NaN mixed in."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logitkit
from helpers import FLOAT_DTYPES, FUNC_NAMES, TOLERANCES, assert_close, call, dtype_id, ref

pytestmark = pytest.mark.filterwarnings("error")

# simd_target is function-scoped but only selects the target, which is the same for
# every example of a test; no example database, so running the tests writes no files.
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=24)


def finite_floats(dtype, bound=1e3):
    return st.floats(-bound, bound, width=np.finfo(dtype).bits, allow_nan=False,
                     allow_infinity=False, allow_subnormal=False)


@st.composite
def arrays_and_axis(draw, dtype, elements):
    shape = draw(SHAPES)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return x, axis


def _finite_case(dtype):
    return arrays_and_axis(dtype, finite_floats(dtype))


def _as_float64(a):
    return np.asarray(a, dtype=np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_softmax_is_a_distribution(simd_target, dtype, data):
    x, axis = data.draw(_finite_case(dtype))
    tol = TOLERANCES[np.dtype(dtype)]
    p = logitkit.softmax(x, axis=axis)
    assert np.all(np.isfinite(p))
    assert np.all(p >= 0)
    assert np.all(p <= 1 + tol["prob_rtol"])
    # each element within prob_rtol (or prob_atol) of the truth -> the sum within
    n = x.shape[axis]
    total = np.sum(_as_float64(p), axis=axis)
    bound = tol["prob_rtol"] + n * (tol["prob_atol"] + 2.0**-52)
    assert np.all(np.abs(total - 1) <= bound), np.max(np.abs(total - 1))


@st.composite
def shifted_case(draw, dtype):
    """x on the grid k/16 (|k| <= 2**10) and an integer shift |c| <= 2**12: x + c is
    exact in float32 and float64, so the reference of x and of x + c are identical."""
    elements = st.integers(-(2**10), 2**10).map(lambda k: k / 16)
    x, axis = draw(arrays_and_axis(dtype, elements))
    c = draw(st.integers(-(2**12), 2**12))
    return x, axis, c


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_shift_invariance(simd_target, dtype, data):
    x, axis, c = data.draw(shifted_case(dtype))
    xc = x + np.asarray(c, dtype=dtype)
    assert np.array_equal(_as_float64(xc), _as_float64(x) + c)  # the shift was exact
    # softmax(x + c) == softmax(x), log_softmax too; logsumexp(x + c) == logsumexp(x) + c
    assert_close(logitkit.softmax(xc, axis=axis), ref("softmax", x, axis), "softmax",
                 dtype)
    assert_close(logitkit.log_softmax(xc, axis=axis), ref("log_softmax", x, axis),
                 "log_softmax", dtype)
    assert_close(logitkit.logsumexp(xc, axis=axis), ref("logsumexp", x, axis) + c,
                 "logsumexp", dtype)
    # and the two computations agree with each other within twice the tolerance
    tol = TOLERANCES[np.dtype(dtype)]
    p, pc = _as_float64(logitkit.softmax(x, axis=axis)), _as_float64(
        logitkit.softmax(xc, axis=axis))
    assert np.all(np.abs(p - pc) <= 2 * (tol["prob_rtol"] * np.maximum(p, pc)
                                         + tol["prob_atol"]))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_exp_of_log_softmax_is_softmax(simd_target, dtype, data):
    x, axis = data.draw(_finite_case(dtype))
    tol = TOLERANCES[np.dtype(dtype)]
    p = _as_float64(logitkit.softmax(x, axis=axis))
    logp = _as_float64(logitkit.log_softmax(x, axis=axis))
    assert np.all(logp <= tol["log_rtol"])
    # softmax = p (1 + e1), |e1| <= prob_rtol; log_softmax = log p + d with
    # |d| <= log_rtol * max(1, |log p|) -> |exp(log_softmax) - softmax| <= p (|d| + |e1|)
    # to first order (1.01: the second-order terms and p vs. softmax)
    rel = tol["prob_rtol"] + tol["log_rtol"] * np.maximum(1.0, np.abs(logp))
    bound = 1.01 * rel * p + tol["prob_atol"]
    err = np.abs(np.exp(logp) - p)
    assert np.all(err <= bound), np.max(err / bound)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_logsumexp_bounds(simd_target, dtype, data):
    # max(x) <= logsumexp(x) <= max(x) + log(n)
    x, axis = data.draw(_finite_case(dtype))
    tol = TOLERANCES[np.dtype(dtype)]
    lse = _as_float64(logitkit.logsumexp(x, axis=axis))
    m = np.max(_as_float64(x), axis=axis)
    slack = tol["log_rtol"] * np.maximum(1.0, np.abs(lse))
    assert np.all(lse >= m - slack)
    assert np.all(lse <= m + math.log(x.shape[axis]) + slack)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_matches_reference(simd_target, func, dtype, data):
    x, axis = data.draw(arrays_and_axis(dtype, finite_floats(dtype, bound=1e4)))
    assert_close(call(func, x, axis=axis), ref(func, x, axis), func, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_matches_reference_with_special_values(simd_target, func, dtype, data):
    elements = st.one_of(finite_floats(dtype, bound=100.0),
                         st.sampled_from([-np.inf, -np.inf, np.inf, np.nan]))
    x, axis = data.draw(arrays_and_axis(dtype, elements))
    assert_close(call(func, x, axis=axis), ref(func, x, axis), func, dtype)
