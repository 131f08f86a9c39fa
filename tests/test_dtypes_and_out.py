"""Result dtypes (float32 stays float32, integers/bool -> float64, float16 -> float16) and
the out= argument: returned object, layouts, in place, and the errors for a wrong out."""

import re

import numpy as np
import pytest

import logitkit
import reference
from helpers import (
    ELEMENTWISE_FUNCS,
    FLOAT_DTYPES,
    FUNC_NAMES,
    assert_close,
    call,
    dtype_id,
    random_logits,
    ref,
    result_dtype,
    result_shape,
    rng_for,
    with_layout,
)

pytestmark = pytest.mark.filterwarnings("error")

# ---------------------------------------------------------------------------------------
# dtype rules
# ---------------------------------------------------------------------------------------

INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
              np.uint64, np.bool_]


def _random_ints(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    lo = 0 if dtype.kind == "u" else -60
    return rng.integers(lo, 60, size=shape).astype(dtype)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", INT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_integer_and_bool_promote_to_float64(simd_target, func, dtype, axis):
    x = _random_ints(rng_for("int", dtype_id(dtype), axis), (13, 17), dtype)
    result = call(func, x, axis=axis)
    assert result.dtype == np.float64
    assert_close(result, ref(func, x, axis), func, np.float64)


@pytest.mark.parametrize("func", FUNC_NAMES)
def test_int64_extremes(simd_target, func):
    info = np.iinfo(np.int64)
    x = np.array([[info.max, info.min, 0], [2**62, 2**62 - 1, -(2**62)], [1, 2, 3]],
                 dtype=np.int64)
    assert_close(call(func, x), ref(func, x), func, np.float64)


@pytest.mark.parametrize("func", FUNC_NAMES)
def test_float32_stays_float32_float64_stays_float64(simd_target, func):
    for dtype in FLOAT_DTYPES:
        x = random_logits(rng_for("keep", dtype_id(dtype)), (5, 9), dtype)
        assert call(func, x).dtype == dtype


@pytest.mark.parametrize("shape_axis", [((40, 7), -1), ((40, 33), -1), ((9, 1000), -1),
                                        ((17, 6), 0), ((3, 5, 7), 1)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_float16_computed_in_float32_returned_as_float16(simd_target, func, shape_axis):
    shape, axis = shape_axis
    x = random_logits(rng_for("f16", shape, axis), shape, np.float16, axis=axis)
    result = call(func, x, axis=axis)
    assert result.dtype == np.float16
    assert_close(result, ref(func, x, axis), func, np.float16)


# ---------------------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------------------

OUT_LAYOUTS = ["C", "F", "every_other", "reversed", "moveaxis"]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16, np.int32], ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_out_is_returned(simd_target, func, dtype):
    x = random_logits(rng_for("out", dtype_id(dtype)), (6, 9), dtype)
    out = np.full(result_shape(func, x.shape, -1), np.nan, dtype=result_dtype(dtype))
    result = call(func, x, axis=-1, out=out)
    assert result is out
    assert_close(out, ref(func, x, -1), func, result_dtype(dtype))


@pytest.mark.parametrize("out_layout", OUT_LAYOUTS)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_out_layouts(simd_target, func, dtype, axis, out_layout):
    x = random_logits(rng_for("outlay", axis, dtype_id(dtype)), (6, 9, 5), dtype,
                      axis=axis)
    shape = result_shape(func, x.shape, axis)
    out = with_layout(np.full(shape, np.nan, dtype=dtype), out_layout)
    result = call(func, x, axis=axis, out=out)
    assert result is out
    assert_close(out, ref(func, x, axis), func, dtype)


@pytest.mark.parametrize("out_layout", OUT_LAYOUTS)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_logsumexp_out_keepdims(simd_target, dtype, axis, out_layout):
    x = random_logits(rng_for("outkeep", axis, dtype_id(dtype)), (6, 9, 5), dtype,
                      axis=axis)
    shape = result_shape("logsumexp", x.shape, axis, keepdims=True)
    out = with_layout(np.full(shape, np.nan, dtype=dtype), out_layout)
    result = logitkit.logsumexp(x, axis=axis, keepdims=True, out=out)
    assert result is out
    assert_close(out, reference.logsumexp(x, axis, keepdims=True), "logsumexp", dtype)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("layout", ["C", "T", "every_other"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
@pytest.mark.parametrize("func", ELEMENTWISE_FUNCS)
def test_in_place(simd_target, func, dtype, layout, axis):
    values = random_logits(rng_for("inplace", layout, axis, dtype_id(dtype)), (7, 33),
                           dtype, axis=axis)
    x = with_layout(values, layout)
    result = call(func, x, axis=axis, out=x)
    assert result is x
    assert_close(x, ref(func, values, axis), func, dtype)


OVERLAPS = ["reversed", "transposed", "shifted_by_one_row"]


@pytest.mark.parametrize("overlap", OVERLAPS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", ELEMENTWISE_FUNCS)
def test_out_partially_overlapping_input(simd_target, func, dtype, overlap):
    # out shares memory with x without being x: a correct result, or a ValueError
    base = random_logits(rng_for("overlap", overlap, dtype_id(dtype)), (9, 8), dtype)
    if overlap == "shifted_by_one_row":
        x, out = base[:8], base[1:]
    else:
        x = base[:8]
        out = x[::-1] if overlap == "reversed" else x.T
    values = x.copy()
    try:
        result = call(func, x, axis=-1, out=out)
    except ValueError:
        return
    assert result is out
    assert_close(out, ref(func, values, -1), func, dtype)


def _mentions_shape(message, shape):
    compact = re.sub(r"\s", "", message)
    dims = [str(n) for n in shape]
    spellings = {"(" + ",".join(dims) + ")", "(" + ",".join(dims) + ",)",
                 "[" + ",".join(dims) + "]", "x".join(dims)}
    return any(s in compact for s in spellings if s)


def _wrong_shapes(func, shape, axis):
    """Output shapes that must be rejected for an input of ``shape`` reduced on axis."""
    good = result_shape(func, shape, axis)
    wrong = [tuple(reversed(good)), good + (1,), good[:-1] + (good[-1] + 1,)]
    if func == "logsumexp":
        wrong += [tuple(shape), result_shape(func, shape, axis, keepdims=True)]
    return [w for w in wrong if w != good]


@pytest.mark.parametrize("func", FUNC_NAMES)
def test_out_wrong_shape(simd_target, func):
    x = random_logits(rng_for("wrongshape"), (3, 7, 5), np.float64)
    for axis in (1, -1):
        expected = result_shape(func, x.shape, axis)
        for shape in _wrong_shapes(func, x.shape, axis):
            out = np.empty(shape, dtype=np.float64)
            with pytest.raises((ValueError, TypeError)) as excinfo:
                call(func, x, axis=axis, out=out)
            assert _mentions_shape(str(excinfo.value), expected), (
                f"out shape {shape}: message {str(excinfo.value)!r} does not name the "
                f"expected shape {expected}")


def test_logsumexp_out_wrong_shape_keepdims(simd_target):
    x = random_logits(rng_for("wrongkeep"), (3, 7, 5), np.float64)
    expected = (3, 1, 5)
    for shape in [(3, 5), (3, 7, 5), (1, 3, 5)]:
        out = np.empty(shape)
        with pytest.raises((ValueError, TypeError)) as excinfo:
            logitkit.logsumexp(x, axis=1, keepdims=True, out=out)
        assert _mentions_shape(str(excinfo.value), expected), str(excinfo.value)


WRONG_DTYPES = [  # (input dtype, out dtype)
    (np.float32, np.float64),
    (np.float64, np.float32),
    (np.float16, np.float32),
    (np.float32, np.float16),
    (np.int64, np.float32),
    (np.int64, np.int64),
    (np.bool_, np.bool_),
    (np.float64, np.complex128),
]


@pytest.mark.parametrize("dtypes", WRONG_DTYPES,
                         ids=lambda d: f"{dtype_id(d[0])}-out{dtype_id(d[1])}")
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_out_wrong_dtype(simd_target, func, dtypes):
    in_dtype, out_dtype = dtypes
    x = random_logits(rng_for("wrongdtype"), (4, 6), in_dtype)
    expected = result_dtype(in_dtype)
    out = np.zeros(result_shape(func, x.shape, -1), dtype=out_dtype)
    with pytest.raises((TypeError, ValueError)) as excinfo:
        call(func, x, axis=-1, out=out)
    assert expected.name in str(excinfo.value), (
        f"message {str(excinfo.value)!r} does not name the expected dtype {expected}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_out_non_native_byte_order_is_rejected_or_correct(simd_target, func, dtype):
    # exactly the result dtype means native byte order; if a byte-swapped out is
    # accepted anyway, it must hold the right values
    swapped = np.dtype(dtype).newbyteorder("S")
    x = random_logits(rng_for("swapped-out", dtype_id(dtype)), (4, 6), dtype)
    out = np.zeros(result_shape(func, x.shape, -1), dtype=swapped)
    try:
        result = call(func, x, axis=-1, out=out)
    except (TypeError, ValueError):
        return
    assert result is out
    assert_close(out.astype(dtype), ref(func, x, -1), func, dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_], ids=dtype_id)
@pytest.mark.parametrize("func", ELEMENTWISE_FUNCS)
def test_in_place_on_integer_input_is_rejected(simd_target, func, dtype):
    # the result is float64, so an integer array cannot hold it
    x = np.arange(12).reshape(3, 4).astype(dtype)
    before = x.copy()
    with pytest.raises((TypeError, ValueError)) as excinfo:
        call(func, x, axis=-1, out=x)
    assert "float64" in str(excinfo.value)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("func", FUNC_NAMES)
def test_out_read_only(simd_target, func):
    x = random_logits(rng_for("readonly"), (4, 6), np.float32)
    out = np.zeros(result_shape(func, x.shape, -1), dtype=np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        call(func, x, axis=-1, out=out)
    assert not out.any()


@pytest.mark.parametrize("func", FUNC_NAMES)
def test_out_is_keyword_only(simd_target, func):
    x = np.zeros((2, 3))
    out = np.empty(result_shape(func, x.shape, -1))
    with pytest.raises(TypeError):
        getattr(logitkit, func)(x, -1, out)
