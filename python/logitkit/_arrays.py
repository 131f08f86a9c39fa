"""Argument handling shared by the public functions: dtypes, axes and ``out=`` arrays.

The compiled core takes only aligned, native-endian float32/float64/float16/bfloat16
arrays with a valid axis and a correctly shaped ``out``; everything else is turned into
that here, or rejected with an exception that says what was expected.

bfloat16 is ``ml_dtypes.bfloat16`` (the NumPy dtype JAX and PyTorch interoperate with). It
is recognised by its dtype's name and type code, without importing ml_dtypes: an array of
it can only exist where ml_dtypes is already imported.
"""

from __future__ import annotations

import operator
from typing import Any, TypeGuard

import numpy as np
from numpy.exceptions import AxisError
from numpy.typing import ArrayLike, NDArray

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)


def is_bfloat16(dt: np.dtype[Any]) -> bool:
    """Whether ``dt`` is ml_dtypes.bfloat16."""
    char: str = dt.char  # ml_dtypes' code, which NumPy's stubs do not list
    return dt.kind == "V" and char == "E" and dt.itemsize == 2 and dt.name == "bfloat16"


def is_half(dt: np.dtype[Any]) -> bool:
    """Whether ``dt`` is one of the 16-bit formats (float16, bfloat16)."""
    return dt.itemsize == 2 and (dt.kind == "f" or is_bfloat16(dt))


