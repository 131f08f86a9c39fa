"""softmax, log_softmax and logsumexp along one axis."""

from __future__ import annotations

import numpy as np

from . import _core
from ._arrays import as_float_array, check_out, direct_out, normalize_axis

__all__ = ["softmax", "log_softmax", "logsumexp"]


def _normalize(kernel, x, axis, out):
    """Run a softmax-like kernel whose output has the input's shape."""
    a, result_dtype = as_float_array(x)
    ax = normalize_axis(axis, a.ndim)
    if out is None:
        result = np.empty_like(a)
        kernel(a, result, ax)
        return result if result_dtype is a.dtype else result.astype(result_dtype)
    check_out(out, a.shape, result_dtype)
    if direct_out(out, a):
        kernel(a, out, ax)
    else:
        result = np.empty_like(a)
        kernel(a, result, ax)
        np.copyto(out, result, casting="same_kind")
    return out


def softmax(x, axis=-1, *, out=None):
    r"""Softmax along an axis, computed stably.

    .. math:: \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}},
              \qquad m = \max_j x_j

    Subtracting the maximum changes nothing mathematically but keeps ``exp`` from
    overflowing: ``softmax([123, 456, 789])`` is ``[0, 0, 1]``, not ``nan``.

    Parameters
    ----------
    x : array_like
        Logits. float32 is computed in float32 and float64 in float64; float16 is computed
        in float32 and returned as float16; integer and bool input is promoted to float64.
        Any memory layout (C, Fortran, strided views) is read in place, without a copy.
    axis : int, optional
        Axis along which the probabilities sum to one. Default: the last.
    out : ndarray, optional
        Where to write the result: same shape as `x` and the result dtype. May be `x`
        itself (computed in place).

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
    >>> logitkit.softmax([123, 456, 789])
    array([0., 0., 1.])
    """
    return _normalize(_core.softmax, x, axis, out)


def log_softmax(x, axis=-1, *, out=None):
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
    out : ndarray, optional
        Where to write the result: same shape as `x` and the result dtype; may be `x`.

    Returns
    -------
    ndarray
        Log-probabilities of `x`'s shape (or `out`).

    Notes
    -----
    ``-inf`` entries stay ``-inf``; rows that are all ``-inf`` or hold ``+inf`` or NaN
    come out as NaN.

    Examples
    --------
    >>> import logitkit
    >>> logitkit.log_softmax([1000.0, 0.0])
    array([    0., -1000.])
    """
    return _normalize(_core.log_softmax, x, axis, out)


def logsumexp(x, axis=-1, *, keepdims=False, out=None):
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
    out : ndarray, optional
        Where to write the result: `x`'s shape without `axis` (with a length-one `axis` if
        `keepdims`), in the result dtype.

    Returns
    -------
    ndarray or scalar
        The reduction; a NumPy scalar when the result has no dimensions and `out` is not
        given.

    Notes
    -----
    ``-inf`` entries are ignored; an all ``-inf`` row, or an empty axis, gives ``-inf``
    (as in SciPy); ``+inf`` gives ``+inf``; NaN gives NaN.

    Examples
    --------
    >>> import logitkit
    >>> float(logitkit.logsumexp([1000.0, 1000.0]))
    1000.6931471805599
    """
    a, result_dtype = as_float_array(x)
    ax = normalize_axis(axis, a.ndim)
    reduced = a.shape[:ax] + a.shape[ax + 1 :]
    if out is None:
        result = np.empty(reduced, dtype=a.dtype)
        _core.logsumexp(a, result, ax)
        if result_dtype is not a.dtype:
            result = result.astype(result_dtype)
        if keepdims:
            return np.expand_dims(result, ax)
        return result[()] if result.ndim == 0 else result
    expected = a.shape[:ax] + (1,) + a.shape[ax + 1 :] if keepdims else reduced
    check_out(out, expected, result_dtype)
    target = np.squeeze(out, axis=ax) if keepdims else out  # a view, never a copy
    if direct_out(target, a):
        _core.logsumexp(a, target, ax)
    else:
        result = np.empty(reduced, dtype=a.dtype)
        _core.logsumexp(a, result, ax)
        np.copyto(out, result.reshape(expected), casting="same_kind")
    return out
