"""Argument handling shared by the public functions: dtypes, axes and ``out=`` arrays.

The compiled core takes only aligned, native-endian float32/float64 arrays with a valid
axis and a correctly shaped ``out``; everything else is turned into that here, or rejected
with an exception that says what was expected.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.exceptions import AxisError
from numpy.typing import ArrayLike, NDArray

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)


def as_float_array(x: ArrayLike, name: str = "x") -> tuple[NDArray[Any], np.dtype[Any]]:
    """Return ``(a, result_dtype)``: ``a`` is what the core computes on.

    float32 and float64 are used as they are (copied only if unaligned or byte-swapped);
    integers and bools are promoted to float64 (like SciPy); float16 is computed in float32
    and the result returned as float16.
    """
    a = x if type(x) is np.ndarray else np.asarray(x)
    dt = a.dtype
    if dt is F32 or dt is F64:
        if not a.flags.aligned:
            a = a.copy()
        return a, dt
    kind = dt.kind
    if kind == "f":
        if dt.itemsize == 2:
            return a.astype(F32), F16
        if dt.itemsize in (4, 8):
            # Byte-swapped, or an equal dtype object that is not the canonical one.
            native = F32 if dt.itemsize == 4 else F64
            a = a.view(native) if dt.isnative else a.astype(native)
            if not a.flags.aligned:
                a = a.copy()
            return a, native
        raise TypeError(
            f"{name} has dtype {dt}, which logitkit does not compute in; "
            f"convert it with {name}.astype(np.float64)"
        )
    if kind in "biu":
        return a.astype(F64), F64
    if kind == "c":
        raise TypeError(f"{name} is complex ({dt}); logitkit supports only real input")
    raise TypeError(f"{name} must be a real numeric array, got dtype {dt}")


def normalize_axis(axis: Any, ndim: int) -> int:
    """Return ``axis`` as an index in ``[0, ndim)``, or raise ``AxisError``."""
    if type(axis) is not int:
        try:
            axis = operator.index(axis)
        except TypeError:
            raise TypeError(f"axis must be an integer, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise AxisError(axis, ndim)
    return int(axis + ndim if axis < 0 else axis)


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype[Any], name: str = "out") -> None:
    """Raise unless ``out`` is a writeable array of exactly ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected shape {shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected dtype {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")


def direct_out(out: NDArray[Any], a: NDArray[Any]) -> bool:
    """Whether the core may write straight into ``out`` while reading ``a``.

    It may when ``out`` is aligned, native and either is ``a`` exactly (in place: every
    kernel reads an element before writing the same element) or does not overlap ``a``.
    Partial overlap, or an unaligned ``out``, goes through a temporary.
    """
    if out.dtype is not a.dtype and out.dtype != a.dtype:
        return False
    if not out.flags.aligned or not out.dtype.isnative:
        return False
    if out is a or not np.may_share_memory(out, a):
        return True
    return bool(
        out.__array_interface__["data"][0] == a.__array_interface__["data"][0]
        and out.strides == a.strides
    )
