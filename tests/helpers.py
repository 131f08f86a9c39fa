"""Shared helpers for the logitkit tests: tolerances, ``assert_close``, data and layouts.

Imported by the test modules as ``from helpers import ...`` (``tests/`` is on sys.path,
see conftest.py).
"""

import math
import zlib

import numpy as np

import logitkit
import reference

# ---------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------

FLOAT_DTYPES = [np.float32, np.float64]
"""The dtypes that every numerical test runs in (computed natively)."""

FUNC_NAMES = ["softmax", "log_softmax", "logsumexp"]
"""The part-1 functions; each has a same-named reference in reference.py."""

ELEMENTWISE_FUNCS = ["softmax", "log_softmax"]
"""The functions whose result has the shape of the input (they support out=x)."""


def dtype_id(dtype):
    """A readable pytest id for a dtype: 'float32', '>f4', 'int64', ..."""
    dtype = np.dtype(dtype)
    return dtype.name if dtype.isnative else dtype.str


def result_dtype(dtype):
    """The result dtype of the contract: float16/32/64 keep their dtype, the rest
    (integers, bool) become float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return np.dtype(dtype.newbyteorder("="))
    return np.dtype(np.float64)


def result_shape(func, shape, axis, keepdims=False):
    """Shape of ``func(x, axis)`` for an input of ``shape``."""
    if func != "logsumexp":
        return tuple(shape)
    axis = axis % len(shape)
    if keepdims:
        return tuple(1 if i == axis else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i != axis)


# ---------------------------------------------------------------------------------------
# calling the package and the reference the same way
# ---------------------------------------------------------------------------------------


def call(func, x, axis=-1, **kwargs):
    """``logitkit.<func>(x, axis=axis, **kwargs)``."""
    return getattr(logitkit, func)(x, axis=axis, **kwargs)


def ref(func, x, axis=-1, **kwargs):
    """``reference.<func>(x, axis, **kwargs)`` -- always a float64 array."""
    return np.asarray(getattr(reference, func)(x, axis, **kwargs))


# ---------------------------------------------------------------------------------------
# tolerances and assert_close
# ---------------------------------------------------------------------------------------

# kind "softmax" (probabilities): |a - r| <= rtol * |r|            where |r| >  floor
#                                 |a - r| <= floor + rtol * |r|    where |r| <= floor
# kind "log_softmax"/"logsumexp": |a - r| <= rtol * max(1, |r|)
#
# float32: exp(x - m) with |x - m| up to ~69 (the 1e-30 floor) may lose |x - m| * 2**-24
# in the subtraction, i.e. 4e-6 relative, plus a few ulp in exp and the division.
# float16 results are computed in float32 and rounded once: half an ulp is 2**-11.
# Its floor is the smallest normal float16; below it the spacing is 2**-24 ~ 6e-8.
TOLERANCES = {
    np.dtype(np.float16): {"prob_rtol": 1e-3, "prob_floor": 6.2e-5, "prob_atol": 6e-8,
                           "log_rtol": 1e-3},
    np.dtype(np.float32): {"prob_rtol": 1e-5, "prob_floor": 1e-30, "prob_atol": 1e-30,
                           "log_rtol": 1e-6},
    np.dtype(np.float64): {"prob_rtol": 1e-13, "prob_floor": 1e-300, "prob_atol": 1e-300,
                           "log_rtol": 1e-13},
}

# bfloat16 (ml_dtypes.bfloat16, when installed): float16's tolerances scaled to its
# precision, eps 2**-7 against float16's 2**-10 (rtol 8e-3 = 8 x 1e-3, still at least
# 2 ulp); its floor is its smallest normal, 2**-126 ~ 1.18e-38 (float32's exponent
# range), below which the spacing is 2**-133 ~ 9.2e-41.
try:
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - bfloat16 is optional
    _ml_dtypes = None
if _ml_dtypes is not None:
    TOLERANCES[np.dtype(_ml_dtypes.bfloat16)] = {
        "prob_rtol": 8e-3, "prob_floor": 1.18e-38, "prob_atol": 9.2e-41, "log_rtol": 8e-3}

_KINDS = ("softmax", "log_softmax", "logsumexp")


def tolerance(kind, dtype, ref_values):
    """Allowed absolute error for each element of the float64 ``ref_values``."""
    tol = TOLERANCES[np.dtype(dtype)]
    r = np.abs(np.asarray(ref_values, dtype=np.float64))
    if kind == "softmax":
        rel = tol["prob_rtol"] * r
        return np.where(r > tol["prob_floor"], rel, tol["prob_atol"] + rel)
    if kind in ("log_softmax", "logsumexp"):
        return tol["log_rtol"] * np.maximum(1.0, r)
    raise ValueError(f"unknown kind {kind!r}, expected one of {_KINDS}")


def _describe(where, actual, ref_values, limit=5):
    idx = np.argwhere(where)[:limit]
    lines = [f"  at {tuple(int(i) for i in ix)}: actual={actual[tuple(ix)]!r} "
             f"ref={ref_values[tuple(ix)]!r}" for ix in idx]
    return "\n".join(lines)


def assert_close(actual, ref_values, kind, dtype):
    """Check a logitkit result against the float64 reference.

    - ``actual`` is an ndarray (or NumPy scalar) of exactly ``dtype`` (the expected
      result dtype) and of the reference's shape;
    - NaN exactly where the reference has NaN, +-inf exactly where it has +-inf;
    - every finite element within ``tolerance(kind, dtype, ref)``.
    """
    dtype = np.dtype(dtype)
    # a 0-d result (logsumexp of a 1-D array) may be a NumPy scalar
    assert isinstance(actual, (np.ndarray, np.generic)), (
        f"expected an ndarray, got {type(actual)}")
    actual = np.asarray(actual)
    assert actual.dtype == dtype, f"result dtype {actual.dtype!r}, expected {dtype!r}"
    ref_values = np.asarray(ref_values, dtype=np.float64)
    assert actual.shape == ref_values.shape, (
        f"result shape {actual.shape}, expected {ref_values.shape}")
    a = actual.astype(np.float64)

    nan_a, nan_r = np.isnan(a), np.isnan(ref_values)
    if not np.array_equal(nan_a, nan_r):
        raise AssertionError(
            f"{kind} {dtype}: NaN positions differ "
            f"({int(np.sum(nan_a & ~nan_r))} unexpected NaN, "
            f"{int(np.sum(nan_r & ~nan_a))} missing NaN)\n"
            + _describe(nan_a != nan_r, a, ref_values))

    inf_r = np.isinf(ref_values)
    inf_mismatch = (np.isinf(a) != inf_r) | (inf_r & (a != ref_values))
    if np.any(inf_mismatch):
        raise AssertionError(
            f"{kind} {dtype}: infinities differ at {int(np.sum(inf_mismatch))} positions\n"
            + _describe(inf_mismatch, a, ref_values))

    finite = np.isfinite(ref_values)
    err = np.where(finite, np.abs(a - np.where(finite, ref_values, 0.0)), 0.0)
    tol = np.where(finite, tolerance(kind, dtype, np.where(finite, ref_values, 0.0)), 1.0)
    bad = err > tol
    if np.any(bad):
        worst = np.unravel_index(np.argmax(np.where(bad, err / tol, 0.0)), err.shape)
        raise AssertionError(
            f"{kind} {dtype}: {int(np.sum(bad))} of {a.size} elements out of tolerance; "
            f"worst at {tuple(int(i) for i in worst)}: actual={a[worst]!r} "
            f"ref={ref_values[worst]!r} error={err[worst]:.3g} "
            f"tolerance={tol[worst]:.3g} ({err[worst] / tol[worst]:.3g}x)\n"
            + _describe(bad, a, ref_values))


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------


def rng_for(*parts):
    """A NumPy Generator seeded from the test's parameters (stable across runs)."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