def compute_dtype(dt: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype the kernels compute in for arrays of ``dt``: float32 for 16-bit formats."""
    return F32 if dt.itemsize == 2 else dt


def as_float_array(
    x: ArrayLike, name: str = "x", native16: bool = True
) -> tuple[NDArray[Any], np.dtype[Any]]:
    """Return ``(a, result_dtype)``: ``a`` is what the core computes on.

    float32 and float64 are used as they are (copied only if unaligned or byte-swapped);
    integers and bools are promoted to float64 (like SciPy). float16 and bfloat16 are
    passed as they are, as every kernel reads them (``native16``, the default: they widen
    each element to float32 in registers and round the results back); otherwise they are
    computed in float32 and the result returned in their dtype.
    """
    a = x if type(x) is np.ndarray else np.asarray(x)
    dt = a.dtype
    if dt is F32 or dt is F64:
        if not a.flags.aligned:
            a = a.copy()
        return a, dt
    kind = dt.kind
    if is_half(dt) and dt.isnative:
        if not native16:
            return a.astype(F32), dt
        if not a.flags.aligned:
            a = a.copy()
        return a, dt
    if kind == "f":
        if dt.itemsize == 2:
            a = a.astype(F16)  # byte-swapped float16
            return (a, F16) if native16 else (a.astype(F32), F16)
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


def widen_for(a: NDArray[Any], *others: Any) -> NDArray[Any]:
    """``a`` as float32 where it is 16-bit and one of ``others`` (targets, weights) holds
    wider floats, or the other 16-bit format: rounding those to ``a``'s format first would
    cost the result precision (a float32 target of a float16 logit of 27232 moves the
    loss by 2 units; a float16 target of bfloat16 logits loses 3 bits, a bfloat16 weight
    of float16 logits its range), so the kernels then compute from float32 copies; the
    result keeps the 16-bit dtype."""
    if a.dtype.itemsize != 2:
        return a
    a_bf16 = is_bfloat16(a.dtype)
    for o in others:
        dt = getattr(o, "dtype", None)
        if dt is None:
            continue
        if dt.kind == "f" and dt.itemsize > 2:
            return a.astype(F32)
        if is_half(dt) and is_bfloat16(dt) != a_bf16:
            return a.astype(F32)
    return a


_BFLOAT16_MAX = 3.3895313892515355e38


def dtype_max(dt: np.dtype[Any]) -> float:
    """The largest finite value of a float dtype (np.finfo does not know bfloat16)."""
    return _BFLOAT16_MAX if is_bfloat16(dt) else float(np.finfo(dt).max)


def as_dtype(x: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """``x`` converted to ``dtype`` (float to a 16-bit format: overflow is inf, quietly)."""
    if x.dtype == dtype:
        return x
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def normalize_axis(axis: Any, ndim: int) -> int:
    """Return ``axis`` as an index in ``[0, ndim)``, or raise ``AxisError``."""
    if type(axis) is int and -ndim <= axis < ndim:
        return axis + ndim if axis < 0 else axis
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
    out_dtype = out.dtype
    if out_dtype is not dtype and out_dtype != dtype:  # (`is`: 15 ns, `!=`: 60 ns)
        raise TypeError(f"{name} has dtype {out.dtype}, expected dtype {dtype}")
    flags = out.flags
    if not flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not (flags.c_contiguous or flags.f_contiguous) and self_overlapping(out):
        raise ValueError(
            f"{name} overlaps itself: some of its elements share memory (a view made with "
            "np.lib.stride_tricks.as_strided or a zero stride), so it cannot hold a result"
        )


def self_overlapping(a: NDArray[Any]) -> bool:
    """Whether two elements of ``a`` may share memory (e.g. an ``as_strided`` view).

    A sufficient test for disjointness: sorted by size, each stride must step past
    everything the smaller dimensions span. Views NumPy makes by slicing, transposing or
    reshaping always pass; only hand-made strides can fail it.
    """
    flags = a.flags
    if flags.c_contiguous or flags.f_contiguous or a.size <= 1:
        return False  # the common case, without the sort below (~0.8 us per call)
    extent = a.itemsize
    for stride, n in sorted((abs(s), n) for s, n in zip(a.strides, a.shape) if n > 1):
        if stride < extent:
            return True
        extent += stride * (n - 1)
    return False


def plain_out(x: Any, out: Any) -> TypeGuard[NDArray[Any]]:
    """Whether ``out`` is the common case of an ``out=`` for input ``x``, needing no checks.

    That is: both are exactly ``np.ndarray``; ``x`` is float32 or float64 (the canonical
    dtype objects, so native) and aligned; ``out`` has the very same dtype and ``x``'s
    shape, is writeable, aligned and contiguous (so no two of its elements overlap), and
    is either ``x`` itself or shares no memory with it. Then the core may compute ``x``
    straight into ``out``, as :func:`as_float_array`, :func:`check_out` and
    :func:`direct_out` would conclude (in ~0.25 us instead of ~0.7 us). False says only
    that those must decide (and raise, or copy).
    """
    if type(x) is not np.ndarray or type(out) is not np.ndarray:
        return False
    dt = x.dtype
    if (dt is not F32 and dt is not F64) or out.dtype is not dt or out.shape != x.shape:
        return False
    x_flags = x.flags
    flags = out.flags
    # behaved: aligned and writeable. (Not flags.farray: NumPy sets it for any behaved
    # array that is not C-contiguous, even a self-overlapping one.)
    if not (x_flags.aligned and flags.behaved and (flags.c_contiguous or flags.f_contiguous)):
        return False
    # Two distinct arrays that both own their data share none of it.
    return (
        out is x
        or (x_flags.owndata and flags.owndata)
        or not np.may_share_memory(out, x)
    )


def overlaps_any(out: NDArray[Any], inputs: tuple[NDArray[Any] | None, ...]) -> bool:
    """Whether ``out`` may share memory with any of ``inputs`` (``None`` entries skipped)."""
    # Two distinct arrays that both own their data share none of it, which is cheaper to
    # see (30 ns) than np.may_share_memory is to call (180 ns).
    own = out.flags.owndata
    for b in inputs:
        if b is None or (own and b is not out and b.flags.owndata):
            continue
        if np.may_share_memory(out, b):
            return True
    return False


def direct_out(out: NDArray[Any], a: NDArray[Any], *inputs: NDArray[Any] | None) -> bool:
    """Whether the core may write straight into ``out`` while reading ``a`` and ``inputs``.

    It may when ``out`` is aligned, native, shares no memory with any of ``inputs`` (targets,
    labels, weights: read after outputs are written) and either is ``a`` exactly (in place:
    every kernel reads an element of ``a`` before writing the same element) or does not
    overlap ``a``. Anything else goes through a temporary.
    """
    out_dtype = out.dtype
    if out_dtype is not a.dtype and out_dtype != a.dtype:
        return False
    flags = out.flags
    if not flags.aligned or not out_dtype.isnative:
        return False
    if overlaps_any(out, inputs):
        return False
    # (owndata: as in overlaps_any.)
    if out is a or (flags.owndata and a.flags.owndata) or not np.may_share_memory(out, a):
        return True
    return bool(
        out.__array_interface__["data"][0] == a.__array_interface__["data"][0]
        and out.strides == a.strides
    )


def cast_result(a: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """``a`` in the result dtype (16-bit results of functions without 16-bit kernels are
    computed in float32).

    A value beyond float16's range becomes +-inf, which is what the result is in float16;
    NumPy's "overflow encountered in cast" warning says nothing the caller can act on.
    """
    if a.dtype == dtype:
        return a
    with np.errstate(over="ignore"):
        return a.astype(dtype)


def copy_result(out: NDArray[Any], result: NDArray[Any]) -> None:
    """Copy a computed result into the caller's ``out`` (casting as :func:`cast_result`)."""
    with np.errstate(over="ignore"):
        np.copyto(out, result, casting="same_kind")


def scratch_like(out: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """A fresh array of ``dtype`` with ``out``'s shape and strides (in elements).

    A result computed into it and copied to ``out`` is bit-identical to one computed into
    ``out`` directly: which kernel runs (rows, columns, gathered rows) depends on the
    output's layout, and the kernels round differently. (Alignment does not matter.)
    Falls back to ``np.empty_like(out)`` (same stride order) where ``out``'s strides are not
    whole elements or span more than four times its size.
    """
    dtype = np.dtype(dtype)
    if out.size <= 1 or any(st % out.itemsize for st in out.strides):
        return np.empty_like(out, dtype=dtype)
    strides = [st // out.itemsize * dtype.itemsize for st in out.strides]
    low = sum(st * (n - 1) for st, n in zip(strides, out.shape) if st < 0)
    high = sum(st * (n - 1) for st, n in zip(strides, out.shape) if st > 0)
    span = (high - low) // dtype.itemsize + 1
    if span > 4 * out.size:
        return np.empty_like(out, dtype=dtype)
    base = np.empty(span, dtype=dtype)
    start = base[-low // dtype.itemsize :]
    view: NDArray[Any] = np.lib.stride_tricks.as_strided(
        start, shape=out.shape, strides=strides, writeable=True
    )
    return view
