"""sigmoid, log_sigmoid and binary_cross_entropy (PyTorch's BCEWithLogits) against the
float64 reference: dense grids over the whole float range, layouts, dtypes, out= and
grad_out=, the seeds' identities (sigmoid(0) = 0.5, sigma(z) = 1 - sigma(-z), binary
softmax = sigmoid of the difference), infinite logits and bad input."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import (
    FLOAT_DTYPES,
    LAYOUTS,
    TOLERANCES,
    assert_close,
    dtype_id,
    random_logits,
    rng_for,
    with_layout,
)
from loss_helpers import REDUCTIONS, as_f64, assert_loss_close, assert_reduced

pytestmark = pytest.mark.filterwarnings("error")

ELEMENTWISE = ["sigmoid", "log_sigmoid"]
# sigmoid is a probability (relative error, floor for the tiny values); log_sigmoid a
# log-probability (error relative to max(1, |r|)), like softmax / log_softmax
KIND = {"sigmoid": "softmax", "log_sigmoid": "log_softmax"}

# the whole range where the function is not constant in the dtype, and beyond
GRID = {np.float32: 120.0, np.float64: 800.0, np.float16: 20.0}


# ---------------------------------------------------------------------------------------
# sigmoid and log_sigmoid
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", ELEMENTWISE)
def test_dense_grid(simd_target, func, dtype):
    big = GRID[dtype]
    x = np.linspace(-big, big, 200_001).astype(dtype)
    result = getattr(logitkit, func)(x)
    assert_close(result, getattr(reference, func)(x), KIND[func], dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", ELEMENTWISE)
def test_extreme_and_special_values(simd_target, func, dtype):
    finfo = np.finfo(dtype)
    x = np.array([0.0, -0.0, 1e-30, -1e-30, finfo.tiny, -finfo.tiny, 1.0, -1.0, 88.0,
                  -88.0, 89.0, -89.0, 710.0 if dtype == np.float64 else 100.0, -745.0
                  if dtype == np.float64 else -104.0, 1e4, -1e4, 1e30, -1e30, finfo.max,
                  -finfo.max, np.inf, -np.inf, np.nan], dtype=dtype)
    result = getattr(logitkit, func)(x)
    assert_close(result, getattr(reference, func)(x), KIND[func], dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
def test_sigmoid_special_values(simd_target, dtype):
    x = np.array([0.0, -np.inf, np.inf, np.nan], dtype=dtype)
    s = logitkit.sigmoid(x)
    assert s.dtype == dtype
    assert s[0] == 0.5  # seed 000: sigmoid maps 0 to 0.5
    assert s[1] == 0.0 and s[2] == 1.0
    assert np.isnan(s[3])
    ls = logitkit.log_sigmoid(x)
    assert ls.dtype == dtype
    assert_close(ls[:1], [-np.log(2.0)], "log_softmax", dtype)
    assert ls[1] == -np.inf and ls[2] == 0.0
    assert np.isnan(ls[3])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_log_sigmoid_of_huge_arguments(simd_target, dtype):
    # log_sigmoid(-1000) = -1000 - log1p(e^-1000) = -1000 in any float; (1000) = 0
    x = np.array([-1000.0, 1000.0, -1e4, 1e4, -1e30, 1e30], dtype=dtype)
    ls = logitkit.log_sigmoid(x)
    assert_close(ls, [-1000.0, 0.0, -1e4, 0.0, float(x[4]), 0.0], "log_softmax", dtype)
    assert ls[0] == -1000.0
    assert ls[1] == 0.0 and ls[3] == 0.0 and ls[5] == 0.0
    s = logitkit.sigmoid(x)
    assert np.all(s[0::2] == 0.0) and np.all(s[1::2] == 1.0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_sigmoid_symmetry(simd_target, dtype):
    # seed 003: sigma(z) = 1 - sigma(-z); each value within prob_rtol, so the sum
    # sigma(z) + sigma(-z) is within prob_rtol (+ the rounding of the float64 sum) of 1
    z = np.linspace(-40, 40, 8001).astype(dtype)
    s, s_neg = as_f64(logitkit.sigmoid(z)), as_f64(logitkit.sigmoid(-z))
    tol = TOLERANCES[np.dtype(dtype)]["prob_rtol"]
    assert np.all(np.abs(s + s_neg - 1.0) <= tol + 2.0**-52)
    assert np.all(np.diff(s) >= 0)  # monotone


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_sigmoid_range_and_derivative_identity(simd_target, dtype):
    # seed 000: sigmoid maps R into (0, 1) (into [0, 1] once rounded);
    # seed 003: sigma' = sigma (1 - sigma) (checked by finite differences in
    # test_gradients.py); here: log_sigmoid(z) - log_sigmoid(-z) = z
    z = np.linspace(-30, 30, 601).astype(dtype)
    s = as_f64(logitkit.sigmoid(z))
    assert np.all((s >= 0) & (s <= 1))
    if dtype == np.float64:  # sigma(+-30) = 1 - 9e-14 and 9e-14
        assert np.all((s > 0) & (s < 1))
    diff = as_f64(logitkit.log_sigmoid(z)) - as_f64(logitkit.log_sigmoid(-z))
    log_rtol = TOLERANCES[np.dtype(dtype)]["log_rtol"]
    bound = 2 * log_rtol * np.maximum(1.0, np.abs(as_f64(z))) + 1e-12
    assert np.all(np.abs(diff - as_f64(z)) <= bound)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_seed001_binary_softmax_is_sigmoid(simd_target, dtype):
    # seed 000/001: softmax([z1, z2])[0] = 1 / (1 + e^-(z1 - z2)) = sigmoid(z1 - z2);
    # z on the grid k/8 so z1 - z2 is exact
    rng = rng_for("binary-softmax", dtype_id(dtype))
    z = (rng.integers(-400, 400, size=(500, 2)) / 8).astype(dtype)
    a = logitkit.softmax(z, axis=-1)
    s = logitkit.sigmoid(z[:, 0] - z[:, 1])
    expected = reference.sigmoid(as_f64(z[:, 0]) - as_f64(z[:, 1]))
    assert_close(a[:, 0], expected, "softmax", dtype)
    assert_close(s, expected, "softmax", dtype)
    assert_close(a[:, 1], reference.sigmoid(as_f64(z[:, 1]) - as_f64(z[:, 0])),
                 "softmax", dtype)
    # and the log-domain version
    assert_close(logitkit.log_sigmoid(z[:, 0] - z[:, 1]),
                 reference.log_softmax(z, -1)[:, 0], "log_softmax", dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", ELEMENTWISE)
def test_layouts(simd_target, func, dtype, layout):
    values = random_logits(rng_for("sig-layout", func, dtype_id(dtype), layout),
                           (5, 7, 33), dtype)
    x = with_layout(values, layout)
    result = getattr(logitkit, func)(x)
    assert result.shape == x.shape
    assert_close(result, getattr(reference, func)(values), KIND[func], dtype)
    np.testing.assert_array_equal(x, values)


@pytest.mark.parametrize("shape", [(), (1,), (0,), (3, 0), (17,), (2, 3, 4, 5)],
                         ids=lambda s: "x".join(map(str, s)) or "scalar")
@pytest.mark.parametrize("func", ELEMENTWISE)
def test_shapes(simd_target, func, shape):
    x = random_logits(rng_for("sig-shapes", shape), shape, np.float64) if shape else (
        np.array(1.5))
    result = getattr(logitkit, func)(x)
    assert np.shape(result) == shape
    assert_close(np.asarray(result), getattr(reference, func)(x), KIND[func], np.float64)


@pytest.mark.parametrize("func", ELEMENTWISE)
def test_float16_integer_and_list_input(simd_target, func):
    x16 = np.linspace(-12, 12, 1001).astype(np.float16)
    result = getattr(logitkit, func)(x16)
    assert_close(result, getattr(reference, func)(x16), KIND[func], np.float16)
    for ints in (np.arange(-50, 50, dtype=np.int32), np.arange(-5, 5, dtype=np.int64),
                 np.array([True, False])):
        result = getattr(logitkit, func)(ints)
        assert_close(result, getattr(reference, func)(ints), KIND[func], np.float64)
    result = getattr(logitkit, func)([0.0, 1.0, -2.0])
    assert_close(result, getattr(reference, func)([0.0, 1.0, -2.0]), KIND[func],
                 np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
@pytest.mark.parametrize("func", ELEMENTWISE)
def test_out(simd_target, func, dtype):
    x = (random_logits(rng_for("sig-out", func, dtype_id(dtype)), (6, 9), np.float64)
         / 10).astype(dtype)
    expected = getattr(reference, func)(x)
    for layout in ("C", "F", "every_other"):
        out = with_layout(np.full(x.shape, np.nan, dtype=dtype), layout)
        result = getattr(logitkit, func)(x, out=out)
        assert result is out
        assert_close(out, expected, KIND[func], dtype)
    # in place
    y = x.copy()
    result = getattr(logitkit, func)(y, out=y)
    assert result is y
    assert_close(y, expected, KIND[func], dtype)


@pytest.mark.parametrize("func", ELEMENTWISE)
def test_out_errors(simd_target, func):
    fn = getattr(logitkit, func)
    x = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(ValueError):
        fn(x, out=np.zeros((5, 4), dtype=np.float32))
    with pytest.raises(TypeError):
        fn(x, out=np.zeros((4, 5), dtype=np.float64))
    with pytest.raises(TypeError):
        fn(np.zeros(3, dtype=np.int64), out=np.zeros(3, dtype=np.int64))
    out = np.zeros((4, 5), dtype=np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        fn(x, out=out)
    with pytest.raises(TypeError):
        fn(x, np.zeros((4, 5), dtype=np.float32))  # out is keyword-only
    with pytest.raises(TypeError):
        fn(np.zeros(3, dtype=np.complex128))


# ---------------------------------------------------------------------------------------
# binary_cross_entropy
# ---------------------------------------------------------------------------------------


def _bce_targets(rng, shape, kind, dtype):
    if kind == "soft":
        return rng.random(shape).astype(dtype)
    hard = rng.integers(0, 2, size=shape)
    if kind == "hard":
        return hard.astype(dtype)
    if kind == "int":
        return hard.astype(np.int64)
    return hard.astype(bool)


def check_bce(z, y, dtype, **opts):
    """logitkit.binary_cross_entropy for every reduction, with and without return_grad,
    against the reference; the inputs are not modified."""
    z_before, y_before = z.copy(), y.copy()
    for reduction in REDUCTIONS:
        ref_loss, ref_grad = reference.binary_cross_entropy(
            z, y, reduction=reduction, return_grad=True, **opts)
        what = f"reduction={reduction}"
        loss = logitkit.binary_cross_entropy(z, y, reduction=reduction, **opts)
        assert_reduced(loss, reduction, dtype, z.shape)
        assert_loss_close(loss, ref_loss, "loss", dtype, what)
        result = logitkit.binary_cross_entropy(z, y, reduction=reduction,
                                               return_grad=True, **opts)
        assert isinstance(result, tuple) and len(result) == 2
        loss, grad = result
        assert_loss_close(loss, ref_loss, "loss", dtype, what + " return_grad")
        assert_loss_close(grad, ref_grad, "grad", dtype, what)
    np.testing.assert_array_equal(z, z_before)
    np.testing.assert_array_equal(y, y_before)


BCE_WEIGHTS = ["none", "per_element", "per_class", "per_row"]


def _bce_weight(rng, kind, shape, dtype):
    if kind == "none":
        return None
    if kind == "per_element":
        return (0.25 + rng.random(shape)).astype(dtype)
    if kind == "per_class":
        return (0.25 + rng.random(shape[-1])).astype(dtype)
    return (0.25 + rng.random(shape[:-1] + (1,))).astype(dtype)


@pytest.mark.parametrize("pos_weight", [False, True], ids=["", "pos_weight"])
@pytest.mark.parametrize("weight", BCE_WEIGHTS)
@pytest.mark.parametrize("target_kind", ["soft", "hard", "int", "bool"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_bce_options(simd_target, dtype, target_kind, weight, pos_weight):
    rng = rng_for("bce", dtype_id(dtype), target_kind, weight, pos_weight)
    shape = (13, 17)
    z = random_logits(rng, shape, dtype)
    y = _bce_targets(rng, shape, target_kind, dtype)
    opts = {}
    w = _bce_weight(rng, weight, shape, dtype)
    if w is not None:
        opts["weight"] = w
    if pos_weight:
        opts["pos_weight"] = (0.5 + 3 * rng.random(shape[-1])).astype(dtype)
    check_bce(z, y, dtype, **opts)


@pytest.mark.parametrize("shape", [(1,), (7,), (33,), (1000,), (4, 1), (3, 5, 9),
                                   (2, 3, 4, 5)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_bce_shapes(simd_target, dtype, shape):
    rng = rng_for("bce-shapes", dtype_id(dtype), shape)
    z = random_logits(rng, shape, dtype)
    y = rng.random(shape).astype(dtype)
    check_bce(z, y, dtype)
    check_bce(z, y, dtype, pos_weight=(0.5 + rng.random(shape[-1])).astype(dtype),
              weight=np.asarray(1.5, dtype=dtype))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_bce_layouts(simd_target, dtype, layout):
    rng = rng_for("bce-layout", dtype_id(dtype), layout)
    values = random_logits(rng, (6, 9, 5), dtype)
    y_values = rng.random((6, 9, 5)).astype(dtype)
    z, y = with_layout(values, layout), with_layout(y_values, layout)
    check_bce(z, y, dtype, pos_weight=(0.5 + rng.random(5)).astype(dtype))
    # strided logits with a contiguous target, and the other way round
    check_bce(z, y_values, dtype)
    check_bce(values, y, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_bce_infinite_logits(simd_target, dtype):
    # loss 0 where the logit is right, inf where it is wrong, never NaN
    z = np.array([np.inf, -np.inf, np.inf, -np.inf], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    for opts in ({}, {"pos_weight": np.array(2.0, dtype=dtype)},
                 {"weight": np.array([1.0, 2.0, 0.5, 3.0], dtype=dtype)}):
        loss, grad = logitkit.binary_cross_entropy(z, y, reduction="none",
                                                   return_grad=True, **opts)
        assert not np.any(np.isnan(loss)) and not np.any(np.isnan(grad))
        np.testing.assert_array_equal(loss, [0.0, 0.0, np.inf, np.inf])
        ref_loss, ref_grad = reference.binary_cross_entropy(z, y, reduction="none",
                                                            return_grad=True, **opts)
        assert_loss_close(loss, ref_loss, "loss", dtype)
        assert_loss_close(grad, ref_grad, "grad", dtype)
        # only the right ones: sum and mean are 0 with a zero gradient
        right = {k: (v[:2] if np.ndim(v) else v) for k, v in opts.items()}
        for reduction in ("sum", "mean"):
            loss, grad = logitkit.binary_cross_entropy(z[:2], y[:2], reduction=reduction,
                                                       return_grad=True, **right)
            assert loss == 0.0 and np.all(grad == 0)
        assert logitkit.binary_cross_entropy(z, y, reduction="mean", **opts) == np.inf
    # soft targets: inf on either side
    loss = logitkit.binary_cross_entropy(z[:2], np.array([0.5, 0.25], dtype=dtype),
                                         reduction="none")
    np.testing.assert_array_equal(loss, [np.inf, np.inf])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_bce_huge_logits(simd_target, dtype):
    # no overflow: -log_sigmoid(-1e4) = 1e4, and so on
    z = np.array([1e4, -1e4, 88.0, -88.0, 1e30, -1e30, 0.0], dtype=dtype)
    for y in (np.zeros(7, dtype=dtype), np.ones(7, dtype=dtype),
              np.full(7, 0.3, dtype=dtype)):
        check_bce(z, y, dtype)
        check_bce(z, y, dtype, pos_weight=np.asarray(3.0, dtype=dtype))


def test_bce_seed003_formula(simd_target):
    # seed 003: L = -[y log y_hat + (1 - y) log(1 - y_hat)] with y_hat = sigma(z)
    z = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    y_hat = 1 / (1 + np.exp(-z))
    expected = -(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))
    loss = logitkit.binary_cross_entropy(z, y, reduction="none")
    assert_loss_close(loss, expected, "loss", np.float64)
    assert_loss_close(logitkit.binary_cross_entropy(z, y), np.mean(expected), "loss",
                      np.float64)
    # the gradient is y_hat - y
    _, grad = logitkit.binary_cross_entropy(z, y, reduction="sum", return_grad=True)
    assert_loss_close(grad, y_hat - y, "grad", np.float64)
    # and it is the two-class cross-entropy of the logits [z, 0]
    ce = logitkit.cross_entropy(np.stack([np.zeros(5), z], axis=1), y.astype(np.int64),
                                reduction="none")
    assert_loss_close(ce, expected, "loss", np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
def test_bce_grad_out(simd_target, dtype):
    rng = rng_for("bce-grad-out", dtype_id(dtype))
    z = (rng.standard_normal((5, 6)) * 3).astype(dtype)
    y = rng.random((5, 6)).astype(dtype)
    pw = (0.5 + rng.random(6)).astype(dtype)
    for reduction in REDUCTIONS:
        ref_loss, ref_grad = reference.binary_cross_entropy(
            z, y, pos_weight=pw, reduction=reduction, return_grad=True)
        out = np.full(z.shape, np.nan, dtype=dtype)
        loss, grad = logitkit.binary_cross_entropy(z, y, pos_weight=pw,
                                                   reduction=reduction, return_grad=True,
                                                   grad_out=out)
        assert grad is out
        assert_loss_close(loss, ref_loss, "loss", dtype, reduction)
        assert_loss_close(out, ref_grad, "grad", dtype, reduction)
        # in place
        zz = z.copy()
        loss, grad = logitkit.binary_cross_entropy(zz, y, pos_weight=pw,
                                                   reduction=reduction, return_grad=True,
                                                   grad_out=zz)
        assert grad is zz
        assert_loss_close(loss, ref_loss, "loss", dtype, reduction)
        assert_loss_close(zz, ref_grad, "grad", dtype, reduction + " in place")


@pytest.mark.parametrize("shape", [(40, 7), (9, 1000), (3, 5, 7)],
                         ids=lambda s: "x".join(map(str, s)))
def test_bce_float16_and_integer_logits(simd_target, shape):
    rng = rng_for("bce-f16", shape)
    z = (rng.standard_normal(shape) * 3).astype(np.float16)
    y = rng.random(shape).astype(np.float16)
    check_bce(z, y, np.float16)
    zi = rng.integers(-20, 20, size=shape)
    check_bce(zi, rng.integers(0, 2, size=shape), np.float64)


def test_bce_bad_input(simd_target):
    z = np.zeros((4, 5))
    y = np.zeros((4, 5))
    for bad_shape in [(5, 4), (4,), (4, 5, 1), (20,)]:
        with pytest.raises(ValueError):
            logitkit.binary_cross_entropy(z, np.zeros(bad_shape))
    with pytest.raises(ValueError):
        logitkit.binary_cross_entropy(z, y, reduction="avg")
    with pytest.raises(ValueError):
        logitkit.binary_cross_entropy(z, y, weight=np.ones(4))  # does not broadcast
    with pytest.raises(ValueError):
        logitkit.binary_cross_entropy(z, y, pos_weight=np.ones(3))
    with pytest.raises(TypeError):
        logitkit.binary_cross_entropy(z, y.astype(np.complex128))
    with pytest.raises(TypeError):
        logitkit.binary_cross_entropy(z.astype(np.complex128), y)
    with pytest.raises(ValueError):
        logitkit.binary_cross_entropy(z, y, return_grad=True, grad_out=np.zeros((5, 4)))
    with pytest.raises(TypeError):
        logitkit.binary_cross_entropy(z, y, return_grad=True,
                                      grad_out=np.zeros((4, 5), dtype=np.float32))
    out = np.zeros((4, 5))
    out.flags.writeable = False
    with pytest.raises(ValueError):
        logitkit.binary_cross_entropy(z, y, return_grad=True, grad_out=out)


@pytest.mark.parametrize("shape_wshape", [((6, 5), ()), ((6, 5), (5,)), ((6, 5), (1, 5)),
                                          ((6, 5), (6, 5)), ((6, 5), (6, 1)),
                                          ((2, 3, 4), (3, 4)), ((2, 3, 4), (3, 1)),
                                          ((2, 3, 4), (2, 1, 4))],
                         ids=lambda p: f"{p[0]}-w{p[1]}")
@pytest.mark.parametrize("which", ["weight", "pos_weight"])
def test_bce_weights_broadcast_against_the_logits(simd_target, which, shape_wshape):
    # "weight and pos_weight broadcast against logits (pos_weight typically has the last
    # dimension's length)": any shape that broadcasts to the logits' shape (PyTorch's
    # BCEWithLogits accepts them all)
    shape, wshape = shape_wshape
    rng = rng_for("bce-broadcast", which, shape, wshape)
    z = random_logits(rng, shape, np.float64)
    y = rng.random(shape)
    check_bce(z, y, np.float64, **{which: 0.5 + rng.random(wshape)})


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_log_sigmoid_tail_keeps_relative_accuracy(simd_target, dtype):
    # for x >> 0, log_sigmoid(x) = -log1p(e^-x) ~ -e^-x: tiny but with full relative
    # precision (log(sigmoid(x)) would round sigmoid to 1 and return 0 from x ~ 17 in
    # float32); likewise sigmoid(-x) = e^-x / (1 + e^-x) while it is a normal number
    big = 80.0 if dtype == np.float32 else 700.0
    x = np.linspace(0.0, big, 20_001).astype(dtype)
    rtol = TOLERANCES[np.dtype(dtype)]["prob_rtol"]
    r = reference.log_sigmoid(x)
    rel = np.abs(as_f64(logitkit.log_sigmoid(x)) - r) / np.abs(r)
    assert np.max(rel) <= rtol, (np.max(rel), x[np.argmax(rel)])
    r = reference.sigmoid(-x)
    rel = np.abs(as_f64(logitkit.sigmoid(-x)) - r) / r
    assert np.max(rel) <= rtol, (np.max(rel), x[np.argmax(rel)])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_bce_loss_beyond_the_dtype_range_averages_into_it(simd_target, dtype):
    # float32 losses are computed in float32, but one beyond float32's range (a target far
    # outside [0, 1] times a huge logit) is recomputed in double, so that a mean that fits
    # is finite; also when the gradient overwrites the logits (in place) meanwhile.
    n = 1000
    z = np.zeros(n, dtype=dtype)
    y = np.full(n, 0.5, dtype=dtype)
    z[3], y[3] = -1e30, 1e10  # loss 1e40
    z[700], y[700] = 3e38, -2.0  # loss (1 - y) z = 9e38
    for opts in ({}, {"weight": np.full(n, 2.0, dtype=dtype)},
                 {"pos_weight": np.asarray(3.0, dtype=dtype)}):
        for reduction in ("mean",):  # the sum is beyond float32's range itself
            ref_loss, ref_grad = reference.binary_cross_entropy(
                z, y, reduction=reduction, return_grad=True, **opts)
            assert_loss_close(logitkit.binary_cross_entropy(z, y, reduction=reduction, **opts),
                              ref_loss, "loss", dtype, reduction)
            zc = z.copy()
            loss, grad = logitkit.binary_cross_entropy(zc, y, reduction=reduction,
                                                       return_grad=True, grad_out=zc, **opts)
            assert grad is zc
            assert_loss_close(loss, ref_loss, "loss", dtype, reduction + " in place")
            assert_loss_close(grad, ref_grad, "grad", dtype, reduction + " in place")
