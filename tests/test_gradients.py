"""Every gradient that logitkit returns against central finite differences of its own
forward function, in float64 on small shapes: cross_entropy (integer and probability
targets, weights, ignore_index, label smoothing, reductions sum / mean / none),
binary_cross_entropy, kl_divergence, sigmoid and log_sigmoid
(sigma' = sigma (1 - sigma)), softmax_backward and log_softmax_backward.

The gradients are also compared with the reference formulas elsewhere
(test_cross_entropy.py, test_binary.py, test_divergence.py, test_backward.py); here they
are checked against the definition of a derivative, which does not depend on the
formulas at all.

Tolerance: with h = 1e-6 the central difference has a truncation error of about
h**2 |f'''| / 6 ~ 1e-13 and a rounding error of about ulp(f) / h ~ 2e-16 |f| / 1e-6
= 2e-10 |f|; the losses here are below ~100, so the error is below ~2e-8.  FD_ATOL =
1e-7 leaves a margin of ~5x over that, and is still 1e-5 of a typical gradient entry.
"""

import numpy as np
import pytest

import logitkit
from helpers import rng_for
from loss_helpers import (
    as_f64,
    central_difference,
    class_weights,
    int_targets,
    prob_targets,
    without_axis,
)

pytestmark = pytest.mark.filterwarnings("error")

FD_ATOL = 1e-7
FD_RTOL = 1e-6


def assert_gradient(grad, f, x, what=""):
    """``grad`` (from logitkit) equals the central-difference gradient of ``f`` at x."""
    numeric = central_difference(f, x)
    grad = as_f64(grad)
    assert grad.shape == numeric.shape, (grad.shape, numeric.shape)
    err = np.abs(grad - numeric)
    bound = FD_ATOL + FD_RTOL * np.abs(numeric)
    assert np.all(err <= bound), (
        f"{what}: worst error {np.max(err):.3g} at "
        f"{np.unravel_index(np.argmax(err - bound), err.shape)}"
        f"\nanalytic:\n{grad}\nnumeric:\n{numeric}")


def _small_logits(rng, shape, axis=-1):
    # moderate logits: every class has a probability that matters
    return rng.standard_normal(shape) * 1.5


CE_CASES = [  # (target kind, options)
    ("int", {}),
    ("int", {"weight": "w"}),
    ("int", {"label_smoothing": 0.2}),
    ("int", {"weight": "w", "label_smoothing": 0.15, "ignore_index": -1}),
    ("prob", {}),
    ("prob", {"weight": "w"}),
    ("prob", {"weight": "w", "label_smoothing": 0.3}),
]


