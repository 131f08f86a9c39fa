"""A drop-in replacement for five functions of :mod:`scipy.special`, computed by logitkit.

``from logitkit import special`` can stand in for ``from scipy import special`` in code
that uses :func:`softmax`, :func:`log_softmax`, :func:`logsumexp`, :func:`expit` and
:func:`log_expit` on real NumPy input: the signatures, defaults (``axis=None`` is the
whole array, as in SciPy), result dtypes, result types (NumPy scalar or array), special
values (``inf``, ``nan``, the signs of ``return_sign``) and exceptions are SciPy's
(1.17 and 1.18; where they differ, those of the installed SciPy, see below); the results
agree to rounding, and are computed by logitkit's SIMD kernels wherever a kernel applies.

Differences from SciPy, all deliberate:

- Complex input raises :class:`TypeError` (SciPy's softmax, log_softmax and logsumexp
  accept it). logitkit computes only real values.
- Only NumPy input: SciPy dispatches other array libraries (CuPy, PyTorch, JAX, ...)
  through the array API, and :func:`expit` / :func:`log_expit`, being ufuncs there, also
  dispatch ``__array_ufunc__`` (pandas, xarray, dask). Here any input is converted with
  :func:`numpy.asarray` and a plain ndarray (or NumPy scalar) is returned; ndarray
  subclasses (masked arrays: their mask is ignored) are not preserved.
- Unsigned (and very wide-ranged signed) integer input gives the correct result where
  SciPy's :func:`scipy.special.softmax` and :func:`scipy.special.log_softmax` compute
  ``x - max(x)`` in the integer dtype, which wraps around; the result dtype is the same.
- :func:`expit` and :func:`log_expit` are functions, not :class:`numpy.ufunc` objects:
  they take the ufunc call arguments ``out``, ``where``, ``casting``, ``order``,
  ``dtype``, ``subok`` and ``signature``, but have no ufunc methods or attributes
  (``reduce``, ``accumulate``, ``outer``, ``at``, ``nin``, ``types``, ...), and ``where``
  without ``out`` does not emit NumPy's "uninitialized memory" warning.
- Two SciPy 1.17 bugs are not reproduced: :func:`scipy.special.logsumexp` of an empty
  array over a tuple of two or more axes (or ``axis=None`` with two or more
  dimensions) raises IndexError, and over ``axis=()`` returns shape ``(1,)``; here the
  result is ``-inf`` of the reduced shape. SciPy's ufuncs put ``where=`` results in the
  wrong places (scipy/scipy#25127); here ``where`` follows NumPy's rules.
- :func:`softmax` entries below the normal range (subnormal numbers: below about
  1e-308 in float64, 1e-38 in float32) come out as 0 from logitkit's kernel, where SciPy
  gives the subnormal number. (:func:`log_expit` is not flushed: for ``x`` above about
  708 (float64) or 87 (float32) it gives the subnormal ``-exp(-x)`` as SciPy does, and
  -0.0 for ``x = inf``.)
- :func:`logsumexp` and :func:`log_softmax` keep the tail next to the largest term, as
  ``log1p`` of the rest of the sum: ``logsumexp([0, -40])`` is 4.248e-18 as in SciPy, and
  ``log_softmax([0, -40])[0]`` is -4.248e-18 where SciPy (1.17) gives 0
  (scipy/scipy#19521).

How the work is done: one axis goes straight to logitkit's kernel; several axes are
moved to the end and merged, ``axis=None`` is a ravel. float16 (and 8-bit integer) and
bfloat16 input to softmax, log_softmax and logsumexp is read in 16 bits, computed in
float32 registers and returned in SciPy's dtype (bfloat16 for bfloat16; SciPy's
logsumexp rejects it). :func:`expit` and :func:`log_expit` pick the loop (float32, float64 or long
double) that SciPy's ufuncs would, which depends on SciPy's version: SciPy 1.18 lists
its float32 loop first, so float16, booleans and integers of up to 16 bits give float32
(before: float64). The installed SciPy decides (its ``expit.types`` if it is imported,
else its version number), without importing it; without SciPy, the newest rules apply.
Long double
input, and :func:`logsumexp` with weights ``b``, are computed with NumPy, by SciPy's
formulas. For tiny inputs (below about 100 elements) the Python overhead makes
:func:`expit` and :func:`log_expit` slower than SciPy's ufuncs; the reductions are
faster from a few elements.
"""

# The first overload of softmax, log_softmax, expit and log_expit takes scalars (and
# returns a NumPy scalar), the second any array_like (an array): scalars are array_like
# too, so newer NumPy type stubs make mypy report overload-overlap, though the first match
# wins as intended. Disabled for this module rather than with "type: ignore" comments,
# which --strict flags as unused where the stubs do not report the overlap (NumPy 2.4).
# mypy: disable-error-code="overload-overlap"

from __future__ import annotations

import importlib.metadata
import operator
import sys
from types import EllipsisType
from typing import Any, Callable, Literal, SupportsIndex, TypeVar, Union, overload

import numpy as np
from numpy.exceptions import AxisError
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _binary, _softmax
from ._arrays import cast_result, is_bfloat16

__all__ = ["softmax", "log_softmax", "logsumexp", "expit", "log_expit"]

FloatArray = NDArray[np.floating[Any]]
"""The arrays the functions return: float16, float32, float64 or long double."""
FloatScalar = np.floating[Any]
"""The NumPy scalar returned where SciPy returns one (0-d results)."""
FloatResult = Union[FloatArray, FloatScalar]
"""A reduction's result: a NumPy scalar when it has no dimensions, else an array."""
Axis = Union[SupportsIndex, tuple[SupportsIndex, ...], None]
"""``None`` (every axis), an integer or a tuple of integers."""
ScalarLike = Union[float, int, np.floating[Any], np.integer[Any], np.bool_]
"""Real scalars: the functions return a NumPy scalar for them."""
Casting = Literal["no", "equiv", "safe", "same_kind", "unsafe"]
Order = Literal["K", "A", "C", "F"]

