"""binary_cross_entropy's sample_weight= (spec/options_spec.md): one weight per index of
the first axis, broadcast over the others; each element's loss and gradient times its
sample's weight, "mean" = sum(s * w * l) / sum of s over all elements. Checked against
reference.binary_cross_entropy_sample_weight on every SIMD target and dtype, and against
PyTorch's BCEWithLogitsLoss with the weights as its `weight` where it has one."""

import numpy as np
import pytest

import logitkit
import reference
from helpers import rng_for
from loss_helpers import assert_loss_close

try:
    import ml_dtypes

    HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
except ImportError:
    HALF = [np.dtype(np.float16)]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)] + HALF
IDS = [d.name for d in DTYPES]


def data(rng, shape, dtype):
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.random(shape).astype(dtype)
    y.flat[::5] = 0
    y.flat[1::5] = 1
    return z, y


def check(z, y, s, dtype, **kw):
    for reduction in ("none", "sum", "mean"):
        ref_loss, ref_grad = reference.binary_cross_entropy_sample_weight(
            z, y, s, kw.get("weight"), kw.get("pos_weight"), reduction, return_grad=True)
        loss = logitkit.binary_cross_entropy(z, y, sample_weight=s, reduction=reduction, **kw)
        assert_loss_close(loss, ref_loss, "loss", dtype, reduction)
        loss, grad = logitkit.binary_cross_entropy(z, y, sample_weight=s, reduction=reduction,
                                                   return_grad=True, **kw)
        assert_loss_close(loss, ref_loss, "loss", dtype, reduction + " return_grad")
        assert_loss_close(grad, ref_grad, "grad", dtype, reduction)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("shape", [(9,), (5, 1), (6, 7), (4, 17), (3, 33), (8, 100),
                                   (3, 5, 7), (2, 3, 4, 5)], ids=str)
def test_shapes(simd_target, shape, dtype):
    rng = rng_for("bce-sw", shape, dtype.name)
    z, y = data(rng, shape, dtype)
    s = rng.random(shape[0]) * 2
    s[0] = 0.0
    check(z, y, s, dtype)
    check(z, y, s, dtype, weight=rng.random(shape).astype(dtype))
    check(z, y, s, dtype, pos_weight=(rng.random(shape[-1]) * 3).astype(dtype))
    check(z, y, s, dtype, weight=rng.random(shape[-1]).astype(dtype),
          pos_weight=(rng.random(shape) * 3).astype(dtype))


def test_broadcast_forms(simd_target):
    rng = rng_for("bce-forms")
    z, y = data(rng, (6, 11), np.float64)
    for s in (2.5, [3.0], np.array([1.5]), list(rng.random(6)), np.arange(6, dtype=np.int64)):
        check(z, y, s, np.float64)
    check(z[0, 0], y[0, 0], 2.0, np.float64)  # 0-d logits: one sample


