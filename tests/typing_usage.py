"""A small typed user of logitkit, checked by mypy --strict (tests/test_typing.py).

Not a test module: it is never run, only type-checked, to show that the annotations
work for code written against the public API.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import logitkit


def training_step(
    logits: NDArray[np.float32], labels: NDArray[np.int64]
) -> tuple[float, NDArray[np.floating[Any]]]:
    loss, grad = logitkit.cross_entropy(logits, labels, return_grad=True)
    return float(loss), grad


def probabilities(logits: NDArray[np.float64]) -> NDArray[np.floating[Any]]:
    return logitkit.softmax(logits, axis=-1)


def log_probabilities(logits: list[list[float]]) -> NDArray[np.floating[Any]]:
    out = np.empty((len(logits), len(logits[0])))
    return logitkit.log_softmax(logits, out=out)


def per_sample_loss(logits: NDArray[np.float32], labels: NDArray[np.int64]) -> float:
    losses = logitkit.cross_entropy(logits, labels, reduction="none")
    return float(np.sum(losses))


def binary_step(
    logits: NDArray[np.float32], targets: NDArray[np.float32]
) -> NDArray[np.floating[Any]]:
    _, grad = logitkit.binary_cross_entropy(logits, targets, return_grad=True)
    return grad


def distillation(student: NDArray[np.float32], teacher: NDArray[np.float32]) -> float:
    kl, grad = logitkit.kl_divergence(teacher, student, reduction="mean", return_grad=True)
    assert grad.shape == student.shape
    return float(kl)


def bits(logits: NDArray[np.float32]) -> Any:
    return logitkit.entropy(logits, base=2)


def active_target() -> str:
    target: str = logitkit.capabilities()["active"]
    return target


def lm_head_step(
    hidden: NDArray[np.float32], embedding: NDArray[np.float32], labels: NDArray[np.int64]
) -> tuple[float, NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    loss, grads = logitkit.linear_cross_entropy(hidden, embedding, labels, return_grad=True)
    assert grads.linear_bias is None
    return float(loss), grads.x, grads.linear_weight


def token_log_probs(
    hidden: NDArray[np.float32], embedding: NDArray[np.float32], labels: NDArray[np.int64]
) -> NDArray[np.floating[Any]]:
    losses = logitkit.linear_cross_entropy(hidden, embedding, labels, reduction="none")
    return -np.asarray(losses)
