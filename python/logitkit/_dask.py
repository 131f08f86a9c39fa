"""logitkit's functions on Dask arrays: lazy, for any chunking, the class axis split too.

Imported (and Dask with it) only when a Dask array reaches a public function
(``_dispatch.dask_aware``). Each function here has the signature of the NumPy one and
returns Dask arrays; a loss under ``"mean"``/``"sum"`` is a 0-d Dask array. Nothing is
computed while the graph is built.

How a row whose classes are split between chunks is computed (the vocabulary-parallel
case): each block of classes gives, per row, a state (m, s) -- its maximum and the sum of
exp(x - m) minus 1, by the C++ core (``_core._row_states``, with temperature= and where=
too) -- plus what the function needs (the target's logit, the label-smoothing and
probability-target sums, the block's own entropy or divergence, the count of included
classes). The states of a row's blocks are merged in a tree (``dask.array.reduction``,
whose ``split_every`` comes from ``dask.config``, as for Dask's own reductions) by
``_core._merge_row_states``; softmax, log_softmax and gradients are then a second blockwise
pass from the merged state (``_core._rows_from_state``). The tree depends on the chunks
only, so results do not depend on scheduling. When the class axis is one chunk, each block
goes to the NumPy function whole.

Two options change the logits themselves and are computed with the class axis rechunked
into one chunk (correct for any chunking, at the cost of the rechunk): ``softcap=`` and
cross_entropy's ``where=``; so is softmax_jacobian (C x C per row). On a split axis the
backward products are Dask arithmetic, with float64 row sums.

Threads: each block is computed with ``workers=1`` unless ``workers=`` is given (then that
many threads per block): Dask runs blocks in parallel already, one per worker thread, and
logitkit's own threads on top would oversubscribe the cores.
"""

# dask.array has no type annotations: its calls are untyped here.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import dask.array as da
import numpy as np

from . import _core
from ._arrays import cast_result, normalize_axis
from ._binary import binary_cross_entropy as _np_bce
from ._binary import log_sigmoid as _np_log_sigmoid
from ._binary import sigmoid as _np_sigmoid
from ._cross_entropy import cross_entropy as _np_cross_entropy
from ._cross_entropy import nll_loss as _np_nll_loss
from ._cross_entropy import reduce_losses, reduction_code
from ._divergence import _kl_reduction_code, _log_base
from ._divergence import entropy as _np_entropy
from ._divergence import kl_divergence as _np_kl_divergence
from ._options import temperature_scale
from ._softmax import log_softmax as _np_log_softmax
from ._softmax import log_softmax_backward as _np_log_softmax_backward
from ._softmax import logsumexp as _np_logsumexp
from ._softmax import softmax as _np_softmax
from ._softmax import softmax_backward as _np_softmax_backward
from ._softmax import softmax_jacobian as _np_softmax_jacobian

_BATCH_INDEX = "abcdefghijklmnopqrstuvwx"  # blockwise indices of the batch dimensions
_CLASS = "z"  # ... of the class axis (last, once moved there)
_FIELD = "y"  # ... of the fields of a state


# --- arguments ------------------------------------------------------------------------


def _as_dask(a: Any) -> Any:
    a = a if isinstance(a, da.Array) else da.asarray(a)
    if any(math.isnan(c) for chunks in a.chunks for c in chunks):
        raise ValueError(
            "logitkit needs Dask arrays with known chunk sizes (these come from boolean "
            "indexing or similar); call .compute_chunk_sizes() first"
        )
    return a


def _no_out(value: Any, name: str) -> None:
    if value is not None:
        raise TypeError(
            f"{name}= is not supported for Dask arrays: the result is a new lazy Dask array"
        )


def _block_workers(workers: int | None) -> int:
    """Threads per block: 1 unless given (Dask runs blocks in parallel already)."""
    if workers is None:
        return 1
    from ._workers import resolve_workers

    return resolve_workers(workers)


def _probe_shape(ndim: int, ax: int) -> tuple[int, ...]:
    shape = [1] * ndim
    if ndim:
        shape[ax] = 2
    return tuple(shape)


def _float_logits(x: Any) -> Any:
    """Integer and bool logits in float64, as the NumPy functions take them."""
    return x.astype(np.float64) if x.dtype.kind in "biu" else x


def _batch_index(nb: int) -> str:
    if nb > len(_BATCH_INDEX):
        raise ValueError(f"Dask arrays of more than {len(_BATCH_INDEX) + 1} dimensions")
    return _BATCH_INDEX[:nb]


def _class_last(x: Any, ax: int) -> Any:
    return x if ax == x.ndim - 1 else da.moveaxis(x, ax, -1)


def _class_back(x: Any, ax: int) -> Any:
    return x if ax == x.ndim - 1 else da.moveaxis(x, -1, ax)


def _row_aligned(a: Any, xm: Any, name: str) -> Any:
    """A per-row array (the batch shape of class-last xm), chunked as xm's rows."""
    a = _as_dask(a)
    if a.shape != xm.shape[:-1]:
        raise ValueError(f"{name} has shape {a.shape}, expected {xm.shape[:-1]}")
    return a.rechunk(xm.chunks[:-1])


def _whole_classes(x: Any, ax: int) -> Any:
    return x.rechunk({ax: -1}) if x.numblocks[ax] > 1 else x


def _class_offsets(xm: Any) -> Any:
    starts = np.cumsum((0,) + xm.chunks[-1][:-1]).astype(np.int64)
    return da.from_array(starts, chunks=1)


def _core_array(a: Any, dtype: Any = None) -> np.ndarray:
    """C-contiguous and aligned, as the core's entry points take arrays: blocks that come
    from another worker process are unpickled from a byte buffer, at any address."""
    a = np.asarray(a, dtype=dtype)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return np.require(a, requirements=("C", "A"))


def _rows2d(block: np.ndarray) -> np.ndarray:
    """A class-last block as aligned rows x classes, each row contiguous: a block of
    columns of a larger array stays a view (the core takes any distance between rows)."""
    n = block.shape[-1]
    if (block.ndim == 2 and block.flags.aligned and block.dtype.isnative
            and (n <= 1 or block.strides[1] == block.itemsize)
            and block.strides[0] >= n * block.itemsize):
        return block
    return _core_array(block).reshape(math.prod(block.shape[:-1]), n)


# --- states ---------------------------------------------------------------------------