def _case_id(case):
    kind, opts = case
    return kind + "".join(f"-{k}" for k in opts)


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("shape_axis", [((3, 4), -1), ((2, 3, 4), 1), ((5, 2), 0)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
@pytest.mark.parametrize("case", CE_CASES, ids=_case_id)
def test_cross_entropy_gradient(simd_target, case, shape_axis, reduction):
    kind, opts = case
    shape, axis = shape_axis
    rng = rng_for("fd-ce", _case_id(case), shape, axis, reduction)
    z = _small_logits(rng, shape, axis)
    n_classes = shape[axis]
    opts = dict(opts)
    if opts.get("weight") == "w":
        opts["weight"] = class_weights(rng, n_classes)
    if kind == "int":
        target = int_targets(rng, without_axis(shape, axis), n_classes,
                             opts.get("ignore_index"), frac=0.3)
    else:
        target = prob_targets(rng, shape, axis, np.float64)

    def f(x):
        return np.sum(logitkit.cross_entropy(x, target, axis=axis, reduction=reduction,
                                             **opts))

    _, grad = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                     return_grad=True, **opts)
    assert_gradient(grad, f, z, f"cross_entropy {case} {reduction}")


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("options", ["plain", "weight", "pos_weight", "both"])
def test_binary_cross_entropy_gradient(simd_target, options, reduction):
    rng = rng_for("fd-bce", options, reduction)
    z = rng.standard_normal((3, 4)) * 2
    y = rng.random((3, 4))
    y[0] = [0.0, 1.0, 1.0, 0.0]
    opts = {}
    if options in ("weight", "both"):
        opts["weight"] = 0.5 + rng.random((3, 1))
    if options in ("pos_weight", "both"):
        opts["pos_weight"] = 0.5 + 2 * rng.random(4)

    def f(x):
        return np.sum(logitkit.binary_cross_entropy(x, y, reduction=reduction, **opts))

    _, grad = logitkit.binary_cross_entropy(z, y, reduction=reduction, return_grad=True,
                                            **opts)
    assert_gradient(grad, f, z, f"binary_cross_entropy {options} {reduction}")


@pytest.mark.parametrize("base", [None, 2])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("shape_axis", [((3, 4), -1), ((4, 3), 0)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
def test_kl_divergence_gradient(simd_target, shape_axis, reduction, base):
    shape, axis = shape_axis
    rng = rng_for("fd-kl", shape, axis, reduction, base)
    p_logits = _small_logits(rng, shape)
    q_logits = _small_logits(rng, shape)

    def f(x):
        return np.sum(logitkit.kl_divergence(p_logits, x, axis=axis, base=base,
                                             reduction=reduction))

    _, grad = logitkit.kl_divergence(p_logits, q_logits, axis=axis, base=base,
                                     reduction=reduction, return_grad=True)
    assert_gradient(grad, f, q_logits, f"kl_divergence {reduction} base={base}")


def test_sigmoid_derivative(simd_target):
    # seed 003: sigma'(z) = sigma(z) (1 - sigma(z)); and (log sigma)' = 1 - sigma
    x = np.linspace(-12, 12, 49)
    s = as_f64(logitkit.sigmoid(x))
    numeric = central_difference(lambda v: np.sum(logitkit.sigmoid(v)), x)
    np.testing.assert_allclose(numeric, s * (1 - s), rtol=FD_RTOL, atol=FD_ATOL)
    numeric = central_difference(lambda v: np.sum(logitkit.log_sigmoid(v)), x)
    np.testing.assert_allclose(numeric, 1 - s, rtol=FD_RTOL, atol=FD_ATOL)
    np.testing.assert_allclose(numeric, as_f64(logitkit.sigmoid(-x)), rtol=FD_RTOL,
                               atol=FD_ATOL)


@pytest.mark.parametrize("shape_axis", [((3, 4), -1), ((4, 3), 0), ((2, 3, 4), 1)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
def test_softmax_backward_is_vector_jacobian_product(simd_target, shape_axis):
    # softmax_backward(g, softmax(z)) = d/dz sum(g * softmax(z))
    shape, axis = shape_axis
    rng = rng_for("fd-softmax-bwd", shape, axis)
    z = _small_logits(rng, shape)
    g = rng.standard_normal(shape)
    grad = logitkit.softmax_backward(g, logitkit.softmax(z, axis=axis), axis=axis)
    assert_gradient(grad, lambda x: np.sum(g * logitkit.softmax(x, axis=axis)), z,
                    "softmax_backward")


@pytest.mark.parametrize("shape_axis", [((3, 4), -1), ((4, 3), 0), ((2, 3, 4), 1)],
                         ids=lambda p: "x".join(map(str, p[0])) + f"-axis{p[1]}")
def test_log_softmax_backward_is_vector_jacobian_product(simd_target, shape_axis):
    # log_softmax_backward(g, log_softmax(z)) = d/dz sum(g * log_softmax(z))
    shape, axis = shape_axis
    rng = rng_for("fd-log-softmax-bwd", shape, axis)
    z = _small_logits(rng, shape)
    g = rng.standard_normal(shape)
    log_p = logitkit.log_softmax(z, axis=axis)
    grad = logitkit.log_softmax_backward(g, log_p, axis=axis)
    assert_gradient(grad, lambda x: np.sum(g * logitkit.log_softmax(x, axis=axis)), z,
                    "log_softmax_backward")


def test_softmax_jacobian_is_the_derivative_of_softmax(simd_target):
    # J[..., i, j] = d softmax_i / d z_j
    rng = rng_for("fd-jacobian")
    z = _small_logits(rng, (2, 5))
    jac = as_f64(logitkit.softmax_jacobian(logitkit.softmax(z)))
    assert jac.shape == (2, 5, 5)
    for row in range(2):
        for i in range(5):
            def f(x, row=row, i=i):
                return logitkit.softmax(x)[row, i]
            numeric = central_difference(f, z)
            expected = np.zeros((2, 5))
            expected[row] = jac[row, i]
            np.testing.assert_allclose(numeric, expected, rtol=FD_RTOL, atol=FD_ATOL)


def test_entropy_and_cross_entropy_derivative_consistency(simd_target):
    # H = -sum p log p, dH/dp = -(log p + 1), so by the chain rule through softmax
    # dH/dz = J^T (-(log p + 1)) = softmax_backward(-(log p + 1), p)
    rng = rng_for("fd-entropy")
    z = _small_logits(rng, (3, 6))
    p = logitkit.softmax(z)
    logp = logitkit.log_softmax(z)
    grad = logitkit.softmax_backward(-(logp + 1.0), p)
    assert_gradient(grad, lambda x: np.sum(logitkit.entropy(x)), z, "entropy")
