"""cross_entropy and nll_loss: the loss of a classifier, with its gradient in the same pass."""

from __future__ import annotations

import math
import operator
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._dispatch import dask_aware
from ._arrays import (
    as_dtype,
    as_float_array,
    cast_result,
    check_out,
    compute_dtype,
    copy_result,
    direct_out,
    dtype_max,
    is_half,
    widen_for,
    normalize_axis,
    overlaps_any,
    plain_out,
    scratch_like,
)
from ._options import checked_temperature as _temperature
from ._options import real_option, where_mask
from ._typing import FloatArray, Loss, Reduction
from ._workers import resolve_workers

__all__ = ["cross_entropy", "nll_loss"]

_REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}


def reduction_code(reduction: str) -> int:
    """The core's code for a reduction name, or ValueError."""
    try:
        return _REDUCTIONS[reduction]
    except (KeyError, TypeError):
        raise ValueError(
            f"reduction must be one of 'none', 'sum', 'mean', got {reduction!r}"
        ) from None


def _smoothing(label_smoothing: float) -> float:
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:  # also rejects NaN
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return eps


def _class_weights(weight: ArrayLike | None, n: int, dtype: np.dtype[Any]) -> NDArray[Any] | None:
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.dtype.kind not in "biuf" and not is_half(w.dtype):
        raise TypeError(f"weight must be a real array, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"weight has shape {w.shape}, expected shape ({n},) (one per class)")
    # Aligned, as the kernels load; in the compute dtype (a 16-bit input's weights are
    # float32: a small vector, kept exact).
    return np.require(w, dtype=compute_dtype(dtype), requirements=["C", "A"])


def _softcap(softcap: float | None) -> float:
    if softcap is None:
        return 0.0
    c = real_option(softcap, "softcap")
    if not (math.isfinite(c) and c > 0.0):
        raise ValueError(f"softcap must be None or finite and > 0, got {softcap!r}")
    return c


def _z_loss(z_loss: float) -> float:
    v = real_option(z_loss, "z_loss")
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"z_loss must be finite and >= 0, got {z_loss!r}")
    return v


def _where(where: ArrayLike | None, shape: tuple[int, ...]) -> NDArray[np.uint8] | None:
    """The mask broadcast to the logits' shape (no copy: zero strides allowed), as uint8."""
    return where_mask(where, shape)


def _sample_weight(
    sample_weight: ArrayLike | None, batch_shape: tuple[int, ...]
) -> NDArray[np.float64] | None:
    """One weight per row, float64, broadcast to the batch shape; finite and >= 0."""
    if sample_weight is None:
        return None
    s = np.asarray(sample_weight)
    if s.dtype.kind not in "iuf" and not is_half(s.dtype):
        raise TypeError(f"sample_weight must be a real array, got dtype {s.dtype}")
    s = np.asarray(s, dtype=np.float64)
    try:
        s = np.broadcast_to(s, batch_shape)
    except ValueError:
        raise ValueError(
            f"sample_weight has shape {s.shape}, which does not broadcast to the batch "
            f"shape {batch_shape} (the logits' shape without the class axis)"
        ) from None
    # A per-row vector: checking it is one pass over the rows, not over the logits.
    if s.size and not (np.isfinite(s).all() and (s >= 0).all()):
        raise ValueError("sample_weight must be finite and >= 0")
    if not s.flags.aligned:
        s = np.array(s)
    return s


_INT64_MIN = -(2**63)
_INT64_END = 2**63
_INT64_DTYPE = np.dtype(np.int64)


def _ignore_index(ignore_index: int) -> int:
    ignore = operator.index(ignore_index)
    if not _INT64_MIN <= ignore < _INT64_END:
        raise ValueError(
            f"ignore_index={ignore} does not fit in a 64-bit signed integer "
            "(class indices are compared as int64)"
        )
    return ignore


