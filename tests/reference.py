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

import math

import numpy as np

__all__ = ["softmax", "log_softmax", "logsumexp"]


def _is_bfloat16(dtype):
    """ml_dtypes.bfloat16 (a NumPy dtype of kind "V"): converted to float64 exactly."""
    return dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16"


def _as_float64(x):
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" and not _is_bfloat16(x.dtype):
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


# =======================================================================================
# Part 2: losses, gradients, sigmoid, backward passes, entropy and KL divergence.
#
# Literal float64 formulas of the API description (PyTorch's definitions where the
# description says so).  Each loss function takes ``return_grad`` like the package and
# then returns ``(loss, grad)``; the gradient is that of the chosen reduction ("none":
# the gradient of the sum of the per-sample losses).  ``0 * inf`` terms that the
# contract counts as 0 (``0 * log 0``, ignored samples) are zeroed with ``np.where``.
# =======================================================================================

__all__ += [
    "cross_entropy", "nll_loss", "sigmoid", "log_sigmoid", "binary_cross_entropy",
    "softmax_backward", "log_softmax_backward", "softmax_jacobian", "entropy",
    "kl_divergence",
]

_REDUCTIONS = ("none", "sum", "mean")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reference: unknown reduction {reduction!r}")


def _class_weights(weight, n_classes):
    if weight is None:
        return np.ones(n_classes)
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n_classes,):
        raise ValueError(f"reference: weight shape {w.shape}, expected ({n_classes},)")
    return w


