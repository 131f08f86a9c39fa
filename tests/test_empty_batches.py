"""Empty batches through every function, every axis: an empty result, never a crash.

Found by a fuzz run: cross_entropy with class indices along axis 1 of a (0, 2, 3) array
read labels that did not exist (the column kernel ignored the empty batch dimension).
"""

from __future__ import annotations

import numpy as np
import pytest

import logitkit

SHAPES = [(0, 2, 3), (2, 0, 3), (2, 3, 0), (0, 3), (3, 0), (0,)]
CASES = [(shape, axis) for shape in SHAPES for axis in range(-len(shape), len(shape))]


def _ids(case):
    shape, axis = case
    return "x".join(map(str, shape)) + f"-axis{axis}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batches(simd_target, case, dtype):
    shape, axis = case
    x = np.zeros(shape, dtype)
    batch = shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    assert logitkit.softmax(x, axis).shape == shape
    assert logitkit.log_softmax(x, axis).shape == shape
    assert logitkit.logsumexp(x, axis).shape == batch
    assert np.shape(logitkit.entropy(x, axis=axis)) == batch
    kl, grad = logitkit.kl_divergence(x, x, axis=axis, return_grad=True)
    assert np.shape(kl) == batch and grad.shape == shape
    assert logitkit.softmax_backward(x, x, axis=axis).shape == shape
    assert logitkit.log_softmax_backward(x, x, axis=axis).shape == shape
    # With no classes, the only valid class index is ignore_index.
    labels = np.full(batch, 0 if shape[axis] > 0 else -100, np.int64)
    for smoothing in (0.0, 0.1):
        for reduction in ("none", "sum", "mean"):
            loss, g = logitkit.cross_entropy(
                x, labels, axis=axis, label_smoothing=smoothing, reduction=reduction,
                return_grad=True,
            )
            assert g.shape == shape
            assert np.shape(loss) == (batch if reduction == "none" else ())
    loss, g = logitkit.cross_entropy(x, logitkit.softmax(x, axis), axis=axis, return_grad=True)
    assert g.shape == shape
    nll = logitkit.nll_loss(x, labels, axis=axis, reduction="none")
    assert nll.shape == batch