def _labels(
    target: ArrayLike,
    batch_shape: tuple[int, ...],
    axis: int,
    n_classes: int,
    ignore_index: int,
    what: str = "target",
) -> NDArray[np.int64]:
    """Integer class indices as an aligned native int64 array of the batch shape.

    Raises IndexError for unsigned indices that int64 cannot hold (they would wrap to
    negative numbers, one of which may be ``ignore_index``); the core checks the rest.
    """
    t = target if type(target) is np.ndarray else np.asarray(target)
    kind = t.dtype.kind
    if kind not in "iu":
        if kind == "b":
            raise TypeError(f"{what} is boolean; class indices must be an integer array")
        raise TypeError(f"{what} must hold integer class indices, got dtype {t.dtype}")
    if t.shape != batch_shape:
        raise ValueError(
            f"integer {what} has shape {t.shape}, expected shape {batch_shape} "
            f"(the input's shape without axis {axis}, which has the {n_classes} classes)"
        )
    if kind == "u" and t.dtype.itemsize == 8 and t.size:
        too_big = t >= np.uint64(_INT64_END)
        if too_big.any():
            position = int(np.argmax(too_big))  # the first, in C order
            value = int(t.reshape(-1)[position]) if t.ndim else int(t)
            raise _bad_label(position, value, batch_shape, n_classes, ignore_index)
    dt = t.dtype
    # (`is` first: comparing with np.int64 converts it to a dtype on every call, 100 ns.)
    if not (dt is _INT64_DTYPE or (dt == _INT64_DTYPE and dt.isnative)) or not t.flags.aligned:
        t = t.astype(np.int64)
    return t


def _target(
    target: ArrayLike, z: NDArray[Any], axis: int, batch_shape: tuple[int, ...], ignore_index: int
) -> tuple[NDArray[np.int64] | None, NDArray[Any] | None]:
    """Split a cross-entropy target into (labels, probabilities); one of them is None."""
    t = target if type(target) is np.ndarray else np.asarray(target)
    dt = t.dtype
    if dt is _INT64_DTYPE and t.shape == batch_shape and t.flags.aligned:
        return t, None  # labels as the core takes them: what _labels returns unchanged
    kind = dt.kind
    if kind in "iu":
        return _labels(t, batch_shape, axis, z.shape[axis], ignore_index), None
    if kind == "f" or is_half(t.dtype):
        if t.shape != z.shape:
            raise ValueError(
                f"probability target has shape {t.shape}, expected the logits' shape "
                f"{z.shape}; class indices are an integer array of shape {batch_shape}"
            )
        probs, _ = as_float_array(t, "target")
        probs = as_dtype(probs, z.dtype)
        return None, probs
    if kind == "b":
        raise TypeError("target is boolean; use integer class indices or float probabilities")
    if kind == "c":
        raise TypeError(f"target is complex ({t.dtype}); logitkit supports only real input")
    raise TypeError(f"target must be integer class indices or float probabilities, got {t.dtype}")


def _bad_label(
    position: int, value: int, batch_shape: tuple[int, ...], n_classes: int, ignore_index: int
) -> IndexError:
    where = np.unravel_index(position, batch_shape) if batch_shape else ()
    return IndexError(
        f"target {value} at position {tuple(int(i) for i in where)} is out of range for "
        f"{n_classes} classes (valid: 0 to {n_classes - 1}, or ignore_index={ignore_index})"
    )


def _grad_buffer(
    grad_out: FloatArray | None,
    z: NDArray[Any],
    result_dtype: np.dtype[Any],
    *inputs: NDArray[Any] | None,
) -> tuple[NDArray[Any], FloatArray]:
    """(array the core writes the gradient to, array returned to the caller).

    The core writes straight into ``grad_out`` only when it is the logits exactly or
    shares no memory with them nor with any of ``inputs`` (labels, probabilities, class
    weights), which the kernels read again after writing earlier rows' gradients.
    """
    if grad_out is None:
        grad = np.empty_like(z)
        return grad, grad
    if z.dtype is result_dtype and plain_out(z, grad_out):
        # What check_out accepts and direct_out allows with respect to the logits: only
        # the other inputs remain.
        if overlaps_any(grad_out, inputs):
            return scratch_like(grad_out, z.dtype), grad_out
        return grad_out, grad_out
    check_out(grad_out, z.shape, result_dtype, "grad_out")
    if direct_out(grad_out, z, *inputs):
        return grad_out, grad_out
    return scratch_like(grad_out, z.dtype), grad_out


_LARGEST: dict[np.dtype[Any], float] = {}


def _largest(dtype: np.dtype[Any]) -> float:
    """dtype_max(dtype), cached (np.finfo costs 0.1 us a call)."""
    try:
        return _LARGEST[dtype]
    except KeyError:
        value = _LARGEST[dtype] = dtype_max(dtype)
        return value


