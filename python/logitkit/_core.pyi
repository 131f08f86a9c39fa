"""Type stubs of logitkit's compiled core (csrc/bindings*.cpp). Private: use the package."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[Any]

def softmax(
    x: _Array,
    out: _Array,
    axis: int,
    workers: int = 1,
    scale: float | None = None,
    where: _Array | None = None,
) -> None: ...
def log_softmax(
    x: _Array,
    out: _Array,
    axis: int,
    workers: int = 1,
    scale: float | None = None,
    where: _Array | None = None,
) -> None: ...
def logsumexp(
    x: _Array,
    out: _Array,
    axis: int,
    workers: int = 1,
    scale: float | None = None,
    where: _Array | None = None,
) -> None: ...
def _exp(x: _Array, out: _Array, nonpositive: bool = False) -> None: ...
def _row_states(
    x: _Array,
    state: _Array,
    workers: int = 1,
    scale: float | None = None,
    where: _Array | None = None,
) -> None: ...
def _merge_row_states(states: _Array, out: _Array, scale: float = 1.0) -> None: ...
def _rows_from_state(
    x: _Array,
    state: _Array,
    row_scale: _Array | None,
    out: _Array,
    log: bool,
    workers: int = 1,
    scale: float | None = None,
    where: _Array | None = None,
) -> None: ...
def compiled_targets() -> list[str]: ...
def supported_targets() -> list[str]: ...
def active_target() -> str: ...
def _set_target(name: str) -> str: ...
def _pool_thread_count() -> int: ...
def cross_entropy(
    logits: _Array,
    labels: NDArray[np.int64] | None,
    probs: _Array | None,
    weight: _Array | None,
    ignore_index: int,
    smoothing: float,
    reduction: int,
    loss: _Array | None,
    grad: _Array | None,
    axis: int,
    workers: int = 1,
    temperature: float = 1.0,
    softcap: float = 0.0,
    z_loss: float = 0.0,
    where: NDArray[np.uint8] | None = None,
    sample_weight: NDArray[np.float64] | None = None,
) -> tuple[int, int, float, float, int]: ...
def nll_loss(
    log_probs: _Array,
    labels: NDArray[np.int64],
    weight: _Array | None,
    ignore_index: int,
    reduction: int,
    loss: _Array | None,
    axis: int,
) -> tuple[int, int, float, float, int]: ...
def entropy(
    x: _Array,
    out: _Array,
    axis: int,
    workers: int = 1,
    scale: float | None = None,
    where: _Array | None = None,
) -> None: ...
def kl_divergence(
    p: _Array,
    q: _Array,
    out: _Array,
    out_scale: float,
    grad: _Array | None,
    grad_scale: float,
    axis: int,
    workers: int = 1,
    scale: float | None = None,
    where: _Array | None = None,
) -> None: ...
def softmax_backward(
    grad_output: _Array, probs: _Array, out: _Array, axis: int, workers: int = 1
) -> None: ...
def log_softmax_backward(
    grad_output: _Array, log_probs: _Array, out: _Array, axis: int, workers: int = 1
) -> None: ...
def sigmoid(x: _Array, out: _Array, workers: int = 1) -> None: ...
def log_sigmoid(x: _Array, out: _Array, workers: int = 1) -> None: ...
def binary_cross_entropy(
    logits: _Array,
    target: _Array,
    weight: _Array | None,
    pos_weight: _Array | None,
    loss: _Array | None,
    grad: _Array | None,
    grad_scale: float,
    workers: int = 1,
    sample_weight: _Array | None = None,
    sample_len: int = 1,
) -> float: ...
