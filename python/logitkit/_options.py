"""Validation of the options shared by the softmax family, entropy, kl_divergence and
binary_cross_entropy (temperature=, where=, sample_weight=): each is turned into what the
core takes, or rejected with a ValueError/TypeError that says what was expected."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def temperature_scale(temperature: Any) -> float | None:
    """``1 / temperature`` for the core, or None for the default 1 (the plain path).

    The temperature must be a finite real number > 0 (ValueError otherwise); bools and
    non-numbers are a TypeError.
    """
    if isinstance(temperature, (bool, np.bool_)) or not isinstance(temperature, numbers.Real):
        raise TypeError(
            f"temperature must be a real number, got {type(temperature).__name__}"
        )
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    if t == 1.0:
        return None
    return 1.0 / t


def where_mask(where: ArrayLike | None, shape: tuple[int, ...]) -> NDArray[np.uint8] | None:
    """A where= mask broadcast to ``shape`` (no copy, zero strides allowed), as uint8.

    ``where`` must be a bool array (TypeError otherwise) broadcastable to ``shape``
    (ValueError otherwise); True = included.
    """
    if where is None:
        return None
    w = where if type(where) is np.ndarray else np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be a bool array, got dtype {w.dtype}")
    try:
        b = np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"where has shape {w.shape}, which does not broadcast to the input's shape {shape}"
        ) from None
    if not b.flags.aligned:  # (bool is always aligned; kept for clarity)
        b = b.copy()
    return b.view(np.uint8)