_ArrayT = TypeVar("_ArrayT", bound=NDArray[Any])
_Along = Callable[[NDArray[Any], int], NDArray[Any]]
_Kernel = Callable[..., Any]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_LONG = np.dtype(np.longdouble)
# The types the kernels compute (float16 and bfloat16 read as they are and computed in
# float32 registers). Long double is always computed with NumPy, also where it is the same
# as double (Windows, macOS on arm64), so that its results stay long double, as SciPy's do.
_KERNEL_TYPES: tuple[type[np.floating[Any]], ...] = (np.float16, np.float32, np.float64)


def _kernel_computes(dtype: np.dtype[Any]) -> bool:
    """Whether logitkit's kernels compute results of ``dtype`` (else NumPy does)."""
    return dtype.type in _KERNEL_TYPES or is_bfloat16(dtype)
# scipy.special.expit's loops, in the order NumPy searches them: 'd->d', 'f->f', 'g->g'
# up to SciPy 1.17, 'f->f', 'd->d', 'g->g' from 1.18 (see _ufunc_loops).
_LOOPS_BEFORE_1_18 = (_F64, _F32, _LONG)
_LOOPS_FROM_1_18 = (_F32, _F64, _LONG)
_CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")
_ORDERS = ("K", "A", "C", "F")
_NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"

# The kernels, as untyped callables (the public functions validate and convert).
_lk_softmax: _Kernel = _softmax.softmax
_lk_log_softmax: _Kernel = _softmax.log_softmax
_lk_logsumexp: _Kernel = _softmax.logsumexp
_lk_sigmoid: _Kernel = _binary.sigmoid
_lk_log_sigmoid: _Kernel = _binary.log_sigmoid


def _complex_error(name: str) -> TypeError:
    return TypeError(
        f"complex input is not supported by logitkit.special.{name} "
        "(scipy.special accepts it); logitkit computes only real values"
    )


# ---------------------------------------------------------------------------------------
# axes
# ---------------------------------------------------------------------------------------


def _axis_index(axis: SupportsIndex, ndim: int) -> int:
    i = operator.index(axis)  # TypeError for floats, lists, ... as in NumPy
    if not -ndim <= i < ndim:
        raise AxisError(i, ndim)
    return i + ndim if i < 0 else i


def _normalize_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """``axis`` as a tuple of distinct indices in ``[0, ndim)``, as NumPy reductions do."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        axes = tuple(_axis_index(ax, ndim) for ax in axis)
        if len(set(axes)) != len(axes):
            raise ValueError("duplicate value in 'axis'")
        return axes
    return (_axis_index(axis, ndim),)


def _along_axes(func: _Along, a: NDArray[Any], axes: tuple[int, ...]) -> NDArray[Any]:
    """Apply ``func(array, axis)`` (one integer axis) over the axes ``axes`` of ``a``.

    One axis is passed straight through. Several are moved to the end and merged into
    one (a view when they already are the trailing axes of a C-contiguous array, else a
    copy); every axis (``axis=None``) is a ravel, a view of a C- or F-contiguous array.
    No axis reduces over a length-one axis added at the end. The result is
    ``func``'s along the merged axis: of ``a``'s shape for softmax-like ``func``, of the
    remaining axes' shape for reductions.
    """
    ndim = a.ndim
    if len(axes) == 1:
        return np.asarray(func(a, axes[0]))
    if len(axes) == ndim:
        order: Literal["C", "F"] = (
            "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
        )
        r = np.asarray(func(a.ravel(order=order), 0))
        return r if r.ndim == 0 else r.reshape(a.shape, order=order)
    if not axes:
        return _no_axes(func, a)
    kept = [i for i in range(ndim) if i not in axes]
    perm = kept + sorted(axes)
    moved = a.transpose(perm)
    kept_shape = moved.shape[: len(kept)]
    merged = moved.reshape(kept_shape + (int(np.prod(moved.shape[len(kept) :])),))
    r = np.asarray(func(merged, -1))
    if r.ndim == len(kept):  # a reduction
        return r
    return r.reshape(moved.shape).transpose(np.argsort(perm))


def _no_axes(func: _Along, a: NDArray[Any]) -> NDArray[Any]:
    r = np.asarray(func(a[..., np.newaxis], -1))
    return r[..., 0] if r.ndim == a.ndim + 1 else r


def _check_reducible(shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    """Raise as ``numpy.max`` does for a reduction over an empty axis."""
    if any(shape[i] == 0 for i in axes):
        raise ValueError("zero-size array to reduction operation maximum which has no identity")


# ---------------------------------------------------------------------------------------
# softmax and log_softmax
# ---------------------------------------------------------------------------------------


def _softmax_dtype(dtype: np.dtype[Any], name: str) -> np.dtype[Any]:
    """The dtype of SciPy's result: that of ``np.exp(x - x.max())``."""
    kind = dtype.kind
    if kind == "f" or is_bfloat16(dtype):
        return np.dtype(dtype.type)  # native byte order (bfloat16: as NumPy's exp gives it)
    if kind in "iu":
        # NumPy's exp of an integer array: the smallest float that holds it safely
        # (int8 -> float16, int16 -> float32, wider -> float64).
        return np.result_type(dtype, np.float16)
    if kind == "c":
        raise _complex_error(name)
    if kind == "b":
        raise TypeError(
            f"boolean input is not supported by {name} (scipy.special.{name} computes "
            "x - max(x), and NumPy's boolean subtract, the `-` operator, is not "
            "supported); convert it with x.astype(float)"
        )
    raise TypeError(f"{name} needs a real numeric array, got dtype {dtype}")


def _prepare(
    x: ArrayLike, axis: Axis, name: str
) -> tuple[NDArray[Any], tuple[int, ...], np.dtype[Any]]:
    a = np.asarray(x)
    result_dtype = _softmax_dtype(a.dtype, name)
    if a.ndim == 0 and axis is not None and not isinstance(axis, tuple):
        # NumPy reductions accept axis=0 and axis=-1 for 0-d arrays (but not (0,)).
        if operator.index(axis) in (0, -1):
            axis = ()
    axes = _normalize_axes(axis, a.ndim)
    _check_reducible(a.shape, axes)
    return a, axes, result_dtype


