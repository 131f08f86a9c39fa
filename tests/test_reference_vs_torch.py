"""The part-2 reference (tests/reference.py) against PyTorch, where PyTorch is installed:
the reference claims PyTorch's definitions (weighted mean, label smoothing, ignore_index,
probability targets, BCEWithLogits with weight / pos_weight), so check that it has them,
losses and gradients (by autograd) in float64.

These tests check the reference, not logitkit, so they do not take simd_target."""

import numpy as np
import pytest

import reference
from helpers import random_logits, rng_for
from loss_helpers import REDUCTIONS, class_weights, int_targets, prob_targets

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.filterwarnings("error")

RTOL, ATOL = 1e-12, 1e-13


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64),
                               np.asarray(b, dtype=np.float64), rtol=RTOL, atol=ATOL)


def _torch_ce(z, target, axis, reduction, **opts):
    """PyTorch's cross_entropy with the class axis moved to dim 1, and its gradient."""
    zt = torch.tensor(np.moveaxis(z, axis, 1) if z.ndim > 1 else z, requires_grad=True)
    if target.dtype.kind == "f":
        tt = torch.tensor(np.moveaxis(target, axis, 1) if z.ndim > 1 else target)
    else:
        tt = torch.tensor(target)
    if "weight" in opts:
        opts = dict(opts, weight=torch.tensor(opts["weight"]))
    loss = F.cross_entropy(zt, tt, reduction=reduction, **opts)
    loss.sum().backward()
    grad = zt.grad.numpy()
    return loss.detach().numpy(), (np.moveaxis(grad, 1, axis) if z.ndim > 1 else grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["int", "int-ignore", "prob"])
@pytest.mark.parametrize("shape_axis", [((9, 5), -1), ((3, 5, 4), 1), ((5,), 0)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
def test_cross_entropy(shape_axis, kind, weighted, smoothing, reduction):
    shape, axis = shape_axis
    rng = rng_for("torch-ce", shape, axis, kind, weighted, smoothing, reduction)
    z = random_logits(rng, shape, np.float64, axis=axis)
    n_classes = shape[axis]
    opts = {"label_smoothing": smoothing}
    if weighted:
        opts["weight"] = class_weights(rng, n_classes)
    if kind == "prob":
        target = prob_targets(rng, shape, axis, np.float64)
    else:
        ignore = -100 if kind == "int-ignore" else None
        shape_t = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
        target = int_targets(rng, shape_t, n_classes, ignore, frac=0.4)
    expected_loss, expected_grad = _torch_ce(z, target, axis, reduction, **opts)
    loss, grad = reference.cross_entropy(z, target, axis, reduction=reduction,
                                         return_grad=True, **opts)
    _close(loss, expected_loss)
    _close(grad, expected_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(weighted, reduction):
    rng = rng_for("torch-nll", weighted, reduction)
    lp = reference.log_softmax(rng.standard_normal((11, 6)), -1)
    t = int_targets(rng, (11,), 6, -100, frac=0.3)
    opts = {"weight": class_weights(rng, 6)} if weighted else {}
    expected = F.nll_loss(torch.tensor(lp), torch.tensor(t), reduction=reduction,
                          **{k: torch.tensor(v) for k, v in opts.items()})
    _close(reference.nll_loss(lp, t, -1, reduction=reduction, **opts), expected.numpy())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", ["plain", "weight", "pos_weight", "both"])
def test_binary_cross_entropy(options, reduction):
    rng = rng_for("torch-bce", options, reduction)
    z = rng.standard_normal((7, 5)) * 4
    z[0] = [50.0, -50.0, 800.0, -800.0, 0.0]
    y = rng.random((7, 5))
    y[1] = [0.0, 1.0, 1.0, 0.0, 0.5]
    opts = {}
    if options in ("weight", "both"):
        opts["weight"] = 0.5 + rng.random((7, 1))
    if options in ("pos_weight", "both"):
        opts["pos_weight"] = 0.5 + 2 * rng.random(5)
    zt = torch.tensor(z, requires_grad=True)
    expected = F.binary_cross_entropy_with_logits(
        zt, torch.tensor(y), reduction=reduction,
        **{k: torch.tensor(v) for k, v in opts.items()})
    expected.sum().backward()
    loss, grad = reference.binary_cross_entropy(z, y, reduction=reduction,
                                                return_grad=True, **opts)
    _close(loss, expected.detach().numpy())
    _close(grad, zt.grad.numpy())


def test_sigmoid_and_log_sigmoid():
    x = np.concatenate([np.linspace(-800, 800, 3201), [-np.inf, np.inf]])
    _close(reference.sigmoid(x), torch.sigmoid(torch.tensor(x)).numpy())
    _close(reference.log_sigmoid(x), F.logsigmoid(torch.tensor(x)).numpy())


@pytest.mark.parametrize("axis", [-1, 0])
def test_backward_passes_and_jacobian(axis):
    rng = rng_for("torch-bwd", axis)
    z = rng.standard_normal((4, 6)) * 2
    g = rng.standard_normal((4, 6))
    zt = torch.tensor(z, requires_grad=True)
    torch.softmax(zt, dim=axis).backward(torch.tensor(g))
    p = reference.softmax(z, axis)
    _close(reference.softmax_backward(g, p, axis), zt.grad.numpy())
    zt = torch.tensor(z, requires_grad=True)
    torch.log_softmax(zt, dim=axis).backward(torch.tensor(g))
    _close(reference.log_softmax_backward(g, reference.log_softmax(z, axis), axis),
           zt.grad.numpy())
    row = torch.tensor(z[1])
    jac = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, dim=0), row)
    _close(reference.softmax_jacobian(reference.softmax(z, -1), -1)[1], jac.numpy())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_entropy_and_kl(reduction):
    rng = rng_for("torch-kl", reduction)
    zp = rng.standard_normal((8, 7)) * 3
    zq = rng.standard_normal((8, 7)) * 3
    masked = zp.copy()
    masked[0, 2] = -np.inf  # p = 0: contributes 0 to the entropy
    categorical = torch.distributions.Categorical(logits=torch.tensor(masked))
    _close(reference.entropy(masked, -1), categorical.entropy().numpy())
    # (no -inf in the KL case: torch's kl_div with log_target gives 0 * -inf = NaN there)
    zqt = torch.tensor(zq, requires_grad=True)
    per_row = F.kl_div(torch.log_softmax(zqt, -1),
                       torch.log_softmax(torch.tensor(zp), -1),
                       reduction="none", log_target=True).sum(-1)
    expected = {"none": per_row, "sum": per_row.sum(), "mean": per_row.mean()}[reduction]
    expected.sum().backward()
    kl, grad = reference.kl_divergence(zp, zq, -1, reduction=reduction, return_grad=True)
    _close(kl, expected.detach().numpy())
    _close(grad, zqt.grad.numpy())
