"""Validation of the options shared by the softmax family, entropy, kl_divergence and
binary_cross_entropy (temperature=, where=, sample_weight=): each is turned into what the
core takes, or rejected with a ValueError/TypeError that says what was expected."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def real_option(value: object, name: str) -> float:
    """A real scalar option as a float: TypeError for bool, str and non-reals."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None


def checked_temperature(temperature: object) -> float:
    """The temperature as a float: finite and > 0 (ValueError), a real number (TypeError)."""
    t = real_option(temperature, "temperature")
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    return t


def temperature_scale(temperature: Any) -> float | None:
    """``1 / temperature`` for the core, or None for the default 1 (the plain path)."""
    t = checked_temperature(temperature)
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
        raise TypeError(f"where must be a boolean array, got dtype {w.dtype}")
    try:
        b = np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"where has shape {w.shape}, which does not broadcast to the input's shape {shape}"
        ) from None
    if not b.flags.aligned:  # (bool is always aligned; kept for clarity)
        b = b.copy()
    return b.view(np.uint8)
