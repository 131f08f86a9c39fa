"""entropy and kl_divergence of softmax distributions given by logits."""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import F32, as_float_array, cast_result, normalize_axis
from ._cross_entropy import reduce_losses, reduction_code
from ._typing import FloatArray, Loss, Reduction
from ._workers import resolve_workers

__all__ = ["entropy", "kl_divergence"]


def _log_base(base: float | None) -> float:
    if base is None:
        return 1.0
    b = float(base)
    if not b > 0 or b == 1 or math.isinf(b):
        raise ValueError(f"base must be positive, finite and not 1, got {base!r}")
    return math.log(b)


def entropy(
    logits: ArrayLike, *, axis: int = -1, base: float | None = None, workers: int | None = None
) -> Any:
    r"""Entropy of the distribution softmax(logits), along an axis.

    .. math:: H(p) = -\sum_i p_i \log p_i = \operatorname{logsumexp}(z) - \sum_i p_i z_i

    in nats, or in units of `base` (``base=2``: bits; a fair coin has 1 bit).

    Parameters
    ----------
    logits : array_like
        Logits (dtype rules as for :func:`softmax`).
    axis : int, optional
        The class axis. Default: the last.
    base : float, optional
        Logarithm base of the result.
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray or scalar
        The logits' shape without `axis`. Classes with ``-inf`` logits (probability 0)
        contribute 0.

    Examples
    --------
    >>> import logitkit
    >>> float(logitkit.entropy([0.0, 0.0], base=2))
    1.0
    """
    threads = resolve_workers(workers)
    z, result_dtype = as_float_array(logits, "logits")
    ax = normalize_axis(axis, z.ndim)
    scale = _log_base(base)
    if scale != 1.0 and z.dtype.itemsize == 2:
        # 16-bit logits with a base: nats in float32, divided there and rounded once to
        # the 16-bit dtype (the 16-bit nats divided by a 16-bit log(base) are rounded
        # three times: 2.6 ulp off for float16 and base 2, more for bfloat16).
        z = z.astype(F32)
    out = np.empty(z.shape[:ax] + z.shape[ax + 1 :], dtype=z.dtype)
    _core.entropy(z, out, ax, threads)
    if scale != 1.0:
        out /= out.dtype.type(scale)
    out = cast_result(out, result_dtype)
    return out[()] if out.ndim == 0 else out


@overload
def kl_divergence(
    p_logits: ArrayLike,
    q_logits: ArrayLike,
    *,
    axis: int = ...,
    base: float | None = ...,
    reduction: Reduction = ...,
    return_grad: Literal[False] = ...,
    workers: int | None = ...,
) -> Loss: ...
@overload
def kl_divergence(
    p_logits: ArrayLike,
    q_logits: ArrayLike,
    *,
    axis: int = ...,
    base: float | None = ...,
    reduction: Reduction = ...,
    return_grad: Literal[True],
    workers: int | None = ...,
) -> tuple[Loss, FloatArray]: ...
@overload
def kl_divergence(
    p_logits: ArrayLike,
    q_logits: ArrayLike,
    *,
    axis: int = ...,
    base: float | None = ...,
    reduction: Reduction = ...,
    return_grad: bool,
    workers: int | None = ...,
) -> Loss | tuple[Loss, FloatArray]: ...


def kl_divergence(
    p_logits: ArrayLike,
    q_logits: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    reduction: Reduction = "none",
    return_grad: bool = False,
    workers: int | None = None,
) -> Loss | tuple[Loss, FloatArray]:
    r"""Kullback-Leibler divergence KL(P || Q) between softmax(p_logits) and softmax(q_logits).

    .. math:: D_{KL}(P \| Q) = \sum_i p_i (\log p_i - \log q_i)
              = H(P, Q) - H(P)

    (cross-entropy minus entropy), the distillation loss. Its gradient with respect to
    `q_logits` is :math:`\mathrm{softmax}(q) - \mathrm{softmax}(p)` per row.

    Parameters
    ----------
    p_logits, q_logits : array_like
        Logits of P (the target) and Q (the model), of the same shape.
    axis : int, optional
        The class axis. Default: the last.
    base : float, optional
        Logarithm base of the result (default: nats).
    reduction : {'none', 'sum', 'mean'}, optional
        Per row, summed, or averaged over rows.
    return_grad : bool, optional
        Also return d(result)/d(q_logits).
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    kl : ndarray or scalar
    grad : ndarray
        Only with ``return_grad=True``.
    """
    threads = resolve_workers(workers)
    p, p_dtype = as_float_array(p_logits, "p_logits")
    q, q_dtype = as_float_array(q_logits, "q_logits")
    if p.shape != q.shape:
        raise ValueError(f"p_logits has shape {p.shape} but q_logits has shape {q.shape}")
    compute = np.result_type(p.dtype, q.dtype)
    result_dtype = np.result_type(p_dtype, q_dtype)
    p = p if p.dtype == compute else p.astype(compute)
    q = q if q.dtype == compute else q.astype(compute)
    ax = normalize_axis(axis, p.ndim)
    code = reduction_code(reduction)
    scale = _log_base(base)
    batch_shape = p.shape[:ax] + p.shape[ax + 1 :]
    rows = math.prod(batch_shape)
    # Per-row divergences in float64 whatever the dtype: a float32 row's may overflow
    # float32 while the batch's mean does not.
    out = np.empty(batch_shape, dtype=np.float64)
    grad: NDArray[Any] | None = np.empty_like(q) if return_grad else None
    grad_scale = (1.0 / rows if code == 2 and rows else 1.0) / scale
    # The base is applied in the kernel, in double: nats may exceed float32's range where
    # the result in the caller's base does not.
    _core.kl_divergence(p, q, out, 1.0 / scale, grad, grad_scale, ax, threads)
    kl: Any
    if code == 0:
        per_row = cast_result(out, result_dtype)
        kl = per_row[()] if per_row.ndim == 0 else per_row
    else:
        total = float(out.sum(dtype=np.float64))
        kl = reduce_losses(code, out, total, rows, result_dtype, rows)
    if grad is None:
        loss: Loss = kl
        return loss
    result: FloatArray = cast_result(grad, result_dtype)
    return kl, result
