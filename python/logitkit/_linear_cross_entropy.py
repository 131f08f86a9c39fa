"""linear_cross_entropy: the loss of a linear last layer without its N x V logits.

``cross_entropy(x @ W.T + b, target)`` and its gradients with respect to x, W and b,
computed a chunk of tokens at a time: the chunk's logits come from NumPy's BLAS
(``np.matmul`` into a reused buffer), logitkit's fused kernel turns them into the
per-token losses and, in place, into the gradient ``softmax - y``, and that gradient
goes at once into ``grad_x = g @ W`` and ``grad_W += g.T @ x``. Only one chunk of logits
exists at a time, and nothing is computed twice.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Literal, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import F32, F64, is_half
from ._cross_entropy import (
    _bad_label,
    _class_weights,
    _ignore_index,
    _labels,
    _smoothing,
    _sample_weight,
    _softcap,
    _where,
    _z_loss,
    cross_entropy,
    reduce_losses,
    reduction_code,
)
from ._options import checked_temperature
from ._typing import FloatArray, Loss, Reduction
from ._workers import resolve_workers

__all__ = ["LinearCrossEntropyGrads", "linear_cross_entropy"]

# The default chunk: about this many bytes of logits at a time (a multiple of 64 tokens,
# at least _MIN_CHUNK_ROWS, so that the matrix products keep BLAS's speed). Measured by
# benchmarks/bench_linear_cross_entropy.py --chunks 256,1024 (4096x1024 -> 32000 float32,
# forward+backward, 2 cores): 256 tokens (32 MiB) 4.74 s, 512 (64 MiB) 4.26 s, 1024
# 4.49 s; materialising all logits 4.57 s. Peak RSS above the inputs: 213, 244, 315 MiB,
# and 681 MiB materialising.
_CHUNK_BYTES = 64 << 20
_MIN_CHUNK_ROWS = 64
# grad_W's block of classes: a few MiB, so that it stays in the last-level cache between
# its product and its addition, in few enough BLAS calls that their start-up is negligible.
_W_BLOCK_BYTES = 8 << 20


class LinearCrossEntropyGrads(NamedTuple):
    """Gradients of :func:`linear_cross_entropy`'s loss with respect to its inputs."""

    x: FloatArray
    """d loss / d x, of x's shape and dtype."""
    linear_weight: FloatArray
    """d loss / d linear_weight, of its shape (V, H) and dtype."""
    linear_bias: FloatArray | None
    """d loss / d linear_bias (V,), or None when the call had no bias."""


def _float_operand(a: ArrayLike, name: str) -> NDArray[Any]:
    arr = a if type(a) is np.ndarray else np.asarray(a)
    dt = arr.dtype
    if dt == F32 or dt == F64 or is_half(dt):
        return arr
    if dt.kind in "biu":
        raise TypeError(
            f"{name} has dtype {dt}; linear_cross_entropy takes floating-point "
            f"{name} (float32, float64, float16 or bfloat16)"
        )
    raise TypeError(f"{name} has dtype {dt}, which logitkit does not compute in")


def _chunk_rows(chunk_size: int | None, tokens: int, vocab: int, itemsize: int) -> int:
    if chunk_size is None:
        # A multiple of 64 rows: BLAS's kernels work in blocks of rows.
        rows = _CHUNK_BYTES // max(1, vocab * itemsize) // 64 * 64
        return max(1, min(tokens, max(_MIN_CHUNK_ROWS, rows)))
    if isinstance(chunk_size, bool):
        raise TypeError("chunk_size must be a positive integer or None, got a bool")
    try:
        rows = operator.index(chunk_size)
    except TypeError:
        raise TypeError(
            f"chunk_size must be a positive integer or None, got {type(chunk_size).__name__}"
        ) from None
    if rows < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {rows}")
    return max(1, min(tokens, rows))