def _finish(r: NDArray[Any], result_dtype: np.dtype[Any]) -> FloatResult:
    if r.dtype.type is not result_dtype.type:
        r = cast_result(r, result_dtype)  # float16 past 65504 is inf, without a warning
    result: FloatResult = r[()] if r.ndim == 0 else r
    return result


def _compute_dtype(result_dtype: np.dtype[Any]) -> np.dtype[Any]:
    # The kernels take the result dtype itself (16-bit results: float16 or 8-bit integer
    # input, bfloat16, are widened in registers and computed in float32, more accurately
    # than SciPy's float16 arithmetic).
    return result_dtype


def _lk_softmax_along(a: NDArray[Any], axis: int) -> NDArray[Any]:
    result: NDArray[Any] = _lk_softmax(a, axis)
    return result


def _lk_log_softmax_along(a: NDArray[Any], axis: int) -> NDArray[Any]:
    """logitkit's log_softmax, with SciPy's values for rows that hold ``+inf``.

    logitkit gives NaN for a whole row that holds ``+inf``; SciPy (which shifts by 0 when
    the maximum is not finite) gives NaN at the ``+inf`` entries and ``-inf`` at the
    others, unless the row also holds a NaN. The check costs one pass over the result
    (its minimum is NaN only if some row is NaN).
    """
    r: NDArray[Any] = np.asarray(_lk_log_softmax(a, axis))
    if r.size == 0 or not np.isnan(np.min(r)):
        return r
    pos = a == np.inf
    fix = pos.any(axis=axis, keepdims=True) & ~np.isnan(a).any(axis=axis, keepdims=True)
    if fix.any():
        fix = np.broadcast_to(fix, a.shape)
        r[fix & pos] = np.nan
        r[fix & ~pos] = -np.inf
    return r


def _numpy_softmax(a: NDArray[Any], axes: tuple[int, ...]) -> NDArray[Any]:
    """SciPy's formula, in NumPy (long double input)."""
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(a - np.max(a, axis=axes, keepdims=True))
        result: NDArray[Any] = np.asarray(e / np.sum(e, axis=axes, keepdims=True))
    return result