def test_long_rows_split_between_tasks(simd_target):
    rng = rng_for("bce-long")
    for shape in [(3, 70001), (2, 3, 40000)]:
        z, y = data(rng, shape, np.float32)
        check(z, y, rng.random(shape[0]), np.float32,
              pos_weight=rng.random(shape[-1]).astype(np.float32))
        check(z, y, rng.random(shape[0]), np.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_special_values(simd_target, dtype):
    z = np.array([[np.inf, -np.inf, 1.0, np.nan], [np.inf, -np.inf, 100.0, -100.0],
                  [1e4, -1e4, 0.0, 2.0]]).astype(dtype)
    y = np.array([[0.0, 1.0, 0.5, 1.0], [0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]).astype(dtype)
    check(z, y, np.array([0.0, 2.0, 0.5]), dtype)  # s = 0 makes the NaN row's losses 0
    check(z, y, np.array([1.0, 0.0, 3.0]), dtype)


def test_grad_out_is_logits(simd_target):
    rng = rng_for("bce-inplace")
    z, y = data(rng, (7, 45), np.float32)
    s = rng.random(7)
    expected = reference.binary_cross_entropy_sample_weight(z, y, s, return_grad=True)
    loss, grad = logitkit.binary_cross_entropy(z, y, sample_weight=s, return_grad=True,
                                               grad_out=z)
    assert grad is z
    assert_loss_close(loss, expected[0], "loss", np.float32)
    assert_loss_close(z, expected[1], "grad", np.float32)


def test_matches_torch(simd_target):
    torch = pytest.importorskip("torch")
    rng = rng_for("bce-torch")
    z, y = data(rng, (16, 30), np.float64)
    s = rng.random(16) * 3
    zt = torch.tensor(z, requires_grad=True)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        zt, torch.tensor(y), weight=torch.tensor(s)[:, None], reduction="sum")
    expected.backward()
    loss, grad = logitkit.binary_cross_entropy(z, y, sample_weight=s, reduction="sum",
                                               return_grad=True)
    assert float(loss) == pytest.approx(expected.item(), rel=1e-12)
    assert_loss_close(grad, zt.grad.numpy(), "grad", np.float64)
    # "mean" counts each element with its sample's weight: torch's sum / sum of the weights.
    mean = logitkit.binary_cross_entropy(z, y, sample_weight=s)
    assert float(mean) == pytest.approx(expected.item() / (s.sum() * 30), rel=1e-12)
    # All ones: PyTorch's mean.
    plain = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(z), torch.tensor(y))
    ones = logitkit.binary_cross_entropy(z, y, sample_weight=np.ones(16))
    assert float(ones) == pytest.approx(plain.item(), rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_ones(simd_target, dtype):
    # sample_weight=None is the plain path. Weights of 1 give the plain results to
    # rounding (not bit for bit: the sums go sample by sample, and GCC's FMA contraction
    # may round the weighted kernel's loss differently).
    rng = rng_for("bce-ones", dtype.name)
    eps = float(np.finfo(np.float32 if dtype.itemsize <= 4 else np.float64).eps)
    for shape in [(6, 7), (50, 1000), (3, 4, 5)]:
        z, y = data(rng, shape, dtype)
        for reduction in ("none", "sum", "mean"):
            a = logitkit.binary_cross_entropy(z, y, reduction=reduction, return_grad=True)
            b = logitkit.binary_cross_entropy(z, y, reduction=reduction, return_grad=True,
                                              sample_weight=None)
            assert all(np.asarray(u).tobytes() == np.asarray(v).tobytes() for u, v in zip(a, b))
            c = logitkit.binary_cross_entropy(z, y, reduction=reduction, return_grad=True,
                                              sample_weight=np.ones(shape[0]))
            for u, v in zip(a, c):
                u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
                same = (u == v) | (np.isnan(u) & np.isnan(v))
                with np.errstate(invalid="ignore"):
                    assert np.all(same | (np.abs(u - v) <= 4 * eps * np.abs(u)))


def test_workers_bit_identical():
    rng = rng_for("bce-workers")
    for shape in [(257, 1031), (3, 200001), (20011, 10)]:
        z, y = data(rng, shape, np.float32)
        s = rng.random(shape[0])
        results = []
        for k in (1, 2, 3, 7):
            loss, grad = logitkit.binary_cross_entropy(z, y, sample_weight=s, return_grad=True,
                                                       workers=k)
            per = logitkit.binary_cross_entropy(z, y, sample_weight=s, reduction="none",
                                                workers=k)
            results.append(np.asarray(loss).tobytes() + grad.tobytes() + per.tobytes())
        assert all(r == results[0] for r in results)


def test_bad_sample_weight():
    z = np.zeros((3, 4))
    for s in (np.array([1.0, -1.0, 1.0]), [np.nan, 1, 1], [np.inf, 1, 1], -0.5):
        with pytest.raises(ValueError, match="sample_weight"):
            logitkit.binary_cross_entropy(z, z, sample_weight=s)
    for s in (np.ones(4), np.ones((3, 4)), np.ones(2)):
        with pytest.raises(ValueError, match="sample_weight"):
            logitkit.binary_cross_entropy(z, z, sample_weight=s)
    for s in (np.ones(3, complex), np.array(["a", "b", "c"])):
        with pytest.raises(TypeError, match="sample_weight"):
            logitkit.binary_cross_entropy(z, z, sample_weight=s)