@overload
def linear_cross_entropy(
    x: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = ...,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Reduction = ...,
    temperature: float = ...,
    softcap: float | None = ...,
    z_loss: float = ...,
    where: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    return_grad: Literal[False] = ...,
    chunk_size: int | None = ...,
    workers: int | None = ...,
) -> Loss: ...
@overload
def linear_cross_entropy(
    x: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = ...,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Reduction = ...,
    temperature: float = ...,
    softcap: float | None = ...,
    z_loss: float = ...,
    where: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    return_grad: Literal[True],
    chunk_size: int | None = ...,
    workers: int | None = ...,
) -> tuple[Loss, LinearCrossEntropyGrads]: ...
@overload
def linear_cross_entropy(
    x: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = ...,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Reduction = ...,
    temperature: float = ...,
    softcap: float | None = ...,
    z_loss: float = ...,
    where: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ...,
    return_grad: bool,
    chunk_size: int | None = ...,
    workers: int | None = ...,
) -> Loss | tuple[Loss, LinearCrossEntropyGrads]: ...


def linear_cross_entropy(
    x: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    temperature: float = 1.0,
    softcap: float | None = None,
    z_loss: float = 0.0,
    where: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    chunk_size: int | None = None,
    workers: int | None = None,
) -> Loss | tuple[Loss, LinearCrossEntropyGrads]:
    r"""Cross-entropy of a linear layer's logits, without building the logits.

    Computes ``cross_entropy(x @ linear_weight.T + linear_bias, target, ...)`` (PyTorch's
    ``linear_cross_entropy``), and with ``return_grad=True`` its gradients with respect to
    `x`, `linear_weight` and `linear_bias`, a chunk of tokens at a time: the extra memory
    is one chunk of logits (``chunk_size x V``) instead of all N x V of them.

    Per chunk, ``np.matmul`` computes the logits into a reused buffer, logitkit's fused
    kernel turns them in one pass into the per-token losses and, in place, into the
    gradient :math:`g = \mathrm{softmax}(z) - y`, and ``np.matmul`` takes ``g @ W`` into
    ``grad.x`` and adds ``g.T @ x`` into ``grad.linear_weight`` right away: nothing is
    computed twice. The matrix products use NumPy's BLAS (and its threads); `workers`
    sets the threads of logitkit's kernel.

    Parameters
    ----------
    x : array_like, shape (..., H)
        Hidden states (float32 or float64; float16 and bfloat16 are widened to float32 a
        chunk at a time).
    linear_weight : array_like, shape (V, H)
        The output projection (an embedding matrix, for tied weights).
    target : array_like of int, shape (...)
        Class index of each token (x's shape without its last axis).
    linear_bias : array_like, shape (V,), optional
        Added to every token's logits.
    weight, ignore_index, label_smoothing, reduction
        As in :func:`cross_entropy` (``'mean'`` divides by the total class weight of the
        tokens not ignored).
    temperature, softcap, z_loss
        As in :func:`cross_entropy`: logits ``softcap * tanh(z / softcap) / temperature``,
        and PaLM's ``z_loss * lse^2`` per counted token.
    where : array_like of bool, optional
        As in :func:`cross_entropy`: classes left out of each token's softmax. A mask of
        shape ``(V,)`` (one vocabulary mask for every token) costs nothing; a mask of
        another shape broadcastable to ``(..., V)`` is expanded to N x V booleans (one
        byte each).
    sample_weight : array_like, optional
        One weight per token (broadcastable to `target`'s shape), as in
        :func:`cross_entropy`: each token's loss and gradient are multiplied by it, and
        ``'mean'`` divides by the sum of sample weight times class weight of the tokens
        not ignored.
    return_grad : bool, optional
        Also return a :class:`LinearCrossEntropyGrads` ``(x, linear_weight, linear_bias)``:
        the gradients of the loss (for ``'none'``: of the sum of the per-token losses), in
        the inputs' dtypes; ``linear_bias`` is None without a bias.
    chunk_size : int, optional
        Tokens per chunk. Default: about 64 MiB of logits (at least 64 tokens), which
        keeps the matrix products at BLAS speed (see the README's measurements).
    workers : int, optional
        Threads of logitkit's kernel, as in :func:`cross_entropy`.

    Returns
    -------
    loss : scalar or ndarray
        A NumPy scalar for ``'mean'`` and ``'sum'``, per-token losses of shape ``(...)``
        for ``'none'`` (their negatives are the tokens' log-probabilities). float32 for
        float32 and 16-bit inputs, float64 if `x` or `linear_weight` is float64.
    grads : LinearCrossEntropyGrads
        Only with ``return_grad=True``.

    Raises
    ------
    IndexError
        A target outside ``[0, V)`` that is not `ignore_index`.
    ValueError, TypeError
        Inputs of the wrong shape, dtype or value.

    Examples
    --------
    >>> import numpy as np, logitkit
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 4))
    >>> W = rng.standard_normal((10, 4))
    >>> t = np.array([1, 2, 3, 4, 5, 6])
    >>> loss, grads = logitkit.linear_cross_entropy(x, W, t, return_grad=True, chunk_size=4)
    >>> bool(np.isclose(loss, logitkit.cross_entropy(x @ W.T, t)))
    True
    >>> grads.linear_weight.shape
    (10, 4)
    """
    threads = resolve_workers(workers)
    code = reduction_code(reduction)
    eps = _smoothing(label_smoothing)
    ignore = _ignore_index(ignore_index)
    hidden = _float_operand(x, "x")
    proj = _float_operand(linear_weight, "linear_weight")
    if hidden.ndim < 1:
        raise ValueError("x must have at least one dimension (its last is the hidden size)")
    if proj.ndim != 2:
        raise ValueError(f"linear_weight must be 2-d (V, H), got shape {proj.shape}")
    vocab, size = proj.shape
    if hidden.shape[-1] != size:
        raise ValueError(
            f"x's last dimension is {hidden.shape[-1]}, but linear_weight has shape "
            f"{proj.shape} (V, H): expected H = {size}"
        )
    if vocab < 1:
        raise ValueError("linear_weight must have at least one row (class)")
    ct = F64 if (hidden.dtype == F64 or proj.dtype == F64) else F32
    bias = None
    if linear_bias is not None:
        bias = _float_operand(linear_bias, "linear_bias")
        if bias.shape != (vocab,):
            raise ValueError(f"linear_bias has shape {bias.shape}, expected ({vocab},)")
    batch_shape = hidden.shape[:-1]
    labels = _labels(target, batch_shape, -1, vocab, ignore)
    class_w = _class_weights(weight, vocab, ct)
    tokens = math.prod(batch_shape)
    flat_x = hidden.reshape(tokens, size)
    flat_t = labels.reshape(tokens)

    # Every label is checked before any work, so an error names its position in target.
    counted_mask = flat_t != ignore
    bad = counted_mask & ((flat_t < 0) | (flat_t >= vocab))
    if bad.any():
        position = int(np.argmax(bad))
        raise _bad_label(position, int(flat_t[position]), batch_shape, vocab, ignore)
    counted = int(np.count_nonzero(counted_mask))
    sw = _sample_weight(sample_weight, batch_shape)
    token_w = None if sw is None else sw.reshape(tokens)
    per_token = np.ones(0) if class_w is None else class_w[flat_t[counted_mask]]
    if class_w is None and token_w is None:
        denominator = float(counted)
    elif token_w is None:
        denominator = float(np.sum(per_token, dtype=np.float64))
    elif class_w is None:
        denominator = float(np.sum(token_w[counted_mask]))
    else:
        denominator = float(np.sum(token_w[counted_mask] * per_token))
    # The mask, checked against the logits' shape; a (V,) mask is kept as one row.
    mask = None
    if where is not None:
        flat_mask = np.asarray(where)
        _where(flat_mask, batch_shape + (vocab,))  # dtype and shape, or the error
        if flat_mask.ndim <= 1:
            mask = np.broadcast_to(flat_mask, (vocab,))
        else:
            # The broadcast mask of x's batch shape, as one row per token (a copy only
            # when its strides cannot be merged).
            mask = np.broadcast_to(flat_mask, batch_shape + (vocab,)).reshape(tokens, vocab)

    # The options cross_entropy takes, passed on only when set, so that a call without
    # them runs the plain kernel.
    # (Checked here, before any product is computed.)
    options: dict[str, Any] = {}
    if checked_temperature(temperature) != 1.0:
        options["temperature"] = temperature
    if softcap is not None:
        options["softcap"] = _softcap(softcap)
    if _z_loss(z_loss) != 0.0:
        options["z_loss"] = z_loss

    # 16-bit weights are widened once (x is widened a chunk at a time below).
    w_ct = proj if proj.dtype == ct else proj.astype(ct)
    b_ct = None if bias is None else (bias if bias.dtype == ct else bias.astype(ct))
    rows = _chunk_rows(chunk_size, tokens, vocab, ct.itemsize)
    logits = np.empty((rows, vocab), dtype=ct)
    losses = np.empty(tokens, dtype=ct)
    grad_x = grad_w = grad_b = w_block = None
    if return_grad:
        grad_x = np.empty((tokens, size), dtype=ct)
        grad_w = np.zeros((vocab, size), dtype=ct)
        grad_b = None if bias is None else np.zeros(vocab, dtype=np.float64)
        # grad_W += g.T @ x_chunk a block of classes at a time, through a block small
        # enough to stay in the cache: a full V x H temporary would cost its memory and a
        # trip through DRAM per chunk.
        w_block_rows = max(1, min(vocab, _W_BLOCK_BYTES // max(1, size * ct.itemsize)))
        w_block = np.empty((w_block_rows, size), dtype=ct)

    for start in range(0, tokens, rows):
        stop = min(tokens, start + rows)
        m = stop - start
        xc = flat_x[start:stop]
        if xc.dtype != ct:
            xc = xc.astype(ct)
        z = logits[:m]
        np.matmul(xc, w_ct.T, out=z)
        if b_ct is not None:
            np.add(z, b_ct, out=z)
        tc = flat_t[start:stop]
        if token_w is not None:
            options["sample_weight"] = token_w[start:stop]
        if mask is not None:
            chunk_mask = mask[start:stop] if mask.ndim == 2 else np.broadcast_to(mask, (m, vocab))
            options["where"] = chunk_mask
        if not return_grad:
            losses[start:stop] = cross_entropy(
                z, tc, weight=class_w, ignore_index=ignore, label_smoothing=eps,
                reduction="none", workers=threads, **options,
            )
            continue
        chunk_losses, g = cross_entropy(
            z, tc, weight=class_w, ignore_index=ignore, label_smoothing=eps,
            reduction="none", return_grad=True, grad_out=z, workers=threads, **options,
        )
        losses[start:stop] = chunk_losses
        assert grad_x is not None and grad_w is not None and w_block is not None
        np.matmul(g, w_ct, out=grad_x[start:stop])
        if start == 0:
            np.matmul(g.T, xc, out=grad_w)
        else:
            step = w_block.shape[0]
            for v0 in range(0, vocab, step):
                v1 = min(vocab, v0 + step)
                part = w_block[: v1 - v0]
                np.matmul(g[:, v0:v1].T, xc, out=part)
                np.add(grad_w[v0:v1], part, out=grad_w[v0:v1])
        if grad_b is not None:
            grad_b += np.sum(g, axis=0, dtype=np.float64)

    total = float(np.sum(losses, dtype=np.float64))
    loss = reduce_losses(code, losses.reshape(batch_shape), total, denominator, ct, counted)
    if not return_grad:
        return loss
    assert grad_x is not None and grad_w is not None
    if code == 2:
        # The mean's 1/denominator, applied once to the results (mean over nothing: a
        # zero gradient, as cross_entropy gives).
        with np.errstate(divide="ignore"):
            scale = 0.0 if counted == 0 else float(np.float64(1.0) / denominator)
        grad_x *= ct.type(scale)
        grad_w *= ct.type(scale)
        if grad_b is not None:
            grad_b *= scale
    grads = LinearCrossEntropyGrads(
        x=grad_x.reshape(hidden.shape).astype(hidden.dtype, copy=False),
        linear_weight=grad_w.astype(proj.dtype, copy=False),
        linear_bias=None if grad_b is None or bias is None else grad_b.astype(bias.dtype),
    )
    return loss, grads
