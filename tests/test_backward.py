"""softmax_backward, log_softmax_backward and softmax_jacobian against the float64
reference, against each other (the backward passes are vector-Jacobian products with
softmax_jacobian) and against the seeds' chain rule: (da/dz)^T dE/da = a - y."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import FLOAT_DTYPES, LAYOUTS, dtype_id, random_logits, rng_for, with_layout
from loss_helpers import (
    LOSS_TOLERANCES,
    as_f64,
    assert_loss_close,
    int_targets,
    onehot,
    prob_targets,
)

pytestmark = pytest.mark.filterwarnings("error")

BACKWARD = ["softmax_backward", "log_softmax_backward"]


def _forward(func):
    return "softmax" if func == "softmax_backward" else "log_softmax"


def make_case(rng, func, shape, axis, dtype):
    """(grad_output, probs or log_probs) of ``dtype``: the forward values are the
    reference softmax / log_softmax of random logits, rounded to ``dtype``."""
    z = random_logits(rng, shape, np.float64, axis=axis)
    y = getattr(reference, _forward(func))(z, axis).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return g, y


def term_scale(func, g, y, axis):
    """The magnitude of the terms of each backward result (see loss_tolerance):

    softmax_backward      p (g - dot), dot = sum(g p):  p (|g| + |dot|)
    log_softmax_backward  g - p S,     S = sum(g):      |g| + p |S|

    The result can cancel to far below these terms (g_i close to dot, or to p_i S), and
    even a correctly rounded float32 dot or S carries an error of an ulp of the terms
    (for C = 32000 and g ~ N(0, 1), |S| ~ 180: 1e-5), so the relative tolerance applies
    to the terms.  The float64 reference is used for dot and S."""
    g, y = as_f64(g), as_f64(y)
    if func == "softmax_backward":
        dot = np.sum(g * y, axis=axis, keepdims=True)
        return y * (np.abs(g) + np.abs(dot))
    with np.errstate(over="ignore"):
        p = np.exp(y)
    return np.abs(g) + p * np.abs(np.sum(g, axis=axis, keepdims=True))


def check_backward(func, g, y, axis, dtype):
    g_before, y_before = g.copy(), y.copy()
    result = getattr(logitkit, func)(g, y, axis=axis)
    assert isinstance(result, np.ndarray) and result.shape == y.shape
    assert_loss_close(result, getattr(reference, func)(g, y, axis), "grad", dtype, func,
                      scale=term_scale(func, g, y, axis))
    np.testing.assert_array_equal(g, g_before)
    np.testing.assert_array_equal(y, y_before)


# ---------------------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------------------

LENGTHS = [1, 2, 3, 7, 16, 17, 1000, 32000]


@pytest.mark.parametrize("n", LENGTHS, ids=lambda n: f"C{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", BACKWARD)
def test_row_lengths(simd_target, func, dtype, n):
    rng = rng_for("bwd-len", func, dtype_id(dtype), n)
    rows = 4 if n >= 10000 else 6 if n >= 512 else 37
    g, y = make_case(rng, func, (rows, n), -1, dtype)
    check_backward(func, g, y, -1, dtype)
    g, y = make_case(rng, func, (n, 3), 0, dtype)
    check_backward(func, g, y, 0, dtype)


SHAPE_AXES = [((7,), 0), ((6, 9), 0), ((6, 9), 1), ((3, 5, 4), 0), ((3, 5, 4), 1),
              ((3, 5, 4), -1), ((2, 3, 1, 17), 2)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape_axis", SHAPE_AXES,
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", BACKWARD)
def test_axes_and_layouts(simd_target, func, dtype, shape_axis, layout):
    shape, axis = shape_axis
    rng = rng_for("bwd-layout", func, dtype_id(dtype), shape, axis, layout)
    g, y = make_case(rng, func, shape, axis, dtype)
    # both strided, and one strided with the other contiguous
    check_backward(func, with_layout(g, layout), with_layout(y, layout), axis, dtype)
    check_backward(func, g, with_layout(y, layout), axis, dtype)
    check_backward(func, with_layout(g, layout), y, axis, dtype)


@pytest.mark.parametrize("func", BACKWARD)
def test_float16_and_integer_input(simd_target, func):
    rng = rng_for("bwd-f16", func)
    g, y = make_case(rng, func, (9, 33), -1, np.float16)
    check_backward(func, g, y, -1, np.float16)
    g, y = make_case(rng, func, (33, 9), 0, np.float16)
    check_backward(func, g, y, 0, np.float16)
    # integer gradients and probabilities: float64
    gi = rng.integers(-3, 4, size=(5, 4))
    yi = np.zeros((5, 4), dtype=np.int64)
    yi[:, 1] = 1 if func == "softmax_backward" else 0
    check_backward(func, gi, yi, -1, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", BACKWARD)
def test_positional_and_default_axis(simd_target, func, dtype):
    g, y = make_case(rng_for("bwd-default", func, dtype_id(dtype)), func, (4, 6, 5), -1,
                     dtype)
    expected = getattr(reference, func)(g, y, -1)
    assert_loss_close(getattr(logitkit, func)(g, y), expected, "grad", dtype)
    assert_loss_close(getattr(logitkit, func)(g, y, axis=-1), expected, "grad", dtype)
    assert_loss_close(getattr(logitkit, func)(g, y, axis=2), expected, "grad", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", BACKWARD)
def test_special_values(simd_target, func, dtype):
    # probabilities of exactly 0 (log_probs -inf): the gradient there is 0 (softmax) or
    # g (log_softmax: exp(-inf) = 0); NaN propagates
    g = np.array([[1.0, -2.0, 0.5, 3.0], [0.25, 0.25, -1.0, 2.0]], dtype=dtype)
    p = np.array([[0.0, 0.25, 0.75, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=dtype)
    y = p if func == "softmax_backward" else np.log(p, where=p > 0,
                                                    out=np.full_like(p, -np.inf))
    check_backward(func, g, y, -1, dtype)
    g_nan = g.copy()
    g_nan[0, 1] = np.nan
    result = as_f64(getattr(logitkit, func)(g_nan, y))
    assert np.isnan(result[0, 1])
    assert not np.any(np.isnan(result[1]))


# ---------------------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
@pytest.mark.parametrize("func", BACKWARD)
def test_out(simd_target, func, dtype):
    rng = rng_for("bwd-out", func, dtype_id(dtype))
    g, y = make_case(rng, func, (6, 9), -1, dtype)
    expected = getattr(reference, func)(g, y, -1)
    for layout in ("C", "F", "every_other"):
        out = with_layout(np.full(g.shape, np.nan, dtype=dtype), layout)
        result = getattr(logitkit, func)(g, y, out=out)
        assert result is out
        assert_loss_close(out, expected, "grad", dtype, layout)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("which", ["grad_output", "forward"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", BACKWARD)
def test_out_in_place_is_rejected_or_correct(simd_target, func, dtype, which, axis):
    # out= one of the inputs (the usual in-place backward): if accepted, correct
    rng = rng_for("bwd-in-place", func, dtype_id(dtype), which, axis)
    g, y = make_case(rng, func, (7, 9), axis, dtype)
    expected = getattr(reference, func)(g, y, axis)
    target = g if which == "grad_output" else y
    try:
        result = getattr(logitkit, func)(g, y, axis=axis, out=target)
    except ValueError:
        return
    assert result is target
    assert_loss_close(target, expected, "grad", dtype, f"in place on {which}")


@pytest.mark.parametrize("func", BACKWARD)
def test_bad_input(simd_target, func):
    fn = getattr(logitkit, func)
    g = np.zeros((4, 5))
    y = np.full((4, 5), 0.2)
    with pytest.raises(ValueError):
        fn(np.zeros((5, 4)), y)
    with pytest.raises(ValueError):
        fn(np.zeros((4, 5, 1)), y)
    with pytest.raises(np.exceptions.AxisError):
        fn(g, y, axis=2)
    with pytest.raises(TypeError):
        fn(g.astype(np.complex128), y)
    with pytest.raises(TypeError):
        fn(g, y.astype(np.complex128))
    with pytest.raises(ValueError):
        fn(g, y, out=np.zeros((5, 4)))
    with pytest.raises(TypeError):
        fn(g, y, out=np.zeros((4, 5), dtype=np.float32))
    out = np.zeros((4, 5))
    out.flags.writeable = False
    with pytest.raises(ValueError):
        fn(g, y, out=out)


# ---------------------------------------------------------------------------------------
# softmax_jacobian
# ---------------------------------------------------------------------------------------


def check_jacobian(p, axis, dtype):
    jac = logitkit.softmax_jacobian(p, axis=axis)
    n = p.shape[axis]
    batch_shape = tuple(s for i, s in enumerate(p.shape) if i != axis % p.ndim)
    expected_shape = batch_shape + (n, n)
    assert isinstance(jac, np.ndarray) and jac.shape == expected_shape
    assert_loss_close(jac, reference.softmax_jacobian(p, axis), "grad", dtype)
    return jac


@pytest.mark.parametrize("shape_axis", [((5,), 0), ((1,), 0), ((4, 3), -1), ((4, 3), 0),
                                        ((2, 3, 17), 1), ((2, 3, 17), -1),
                                        ((3, 200), -1)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
def test_softmax_jacobian(simd_target, dtype, shape_axis):
    shape, axis = shape_axis
    rng = rng_for("jac", dtype_id(dtype), shape, axis)
    p = reference.softmax(rng.standard_normal(shape) * 2, axis).astype(dtype)
    jac = as_f64(check_jacobian(p, axis, dtype))
    check_jacobian(with_layout(p, "T"), axis, dtype)
    # symmetric (each entry within the tolerance of the symmetric reference)
    tol = LOSS_TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(jac, np.swapaxes(jac, -1, -2), rtol=2 * tol["grad_rtol"],
                               atol=2 * tol["grad_atol"])


def test_softmax_jacobian_seed_formula(simd_target):
    # seed 000/003: da_i/dz_j = a_i (1 - a_i) on the diagonal, -a_i a_j off it
    a = np.array([0.0900, 0.2447, 0.6653])
    jac = logitkit.softmax_jacobian(a)
    for i in range(3):
        for j in range(3):
            expected = a[i] * (1 - a[i]) if i == j else -a[i] * a[j]
            assert abs(jac[i, j] - expected) <= 1e-15


@pytest.mark.parametrize("shape_axis", [((6, 7), -1), ((7, 6), 0), ((3, 4, 5), 1)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_backward_is_jacobian_times_vector(simd_target, dtype, shape_axis):
    # softmax_backward(g, p) = J^T g (J is symmetric, so also J g);
    # log_softmax_backward(g, log p) = L^T g with L_ij = d log p_i / d z_j = J_ij / p_i
    shape, axis = shape_axis
    rng = rng_for("bwd-jac", dtype_id(dtype), shape, axis)
    z = random_logits(rng, shape, dtype, axis=axis) / 10
    g = rng.standard_normal(shape).astype(dtype)
    p = logitkit.softmax(z, axis=axis)
    jac = as_f64(logitkit.softmax_jacobian(p, axis=axis))
    g_rows = np.moveaxis(as_f64(g), axis, -1)
    jvp = np.moveaxis(np.einsum("...ji,...j->...i", jac, g_rows), -1, axis)
    assert_loss_close(logitkit.softmax_backward(g, p, axis=axis), jvp, "grad", dtype)
    # the log-softmax Jacobian is d log p_i / d z_j = [i == j] - p_j = J_ij / p_i
    p_rows = np.moveaxis(as_f64(p), axis, -1)
    vjp = np.einsum("...ji,...j->...i", jac / p_rows[..., :, None], g_rows)
    log_p = logitkit.log_softmax(z, axis=axis)
    assert_loss_close(logitkit.log_softmax_backward(g, log_p, axis=axis),
                      np.moveaxis(vjp, -1, axis), "grad", dtype)


# ---------------------------------------------------------------------------------------
# the seeds' chain rule: the cross-entropy gradient through the backward passes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["onehot", "soft"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_chain_rule_gives_a_minus_y(simd_target, dtype, kind):
    # seed 000: dE/dz = (da/dz)^T dE/da with dE/da = -y / a  ->  a - y (sum y = 1);
    # through log_softmax: dE/d(log a) = -y  ->  a sum(y) - y
    rng = rng_for("bwd-chain", dtype_id(dtype), kind)
    z = (rng.standard_normal((20, 6)) * 2).astype(dtype)
    if kind == "onehot":
        y = onehot(int_targets(rng, (20,), 6), 6, -1, dtype)
    else:
        y = prob_targets(rng, (20, 6), -1, dtype, zeros=0.0)
    expected = reference.cross_entropy(z, y, reduction="sum", return_grad=True)[1]
    a = logitkit.softmax(z)
    via_softmax = logitkit.softmax_backward((-as_f64(y) / as_f64(a)).astype(dtype), a)
    via_log_softmax = logitkit.log_softmax_backward(-y, logitkit.log_softmax(z))
    _, direct = logitkit.cross_entropy(z, y, reduction="sum", return_grad=True)
    for grad in (via_log_softmax, direct):
        assert_loss_close(grad, expected, "grad", dtype)
    # -y / a amplifies the rounding of a (float32: up to 1e-5 relative) by 1/a, so this
    # path is exact only to float64 precision
    if dtype == np.float64:
        assert_loss_close(via_softmax, expected, "grad", dtype)
