"""entropy and kl_divergence of softmax distributions given by logits."""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._dispatch import dask_aware
from ._arrays import F32, as_float_array, cast_result, normalize_axis
from ._cross_entropy import reduce_losses, reduction_code
from ._typing import FloatArray, KlReduction, Loss
from ._workers import resolve_workers
from ._options import temperature_scale, where_mask


def _kl_reduction_code(reduction: str) -> int:
    if isinstance(reduction, str) and reduction == "batchmean":
        return 2
    try:
        return reduction_code(reduction)
    except ValueError:
        raise ValueError(
            f"reduction must be one of 'none', 'sum', 'mean', 'batchmean', got {reduction!r}"
        ) from None

__all__ = ["entropy", "kl_divergence"]


def _log_base(base: float | None) -> float:
    if base is None:
        return 1.0
    b = float(base)
    if not b > 0 or b == 1 or math.isinf(b):
        raise ValueError(f"base must be positive, finite and not 1, got {base!r}")
    return math.log(b)


@dask_aware
def entropy(
    logits: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    workers: int | None = None,
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
    temperature : float, optional
        The entropy of ``softmax(logits / T)`` (T > 0, finite; folded into the kernel's
        exponent). Default 1.
    where : array_like of bool, optional
        Classes to include, broadcast to the logits' shape (True = included); the others
        count as ``-inf`` logits (probability 0). A row with no class included has
        entropy 0 (an empty sum).
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
    t_scale = temperature_scale(temperature)
    mask = where_mask(where, z.shape)
    if scale != 1.0 and z.dtype.itemsize == 2:
        # 16-bit logits with a base: nats in float32, divided there and rounded once to
        # the 16-bit dtype (the 16-bit nats divided by a 16-bit log(base) are rounded
        # three times: 2.6 ulp off for float16 and base 2, more for bfloat16).
        z = z.astype(F32)
    out = np.empty(z.shape[:ax] + z.shape[ax + 1 :], dtype=z.dtype)
    _core.entropy(z, out, ax, threads, t_scale, mask)
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
    reduction: KlReduction = ...,
    temperature: float = ...,
    where: ArrayLike | None = ...,
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
    reduction: KlReduction = ...,
    temperature: float = ...,
    where: ArrayLike | None = ...,
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
    reduction: KlReduction = ...,
    temperature: float = ...,
    where: ArrayLike | None = ...,
    return_grad: bool,
    workers: int | None = ...,
) -> Loss | tuple[Loss, FloatArray]: ...


@dask_aware
def kl_divergence(
    p_logits: ArrayLike,
    q_logits: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    reduction: KlReduction = "none",
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    return_grad: bool = False,
    workers: int | None = None,
) -> Loss | tuple[Loss, FloatArray]:
    r"""Kullback-Leibler divergence KL(P || Q) between softmax(p_logits) and softmax(q_logits).

    .. math:: D_{KL}(P \| Q) = \sum_i p_i (\log p_i - \log q_i)
              = H(P, Q) - H(P)

    (cross-entropy minus entropy), the distillation loss. Its gradient with respect to
    `q_logits` is :math:`\mathrm{softmax}(q) - \mathrm{softmax}(p)` per row.

    With a temperature T, both distributions are those of the logits divided by T,
    :math:`D_{KL}(\mathrm{softmax}(p/T) \| \mathrm{softmax}(q/T))`, and the gradient
    with respect to the raw `q_logits` is
    :math:`(\mathrm{softmax}(q/T) - \mathrm{softmax}(p/T)) / T`. There is no
    :math:`T^2` factor (as in PyTorch's ``kl_div``; Hinton et al.'s :math:`T^2` is the
    caller's). Knowledge distillation is one call::

        loss, grad = kl_divergence(teacher, student, temperature=T,
                                   reduction="batchmean", return_grad=True)

    which equals PyTorch's ``kl_div(log_softmax(student / T), log_softmax(teacher / T),
    log_target=True, reduction="batchmean")`` and its gradient with respect to the raw
    student logits.

    Parameters
    ----------
    p_logits, q_logits : array_like
        Logits of P (the target) and Q (the model), of the same shape.
    axis : int, optional
        The class axis. Default: the last.
    base : float, optional
        Logarithm base of the result (default: nats).
    reduction : {'none', 'sum', 'mean', 'batchmean'}, optional
        Per row, summed, or averaged over rows. ``"batchmean"`` (the sum over classes,
        averaged over rows) is the same as ``"mean"`` here, whose per-row values are
        already summed over classes; it equals PyTorch's ``reduction="batchmean"`` for
        2-D input. For input of more than 2 dimensions it divides by the number of
        positions (the product of the non-class dimensions), where PyTorch divides by
        ``input.size(0)`` only.
    temperature : float, optional
        Divide both logits by T (> 0, finite) first. Default 1.
    where : array_like of bool, optional
        Classes to include, broadcast to the logits' shape (True = included), the same
        for P and Q; the others are left out of both distributions. A row with no class
        included has divergence 0 and gradient 0.
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
    code = _kl_reduction_code(reduction)
    scale = _log_base(base)
    t_scale = temperature_scale(temperature)
    mask = where_mask(where, p.shape)
    batch_shape = p.shape[:ax] + p.shape[ax + 1 :]
    rows = math.prod(batch_shape)
    # Per-row divergences in float64 whatever the dtype: a float32 row's may overflow
    # float32 while the batch's mean does not.
    out = np.empty(batch_shape, dtype=np.float64)
    grad: NDArray[Any] | None = np.empty_like(q) if return_grad else None
    grad_scale = (1.0 / rows if code == 2 and rows else 1.0) / scale
    if t_scale is not None:
        grad_scale *= t_scale  # the gradient with respect to the raw logits: 1/T
    # The base is applied in the kernel, in double: nats may exceed float32's range where
    # the result in the caller's base does not.
    _core.kl_divergence(p, q, out, 1.0 / scale, grad, grad_scale, ax, threads, t_scale, mask)
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