def reduce_losses(
    code: int,
    loss_array: NDArray[Any] | None,
    total: float,
    denominator: float,
    result_dtype: np.dtype[Any],
    counted: int,
) -> Loss:
    """The loss for a reduction code: the per-row array, their sum, or sum / denominator.

    A mean over nothing (``counted == 0``: every target ignored, or an empty batch) is
    0.0; a zero denominator otherwise (weights summing to 0) gives inf or NaN, as the
    formula does.
    """
    if code == 0:
        assert loss_array is not None
        losses: FloatArray = cast_result(loss_array, result_dtype)
        return losses
    if code == 1:
        value = total
    elif counted == 0:
        value = 0.0
    elif denominator != 0:
        value = total / denominator
    else:
        value = math.nan if total == 0 else math.copysign(math.inf, total)
    if not abs(value) > _largest(result_dtype):  # NaN too
        scalar: np.floating[Any] = result_dtype.type(value)
    else:
        # A total past the result dtype's range (float16 past 65504, a float32 total kept
        # in double) is inf, quietly (np.errstate costs ~0.5 us: only here).
        with np.errstate(over="ignore"):
            scalar = result_dtype.type(value)
    return scalar


@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = ...,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Reduction = ...,
    return_grad: Literal[False] = ...,
    grad_out: FloatArray | None = ...,
    temperature: float = ...,
    softcap: float | None = ...,
    z_loss: float = ...,
    where: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    workers: int | None = ...,
) -> Loss: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = ...,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Reduction = ...,
    return_grad: Literal[True],
    grad_out: FloatArray | None = ...,
    temperature: float = ...,
    softcap: float | None = ...,
    z_loss: float = ...,
    where: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    workers: int | None = ...,
) -> tuple[Loss, FloatArray]: ...
@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = ...,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Reduction = ...,
    return_grad: bool,
    grad_out: FloatArray | None = ...,
    temperature: float = ...,
    softcap: float | None = ...,
    z_loss: float = ...,
    where: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    workers: int | None = ...,
) -> Loss | tuple[Loss, FloatArray]: ...