ROW_SCALES = (0.01, 1.0, 4.0, 30.0)
ROW_OFFSETS = (0.0, 5.0, -40.0, 300.0, -7.5)


def random_logits(rng, shape, dtype, axis=-1):
    """Normal random logits where each row (1-D slice along ``axis``) has its own scale
    (0.01: nearly uniform softmax ... 30: a few dominant classes and many probabilities
    below 1e-30) and its own offset."""
    shape = tuple(shape)
    x = rng.standard_normal(shape)
    if x.size:
        axis = axis % len(shape)
        row_shape = tuple(1 if i == axis else n for i, n in enumerate(shape))
        row = np.arange(math.prod(row_shape)).reshape(row_shape)
        scale = np.take(ROW_SCALES, row % len(ROW_SCALES))
        offset = np.take(ROW_OFFSETS, (row // 2) % len(ROW_OFFSETS))
        x = x * scale + offset
    return x.astype(dtype)


# ---------------------------------------------------------------------------------------
# memory layouts
# ---------------------------------------------------------------------------------------

LAYOUTS = ["C", "F", "T", "every_other", "last_step2", "reversed", "reversed_first",
           "moveaxis"]
"""Memory layouts of an array of a given shape, see ``with_layout``."""


def with_layout(values, layout):
    """An array equal to ``values`` (same shape and dtype) with the given memory layout.

    C / F            contiguous copies
    T                ``base.T`` of a C-contiguous base of the reversed shape
    every_other      ``base[::2, ::2, ...]`` -- every axis strided
    last_step2       ``base[..., ::2]`` -- the x[:, ::2] case: last axis strided
    reversed         ``base[::-1, ::-1, ...]`` -- negative strides on every axis
    reversed_first   ``base[::-1]`` -- negative stride on the first axis only
    moveaxis         ``np.moveaxis(base, 0, -1)``: the last axis has the largest stride
    """
    values = np.asarray(values)
    ndim = values.ndim
    # np.array copies: the result never shares memory with ``values``
    if layout == "C":
        out = np.array(values, order="C")
    elif layout == "F":
        out = np.array(values, order="F")
    elif layout == "T":
        out = np.array(values.T, order="C").T
    elif layout == "every_other":
        base = np.full(tuple(2 * n for n in values.shape), np.nan, dtype=values.dtype)
        out = base[(slice(None, None, 2),) * ndim]
        out[...] = values
    elif layout == "last_step2":
        base = np.full(values.shape[:-1] + (2 * values.shape[-1],), np.nan,
                       dtype=values.dtype)
        out = base[..., ::2]
        out[...] = values
    elif layout == "reversed":
        out = np.array(values[(slice(None, None, -1),) * ndim], order="C")
        out = out[(slice(None, None, -1),) * ndim]
    elif layout == "reversed_first":
        out = np.array(values[::-1], order="C")[::-1]
    elif layout == "moveaxis":
        out = np.moveaxis(np.array(np.moveaxis(values, -1, 0), order="C"), 0, -1)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    assert out.shape == values.shape and out.dtype == values.dtype
    assert not np.shares_memory(out, values)
    np.testing.assert_array_equal(out, values)
    return out


def unaligned_copy(values):
    """A copy of ``values`` whose data pointer is odd (offset 1 in a byte buffer)."""
    values = np.ascontiguousarray(values)
    buf = np.zeros(values.nbytes + 1, dtype=np.uint8)
    out = np.ndarray(values.shape, dtype=values.dtype, buffer=buf, offset=1)
    out[...] = values
    assert not out.flags.aligned
    return out
