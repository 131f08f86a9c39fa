"""Bad input to cross_entropy and nll_loss: labels out of range, targets of the wrong
shape or dtype, bad weights / label_smoothing / reduction, and a wrong grad_out."""

import re

import numpy as np
import pytest

import logitkit
import reference
from helpers import FLOAT_DTYPES, dtype_id, random_logits, rng_for
from loss_helpers import assert_loss_close

pytestmark = pytest.mark.filterwarnings("error")


def _logits(dtype=np.float64, shape=(4, 5)):
    return random_logits(rng_for("ce-errors", shape, dtype_id(dtype)), shape, dtype)


def _shape_pattern(shape):
    """A regex matching ``shape`` written as a tuple, e.g. (4, 5) or (4,), with or
    without the spaces."""
    shape = tuple(shape)
    inner = r",\s*".join(str(n) for n in shape) + (r",?" if len(shape) == 1 else "")
    return r"\(\s*" + inner + r"\s*\)"


# ---------------------------------------------------------------------------------------
# labels out of range
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [5, 6, 1000, -1, -2, -101, -99])
@pytest.mark.parametrize("func", ["cross_entropy", "nll_loss"])
def test_label_out_of_range(simd_target, func, bad):
    z = _logits()  # C = 5
    t = np.array([0, 4, bad, 1])
    with pytest.raises(IndexError) as info:
        getattr(logitkit, func)(z, t)
    message = str(info.value)
    assert str(bad) in message, message
    assert re.search(r"\b2\b", message), f"the position 2 is not named: {message}"


@pytest.mark.parametrize("func", ["cross_entropy", "nll_loss"])
def test_label_out_of_range_names_first_position_and_value(simd_target, func):
    z = _logits(shape=(3, 5, 4))  # classes along axis 1: target shape (3, 4)
    t = np.zeros((3, 4), dtype=np.int64)
    t[1, 2] = 7
    t[2, 0] = -3
    t[2, 3] = 99
    with pytest.raises(IndexError) as info:
        getattr(logitkit, func)(z, t, axis=1)
    message = str(info.value)
    assert re.search(_shape_pattern((1, 2)), message), message
    assert re.search(r"\b7\b", message), message
    # the first offending label only
    assert not re.search(_shape_pattern((2, 0)), message), message
    assert "99" not in message, message


@pytest.mark.parametrize("return_grad", [False, True])
def test_label_out_of_range_with_every_option(simd_target, return_grad):
    z = _logits()
    t = np.array([0, -100, 5, 1])
    for opts in ({"weight": np.ones(5)}, {"label_smoothing": 0.1},
                 {"reduction": "none"}, {"reduction": "sum"}, {"ignore_index": 5}):
        if opts.get("ignore_index") == 5:
            # 5 is ignored now, but -100 is not
            with pytest.raises(IndexError, match="-100"):
                logitkit.cross_entropy(z, t, return_grad=return_grad, **opts)
        else:
            with pytest.raises(IndexError, match=r"\b5\b"):
                logitkit.cross_entropy(z, t, return_grad=return_grad, **opts)


def test_label_equal_to_ignore_index_is_not_out_of_range(simd_target):
    z = _logits()
    for ignore_index in (-100, -1, 5, 77):
        t = np.array([0, ignore_index, 3, ignore_index])
        logitkit.cross_entropy(z, t, ignore_index=ignore_index)
        logitkit.nll_loss(z, t, ignore_index=ignore_index)


@pytest.mark.parametrize("target_dtype", [np.uint8, np.int8, np.uint64])
def test_label_out_of_range_small_and_unsigned_dtypes(simd_target, target_dtype):
    z = _logits()
    t = np.array([0, 1, 200 if np.dtype(target_dtype).kind == "u" else 100, 2],
                 dtype=target_dtype)
    with pytest.raises(IndexError):
        logitkit.cross_entropy(z, t)
    t = np.array([0, 1, 2, np.iinfo(target_dtype).max], dtype=target_dtype)
    with pytest.raises(IndexError):
        logitkit.cross_entropy(z, t)


def test_label_out_of_range_along_other_axis(simd_target):
    z = _logits(shape=(5, 4))  # classes along axis 0: C = 5, target shape (4,)
    with pytest.raises(IndexError):
        logitkit.cross_entropy(z, np.array([0, 1, 5, 2]), axis=0)
    z = _logits(shape=(4, 3))  # axis 0: C = 4; label 3 is fine, 4 is not
    logitkit.cross_entropy(z, np.array([3, 0, 1]), axis=0)
    with pytest.raises(IndexError):
        logitkit.cross_entropy(z, np.array([3, 0, 4]), axis=0)


