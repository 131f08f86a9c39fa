"""Plain float64 NumPy reference implementations used by the whole test suite.

Every function here converts its input to float64 and follows the numerical contract
table of DESIGN.md literally:

==============================  =================  ============  ==========
input row                       softmax            log_softmax   logsumexp
==============================  =================  ============  ==========
finite, any magnitude           finite, sums to 1  finite        finite
contains -inf (masked class)    0 there            -inf there    ignores it
all -inf                        NaN                NaN           -inf
contains +inf                   NaN                NaN           +inf
contains NaN                    NaN row            NaN row       NaN
==============================  =================  ============  ==========

(+inf together with NaN gives NaN.)  A length-0 axis gives an empty softmax /
log_softmax and a logsumexp of -inf, like SciPy.

The code is written for readability, not speed: the "max trick" with the row maximum
``m``, ``exp(x - m)`` and its sum ``s``.  All floating point warnings are silenced with
``np.errstate`` because the non-finite rows are computed and then overwritten.
"""

import numpy as np

__all__ = ["softmax", "log_softmax", "logsumexp"]


def _as_float64(x):
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"reference: unsupported dtype {x.dtype}")
    return x.astype(np.float64)


def _normalize_axis(axis, ndim):
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def _max_shift_sum(x, axis):
    """The pieces of the max trick along ``axis`` (all with keepdims=True).

    Returns ``(m, ok, shifted, s)``:

    - ``m``: the row maximum. np.max propagates NaN, so ``m`` is NaN for a row with a
      NaN, +inf for a row with +inf (and no NaN), -inf for an all -inf row.
    - ``ok``: rows whose maximum is finite; only those have a finite result.
    - ``shifted``: ``x - m`` (``x - 0`` for the other rows, which are discarded).
    - ``s``: ``sum(exp(shifted))``, in [1, n] for the ``ok`` rows.
    """
    m = np.max(x, axis=axis, keepdims=True)
    ok = np.isfinite(m)
    shifted = x - np.where(ok, m, 0.0)
    # Sum along a contiguous last axis so NumPy uses pairwise summation (error ~log2(n)
    # ulp); np.sum along a strided axis adds sequentially, ~n ulp, which for 2**17 terms
    # is less accurate than the kernels under test.
    terms = np.ascontiguousarray(np.moveaxis(np.exp(shifted), axis, -1))
    s = np.expand_dims(np.sum(terms, axis=-1), axis)
    return m, ok, shifted, s


def softmax(x, axis=-1):
    """exp(x - m) / sum(exp(x - m)); a NaN row where the row max is not finite."""
    x = _as_float64(x)
    axis = _normalize_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        m, ok, shifted, s = _max_shift_sum(x, axis)
        return np.where(ok, np.exp(shifted) / s, np.nan)


def log_softmax(x, axis=-1):
    """(x - m) - log(sum(exp(x - m))); a NaN row where the row max is not finite."""
    x = _as_float64(x)
    axis = _normalize_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        m, ok, shifted, s = _max_shift_sum(x, axis)
        return np.where(ok, shifted - np.log(s), np.nan)


def logsumexp(x, axis=-1, keepdims=False):
    """m + log(sum(exp(x - m))).

    A row whose max is not finite already has its answer in ``m``: NaN (the row has a
    NaN), +inf (the row has +inf) or -inf (all -inf).  A length-0 axis gives -inf.
    """
    x = _as_float64(x)
    axis = _normalize_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        shape = list(x.shape)
        shape[axis] = 1
        result = np.full(shape, -np.inf)
    else:
        with np.errstate(all="ignore"):
            m, ok, _, s = _max_shift_sum(x, axis)
            result = np.where(ok, m + np.log(s), m)
    if not keepdims:
        result = np.squeeze(result, axis=axis)
    return result
