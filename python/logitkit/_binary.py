"""sigmoid, log_sigmoid and binary_cross_entropy: the two-class (and multi-label) family."""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._dispatch import dask_aware
from ._arrays import (
    as_float_array,
    cast_result,
    check_out,
    copy_result,
    direct_out,
    is_half,
    widen_for,
)
from ._cross_entropy import reduce_losses, reduction_code
from ._typing import FloatArray, Loss, Reduction
from ._workers import resolve_workers

_Kernel = Callable[[NDArray[Any], NDArray[Any], int], None]

__all__ = ["sigmoid", "log_sigmoid", "binary_cross_entropy"]


def _elementwise(
    kernel: _Kernel, x: ArrayLike, out: FloatArray | None, workers: int | None
) -> Any:
    threads = resolve_workers(workers)
    a, result_dtype = as_float_array(x)
    src = a if a.flags.c_contiguous else np.ascontiguousarray(a)
    if out is not None:
        check_out(out, a.shape, result_dtype)
        if out.flags.c_contiguous and direct_out(out, src):
            kernel(src, out, threads)
            return out
        result = np.empty_like(src)
        kernel(src, result, threads)
        copy_result(out, result)
        return out
    result = np.empty_like(src)
    kernel(src, result, threads)
    if result_dtype != result.dtype:
        result = cast_result(result, result_dtype)
    return result[()] if result.ndim == 0 else result


@dask_aware
def sigmoid(x: ArrayLike, *, out: FloatArray | None = None, workers: int | None = None) -> Any:
    r"""The logistic sigmoid, elementwise, without overflow for any input.

    .. math:: \sigma(x) = \frac{1}{1 + e^{-x}}

    It maps the real line to (0, 1) with :math:`\sigma(0) = 1/2`,
    :math:`\sigma(-x) = 1 - \sigma(x)` and :math:`\sigma'(x) = \sigma(x)(1 - \sigma(x))`;
    it is the two-class softmax: :math:`\mathrm{softmax}([z_1, z_2])_1 = \sigma(z_1 - z_2)`.
    Computed from :math:`e^{-|x|}`, which never overflows: ``sigmoid(-1000)`` is 0 and
    ``sigmoid(1000)`` is 1, without warnings.

    Parameters
    ----------
    x : array_like
        Input (float32 stays float32; integers become float64; float16 and bfloat16 are
        computed in float32 and returned in their dtype). Non-contiguous input is copied to a contiguous one first.
    out : ndarray, optional
        Where to write the result (same shape, result dtype); may be `x`.
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray or scalar
        The result (a NumPy scalar for scalar input without `out`).

    Examples
    --------
    >>> import logitkit
    >>> float(logitkit.sigmoid(0.0))
    0.5
    """
    return _elementwise(_core.sigmoid, x, out, workers)


@dask_aware
def log_sigmoid(
    x: ArrayLike, *, out: FloatArray | None = None, workers: int | None = None
) -> Any:
    r"""``log(sigmoid(x))``, elementwise, accurate for any input.

    .. math:: \log \sigma(x) = \min(x, 0) - \log\bigl(1 + e^{-|x|}\bigr)

    so ``log_sigmoid(-1000)`` is exactly -1000 and ``log_sigmoid(40)`` is about -4.2e-18
    rather than 0. Results are within 1 ulp (float32: correctly rounded), and below the
    normal range they are the subnormal ``-exp(-x)``, not 0 (``log_sigmoid(710.0)`` is
    -4.476e-309), as in SciPy's ``log_expit``; ``log_sigmoid(inf)`` is -0.0.

    Parameters
    ----------
    x : array_like
        Input (dtype rules as for :func:`sigmoid`).
    out : ndarray, optional
        Where to write the result; may be `x`.
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    ndarray or scalar
        The result.
    """
    return _elementwise(_core.log_sigmoid, x, out, workers)


