"""Type aliases used in the package's annotations."""

from __future__ import annotations

from typing import Any, Literal, Union

import numpy as np
from numpy.typing import NDArray

__all__ = ["FloatArray", "FloatScalar", "KlReduction", "Loss", "Reduction"]

#: Arrays the functions return: float16, float32 or float64.
FloatArray = NDArray[np.floating[Any]]
#: A NumPy floating scalar, as a full reduction returns.
FloatScalar = np.floating[Any]
#: A loss: a scalar for reduction "mean"/"sum", an array for "none".
Loss = Union[FloatScalar, FloatArray]
Reduction = Literal["mean", "sum", "none"]
#: kl_divergence's reductions: "batchmean" (sum over classes, mean over rows) too.
KlReduction = Literal["mean", "sum", "none", "batchmean"]
