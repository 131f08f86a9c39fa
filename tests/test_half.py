"""float16 and bfloat16 (ml_dtypes.bfloat16): every function takes them and returns their
dtype, within 2 units in the last place of that dtype of the float64 result.

The float64 reference is computed from the 16-bit inputs' exact values. The kernels of the
softmax family and cross-entropy read 16-bit elements and widen them in registers (float16
with F16C / AVX-512 instructions, bfloat16 with a shift, the scalar bit functions on the
baseline target); every SIMD target is tested.
"""

import numpy as np
import pytest

import logitkit
import reference
from helpers import rng_for

ml_dtypes = pytest.importorskip("ml_dtypes")

HALF_DTYPES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
HALF_IDS = ["float16", "bfloat16"]

# (mantissa bits, smallest normal exponent) of each format.
_FORMAT = {"float16": (10, -14), "bfloat16": (7, -126)}


def ulp(values, dtype):
    """The spacing of ``dtype`` at each of ``values`` (the subnormal spacing below normal)."""
    mantissa, emin = _FORMAT[np.dtype(dtype).name]
    a = np.abs(np.asarray(values, dtype=np.float64))
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    return np.exp2(np.maximum(e, emin) - mantissa)


def assert_ulp(actual, expected, dtype, what, bound=2.0, operand_scale=0.0):
    """actual (of ``dtype``) is within ``bound`` units of ``dtype``'s last place of the
    float64 ``expected``; NaN and infinities must match exactly.

    ``operand_scale``: for results that are differences of terms (gradients such as
    p - y), the size of those terms. The kernels compute in float32, so a difference
    that cancels is also off by float32's rounding of its terms, 2^-23 of them, which
    can be many units of a tiny result's last place (a one-class row's gradient is 0
    in float64 and about 1e-8 in float32).
    """
    assert np.asarray(actual).dtype == dtype, f"{what}: dtype {np.asarray(actual).dtype}"
    got = np.asarray(actual).astype(np.float64)
    ref = np.asarray(expected, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN positions differ"
    inf = np.isinf(ref)
    assert np.array_equal(got[inf], ref[inf]) and not np.isinf(got[~inf]).any(), (
        f"{what}: infinities differ"
    )
    finite = ~nan & ~inf
    allowed = ulp(ref[finite], dtype) * bound + operand_scale * 2.0**-23
    err = np.abs(got[finite] - ref[finite]) / allowed * bound
    # A finite float64 result beyond the format's range rounds to inf: compared above.
    worst = float(err.max()) if err.size else 0.0
    assert worst <= bound, f"{what}: {worst:.3f} ulp (bound {bound})"


def logits_for(rng, shape, dtype, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


SHAPES = [((1, 1), -1), ((3, 7), -1), ((5, 16), -1), ((4, 17), -1), ((2, 33), -1),
          ((3, 1000), -1), ((64, 10), -1), ((8, 3), 0), ((33, 5), 0), ((6, 40), 0)]
SHAPE_IDS = [f"{'x'.join(map(str, s))}-axis{a % 2}" for s, a in SHAPES]


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("shape_axis", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family(simd_target, name, shape_axis, dtype):
    shape, axis = shape_axis
    rng = rng_for("half", name, shape, axis, dtype.name)
    x = logits_for(rng, shape, dtype)
    x.flat[:: max(1, x.size // 5)] = -np.inf  # masked classes
    ref = getattr(reference, name)(x.astype(np.float64), axis=axis)
    got = getattr(logitkit, name)(x, axis=axis)
    assert_ulp(got, ref, dtype, name)
    # out=, and in place for the normalizations
    out = np.empty(np.shape(ref), dtype)
    getattr(logitkit, name)(x, axis=axis, out=out)
    assert_ulp(out, ref, dtype, f"{name} out=")
    if name != "logsumexp":
        y = x.copy()
        getattr(logitkit, name)(y, axis=axis, out=y)
        assert_ulp(y, ref, dtype, f"{name} in place")


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_strided_views(simd_target, name, dtype):
    rng = rng_for("half-strided", name, dtype.name)
    base = logits_for(rng, (9, 70), dtype)
    for view in (base[:, ::2], base.T, base[::-2, 3:40], np.asfortranarray(base)):
        for axis in (-1, 0):
            ref = getattr(reference, name)(view.astype(np.float64), axis=axis)
            assert_ulp(getattr(logitkit, name)(view, axis=axis), ref, dtype, f"{name} view")


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_special_rows(simd_target, dtype):
    inf = np.inf
    x = np.array([[-inf, -inf, -inf], [inf, 0, 1], [np.nan, 0, 1], [0, 0, 0], [-inf, 2, -inf]])
    xh = x.astype(dtype)
    for name in ("softmax", "log_softmax", "logsumexp"):
        for axis in (-1, 0):
            with np.errstate(all="ignore"):
                ref = getattr(reference, name)(x, axis=axis)
            assert_ulp(getattr(logitkit, name)(xh, axis=axis), ref, dtype, name)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_every_value_converts_exactly(simd_target, dtype, axis):
    """logsumexp of one element is the element: all 65536 bit patterns go through the
    kernels' widening and narrowing unchanged (NaN stays NaN; -0 gives +0, as
    shift + log 1 does)."""
    bits = np.arange(65536, dtype=np.uint16)
    x = bits.view(dtype).reshape((-1, 1) if axis == -1 else (1, -1))
    got = logitkit.logsumexp(x, axis=axis)
    expected = x.reshape(-1)
    nan = np.isnan(expected.astype(np.float32))
    assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
    keep = ~nan & (expected.view(np.uint16) != 0x8000)
    assert np.array_equal(got.view(np.uint16)[keep], expected.view(np.uint16)[keep])
    assert got.astype(np.float32)[~keep & ~nan].tolist() == [0.0]
    # log_softmax of one element: 0 for finite, NaN otherwise
    lsm = logitkit.log_softmax(x, axis=axis).astype(np.float32).reshape(-1)
    finite = np.isfinite(expected.astype(np.float32))
    assert np.all(lsm[finite] == 0) and np.all(np.isnan(lsm[~finite]))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("shape_axis", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "weighted": True}],
                         ids=["plain", "smooth-weighted"])
def test_cross_entropy(simd_target, kind, shape_axis, dtype, options):
    shape, axis = shape_axis
    rng = rng_for("half-ce", kind, shape, axis, dtype.name, len(options))
    z = logits_for(rng, shape, dtype, scale=3.0)
    n = shape[axis]
    batch = tuple(s for d, s in enumerate(shape) if d != axis % len(shape))
    if kind == "int":
        target = rng.integers(0, n, size=batch)
        if target.size > 2:
            target.flat[1] = -100
    else:
        t = rng.random(shape)
        target = (t / t.sum(axis=axis, keepdims=True)).astype(dtype)
    kwargs = {}
    if options.get("weighted"):
        kwargs["weight"] = rng.uniform(0.5, 2.0, n)
    if "label_smoothing" in options:
        kwargs["label_smoothing"] = options["label_smoothing"]
    ref_target = target if kind == "int" else target.astype(np.float64)
    for reduction in ("mean", "none"):
        ref_loss, ref_grad = reference.cross_entropy(
            z.astype(np.float64), ref_target, axis=axis, reduction=reduction,
            return_grad=True, **kwargs)
        loss, grad = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                            return_grad=True, **kwargs)
        assert_ulp(loss, ref_loss, dtype, f"loss {reduction}")
        operands = float(np.max(kwargs.get("weight", 1.0)))
        assert_ulp(grad, ref_grad, dtype, f"grad {reduction}", operand_scale=operands)
    # the gradient written over the logits
    ref_loss, ref_grad = reference.cross_entropy(z.astype(np.float64), ref_target, axis=axis,
                                                 return_grad=True, **kwargs)
    zz = z.copy()
    loss, grad = logitkit.cross_entropy(zz, target, axis=axis, return_grad=True,
                                        grad_out=zz, **kwargs)
    assert grad is zz
    assert_ulp(grad, ref_grad, dtype, "grad_out=logits",
               operand_scale=float(np.max(kwargs.get("weight", 1.0))))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_nll_loss(simd_target, dtype):
    rng = rng_for("half-nll", dtype.name)
    lp = logitkit.log_softmax(logits_for(rng, (6, 11), dtype))
    t = rng.integers(0, 11, 6)
    for reduction in ("mean", "sum", "none"):
        ref = reference.nll_loss(lp.astype(np.float64), t, reduction=reduction)
        assert_ulp(logitkit.nll_loss(lp, t, reduction=reduction), ref, dtype, reduction)


# The rest of the family: each result is within 2 ulp whether its kernel reads 16-bit
# elements or computes in float32 and rounds once.
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("shape", [(3, 7), (4, 17), (2, 1000)], ids=["3x7", "4x17", "2x1000"])
def test_rest_of_family(simd_target, shape, dtype):
    rng = rng_for("half-rest", shape, dtype.name)
    x = logits_for(rng, shape, dtype)
    x64 = x.astype(np.float64)
    assert_ulp(logitkit.sigmoid(x), reference.sigmoid(x64), dtype, "sigmoid")
    assert_ulp(logitkit.log_sigmoid(x), reference.log_sigmoid(x64), dtype, "log_sigmoid")
    assert_ulp(logitkit.entropy(x), reference.entropy(x64), dtype, "entropy")
    q = logits_for(rng, shape, dtype)
    kl, g = logitkit.kl_divergence(x, q, reduction="sum", return_grad=True)
    ref_kl, ref_g = reference.kl_divergence(x64, q.astype(np.float64), reduction="sum",
                                            return_grad=True)
    assert_ulp(kl, ref_kl, dtype, "kl_divergence")
    assert_ulp(g, ref_g, dtype, "kl_divergence grad", operand_scale=1.0)
    y = rng.random(shape).astype(dtype)
    loss, grad = logitkit.binary_cross_entropy(x, y, reduction="sum", return_grad=True)
    ref_loss, ref_grad = reference.binary_cross_entropy(x64, y.astype(np.float64),
                                                        reduction="sum", return_grad=True)
    assert_ulp(loss, ref_loss, dtype, "binary_cross_entropy")
    assert_ulp(grad, ref_grad, dtype, "binary_cross_entropy grad", operand_scale=1.0)
    gout = logits_for(rng, shape, dtype)
    p = logitkit.softmax(x)
    assert_ulp(logitkit.softmax_backward(gout, p),
               reference.softmax_backward(gout.astype(np.float64), p.astype(np.float64)),
               dtype, "softmax_backward", operand_scale=float(np.abs(gout.astype(np.float64)).max()))


def test_bfloat16_recognised_without_importing_ml_dtypes_in_logitkit():
    import sys

    import logitkit._arrays as arrays

    assert arrays.is_bfloat16(np.dtype(ml_dtypes.bfloat16))
    assert not arrays.is_bfloat16(np.dtype(np.float16))
    assert "ml_dtypes" not in arrays.__dict__
    assert sys.modules.get("ml_dtypes") is ml_dtypes  # imported by this test, not logitkit


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_special_takes_both(simd_target, dtype):
    from logitkit import special

    rng = rng_for("half-special", dtype.name)
    x = logits_for(rng, (4, 19), dtype)
    x64 = x.astype(np.float64)
    for axis in (-1, 0, None):
        ax = -1 if axis is None else axis
        flat = x64.reshape(-1) if axis is None else x64
        ref_sm = reference.softmax(flat, axis=ax).reshape(x.shape) if axis is None else (
            reference.softmax(flat, axis=ax))
        assert_ulp(special.softmax(x, axis=axis), ref_sm, dtype, f"special.softmax {axis}")
        ref_lsm = reference.log_softmax(flat, axis=ax)
        ref_lsm = ref_lsm.reshape(x.shape) if axis is None else ref_lsm
        assert_ulp(special.log_softmax(x, axis=axis), ref_lsm, dtype, "special.log_softmax")
        assert_ulp(np.asarray(special.logsumexp(x, axis=axis)),
                   np.asarray(reference.logsumexp(flat, axis=ax)), dtype, "special.logsumexp")


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("shape_axis", SHAPES, ids=SHAPE_IDS)
def test_divergences_and_backward(simd_target, shape_axis, dtype):
    """entropy, kl_divergence (with its gradient) and the backward products read 16-bit
    rows natively: every layout, vector tails, -inf entries, out=."""
    shape, axis = shape_axis
    rng = rng_for("half-div", shape, axis, dtype.name)
    x = logits_for(rng, shape, dtype)
    q = logits_for(rng, shape, dtype)
    x.flat[:: max(2, x.size // 3)] = -np.inf
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    for view in (lambda a: a, lambda a: a[..., ::-1]):
        xv, qv = view(x), view(q)
        assert_ulp(logitkit.entropy(xv, axis=axis),
                   reference.entropy(view(x64), axis=axis), dtype, "entropy")
        kl, g = logitkit.kl_divergence(xv, qv, axis=axis, return_grad=True)
        ref_kl, ref_g = reference.kl_divergence(view(x64), view(q64), axis=axis,
                                                return_grad=True)
        assert_ulp(kl, ref_kl, dtype, "kl_divergence")
        assert_ulp(g, ref_g, dtype, "kl_divergence grad", operand_scale=1.0)
    gout = logits_for(rng, shape, dtype)
    p = logitkit.softmax(x, axis=axis)
    lp = logitkit.log_softmax(x, axis=axis)
    g64, p64, lp64 = gout.astype(np.float64), p.astype(np.float64), lp.astype(np.float64)
    scale = float(np.abs(g64).max()) * shape[axis]
    out = np.empty_like(p)
    logitkit.softmax_backward(gout, p, axis=axis, out=out)
    assert_ulp(out, reference.softmax_backward(g64, p64, axis=axis), dtype,
               "softmax_backward", operand_scale=scale)
    with np.errstate(all="ignore"):
        ref_lsb = reference.log_softmax_backward(g64, lp64, axis=axis)
    assert_ulp(logitkit.log_softmax_backward(gout, lp, axis=axis), ref_lsb, dtype,
               "log_softmax_backward", operand_scale=scale)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 17), (5, 33), (2, 1000)],
                         ids=["1", "7", "3x17", "5x33", "2x1000"])
def test_binary_family(simd_target, shape, dtype):
    """sigmoid, log_sigmoid and binary_cross_entropy read 16-bit arrays natively: vector
    tails, out= and in place, strided input, weights and pos_weight, grad_out."""
    rng = rng_for("half-binary", shape, dtype.name)
    x = logits_for(rng, shape, dtype, scale=6.0)
    x.flat[0] = np.inf
    if x.size > 2:
        x.flat[1] = -np.inf
        x.flat[2] = np.nan
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        ref_s, ref_ls = reference.sigmoid(x64), reference.log_sigmoid(x64)
    for name, ref in (("sigmoid", ref_s), ("log_sigmoid", ref_ls)):
        fn = getattr(logitkit, name)
        assert_ulp(fn(x), ref, dtype, name)
        out = np.empty_like(x)
        fn(x, out=out)
        assert_ulp(out, ref, dtype, f"{name} out=")
        y = x.copy()
        fn(y, out=y)
        assert_ulp(y, ref, dtype, f"{name} in place")
        if x.ndim == 2:
            view = x[:, ::-1]
            with np.errstate(all="ignore"):
                ref_v = getattr(reference, name)(view.astype(np.float64))
            assert_ulp(fn(view), ref_v, dtype, f"{name} view")
    z = logits_for(rng, shape, dtype, scale=4.0)
    t = rng.random(shape).astype(dtype)
    w = rng.uniform(0.5, 2.0, shape).astype(dtype)
    pw = rng.uniform(0.5, 3.0, shape[-1:]).astype(dtype)
    z64, t64, w64, pw64 = (a.astype(np.float64) for a in (z, t, w, pw))
    for kwargs, ref_kwargs in (({}, {}), ({"weight": w, "pos_weight": pw},
                                          {"weight": w64, "pos_weight": pw64})):
        for reduction in ("mean", "none"):
            loss, grad = logitkit.binary_cross_entropy(z, t, reduction=reduction,
                                                       return_grad=True, **kwargs)
            ref_loss, ref_grad = reference.binary_cross_entropy(
                z64, t64, reduction=reduction, return_grad=True, **ref_kwargs)
            assert_ulp(loss, ref_loss, dtype, f"bce {reduction}")
            assert_ulp(grad, ref_grad, dtype, f"bce grad {reduction}", operand_scale=6.0)
        zz = z.copy()
        _, grad = logitkit.binary_cross_entropy(zz, t, return_grad=True, grad_out=zz, **kwargs)
        assert grad is zz
        _, ref_grad = reference.binary_cross_entropy(z64, t64, return_grad=True, **ref_kwargs)
        assert_ulp(grad, ref_grad, dtype, "bce grad_out=logits", operand_scale=6.0)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=HALF_IDS)
def test_wider_targets_are_not_rounded_to_16_bits(simd_target, dtype):
    """float32 targets of 16-bit logits are used as they are (the fuzzer's case: a float16
    logit of 27232 with a float32 target; rounding the target to float16 moved the loss
    by 2 units)."""
    z = np.array([27232.0, -27232.0, 3.0]).astype(dtype)
    t = np.array([0x3F69AA59, 0x3F1B4C7B, 0x3ECCCCCD], dtype=np.uint32).view(np.float32)
    ref = reference.binary_cross_entropy(z.astype(np.float64), t.astype(np.float64),
                                         reduction="none")
    assert_ulp(logitkit.binary_cross_entropy(z, t, reduction="none"), ref, dtype, "bce")
    zz = np.array([[3000.0, -3000.0, 0.5]]).astype(dtype)
    probs = np.array([[0x3E99999A, 0x3F0CCCCD, 0x3E4CCCCD]], dtype=np.uint32).view(np.float32)
    ref = reference.cross_entropy(zz.astype(np.float64), probs.astype(np.float64),
                                  reduction="none")
    assert_ulp(logitkit.cross_entropy(zz, probs, reduction="none"), ref, dtype, "ce")