def _as_operand(
    value: ArrayLike, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]
) -> NDArray[Any]:
    a = np.asarray(value)
    if a.dtype.kind == "c":
        raise TypeError(f"{name} is complex ({a.dtype}); logitkit supports only real input")
    if a.dtype.kind not in "biuf" and not is_half(a.dtype):
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    try:
        full = np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to {shape}") from None
    # Aligned too: np.ascontiguousarray keeps an unaligned contiguous array as it is, and
    # the kernels load whole elements.
    return np.require(full, dtype=dtype, requirements=["C", "A"])


def _sample_weights(
    sample_weight: ArrayLike | None, shape: tuple[int, ...]
) -> tuple[NDArray[np.float64] | None, int, float | None]:
    """(one float64 weight per sample, elements per sample, the "mean" denominator
    sum(s) * elements per sample), or (None, 1, None) without sample weights."""
    if sample_weight is None:
        return None, 1, None
    s = np.asarray(sample_weight)
    if s.dtype.kind not in "biuf" and not is_half(s.dtype):
        raise TypeError(f"sample_weight must be a real array, got dtype {s.dtype}")
    samples = shape[0] if shape else 1
    try:
        sw = np.array(np.broadcast_to(s, (samples,)), dtype=np.float64)
    except ValueError:
        raise ValueError(
            f"sample_weight of shape {s.shape} does not broadcast to ({samples},), "
            "one weight per index of the logits' first axis"
        ) from None
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise ValueError("sample_weight must be finite and >= 0")
    size = math.prod(shape)
    if size == 0:  # nothing to weight; a mean over nothing is 0.0
        return None, 1, 0.0
    per_sample = size // samples
    denominator = math.fsum(sw.tolist()) * per_sample
    return sw, max(per_sample, 1), denominator


@overload
def binary_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = ...,
    pos_weight: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    reduction: Reduction = ...,
    return_grad: Literal[False] = ...,
    grad_out: FloatArray | None = ...,
    workers: int | None = ...,
) -> Loss: ...
@overload
def binary_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = ...,
    pos_weight: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    reduction: Reduction = ...,
    return_grad: Literal[True],
    grad_out: FloatArray | None = ...,
    workers: int | None = ...,
) -> tuple[Loss, FloatArray]: ...
@overload
def binary_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = ...,
    pos_weight: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    reduction: Reduction = ...,
    return_grad: bool,
    grad_out: FloatArray | None = ...,
    workers: int | None = ...,
) -> Loss | tuple[Loss, FloatArray]: ...


