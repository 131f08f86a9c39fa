"""entropy and kl_divergence against the float64 reference: class counts, axes, layouts,
bases, reductions, the KL gradient, masked (-inf) classes, and the seeds' identities
(a fair coin carries 1 bit; KL = cross-entropy - entropy)."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import FLOAT_DTYPES, LAYOUTS, dtype_id, random_logits, rng_for, with_layout
from loss_helpers import (
    REDUCTIONS,
    as_f64,
    assert_loss_close,
    assert_reduced,
    loss_tolerance,
    without_axis,
)

pytestmark = pytest.mark.filterwarnings("error")

CLASS_COUNTS = [1, 2, 3, 7, 16, 17, 1000, 32000]
BASES = [None, 2, 10, np.e]


def n_rows(n_classes):
    if n_classes >= 10000:
        return 4
    if n_classes >= 512:
        return 6
    return 37


def check_entropy(z, axis, dtype, base=None):
    z_before = z.copy()
    h = logitkit.entropy(z, axis=axis, base=base)
    shape = without_axis(z.shape, axis)
    assert_reduced(h, "none" if shape else "sum", dtype, shape)
    assert_loss_close(h, reference.entropy(z, axis, base), "loss", dtype, f"base={base}")
    np.testing.assert_array_equal(z, z_before)


def check_kl(zp, zq, axis, dtype, base=None):
    zp_before, zq_before = zp.copy(), zq.copy()
    shape = without_axis(zp.shape, axis)
    for reduction in REDUCTIONS:
        what = f"reduction={reduction} base={base}"
        ref_kl, ref_grad = reference.kl_divergence(zp, zq, axis, base=base,
                                                   reduction=reduction, return_grad=True)
        kl = logitkit.kl_divergence(zp, zq, axis=axis, base=base, reduction=reduction)
        assert_reduced(kl, reduction if shape else "sum", dtype, shape)
        assert_loss_close(kl, ref_kl, "loss", dtype, what)
        result = logitkit.kl_divergence(zp, zq, axis=axis, base=base,
                                        reduction=reduction, return_grad=True)
        assert isinstance(result, tuple) and len(result) == 2
        kl, grad = result
        assert_loss_close(kl, ref_kl, "loss", dtype, what + " return_grad")
        assert isinstance(grad, np.ndarray) and grad.shape == zq.shape
        assert_loss_close(grad, ref_grad, "grad", dtype, what)
    np.testing.assert_array_equal(zp, zp_before)
    np.testing.assert_array_equal(zq, zq_before)


# ---------------------------------------------------------------------------------------
# entropy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", CLASS_COUNTS, ids=lambda n: f"C{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_entropy_class_counts(simd_target, dtype, n):
    rng = rng_for("entropy-len", dtype_id(dtype), n)
    z = random_logits(rng, (n_rows(n), n), dtype)
    for base in BASES:
        check_entropy(z, -1, dtype, base)
    zt = random_logits(rng, (n, 3), dtype, axis=0)
    check_entropy(zt, 0, dtype)


SHAPE_AXES = [((7,), 0), ((6, 9), 0), ((6, 9), 1), ((3, 5, 4), 0), ((3, 5, 4), 1),
              ((3, 5, 4), -1)]


def _shape_axis_id(p):
    return "x".join(map(str, p[0])) + f"-axis{p[1]}"


@pytest.mark.parametrize("shape_axis", SHAPE_AXES, ids=_shape_axis_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_entropy_axes_and_layouts(simd_target, dtype, shape_axis):
    shape, axis = shape_axis
    for layout in LAYOUTS:
        rng = rng_for("entropy-layout", dtype_id(dtype), shape, axis, layout)
        values = random_logits(rng, shape, dtype, axis=axis)
        check_entropy(with_layout(values, layout), axis, dtype, base=2)


def test_entropy_fair_coin_is_one_bit(simd_target):
    # seed 001: tossing a fair coin carries 1 bit of uncertainty
    for dtype in (np.float32, np.float64, np.int64):
        h = logitkit.entropy(np.array([0, 0], dtype=dtype), base=2)
        result_dtype = np.float32 if dtype == np.float32 else np.float64
        assert_reduced(h, "sum", result_dtype, ())
        assert_loss_close(h, 1.0, "loss", result_dtype)
    # and ln 2 nats, log10(2) hartleys
    assert_loss_close(logitkit.entropy(np.zeros(2)), np.log(2), "loss", np.float64)
    assert_loss_close(logitkit.entropy(np.zeros(2), base=10), np.log10(2), "loss",
                      np.float64)
    # any equal logits: a uniform distribution over C classes has log2(C) bits
    for c in (1, 3, 4, 8, 1000, 32000):
        assert_loss_close(logitkit.entropy(np.full(c, 7.5), base=2), np.log2(c), "loss",
                          np.float64)
        assert_loss_close(logitkit.entropy(np.full(c, 7.5, dtype=np.float32), base=2),
                          np.log2(c), "loss", np.float32)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_entropy_masked_and_huge_logits(simd_target, dtype):
    # -inf logits (p = 0) contribute 0; a dominant logit gives ~0
    z = np.array([[0.0, -np.inf, 0.0, -np.inf],
                  [1e4, 0.0, -1e4, 1e4],
                  [-np.inf, -np.inf, 5.0, -np.inf],
                  [100.0, 0.0, 0.0, 0.0]], dtype=dtype)
    h = logitkit.entropy(z, base=2)
    assert np.all(np.isfinite(h))
    assert_loss_close(h, reference.entropy(z, -1, 2), "loss", dtype)
    assert_loss_close(h[:3], [1.0, 1.0, 0.0], "loss", dtype)
    check_entropy(z, -1, dtype)
    check_entropy(np.ascontiguousarray(z.T), 0, dtype)


@pytest.mark.parametrize("shape_axis", [((40, 7), -1), ((9, 1000), -1), ((17, 6), 0)],
                         ids=_shape_axis_id)
def test_entropy_float16_and_integer_logits(simd_target, shape_axis):
    shape, axis = shape_axis
    rng = rng_for("entropy-f16", shape, axis)
    z = (rng.standard_normal(shape) * 3).astype(np.float16)
    check_entropy(z, axis, np.float16)
    check_entropy(z, axis, np.float16, base=2)
    zi = rng.integers(-10, 10, size=shape)
    check_entropy(zi, axis, np.float64)


def test_entropy_bad_input(simd_target):
    with pytest.raises(np.exceptions.AxisError):
        logitkit.entropy(np.zeros((3, 4)), axis=2)
    with pytest.raises(TypeError):
        logitkit.entropy(np.zeros((3, 4), dtype=np.complex128))


# ---------------------------------------------------------------------------------------
# kl_divergence
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", CLASS_COUNTS, ids=lambda n: f"C{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_kl_class_counts(simd_target, dtype, n):
    rng = rng_for("kl-len", dtype_id(dtype), n)
    shape = (n_rows(n), n)
    zp = random_logits(rng, shape, dtype)
    # q: p's logits plus noise (a small divergence, as in distillation), or independent
    zq = (zp.astype(np.float64) + rng.standard_normal(shape)).astype(dtype)
    zq[::2] = random_logits(rng, shape, dtype)[::2]
    for base in (None, 2):
        check_kl(zp, zq, -1, dtype, base)
    zpt = random_logits(rng, (n, 3), dtype, axis=0)
    zqt = random_logits(rng, (n, 3), dtype, axis=0)
    check_kl(zpt, zqt, 0, dtype)


@pytest.mark.parametrize("shape_axis", SHAPE_AXES, ids=_shape_axis_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_kl_axes_and_layouts(simd_target, dtype, shape_axis):
    shape, axis = shape_axis
    for i, layout in enumerate(LAYOUTS):
        rng = rng_for("kl-layout", dtype_id(dtype), shape, axis, layout)
        zp = random_logits(rng, shape, dtype, axis=axis)
        zq = random_logits(rng, shape, dtype, axis=axis)
        # both strided, or only one of them
        if i % 3 == 0:
            check_kl(with_layout(zp, layout), with_layout(zq, layout), axis, dtype)
        elif i % 3 == 1:
            check_kl(with_layout(zp, layout), zq, axis, dtype, base=2)
        else:
            check_kl(zp, with_layout(zq, layout), axis, dtype, base=10)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_kl_of_a_distribution_with_itself_is_zero(simd_target, dtype):
    rng = rng_for("kl-self", dtype_id(dtype))
    z = random_logits(rng, (20, 33), dtype)
    kl, grad = logitkit.kl_divergence(z, z, return_grad=True)
    assert_loss_close(kl, np.zeros(20), "loss", dtype)
    assert_loss_close(grad, np.zeros(z.shape), "grad", dtype)
    # shifting q's rows changes nothing
    shifted = z + np.asarray(3, dtype=dtype)
    assert_loss_close(logitkit.kl_divergence(z, shifted),
                      reference.kl_divergence(z, shifted, -1), "loss", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_kl_masked_classes(simd_target, dtype):
    # p = 0 (a -inf p logit) contributes 0 whatever q is; q = 0 where p > 0 gives +inf
    zp = np.array([[0.0, -np.inf, 1.0], [2.0, -np.inf, -np.inf], [0.0, 0.0, 0.0]],
                  dtype=dtype)
    zq = np.array([[1.0, -np.inf, 0.0], [0.0, 3.0, -np.inf], [0.0, 1.0, 2.0]],
                  dtype=dtype)
    for reduction in REDUCTIONS:
        kl, grad = logitkit.kl_divergence(zp, zq, reduction=reduction, return_grad=True)
        assert np.all(np.isfinite(kl)) and np.all(np.isfinite(grad))
        ref_kl, ref_grad = reference.kl_divergence(zp, zq, -1, reduction=reduction,
                                                   return_grad=True)
        assert_loss_close(kl, ref_kl, "loss", dtype, reduction)
        assert_loss_close(grad, ref_grad, "grad", dtype, reduction)
    zq_bad = np.array([[1.0, 0.0, -np.inf]], dtype=dtype)
    kl = logitkit.kl_divergence(zp[:1], zq_bad)
    assert kl[0] == np.inf


def test_kl_float16_and_integer_logits(simd_target):
    rng = rng_for("kl-f16")
    zp = (rng.standard_normal((30, 9)) * 2).astype(np.float16)
    zq = (rng.standard_normal((30, 9)) * 2).astype(np.float16)
    check_kl(zp, zq, -1, np.float16)
    check_kl(rng.integers(-5, 5, size=(6, 4)), rng.integers(-5, 5, size=(6, 4)), -1,
             np.float64)


def test_kl_bad_input(simd_target):
    zp = np.zeros((3, 4))
    with pytest.raises(ValueError):
        logitkit.kl_divergence(zp, np.zeros((3, 5)))
    with pytest.raises(ValueError):
        logitkit.kl_divergence(zp, np.zeros((4, 3)))
    with pytest.raises(ValueError):
        logitkit.kl_divergence(zp, zp, reduction="batchmean_typo")
    with pytest.raises(np.exceptions.AxisError):
        logitkit.kl_divergence(zp, zp, axis=2)
    with pytest.raises(TypeError):
        logitkit.kl_divergence(zp.astype(np.complex128), zp)


# ---------------------------------------------------------------------------------------
# the seeds: KL = cross-entropy - entropy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("base", [None, 2])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_kl_is_cross_entropy_minus_entropy(simd_target, dtype, base, axis):
    # seed 001: KL(P || Q) = H(P, Q) - H(P), the cross-entropy with the probability
    # target p = softmax(p_logits) minus the entropy of p
    rng = rng_for("kl-ce-h", dtype_id(dtype), base, axis)
    shape = (25, 12)
    p_logits = random_logits(rng, shape, dtype, axis=axis)
    q_logits = random_logits(rng, shape, dtype, axis=axis)
    p = logitkit.softmax(p_logits, axis=axis)
    ce = logitkit.cross_entropy(q_logits, p, axis=axis, reduction="none")
    h = logitkit.entropy(p_logits, axis=axis)
    kl = logitkit.kl_divergence(p_logits, q_logits, axis=axis)
    ref_ce = reference.cross_entropy(q_logits, p, axis, reduction="none")
    ref_h = reference.entropy(p_logits, axis)
    ref_kl = reference.kl_divergence(p_logits, q_logits, axis)
    # each within its tolerance, so the identity within the sum of the three
    bound = (loss_tolerance("loss", dtype, ref_ce) + loss_tolerance("loss", dtype, ref_h)
             + loss_tolerance("loss", dtype, ref_kl))
    # (in the reference the identity holds up to the rounding of p to dtype, which is
    # the cross-entropy's target: ~eps(dtype) * cross-entropy)
    eps = np.finfo(dtype).eps
    ref_gap = np.abs(ref_ce - ref_h - ref_kl)
    assert np.all(ref_gap <= 64 * eps * np.maximum(1.0, np.abs(ref_ce))), np.max(ref_gap)
    gap = np.abs(as_f64(ce) - as_f64(h) - as_f64(kl))
    assert np.all(gap <= bound + ref_gap), np.max(gap / (bound + ref_gap))
    # in bits: everything divided by log(2)
    if base is not None:
        kl_bits = logitkit.kl_divergence(p_logits, q_logits, axis=axis, base=base)
        assert_loss_close(kl_bits, ref_kl / np.log(base), "loss", dtype)
        h_bits = logitkit.entropy(p_logits, axis=axis, base=base)
        assert_loss_close(h_bits, ref_h / np.log(base), "loss", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_kl_gradient_is_q_minus_p(simd_target, dtype):
    # d KL / d q_logits = softmax(q) - softmax(p): the a - y of seed 000 with y = p
    rng = rng_for("kl-grad", dtype_id(dtype))
    zp = random_logits(rng, (15, 10), dtype)
    zq = random_logits(rng, (15, 10), dtype)
    expected = reference.softmax(zq, -1) - reference.softmax(zp, -1)
    _, grad = logitkit.kl_divergence(zp, zq, reduction="sum", return_grad=True)
    assert_loss_close(grad, expected, "grad", dtype)
    _, grad = logitkit.kl_divergence(zp, zq, reduction="none", return_grad=True)
    assert_loss_close(grad, expected, "grad", dtype)
    _, grad = logitkit.kl_divergence(zp, zq, reduction="mean", return_grad=True)
    assert_loss_close(grad, expected / 15, "grad", dtype)
    _, grad = logitkit.kl_divergence(zp, zq, reduction="mean", base=2, return_grad=True)
    assert_loss_close(grad, expected / 15 / np.log(2), "grad", dtype)
    # and it equals the cross-entropy gradient with the probability target p
    p = reference.softmax(zp, -1).astype(dtype)
    _, ce_grad = logitkit.cross_entropy(zq, p, reduction="sum", return_grad=True)
    assert_loss_close(ce_grad, expected, "grad", dtype)


@pytest.mark.parametrize("n", [37, 1000, 4000], ids=lambda n: f"C{n}")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_kl_excluded_classes_and_huge_logits_between_ordinary_rows(simd_target, dtype, n):
    # The row kernel takes the next row's maxima in each row's pass, keeps Q's excluded
    # classes (q = 0) apart from the terms, and takes float32 log ratios in float32 unless
    # they overflow (then that row again in double): every kind of row, at the start of a
    # row, in the middle, in the tail (not a whole vector), next to ordinary rows; with the
    # gradient from stored exponentials (short rows) and from exponentials taken again (4000).
    rng = rng_for("kl-rows", dtype_id(dtype), n)
    zp = random_logits(rng, (14, n), dtype)
    zq = random_logits(rng, (14, n), dtype)
    big = np.asarray(3e38 if dtype == np.float32 else 1e307, dtype=dtype)
    for r, c in ((1, 0), (3, n // 2), (5, n - 1)):
        # p_c > 0 but below float32's smallest normal number (flushed by its exp), q_c = 0
        zp[r] = 0
        zp[r, c] = -100
        zq[r, c] = -np.inf
        # p_c below float64's smallest subnormal: counts as 0, the divergence is finite
        zp[r + 1] = 0
        zp[r + 1, c] = -800
        zq[r + 1, c] = -np.inf
    # log q_c - log q_0 past float32's range where the divergence is not; then a row whose
    # only huge logit is in p (its log ratios are small where p > 0)
    zq[8, 0], zq[8, n - 1] = big, -big
    zp[9, n // 2] = -big
    zp[10, n - 1] = -np.inf  # p = 0 and q = 0 on the same class: contributes 0
    zq[10, n - 1] = -np.inf
    ref_kl, ref_grad = reference.kl_divergence(zp, zq, -1, return_grad=True)
    assert np.isposinf(ref_kl[[1, 3, 5]]).all() and np.isfinite(np.delete(ref_kl, [1, 3, 5])).all()
    kl, grad = logitkit.kl_divergence(zp, zq, return_grad=True)
    assert_loss_close(kl, ref_kl, "loss", dtype)
    assert_loss_close(grad, ref_grad, "grad", dtype)
    assert_loss_close(logitkit.kl_divergence(zp, zq), ref_kl, "loss", dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_nan_and_inf_rows_between_ordinary_rows(simd_target, dtype):
    # A NaN or +inf row makes its own result NaN and no other: each row's maximum is taken
    # in the previous row's pass.
    rng = rng_for("div-nan-rows", dtype_id(dtype))
    z = random_logits(rng, (9, 37), dtype)
    zq = random_logits(rng, (9, 37), dtype)
    z[2, 5] = np.nan
    z[4, 36] = np.inf
    zq[6, 20] = np.nan
    zq[7, 0] = np.inf
    check_entropy(z, -1, dtype)
    check_kl(z, zq, -1, dtype)