# ---------------------------------------------------------------------------------------
# targets of the wrong shape or dtype
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 4), (5, 4), (4, 5, 1), (1, 4, 5), (20,), (5, 5)])
def test_probability_target_of_wrong_shape(simd_target, shape):
    z = _logits()  # (4, 5)
    y = np.full(shape, 0.2)
    with pytest.raises(ValueError) as info:
        logitkit.cross_entropy(z, y)
    # the message says which shape was expected: the logits' shape
    assert re.search(_shape_pattern((4, 5)), str(info.value)), str(info.value)


@pytest.mark.parametrize("shape_axis_target", [((4, 5), -1, (5,)), ((4, 5), -1, (4, 1)),
                                               ((4, 5), -1, (1, 4)), ((4, 5), 0, (4,)),
                                               ((4, 5), -1, ()), ((3, 5, 4), 1, (3, 5)),
                                               ((3, 5, 4), 1, (4, 3)), ((5,), 0, (1,)),
                                               ((4, 5), -1, (2, 2))],
                         ids=lambda p: f"{p[0]}-axis{p[1]}-target{p[2]}")
@pytest.mark.parametrize("func", ["cross_entropy", "nll_loss"])
def test_integer_target_of_wrong_shape(simd_target, func, shape_axis_target):
    shape, axis, target_shape = shape_axis_target
    z = _logits(shape=shape)
    t = np.zeros(target_shape, dtype=np.int64)
    expected = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    with pytest.raises(ValueError) as info:
        getattr(logitkit, func)(z, t, axis=axis)
    # the message names the expected shape: the logits' shape without the class axis
    assert re.search(_shape_pattern(expected), str(info.value)) or (
        expected == () and "()" in str(info.value)), str(info.value)


@pytest.mark.parametrize("dtype", [np.bool_, np.complex64, np.complex128],
                         ids=dtype_id)
def test_bool_and_complex_targets(simd_target, dtype):
    z = _logits()
    with pytest.raises(TypeError):
        logitkit.cross_entropy(z, np.zeros(4, dtype=dtype))
    with pytest.raises(TypeError):
        logitkit.cross_entropy(z, np.zeros((4, 5), dtype=dtype))
    with pytest.raises(TypeError):
        logitkit.cross_entropy(z, np.zeros(4, dtype=dtype), return_grad=True)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object], ids=dtype_id)
def test_complex_logits(simd_target, dtype):
    z = _logits().astype(dtype)
    with pytest.raises(TypeError):
        logitkit.cross_entropy(z, np.zeros(4, dtype=np.int64))


def test_axis_out_of_range(simd_target):
    z = _logits()
    for axis in (2, -3):
        with pytest.raises(np.exceptions.AxisError):
            logitkit.cross_entropy(z, np.zeros(4, dtype=np.int64), axis=axis)


# ---------------------------------------------------------------------------------------
# weight, label_smoothing, reduction
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [np.ones(4), np.ones(6), np.ones(1), np.ones((1, 5)),
                                    np.ones((5, 1)), np.ones(0), [1.0, 2.0]],
                         ids=["len4", "len6", "len1", "1x5", "5x1", "empty", "list2"])
@pytest.mark.parametrize("func", ["cross_entropy", "nll_loss"])
def test_weight_of_wrong_length(simd_target, func, weight):
    z = _logits()  # C = 5
    with pytest.raises(ValueError):
        getattr(logitkit, func)(z, np.zeros(4, dtype=np.int64), weight=weight)
    if func == "cross_entropy":
        with pytest.raises(ValueError):
            logitkit.cross_entropy(z, np.full((4, 5), 0.2), weight=weight)


@pytest.mark.parametrize("smoothing",
                         [-0.1, -1e-9, 1.0000001, 1.5, 2.0, -np.inf, np.inf])
def test_label_smoothing_out_of_range(simd_target, smoothing):
    z = _logits()
    with pytest.raises(ValueError):
        logitkit.cross_entropy(z, np.zeros(4, dtype=np.int64), label_smoothing=smoothing)
    with pytest.raises(ValueError):
        logitkit.cross_entropy(z, np.full((4, 5), 0.2), label_smoothing=smoothing)