def _exact_sum(values):
    """The correctly rounded sum (math.fsum) of finite values, so that per-sample losses
    of both signs and very different sizes do not lose the small ones; np.sum where some
    are inf or NaN, or where the exact partial sums overflow."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if np.all(np.isfinite(values)):
        try:
            return np.float64(math.fsum(values))
        except OverflowError:
            pass
    return np.sum(values)


def _reduce(per_sample, reduction, denominator):
    """"none": the array; "sum": its sum; "mean": sum / denominator (0.0 if the
    denominator is 0: every sample ignored)."""
    if reduction == "none":
        return per_sample
    total = _exact_sum(per_sample)
    if reduction == "sum":
        return total
    return total / denominator if denominator != 0 else np.float64(0.0)


def _grad_scale(reduction, denominator):
    if reduction != "mean":
        return 1.0
    return 1.0 / denominator if denominator != 0 else 0.0


def cross_entropy(logits, target, axis=-1, weight=None, ignore_index=-100,
                  label_smoothing=0.0, reduction="mean", return_grad=False):
    """Cross-entropy of softmax(logits) with integer class targets (shape = logits.shape
    without ``axis``) or probability targets (float, shape = logits.shape).

    integer t:  loss_i = (1-eps) w[t_i] (lse_i - z_i[t_i])
                         + eps/C sum_c w[c] (lse_i - z_ic)
                0 where t_i == ignore_index; "mean" divides by sum_i w[t_i] over the
                non-ignored samples (0.0 when all are ignored).
    float y:    y' = (1-eps) y + eps/C;  loss_i = sum_c w[c] y'_c (lse_i - z_ic), with
                terms where y'_c == 0 counted as 0; "mean" divides by N.
    grad (integer): p ((1-eps) w[t] + eps/C sum w) - (1-eps) w[t] [c == t] - eps/C w[c]
    grad (float):   p sum_k w[k] y'_k - w[c] y'_c
    """
    _check_reduction(reduction)
    z = _as_float64(logits)
    axis = _normalize_axis(axis, z.ndim)
    z = np.moveaxis(z, axis, -1)
    n_classes = z.shape[-1]
    w = _class_weights(weight, n_classes)
    eps = float(label_smoothing)
    target = np.asarray(target)
    with np.errstate(all="ignore"):
        lse = logsumexp(z, -1, keepdims=True)
        nll = lse - z  # -log_softmax: +inf at -inf logits
        p = softmax(z, -1)
        if target.dtype.kind in "iu":
            if target.shape != z.shape[:-1]:
                raise ValueError(f"reference: target shape {target.shape}, expected "
                                 f"{z.shape[:-1]}")
            t = target.astype(np.int64)
            valid = t != ignore_index
            if np.any(valid & ((t < 0) | (t >= n_classes))):
                raise IndexError("reference: target out of range")
            t_safe = np.where(valid, t, 0)
            onehot = np.arange(n_classes) == t_safe[..., None]
            w_t = np.where(valid, w[t_safe], 0.0)
            nll_t = np.take_along_axis(nll, t_safe[..., None], -1)[..., 0]
            per_sample = (1.0 - eps) * w_t * nll_t
            if eps != 0.0:
                smooth = np.sum(w * nll, axis=-1)
                per_sample = per_sample + (eps / n_classes) * smooth
            per_sample = np.where(valid, per_sample, 0.0)
            denominator = np.sum(w_t)
            grad = (p * ((1.0 - eps) * w_t + (eps / n_classes) * np.sum(w))[..., None]
                    - (1.0 - eps) * w_t[..., None] * onehot
                    - (eps / n_classes) * w)
            grad = np.where(valid[..., None], grad, 0.0)
        elif target.dtype.kind == "f" or _is_bfloat16(target.dtype):
            y = np.moveaxis(target.astype(np.float64), axis, -1)
            if y.shape != z.shape:
                raise ValueError("reference: probability target of the wrong shape")
            y = (1.0 - eps) * y + eps / n_classes
            wy = w * y
            per_sample = np.sum(np.where(wy == 0, 0.0, wy * nll), axis=-1)
            denominator = per_sample.size
            grad = p * np.sum(wy, axis=-1, keepdims=True) - wy
        else:
            raise TypeError(f"reference: unsupported target dtype {target.dtype}")
    loss = _reduce(per_sample, reduction, denominator)
    if not return_grad:
        return loss
    grad = np.moveaxis(grad * _grad_scale(reduction, denominator), -1, axis)
    return loss, grad


def nll_loss(log_probs, target, axis=-1, weight=None, ignore_index=-100,
             reduction="mean"):
    """loss_i = -w[t_i] log_probs_i[t_i]; ignore/reduction semantics of cross_entropy."""
    _check_reduction(reduction)
    lp = _as_float64(log_probs)
    axis = _normalize_axis(axis, lp.ndim)
    lp = np.moveaxis(lp, axis, -1)
    n_classes = lp.shape[-1]
    w = _class_weights(weight, n_classes)
    t = np.asarray(target).astype(np.int64)
    valid = t != ignore_index
    if np.any(valid & ((t < 0) | (t >= n_classes))):
        raise IndexError("reference: target out of range")
    t_safe = np.where(valid, t, 0)
    w_t = np.where(valid, w[t_safe], 0.0)
    lp_t = np.take_along_axis(lp, t_safe[..., None], -1)[..., 0]
    with np.errstate(all="ignore"):
        per_sample = np.where(valid, -w_t * lp_t, 0.0)
    return _reduce(per_sample, reduction, np.sum(w_t))


def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp(-|x|) / (1 + exp(-|x|)) for x < 0."""
    x = _as_float64(x)
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_sigmoid(x):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))."""
    x = _as_float64(x)
    with np.errstate(all="ignore"):
        return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def binary_cross_entropy(logits, target, weight=None, pos_weight=None, reduction="mean",
                         return_grad=False):
    """PyTorch's BCEWithLogits:
    loss = -w [pw y log_sigmoid(z) + (1 - y) log_sigmoid(-z)], a zero coefficient
    counting as 0 even against an infinite log; "mean" over all elements;
    grad = w ((pw y + 1 - y) sigmoid(z) - pw y)."""
    _check_reduction(reduction)
    z = _as_float64(logits)
    y = np.broadcast_to(_as_float64(target), z.shape)
    w = np.broadcast_to(1.0 if weight is None else _as_float64(weight), z.shape)
    pw = np.broadcast_to(1.0 if pos_weight is None else _as_float64(pos_weight), z.shape)
    with np.errstate(all="ignore"):
        pos = pw * y
        neg = 1.0 - y
        term_pos = np.where(pos == 0, 0.0, pos * log_sigmoid(z))
        term_neg = np.where(neg == 0, 0.0, neg * log_sigmoid(-z))
        per_element = -w * (term_pos + term_neg)
        grad = w * ((pos + neg) * sigmoid(z) - pos)
    loss = _reduce(per_element, reduction, per_element.size)
    if not return_grad:
        return loss
    return loss, grad * _grad_scale(reduction, per_element.size)


def softmax_backward(grad_output, probs, axis=-1):
    """probs * (g - sum(g * probs, axis, keepdims=True))."""
    g, p = _as_float64(grad_output), _as_float64(probs)
    axis = _normalize_axis(axis, p.ndim)
    dot = np.expand_dims(
        np.sum(np.ascontiguousarray(np.moveaxis(g * p, axis, -1)), axis=-1), axis)
    return p * (g - dot)


def log_softmax_backward(grad_output, log_probs, axis=-1):
    """g - exp(log_probs) * sum(g, axis, keepdims=True)."""
    g, lp = _as_float64(grad_output), _as_float64(log_probs)
    axis = _normalize_axis(axis, lp.ndim)
    total = np.expand_dims(np.sum(np.ascontiguousarray(np.moveaxis(g, axis, -1)),
                                  axis=-1), axis)
    return g - np.exp(lp) * total


def softmax_jacobian(probs, axis=-1):
    """J[..., i, j] = p_i [i == j] - p_i p_j, the row axis moved to the end and
    expanded into (C, C)."""
    p = _as_float64(probs)
    axis = _normalize_axis(axis, p.ndim)
    p = np.moveaxis(p, axis, -1)
    eye = np.eye(p.shape[-1])
    return p[..., :, None] * eye - p[..., :, None] * p[..., None, :]


def entropy(logits, axis=-1, base=None):
    """-sum p log p of softmax(logits) (0 where p == 0), in nats or divided by
    log(base)."""
    z = _as_float64(logits)
    axis = _normalize_axis(axis, z.ndim)
    p = np.moveaxis(softmax(z, axis), axis, -1)
    logp = np.moveaxis(log_softmax(z, axis), axis, -1)
    with np.errstate(all="ignore"):
        h = -np.sum(np.where(p == 0, 0.0, p * logp), axis=-1)
    if base is not None:
        h = h / np.log(base)
    return h


def kl_divergence(p_logits, q_logits, axis=-1, base=None, reduction="none",
                  return_grad=False):
    """KL(P || Q) = sum p (log p - log q) per row (0 where p == 0), reduced over the
    rows; grad = d kl / d q_logits = softmax(q) - softmax(p) (/N for "mean",
    /log(base) if base)."""
    _check_reduction(reduction)
    zp, zq = _as_float64(p_logits), _as_float64(q_logits)
    axis = _normalize_axis(axis, zp.ndim)
    p = np.moveaxis(softmax(zp, axis), axis, -1)
    lp = np.moveaxis(log_softmax(zp, axis), axis, -1)
    q = np.moveaxis(softmax(zq, axis), axis, -1)
    lq = np.moveaxis(log_softmax(zq, axis), axis, -1)
    with np.errstate(all="ignore"):
        per_row = np.sum(np.where(p == 0, 0.0, p * (lp - lq)), axis=-1)
    scale = 1.0 if base is None else 1.0 / np.log(base)
    per_row = per_row * scale
    kl = _reduce(per_row, reduction, per_row.size)
    if not return_grad:
        return kl
    grad = (q - p) * scale * _grad_scale(reduction, per_row.size)
    return kl, np.moveaxis(grad, -1, axis)


def cross_entropy_options(logits, target, axis=-1, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction="mean", temperature=1.0,
                          softcap=None, z_loss=0.0, where=None, sample_weight=None,
                          return_grad=False):
    """cross_entropy with the part-7 options (spec/options_spec.md), in float64.

    z' = softcap tanh(z / softcap) / T (z / T without softcap), -inf where ``where`` is
    False; lse = logsumexp(z'), p = softmax(z') (0 at masked classes; 0 everywhere in a
    fully masked row). C_r, W_r: count and weight sum of row r's unmasked classes;
    eps_r = eps / C_r (0 when C_r = 0).
    integer t:  l_r = (1-eps) w_t (lse - z'_t) + eps_r sum_{c unmasked} w_c (lse - z'_c)
                (+inf when t is masked and (1-eps) w_t > 0, NaN when lse is NaN)
    float y:    y'_c = (1-eps) y_c + eps_r [c unmasked];  l_r = sum_c w_c y'_c (lse - z'_c),
                w y' = 0 terms count 0, a masked class with w y' > 0 gives +inf
    row loss:   s_r (l_r + z_loss lse^2), the z_loss term 0 where lse = -inf; 0 for ignored
                rows and rows with s_r = 0.
    "mean" divides by sum_{counted} s_r w_t (integer) or sum_r s_r (float), and is 0 when
    no row is counted (every label ignored or an empty batch).
    grad w.r.t. z: s_r (dl/dz' + 2 z_loss lse p) * dz'/dz, dz'/dz = (1 - tanh^2) / T
                   (1 / T), 0 at masked classes, ignored rows and rows with s_r = 0.
    """
    _check_reduction(reduction)
    z = _as_float64(logits)
    axis = _normalize_axis(axis, z.ndim)
    shape = z.shape
    z = np.moveaxis(z, axis, -1)
    n_classes = z.shape[-1]
    w = _class_weights(weight, n_classes)
    eps = float(label_smoothing)
    T = float(temperature)
    mask = np.ones(z.shape, dtype=bool) if where is None else np.moveaxis(
        np.broadcast_to(np.asarray(where, dtype=bool), shape), axis, -1)
    batch = z.shape[:-1]
    s = np.ones(batch) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64), batch)
    target = np.asarray(target)
    with np.errstate(all="ignore"):
        if softcap is not None:
            th = np.tanh(z / softcap)
            zt = softcap * th / T
            dzdz = (1.0 - th * th) / T
        else:
            zt = z / T
            dzdz = np.full(z.shape, 1.0 / T)
        zp = np.where(mask, zt, -np.inf)
        lse = logsumexp(zp, -1, keepdims=True)
        p = np.where(mask, np.exp(zp - lse), 0.0)
        # NaN in a row with NaN or +inf (lse = +inf): softmax's contract.
        p = np.where(np.isnan(lse) | (lse == np.inf), np.nan, p)
        p = np.where(mask, p, 0.0)
        # lse - z' where unmasked; a masked class counts as lse - (-inf) = +inf (NaN
        # when the row's lse is NaN).
        nll = np.where(mask, lse - zp, np.where(np.isnan(lse), np.nan, np.inf))
        count = mask.sum(-1)
        w_row = np.sum(np.where(mask, w, 0.0), -1)
        eps_row = np.where(count > 0, eps / np.maximum(count, 1), 0.0)
        lse0 = lse[..., 0]
        z_on = (z_loss != 0) & (lse0 != -np.inf)  # (0 * inf counts as 0)
        z_term = np.where(z_on, z_loss * lse0 * lse0, 0.0)
        z_grad = np.where(z_on, 2.0 * z_loss * lse0, 0.0)
        if target.dtype.kind in "iu":
            t = target.astype(np.int64)
            valid = t != ignore_index
            if np.any(valid & ((t < 0) | (t >= n_classes))):
                raise IndexError("reference: target out of range")
            t_safe = np.where(valid, t, 0)
            onehot = np.arange(n_classes) == t_safe[..., None]
            w_t = np.where(valid, w[t_safe], 0.0)
            kw = (1.0 - eps) * w_t
            nll_t = np.take_along_axis(nll, t_safe[..., None], -1)[..., 0]
            per = np.where(kw == 0, 0.0, kw * nll_t)
            smooth = np.sum(np.where(mask, w * nll, 0.0), -1)
            per = per + np.where(eps_row == 0, 0.0, eps_row * smooth)
            counted_rows = valid
            denominator = np.sum(np.where(valid, s * w_t, 0.0))
            gz = (p * (kw + eps_row * w_row + z_grad)[..., None]
                  - kw[..., None] * onehot - (eps_row[..., None] * w) * mask)
        elif target.dtype.kind == "f" or _is_bfloat16(target.dtype):
            y = np.moveaxis(target.astype(np.float64), axis, -1)
            y = (1.0 - eps) * y + eps_row[..., None] * mask
            wy = w * y
            per = np.sum(np.where(wy == 0, 0.0, wy * nll), -1)
            counted_rows = np.ones(batch, dtype=bool)
            denominator = np.sum(s)
            gz = p * (np.sum(wy, -1) + z_grad)[..., None] - wy
        else:
            raise TypeError(f"reference: unsupported target dtype {target.dtype}")
        live = counted_rows & (s != 0)
        per_sample = np.where(live, s * (per + z_term), 0.0)
        grad = np.where(mask & live[..., None], s[..., None] * gz * dzdz, 0.0)
    counted = int(np.sum(counted_rows))
    if reduction == "none":
        loss = per_sample
    else:
        total = _exact_sum(per_sample)
        if reduction == "sum":
            loss = total
        else:
            loss = np.float64(0.0) if counted == 0 else (
                np.float64(total / denominator) if denominator != 0 else np.float64(np.nan))
    if not return_grad:
        return loss
    if reduction == "mean":
        grad = grad * (0.0 if counted == 0 else 1.0 / denominator)
    return loss, np.moveaxis(grad, -1, axis)


# =======================================================================================
# Part 7 options (spec/options_spec.md): temperature=, where= on the softmax family,
# entropy and kl_divergence; reduction="batchmean"; binary_cross_entropy's sample_weight=.
#
# temperature T: the function of x / T (gradients with respect to the raw logits carry
# 1/T). where: a bool mask broadcast to the input's shape; left-out elements count as
# -inf logits; a row with nothing included follows JAX: softmax 0, log_softmax -inf,
# logsumexp -inf, entropy 0, KL 0, gradients 0.
# =======================================================================================

__all__ += [
    "softmax_options", "log_softmax_options", "logsumexp_options", "entropy_options",
    "kl_divergence_options", "binary_cross_entropy_sample_weight",
]


def _options_logits(x, axis, temperature, where):
    """(x / T with left-out elements -inf, the broadcast mask or None, the axis, and
    the rows with nothing included (keepdims))."""
    z = _as_float64(x)
    axis = _normalize_axis(axis, z.ndim)
    z = z / float(temperature)
    if where is None:
        return z, None, axis, np.zeros_like(z[(slice(None),) * axis + (slice(0, 1),)],
                                            dtype=bool)
    w = np.broadcast_to(np.asarray(where, dtype=bool), z.shape)
    empty = ~np.any(w, axis=axis, keepdims=True)
    return np.where(w, z, -np.inf), w, axis, empty


def softmax_options(x, axis=-1, temperature=1.0, where=None):
    """softmax(where(w, x / T, -inf)); left-out elements 0 (also in rows that are NaN),
    0 for rows with nothing included (JAX's where=)."""
    z, w, axis, empty = _options_logits(x, axis, temperature, where)
    r = np.where(empty, 0.0, softmax(z, axis))
    return r if w is None else np.where(w, r, 0.0)


def log_softmax_options(x, axis=-1, temperature=1.0, where=None):
    """log_softmax(where(w, x / T, -inf)); left-out elements -inf (also in rows that are
    NaN), -inf for rows with nothing included (JAX's where=)."""
    z, w, axis, empty = _options_logits(x, axis, temperature, where)
    r = np.where(empty, -np.inf, log_softmax(z, axis))
    return r if w is None else np.where(w, r, -np.inf)


def logsumexp_options(x, axis=-1, temperature=1.0, where=None):
    """logsumexp(where(w, x / T, -inf)) (not T times it); -inf with nothing included."""
    z, _, axis, _ = _options_logits(x, axis, temperature, where)
    return logsumexp(z, axis)


def entropy_options(logits, axis=-1, temperature=1.0, where=None):
    """Entropy of softmax(x / T) over the included classes; 0 with nothing included."""
    z, _, axis, empty = _options_logits(logits, axis, temperature, where)
    h = entropy(z, axis)
    return np.where(np.squeeze(empty, axis), 0.0, h)


def kl_divergence_options(p_logits, q_logits, axis=-1, temperature=1.0, where=None,
                          reduction="none", return_grad=False):
    """KL(softmax(p / T) || softmax(q / T)) over the included classes (no T^2 factor);
    0 with nothing included. "batchmean": the sum over rows / the number of rows.
    grad (d / d raw q_logits) = (softmax(q / T) - softmax(p / T)) / T, 0 where left out."""
    zp, w, axis, empty = _options_logits(p_logits, axis, temperature, where)
    zq, _, _, _ = _options_logits(q_logits, axis, temperature, where)
    p = softmax(zp, axis)
    q = softmax(zq, axis)
    with np.errstate(all="ignore"):
        terms = np.where(p == 0, 0.0, p * (log_softmax(zp, axis) - log_softmax(zq, axis)))
    per_row = np.sum(np.moveaxis(terms, axis, -1), axis=-1)
    per_row = np.where(np.squeeze(empty, axis), 0.0, per_row)
    rows = per_row.size
    red = "mean" if reduction == "batchmean" else reduction
    kl = _reduce(per_row, red, rows)
    if not return_grad:
        return kl
    grad = np.where(empty, 0.0, (q - p) / float(temperature))
    return kl, grad * _grad_scale(red, rows)


def binary_cross_entropy_sample_weight(logits, target, sample_weight, weight=None,
                                       pos_weight=None, reduction="mean", return_grad=False):
    """BCE with one weight per index of the first axis, broadcast over the rest: each
    element's loss and gradient times s; "mean" = sum(s * w * l) / sum of s over all
    elements."""
    z = _as_float64(logits)
    s = np.asarray(sample_weight, dtype=np.float64)
    s = np.broadcast_to(s.reshape(s.shape + (1,) * (z.ndim - max(s.ndim, 1)))
                        if s.ndim else s, z.shape)
    per_element, grad = binary_cross_entropy(logits, target, weight, pos_weight, "none",
                                             return_grad=True)
    with np.errstate(all="ignore"):
        per_element = np.where(s == 0, 0.0, s * per_element)
        grad = s * grad
    denominator = float(np.sum(s))
    if reduction == "none":
        loss = per_element
    elif reduction == "sum":
        loss = _exact_sum(per_element)
    else:
        loss = _exact_sum(per_element) / denominator if denominator else np.nan
    if not return_grad:
        return loss
    scale = 1.0 / denominator if reduction == "mean" and denominator else 1.0
    return loss, grad * scale
