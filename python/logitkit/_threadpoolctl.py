"""logitkit's thread pool as threadpoolctl sees it.

When threadpoolctl (>= 3.3) is imported, before or after logitkit, logitkit registers a
controller for its compiled core with it, so that

- :func:`threadpoolctl.threadpool_info` lists logitkit (``user_api`` and
  ``internal_api`` ``"logitkit"``) with ``num_threads``, the process default of
  ``workers=``, and logitkit's version;
- :func:`threadpoolctl.threadpool_limits` (``limits=n``, with ``user_api=None`` or
  ``"logitkit"``) sets that process default inside its block and restores it after.

The process default is what threads use that have no :func:`logitkit.set_workers` in
effect; ``workers=`` passed to a function and :func:`logitkit.set_workers` take
precedence over it (see :mod:`logitkit._workers`).

threadpoolctl finds libraries among the shared objects loaded in the process by the start
of their file name; logitkit's extension is ``_core.*.so`` (``.pyd`` on Windows), a name
many packages use, so the controller also requires the symbol
``logitkit_threadpool_marker``, which only logitkit's core exports (``csrc/bindings.cpp``).
threadpoolctl checks such symbols from version 3.3; older versions are not registered with.

``import logitkit`` does not import threadpoolctl (optional dependencies are imported
where used; importing threadpoolctl takes 2-4 ms and sets ``KMP_DUPLICATE_LIB_OK`` in the
environment): it registers at once if threadpoolctl is already imported, and otherwise
when threadpoolctl is first imported (:func:`register_when_imported`).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Any

from . import _workers
from ._version import __version__

__all__ = ["USER_API", "MARKER_SYMBOL", "register", "register_when_imported"]

USER_API = "logitkit"
MARKER_SYMBOL = "logitkit_threadpool_marker"

_registered = False


class _ControllerMethods:
    """What logitkit's threadpoolctl controller adds to ``threadpoolctl.LibController``.

    :func:`register` makes the controller class from both, as threadpoolctl's base class
    exists only when threadpoolctl is installed.
    """

    user_api = USER_API
    internal_api = USER_API
    filename_prefixes = ("_core",)
    check_symbols = (MARKER_SYMBOL,)

    def get_num_threads(self) -> int:
        """The process default of ``workers=``."""
        return _workers._get_process_default()

    def set_num_threads(self, num_threads: int) -> None:
        """Set the process default of ``workers=``.

        threadpoolctl gives no meaning to limits below 1: they set 1, rather than raise in
        the middle of a ``threadpool_limits`` that has already limited other libraries.
        """
        _workers._set_process_default(max(1, int(num_threads)))

    def get_version(self) -> str:
        """logitkit's version."""
        return __version__


def register() -> bool:
    """Register logitkit's controller with threadpoolctl, if threadpoolctl is installed.

    Called by ``import logitkit``; registering again does nothing.

    Returns
    -------
    bool
        Whether the controller is registered: False if threadpoolctl is not installed, or
        older than 3.3.
    """
    global _registered
    if _registered:
        return True
    try:
        import threadpoolctl  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return False
    version = re.match(r"(\d+)\.(\d+)", getattr(threadpoolctl, "__version__", ""))
    if version is None or (int(version[1]), int(version[2])) < (3, 3):
        return False  # no register() before 3.2, no check of check_symbols before 3.3

    base = threadpoolctl.LibController
    # The base's metaclass (abc.ABCMeta) makes the class; _ControllerMethods comes first
    # in its bases, so its methods implement LibController's abstract ones.
    controller = type(base)("LogitkitController", (_ControllerMethods, base), {})
    threadpoolctl.register(controller)
    _registered = True
    return True


class _RegisterOnImport:
    """A meta path finder that registers the controller once threadpoolctl is imported.

    It finds threadpoolctl's spec with the other finders (it skips itself while doing so)
    and wraps the loader's ``exec_module`` so that :func:`register` runs right after the
    module has executed; then it removes itself.
    """

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "threadpoolctl" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _stop_watching()
            register()

        loader.exec_module = exec_module  # this spec's own loader instance
        return spec


_watcher: _RegisterOnImport | None = None


def _stop_watching() -> None:
    global _watcher
    if _watcher is not None and _watcher in sys.meta_path:
        sys.meta_path.remove(_watcher)
    _watcher = None


def register_when_imported() -> None:
    """Register now if threadpoolctl is already imported, else when it is (once)."""
    global _watcher
    if sys.modules.get("threadpoolctl") is not None:
        register()
    elif _watcher is None and "threadpoolctl" not in sys.modules:
        _watcher = _RegisterOnImport()
        sys.meta_path.insert(0, _watcher)
