"""softmax, log_softmax and logsumexp along one axis."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._typing import FloatArray
from ._workers import resolve_workers
from ._options import temperature_scale, where_mask
from ._dispatch import dask_aware
from ._arrays import (
    as_float_array,
    cast_result,
    check_out,
    copy_result,
    direct_out,
    normalize_axis,
    overlaps_any,
    plain_out,
    scratch_like,
)

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "softmax_jacobian",
]


_Kernel = Callable[..., None]
_BackwardKernel = Callable[[NDArray[Any], NDArray[Any], NDArray[Any], int, int], None]


def _options(
    temperature: float, where: ArrayLike | None, shape: tuple[int, ...]
) -> tuple[float | None, NDArray[Any] | None]:
    return temperature_scale(temperature), where_mask(where, shape)


def _normalize(
    kernel: _Kernel,
    x: ArrayLike,
    axis: int,
    out: FloatArray | None,
    workers: int | None,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
) -> FloatArray:
    """Run a softmax-like kernel whose output has the input's shape."""
    threads = resolve_workers(workers)
    if out is not None and plain_out(x, out):
        scale, mask = _options(temperature, where, x.shape)
        ax = normalize_axis(axis, x.ndim)
        # The kernel reads the where= mask while it writes out: an out over the mask's
        # bytes goes through a temporary (checked only when there is a mask).
        if mask is None or not overlaps_any(out, (mask,)):
            kernel(x, out, ax, threads, scale, mask)
        else:
            result = scratch_like(out, x.dtype)
            kernel(x, result, ax, threads, scale, mask)
            copy_result(out, result)
        return out
    a, result_dtype = as_float_array(x)
    ax = normalize_axis(axis, a.ndim)
    scale, mask = _options(temperature, where, a.shape)
    if out is None:
        result = np.empty_like(a)
        kernel(a, result, ax, threads, scale, mask)
        return result if result_dtype is a.dtype else cast_result(result, result_dtype)
    check_out(out, a.shape, result_dtype)
    if direct_out(out, a) if mask is None else direct_out(out, a, mask):
        kernel(a, out, ax, threads, scale, mask)
    else:
        result = scratch_like(out, a.dtype)
        kernel(a, result, ax, threads, scale, mask)
        copy_result(out, result)
    return out


@dask_aware
def softmax(
    x: ArrayLike,
    axis: int = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: FloatArray | None = None,
    workers: int | None = None,
) -> FloatArray:
    r"""Softmax along an axis, computed stably.

    .. math:: \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}},
              \qquad m = \max_j x_j

    Subtracting the maximum changes nothing mathematically but keeps ``exp`` from
    overflowing: ``softmax([123, 456, 789])`` is ``[0, 0, 1]``, not ``nan``.

    Parameters
    ----------
    x : array_like
        Logits. float32 is computed in float32 and float64 in float64; float16 and
        bfloat16 (``ml_dtypes.bfloat16``) are widened to float32 element by element and
        the result returned in their dtype; integer and bool input is promoted to float64.
        Any memory layout (C, Fortran, strided views) is read in place, without a copy.
    axis : int, optional
        Axis along which the probabilities sum to one. Default: the last.
    temperature : float, optional
        Divide the logits by this (> 0, finite) first: the result is that of ``x / T``
        (the division is folded into the kernel's exponent). Default 1.
    where : array_like of bool, optional
        Which elements to include, broadcast to `x`'s shape (True = included). Left-out
        elements count as ``-inf`` logits: they do not enter the maximum or the sum and get probability 0.
        A row with no element included gives 0 throughout (as in JAX).
    out : ndarray, optional
        Where to write the result: same shape as `x` and the result dtype. May be `x`
        itself (computed in place).
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray
        Probabilities of `x`'s shape, summing to 1 along `axis` (or `out`).

    Notes
    -----
    Entries of ``-inf`` (masked classes) get probability 0. A row that is all ``-inf``,
    or holds ``+inf`` or NaN, has no defined distribution and comes out as NaN.

    Examples
    --------
    >>> import logitkit
    >>> logitkit.softmax([2.0, 3.0, 4.0]).round(4)
    array([0.09  , 0.2447, 0.6652])
    >>> logitkit.softmax([123, 456, 789]).round(6)  # naive exp(789) overflows to nan
    array([0., 0., 1.])
    """
    return _normalize(_core.softmax, x, axis, out, workers, temperature, where)


