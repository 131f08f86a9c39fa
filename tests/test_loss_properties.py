"""Property-based tests (hypothesis) of the losses: cross-entropy is >= 0, its gradient
rows sum to 0, adding a constant to a row changes nothing; entropy lies in
[0, log C], KL >= 0, BCE >= 0; and the reference comparison on arbitrary shapes, axes
and options."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logitkit
import reference
from helpers import FLOAT_DTYPES, assert_close, dtype_id
from loss_helpers import (
    REDUCTIONS,
    as_f64,
    assert_loss_close,
    loss_tolerance,
    without_axis,
)

pytestmark = pytest.mark.filterwarnings("error")

# simd_target is function-scoped but only selects the target, which is the same for
# every example of a test; no example database, so running the tests writes no files.
PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture,
                           HealthCheck.too_slow],
)

SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12)


def finite_floats(dtype, bound=1e3):
    return st.floats(-bound, bound, width=np.finfo(dtype).bits, allow_nan=False,
                     allow_infinity=False, allow_subnormal=False)


@st.composite
def logits_case(draw, dtype, elements=None):
    """(logits, axis): any shape of 1-3 dims, any axis."""
    shape = draw(SHAPES)
    if elements is None:
        elements = finite_floats(dtype)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return x, axis


@st.composite
def ce_case(draw, dtype, elements=None, smoothing=True):
    """(logits, target, axis, options) for cross_entropy: integer labels (some
    ignored) or probability rows, optional class weights and label smoothing."""
    z, axis = draw(logits_case(dtype, elements))
    n_classes = z.shape[axis]
    kind = draw(st.sampled_from(["int", "prob"]))
    opts = {}
    if draw(st.booleans()):
        # weights > 0: a zero weight sum (with some labels not ignored) has no
        # specified "mean"
        opts["weight"] = np.array(draw(st.lists(st.floats(0.125, 4.0, width=32),
                                                min_size=n_classes, max_size=n_classes)))
    if smoothing and draw(st.booleans()):
        opts["label_smoothing"] = draw(st.floats(0.0, 1.0))
    if kind == "int":
        shape = without_axis(z.shape, axis)
        labels = st.integers(-1, n_classes - 1)  # -1: ignored
        target = draw(hnp.arrays(np.int64, shape, elements=labels))
        opts["ignore_index"] = -1
    else:
        y = draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0.0, 1.0)))
        target = y.astype(dtype)
    return z, target, axis, opts


# ---------------------------------------------------------------------------------------
# cross-entropy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_cross_entropy_matches_reference(simd_target, dtype, data):
    z, target, axis, opts = data.draw(ce_case(dtype))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    ref_loss, ref_grad = reference.cross_entropy(z, target, axis, reduction=reduction,
                                                 return_grad=True, **opts)
    loss, grad = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                        return_grad=True, **opts)
    assert_loss_close(loss, ref_loss, "loss", dtype)
    assert_loss_close(grad, ref_grad, "grad", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_cross_entropy_is_nonnegative(simd_target, dtype, data):
    # every term w (lse - z) with w >= 0 and lse >= max(z) >= z
    z, target, axis, opts = data.draw(ce_case(dtype, finite_floats(dtype, bound=1e4)))
    loss = logitkit.cross_entropy(z, target, axis=axis, reduction="none", **opts)
    assert np.all(as_f64(loss) >= 0), np.min(loss)
    for reduction in ("sum", "mean"):
        assert logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                      **opts) >= 0


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_cross_entropy_gradient_rows_sum_to_zero(simd_target, dtype, data):
    # integer labels (any weights, any smoothing): sum_c p_c A - (1-eps) w_t - eps/C
    # sum w = 0; one-hot / probability targets: sum_c p_c sum_k w_k y'_k - w_c y'_c = 0
    z, target, axis, opts = data.draw(ce_case(dtype))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    _, grad = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                     return_grad=True, **opts)
    ref_grad = reference.cross_entropy(z, target, axis, reduction=reduction,
                                       return_grad=True, **opts)[1]
    row_sums = np.sum(as_f64(grad), axis=axis)
    # each element within its tolerance -> the sum within the sum of the tolerances
    # (+ the float64 rounding of the sums)
    bound = np.sum(loss_tolerance("grad", dtype, ref_grad), axis=axis)
    bound = bound + 1e-15 * np.sum(np.abs(as_f64(grad)), axis=axis)
    assert np.all(np.abs(row_sums) <= bound), np.max(np.abs(row_sums) / bound)


@st.composite
def shifted_ce_case(draw, dtype):
    """Logits on the grid k/16 (|k| <= 2**10) and an integer shift per row
    (|c| <= 2**12): z + c is exact in float32 and float64."""
    elements = st.integers(-(2**10), 2**10).map(lambda k: k / 16)
    z, target, axis, opts = draw(ce_case(dtype, elements))
    shift_shape = tuple(1 if i == axis % z.ndim else n for i, n in enumerate(z.shape))
    c = draw(hnp.arrays(np.int64, shift_shape, elements=st.integers(-(2**12), 2**12)))
    return z, target, axis, opts, c


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_cross_entropy_shift_invariance(simd_target, dtype, data):
    # adding a constant to a row (its own constant for each row) changes neither the loss
    # nor the gradient
    z, target, axis, opts, c = data.draw(shifted_ce_case(dtype))
    zc = z + c.astype(dtype)
    assert np.array_equal(as_f64(zc), as_f64(z) + c)  # the shift was exact
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    ref_loss, ref_grad = reference.cross_entropy(z, target, axis, reduction=reduction,
                                                 return_grad=True, **opts)
    loss, grad = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                        return_grad=True, **opts)
    loss_c, grad_c = logitkit.cross_entropy(zc, target, axis=axis, reduction=reduction,
                                            return_grad=True, **opts)
    for lo, gr in ((loss, grad), (loss_c, grad_c)):
        assert_loss_close(lo, ref_loss, "loss", dtype)
        assert_loss_close(gr, ref_grad, "grad", dtype)


# ---------------------------------------------------------------------------------------
# binary cross-entropy, entropy, KL
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_binary_cross_entropy_properties(simd_target, dtype, data):
    shape = data.draw(SHAPES)
    z = data.draw(hnp.arrays(dtype, shape, elements=finite_floats(dtype, bound=1e4)))
    width = np.finfo(dtype).bits
    y = data.draw(hnp.arrays(dtype, shape, elements=st.floats(0.0, 1.0, width=width)))
    opts = {}
    if data.draw(st.booleans()):
        opts["pos_weight"] = data.draw(hnp.arrays(
            dtype, shape[-1:], elements=st.floats(0.0, 8.0, width=np.finfo(dtype).bits)))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    ref_loss, ref_grad = reference.binary_cross_entropy(z, y, reduction=reduction,
                                                        return_grad=True, **opts)
    loss, grad = logitkit.binary_cross_entropy(z, y, reduction=reduction,
                                               return_grad=True, **opts)
    assert np.all(as_f64(loss) >= 0)
    assert_loss_close(loss, ref_loss, "loss", dtype)
    assert_loss_close(grad, ref_grad, "grad", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_sigmoid_properties(simd_target, dtype, data):
    elements = st.one_of(finite_floats(dtype, bound=float(np.finfo(dtype).max)),
                         st.sampled_from([-np.inf, np.inf, np.nan]))
    x = data.draw(hnp.arrays(dtype, data.draw(SHAPES), elements=elements))
    s = logitkit.sigmoid(x)
    ls = logitkit.log_sigmoid(x)
    finite = ~np.isnan(x)
    assert np.array_equal(np.isnan(s), ~finite) and np.array_equal(np.isnan(ls), ~finite)
    assert np.all((s[finite] >= 0) & (s[finite] <= 1))
    assert np.all(ls[finite] <= 0)
    assert_close(s, reference.sigmoid(x), "softmax", dtype)
    assert_close(ls, reference.log_sigmoid(x), "log_softmax", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_entropy_bounds_and_reference(simd_target, dtype, data):
    # 0 <= H <= log C
    z, axis = data.draw(logits_case(dtype, finite_floats(dtype, bound=1e4)))
    base = data.draw(st.sampled_from([None, 2]))
    h = logitkit.entropy(z, axis=axis, base=base)
    ref_h = reference.entropy(z, axis, base)
    assert_loss_close(h, ref_h, "loss", dtype)
    n = z.shape[axis]
    log_n = math.log(n) / (math.log(base) if base else 1.0)
    slack = loss_tolerance("loss", dtype, ref_h)
    assert np.all(as_f64(h) >= -slack)
    assert np.all(as_f64(h) <= log_n + slack)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_kl_nonnegative_and_reference(simd_target, dtype, data):
    zp, axis = data.draw(logits_case(dtype, finite_floats(dtype, bound=100.0)))
    zq = data.draw(hnp.arrays(dtype, zp.shape,
                              elements=finite_floats(dtype, bound=100.0)))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    ref_kl, ref_grad = reference.kl_divergence(zp, zq, axis, reduction=reduction,
                                               return_grad=True)
    kl, grad = logitkit.kl_divergence(zp, zq, axis=axis, reduction=reduction,
                                      return_grad=True)
    assert_loss_close(kl, ref_kl, "loss", dtype)
    assert_loss_close(grad, ref_grad, "grad", dtype)
    assert np.all(as_f64(kl) >= -loss_tolerance("loss", dtype, ref_kl))
