"""Input that is rejected (complex and object dtypes, an axis out of range) and unusual
input that must work: big-endian and unaligned arrays."""

import numpy as np
import pytest

from helpers import (
    FLOAT_DTYPES,
    FUNC_NAMES,
    assert_close,
    call,
    dtype_id,
    random_logits,
    ref,
    result_shape,
    rng_for,
    unaligned_copy,
)

pytestmark = pytest.mark.filterwarnings("error")


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object], ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_complex_and_object_rejected(simd_target, func, dtype):
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]]).astype(dtype)
    with pytest.raises(TypeError):
        call(func, x, axis=-1)


@pytest.mark.parametrize("shape_axis", [((5,), 1), ((5,), -2), ((3, 4), 2), ((3, 4), -3),
                                        ((2, 3, 4), 3), ((2, 3, 4), -4), ((0, 3), 2)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_axis_out_of_range(simd_target, func, shape_axis):
    shape, axis = shape_axis
    x = np.zeros(shape)
    with pytest.raises(np.exceptions.AxisError):
        call(func, x, axis=axis)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_big_endian_input(simd_target, func, dtype, axis):
    values = random_logits(rng_for("bigendian", dtype_id(dtype), axis), (9, 17), dtype,
                           axis=axis)
    x = values.astype(np.dtype(dtype).newbyteorder(">"))
    np.testing.assert_array_equal(x, values)
    result = call(func, x, axis=axis)
    assert result.dtype.isnative, f"result dtype {result.dtype.str} is byte-swapped"
    assert_close(result, ref(func, values, axis), func, dtype)


@pytest.mark.parametrize("shape_axis", [((33,), -1), ((9, 17), -1), ((9, 17), 0),
                                        ((4, 5, 6), 1)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [np.float16], ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_unaligned_input(simd_target, func, dtype, shape_axis):
    shape, axis = shape_axis
    values = random_logits(rng_for("unaligned", dtype_id(dtype), shape, axis), shape,
                           dtype, axis=axis)
    x = unaligned_copy(values)
    assert_close(call(func, x, axis=axis), ref(func, values, axis), func, dtype)
    # a strided view of unaligned data
    if x.ndim >= 2:
        assert_close(call(func, x[::2], axis=axis), ref(func, values[::2], axis), func,
                     dtype)


def test_unaligned_frombuffer(simd_target):
    # the way unaligned arrays come out of file formats: np.frombuffer at an odd offset
    values = random_logits(rng_for("frombuffer"), (6, 10), np.float64)
    buf = b"\0" + values.tobytes()
    x = np.frombuffer(buf, dtype=np.float64, offset=1).reshape(6, 10)
    assert not x.flags.aligned and not x.flags.writeable
    for func in FUNC_NAMES:
        assert_close(call(func, x, axis=-1), ref(func, values, -1), func, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("func", FUNC_NAMES)
def test_unaligned_out(simd_target, func, dtype):
    x = random_logits(rng_for("unaligned-out", dtype_id(dtype)), (9, 17), dtype)
    out = unaligned_copy(np.full(result_shape(func, x.shape, -1), np.nan, dtype=dtype))
    assert call(func, x, axis=-1, out=out) is out
    assert_close(out, ref(func, x, -1), func, dtype)