@dask_aware
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_out: FloatArray | None = None,
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    where: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    workers: int | None = None,
) -> Loss | tuple[Loss, FloatArray]:
    r"""Cross-entropy of softmax(logits) against class indices or probabilities.

    For one sample with logits :math:`z` and class probabilities :math:`a = \mathrm{softmax}(z)`,

    .. math:: E = -\sum_i y_i \log a_i = \operatorname{logsumexp}(z) - z_t
              \qquad\text{(one-hot } y \text{ at class } t)

    and its gradient is the famous :math:`\partial E / \partial z = a - y`, computed in the
    same pass over the logits as the loss (read once, gradient written once).

    Parameters
    ----------
    logits : array_like
        Unnormalized scores; float32 is computed in float32, float64 in float64 (float16
        and bfloat16 in float32 registers, returned in their dtype, with float32 class
        weights; integers are promoted to float64).
    target : array_like
        Either integer class indices (any integer dtype) of the logits' shape without
        `axis`, or probabilities / one-hot rows (float) of the logits' shape.
    axis : int, optional
        The class axis. Default: the last.
    weight : array_like, optional
        Per-class weights, length C. With class indices, sample ``i`` is weighted by
        ``weight[target[i]]``; with probabilities, class ``c`` by ``weight[c]``.
    ignore_index : int, optional
        Class-index targets equal to this contribute no loss and no gradient (padding).
    label_smoothing : float, optional
        In [0, 1]: the target becomes ``(1 - eps) * y + eps / C`` (PyTorch's definition).
    reduction : {'mean', 'sum', 'none'}, optional
        ``'none'``: the per-sample losses. ``'sum'``: their sum. ``'mean'``: for class
        indices, the sum divided by the total weight of the non-ignored samples (PyTorch's
        weighted mean; 0.0 when every target is ignored, with a zero gradient); for
        probabilities, the sum divided by the number of samples.
    return_grad : bool, optional
        Also return d(loss)/d(logits) (for ``'none'``: the gradient of the sum of the
        per-sample losses).
    grad_out : ndarray, optional
        Where to write the gradient (logits' shape, result dtype); may be `logits` itself.
    temperature : float, optional
        The loss of ``z / temperature`` (finite, > 0). The gradient is with respect to the
        raw logits, so it carries the factor ``1 / temperature``.
    softcap : float, optional
        Logit soft-capping (Gemma 2): ``z -> softcap * tanh(z / softcap)``, applied before
        the temperature; finite, > 0. ``None`` (default): no capping. The gradient goes
        through the tanh: ``(1 - tanh(z / softcap)**2) / temperature``.
    z_loss : float, optional
        PaLM's auxiliary loss: each counted sample's loss gets
        ``+ z_loss * lse(z')**2``, ``lse`` the logsumexp of the transformed (capped,
        tempered, masked) logits; multiplied by the sample weight, not by class weights;
        finite, >= 0. A fully masked sample's term is 0.
    where : array_like of bool, optional
        Classes to include, broadcastable to the logits' shape (dtype bool). Masked
        classes are left out as if their logit were ``-inf``: their gradient is exactly 0;
        a label (or a positive target probability) on a masked class gives loss ``+inf``;
        label smoothing spreads ``eps`` over the sample's unmasked classes only.
    sample_weight : array_like, optional
        One weight per sample, broadcastable to the batch shape (the logits' shape
        without `axis`); finite, >= 0. Each sample's loss and gradient are multiplied by
        it, and ``'mean'`` divides by ``sum(sample_weight * weight[target])`` over the
        counted samples (``sum(sample_weight)`` for probabilities). A sample of weight 0
        contributes exactly 0 (also where its loss would be inf or NaN).
    workers : int, optional
        Threads to use, the calling one included: ``None`` (default) takes
        :func:`~logitkit.get_workers`, ``-1`` every usable core, ``-2`` all but one. The
        results are bit-identical whatever the number.

    Returns
    -------
    loss : scalar or ndarray
        A NumPy scalar for ``'mean'`` and ``'sum'``, an array for ``'none'``.
    grad : ndarray
        Only with ``return_grad=True``.

    Notes
    -----
    The loss is computed as ``logsumexp(z) - z_t``, never as ``log(softmax(z))``, so a
    logit of 1e4 or ``-inf`` on another class keeps it finite. With probability targets,
    ``0 * log 0`` counts as 0. Per sample, with weights :math:`w` (:math:`W = \sum_c w_c`)
    and smoothing :math:`\epsilon`, for class index :math:`t`:

    .. math:: \ell = (1-\epsilon) w_t (\mathrm{lse} - z_t)
              + \tfrac{\epsilon}{C} \sum_c w_c (\mathrm{lse} - z_c), \qquad
              \nabla_z \ell = a \bigl((1-\epsilon) w_t + \tfrac{\epsilon}{C} W\bigr)
              - (1-\epsilon) w_t e_t - \tfrac{\epsilon}{C} w

    and for probabilities :math:`y' = (1-\epsilon) y + \epsilon / C`:
    :math:`\ell = \sum_c w_c y'_c (\mathrm{lse} - z_c)`,
    :math:`\nabla_z \ell = a \sum_c w_c y'_c - w \odot y'`.

    With options, :math:`z` above is :math:`z' = c \tanh(z / c) / T` (softcap :math:`c`,
    temperature :math:`T`; :math:`z / T` without a softcap) with :math:`-\infty` at masked
    classes, :math:`C` and :math:`W` count the unmasked classes only, each sample's loss
    becomes :math:`s\,(\ell + \lambda\,\mathrm{lse}(z')^2)` (sample weight :math:`s`,
    z_loss :math:`\lambda`), and its gradient
    :math:`s\,(\nabla_{z'} \ell + 2 \lambda\,\mathrm{lse}(z')\,\mathrm{softmax}(z'))
    \odot \partial z' / \partial z`, 0 at masked classes. Calls with options take the
    row kernels (rows that are not contiguous along `axis` are gathered one at a time).

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not `ignore_index` (the message names the
        first such position and value).
    ValueError, TypeError
        Targets, weights, options or `grad_out` of the wrong shape, dtype or value.

    Examples
    --------
    Seed 004's example: scores ``[2, 3, 4]`` and the second class correct.

    >>> import numpy as np, logitkit
    >>> loss, grad = logitkit.cross_entropy(np.array([[2.0, 3.0, 4.0]]), np.array([1]),
    ...                                     reduction="sum", return_grad=True)
    >>> grad.round(4)
    array([[ 0.09  , -0.7553,  0.6652]])
    """
    threads = resolve_workers(workers)
    z, result_dtype = as_float_array(logits, "logits")
    ax = normalize_axis(axis, z.ndim)
    code = reduction_code(reduction)
    eps = _smoothing(label_smoothing)
    ignore = _ignore_index(ignore_index)
    shape = z.shape
    n = shape[ax]
    batch_shape = shape[:ax] + shape[ax + 1 :]
    w = _class_weights(weight, n, z.dtype)
    if z.dtype.itemsize == 2:
        target = np.asarray(target)
        z = widen_for(z, target)  # float32 probability targets of 16-bit logits
    labels, probs = _target(target, z, ax, batch_shape, ignore)
    temp = _temperature(temperature)
    cap = _softcap(softcap)
    zl = _z_loss(z_loss)
    mask = _where(where, shape)
    sw = _sample_weight(sample_weight, batch_shape)
    grad: NDArray[Any] | None = None
    returned: FloatArray | None = None
    if return_grad:
        grad, returned = _grad_buffer(grad_out, z, result_dtype, labels, probs, w, mask, sw)
    loss_array = np.empty(batch_shape, dtype=z.dtype) if code == 0 else None
    if temp == 1.0 and cap == 0.0 and zl == 0.0 and mask is None and sw is None:
        bad, bad_value, total, denominator, counted = _core.cross_entropy(
            z, labels, probs, w, ignore, eps, code, loss_array, grad, ax, threads
        )
    else:
        bad, bad_value, total, denominator, counted = _core.cross_entropy(
            z, labels, probs, w, ignore, eps, code, loss_array, grad, ax, threads,
            temperature=temp, softcap=cap, z_loss=zl, where=mask, sample_weight=sw,
        )
    if bad >= 0:
        raise _bad_label(bad, bad_value, batch_shape, n, ignore)
    loss = reduce_losses(code, loss_array, total, denominator, result_dtype, counted)
    if grad is None or returned is None:
        return loss
    if grad is not returned:
        copy_result(returned, grad)
    elif grad.dtype is not result_dtype and grad.dtype != result_dtype:
        returned = cast_result(grad, result_dtype)
    return loss, returned