@dask_aware
def log_softmax(
    x: ArrayLike,
    axis: int = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: FloatArray | None = None,
    workers: int | None = None,
) -> FloatArray:
    r"""Logarithm of the softmax along an axis, computed without taking ``log(softmax)``.

    .. math:: \operatorname{log\_softmax}(x)_i = (x_i - m) - \log \sum_j e^{x_j - m}

    This stays finite where ``log(softmax(x))`` would give ``-inf`` (probabilities that
    underflow), and it is the form cross-entropy uses.

    Parameters
    ----------
    x : array_like
        Logits (dtype rules as for :func:`softmax`).
    axis : int, optional
        Axis to normalize over. Default: the last.
    temperature : float, optional
        Divide the logits by this (> 0, finite) first: the result is that of ``x / T``
        (the division is folded into the kernel's exponent). Default 1.
    where : array_like of bool, optional
        Which elements to include, broadcast to `x`'s shape (True = included). Left-out
        elements count as ``-inf`` logits: they do not enter the maximum or the sum and come out as ``-inf``.
        A row with no element included gives ``-inf`` throughout (as in JAX).
    out : ndarray, optional
        Where to write the result: same shape as `x` and the result dtype; may be `x`.
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray
        Log-probabilities of `x`'s shape (or `out`).

    Notes
    -----
    ``-inf`` entries stay ``-inf``; rows that are all ``-inf`` or hold ``+inf`` or NaN
    come out as NaN. The log of the sum is taken as ``log1p`` of the sum minus the
    maximum's term, summed apart, so the dominant entry of a row keeps its tiny
    log-probability: ``log_softmax([0.0, -40.0])[0]`` is -4.2e-18, not 0.

    Examples
    --------
    >>> import logitkit
    >>> logitkit.log_softmax([1000.0, 0.0])
    array([    0., -1000.])
    """
    return _normalize(_core.log_softmax, x, axis, out, workers, temperature, where)


@dask_aware
def logsumexp(
    x: ArrayLike,
    axis: int = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: FloatArray | None = None,
    workers: int | None = None,
) -> Any:
    r"""``log(sum(exp(x)))`` along an axis, without overflow.

    .. math:: \operatorname{logsumexp}(x) = m + \log \sum_j e^{x_j - m},
              \qquad m = \max_j x_j

    Parameters
    ----------
    x : array_like
        Input (dtype rules as for :func:`softmax`).
    axis : int, optional
        Axis to reduce. Default: the last.
    keepdims : bool, optional
        Keep the reduced axis as a dimension of length one.
    temperature : float, optional
        Reduce ``x / T`` instead of `x` (T > 0, finite): the result is
        ``logsumexp(x / T)``, not ``T * logsumexp(x / T)``. Default 1.
    where : array_like of bool, optional
        Which elements to include, broadcast to `x`'s shape (True = included), as in
        ``scipy.special.logsumexp``'s ``b = where`` and JAX's ``where=``. A row with no
        element included gives ``-inf``.
    out : ndarray, optional
        Where to write the result: `x`'s shape without `axis` (with a length-one `axis` if
        `keepdims`), in the result dtype.
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray or scalar
        The reduction; a NumPy scalar when the result has no dimensions and `out` is not
        given.

    Notes
    -----
    ``-inf`` entries are ignored; an all ``-inf`` row, or an empty axis, gives ``-inf``
    (as in SciPy); ``+inf`` gives ``+inf``; NaN gives NaN. The log of the sum is taken
    as ``log1p`` of the sum of the terms other than the maximum's (summed apart), so a
    tail far below the maximum is kept: ``logsumexp([0.0, -40.0])`` is 4.2e-18, as in
    SciPy, not 0.

    Examples
    --------
    >>> import logitkit
    >>> float(logitkit.logsumexp([1000.0, 1000.0]))
    1000.6931471805599
    """
    threads = resolve_workers(workers)
    a, result_dtype = as_float_array(x)
    ax = normalize_axis(axis, a.ndim)
    scale, mask = _options(temperature, where, a.shape)
    reduced = a.shape[:ax] + a.shape[ax + 1 :]
    if out is None:
        result = np.empty(reduced, dtype=a.dtype)
        _core.logsumexp(a, result, ax, threads, scale, mask)
        if result_dtype is not a.dtype:
            result = cast_result(result, result_dtype)
        if keepdims:
            return np.expand_dims(result, ax)
        return result[()] if result.ndim == 0 else result
    expected = a.shape[:ax] + (1,) + a.shape[ax + 1 :] if keepdims else reduced
    check_out(out, expected, result_dtype)
    target = np.squeeze(out, axis=ax) if keepdims else out  # a view, never a copy
    # (The mask is read while results are written: an out over its bytes, too, goes
    # through a temporary.)
    if direct_out(target, a) if mask is None else direct_out(target, a, mask):
        _core.logsumexp(a, target, ax, threads, scale, mask)
    else:
        result = scratch_like(target, a.dtype)
        _core.logsumexp(a, result, ax, threads, scale, mask)
        copy_result(target, result)
    return out