def _numpy_log_softmax(a: NDArray[Any], axes: tuple[int, ...]) -> NDArray[Any]:
    """SciPy's formula, in NumPy (long double input), with ``log(total)`` taken as
    ``log1p(total - 1)``, as logitkit's kernels do: the terms at the maximum (exactly 1)
    are counted apart from the others, so that a slice dominated by one entry keeps its
    tail (``log_softmax([0, -40])[0]`` is -4.2e-18, not 0; scipy/scipy#19521)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        a_max = np.max(a, axis=axes, keepdims=True)
        a_max = np.where(np.isfinite(a_max), a_max, 0)
        shifted = a - a_max
        at_max = shifted == 0
        rest = np.sum(np.where(at_max, 0, np.exp(shifted)), axis=axes, keepdims=True)
        count = np.sum(at_max, axis=axes, keepdims=True)
        result: NDArray[Any] = np.asarray(shifted - np.log1p((count - 1) + rest))
    return result


@overload
def softmax(x: ScalarLike, axis: Axis = ...) -> FloatScalar: ...
@overload
def softmax(x: ArrayLike, axis: Axis = ...) -> FloatArray: ...


def softmax(x: ArrayLike, axis: Axis = None) -> FloatResult:
    r"""Compute the softmax function, as :func:`scipy.special.softmax`.

    .. math:: \sigma(x)_j = \frac{e^{x_j - m}}{\sum_k e^{x_k - m}},
              \qquad m = \max_k x_k

    Parameters
    ----------
    x : array_like
        Input array (real).
    axis : int or tuple of ints, optional
        Axis or axes to compute values along. Default is None: softmax over the entire
        array `x`, as in SciPy.

    Returns
    -------
    s : ndarray or scalar
        An array the same shape as `x`, summing to 1 along `axis`; a NumPy scalar if `x`
        is a scalar or 0-d. Its dtype is SciPy's: float16/32/64 and long double stay as
        they are, 8-bit integers give float16, 16-bit float32 and wider float64.

    Raises
    ------
    TypeError
        For complex input (SciPy accepts it; logitkit is real-only), boolean input (as
        in SciPy) and non-numeric input.
    ValueError
        If an axis to normalize over has length 0 (as ``numpy.max`` raises in SciPy).
    numpy.exceptions.AxisError
        For an axis out of range.

    See Also
    --------
    logitkit.softmax : The same along one axis (default the last), with ``out=``.

    Notes
    -----
    One axis is computed by logitkit's kernel in place of SciPy's four NumPy passes;
    several axes are first moved to the end and merged (a copy unless they are the
    trailing axes of a C-contiguous array). float16, bfloat16 and 8-bit integer input
    is computed in float32 registers (SciPy computes float16 in float16, so the results
    are more accurate).
    Special values are SciPy's: ``-inf`` gives probability 0; a slice that holds
    ``+inf`` or NaN, or is all ``-inf``, is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit import special
    >>> x = np.array([[1, 0.5, 0.2, 3],
    ...               [1,  -1,   7, 3],
    ...               [2,  12,  13, 3]])
    >>> float(special.softmax(x).sum())  # over the whole array
    1.0
    >>> special.softmax(x, axis=1).sum(axis=1)
    array([1., 1., 1.])
    >>> special.softmax([1000.0, 1000.0])
    array([0.5, 0.5])
    """
    a, axes, result_dtype = _prepare(x, axis, "softmax")
    if not _kernel_computes(result_dtype):
        return _finish(_numpy_softmax(a, axes), result_dtype)
    a = a.astype(_compute_dtype(result_dtype), copy=False)
    return _finish(_along_axes(_lk_softmax_along, a, axes), result_dtype)


@overload
def log_softmax(x: ScalarLike, axis: Axis = ...) -> FloatScalar: ...
@overload
def log_softmax(x: ArrayLike, axis: Axis = ...) -> FloatArray: ...


def log_softmax(x: ArrayLike, axis: Axis = None) -> FloatResult:
    r"""Compute the logarithm of the softmax function, as :func:`scipy.special.log_softmax`.

    .. math:: \log \sigma(x)_j = (x_j - m) - \log \sum_k e^{x_k - m}

    More accurate than ``np.log(softmax(x))`` where softmax underflows.

    Parameters
    ----------
    x : array_like
        Input array (real).
    axis : int or tuple of ints, optional
        Axis or axes to compute values along. Default is None: the entire array `x`.

    Returns
    -------
    s : ndarray or scalar
        An array with the same shape as `x`, whose exponential sums to 1 along `axis`; a
        NumPy scalar if `x` is a scalar or 0-d. Dtype as for :func:`softmax`.

    Raises
    ------
    TypeError
        For complex, boolean or non-numeric input.
    ValueError
        If an axis to normalize over has length 0.
    numpy.exceptions.AxisError
        For an axis out of range.

    See Also
    --------
    logitkit.log_softmax : The same along one axis (default the last), with ``out=``.

    Notes
    -----
    Special values are SciPy's: ``-inf`` entries stay ``-inf``; a slice that holds NaN,
    or is all ``-inf``, is NaN; a slice that holds ``+inf`` (and no NaN) is NaN at the
    ``+inf`` entries and ``-inf`` elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit import special
    >>> special.log_softmax(np.array([1000.0, 1.0]))
    array([   0., -999.])
    >>> float(special.log_softmax(3.0))
    0.0
    """
    a, axes, result_dtype = _prepare(x, axis, "log_softmax")
    if not _kernel_computes(result_dtype):
        return _finish(_numpy_log_softmax(a, axes), result_dtype)
    a = a.astype(_compute_dtype(result_dtype), copy=False)
    return _finish(_along_axes(_lk_log_softmax_along, a, axes), result_dtype)


# ---------------------------------------------------------------------------------------
# logsumexp
# ---------------------------------------------------------------------------------------


def _logsumexp_dtype(a: ArrayLike, b: ArrayLike | None) -> np.dtype[Any]:
    """SciPy's ``xp_promote(a, b, force_floating=True)`` dtype.

    Sequences are converted to arrays first; Python scalars stay "weak" (NEP 50), so
    ``b=2`` keeps float32 ``a`` float32 but ``b=[1, 2]`` (int64) makes it float64.
    """
    if a is None:
        raise TypeError("logsumexp needs an array, got None")
    args: list[Any] = [np.asarray(v) if np.iterable(v) else v for v in (a, b) if v is not None]
    if not _NUMPY_2:  # follow NEP 50 anyway, as SciPy does
        args = [v.dtype if getattr(v, "size", 0) == 1 else v for v in args]
    # bfloat16 with only weak real Python scalars stays bfloat16, as float16 does. ml_dtypes
    # 0.7 promotes so; older versions (0.5 and 0.6, the newest with free-threaded wheels)
    # make bfloat16 and the weak 1.0 below float64. (np.float64 subclasses float but is not
    # weak: compare the exact types.)
    strong = [v for v in args if type(v) not in (bool, int, float)]
    if strong:
        strong_dtype: np.dtype[Any] | None
        try:
            strong_dtype = np.result_type(*strong)
        except TypeError:
            strong_dtype = None
        if strong_dtype is not None and is_bfloat16(strong_dtype):
            return strong_dtype
    try:
        dtype = np.result_type(*args, 1.0)
    except TypeError:
        # No common dtype (strings, ...): SciPy takes float64 and any floats given, and
        # the conversion to it then fails (or not).
        floats = [v for v in args if np.asarray(v).dtype.kind in "fc"]
        dtype = np.result_type(*floats, np.float64)
    if dtype.kind == "c":
        raise _complex_error("logsumexp")
    if dtype.kind != "f" and not is_bfloat16(dtype):
        raise TypeError(f"logsumexp needs real numeric input, got dtype {dtype}")
    return dtype


def _lk_logsumexp_along(a: NDArray[Any], axis: int) -> NDArray[Any]:
    return np.asarray(_lk_logsumexp(a, axis))


def _sign_of(result: NDArray[Any]) -> NDArray[Any]:
    """``return_sign`` without weights: 1, but 0 where the sum is 0 and NaN where NaN."""
    sgn = np.ones_like(result)
    sgn[result == -np.inf] = 0
    sgn[np.isnan(result)] = np.nan
    return sgn


def _numpy_logsumexp(
    a: NDArray[Any], b: NDArray[Any] | None, axes: tuple[int, ...], return_sign: bool
) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """SciPy's algorithm, in NumPy; results keep the reduced axes (length one).

    The stable sum shifts by the largest ``a`` (weights of zero remove their term, even
    an infinite or NaN one) and adds the terms at the maximum separately:
    ``log1p(s / m) + log|m| + max``, where ``m`` is the sum of the weights at the maximum.
    Where that is not finite (all terms zero or cancelling, ``inf`` or NaN in the input,
    overflow), SciPy's direct ``log(sum(b * exp(a)))`` is used instead, special values
    included.
    """
    dtype = a.dtype
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        masked = a if b is None else np.where(b == 0, dtype.type(-np.inf), a)
        a_max = np.max(masked, axis=axes, keepdims=True)
        at_max = masked == a_max
        rest = np.where(at_max, dtype.type(-np.inf), masked)
        at_max_f = at_max.astype(dtype)
        m = np.sum(at_max_f if b is None else b * at_max_f, axis=axes, keepdims=True, dtype=dtype)
        terms = np.exp(rest - a_max)
        if b is not None:
            terms = b * terms
        s = np.sum(terms, axis=axes, keepdims=True, dtype=dtype)
        s = np.where(s == 0, s, s / m)
        sgn = np.sign(s + 1) * np.sign(m)
        s = np.where(s < -1, -s - 2, s)
        out = np.log1p(s) + np.log(np.abs(m)) + a_max
        if not return_sign:
            out[sgn < 0] = np.nan
        finite = np.isfinite(out)
        if not finite.all():
            direct = np.sum(np.exp(a) if b is None else b * np.exp(a), axis=axes, keepdims=True)
            if return_sign:
                sgn = np.where(finite, sgn, np.sign(direct))
                direct = np.abs(direct)
            out = np.where(finite, out, np.log(direct))
    return out, (sgn if return_sign else None)


@overload
def logsumexp(
    a: ArrayLike,
    axis: None = ...,
    b: ArrayLike | None = ...,
    keepdims: Literal[False] = ...,
    return_sign: Literal[False] = ...,
) -> FloatScalar: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: None = ...,
    b: ArrayLike | None = ...,
    keepdims: Literal[False] = ...,
    *,
    return_sign: Literal[True],
) -> tuple[FloatScalar, FloatScalar]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = ...,
    b: ArrayLike | None = ...,
    *,
    keepdims: Literal[True],
    return_sign: Literal[False] = ...,
) -> FloatArray: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = ...,
    b: ArrayLike | None = ...,
    *,
    keepdims: Literal[True],
    return_sign: Literal[True],
) -> tuple[FloatArray, FloatArray]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = ...,
    b: ArrayLike | None = ...,
    keepdims: bool = ...,
    return_sign: Literal[False] = ...,
) -> FloatResult: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = ...,
    b: ArrayLike | None = ...,
    keepdims: bool = ...,
    *,
    return_sign: Literal[True],
) -> tuple[FloatResult, FloatResult]: ...
@overload
def logsumexp(
    a: ArrayLike,
    axis: Axis = ...,
    b: ArrayLike | None = ...,
    keepdims: bool = ...,
    return_sign: bool = ...,
) -> FloatResult | tuple[FloatResult, FloatResult]: ...


def logsumexp(
    a: ArrayLike,
    axis: Axis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
) -> FloatResult | tuple[FloatResult, FloatResult]:
    r"""Compute the log of the sum of exponentials of input elements, as
    :func:`scipy.special.logsumexp`.

    .. math:: \log \sum_i b_i e^{a_i}

    computed without overflow.

    Parameters
    ----------
    a : array_like
        Input array (real).
    axis : None or int or tuple of ints, optional
        Axis or axes over which the sum is taken. By default `axis` is None, and all
        elements are summed.
    b : array_like, optional
        Scaling factor for ``exp(a)``, of the same shape as `a` or broadcastable with it
        (both are broadcast to their common shape). These values may be negative in order
        to implement subtraction; a weight of 0 removes its term, even where `a` is
        infinite or NaN.
    keepdims : bool, optional
        If True, the reduced axes are left in the result as dimensions of size one.
    return_sign : bool, optional
        If True, return ``(res, sgn)`` with the log of the absolute value of the sum and
        its sign; if False, sums that are negative give NaN.

    Returns
    -------
    res : ndarray or scalar
        ``np.log(np.sum(b * np.exp(a)))`` along `axis`, computed stably; a NumPy scalar
        when it has no dimensions. Its dtype is SciPy's: that of `a` and `b` promoted
        together (NEP 50: Python scalars do not widen) and made floating (integers and
        booleans give float64).
    sgn : ndarray or scalar
        Only with ``return_sign=True``: the sign of the sum, +1, 0 or -1 (NaN for a NaN
        result), of `res`'s dtype.

    Raises
    ------
    TypeError
        For complex `a` or `b` (SciPy accepts them; logitkit is real-only) and
        non-numeric input.
    ValueError
        If `a` and `b` do not broadcast, or `axis` repeats an axis.
    numpy.exceptions.AxisError
        For an axis out of range (`a` of fewer than one dimension counts as 1-D, as in
        SciPy).

    See Also
    --------
    logitkit.logsumexp : The same along one axis (default the last), with ``out=``.

    Notes
    -----
    Without `b`, logitkit's kernel does the work for float16/32/64, bfloat16 and integer
    input (16-bit input in float32 registers). With `b`, SciPy's algorithm runs in NumPy: the largest term is
    factored out and the rest summed with ``log1p`` (see ``_numpy_logsumexp``).

    Special values are SciPy's: an empty reduction is ``-inf`` (with sign -1); an all
    ``-inf`` slice, or weights that are all 0 or cancel exactly, give ``-inf`` (sign 0);
    ``+inf`` gives ``+inf``; NaN gives NaN (sign NaN). Where SciPy falls back to its
    direct formula, so does this: a weight of 0 on an ``a`` whose ``exp`` overflows gives
    NaN there (``0 * inf``), as in SciPy.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit import special
    >>> a = np.arange(10)
    >>> float(special.logsumexp(a))
    9.45862974442671
    >>> b = np.arange(10, 0, -1)
    >>> float(special.logsumexp(a, b=b))
    9.917017853303467
    >>> res, sgn = special.logsumexp([1, 2], b=[1, -1], return_sign=True)
    >>> float(res), float(sgn)
    (1.5413248546129181, -1.0)
    >>> float(special.logsumexp([1, 2], b=[1, -1]))  # a negative sum
    nan
    """
    dtype = _logsumexp_dtype(a, b)
    arr = np.asarray(a, dtype=dtype)
    weights = None
    if b is not None:
        weights = np.asarray(b, dtype=dtype)
        if weights.shape != arr.shape:
            try:
                shape = np.broadcast_shapes(arr.shape, weights.shape)
            except ValueError as e:
                raise ValueError("Array shapes are incompatible for broadcasting.") from e
            arr = np.broadcast_to(arr, shape)
            weights = np.broadcast_to(weights, shape)
        weights = np.atleast_1d(weights)
    arr = np.atleast_1d(arr)
    axes = _normalize_axes(axis, arr.ndim)
    kept_shape = tuple(1 if i in axes else n for i, n in enumerate(arr.shape))

    sgn: NDArray[Any] | None
    if arr.size == 0:
        out: NDArray[Any] = np.full(kept_shape, -np.inf, dtype=dtype)
        sgn = np.full(kept_shape, -1.0, dtype=dtype) if return_sign else None
    elif weights is None and _kernel_computes(dtype):
        out = _along_axes(_lk_logsumexp_along, arr, axes).reshape(kept_shape)
        sgn = _sign_of(out) if return_sign else None
    else:
        out, sgn = _numpy_logsumexp(arr, weights, axes, return_sign)

    if not keepdims:
        out = out.reshape([n for i, n in enumerate(arr.shape) if i not in axes])
    res: FloatResult = out[()] if out.ndim == 0 else out
    if sgn is None:
        return res
    sgn = sgn.reshape(out.shape)
    sign: FloatResult = sgn[()] if sgn.ndim == 0 else sgn
    return res, sign


# ---------------------------------------------------------------------------------------
# expit and log_expit: ufuncs in SciPy
# ---------------------------------------------------------------------------------------


def _signature_dtype(signature: Any, name: str) -> np.dtype[Any] | None:
    """The loop dtype a ufunc ``signature`` names ('d->d', 'f', (None, 'f'), ...)."""
    one_type = TypeError("Use `dtype` or  fill the tuple with more than one 'None'.")
    if isinstance(signature, str):
        if "->" not in signature:
            if len(signature) == 1:
                raise one_type
            entries: list[Any] = [None]
        else:
            entries = signature.split("->")
        if len(entries) != 2 or any(len(e) != 1 for e in entries):
            raise ValueError(
                f"a type-string for {name}, 1 typecode(s) before and 1 after the -> sign"
            )
    elif isinstance(signature, tuple):
        if len(signature) == 1:
            raise one_type
        if len(signature) != 2:
            raise ValueError(f"a type-tuple must be specified of length 2 for ufunc {name!r}")
        entries = list(signature)
    else:
        raise TypeError("the signature object to ufunc must be a string or a tuple.")
    try:
        dtypes: list[np.dtype[Any]] = [np.dtype(d) for d in entries if d is not None]
    except TypeError:
        raise ValueError("Invalid data-type for array") from None
    if not dtypes:
        return None
    if any(d != dtypes[0] for d in dtypes):
        raise TypeError(
            f"No loop matching the specified signature and casting was found for ufunc {name}"
        )
    return dtypes[0]


_ufunc_loops_found: tuple[np.dtype[Any], ...] | None = None


def _ufunc_loops() -> tuple[np.dtype[Any], ...]:
    """The loops of the installed SciPy's ``expit`` / ``log_expit``, in search order
    (found on the first call)."""
    global _ufunc_loops_found
    if _ufunc_loops_found is None:
        _ufunc_loops_found = _find_ufunc_loops()
    return _ufunc_loops_found


def _find_ufunc_loops() -> tuple[np.dtype[Any], ...]:
    """The loops of the installed SciPy's ``expit`` / ``log_expit``, in search order.

    From ``scipy.special.expit.types`` when SciPy is already imported (logitkit does not
    import it: that would cost every ``import logitkit.special`` SciPy's import time),
    else from SciPy's version number; without SciPy, the newest rules.
    """
    scipy_special = sys.modules.get("scipy.special")
    types = getattr(getattr(scipy_special, "expit", None), "types", None)
    if isinstance(types, list) and types:
        try:
            return tuple(np.dtype(t.split("->")[0]) for t in types)
        except TypeError:
            pass
    try:
        version = importlib.metadata.version("scipy")
    except importlib.metadata.PackageNotFoundError:
        return _LOOPS_FROM_1_18
    try:
        old = np.lib.NumpyVersion(version) < "1.18.0"
    except ValueError:  # a version string NumpyVersion does not parse
        return _LOOPS_FROM_1_18
    return _LOOPS_BEFORE_1_18 if old else _LOOPS_FROM_1_18


def _loop_dtype(
    xdt: np.dtype[Any], fixed: np.dtype[Any] | None, casting: Casting, name: str
) -> np.dtype[Any]:
    """The inner loop NumPy would pick for SciPy's ufunc (loops: _ufunc_loops())."""
    if fixed is not None:
        loop = next((d for d in _ufunc_loops() if d.type is fixed.type), None)
        if loop is None:
            raise TypeError(
                f"No loop matching the specified signature and casting was found for ufunc {name}"
            )
    elif xdt.kind == "c":
        raise _complex_error(name)
    else:
        # An exact match first, then the first loop the input casts to safely.
        loop = next((d for d in _ufunc_loops() if d.type is xdt.type), None)
        if loop is None:
            loop = next((d for d in _ufunc_loops() if np.can_cast(xdt, d, "safe")), None)
        if loop is None:
            raise TypeError(
                f"ufunc {name!r} not supported for the input types, and the inputs could "
                "not be safely coerced to any supported types according to the casting "
                "rule ''safe''"
            )
    if not np.can_cast(xdt, loop, casting):
        raise TypeError(
            f"Cannot cast ufunc {name!r} input from {xdt!r} to {loop!r} with casting "
            f"rule {casting!r}"
        )
    return loop


def _numpy_expit(x: NDArray[Any]) -> NDArray[Any]:
    """SciPy's long double expit, ``1 / (1 + exp(-x))``."""
    with np.errstate(over="ignore"):
        result: NDArray[Any] = np.asarray(1 / (1 + np.exp(-x)))
    return result


def _numpy_log_expit(x: NDArray[Any]) -> NDArray[Any]:
    """SciPy's long double log_expit: ``x - log1p(exp(x))`` below 0, else ``-log1p(exp(-x))``."""
    with np.errstate(over="ignore", invalid="ignore"):
        neg = x < 0
        t = np.exp(np.where(neg, x, -x))
        result: NDArray[Any] = np.asarray(np.where(neg, x - np.log1p(t), -np.log1p(t)))
    return result


def _new_like(template: NDArray[Any], dtype: np.dtype[Any], order: Order) -> NDArray[Any]:
    """An uninitialized result with the memory layout a ufunc would allocate.

    NumPy's iterator decides it (``numpy.empty_like`` differs for broadcast input).
    """
    it = np.nditer(
        [template, None],
        flags=["zerosize_ok"],
        op_flags=[["readonly"], ["writeonly", "allocate"]],
        op_dtypes=[None, dtype],
        order=order,
    )
    result: NDArray[Any] = it.operands[1]
    return result


def _compute_into(kernel: _Kernel, src: NDArray[Any], dst: NDArray[Any]) -> None:
    """``dst[...] = kernel(src)`` for ``src`` and ``dst`` of the same shape and dtype."""
    if dst.flags.c_contiguous:
        kernel(src, out=dst)
    elif dst.flags.f_contiguous:
        kernel(src.T, out=dst.T)
    else:
        np.copyto(dst, kernel(src))


def _elementwise(
    name: str,
    kernel: _Kernel,
    numpy_impl: Callable[[NDArray[Any]], NDArray[Any]],
    x: ArrayLike,
    out: Any,
    where: ArrayLike,
    casting: Casting,
    order: Order,
    dtype: DTypeLike | None,
    subok: bool,
    signature: Any,
) -> Any:
    if (
        out is None
        and where is True
        and dtype is None
        and signature is None
        and casting == "same_kind"
        and order == "K"
    ):
        # The common call: float32/float64 input, a new C-ordered result (or a scalar).
        xa = x if type(x) is np.ndarray else np.asarray(x)
        if (xa.dtype is _F64 or xa.dtype is _F32) and (xa.ndim < 2 or xa.flags.c_contiguous):
            return kernel(xa)
    if casting not in _CASTINGS:
        raise ValueError(
            f"casting must be one of 'no', 'equiv', 'safe', 'same_kind', or 'unsafe' "
            f"(got {casting!r})"
        )
    if order not in _ORDERS:
        raise ValueError(f"order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    keep_array = out is Ellipsis
    if keep_array:
        out = None
    elif isinstance(out, tuple):
        if len(out) != 1:
            raise ValueError("The 'out' tuple must have exactly one entry per ufunc output")
        out = out[0]
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError("return arrays must be of ArrayType")
        if not out.flags.writeable:
            raise ValueError("output array is read-only")
    if signature is not None and dtype is not None:
        raise TypeError("cannot specify both 'signature' and 'dtype'")
    fixed = (
        _signature_dtype(signature, name)
        if signature is not None
        else (np.dtype(dtype) if dtype is not None else None)
    )

    xa = np.asarray(x)
    loop = _loop_dtype(xa.dtype, fixed, casting, name)
    if out is not None and not np.can_cast(loop, out.dtype, casting):
        raise TypeError(
            f"Cannot cast ufunc {name!r} output from {loop!r} to {out.dtype!r} with "
            f"casting rule {casting!r}"
        )
    src = xa.astype(loop, copy=False)
    use_kernel = loop.type in _KERNEL_TYPES

    def compute(s: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(kernel(s)) if use_kernel else numpy_impl(s)

    mask = None if where is True else np.asarray(where, dtype=bool)
    shapes = [src.shape] + ([] if mask is None else [mask.shape])
    if out is not None:
        shape = np.broadcast_shapes(*shapes, out.shape)
        if shape != out.shape:
            raise ValueError(
                f"non-broadcastable output operand with shape {out.shape} doesn't match "
                f"the broadcast shape {shape}"
            )
        if mask is None and out.dtype == loop and src.shape == out.shape and use_kernel:
            _compute_into(kernel, src, out)
        else:
            np.copyto(out, compute(src), casting="unsafe", where=True if mask is None else mask)
        return out

    shape = np.broadcast_shapes(*shapes)
    if mask is None and src.shape == shape:
        if use_kernel and order in ("K", "A") and (src.flags.c_contiguous or src.ndim < 2):
            result = np.asarray(kernel(src))  # the common case: a new C-contiguous array
        else:
            result = _new_like(src, loop, order)
            if use_kernel:
                _compute_into(kernel, src, result)
            else:
                np.copyto(result, numpy_impl(src))
    else:
        # NumPy leaves the output uninitialized where `where` is False.
        result = _new_like(np.broadcast_to(src, shape), loop, order)
        np.copyto(result, compute(src), where=True if mask is None else mask)
    if result.ndim == 0 and not keep_array:
        return result[()]
    return result


@overload
def expit(
    x: ScalarLike,
    /,
    out: None = ...,
    *,
    where: ArrayLike = ...,
    casting: Casting = ...,
    order: Order = ...,
    dtype: DTypeLike | None = ...,
    subok: bool = ...,
    signature: str | tuple[DTypeLike | None, ...] | None = ...,
) -> FloatScalar: ...
@overload
def expit(
    x: ArrayLike,
    /,
    out: None | EllipsisType = ...,
    *,
    where: ArrayLike = ...,
    casting: Casting = ...,
    order: Order = ...,
    dtype: DTypeLike | None = ...,
    subok: bool = ...,
    signature: str | tuple[DTypeLike | None, ...] | None = ...,
) -> FloatArray: ...
@overload
def expit(
    x: ArrayLike,
    /,
    out: _ArrayT | tuple[_ArrayT],
    *,
    where: ArrayLike = ...,
    casting: Casting = ...,
    order: Order = ...,
    dtype: DTypeLike | None = ...,
    subok: bool = ...,
    signature: str | tuple[DTypeLike | None, ...] | None = ...,
) -> _ArrayT: ...


def expit(
    x: ArrayLike,
    /,
    out: NDArray[Any] | tuple[NDArray[Any] | None] | EllipsisType | None = None,
    *,
    where: ArrayLike = True,
    casting: Casting = "same_kind",
    order: Order = "K",
    dtype: DTypeLike | None = None,
    subok: bool = True,
    signature: str | tuple[DTypeLike | None, ...] | None = None,
) -> Any:
    r"""The logistic sigmoid, elementwise, as the ufunc :data:`scipy.special.expit`.

    .. math:: \operatorname{expit}(x) = \frac{1}{1 + e^{-x}}

    the inverse of the logit function.

    Parameters
    ----------
    x : array_like
        The input (real), positional only as for a ufunc.
    out : ndarray, tuple of one ndarray, None or Ellipsis, optional
        Where to put the result (positional or keyword): an array that `x` (and `where`)
        broadcast to, of a dtype the result can be cast to under `casting` (it may be
        `x`). ``out=...`` returns a 0-d array rather than a scalar for 0-d input.
    where : array_like of bool, optional
        Compute only where True; elsewhere `out` keeps its value (without `out`, the
        result there is uninitialized).
    casting : {'no', 'equiv', 'safe', 'same_kind', 'unsafe'}, optional
        The casting allowed from `x` to the loop dtype and from it to `out`.
    order : {'K', 'A', 'C', 'F'}, optional
        The memory layout of a newly allocated result (default: like `x`).
    dtype : data-type, optional
        The dtype to compute and return in: float32, float64 or long double.
    subok : bool, optional
        Accepted for compatibility; subclasses are never preserved (see the module
        notes).
    signature : str or tuple, optional
        The loop to use, as for a ufunc: ``'f->f'``, ``'d'``, ``(None, 'f')``, ...

    Returns
    -------
    ndarray or scalar
        The sigmoid of `x` (or `out`); a NumPy scalar for scalar or 0-d `x`. The dtype is
        that of the installed SciPy (see the module notes): float32, float64 and long
        double stay; float16, booleans and integers of up to 16 bits give float32 with
        SciPy 1.18 (float64 with 1.17 and older); wider integers float64.

    Raises
    ------
    TypeError
        For complex input (complex is not supported, as in SciPy) and inputs or outputs
        that do not cast under `casting`.

    See Also
    --------
    logitkit.sigmoid : The same, keeping float16 as float16.

    Notes
    -----
    Not supported, unlike a ufunc: the ufunc methods and attributes (``expit.reduce``,
    ``expit.types``, ...), ``__array_ufunc__`` dispatch and subclass preservation; the
    warning NumPy gives for `where` without `out` is not emitted.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit import special
    >>> special.expit([-np.inf, -1.5, 0, 1.5, np.inf])
    array([0.        , 0.18242552, 0.5       , 0.81757448, 1.        ])
    >>> out = np.zeros(3, dtype=np.float32)
    >>> special.expit(np.array([0.0, 1.0, 2.0]), out=out) is out
    True
    """
    return _elementwise(
        "expit", _lk_sigmoid, _numpy_expit, x, out, where, casting, order, dtype, subok, signature
    )


@overload
def log_expit(
    x: ScalarLike,
    /,
    out: None = ...,
    *,
    where: ArrayLike = ...,
    casting: Casting = ...,
    order: Order = ...,
    dtype: DTypeLike | None = ...,
    subok: bool = ...,
    signature: str | tuple[DTypeLike | None, ...] | None = ...,
) -> FloatScalar: ...
@overload
def log_expit(
    x: ArrayLike,
    /,
    out: None | EllipsisType = ...,
    *,
    where: ArrayLike = ...,
    casting: Casting = ...,
    order: Order = ...,
    dtype: DTypeLike | None = ...,
    subok: bool = ...,
    signature: str | tuple[DTypeLike | None, ...] | None = ...,
) -> FloatArray: ...
@overload
def log_expit(
    x: ArrayLike,
    /,
    out: _ArrayT | tuple[_ArrayT],
    *,
    where: ArrayLike = ...,
    casting: Casting = ...,
    order: Order = ...,
    dtype: DTypeLike | None = ...,
    subok: bool = ...,
    signature: str | tuple[DTypeLike | None, ...] | None = ...,
) -> _ArrayT: ...


def log_expit(
    x: ArrayLike,
    /,
    out: NDArray[Any] | tuple[NDArray[Any] | None] | EllipsisType | None = None,
    *,
    where: ArrayLike = True,
    casting: Casting = "same_kind",
    order: Order = "K",
    dtype: DTypeLike | None = None,
    subok: bool = True,
    signature: str | tuple[DTypeLike | None, ...] | None = None,
) -> Any:
    r"""The logarithm of the logistic sigmoid, elementwise, as :data:`scipy.special.log_expit`.

    .. math:: \log \operatorname{expit}(x) = \min(x, 0) - \log\bigl(1 + e^{-|x|}\bigr)

    accurate where ``log(expit(x))`` is not: ``log_expit(-1000)`` is -1000 and
    ``log_expit(40)`` about ``-4.2e-18``.

    Parameters
    ----------
    x : array_like
        The input (real), positional only.
    out : ndarray, tuple of one ndarray, None or Ellipsis, optional
        Where to put the result, as for :func:`expit`.
    where : array_like of bool, optional
        Compute only where True, as for :func:`expit`.
    casting : {'no', 'equiv', 'safe', 'same_kind', 'unsafe'}, optional
        The casting allowed, as for :func:`expit`.
    order : {'K', 'A', 'C', 'F'}, optional
        The memory layout of a newly allocated result.
    dtype : data-type, optional
        The dtype to compute and return in: float32, float64 or long double.
    subok : bool, optional
        Accepted for compatibility; subclasses are never preserved.
    signature : str or tuple, optional
        The loop to use, as for a ufunc.

    Returns
    -------
    ndarray or scalar
        ``log(expit(x))`` (or `out`); dtypes as for :func:`expit`.

    Raises
    ------
    TypeError
        For complex input (not supported, as in SciPy) and casts `casting` forbids.

    See Also
    --------
    logitkit.log_sigmoid : The same, keeping float16 as float16.

    Notes
    -----
    The same ufunc features as :func:`expit` are supported. Results are within 1 ulp of
    the exact value (float32: correctly rounded), as SciPy's; below the smallest normal
    number (``x`` above about 708 in float64, 87 in float32) they are the subnormal
    ``-exp(-x)``, as in SciPy.

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit import special
    >>> special.log_expit([-3.0, 0.0, 3.0])
    array([-3.04858735, -0.69314718, -0.04858735])
    >>> float(special.log_expit(-1000.0))
    -1000.0
    """
    return _elementwise(
        "log_expit",
        _lk_log_sigmoid,
        _numpy_log_expit,
        x,
        out,
        where,
        casting,
        order,
        dtype,
        subok,
        signature,
    )
