"""Helpers for the part-2 tests (losses, gradients, sigmoid, backward passes, entropy,
KL divergence): tolerances for losses and gradients, and random targets / weights.

Imported as ``from loss_helpers import ...`` (``tests/`` is on sys.path, see
conftest.py).  The part-1 helpers (``helpers.py``) stay as they are.
"""

import numpy as np

# ---------------------------------------------------------------------------------------
# tolerances
# ---------------------------------------------------------------------------------------

# kind "loss" (a loss, an entropy, a KL divergence; per sample or reduced):
#     |a - r| <= rtol * max(1, |r|)
# kind "grad" (a gradient, a backward pass, a Jacobian):
#     |a - r| <= atol + rtol * |r|
#
# float32: ~1e-5 relative (the losses are log-domain quantities: lse - z_t computed as
# log(sum exp(z - m)) - (z_t - m) has an error of a few ulp of max(1, loss)); gradients
# p * A - B with |A|, |B| <= a few: a few ulp (6e-8) of a few -> 1e-6 absolute.
# float16 results are computed in float32 and rounded once (half an ulp is
# 2**-11 ~ 4.9e-4 relative; below 6.1e-5 the spacing is 2**-24 ~ 6e-8).
LOSS_TOLERANCES = {
    np.dtype(np.float16): {"loss_rtol": 1e-3, "grad_atol": 1e-6, "grad_rtol": 1e-3},
    np.dtype(np.float32): {"loss_rtol": 1e-5, "grad_atol": 1e-6, "grad_rtol": 1e-5},
    np.dtype(np.float64): {"loss_rtol": 1e-12, "grad_atol": 1e-13, "grad_rtol": 1e-12},
}

# bfloat16 (ml_dtypes.bfloat16, when installed): float16's relative tolerances scaled to
# its precision (eps 2**-7 against 2**-10: 8 x 1e-3); the absolute gradient tolerance is
# float32's rounding of the terms (the kernels compute in float32), as for float16.
try:
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - bfloat16 is optional
    _ml_dtypes = None
if _ml_dtypes is not None:
    LOSS_TOLERANCES[np.dtype(_ml_dtypes.bfloat16)] = {
        "loss_rtol": 8e-3, "grad_atol": 1e-6, "grad_rtol": 8e-3}

KINDS = ("loss", "grad")


def loss_tolerance(kind, dtype, ref_values, scale=None):
    """Allowed absolute error for each element of the float64 ``ref_values``.

    ``scale`` (optional, broadcast against ``ref_values``): the magnitude of the terms
    whose sum or difference the result is, when it can be much larger than the result
    (a backward pass g - p sum(g) that cancels); the relative part of the tolerance is
    then taken of ``max(|ref|, scale)``: a float32 evaluation that rounds each term
    correctly already has an error of a few ulp of the terms, not of the result."""
    tol = LOSS_TOLERANCES[np.dtype(dtype)]
    r = np.abs(np.asarray(ref_values, dtype=np.float64))
    if scale is not None:
        r = np.maximum(r, np.abs(np.asarray(scale, dtype=np.float64)))
    if kind == "loss":
        return tol["loss_rtol"] * np.maximum(1.0, r)
    if kind == "grad":
        return tol["grad_atol"] + tol["grad_rtol"] * r
    raise ValueError(f"unknown kind {kind!r}, expected one of {KINDS}")


def _describe(where, actual, ref_values, limit=5):
    idx = np.argwhere(where)[:limit]
    return "\n".join(f"  at {tuple(int(i) for i in ix)}: actual={actual[tuple(ix)]!r} "
                     f"ref={ref_values[tuple(ix)]!r}" for ix in idx)


