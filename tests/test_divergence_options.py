"""temperature= and where= on entropy and kl_divergence, and kl_divergence's
reduction="batchmean" (spec/options_spec.md), against the float64 formulas of
reference.py (``entropy_options``, ``kl_divergence_options``) on every SIMD target and
dtype, and against PyTorch's distillation loss when it is installed."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import random_logits, rng_for, with_layout
from loss_helpers import assert_loss_close

try:
    import ml_dtypes

    HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
except ImportError:
    HALF = [np.dtype(np.float16)]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)] + HALF
IDS = [d.name for d in DTYPES]
REDUCTIONS = ["none", "sum", "mean", "batchmean"]


def masks(rng, shape, axis=-1):
    """where= masks: full random, full with a row left out, one value per row (some rows
    left out), one shared row of classes."""
    axis = axis % len(shape)
    full = rng.random(shape) < 0.6
    row_shape = tuple(1 if i == axis else n for i, n in enumerate(shape))
    per_row = rng.random(row_shape) < 0.7
    per_row.flat[0] = False
    full_empty = full.copy()
    np.moveaxis(full_empty, axis, -1).reshape(-1, shape[axis])[0] = False
    shared = np.zeros(tuple(shape[axis] if i == axis else 1 for i in range(len(shape))), bool)
    np.moveaxis(shared, axis, -1)[..., ::2] = True
    return {"full": full, "full_empty_row": full_empty, "per_row": per_row, "shared": shared}


def pair(rng, shape, dtype, axis=-1):
    p = random_logits(rng, shape, np.float64, axis=axis)
    q = p + rng.standard_normal(shape) * 2
    return p.astype(dtype), q.astype(dtype)


def check(zp, zq, axis, dtype, temperature=1.0, where=None):
    """entropy and kl_divergence (every reduction, with and without the gradient)."""
    before = zp.copy(), zq.copy()
    assert_loss_close(logitkit.entropy(zp, axis=axis, temperature=temperature, where=where),
                      reference.entropy_options(zp, axis, temperature, where), "loss", dtype,
                      "entropy")
    for reduction in REDUCTIONS:
        ref_kl, ref_grad = reference.kl_divergence_options(
            zp, zq, axis, temperature, where, reduction, return_grad=True)
        kl = logitkit.kl_divergence(zp, zq, axis=axis, temperature=temperature, where=where,
                                    reduction=reduction)
        assert_loss_close(kl, ref_kl, "loss", dtype, reduction)
        kl, grad = logitkit.kl_divergence(zp, zq, axis=axis, temperature=temperature,
                                          where=where, reduction=reduction, return_grad=True)
        assert_loss_close(kl, ref_kl, "loss", dtype, reduction + " return_grad")
        assert_loss_close(grad, ref_grad, "grad", dtype, reduction)
    np.testing.assert_array_equal(zp, before[0])
    np.testing.assert_array_equal(zq, before[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("n", [1, 7, 17, 33, 100, 2000])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 2.5])
def test_class_counts(simd_target, temperature, n, dtype):
    rng = rng_for("div-opt", temperature, n, dtype.name)
    zp, zq = pair(rng, (6, n), dtype)
    check(zp, zq, -1, dtype, temperature)
    for form, w in masks(rng, zp.shape).items():
        check(zp, zq, -1, dtype, temperature, w)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("layout", ["F", "every_other", "last_step2", "reversed"])
def test_layouts_and_axes(simd_target, layout, dtype):
    rng = rng_for("div-layout", layout, dtype.name)
    for shape, axis in [((5, 37), -1), ((4, 19, 6), 1), ((9, 3, 5), 0)]:
        zp, zq = pair(rng, shape, dtype, axis)
        zp, zq = with_layout(zp, layout), with_layout(zq, layout)
        check(zp, zq, axis, dtype, 0.7)
        check(zp, zq, axis, dtype, 1.0, masks(rng, shape, axis)["full_empty_row"])
        check(zp, zq, axis, dtype, 3.0, masks(rng, shape, axis)["per_row"])


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)], ids=str)
def test_long_row(simd_target, dtype):
    n = (1 << 18) + 37
    rng = rng_for("div-long", dtype.name)
    zp, zq = pair(rng, (2, n), dtype)
    w = rng.random(n) < 0.5
    check(zp, zq, -1, dtype, 1.7, w)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_fully_masked_rows(simd_target, dtype):
    zp, zq = pair(rng_for("div-empty"), (4, 40), dtype)
    w = np.ones((4, 1), dtype=bool)
    w[1] = w[3] = False
    h = logitkit.entropy(zp, where=w, temperature=2.0)
    kl, grad = logitkit.kl_divergence(zp, zq, where=w, temperature=2.0, return_grad=True)
    assert np.all(h[[1, 3]].astype(np.float64) == 0) and np.all(h[[0, 2]] > 0)
    assert np.all(kl[[1, 3]].astype(np.float64) == 0) and np.all(kl[[0, 2]] > 0)
    assert np.all(grad[[1, 3]].astype(np.float64) == 0)
    assert np.all(grad[:, :] [w[:, 0] == False].astype(np.float64) == 0)  # noqa: E712


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_special_values(simd_target, dtype):
    # Left-out NaN and infinities are ignored; a class that Q rules out (-inf) where P does
    # not makes the divergence +inf unless it is left out.
    zp = np.array([[1.0, np.nan, 2.0, np.inf, 0.5, 3.0],
                   [1.0, 2.0, 0.5, 3.0, 0.0, 1.0],
                   [np.nan, 1.0, 2.0, 3.0, 4.0, 5.0]]).astype(dtype)
    zq = np.array([[0.0, 1.0, np.nan, -np.inf, 1.0, 2.0],
                   [1.0, -np.inf, 0.5, 3.0, 0.0, 1.0],
                   [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]).astype(dtype)
    w = np.ones(zp.shape, dtype=bool)
    w[0, 1:4] = False
    for t in (1.0, 0.5):
        check(zp, zq, -1, dtype, t, w)
        w2 = w.copy()
        w2[1, 1] = False
        check(zp, zq, -1, dtype, t, w2)


def test_distillation_matches_torch(simd_target):
    torch = pytest.importorskip("torch")
    rng = rng_for("distill")
    for dtype, tol in [(np.float64, 1e-12), (np.float32, 1e-5)]:
        teacher = (rng.standard_normal((32, 500)) * 4).astype(dtype)
        student = (rng.standard_normal((32, 500)) * 4).astype(dtype)
        for t in (1.0, 2.0, 4.5):
            loss, grad = logitkit.kl_divergence(teacher, student, temperature=t,
                                                reduction="batchmean", return_grad=True)
            s = torch.tensor(student.astype(np.float64), requires_grad=True)
            expected = torch.nn.functional.kl_div(
                torch.log_softmax(s / t, -1),
                torch.log_softmax(torch.tensor(teacher.astype(np.float64)) / t, -1),
                log_target=True, reduction="batchmean")
            expected.backward()
            assert abs(float(loss) - expected.item()) <= tol * max(1.0, abs(expected.item()))
            assert_loss_close(grad, s.grad.numpy(), "grad", dtype, f"T={t}")


def test_batchmean_is_sum_over_rows(simd_target):
    zp, zq = pair(rng_for("batchmean"), (3, 4, 10), np.float64)
    total = logitkit.kl_divergence(zp, zq, reduction="sum")
    assert logitkit.kl_divergence(zp, zq, reduction="batchmean") == pytest.approx(total / 12,
                                                                                 rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_defaults(simd_target, dtype):
    # temperature=1 is the plain path (bit-identical); an all-True mask changes no
    # formula, but its kernel is another instantiation, which GCC's FMA contraction
    # (-ffp-contract=fast) may round differently: equal to a few ulp (float64 rows of
    # 1000 on the FMA targets; bit-identical elsewhere).
    rng = rng_for("div-bits", dtype.name)
    for shape in [(5, 100), (3, 7), (300, 1000)]:
        zp, zq = pair(rng, shape, dtype)
        plain = [logitkit.entropy(zp)] + list(
            logitkit.kl_divergence(zp, zq, reduction="mean", return_grad=True))
        got = [logitkit.entropy(zp, temperature=1.0)] + list(
            logitkit.kl_divergence(zp, zq, reduction="batchmean", return_grad=True,
                                   temperature=1.0))
        assert [np.asarray(a).tobytes() for a in got] == [np.asarray(a).tobytes() for a in plain]
        for w in (np.ones(shape, dtype=bool), True):
            got = [logitkit.entropy(zp, where=w)] + list(
                logitkit.kl_divergence(zp, zq, reduction="batchmean", return_grad=True,
                                       where=w))
            eps = float(np.finfo(np.float32 if dtype.itemsize <= 4 else np.float64).eps)
            for a, b in zip(got, plain):
                a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
                # (the gradient (q - p) / rows cancels: a few ulp of its terms, <= 1 / rows;
                # entropy and KL per row, log s - d/s, cancel too: absolute ulp of 1)
                size = 1.0 / shape[0] if b.ndim == 2 else 1.0
                assert np.all(np.abs(a - b) <= 4 * eps * (np.abs(b) + size))


def test_workers_bit_identical():
    rng = rng_for("div-workers")
    for shape, axis, layout in [((257, 1031), -1, "C"), ((1031, 263), 0, "C"),
                                ((131, 2003), -1, "every_other")]:
        zp, zq = pair(rng, shape, np.float32, axis)
        zp, zq = with_layout(zp, layout), with_layout(zq, layout)
        w = rng.random(shape) < 0.8
        results = []
        for k in (1, 2, 3, 7):
            h = logitkit.entropy(zp, axis=axis, where=w, temperature=0.7, workers=k)
            kl, g = logitkit.kl_divergence(zp, zq, axis=axis, where=w, temperature=0.7,
                                           return_grad=True, workers=k)
            results.append(h.tobytes() + kl.tobytes() + g.tobytes())
        assert all(r == results[0] for r in results)


def test_bad_options():
    z = np.zeros((3, 4))
    for f in (lambda **k: logitkit.entropy(z, **k),
              lambda **k: logitkit.kl_divergence(z, z, **k)):
        for t in (0.0, -2.0, np.inf, np.nan):
            with pytest.raises(ValueError, match="temperature"):
                f(temperature=t)
        for t in (True, "1", None):
            with pytest.raises(TypeError, match="temperature"):
                f(temperature=t)
        with pytest.raises(TypeError, match="where"):
            f(where=np.ones((3, 4)))
        with pytest.raises(ValueError, match="where"):
            f(where=np.ones((2, 4), bool))
    for r in ("batch_mean", "Batchmean", None, 2):
        with pytest.raises(ValueError, match="batchmean"):
            logitkit.kl_divergence(z, z, reduction=r)
