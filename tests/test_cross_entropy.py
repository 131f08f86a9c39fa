"""cross_entropy (integer and probability targets, with its fused gradient) and nll_loss
against the float64 reference: every option combination, class counts from 1 to 32000,
every axis and memory layout, dtypes, grad_out, the worked examples of the seeds and the
edge cases (ignored samples, huge and -inf logits)."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import (
    FLOAT_DTYPES,
    LAYOUTS,
    dtype_id,
    random_logits,
    rng_for,
    unaligned_copy,
    with_layout,
)
from loss_helpers import (
    REDUCTIONS,
    as_f64,
    assert_loss_close,
    assert_reduced,
    class_weights,
    int_targets,
    onehot,
    prob_targets,
    without_axis,
)

pytestmark = pytest.mark.filterwarnings("error")

CLASS_COUNTS = [1, 2, 3, 7, 16, 17, 1000, 32000]


def n_samples(n_classes):
    """Enough rows to use every row scale and offset of random_logits (and an odd count,
    for kernels that vectorize short rows across rows); few for the long rows."""
    if n_classes >= 10000:
        return 4
    if n_classes >= 512:
        return 6
    return 37


def make_target(rng, kind, shape, axis, dtype, ignore_index=None):
    """An integer target (labels, some = ignore_index) or a probability target."""
    n_classes = shape[axis]
    if kind == "int":
        return int_targets(rng, without_axis(shape, axis), n_classes, ignore_index)
    return prob_targets(rng, shape, axis, dtype)


def check_cross_entropy(z, target, axis, dtype, **opts):
    """logitkit.cross_entropy(z, target, axis=axis, **opts) for every reduction, with and
    without return_grad, against the reference; the inputs are not modified."""
    z_before, t_before = z.copy(), np.array(target, copy=True)
    per_sample_shape = without_axis(z.shape, axis)
    for reduction in REDUCTIONS:
        ref_loss, ref_grad = reference.cross_entropy(
            z, target, axis, reduction=reduction, return_grad=True, **opts)
        what = f"reduction={reduction} {opts}"
        loss = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction, **opts)
        assert_reduced(loss, reduction, dtype, per_sample_shape)
        assert_loss_close(loss, ref_loss, "loss", dtype, what)

        result = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                        return_grad=True, **opts)
        assert isinstance(result, tuple) and len(result) == 2
        loss, grad = result
        assert_reduced(loss, reduction, dtype, per_sample_shape)
        assert_loss_close(loss, ref_loss, "loss", dtype, what + " return_grad")
        assert isinstance(grad, np.ndarray)
        assert grad.shape == z.shape
        assert_loss_close(grad, ref_grad, "grad", dtype, what)
    np.testing.assert_array_equal(z, z_before)
    np.testing.assert_array_equal(target, t_before)


# ---------------------------------------------------------------------------------------
# every option combination x class counts x dtypes
# ---------------------------------------------------------------------------------------

OPTIONS = [(kind, weighted, ignore, smoothing)
           for kind in ("int", "prob")
           for weighted in (False, True)
           for ignore in ((False, True) if kind == "int" else (False,))
           for smoothing in (0.0, 0.1)]


def _options_id(o):
    kind, weighted, ignore, smoothing = o
    return (f"{kind}{'-weight' if weighted else ''}{'-ignore' if ignore else ''}"
            f"{f'-smooth{smoothing:g}' if smoothing else ''}")


@pytest.mark.parametrize("n_classes", CLASS_COUNTS, ids=lambda c: f"C{c}")
@pytest.mark.parametrize("options", OPTIONS, ids=_options_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_options_and_class_counts(simd_target, dtype, options, n_classes):
    kind, weighted, ignore, smoothing = options
    rng = rng_for("ce-grid", dtype_id(dtype), options, n_classes)
    shape = (n_samples(n_classes), n_classes)
    z = random_logits(rng, shape, dtype)
    opts = {"label_smoothing": smoothing}
    if weighted:
        opts["weight"] = class_weights(rng, n_classes, dtype)
    if ignore:
        opts["ignore_index"] = -1
    target = make_target(rng, kind, shape, -1, dtype, -1 if ignore else None)
    check_cross_entropy(z, target, -1, dtype, **opts)


# ---------------------------------------------------------------------------------------
# every axis of 1-D to 3-D arrays, strided and transposed logits (and targets)
# ---------------------------------------------------------------------------------------

SHAPE_AXES = [((7,), 0), ((6, 9), 0), ((6, 9), 1), ((9, 33), -1), ((33, 9), 0),
              ((3, 5, 4), 0), ((3, 5, 4), 1), ((3, 5, 4), -1)]


def _shape_axis_id(param):
    shape, axis = param
    return "x".join(map(str, shape)) + f"-axis{axis}"


def _target_with_layout(target, layout):
    """``with_layout`` for targets: integer labels too (with_layout fills its gaps with
    NaN, which integer arrays cannot hold)."""
    target = np.asarray(target)
    if target.ndim == 0:
        return target
    if target.dtype.kind == "f" or layout not in ("every_other", "last_step2"):
        return with_layout(target, layout)
    if layout == "every_other":
        base = np.zeros(tuple(2 * n for n in target.shape), dtype=target.dtype)
        out = base[(slice(None, None, 2),) * target.ndim]
    else:
        base = np.zeros(target.shape[:-1] + (2 * target.shape[-1],), dtype=target.dtype)
        out = base[..., ::2]
    out[...] = target
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape_axis", SHAPE_AXES, ids=_shape_axis_id)
@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_axes_and_layouts(simd_target, dtype, kind, shape_axis, layout):
    shape, axis = shape_axis
    rng = rng_for("ce-layout", dtype_id(dtype), kind, shape, axis, layout)
    n_classes = shape[axis]
    values = random_logits(rng, shape, dtype, axis=axis)
    z = with_layout(values, layout)
    target = make_target(rng, kind, shape, axis, dtype, -100)
    target = _target_with_layout(target, layout)
    # the full set of options on the first half of the layouts, none on the rest
    if LAYOUTS.index(layout) % 2 == 0:
        opts = {"weight": class_weights(rng, n_classes), "label_smoothing": 0.2}
    else:
        opts = {}
    check_cross_entropy(z, target, axis, dtype, **opts)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_strided_examples(simd_target, dtype):
    # the cases named in the contract: x[:, ::2] and a transposed array
    rng = rng_for("ce-strided", dtype_id(dtype))
    base = random_logits(rng, (10, 34), dtype)
    for z, axis in [(base[:, ::2], -1), (base[:, ::2], 0), (base.T, 0), (base.T, 1),
                    (base[::3, 1::3], -1)]:
        assert not z.flags.c_contiguous
        t = int_targets(rng, without_axis(z.shape, axis), z.shape[axis], -100)
        check_cross_entropy(z, t, axis, dtype)
        y = prob_targets(rng, z.shape, axis, dtype)
        check_cross_entropy(z, y, axis, dtype, label_smoothing=0.05)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_positional_and_default_arguments(simd_target, dtype):
    rng = rng_for("ce-defaults", dtype_id(dtype))
    z = random_logits(rng, (8, 5), dtype)
    t = int_targets(rng, (8,), 5)
    # defaults: axis=-1, weight=None, ignore_index=-100, label_smoothing=0, mean
    assert_loss_close(logitkit.cross_entropy(z, t), reference.cross_entropy(z, t),
                      "loss", dtype)
    z3 = random_logits(rng, (2, 5, 3), dtype, axis=1)
    t3 = int_targets(rng, (2, 3), 5)
    assert_loss_close(logitkit.cross_entropy(z3, t3, axis=np.int64(1)),
                      reference.cross_entropy(z3, t3, 1), "loss", dtype)
    assert_loss_close(logitkit.cross_entropy(z3, t3, axis=-2),
                      reference.cross_entropy(z3, t3, 1), "loss", dtype)


# ---------------------------------------------------------------------------------------
# ignore_index, class weights and label smoothing in detail
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_default_ignore_index_is_minus_100(simd_target, dtype):
    rng = rng_for("ce-ignore-default", dtype_id(dtype))
    z = random_logits(rng, (12, 6), dtype)
    t = int_targets(rng, (12,), 6, ignore_index=-100, frac=0.4)
    assert np.any(t == -100)
    check_cross_entropy(z, t, -1, dtype)
    check_cross_entropy(z, t, -1, dtype, weight=class_weights(rng, 6),
                        label_smoothing=0.3)
    # ignored samples: loss 0 and gradient 0
    loss, grad = logitkit.cross_entropy(z, t, reduction="none", return_grad=True)
    assert np.all(loss[t == -100] == 0)
    assert np.all(grad[t == -100] == 0)


@pytest.mark.parametrize("ignore_index", [0, 2, -1, -7, 1000])
def test_ignore_index_values(simd_target, ignore_index):
    # an ignore_index inside [0, C) ignores that class's samples (PyTorch); any other
    # value simply never matches a valid label
    rng = rng_for("ce-ignore-values", ignore_index)
    z = random_logits(rng, (20, 5), np.float64)
    t = int_targets(rng, (20,), 5)
    t[::4] = ignore_index
    t[1] = 1
    for opts in ({}, {"weight": class_weights(rng, 5), "label_smoothing": 0.1}):
        check_cross_entropy(z, t, -1, np.float64, ignore_index=ignore_index, **opts)


@pytest.mark.parametrize("target_dtype", [np.int8, np.int16, np.int32, np.int64])
def test_ignore_index_with_small_integer_targets(simd_target, target_dtype):
    rng = rng_for("ce-ignore-small", dtype_id(target_dtype))
    z = random_logits(rng, (9, 4), np.float32)
    t = int_targets(rng, (9,), 4, ignore_index=-100, frac=0.5).astype(target_dtype)
    check_cross_entropy(z, t, -1, np.float32, weight=class_weights(rng, 4))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_zero_class_weights(simd_target, dtype):
    rng = rng_for("ce-zero-weight", dtype_id(dtype))
    z = random_logits(rng, (15, 5), dtype)
    t = int_targets(rng, (15,), 5, ignore_index=-100)
    w = np.array([0.0, 1.5, 0.0, 1.0, 0.25])
    t[0] = 1  # a positive denominator
    check_cross_entropy(z, t, -1, dtype, weight=w)
    check_cross_entropy(z, t, -1, dtype, weight=w, label_smoothing=0.2)
    check_cross_entropy(z, prob_targets(rng, z.shape, -1, dtype), -1, dtype, weight=w)


@pytest.mark.parametrize("smoothing", [0.0, 1e-3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_label_smoothing_range(simd_target, dtype, kind, smoothing):
    rng = rng_for("ce-smooth", dtype_id(dtype), kind, smoothing)
    z = random_logits(rng, (11, 7), dtype)
    target = make_target(rng, kind, z.shape, -1, dtype, -100)
    check_cross_entropy(z, target, -1, dtype, label_smoothing=smoothing)
    check_cross_entropy(z, target, -1, dtype, label_smoothing=smoothing,
                        weight=class_weights(rng, 7))


def test_weight_as_list_and_other_dtype(simd_target):
    rng = rng_for("ce-weight-list")
    z = random_logits(rng, (6, 3), np.float32)
    t = int_targets(rng, (6,), 3)
    w = [0.5, 2.0, 1.25]  # exact in float32 and float64
    expected = reference.cross_entropy(z, t, weight=w)
    for weight in (w, np.array(w), np.array(w, dtype=np.float32), tuple(w)):
        assert_loss_close(logitkit.cross_entropy(z, t, weight=weight), expected, "loss",
                          np.float32)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_unnormalized_probability_targets(simd_target, dtype):
    # the formula does not need rows summing to 1: scaled rows, an all-zero row
    rng = rng_for("ce-unnormalized", dtype_id(dtype))
    z = random_logits(rng, (8, 6), dtype)
    y = (rng.random((8, 6)) * 3).astype(dtype)
    y[2] = 0
    check_cross_entropy(z, y, -1, dtype)
    check_cross_entropy(z, y, -1, dtype, weight=class_weights(rng, 6),
                        label_smoothing=0.1)


# ---------------------------------------------------------------------------------------
# integer and probability targets agree; the seeds' formulas
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_onehot_target_equals_integer_target(simd_target, dtype, axis):
    rng = rng_for("ce-onehot", dtype_id(dtype), axis)
    z = random_logits(rng, (9, 7), dtype, axis=axis)
    n_classes = z.shape[axis]
    t = int_targets(rng, without_axis(z.shape, axis), n_classes)
    y = onehot(t, n_classes, axis, dtype)
    w = class_weights(rng, n_classes)
    cases = [({}, REDUCTIONS), ({"label_smoothing": 0.2}, REDUCTIONS),
             # with weights the integer "mean" divides by sum w[t], the probability one
             # by N: only "none" and "sum" agree
             ({"weight": w, "label_smoothing": 0.1}, ["none", "sum"])]
    for opts, reductions in cases:
        for reduction in reductions:
            li, gi = logitkit.cross_entropy(z, t, axis=axis, reduction=reduction,
                                            return_grad=True, **opts)
            lp, gp = logitkit.cross_entropy(z, y, axis=axis, reduction=reduction,
                                            return_grad=True, **opts)
            ref_loss, ref_grad = reference.cross_entropy(z, t, axis, reduction=reduction,
                                                         return_grad=True, **opts)
            for loss in (li, lp):
                assert_loss_close(loss, ref_loss, "loss", dtype, reduction)
            for grad in (gi, gp):
                assert_loss_close(grad, ref_grad, "grad", dtype, reduction)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_seed002_formula_one_equals_formula_two(simd_target, dtype):
    # seed 002/003: loss = -log p_target (formula one) = -sum y log p with a one-hot y
    # (formula two), e.g. three classes, the second one correct: y = [0, 1, 0]
    rng = rng_for("ce-seed002", dtype_id(dtype))
    z = random_logits(rng, (10, 3), dtype)
    t = np.full(10, 1)
    p = reference.softmax(z, -1)
    formula_one = -np.log(p[np.arange(10), t])
    formula_two = -np.sum(np.array([0.0, 1.0, 0.0]) * np.log(p), axis=-1)
    np.testing.assert_allclose(formula_one, formula_two, rtol=1e-15, atol=0)
    y = np.zeros((10, 3), dtype=dtype)
    y[:, 1] = 1
    for target in (t, y):
        loss = logitkit.cross_entropy(z, target, reduction="none")
        assert_loss_close(loss, formula_one, "loss", dtype)
        assert_loss_close(logitkit.cross_entropy(z, target, reduction="mean"),
                          np.mean(formula_one), "loss", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.int64], ids=dtype_id)
def test_seed004_worked_example(simd_target, dtype):
    # seed 004: scores [2, 3, 4], the second class correct ->
    # softmax [0.0900, 0.2447, 0.6652] and gradient [0.0900, -0.7553, 0.6652]
    # (the seed prints 0.0903 and 0.665; e^2 / (e^2 + e^3 + e^4) = 0.09003)
    scores = np.array([2, 3, 4], dtype=dtype)
    result_dtype = np.float32 if dtype == np.float32 else np.float64
    np.testing.assert_array_equal(np.round(as_f64(logitkit.softmax(scores)), 4),
                                  [0.0900, 0.2447, 0.6652])
    loss, grad = logitkit.cross_entropy(scores, np.array(1), reduction="sum",
                                        return_grad=True)
    assert grad.dtype == result_dtype and grad.shape == (3,)
    np.testing.assert_array_equal(np.round(as_f64(grad), 4), [0.0900, -0.7553, 0.6652])
    # the gradient is a - y: softmax minus the one-hot label
    assert_loss_close(grad, reference.softmax(scores, -1) - [0, 1, 0], "grad",
                      result_dtype)
    assert_loss_close(loss, -np.log(np.exp(3) / np.sum(np.exp([2.0, 3.0, 4.0]))), "loss",
                      result_dtype)
    # a batch of one ("mean" = "sum") and a one-hot probability target: the same
    onehot_target = np.array([[0, 1, 0]], dtype=result_dtype)
    for target, reduction in [(np.array([1]), "mean"), (onehot_target, "sum"),
                              (onehot_target, "mean")]:
        _, grad = logitkit.cross_entropy(scores[None, :], target, reduction=reduction,
                                         return_grad=True)
        np.testing.assert_array_equal(np.round(as_f64(grad), 4),
                                      [[0.0900, -0.7553, 0.6652]])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_gradient_is_softmax_minus_onehot(simd_target, dtype):
    # seed 000: dE/dz = a - y, for every row of a batch ("sum": no 1/N)
    rng = rng_for("ce-a-minus-y", dtype_id(dtype))
    z = random_logits(rng, (30, 10), dtype)
    t = int_targets(rng, (30,), 10)
    _, grad = logitkit.cross_entropy(z, t, reduction="sum", return_grad=True)
    expected = reference.softmax(z, -1) - onehot(t, 10, -1, np.float64)
    assert_loss_close(grad, expected, "grad", dtype)
    _, grad = logitkit.cross_entropy(z, t, reduction="mean", return_grad=True)
    assert_loss_close(grad, expected / 30, "grad", dtype)


# ---------------------------------------------------------------------------------------
# dtypes: targets of every integer dtype, float16 and integer logits
# ---------------------------------------------------------------------------------------

TARGET_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                 np.uint64, np.dtype(">i4"), np.dtype(">u8")]


@pytest.mark.parametrize("target_dtype", TARGET_DTYPES, ids=dtype_id)
def test_integer_target_dtypes(simd_target, target_dtype):
    rng = rng_for("ce-target-dtype", dtype_id(target_dtype))
    z = random_logits(rng, (13, 7), np.float32)
    t = int_targets(rng, (13,), 7).astype(target_dtype)
    check_cross_entropy(z, t, -1, np.float32, weight=class_weights(rng, 7))
    # a non-contiguous target
    z2 = random_logits(rng, (13, 6, 7), np.float64)
    t2 = int_targets(rng, (6, 13), 7).astype(target_dtype).T
    check_cross_entropy(z2, t2, -1, np.float64, label_smoothing=0.1)


@pytest.mark.parametrize("logit_dtype", [np.int8, np.int32, np.int64, np.uint16])
def test_integer_logits_promote_to_float64(simd_target, logit_dtype):
    rng = rng_for("ce-int-logits", dtype_id(logit_dtype))
    z = rng.integers(0, 50, size=(9, 5)).astype(logit_dtype)
    t = int_targets(rng, (9,), 5, ignore_index=-100)
    check_cross_entropy(z, t, -1, np.float64, weight=class_weights(rng, 5))
    check_cross_entropy(z, prob_targets(rng, z.shape, -1, np.float64), -1, np.float64)


@pytest.mark.parametrize("shape_axis", [((40, 7), -1), ((9, 1000), -1), ((17, 6), 0),
                                        ((3, 5, 7), 1)], ids=_shape_axis_id)
@pytest.mark.parametrize("kind", ["int", "prob"])
def test_float16_logits(simd_target, kind, shape_axis):
    shape, axis = shape_axis
    rng = rng_for("ce-f16", kind, shape, axis)
    z = (rng.standard_normal(shape) * 3).astype(np.float16)
    target = make_target(rng, kind, shape, axis, np.float16, -100)
    check_cross_entropy(z, target, axis, np.float16)
    check_cross_entropy(z, target, axis, np.float16,
                        weight=class_weights(rng, shape[axis]), label_smoothing=0.1)


# ---------------------------------------------------------------------------------------
# grad_out
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
def test_grad_out(simd_target, dtype, kind, reduction):
    rng = rng_for("ce-grad-out", dtype_id(dtype), kind, reduction)
    z = random_logits(rng, (7, 9), dtype) if dtype != np.float16 else (
        rng.standard_normal((7, 9)).astype(dtype))
    target = make_target(rng, kind, z.shape, -1, dtype, -100)
    ref_loss, ref_grad = reference.cross_entropy(z, target, reduction=reduction,
                                                 return_grad=True)
    for layout in ("C", "F", "every_other"):
        out = with_layout(np.full(z.shape, np.nan, dtype=dtype), layout)
        loss, grad = logitkit.cross_entropy(z, target, reduction=reduction,
                                            return_grad=True, grad_out=out)
        assert grad is out
        assert_loss_close(loss, ref_loss, "loss", dtype)
        assert_loss_close(out, ref_grad, "grad", dtype, f"grad_out {layout}")


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_grad_out_is_logits_in_place(simd_target, dtype, kind, axis):
    rng = rng_for("ce-in-place", dtype_id(dtype), kind, axis)
    z = random_logits(rng, (11, 33), dtype, axis=axis)
    target = make_target(rng, kind, z.shape, axis, dtype, -100)
    opts = {"weight": class_weights(rng, z.shape[axis]), "label_smoothing": 0.1}
    ref_loss, ref_grad = reference.cross_entropy(z, target, axis, reduction="mean",
                                                 return_grad=True, **opts)
    loss, grad = logitkit.cross_entropy(z, target, axis=axis, return_grad=True,
                                        grad_out=z, **opts)
    assert grad is z
    assert_loss_close(loss, ref_loss, "loss", dtype)
    assert_loss_close(z, ref_grad, "grad", dtype, "in place")
    # a strided view of a bigger array, in place
    base = np.zeros((11, 66), dtype=dtype)
    view = base[:, ::2]
    view[...] = random_logits(rng, view.shape, dtype)
    ref_loss, ref_grad = reference.cross_entropy(view, np.arange(11) % 33, -1,
                                                 reduction="sum", return_grad=True)
    loss, grad = logitkit.cross_entropy(view, np.arange(11) % 33, reduction="sum",
                                        return_grad=True, grad_out=view)
    assert grad is view
    assert_loss_close(loss, ref_loss, "loss", dtype)
    assert_loss_close(view, ref_grad, "grad", dtype, "in place, strided")
    assert np.all(base[:, 1::2] == 0)  # the gaps are not written


# ---------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opts", [{}, {"weight": [1.0, 2.0, 3.0, 0.5]},
                                  {"label_smoothing": 0.3},
                                  {"weight": [1.0, 2.0, 3.0, 0.5],
                                   "label_smoothing": 0.3}],
                         ids=["plain", "weight", "smooth", "weight-smooth"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_all_targets_ignored(simd_target, dtype, opts):
    # "mean" is 0.0 (not 0/0 = NaN), the gradient all zeros, and no warning (warnings are
    # errors here)
    z = random_logits(rng_for("ce-all-ignored", dtype_id(dtype)), (5, 4), dtype)
    for ignore_index, t in [(-100, np.full(5, -100)), (2, np.full(5, 2)),
                            (-100, np.full((5,), -100, dtype=np.int8))]:
        loss, grad = logitkit.cross_entropy(z, t, ignore_index=ignore_index,
                                            return_grad=True, **opts)
        assert np.ndim(loss) == 0 and np.asarray(loss).dtype == dtype
        assert loss == 0.0 and not np.isnan(loss)
        assert grad.dtype == dtype and grad.shape == z.shape
        assert np.all(grad == 0)
        for reduction in ("sum", "none"):
            loss, grad = logitkit.cross_entropy(z, t, ignore_index=ignore_index,
                                                reduction=reduction, return_grad=True,
                                                **opts)
            assert np.all(np.asarray(loss) == 0) and np.all(grad == 0)
    # with grad_out: written with zeros
    out = np.full(z.shape, np.nan, dtype=dtype)
    logitkit.cross_entropy(z, np.full(5, -100), return_grad=True, grad_out=out, **opts)
    assert np.all(out == 0)
    # nll_loss too
    assert logitkit.nll_loss(z, np.full(5, -100), **opts_for_nll(opts)) == 0.0


def opts_for_nll(opts):
    return {k: v for k, v in opts.items() if k != "label_smoothing"}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_huge_logits_and_masked_classes(simd_target, dtype):
    # lse(z) - z_t, never log(softmax): a 1e4 logit and -inf on a non-target class give a
    # finite loss and a finite gradient (0 at the masked class)
    z = np.array([[1e4, -np.inf, 0.0, 1e4 - 5],
                  [-np.inf, 3.0, -np.inf, 1.0],
                  [-1e4, 2.0, 1e4, -np.inf],
                  [0.0, 0.0, -np.inf, 0.0]], dtype=dtype)
    t = np.array([3, 1, 0, 0])
    for opts in ({}, {"weight": np.array([0.5, 1.0, 2.0, 1.5])}):
        for reduction in REDUCTIONS:
            loss, grad = logitkit.cross_entropy(z, t, reduction=reduction,
                                                return_grad=True, **opts)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
            ref_loss, ref_grad = reference.cross_entropy(z, t, reduction=reduction,
                                                         return_grad=True, **opts)
            assert_loss_close(loss, ref_loss, "loss", dtype, reduction)
            assert_loss_close(grad, ref_grad, "grad", dtype, reduction)
            assert np.all(grad[np.isneginf(z)] == 0)
    # per-sample values: 5 + log(1 + e^-5), log(1 + e^-2), 2e4, log 3
    loss = logitkit.cross_entropy(z, t, reduction="none")
    assert_loss_close(loss, [5 + np.log1p(np.exp(-5.0)), np.log1p(np.exp(-2.0)),
                             2e4, np.log(3.0)], "loss", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_masked_classes_with_probability_targets(simd_target, dtype):
    # 0 * log 0 = 0: a -inf logit where y = 0 contributes nothing; where y > 0 the loss
    # is +inf
    z = np.array([[0.0, -np.inf, 2.0], [1.0, 1.0, -np.inf]], dtype=dtype)
    y = np.array([[0.25, 0.0, 0.75], [0.5, 0.5, 0.0]], dtype=dtype)
    for reduction in REDUCTIONS:
        loss, grad = logitkit.cross_entropy(z, y, reduction=reduction, return_grad=True)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        ref_loss, ref_grad = reference.cross_entropy(z, y, reduction=reduction,
                                                     return_grad=True)
        assert_loss_close(loss, ref_loss, "loss", dtype, reduction)
        assert_loss_close(grad, ref_grad, "grad", dtype, reduction)
    y_bad = np.array([[0.25, 0.25, 0.5], [0.5, 0.5, 0.0]], dtype=dtype)
    loss = logitkit.cross_entropy(z, y_bad, reduction="none")
    assert loss[0] == np.inf and np.isfinite(loss[1])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_single_class(simd_target, dtype):
    # C = 1: softmax is 1, every loss is 0 and so is the gradient
    z = random_logits(rng_for("ce-c1", dtype_id(dtype)), (6, 1), dtype)
    for target in (np.zeros(6, dtype=np.int64), np.ones((6, 1), dtype=dtype)):
        for reduction in REDUCTIONS:
            for smoothing in (0.0, 0.1):
                loss, grad = logitkit.cross_entropy(z, target, reduction=reduction,
                                                    return_grad=True,
                                                    label_smoothing=smoothing)
                assert_loss_close(loss, np.zeros(np.shape(loss)), "loss", dtype)
                assert_loss_close(grad, np.zeros(z.shape), "grad", dtype)


@pytest.mark.parametrize("n_classes", [2, 3, 4, 5, 8, 10, 16, 33])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_many_short_rows(simd_target, dtype, n_classes):
    # many rows of a few classes (8192 x 10 is a benchmark shape): kernels that
    # vectorize across rows, both axes
    rng = rng_for("ce-short-rows", dtype_id(dtype), n_classes)
    z = random_logits(rng, (1003, n_classes), dtype)
    t = int_targets(rng, (1003,), n_classes, -100)
    opts = {"weight": class_weights(rng, n_classes), "label_smoothing": 0.1}
    check_cross_entropy(z, t, -1, dtype, **opts)
    zt = np.ascontiguousarray(z.T)
    check_cross_entropy(zt, t, 0, dtype, **opts)
    check_cross_entropy(zt, prob_targets(rng, zt.shape, 0, dtype), 0, dtype)


# ---------------------------------------------------------------------------------------
# nll_loss
# ---------------------------------------------------------------------------------------


def check_nll(lp, t, axis, dtype, **opts):
    lp_before = lp.copy()
    for reduction in REDUCTIONS:
        loss = logitkit.nll_loss(lp, t, axis=axis, reduction=reduction, **opts)
        assert_reduced(loss, reduction, dtype, np.shape(t))
        assert_loss_close(loss, reference.nll_loss(lp, t, axis, reduction=reduction,
                                                   **opts), "loss", dtype, reduction)
    np.testing.assert_array_equal(lp, lp_before)


@pytest.mark.parametrize("shape_axis", [((12, 1), -1), ((12, 3), -1), ((12, 17), -1),
                                        ((5, 1000), -1), ((17, 12), 0), ((3, 5, 4), 1),
                                        ((5,), 0)], ids=_shape_axis_id)
@pytest.mark.parametrize("options", [(False, False), (True, False), (False, True),
                                     (True, True)],
                         ids=["plain", "weight", "ignore", "weight-ignore"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_nll_loss(simd_target, dtype, options, shape_axis):
    weighted, ignore = options
    shape, axis = shape_axis
    rng = rng_for("nll", dtype_id(dtype), options, shape, axis)
    lp = reference.log_softmax(random_logits(rng, shape, np.float64, axis=axis),
                               axis).astype(dtype)
    n_classes = shape[axis]
    t = int_targets(rng, without_axis(shape, axis), n_classes, -5 if ignore else None)
    opts = {}
    if weighted:
        opts["weight"] = class_weights(rng, n_classes)
    if ignore:
        opts["ignore_index"] = -5
    check_nll(lp, t, axis, dtype, **opts)
    check_nll(with_layout(lp, "T"), t, axis, dtype, **opts)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_nll_loss_of_arbitrary_values(simd_target, dtype):
    # nll_loss just picks -w[t] * x[t]: any values, also positive ones and -inf
    x = np.array([[1.5, -2.0, 3.0], [-np.inf, 0.0, 4.0], [2.0, 2.0, -7.25]], dtype=dtype)
    t = np.array([2, 1, 0])
    check_nll(x, t, -1, dtype)
    check_nll(x, t, -1, dtype, weight=np.array([2.0, 0.5, 1.0]))
    assert logitkit.nll_loss(x, np.array([0, 0, 2]), reduction="sum") == np.inf


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_nll_of_log_softmax_is_cross_entropy(simd_target, dtype):
    rng = rng_for("nll-ce", dtype_id(dtype))
    z = random_logits(rng, (20, 9), dtype)
    t = int_targets(rng, (20,), 9, -100)
    w = class_weights(rng, 9)
    for opts in ({}, {"weight": w}):
        for reduction in REDUCTIONS:
            expected = reference.cross_entropy(z, t, reduction=reduction, **opts)
            nll = logitkit.nll_loss(logitkit.log_softmax(z), t, reduction=reduction,
                                    **opts)
            assert_loss_close(nll, expected, "loss", dtype, reduction)
            ce = logitkit.cross_entropy(z, t, reduction=reduction, **opts)
            assert_loss_close(ce, expected, "loss", dtype, reduction)


@pytest.mark.parametrize("target_dtype", TARGET_DTYPES, ids=dtype_id)
def test_nll_loss_target_dtypes(simd_target, target_dtype):
    rng = rng_for("nll-target-dtype", dtype_id(target_dtype))
    lp = reference.log_softmax(rng.standard_normal((10, 6)), -1)
    t = int_targets(rng, (10,), 6).astype(target_dtype)
    check_nll(lp, t, -1, np.float64, weight=class_weights(rng, 6))


def test_nll_loss_float16_and_integer_input(simd_target):
    rng = rng_for("nll-f16")
    lp = reference.log_softmax(rng.standard_normal((10, 6)), -1).astype(np.float16)
    t = int_targets(rng, (10,), 6, -100)
    check_nll(lp, t, -1, np.float16)
    x = -rng.integers(0, 9, size=(10, 6))
    check_nll(x, t, -1, np.float64)


# ---------------------------------------------------------------------------------------
# rows longer than the caches: an LLM vocabulary (128256) and 2**20 + 3 classes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [128256, 2**20 + 3], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_huge_rows(simd_target, dtype, kind, n_classes):
    rng = rng_for("ce-huge-rows", dtype_id(dtype), kind, n_classes)
    rows = 2 if n_classes < 2**20 else 1
    z = random_logits(rng, (rows, n_classes), dtype)
    # a dominant logit over a long tail, like a confident LLM row
    z[0, n_classes // 3] = np.max(z[0]) + 12
    target = make_target(rng, kind, z.shape, -1, dtype)
    if kind == "int":
        target[0] = n_classes // 3
    opts = {"weight": class_weights(rng, n_classes), "label_smoothing": 0.1}
    for o in ({}, opts):
        ref_loss, ref_grad = reference.cross_entropy(z, target, reduction="sum",
                                                     return_grad=True, **o)
        loss, grad = logitkit.cross_entropy(z, target, reduction="sum", return_grad=True,
                                            **o)
        assert_loss_close(loss, ref_loss, "loss", dtype, str(o.keys()))
        assert_loss_close(grad, ref_grad, "grad", dtype, str(o.keys()))
        per_sample = logitkit.cross_entropy(z, target, reduction="none", **o)
        expected = reference.cross_entropy(z, target, reduction="none", **o)
        assert_loss_close(per_sample, expected, "loss", dtype)


# ---------------------------------------------------------------------------------------
# unusual but valid input
# ---------------------------------------------------------------------------------------


def test_uint8_targets_with_ignore_index_255(simd_target):
    # the segmentation convention: uint8 labels, 255 = ignore
    rng = rng_for("ce-uint8-255")
    z = random_logits(rng, (4, 6, 5), np.float32, axis=1)  # classes along axis 1
    t = rng.integers(0, 6, size=(4, 5)).astype(np.uint8)
    t[rng.random((4, 5)) < 0.3] = 255
    t[0, 0] = 1
    check_cross_entropy(z, t, 1, np.float32, ignore_index=255)
    check_cross_entropy(z, t, 1, np.float32, ignore_index=255,
                        weight=class_weights(rng, 6), label_smoothing=0.1)


def test_list_targets_and_logits(simd_target):
    z = [[2.0, 3.0, 4.0], [1.0, 0.0, -1.0]]
    for target in ([1, 0], [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]):
        ref_loss, ref_grad = reference.cross_entropy(z, np.asarray(target),
                                                     return_grad=True)
        loss, grad = logitkit.cross_entropy(z, target, return_grad=True)
        assert_loss_close(loss, ref_loss, "loss", np.float64)
        assert_loss_close(grad, ref_grad, "grad", np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_broadcast_big_endian_and_unaligned_logits(simd_target, dtype):
    rng = rng_for("ce-unusual-logits", dtype_id(dtype))
    row = random_logits(rng, (9,), dtype)
    t = int_targets(rng, (6,), 9, -100)
    # zero strides (a read-only view): every row the same
    check_cross_entropy(np.broadcast_to(row, (6, 9)), t, -1, dtype,
                        weight=class_weights(rng, 9), label_smoothing=0.1)
    check_cross_entropy(np.broadcast_to(row[:, None], (9, 6)), t, 0, dtype)
    # byte-swapped
    z = random_logits(rng, (6, 9), dtype)
    swapped = z.astype(np.dtype(dtype).newbyteorder(">"))
    for reduction in REDUCTIONS:
        loss, grad = logitkit.cross_entropy(swapped, t, reduction=reduction,
                                            return_grad=True)
        assert grad.dtype.isnative
        ref_loss, ref_grad = reference.cross_entropy(z, t, reduction=reduction,
                                                     return_grad=True)
        assert_loss_close(loss, ref_loss, "loss", dtype)
        assert_loss_close(grad, ref_grad, "grad", dtype)
    # unaligned
    check_cross_entropy(unaligned_copy(z), t, -1, dtype, label_smoothing=0.2)
    check_cross_entropy(z, unaligned_copy(prob_targets(rng, z.shape, -1, dtype)), -1,
                        dtype)


def test_float64_probability_target_for_float32_logits(simd_target):
    rng = rng_for("ce-mixed-target")
    z = random_logits(rng, (10, 7), np.float32)
    y = prob_targets(rng, z.shape, -1, np.float64)
    check_cross_entropy(z, y, -1, np.float32)


def test_negative_class_weights_follow_the_formula(simd_target):
    # nothing in the contract forbids negative weights; "mean" is
    # sum_i w[t_i] loss_i / sum_i w[t_i] (PyTorch: 1.6244 for all weights -1 here); the
    # 0.0 rule is for "every target ignored", not for a denominator <= 0
    rng = rng_for("ce-negative-weights")
    z = random_logits(rng, (6, 5), np.float64)
    t = np.arange(6) % 5
    for w in (-np.ones(5), np.array([-3.0, 1.0, 1.0, 1.0, 1.0])):
        check_cross_entropy(z, t, -1, np.float64, weight=w)
        assert_loss_close(logitkit.nll_loss(reference.log_softmax(z, -1), t, weight=w),
                          reference.cross_entropy(z, t, weight=w), "loss", np.float64)
