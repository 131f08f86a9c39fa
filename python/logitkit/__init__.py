"""logitkit: the last layer of a classifier, fast and careful, for NumPy.

Stable softmax, log-softmax, logsumexp, cross-entropy (with its gradient fused in the same
pass), sigmoid and binary cross-entropy, entropy and KL divergence, computed by a C++ core
with SIMD kernels chosen for this CPU at import.

Every function but linear_cross_entropy also takes dask.array.Array inputs and returns
lazy Dask arrays, for any chunking (the class axis split between chunks too); see
logitkit._dask and the README's "Dask" section.
"""

from __future__ import annotations

from typing import Any

from . import _core, _threadpoolctl, special
from ._binary import binary_cross_entropy, log_sigmoid, sigmoid
from ._cross_entropy import cross_entropy, nll_loss
from ._divergence import entropy, kl_divergence
from ._linear_cross_entropy import LinearCrossEntropyGrads, linear_cross_entropy
from ._softmax import (
    log_softmax,
    log_softmax_backward,
    logsumexp,
    softmax,
    softmax_backward,
    softmax_jacobian,
)
from ._version import __version__
from ._workers import get_workers, set_workers

# threadpoolctl, once imported, lists logitkit and limits its default number of threads.
_threadpoolctl.register_when_imported()

__all__ = [
    "LinearCrossEntropyGrads",
    "__version__",
    "binary_cross_entropy",
    "capabilities",
    "cross_entropy",
    "entropy",
    "get_workers",
    "kl_divergence",
    "linear_cross_entropy",
    "log_sigmoid",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "nll_loss",
    "set_workers",
    "sigmoid",
    "softmax",
    "softmax_backward",
    "softmax_jacobian",
    "special",
]


def capabilities() -> dict[str, Any]:
    """Describe the SIMD targets of this build and this CPU.

    Returns
    -------
    dict
        ``"compiled"``: the targets compiled into the extension, from the most basic;
        ``"supported"``: those this CPU (and OS) can run; ``"active"``: the one in use,
        the best supported one unless the ``LOGITKIT_SIMD`` environment variable named
        another at import (``baseline``, ``avx2``, ``avx512``; ``neon`` on aarch64).
    """
    return {
        "compiled": list(_core.compiled_targets()),
        "supported": list(_core.supported_targets()),
        "active": _core.active_target(),
    }