def _backward(
    kernel: _BackwardKernel,
    grad_output: ArrayLike,
    y: ArrayLike,
    axis: int,
    out: FloatArray | None,
    name: str,
    workers: int | None,
) -> FloatArray:
    threads = resolve_workers(workers)
    g, g_dtype = as_float_array(grad_output, "grad_output")
    a, a_dtype = as_float_array(y, name)
    if g.shape != a.shape:
        raise ValueError(f"grad_output has shape {g.shape} but {name} has shape {a.shape}")
    compute = np.result_type(g.dtype, a.dtype)
    result_dtype = np.result_type(g_dtype, a_dtype)
    g = g if g.dtype == compute else g.astype(compute)
    a = a if a.dtype == compute else a.astype(compute)
    ax = normalize_axis(axis, a.ndim)
    if out is None:
        result = np.empty_like(a)
        kernel(g, a, result, ax, threads)
        return result if result.dtype == result_dtype else cast_result(result, result_dtype)
    check_out(out, a.shape, result_dtype)
    # Each row is read in full before any of it is written, so out may be either input.
    if direct_out(out, a) and direct_out(out, g):
        kernel(g, a, out, ax, threads)
    else:
        result = scratch_like(out, a.dtype)
        kernel(g, a, result, ax, threads)
        copy_result(out, result)
    return out


@dask_aware
def softmax_backward(
    grad_output: ArrayLike,
    probs: ArrayLike,
    *,
    axis: int = -1,
    out: FloatArray | None = None,
    workers: int | None = None,
) -> FloatArray:
    r"""Vector-Jacobian product of softmax: the gradient with respect to its input.

    Given ``probs = softmax(x)`` and the gradient ``g`` of a loss with respect to
    ``probs``, returns the gradient with respect to ``x``:

    .. math:: \frac{\partial L}{\partial x} = J^T g = p \odot (g - \langle g, p \rangle),
              \qquad J = \operatorname{diag}(p) - p p^T

    without forming the C x C Jacobian (see :func:`softmax_jacobian`).

    Parameters
    ----------
    grad_output : array_like
        Gradient with respect to the softmax output.
    probs : array_like
        The softmax output, same shape.
    axis : int, optional
        The axis softmax was taken along. Default: the last.
    out : ndarray, optional
        Where to write the result; may be either input.
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray
    """
    return _backward(_core.softmax_backward, grad_output, probs, axis, out, "probs", workers)


@dask_aware
def log_softmax_backward(
    grad_output: ArrayLike,
    log_probs: ArrayLike,
    *,
    axis: int = -1,
    out: FloatArray | None = None,
    workers: int | None = None,
) -> FloatArray:
    r"""Vector-Jacobian product of log_softmax.

    .. math:: \frac{\partial L}{\partial x} = g - \operatorname{softmax}(x) \sum_j g_j,
              \qquad \operatorname{softmax}(x) = e^{\text{log\_probs}}

    Parameters
    ----------
    grad_output : array_like
        Gradient with respect to the log_softmax output.
    log_probs : array_like
        The log_softmax output, same shape.
    axis : int, optional
        The axis log_softmax was taken along. Default: the last.
    out : ndarray, optional
        Where to write the result; may be either input.
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray
    """
    return _backward(
        _core.log_softmax_backward, grad_output, log_probs, axis, out, "log_probs", workers
    )


@dask_aware
def softmax_jacobian(probs: ArrayLike, *, axis: int = -1) -> FloatArray:
    r"""The explicit Jacobian of softmax, :math:`J = \operatorname{diag}(a) - a a^T`.

    .. math:: \frac{\partial a_i}{\partial z_j} = a_i (\delta_{ij} - a_j)

    For teaching and checking; use :func:`softmax_backward` to apply it to a vector.

    Parameters
    ----------
    probs : array_like
        Softmax output ``a``.
    axis : int, optional
        The class axis. Default: the last.

    Returns
    -------
    ndarray
        Shape ``probs.shape`` without `axis`, followed by ``(C, C)``.
    """
    # (NumPy arithmetic, not a kernel: 16-bit input in float32, returned in its dtype)
    a, result_dtype = as_float_array(probs, "probs", native16=False)
    ax = normalize_axis(axis, a.ndim)
    p = np.moveaxis(a, ax, -1)
    classes = np.arange(p.shape[-1])
    # Probabilities that are inf or NaN (not a distribution) give NaN entries, as the
    # formula does, without NumPy's "invalid value" warnings.
    with np.errstate(invalid="ignore", over="ignore"):
        jac: FloatArray = -p[..., :, None] * p[..., None, :]
        jac[..., classes, classes] += p
    return jac if jac.dtype == result_dtype else cast_result(jac, result_dtype)
