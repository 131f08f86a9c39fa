"""logitkit: the last layer of a classifier, fast and careful, for NumPy.

Stable softmax, log-softmax and logsumexp computed by a C++ core with SIMD kernels chosen
for this CPU at import.
"""

from __future__ import annotations

from . import _core
from ._softmax import log_softmax, logsumexp, softmax
from ._version import __version__

__all__ = ["__version__", "capabilities", "log_softmax", "logsumexp", "softmax"]


def capabilities():
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