def _softmax_state(block: np.ndarray, workers: int, fields: int = 2,
                   scale: float | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """(rows, fields) float64: (m, s) of each row of the class-last block in fields 0, 1:
    with `scale` (1/T), s sums exp((x - m) * scale); with `mask`, over its classes only."""
    rows = _rows2d(block)
    state = np.zeros((rows.shape[0], fields))
    _core._row_states(rows, state, workers, scale, None if mask is None else _rows2d(mask))
    return state


def _lse(state: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """logsumexp of x * scale from states (..., >=2): m * scale + log1p(s), and m itself
    where m is not finite."""
    m, s = state[..., 0], state[..., 1]
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(m), m * scale + np.log1p(s), m)


def _state_block(block: np.ndarray, offset: np.ndarray, *extra: Any, kind: str,
                 workers: int, **kw: Any) -> np.ndarray:
    lead = block.shape[:-1]
    state = _STATE_FIELDS[kind](block, int(offset[0]), *extra, workers=workers, **kw)
    return state.reshape(lead + (1, state.shape[-1]))


def _included(block: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The number of classes of each row the mask includes."""
    if mask is None:
        return np.full(math.prod(block.shape[:-1]), float(block.shape[-1]))
    counts: np.ndarray = _rows2d(mask).sum(axis=1, dtype=np.float64)
    return counts


def _fields_lse(block: np.ndarray, offset: int, *mask: np.ndarray, workers: int,
                scale: float | None = None) -> np.ndarray:
    return _softmax_state(block, workers, 2, scale, mask[0] if mask else None)


def _centred_sum(rows: np.ndarray, m: np.ndarray, weights: np.ndarray | None,
                 totals: np.ndarray) -> np.ndarray:
    """Per row: sum over the block of weights_j (x_j - m) in float64 (weights: per class,
    or per element, or None for 1s), with rows of -inf only (m = -inf) at -inf where their
    weights sum (`totals`) to more than 0, else 0. Every term has the sign of its weight:
    x - m <= 0, so nothing cancels."""
    compute = np.result_type(rows.dtype, np.float32)
    finite = np.isfinite(m)
    shift = np.where(finite, m, 0).astype(compute)[:, None]
    centred = rows.astype(compute, copy=False) - shift
    if weights is None:
        total = centred.sum(axis=1, dtype=np.float64)
    else:
        total = (centred * weights.astype(compute, copy=False)).sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(m == -np.inf, np.where(totals > 0, -np.inf, 0.0), total)


def _fields_labels(block: np.ndarray, offset: int, labels: np.ndarray, *, workers: int,
                   ignore_index: int, smoothing: float, weight: np.ndarray | None,
                   scale: float | None, **unused: Any) -> np.ndarray:
    """(m, s, target logit where the target is in this block else 0, and with label
    smoothing D = sum of w_j (x_j - m) and W = sum of w_j over the block's classes).
    The logits are raw (m, the target logit, D); only s has the temperature's scale."""
    state = _softmax_state(block, workers, fields=5, scale=scale)
    rows = _rows2d(block)
    width = rows.shape[1]
    t = np.asarray(labels).reshape(-1).astype(np.int64)
    local = t - offset
    inside = (local >= 0) & (local < width) & (t != ignore_index)
    r = np.flatnonzero(inside)
    state[r, 2] = rows[r, local[r]]
    if smoothing > 0:
        w = None if weight is None else weight[offset : offset + width]
        total = float(width) if w is None else float(np.sum(w))
        state[:, 4] = total
        state[:, 3] = _centred_sum(rows, state[:, 0], None if w is None else w[None, :],
                                   state[:, 4])
    return state


def _smoothed_targets(y: np.ndarray, offset: int, smoothing: float, n: int,
                      weight: np.ndarray | None) -> np.ndarray:
    """w_j y'_j of a block of probability targets, y' = (1 - eps) y + eps / n, float64."""
    wy = np.asarray(y, dtype=np.float64)
    if smoothing > 0:
        wy = (1 - smoothing) * wy + smoothing / n
    if weight is not None:
        wy = wy * weight[offset : offset + wy.shape[-1]]
    return wy


def _fields_probs(block: np.ndarray, offset: int, y: np.ndarray, *, workers: int,
                  smoothing: float, weight: np.ndarray | None, n: int,
                  scale: float | None, **unused: Any) -> np.ndarray:
    """(m, s, A = sum of w_j y'_j, E = sum of w_j y'_j (x_j - m)) over the block (raw
    logits; s with the temperature's scale)."""
    state = _softmax_state(block, workers, fields=4, scale=scale)
    rows = _rows2d(block)
    wy = _smoothed_targets(_rows2d(y), offset, smoothing, n, weight)
    state[:, 2] = wy.sum(axis=1)
    state[:, 3] = _centred_sum(rows, state[:, 0], wy, state[:, 2])
    return state


def _fields_entropy(block: np.ndarray, offset: int, *mask: np.ndarray, workers: int,
                    scale: float | None = None) -> np.ndarray:
    """(m, s, entropy of the block's own softmax, included classes)."""
    m = mask[0] if mask else None
    state = _softmax_state(block, workers, 4, scale, m)
    temperature = 1.0 if scale is None else 1.0 / scale
    state[:, 2] = np.asarray(_np_entropy(_rows2d(block), temperature=temperature,
                                         where=None if m is None else _rows2d(m),
                                         workers=workers), dtype=np.float64)
    state[:, 3] = _included(block, m)
    return state


def _fields_kl(block: np.ndarray, offset: int, q_block: np.ndarray, *mask: np.ndarray,
               workers: int, scale: float | None = None) -> np.ndarray:
    """(m_p, s_p, m_q, s_q, KL of the block's own two softmaxes, included classes)."""
    m = mask[0] if mask else None
    state = _softmax_state(block, workers, 6, scale, m)
    state[:, 2:4] = _softmax_state(q_block, workers, 2, scale, m)
    temperature = 1.0 if scale is None else 1.0 / scale
    per_row = _np_kl_divergence(_rows2d(block), _rows2d(q_block), temperature=temperature,
                                where=None if m is None else _rows2d(m), workers=workers)
    state[:, 4] = np.asarray(per_row, dtype=np.float64)
    state[:, 5] = _included(block, m)
    return state


def _fields_softmax(block: np.ndarray, offset: int, *mask: np.ndarray, workers: int,
                    scale: float | None) -> np.ndarray:
    """(m, s, included classes), with the options in the core: m the maximum of the
    included x, s the sum of exp((x - m) * scale) over them, minus 1."""
    rows = _rows2d(block)
    state = np.zeros((rows.shape[0], 3))
    where = _rows2d(mask[0]) if mask else None
    _core._row_states(rows, state, workers, scale, where)
    state[:, 2] = _included(block, mask[0] if mask else None)
    return state


_STATE_FIELDS: dict[str, Callable[..., np.ndarray]] = {
    "lse": _fields_lse,
    "softmax": _fields_softmax,
    "labels": _fields_labels,
    "probs": _fields_probs,
    "entropy": _fields_entropy,
    "kl": _fields_kl,
}


def _merge_lse_fields(states: np.ndarray, out: np.ndarray, first: int, scale: float) -> None:
    """Merge fields first, first + 1 (an (m, s) pair) of rows x k x fields into out."""
    pair = _core_array(states[:, :, first : first + 2])
    merged = np.empty((states.shape[0], 2))
    _core._merge_row_states(pair, merged, scale)
    out[:, first : first + 2] = merged


def _weights_of_blocks(states: np.ndarray, merged: np.ndarray, first: int,
                       scale: float) -> np.ndarray:
    """Each block's share of its row's exponential sum (rows x k), for the pair at `first`;
    0 for blocks of -inf only."""
    with np.errstate(invalid="ignore", over="ignore"):
        lse_b = _lse(states[:, :, first : first + 2], scale)
        lse = _lse(merged[:, first : first + 2], scale)[:, None]
        share = np.exp(lse_b - lse)
    return np.where(states[:, :, first] == -np.inf, 0.0, share)


def _merge_block(x: np.ndarray, axis: Any = None, keepdims: bool = True, *,
                 kind: str, scale: float = 1.0) -> np.ndarray:
    """dask.array.reduction's combine and aggregate: (..., k, F) -> (..., 1, F)."""
    lead, (k, fields) = x.shape[:-2], x.shape[-2:]
    states = _core_array(x.reshape(math.prod(lead), k, fields))
    out = np.empty((states.shape[0], fields))
    _core._merge_row_states(states, out, scale)
    with np.errstate(invalid="ignore", over="ignore"):
        if kind == "softmax":
            out[:, 2] = states[:, :, 2].sum(axis=1)  # included classes
        elif kind in ("labels", "probs"):
            # labels: the target logit (one block has it, the others 0), and the
            # smoothing sums D and W; probs: A and E. D and E are relative to each block's
            # maximum: to the row's, D + W (m_b - m), each term <= 0.
            total, centred = (4, 3) if kind == "labels" else (2, 3)
            if kind == "labels":
                out[:, 2] = states[:, :, 2].sum(axis=1)
            gap = states[:, :, 0] - out[:, 0:1]
            shifted = states[:, :, centred] + np.where(
                states[:, :, total] == 0, 0.0, states[:, :, total] * gap)
            out[:, centred] = shifted.sum(axis=1)
            out[:, total] = states[:, :, total].sum(axis=1)
        elif kind == "entropy":
            # H = sum over blocks of pi_b (H_b + lse - lse_b), pi_b = exp(lse_b - lse):
            # every term >= 0, so nothing cancels.
            share = _weights_of_blocks(states, out, 0, scale)
            gap = _lse(out, scale)[:, None] - _lse(states, scale)
            terms = np.where(share > 0, share * (states[:, :, 2] + gap), 0.0)
            out[:, 2] = np.where(np.isfinite(out[:, 0]), terms.sum(axis=1), np.nan)
            # A row with no class included (where=) has entropy 0.
            out[:, 3] = states[:, :, 3].sum(axis=1)
            out[:, 2] = np.where(out[:, 3] == 0, 0.0, out[:, 2])
        elif kind == "kl":
            # KL = sum_b pi_b KL_b + KL(pi || rho), pi_b and rho_b the blocks' shares of P
            # and Q.
            _merge_lse_fields(states, out, 2, scale)
            pi = _weights_of_blocks(states, out, 0, scale)
            log_pi = _lse(states[:, :, 0:2], scale) - _lse(out[:, 0:2], scale)[:, None]
            log_rho = _lse(states[:, :, 2:4], scale) - _lse(out[:, 2:4], scale)[:, None]
            # A block where Q is -inf throughout and P is not: Q has no mass where P
            # has some (the block's own KL_b is NaN: its Q is 0/0).
            terms = np.where(pi > 0, pi * (states[:, :, 4] + log_pi - log_rho), 0.0)
            terms = np.where((pi > 0) & (states[:, :, 2] == -np.inf), np.inf, terms)
            finite = np.isfinite(out[:, 0]) & np.isfinite(out[:, 2])
            out[:, 4] = np.where(finite, terms.sum(axis=1), np.nan)
            out[:, 5] = states[:, :, 5].sum(axis=1)
            out[:, 4] = np.where(out[:, 5] == 0, 0.0, out[:, 4])
    return out.reshape(lead + (1, fields))


def _keep_block(x: np.ndarray, axis: Any = None, keepdims: bool = True) -> np.ndarray:
    return x


def _merged_states(xm: Any, kind: str, fields: int, workers: int, *extra: Any,
                   merge_scale: float = 1.0, **kw: Any) -> Any:
    """Per row of class-last xm, the merged state of its class blocks: (batch..., fields).

    extra: per-row arrays (batch shape) or arrays of xm's shape, chunked like xm.
    """
    nb = xm.ndim - 1
    b = _batch_index(nb)
    args: list[Any] = [xm, b + _CLASS, _class_offsets(xm), _CLASS]
    for e in extra:
        args += [e, b + _CLASS if e.ndim == xm.ndim else b]
    states = da.blockwise(
        _state_block, b + _CLASS + _FIELD, *args,
        new_axes={_FIELD: fields}, adjust_chunks={_CLASS: 1}, align_arrays=False,
        dtype=np.float64, meta=np.empty((0,) * (nb + 2)), kind=kind, workers=workers, **kw,
    )
    merged = da.reduction(
        states, chunk=_keep_block,
        combine=functools.partial(_merge_block, kind=kind, scale=merge_scale),
        aggregate=functools.partial(_merge_block, kind=kind, scale=merge_scale), axis=nb,
        keepdims=True,
        dtype=np.float64, concatenate=True, meta=np.empty((0,) * (nb + 2)),
    )
    return merged[(slice(None),) * nb + (0,)]


def _from_state_block(block: np.ndarray, state: np.ndarray, *mask: np.ndarray, log: bool,
                      workers: int, scale: float | None = None) -> np.ndarray:
    rows = _rows2d(block)
    out = np.empty_like(rows)
    st = _core_array(state.reshape(rows.shape[0], state.shape[-1]))
    where = _rows2d(mask[0]) if mask else None
    _core._rows_from_state(rows, _core_array(st[:, :2]), None, out, log, workers, scale, where)
    if st.shape[1] > 2:
        # Rows with no class included (where=): softmax 0, log_softmax -inf.
        out[st[:, 2] == 0] = -np.inf if log else 0
    return out.reshape(block.shape)


def _like_x(func: Any, xm: Any, dtype: Any, *args: Any, **kw: Any) -> Any:
    """Blockwise over class-last xm: an array like xm. args: (array, kind) pairs, kind
    "like" (xm's shape), "rows" (its batch shape), "state" (batch shape plus fields) or
    "blocks" (one value per class block), or plain values."""
    nb = xm.ndim - 1
    return da.blockwise(
        func, _batch_index(nb) + _CLASS, xm, _batch_index(nb) + _CLASS,
        *_indexed(args, nb), align_arrays=False, concatenate=True, dtype=dtype,
        meta=np.empty((0,) * xm.ndim, dtype=dtype), **kw,
    )


def _per_row(func: Any, xm: Any, dtype: Any, *args: Any, **kw: Any) -> Any:
    """Blockwise giving one value per row of class-last xm, from (array, kind) args as
    for _like_x (none "like" unless its classes are one chunk)."""
    nb = xm.ndim - 1
    return da.blockwise(
        func, _batch_index(nb), *_indexed(args, nb), align_arrays=False, concatenate=True,
        dtype=dtype, meta=np.empty((0,) * nb, dtype=dtype), **kw,
    )


def _with_class_axis(*blocks: Any, block_func: Any, **kw: Any) -> np.ndarray:
    return np.asarray(block_func(*blocks, **kw))[..., None]


def _reduce_whole(func: Any, xm: Any, dtype: Any, *args: Any, **kw: Any) -> Any:
    """func(block of xm, ...) per block of class-last xm whose classes are one chunk,
    giving one value per row. (Not by dropping the class axis in blockwise: Dask would
    concatenate the single block along it, a copy of every block.)"""
    nb = xm.ndim - 1
    index = _batch_index(nb) + _CLASS
    kept = da.blockwise(
        _with_class_axis, index, xm, index, *_indexed(args, nb), adjust_chunks={_CLASS: 1},
        align_arrays=False, dtype=dtype, meta=np.empty((0,) * xm.ndim, dtype=dtype),
        block_func=func, **kw,
    )
    return kept[..., 0]


def _indexed(args: tuple[Any, ...], nb: int) -> list[Any]:
    b = _batch_index(nb)
    index = {"like": b + _CLASS, "rows": b, "state": b + _FIELD, "blocks": _CLASS}
    pairs: list[Any] = []
    for a in args:
        if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], da.Array):
            pairs += [a[0], index[a[1]]]
        else:
            pairs += [a, None]
    return pairs


# --- results --------------------------------------------------------------------------


def _finish_loss(total: np.ndarray, denominator: np.ndarray, counted: np.ndarray, *,
                 code: int, result_dtype: Any) -> np.ndarray:
    value = reduce_losses(code, None, float(total), float(denominator), result_dtype,
                          int(counted))
    return np.asarray(value, dtype=result_dtype)


def _reduced(per_row: Any, code: int, result_dtype: Any, denominator: Any = None,
             counted: Any = None) -> Any:
    """A 0-d Dask array: the sum of per-row float64 values, or their mean over
    `denominator` (0-d Dask arrays; default: the number of rows)."""
    total = per_row.sum(dtype=np.float64)
    if denominator is None:
        denominator = da.asarray(float(per_row.size))
        counted = da.asarray(per_row.size)
    return da.map_blocks(_finish_loss, total, denominator, counted, code=code,
                         result_dtype=result_dtype, dtype=result_dtype,
                         meta=np.empty((), dtype=result_dtype))


def _cast(a: np.ndarray, *, result_dtype: Any) -> np.ndarray:
    return cast_result(np.asarray(a), np.dtype(result_dtype))


# --- the softmax family ---------------------------------------------------------------


def _call(func: Any, *blocks: Any, **kw: Any) -> Any:
    return func(*blocks, **kw)


def _call_where(func: Any, x: np.ndarray, mask: np.ndarray, **kw: Any) -> Any:
    return func(x, where=mask, **kw)


def _mask_like(where: Any, x: Any) -> Any:
    mask = _as_dask(where)
    if mask.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {mask.dtype}")
    try:
        return da.broadcast_to(mask, x.shape).rechunk(x.chunks)
    except ValueError:
        raise ValueError(
            f"where has shape {mask.shape}, which does not broadcast to the input's shape {x.shape}"
        ) from None


def _class_last_mask(where: Any, x: Any, ax: int, xm: Any) -> list[Any]:
    """[where=, broadcast to x, class axis last, chunked like xm], or [] without one."""
    if where is None:
        return []
    return [_class_last(_mask_like(where, x), ax).rechunk(xm.chunks)]


def _normalize(np_func: Any, log: bool, x: Any, axis: int, temperature: float, where: Any,
               out: Any, workers: int | None) -> Any:
    _no_out(out, "out")
    x = _as_dask(x)
    ax = normalize_axis(axis, x.ndim)
    dtype = np_func(np.zeros(_probe_shape(x.ndim, ax), x.dtype), axis=ax,
                    temperature=temperature).dtype
    w = _block_workers(workers)
    if x.ndim and x.numblocks[ax] > 1:
        xm = _class_last(_float_logits(x), ax)
        scale = temperature_scale(temperature)
        masks = _class_last_mask(where, x, ax, xm)
        state = _merged_states(xm, "softmax", 3, w, *masks, scale=scale,
                               merge_scale=1.0 if scale is None else scale)
        result = _like_x(_from_state_block, xm, dtype, (state, "state"),
                         *[(m, "like") for m in masks], log=log, workers=w, scale=scale)
        return _class_back(result, ax)
    x1 = _whole_classes(x, ax) if x.ndim else x
    kw = {"axis": ax, "temperature": temperature, "workers": w}
    if where is None:
        return da.map_blocks(_call, np_func, x1, dtype=dtype, **kw)
    return da.map_blocks(_call_where, np_func, x1, _mask_like(where, x1), dtype=dtype, **kw)


def softmax(x: Any, axis: int = -1, *, temperature: float = 1.0, where: Any = None,
            out: Any = None, workers: int | None = None) -> Any:
    return _normalize(_np_softmax, False, x, axis, temperature, where, out, workers)


def log_softmax(x: Any, axis: int = -1, *, temperature: float = 1.0, where: Any = None,
                out: Any = None, workers: int | None = None) -> Any:
    return _normalize(_np_log_softmax, True, x, axis, temperature, where, out, workers)


def _lse_rows(state: np.ndarray, *, scale: float, result_dtype: Any) -> np.ndarray:
    return _cast(_lse(state, scale), result_dtype=result_dtype)


def logsumexp(x: Any, axis: int = -1, *, keepdims: bool = False, temperature: float = 1.0,
              where: Any = None, out: Any = None, workers: int | None = None) -> Any:
    _no_out(out, "out")
    x = _as_dask(x)
    ax = normalize_axis(axis, x.ndim)
    dtype = _np_logsumexp(np.zeros(_probe_shape(x.ndim, ax), x.dtype), axis=ax,
                          temperature=temperature).dtype
    w = _block_workers(workers)
    if x.ndim and x.numblocks[ax] > 1:
        xm = _class_last(_float_logits(x), ax)
        c = temperature_scale(temperature)
        state = _merged_states(xm, "lse", 2, w, *_class_last_mask(where, x, ax, xm), scale=c,
                               merge_scale=1.0 if c is None else c)
        result = _per_row(_lse_rows, xm, dtype, (state, "state"),
                          scale=1.0 if c is None else c, result_dtype=dtype)
        return da.expand_dims(result, ax) if keepdims else result
    w_kw = {"temperature": temperature, "workers": w}
    if not x.ndim:
        return da.map_blocks(_call, _np_logsumexp, x, dtype=dtype, **w_kw)
    xm = _whole_classes(_class_last(x, ax), x.ndim - 1)
    args = [] if where is None else [(_class_last(_mask_like(where, x), ax).rechunk(xm.chunks),
                                      "like")]
    result = _reduce_whole(_logsumexp_where, xm, dtype, *args, has_where=where is not None,
                           **w_kw)
    return da.expand_dims(result, ax) if keepdims else result


def _logsumexp_where(x: np.ndarray, *rest: Any, has_where: bool, **kw: Any) -> Any:
    return _np_logsumexp(x, axis=-1, where=rest[0] if has_where else None, **kw)


def _backward_whole(np_func: Any, a: Any, g: Any, ax: int, dtype: Any, w: int) -> Any:
    a1 = _whole_classes(a, ax)
    return da.map_blocks(_call, np_func, a1, g.rechunk(a1.chunks), dtype=dtype, axis=ax,
                         workers=w)


def softmax_backward(grad_output: Any, probs: Any, *, axis: int = -1, out: Any = None,
                     workers: int | None = None) -> Any:
    _no_out(out, "out")
    p, g = _as_dask(probs), _as_dask(grad_output)
    if p.shape != g.shape:
        raise ValueError(f"probs has shape {p.shape} but grad_output has shape {g.shape}")
    ax = normalize_axis(axis, p.ndim)
    probe = np.zeros(_probe_shape(p.ndim, ax))
    dtype = _np_softmax_backward(probe.astype(g.dtype), probe.astype(p.dtype), axis=ax).dtype
    if p.numblocks[ax] == 1:
        return _backward_whole(_np_softmax_backward, g, p, ax, dtype, _block_workers(workers))
    # The class axis split: p (g - sum(p g)), the row sums in float64 by Dask's tree.
    dot = (p * g).sum(axis=ax, keepdims=True, dtype=np.float64)
    return (p * (g - dot)).astype(dtype)


def log_softmax_backward(grad_output: Any, log_probs: Any, *, axis: int = -1,
                         out: Any = None, workers: int | None = None) -> Any:
    _no_out(out, "out")
    lp, g = _as_dask(log_probs), _as_dask(grad_output)
    if lp.shape != g.shape:
        raise ValueError(
            f"log_probs has shape {lp.shape} but grad_output has shape {g.shape}"
        )
    ax = normalize_axis(axis, lp.ndim)
    probe = np.zeros(_probe_shape(lp.ndim, ax))
    dtype = _np_log_softmax_backward(probe.astype(g.dtype), probe.astype(lp.dtype),
                                     axis=ax).dtype
    if lp.numblocks[ax] == 1:
        return _backward_whole(_np_log_softmax_backward, g, lp, ax, dtype,
                               _block_workers(workers))
    total = g.sum(axis=ax, keepdims=True, dtype=np.float64)
    return (g - da.exp(lp.astype(np.float64)) * total).astype(dtype)


def softmax_jacobian(probs: Any, *, axis: int = -1) -> Any:
    p = _as_dask(probs)
    ax = normalize_axis(axis, p.ndim)
    dtype = _np_softmax_jacobian(np.zeros(_probe_shape(p.ndim, ax), p.dtype), axis=ax).dtype
    pm = _whole_classes(_class_last(p, ax), p.ndim - 1)  # (batch..., C), C one chunk
    n = p.shape[ax]
    return da.map_blocks(_call, _np_softmax_jacobian, pm, axis=-1, dtype=dtype,
                         new_axis=p.ndim, chunks=pm.chunks + ((n,),))


# --- entropy and KL -------------------------------------------------------------------


def _entropy_rows(state: np.ndarray, *, scale: float, result_dtype: Any) -> np.ndarray:
    return _cast(state[..., 2] / scale, result_dtype=result_dtype)


def entropy(x: Any, *, axis: int = -1, base: float | None = None, temperature: float = 1.0,
            where: Any = None, workers: int | None = None) -> Any:
    x = _as_dask(x)
    ax = normalize_axis(axis, x.ndim)
    scale = _log_base(base)
    dtype = np.asarray(_np_entropy(np.zeros(_probe_shape(x.ndim, ax), x.dtype), axis=ax,
                                   temperature=temperature)).dtype
    w = _block_workers(workers)
    if x.numblocks[ax] > 1:
        xm = _class_last(_float_logits(x), ax)
        c = temperature_scale(temperature)
        state = _merged_states(xm, "entropy", 4, w, *_class_last_mask(where, x, ax, xm),
                               scale=c, merge_scale=1.0 if c is None else c)
        return _per_row(_entropy_rows, xm, dtype, (state, "state"), scale=scale,
                        result_dtype=dtype)
    xm = _whole_classes(_class_last(x, ax), x.ndim - 1)
    args = [] if where is None else [(_class_last(_mask_like(where, x), ax).rechunk(xm.chunks),
                                      "like")]
    return _reduce_whole(_entropy_where, xm, dtype, *args, has_where=where is not None,
                         base=base, temperature=temperature, workers=w)


def _entropy_where(x: np.ndarray, *rest: Any, has_where: bool, **kw: Any) -> Any:
    return _np_entropy(x, axis=-1, where=rest[0] if has_where else None, **kw)


def _kl_rows(state: np.ndarray, *, scale: float) -> np.ndarray:
    return state[..., 4] / scale


def _kl_grad_block(p: np.ndarray, q: np.ndarray, state: np.ndarray, *mask: np.ndarray,
                   scale: float, temperature_scale: float | None,
                   workers: int) -> np.ndarray:
    """(softmax(q / T) - softmax(p / T)) * scale for one class block, from the states.
    (A row with no class included is all left out: 0.)"""
    fields = state.shape[-1]
    st = state.reshape(-1, fields)
    q_probs = _from_state_block(q, _core_array(st[:, 2:4]), *mask, log=False,
                                workers=workers, scale=temperature_scale)
    p_probs = _from_state_block(p, _core_array(st[:, 0:2]), *mask, log=False,
                                workers=workers, scale=temperature_scale)
    grad: np.ndarray = ((q_probs - p_probs) * q_probs.dtype.type(scale)).astype(q_probs.dtype)
    # As the KL kernel: a row whose P or Q is not finite (a NaN, +inf, or every included
    # logit -inf) is NaN throughout, left-out classes too; one with no class included, 0.
    finite = np.isfinite(st[:, 0:4]).all(axis=1) | (st[:, 5] == 0)
    grad.reshape(-1, grad.shape[-1])[~finite] = np.nan
    return grad


def _kl_whole_block(p: np.ndarray, q: np.ndarray, *rest: Any, grad: bool, **kw: Any) -> Any:
    mask = rest[0] if rest else None
    result = _np_kl_divergence(p, q, reduction="none", return_grad=grad, where=mask, **kw)
    return result


def _first(pair: Any) -> Any:
    return pair[0]


def _first_of_only(pairs: list[Any]) -> Any:
    (pair,) = pairs  # the class axis was one chunk
    return pair[0]


def _losses_of_pairs(pairs: Any, ax: int, dtype: Any) -> Any:
    """The first items of blocks of (losses, gradient) pairs, whose class axis `ax` is one
    chunk: the losses, without that axis."""
    index = _batch_index(pairs.ndim)
    out_index = index[:ax] + index[ax + 1 :]
    return da.blockwise(_first_of_only, out_index, pairs, index, concatenate=False,
                        dtype=dtype, meta=np.empty((0,) * len(out_index), dtype=dtype))


def _second(pair: Any) -> Any:
    return pair[1]


def kl_divergence(p_logits: Any, q_logits: Any, *, axis: int = -1, base: float | None = None,
                  reduction: str = "none", temperature: float = 1.0, where: Any = None,
                  return_grad: bool = False, workers: int | None = None) -> Any:
    p, q = _as_dask(p_logits), _as_dask(q_logits)
    if p.shape != q.shape:
        raise ValueError(f"p_logits has shape {p.shape} but q_logits has shape {q.shape}")
    ax = normalize_axis(axis, p.ndim)
    code = _kl_reduction_code(reduction)
    scale = _log_base(base)
    probe = np.zeros(_probe_shape(p.ndim, ax))
    dtype = np.asarray(_np_kl_divergence(probe.astype(p.dtype), probe.astype(q.dtype),
                                         axis=ax, temperature=temperature)).dtype
    compute = np.result_type(_float_logits(p).dtype, _float_logits(q).dtype)
    p, q = p.astype(compute), q.astype(compute)
    w = _block_workers(workers)
    rows = math.prod(p.shape[:ax] + p.shape[ax + 1 :])
    grad_scale = (1.0 / rows if code == 2 and rows else 1.0) / scale
    if p.numblocks[ax] > 1:
        pm, qm = _class_last(p, ax), _class_last(q.rechunk(p.chunks), ax)
        c = temperature_scale(temperature)
        masks = _class_last_mask(where, p, ax, pm)
        state = _merged_states(pm, "kl", 6, w, qm, *masks, scale=c,
                               merge_scale=1.0 if c is None else c)
        per_row = _per_row(_kl_rows, pm, np.float64, (state, "state"), scale=scale)
        grad = None
        if return_grad:
            # d/dq of KL(softmax(p/T) || softmax(q/T)) is (softmax(q/T) - softmax(p/T)) / T.
            grad = _like_x(_kl_grad_block, pm, dtype, (qm, "like"), (state, "state"),
                           *[(m, "like") for m in masks], temperature_scale=c,
                           scale=grad_scale * (1.0 if c is None else c), workers=w)
            grad = _class_back(grad, ax)
    else:
        pm = _whole_classes(_class_last(p, ax), p.ndim - 1)
        args: list[Any] = [(_class_last(q, ax).rechunk(pm.chunks), "like")]
        if where is not None:
            args.append((_class_last(_mask_like(where, p), ax).rechunk(pm.chunks), "like"))
        kw = {"axis": -1, "temperature": temperature, "workers": w}
        grad = None
        if return_grad:
            pair = _like_x(_kl_whole_block, pm, object, *args, grad=True, **kw)
            per_row = _losses_of_pairs(pair, pm.ndim - 1, dtype)
            grad = da.map_blocks(_second, pair, dtype=dtype,
                                 meta=np.empty((0,) * p.ndim, dtype=dtype))
            if grad_scale != 1.0:
                grad = da.map_blocks(_scaled, grad, da.asarray(grad_scale),
                                     result_dtype=dtype, dtype=dtype)
            grad = _class_back(grad, ax)
        else:
            per_row = _reduce_whole(_kl_whole_block, pm, dtype, *args, grad=False, **kw)
        if base is not None:
            per_row = per_row.astype(np.float64) / scale
    if code == 0:
        kl = per_row.map_blocks(_cast, result_dtype=dtype, dtype=dtype,
                                meta=np.empty((0,) * per_row.ndim, dtype=dtype))
    else:
        kl = _reduced(per_row.astype(np.float64), code, dtype, da.asarray(float(rows)),
                      da.asarray(rows))
    return (kl, grad) if return_grad else kl


# --- cross-entropy and NLL ------------------------------------------------------------


def _class_weights(weight: Any, n: int, compute: Any) -> np.ndarray | None:
    """The class weights as the kernels see them (in the compute dtype), in float64."""
    if weight is None:
        return None
    return np.asarray(weight, dtype=compute).reshape(n).astype(np.float64)


def _check_labels(t: np.ndarray, n: int, ignore_index: int) -> None:
    bad = (t != ignore_index) & ((t < 0) | (t >= n))
    if bad.any():
        value = int(t[np.flatnonzero(bad)[0]])
        raise IndexError(
            f"target {value} is out of range for {n} classes (valid: 0 to {n - 1}, or "
            f"ignore_index={ignore_index})"
        )


def _label_weights(labels: np.ndarray, sample_weight: np.ndarray | None = None, *,
                   weight: np.ndarray | None, ignore_index: int, n: int) -> np.ndarray:
    """Per row: the weight the row counts with in "mean" (its class weight, times its
    sample weight), 0 for ignored rows; float64. Checks the labels."""
    t = np.asarray(labels).astype(np.int64, copy=False)
    _check_labels(t.reshape(-1), n, ignore_index)
    counted = t != ignore_index
    safe = np.where(counted, t, 0)
    w = weight[safe] if weight is not None else np.ones(t.shape)
    if sample_weight is not None:
        w = w * np.asarray(sample_weight, dtype=np.float64)
    return np.where(counted, w, 0.0)


def _counted_rows(labels: np.ndarray, *, ignore_index: int) -> np.ndarray:
    counted: np.ndarray = (np.asarray(labels) != ignore_index).astype(np.float64)
    return counted


def _split_targets(rest: tuple[Any, ...], has_target: bool,
                   has_sample_weight: bool) -> tuple[Any, Any]:
    """(target block or None, sample weights as float64 or None) from the arguments."""
    target = rest[0] if has_target else None
    sw = rest[int(has_target)] if has_sample_weight else None
    return target, None if sw is None else np.asarray(sw, dtype=np.float64).reshape(-1)


def _split_row_terms(st: np.ndarray, target: np.ndarray, kind: str, *, smoothing: float,
                     n: int, weight: np.ndarray | None, ignore_index: int,
                     scale: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]:
    """(lse of x * c, per-row loss before z_loss and sample weights, whether each row
    counts, A = sum of w_j y'_j: what multiplies softmax in the gradient), c = 1 / T.

    With the row's state (m, s): lse = m c + log1p(s), so lse - z_t c = (m - z_t) c +
    log1p(s) (the temperature applied to differences from the maximum, as the kernels
    do), sum_j w_j (lse - z_j c) = W log1p(s) - c D and sum_j w_j y'_j (lse - z_j c) =
    A log1p(s) - c E."""
    c = 1.0 if scale is None else scale
    m = st[:, 0]
    finite = np.isfinite(m)
    with np.errstate(invalid="ignore", over="ignore"):
        log_sum = np.where(finite, np.log1p(st[:, 1]), np.nan)
        lse = np.where(finite, m * c + log_sum, m)
        if kind == "probs":
            a = st[:, 2]
            return lse, a * log_sum - c * st[:, 3], np.ones(len(st), dtype=bool), a
        t = np.asarray(target).reshape(-1).astype(np.int64)
        _check_labels(t, n, ignore_index)
        counted = t != ignore_index
        wt = weight[np.where(counted, t, 0)] if weight is not None else np.ones(len(t))
        wt = np.where(counted, wt, 0.0)
        target_term = np.where(finite, (m - st[:, 2]) * c + log_sum, lse - st[:, 2] * c)
        loss = (1 - smoothing) * wt * target_term
        a = (1 - smoothing) * wt
        if smoothing > 0:
            loss = loss + smoothing / n * (st[:, 4] * log_sum - c * st[:, 3])
            a = a + np.where(counted, smoothing / n * st[:, 4], 0.0)
        return lse, np.where(counted, loss, 0.0), counted, a


def _split_losses(state: np.ndarray, *rest: Any, kind: str, has_sample_weight: bool,
                  z_loss: float, **kw: Any) -> np.ndarray:
    """Per-row losses (float64) from the merged states of a row's class blocks."""
    target, sw = _split_targets(rest, kind == "labels", has_sample_weight)
    st = state.reshape(-1, state.shape[-1])
    lse, loss, counted, _ = _split_row_terms(st, target, kind, **kw)
    with np.errstate(invalid="ignore", over="ignore"):
        if z_loss:
            loss = np.where(counted, loss + z_loss * lse * lse, 0.0)
        if sw is not None:
            loss = np.where(sw == 0, 0.0, loss * sw)
    shape = state.shape[:-1] if kind == "probs" else np.shape(target)
    return loss.reshape(shape)


def _split_grad_block(block: np.ndarray, state: np.ndarray, offset: np.ndarray, *rest: Any,
                      kind: str, has_sample_weight: bool, z_loss: float, smoothing: float,
                      n: int, weight: np.ndarray | None, ignore_index: int,
                      scale: float | None, workers: int) -> np.ndarray:
    """One class block of the gradient, g (A softmax - w y') per row (times
    s (... + 2 z_loss lse softmax) with options), from the merged states."""
    inv = float(rest[-1])
    target, sw = _split_targets(rest[:-1], True, has_sample_weight)
    rows = _rows2d(block)
    st = state.reshape(rows.shape[0], state.shape[-1])
    lse, _, counted, a = _split_row_terms(st, target, kind, smoothing=smoothing, n=n,
                                          weight=weight, ignore_index=ignore_index,
                                          scale=scale)
    # g (and 1/T: the gradient is with respect to the raw logits), 0 for rows that do not
    # count.
    row_factor = np.where(counted, inv * (1.0 if scale is None else scale), 0.0)
    if sw is not None:
        row_factor = row_factor * sw
    with np.errstate(invalid="ignore", over="ignore"):
        factor = row_factor * (a + 2 * z_loss * lse) if z_loss else row_factor * a
    out = np.empty(rows.shape, dtype=rows.dtype)
    _core._rows_from_state(rows, _core_array(st[:, :2]), _core_array(factor, np.float64),
                           out, False, workers, scale)
    o = int(offset[0])
    width = rows.shape[1]
    if kind == "probs":
        wy = _smoothed_targets(_rows2d(target), o, smoothing, n, weight)
        out -= (row_factor[:, None] * wy).astype(out.dtype)
        return out.reshape(block.shape)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    local = t - o
    wt = weight[np.where(counted, t, 0)] if weight is not None else np.ones(len(t))
    w = np.ones(width) if weight is None else weight[o : o + width]
    if smoothing > 0:
        out -= (row_factor[:, None] * (smoothing / n) * w[None, :]).astype(out.dtype)
    # The targets' own entries, g (A p_t - w_t y'_t), in float64 and rounded once: p_t
    # is near 1 where it matters, and subtracting after rounding g A p_t would lose the
    # difference's low bits (the kernels compute (p - 1) g).
    # (Rows whose state is not finite are NaN throughout, as from the kernels.)
    finite = np.isfinite(st[:, 0]) & np.isfinite(st[:, 1])
    r = np.flatnonzero(counted & finite & (local >= 0) & (local < width))
    c = 1.0 if scale is None else scale
    with np.errstate(invalid="ignore", over="ignore"):
        p_t = np.exp((st[r, 2] - st[r, 0]) * c) / (1.0 + st[r, 1])
        value = factor[r] * p_t - row_factor[r] * (
            (1 - smoothing) * wt[r] + smoothing / n * w[local[r]])
    out[r, local[r]] = value.astype(out.dtype)
    return out.reshape(block.shape)


def _grad_scale(denominator: np.ndarray, counted: np.ndarray, *, code: int) -> np.ndarray:
    """What multiplies every gradient: 1/denominator for "mean" (0 when nothing counts)."""
    if code != 2:
        return np.asarray(1.0)
    return np.asarray(1.0 / float(denominator) if float(counted) > 0 else 0.0)


def _ce_whole_block(block: np.ndarray, target: np.ndarray, *rest: Any, has_where: bool,
                    has_sample_weight: bool, grad: bool, **kw: Any) -> Any:
    """The NumPy cross_entropy of one block with its classes whole (class axis last)."""
    rest_list = list(rest)
    where = rest_list.pop(0) if has_where else None
    sample_weight = rest_list.pop(0) if has_sample_weight else None
    return _np_cross_entropy(block, target, axis=-1, where=where, sample_weight=sample_weight,
                             reduction="none", return_grad=grad, **kw)


def _scaled(grad: np.ndarray, inv: np.ndarray, *, result_dtype: Any) -> np.ndarray:
    scaled: np.ndarray = (grad * inv).astype(result_dtype)
    return scaled


def cross_entropy(logits: Any, target: Any, *, axis: int = -1, weight: Any = None,
                  ignore_index: int = -100, label_smoothing: float = 0.0,
                  reduction: str = "mean", return_grad: bool = False, grad_out: Any = None,
                  temperature: float = 1.0, softcap: float | None = None,
                  z_loss: float = 0.0, where: Any = None, sample_weight: Any = None,
                  workers: int | None = None) -> Any:
    _no_out(grad_out, "grad_out")
    x = _as_dask(logits)
    t = _as_dask(target)
    ax = normalize_axis(axis, x.ndim)
    code = reduction_code(reduction)
    n = x.shape[ax]
    probs = t.shape == x.shape and t.dtype.kind not in "biu"
    if not probs and t.dtype.kind not in "iu":
        raise TypeError(f"target must be integer class indices or probabilities of the "
                        f"logits' shape, got dtype {t.dtype} and shape {t.shape}")
    # The NumPy function on one row checks the options and gives the result dtype.
    probe_shape = _probe_shape(x.ndim, ax)[:ax] + (n,) + _probe_shape(x.ndim, ax)[ax + 1 :]
    probe_target = (np.full(probe_shape, 1.0 / max(n, 1), dtype=t.dtype) if probs
                    else np.zeros(probe_shape[:ax] + probe_shape[ax + 1 :], dtype=t.dtype))
    options = {"weight": weight, "ignore_index": ignore_index,
               "label_smoothing": label_smoothing, "temperature": temperature,
               "softcap": softcap, "z_loss": z_loss}
    dtype = np.asarray(_np_cross_entropy(np.zeros(probe_shape, x.dtype), probe_target,
                                         axis=ax, reduction="none", **options)).dtype
    x = _float_logits(x)
    compute = np.float32 if x.dtype.itemsize <= 4 else np.float64
    w_classes = _class_weights(weight, n, compute)
    wk = _block_workers(workers)
    xm = _class_last(x, ax)
    t_rows = t if not probs else None
    # softcap and where change the logits themselves: those calls take the class axis
    # whole.
    split = xm.numblocks[-1] > 1 and softcap is None and where is None
    sw = None if sample_weight is None else _row_aligned(
        da.broadcast_to(_as_dask(sample_weight), xm.shape[:-1]), xm, "sample_weight")

    # Per row: the weight it counts with in "mean", and whether it counts.
    if probs:
        row_weight = sw.astype(np.float64) if sw is not None else da.ones(
            xm.shape[:-1], chunks=xm.chunks[:-1])
        counted = da.asarray(math.prod(xm.shape[:-1]))
    else:
        labels = _row_aligned(t_rows, xm, "target")
        row_args = [(labels, "rows")] + ([(sw, "rows")] if sw is not None else [])
        row_weight = _per_row(_label_weights, xm, np.float64, *row_args, weight=w_classes,
                              ignore_index=ignore_index, n=n)
        counted = _per_row(_counted_rows, xm, np.float64, (labels, "rows"),
                           ignore_index=ignore_index).sum()
    denominator = row_weight.sum(dtype=np.float64)
    inv = da.map_blocks(_grad_scale, denominator, counted, code=code, dtype=np.float64,
                        meta=np.empty((), dtype=np.float64))

    grad = None
    if split:
        kind = "probs" if probs else "labels"
        target_arg = (_class_last(t, ax).rechunk(xm.chunks), "like") if probs else (
            labels, "rows")
        rows_args = [target_arg] + ([(sw, "rows")] if sw is not None else [])
        scale = temperature_scale(temperature)
        terms = {"smoothing": float(label_smoothing), "n": n, "weight": w_classes,
                 "ignore_index": ignore_index, "scale": scale}
        state = _merged_states(xm, kind, 5 if kind == "labels" else 4, wk, target_arg[0],
                               merge_scale=1.0 if scale is None else scale, **terms)
        # The losses need the labels (not probability targets: A and E are in the state).
        loss_args = rows_args if not probs else rows_args[1:]
        per_row = _per_row(_split_losses, xm, np.float64, (state, "state"), *loss_args,
                           kind=kind, has_sample_weight=sw is not None, z_loss=float(z_loss),
                           **terms)
        if return_grad:
            grad = _like_x(_split_grad_block, xm, dtype, (state, "state"),
                           (_class_offsets(xm), "blocks"), *rows_args, inv, kind=kind,
                           has_sample_weight=sw is not None, z_loss=float(z_loss),
                           workers=wk, **terms)
            grad = _class_back(grad, ax)
    else:
        x1 = _whole_classes(xm, xm.ndim - 1)
        target1 = (t.rechunk(x.chunks) if probs else labels)
        target1 = _class_last(target1, ax) if probs else target1
        args: list[Any] = [(target1.rechunk(x1.chunks) if probs else target1,
                            "like" if probs else "rows")]
        if where is not None:
            args.append((_class_last(_mask_like(where, x), ax).rechunk(x1.chunks), "like"))
        if sw is not None:
            args.append((sw, "rows"))
        kw = dict(options, has_where=where is not None, has_sample_weight=sw is not None,
                  workers=wk)
        if return_grad:
            pair = _like_x(_ce_whole_block, x1, object, *args, grad=True, **kw)
            per_row = _losses_of_pairs(pair, x1.ndim - 1, dtype)
            grad = da.map_blocks(_second, pair, dtype=dtype,
                                 meta=np.empty((0,) * x1.ndim, dtype=dtype))
            if code == 2:
                grad = da.map_blocks(_scaled, grad, inv, result_dtype=dtype, dtype=dtype)
            grad = _class_back(grad, ax)
        else:
            per_row = _reduce_whole(_ce_whole_block, x1, dtype, *args, grad=False, **kw)
    if code == 0:
        loss = per_row.map_blocks(_cast, result_dtype=dtype, dtype=dtype,
                                  meta=np.empty((0,) * per_row.ndim, dtype=dtype))
    else:
        loss = _reduced(per_row.astype(np.float64), code, dtype, denominator, counted)
    return (loss, grad) if return_grad else loss


def _nll_block(block: np.ndarray, labels: np.ndarray, offset: np.ndarray, *,
               weight: np.ndarray | None, ignore_index: int, n: int) -> np.ndarray:
    """-w_t log p_t of the rows whose target is in this class block, 0 elsewhere."""
    t = np.asarray(labels).astype(np.int64)
    _check_labels(t.reshape(-1), n, ignore_index)
    local = t - int(offset[0])
    width = block.shape[-1]
    inside = (local >= 0) & (local < width) & (t != ignore_index)
    w = None if weight is None else weight[int(offset[0]) : int(offset[0]) + width]
    per_row = _np_nll_loss(block, np.where(inside, local, -1), axis=-1, weight=w,
                           ignore_index=-1, reduction="none")
    return np.asarray(per_row, dtype=np.float64)[..., None]


def nll_loss(log_probs: Any, target: Any, *, axis: int = -1, weight: Any = None,
             ignore_index: int = -100, reduction: str = "mean",
             workers: int | None = None) -> Any:
    _block_workers(workers)  # checked, as the NumPy function does
    x = _as_dask(log_probs)
    ax = normalize_axis(axis, x.ndim)
    code = reduction_code(reduction)
    n = x.shape[ax]
    t = _as_dask(target)
    probe_shape = _probe_shape(x.ndim, ax)[:ax] + (n,) + _probe_shape(x.ndim, ax)[ax + 1 :]
    dtype = np.asarray(_np_nll_loss(np.zeros(probe_shape, x.dtype),
                                    np.zeros(probe_shape[:ax] + probe_shape[ax + 1 :], t.dtype),
                                    axis=ax, weight=weight, ignore_index=ignore_index,
                                    reduction="none")).dtype
    x = _float_logits(x)
    compute = np.float32 if x.dtype.itemsize <= 4 else np.float64
    w_classes = _class_weights(weight, n, compute)
    xm = _class_last(x, ax)
    labels = _row_aligned(t, xm, "target")
    nb = xm.ndim - 1
    b = _batch_index(nb)
    # One value per row and class block (one of them nonzero), summed over the blocks.
    parts = da.blockwise(
        _nll_block, b + _CLASS, xm, b + _CLASS, labels, b, _class_offsets(xm), _CLASS,
        adjust_chunks={_CLASS: 1}, align_arrays=False, dtype=np.float64,
        meta=np.empty((0,) * xm.ndim), weight=w_classes, ignore_index=ignore_index, n=n,
    )
    per_row = parts.sum(axis=-1) if xm.numblocks[-1] > 1 else parts[..., 0]
    if code == 0:
        return per_row.map_blocks(_cast, result_dtype=dtype, dtype=dtype,
                                  meta=np.empty((0,) * per_row.ndim, dtype=dtype))
    row_weight = _per_row(_label_weights, xm, np.float64, (labels, "rows"), weight=w_classes,
                          ignore_index=ignore_index, n=n)
    counted = _per_row(_counted_rows, xm, np.float64, (labels, "rows"),
                       ignore_index=ignore_index).sum()
    return _reduced(per_row, code, dtype, row_weight.sum(dtype=np.float64), counted)


# --- the binary family ----------------------------------------------------------------


def sigmoid(x: Any, *, out: Any = None, workers: int | None = None) -> Any:
    _no_out(out, "out")
    x = _as_dask(x)
    dtype = _np_sigmoid(np.zeros((1,) * x.ndim, x.dtype)).dtype
    return da.map_blocks(_call, _np_sigmoid, x, dtype=dtype, workers=_block_workers(workers))


def log_sigmoid(x: Any, *, out: Any = None, workers: int | None = None) -> Any:
    _no_out(out, "out")
    x = _as_dask(x)
    dtype = _np_log_sigmoid(np.zeros((1,) * x.ndim, x.dtype)).dtype
    return da.map_blocks(_call, _np_log_sigmoid, x, dtype=dtype,
                         workers=_block_workers(workers))


def _bce_block(z: np.ndarray, y: np.ndarray, *rest: Any, has: tuple[bool, bool, bool],
               grad: bool, code: int, **kw: Any) -> Any:
    rest_list = list(rest)
    weight = rest_list.pop(0) if has[0] else None
    pos_weight = rest_list.pop(0) if has[1] else None
    sample_weight = rest_list.pop(0) if has[2] else None
    result: Any = _np_bce(z, y, weight=weight, pos_weight=pos_weight,
                          sample_weight=sample_weight,
                          reduction="none" if code == 0 else "sum", return_grad=grad, **kw)
    if code == 0:
        return result
    # A block's sum, kept as one float64 per block (the blocks' sums are added by Dask).
    if grad:
        loss, g = result
        return np.full((1,) * z.ndim, float(loss)), g
    return np.full((1,) * z.ndim, float(result))


def binary_cross_entropy(logits: Any, target: Any, *, weight: Any = None,
                         pos_weight: Any = None, sample_weight: Any = None,
                         reduction: str = "mean", return_grad: bool = False,
                         grad_out: Any = None, workers: int | None = None) -> Any:
    _no_out(grad_out, "grad_out")
    z = _as_dask(logits)
    y = _as_dask(target)
    if y.shape != z.shape:
        raise ValueError(f"target has shape {y.shape}, expected the logits' shape {z.shape}")
    if z.ndim == 0:
        z, y = z.reshape(1), y.reshape(1)
        result = binary_cross_entropy(z, y, weight=weight, pos_weight=pos_weight,
                                      sample_weight=sample_weight, reduction=reduction,
                                      return_grad=return_grad, workers=workers)
        if return_grad:
            loss, grad = result
            return (loss.reshape(()) if reduction == "none" else loss), grad.reshape(())
        return result.reshape(()) if reduction == "none" else result
    code = reduction_code(reduction)
    one = (1,) * z.ndim
    dtype = np.asarray(_np_bce(np.zeros(one, z.dtype), np.zeros(one, y.dtype),
                               reduction="none")).dtype
    index = _batch_index(z.ndim)
    pairs: list[Any] = [z, index, y.rechunk(z.chunks), index]
    for value in (weight, pos_weight):
        if value is not None:
            pairs += [da.broadcast_to(_as_dask(value), z.shape).rechunk(z.chunks), index]
    size = math.prod(z.shape)
    samples = z.shape[0]
    denominator = da.asarray(float(size))
    if sample_weight is not None:
        sw = da.broadcast_to(_as_dask(sample_weight), (samples,)).astype(np.float64)
        sw = sw.rechunk((z.chunks[0],))
        pairs += [sw, index[0]]
        denominator = sw.sum(dtype=np.float64) * float(size // samples if samples else 0)
    has = (weight is not None, pos_weight is not None, sample_weight is not None)
    kw = {"has": has, "code": code, "workers": _block_workers(workers)}
    # Per block: the losses ("none") or a (1, ..., 1) block of their float64 sum.
    loss_chunks = {} if code == 0 else {i: 1 for i in index}
    loss_dtype = dtype if code == 0 else np.float64
    grad = None
    if return_grad:
        pair = da.blockwise(_bce_block, index, *pairs, align_arrays=False, dtype=object,
                            meta=np.empty((0,) * z.ndim, dtype=object), grad=True, **kw)
        per_block = da.blockwise(_first, index, pair, index, adjust_chunks=loss_chunks,
                                 dtype=loss_dtype,
                                 meta=np.empty((0,) * z.ndim, dtype=loss_dtype))
        grad = da.blockwise(_second, index, pair, index, dtype=dtype,
                            meta=np.empty((0,) * z.ndim, dtype=dtype))
    else:
        per_block = da.blockwise(_bce_block, index, *pairs, align_arrays=False,
                                 adjust_chunks=loss_chunks, dtype=loss_dtype,
                                 meta=np.empty((0,) * z.ndim, dtype=loss_dtype), grad=False,
                                 **kw)
    if code == 0:
        return (per_block, grad) if return_grad else per_block
    loss = _reduced(per_block, code, dtype, denominator, da.asarray(size))
    if grad is not None and code == 2:
        inv = da.map_blocks(_grad_scale, denominator, da.asarray(size), code=2,
                            dtype=np.float64, meta=np.empty((), dtype=np.float64))
        grad = da.map_blocks(_scaled, grad, inv, result_dtype=dtype, dtype=dtype)
    return (loss, grad) if return_grad else loss
