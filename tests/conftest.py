"""pytest configuration for the logitkit tests.

- Puts ``tests/`` on sys.path so that test modules can ``import reference`` and
  ``import helpers`` (``tests`` is deliberately not a package).
- ``simd_target``: every numerical test takes this fixture, so it runs once per SIMD
  target that this CPU supports (ids: the target names).
"""

import sys
import warnings
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

# When a hypothesis test fails, hypothesis's pytest plugin imports
# hypothesis.extra._patching (-> libcst -> typing_inspect), which with some versions of
# mypy_extensions emits a DeprecationWarning at import.  Under filterwarnings = error
# that becomes an INTERNALERROR that aborts the whole run and hides the failure.
# Import it once here, with warnings ignored, so the later import is a no-op.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except Exception:  # not installed / other versions: nothing to work around
        pass

import pytest  # noqa: E402

import logitkit  # noqa: E402

SUPPORTED_TARGETS = list(logitkit.capabilities()["supported"])


@pytest.fixture(params=SUPPORTED_TARGETS, ids=SUPPORTED_TARGETS)
def simd_target(request):
    """Switch the active SIMD target for one test, restoring the previous one after."""
    name = request.param
    previous = logitkit._core._set_target(name)
    try:
        yield name
    finally:
        logitkit._core._set_target(previous)