@dask_aware
def binary_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_out: FloatArray | None = None,
    workers: int | None = None,
) -> Loss | tuple[Loss, FloatArray]:
    r"""Binary cross-entropy of sigmoid(logits), elementwise (multi-label classification).

    .. math:: \ell = -w \bigl[p\, y \log \sigma(z) + (1 - y) \log (1 - \sigma(z))\bigr],
              \qquad \frac{\partial \ell}{\partial z} = w \bigl[(p y + 1 - y)\,\sigma(z) - p y\bigr]

    which is :math:`\sigma(z) - y` without weights: the same "prediction minus target" as
    softmax with cross-entropy. Both logs are computed as :func:`log_sigmoid` of
    :math:`\pm z`, so logits of :math:`\pm\infty` with targets 0 and 1 give a loss of 0
    (or inf where the logit is confidently wrong), never NaN.

    Parameters
    ----------
    logits : array_like
        Unnormalized scores (float32 stays float32).
    target : array_like
        Targets in [0, 1], the logits' shape (bool and integer targets are converted).
    weight : array_like, optional
        Weights broadcastable to the logits' shape.
    pos_weight : array_like, optional
        Weight of the positive term, broadcastable to the logits' shape; usually one per
        class (the last axis), as in PyTorch's ``BCEWithLogitsLoss``.
    sample_weight : array_like, optional
        One weight per sample, i.e. per index of the first axis: shape
        ``(logits.shape[0],)`` or broadcastable to it, finite and >= 0. Each element's
        loss and gradient are multiplied by its sample's weight ``s`` (a weight of 0
        makes the element's loss 0), and ``'mean'`` becomes
        ``sum(s * w * l) / sum(s over all elements)``: every element counts with its
        sample's weight, which is PyTorch's mean when all ``s`` are 1. Applied in the
        kernel's pass, one scalar per sample (for 1-d logits, where each element is a
        sample, it is folded into `weight`, in the logits' dtype).
    reduction : {'mean', 'sum', 'none'}, optional
        ``'mean'`` averages over all elements (0.0 for an empty array, as for a fully
        ignored batch in :func:`cross_entropy`).
    return_grad : bool, optional
        Also return d(loss)/d(logits).
    grad_out : ndarray, optional
        Where to write the gradient (logits' shape, result dtype).
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    loss : scalar or ndarray
    grad : ndarray
        Only with ``return_grad=True``.
    """
    threads = resolve_workers(workers)
    z, result_dtype = as_float_array(logits, "logits")
    code = reduction_code(reduction)
    t = np.asarray(target)
    if t.shape != z.shape:
        raise ValueError(f"target has shape {t.shape}, expected the logits' shape {z.shape}")
    z = widen_for(z, t, np.asarray(weight), np.asarray(pos_weight))
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    zc = z if z.flags.c_contiguous else z.copy(order="C")
    y = _as_operand(t, "target", z.shape, z.dtype)
    w = None if weight is None else _as_operand(weight, "weight", z.shape, z.dtype)
    pw = None
    if pos_weight is not None:
        # One weight per class (the common case) stays one row; anything else is expanded
        # to the logits' shape.
        n = z.shape[-1] if z.ndim else 1
        p = np.asarray(pos_weight)
        per_class = p.ndim == 0 or all(d == 1 for d in p.shape[:-1])
        if per_class and p.ndim and p.shape[-1] in (1, n):
            pw = _as_operand(p.reshape(p.shape[-1:]), "pos_weight", (n,), z.dtype)
        else:
            pw = _as_operand(p, "pos_weight", z.shape, z.dtype)
    sw, sample_len, denominator = _sample_weights(sample_weight, z.shape)
    if sw is not None and sample_len == 1:
        # Each element its own sample: the weight is per element, as `weight` is.
        folded = sw.reshape(z.shape).astype(z.dtype)
        w = folded if w is None else np.multiply(w, folded)
        sw = None
    loss_array = np.empty_like(zc) if code == 0 else None
    grad: NDArray[Any] | None = None
    if return_grad:
        if grad_out is not None:
            check_out(grad_out, z.shape, result_dtype, "grad_out")
        # Elementwise: each logit is read before its gradient is written, so the gradient
        # may go straight into grad_out, even when that is the logits themselves; any
        # other overlap (with the target, the weights or the per-sample weights the
        # kernel reads, sw) goes through a temporary.
        writable_in_place = (
            grad_out is not None
            and grad_out.flags.c_contiguous
            and (
                direct_out(grad_out, zc, y, w, pw)
                if sw is None
                else direct_out(grad_out, zc, y, w, pw, sw)
            )
        )
        grad = grad_out if writable_in_place else np.empty_like(zc)
    size = zc.size
    if denominator is None:
        denominator = float(size)
    scale = 1.0 / denominator if code == 2 and denominator else (0.0 if code == 2 else 1.0)
    if sw is None:
        total = _core.binary_cross_entropy(zc, y, w, pw, loss_array, grad, scale, threads)
    else:
        total = _core.binary_cross_entropy(
            zc, y, w, pw, loss_array, grad, scale, threads, sw, sample_len
        )
    loss = reduce_losses(code, loss_array, total, denominator, result_dtype, size)
    if grad is None:
        return loss
    if grad_out is not None:
        if grad is not grad_out:
            copy_result(grad_out, grad)
        return loss, grad_out
    result: FloatArray = cast_result(grad, result_dtype)
    return loss, result