@dask_aware
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    workers: int | None = None,
) -> Loss:
    r"""Negative log-likelihood of class indices, from log-probabilities.

    .. math:: \ell_i = -w_{t_i} \, \log p_i[t_i]

    For callers that already have log-probabilities (e.g. from :func:`log_softmax`);
    ``nll_loss(log_softmax(z), t)`` equals ``cross_entropy(z, t)``.

    Parameters
    ----------
    log_probs : array_like
        Log-probabilities (dtype rules as for :func:`cross_entropy`).
    target : array_like of int
        Class indices, of `log_probs`' shape without `axis`.
    axis : int, optional
        The class axis. Default: the last.
    weight : array_like, optional
        Per-class weights, length C.
    ignore_index : int, optional
        Targets equal to this contribute nothing.
    reduction : {'mean', 'sum', 'none'}, optional
        As for :func:`cross_entropy` with class indices.
    workers : int, optional
        Checked as elsewhere (see :func:`cross_entropy`), but unused: one gather per row
        runs on the calling thread.

    Returns
    -------
    scalar or ndarray
        The loss.
    """
    resolve_workers(workers)  # checked; one gather per row needs no threads
    lp, result_dtype = as_float_array(log_probs, "log_probs")
    ax = normalize_axis(axis, lp.ndim)
    code = reduction_code(reduction)
    ignore = _ignore_index(ignore_index)
    n = lp.shape[ax]
    batch_shape = lp.shape[:ax] + lp.shape[ax + 1 :]
    w = _class_weights(weight, n, lp.dtype)
    labels = _labels(target, batch_shape, ax, n, ignore)
    loss_array = np.empty(batch_shape, dtype=lp.dtype) if code == 0 else None
    bad, bad_value, total, denominator, counted = _core.nll_loss(
        lp, labels, w, ignore, code, loss_array, ax
    )
    if bad >= 0:
        raise _bad_label(bad, bad_value, batch_shape, n, ignore)
    return reduce_losses(code, loss_array, total, denominator, result_dtype, counted)