@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", "elementwise_mean", None])
def test_unknown_reduction(simd_target, reduction):
    z = _logits()
    t = np.zeros(4, dtype=np.int64)
    with pytest.raises((ValueError, TypeError)) as info:
        logitkit.cross_entropy(z, t, reduction=reduction)
    if isinstance(reduction, str):
        assert info.type is ValueError
    with pytest.raises((ValueError, TypeError)):
        logitkit.nll_loss(z, t, reduction=reduction)


# ---------------------------------------------------------------------------------------
# grad_out
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_grad_out_of_wrong_shape(simd_target, dtype):
    z = _logits(dtype)
    t = np.zeros(4, dtype=np.int64)
    for shape in [(5, 4), (4, 6), (4,), (20,), (1, 4, 5), ()]:
        out = np.zeros(shape, dtype=dtype)
        with pytest.raises(ValueError) as info:
            logitkit.cross_entropy(z, t, return_grad=True, grad_out=out)
        assert re.search(_shape_pattern((4, 5)), str(info.value)), str(info.value)
        assert np.all(out == 0)  # nothing written


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
def test_grad_out_of_wrong_dtype(simd_target, dtype):
    z = _logits(dtype)
    t = np.zeros(4, dtype=np.int64)
    for out_dtype in [np.float16, np.float32, np.float64, np.int64, np.complex128]:
        if np.dtype(out_dtype) == np.dtype(dtype):
            continue
        out = np.zeros((4, 5), dtype=out_dtype)
        with pytest.raises(TypeError) as info:
            logitkit.cross_entropy(z, t, return_grad=True, grad_out=out)
        assert np.dtype(dtype).name in str(info.value), str(info.value)
        assert np.all(out == 0)  # nothing written


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_grad_out_byte_swapped_is_rejected_or_correct(simd_target, dtype):
    # like part 1's out=: rejected, or accepted and holding the right values
    z = _logits(dtype)
    t = np.array([0, 1, 2, 3])
    out = np.zeros((4, 5), dtype=np.dtype(dtype).newbyteorder("S"))
    try:
        _, grad = logitkit.cross_entropy(z, t, return_grad=True, grad_out=out)
    except (TypeError, ValueError):
        return
    assert grad is out
    expected = reference.cross_entropy(z, t, return_grad=True)[1]
    assert_loss_close(out.astype(dtype), expected, "grad", dtype)


def test_grad_out_for_integer_logits_is_float64(simd_target):
    z = np.arange(20).reshape(4, 5)
    t = np.zeros(4, dtype=np.int64)
    with pytest.raises(TypeError):
        logitkit.cross_entropy(z, t, return_grad=True,
                               grad_out=np.zeros((4, 5), np.int64))
    out = np.zeros((4, 5))
    _, grad = logitkit.cross_entropy(z, t, return_grad=True, grad_out=out)
    assert grad is out


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_grad_out_read_only(simd_target, dtype):
    z = _logits(dtype)
    t = np.zeros(4, dtype=np.int64)
    out = np.zeros((4, 5), dtype=dtype)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        logitkit.cross_entropy(z, t, return_grad=True, grad_out=out)
    # a broadcast view is read-only as well
    out = np.broadcast_to(np.zeros(5, dtype=dtype), (4, 5))
    with pytest.raises(ValueError):
        logitkit.cross_entropy(z, t, return_grad=True, grad_out=out)
    # in place on read-only logits
    z.flags.writeable = False
    with pytest.raises(ValueError):
        logitkit.cross_entropy(z, t, return_grad=True, grad_out=z)


def test_grad_out_not_an_array(simd_target):
    z = _logits()
    t = np.zeros(4, dtype=np.int64)
    with pytest.raises(TypeError):
        logitkit.cross_entropy(z, t, return_grad=True, grad_out=[[0.0] * 5] * 4)


def test_grad_out_errors_come_before_any_work(simd_target):
    # a wrong grad_out is reported even when the labels are fine and the logits would
    # be overwritten in place: the logits are untouched
    z = _logits()
    before = z.copy()
    t = np.array([0, 1, 2, 3])
    with pytest.raises(TypeError):
        logitkit.cross_entropy(z, t, return_grad=True,
                               grad_out=np.zeros((4, 5), dtype=np.float32))
    np.testing.assert_array_equal(z, before)
    # a bad label with grad_out=logits: nothing is written either
    with pytest.raises(IndexError):
        logitkit.cross_entropy(z, np.array([0, 1, 9, 3]), return_grad=True, grad_out=z)
    np.testing.assert_array_equal(z, before)