def assert_loss_close(actual, ref_values, kind, dtype, what="", scale=None):
    """Check a logitkit result against the float64 reference (like helpers.assert_close):

    - ``actual`` is an ndarray or NumPy scalar of exactly ``dtype`` and of the
      reference's shape (a reduced loss is 0-d);
    - NaN exactly where the reference has NaN, +-inf exactly where it has +-inf;
    - every finite element within ``loss_tolerance(kind, dtype, ref, scale)``.
    """
    dtype = np.dtype(dtype)
    label = f"{what} {kind} {dtype}".strip()
    assert isinstance(actual, (np.ndarray, np.generic)), (
        f"{label}: expected an ndarray or NumPy scalar, got {type(actual)}")
    actual = np.asarray(actual)
    assert actual.dtype == dtype, (
        f"{label}: result dtype {actual.dtype!r}, expected {dtype!r}")
    ref_values = np.asarray(ref_values, dtype=np.float64)
    assert actual.shape == ref_values.shape, (
        f"{label}: result shape {actual.shape}, expected {ref_values.shape}")
    a = actual.astype(np.float64)

    nan_a, nan_r = np.isnan(a), np.isnan(ref_values)
    if not np.array_equal(nan_a, nan_r):
        raise AssertionError(f"{label}: NaN positions differ\n"
                             + _describe(nan_a != nan_r, a, ref_values))
    inf_r = np.isinf(ref_values)
    inf_mismatch = (np.isinf(a) != inf_r) | (inf_r & (a != ref_values))
    if np.any(inf_mismatch):
        raise AssertionError(f"{label}: infinities differ at "
                             f"{int(np.sum(inf_mismatch))} positions\n"
                             + _describe(inf_mismatch, a, ref_values))
    finite = np.isfinite(ref_values)
    r = np.where(finite, ref_values, 0.0)
    err = np.where(finite, np.abs(a - r), 0.0)
    if scale is not None:
        scale = np.where(finite, np.broadcast_to(scale, r.shape), 0.0)
    tol = np.where(finite, loss_tolerance(kind, dtype, r, scale), 1.0)
    bad = err > tol
    if np.any(bad):
        worst = np.unravel_index(np.argmax(np.where(bad, err / tol, 0.0)), err.shape)
        raise AssertionError(
            f"{label}: {int(np.sum(bad))} of {a.size} elements out of tolerance; "
            f"worst at {tuple(int(i) for i in worst)}: actual={a[worst]!r} "
            f"ref={r[worst]!r} error={err[worst]:.3g} tolerance={tol[worst]:.3g} "
            f"({err[worst] / tol[worst]:.3g}x)\n" + _describe(bad, a, ref_values))


def assert_reduced(loss, reduction, dtype, per_sample_shape):
    """The type and shape contract of a loss: a NumPy scalar / 0-d array of the result
    dtype for "mean" and "sum", an array of the per-sample shape for "none"."""
    assert isinstance(loss, (np.ndarray, np.generic)), type(loss)
    assert np.asarray(loss).dtype == np.dtype(dtype), (np.asarray(loss).dtype, dtype)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) or per_sample_shape == ()
        assert np.shape(loss) == tuple(per_sample_shape)
    else:
        assert np.ndim(loss) == 0, np.shape(loss)


def as_f64(a):
    return np.asarray(a, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# targets and weights
# ---------------------------------------------------------------------------------------

REDUCTIONS = ["none", "sum", "mean"]


def without_axis(shape, axis):
    axis = axis % len(shape)
    return tuple(n for i, n in enumerate(shape) if i != axis)


def int_targets(rng, shape, n_classes, ignore_index=None, frac=0.25, dtype=np.int64):
    """Labels in [0, n_classes); with ``ignore_index`` about ``frac`` of them are set to
    it (but never the first one, so at least one sample counts)."""
    t = rng.integers(0, n_classes, size=shape)
    if ignore_index is not None and t.size:
        mask = rng.random(shape) < frac
        mask.flat[0] = False
        t = np.where(mask, ignore_index, t)
    return np.asarray(t).astype(dtype)


def prob_targets(rng, shape, axis, dtype, zeros=0.3):
    """Probability rows along ``axis`` with about ``zeros`` of the entries exactly 0
    (at least one nonzero entry per row), summing to 1 in float64 before the cast."""
    y = rng.random(shape) ** 3
    y = np.where(rng.random(shape) < zeros, 0.0, y)
    y = np.moveaxis(y, axis, -1).copy()
    if y.size:
        first = rng.integers(0, y.shape[-1], size=y.shape[:-1])
        np.put_along_axis(y, first[..., None], 1.0, axis=-1)
    y = y / np.sum(y, axis=-1, keepdims=True)
    return np.moveaxis(y, -1, axis).astype(dtype)


def onehot(t, n_classes, axis, dtype):
    """The one-hot encoding of integer labels ``t`` along ``axis``."""
    y = (np.asarray(t)[..., None] == np.arange(n_classes)).astype(dtype)
    return np.moveaxis(y, -1, axis)


def class_weights(rng, n_classes, dtype=np.float64):
    """Positive class weights in [0.5, 2)."""
    return (0.5 + 1.5 * rng.random(n_classes)).astype(dtype)


def central_difference(f, x, h=1e-6):
    """The gradient of the scalar function ``f`` at the float64 array ``x`` by central
    differences: (f(x + h e_k) - f(x - h e_k)) / 2h for every element k (error
    ~h**2 |f'''| + ulp(f) / h)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        # divide by the step actually taken (x + h is rounded)
        grad[k] = (float(f(xp)) - float(f(xm))) / (xp[k] - xm[k])
    return grad
