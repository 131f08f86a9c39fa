"""How many threads a call uses: the ``workers=`` argument, its defaults and their scopes.

Every public function takes ``workers=`` and turns it into a positive thread count with
:func:`resolve_workers` (the calling thread included), following :mod:`scipy.fft`:
``None`` is the current default, ``n > 0`` is ``n``, and a negative value counts back
from the number of usable cores (``-1`` all of them, ``-2`` all but one, ...).

The default comes from, in order of precedence:

1. :func:`set_workers` in effect in the current context (a :class:`contextvars.ContextVar`:
   each thread and each asyncio task has its own; a new thread starts with none, or with
   a copy of its starter's where ``sys.flags.thread_inherit_context`` is set, as on
   free-threaded Python 3.14+);
2. the process default: the number of usable cores, or the environment variable
   ``LOGITKIT_NUM_THREADS`` read at import (a bad value fails ``import logitkit``), or
   what :func:`threadpoolctl.threadpool_limits` sets (through
   :mod:`logitkit._threadpoolctl`, with :func:`_set_process_default`).

The number of usable cores is counted once, at import: the CPUs this process may run on
(:func:`os.process_cpu_count` on Python 3.13+, else the affinity mask where the OS has
one, else :func:`os.cpu_count`), not every CPU of the machine; a later change of affinity
is not seen, nor are CPU quotas of containers (cgroups).
"""

from __future__ import annotations

import operator
import os
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

import numpy as np

__all__ = ["get_workers", "set_workers", "resolve_workers", "usable_cores"]

ENV_VAR = "LOGITKIT_NUM_THREADS"


def _count_usable_cores() -> int:
    """The number of CPUs this process may run on, at least 1."""
    process_cpu_count = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:  # Python >= 3.13: the affinity mask, and -X cpu_count
        n = process_cpu_count()
    else:
        try:
            n = len(os.sched_getaffinity(0))  # Linux and some other Unixes
        except (AttributeError, OSError):
            n = os.cpu_count()
    return max(1, n or 1)


_USABLE_CORES = _count_usable_cores()

# The default of the current context; 0 means "none set here": use the process default.
_context_workers: ContextVar[int] = ContextVar("logitkit_workers", default=0)
_context_get = _context_workers.get


def usable_cores() -> int:
    """The number of CPUs this process may run on, as counted at import (at least 1)."""
    return _USABLE_CORES


def _check_workers(workers: Any) -> int:
    """``workers`` (not None) as a positive thread count; scipy.fft's rules and messages."""
    if isinstance(workers, (bool, np.bool_)):
        raise TypeError(f"workers must be an integer or None, not {type(workers).__name__}")
    try:
        n = operator.index(workers)
    except TypeError:
        raise TypeError(
            f"workers must be an integer or None, not {type(workers).__name__}"
        ) from None
    if n < 0:
        if n >= -_USABLE_CORES:
            return n + 1 + _USABLE_CORES
        raise ValueError(
            f"workers value out of range; got {n}, must not be less than {-_USABLE_CORES}"
        )
    if n == 0:
        raise ValueError("workers must not be zero")
    return n


def resolve_workers(workers: int | None) -> int:
    """The number of threads a call uses, the calling thread included.

    Parameters
    ----------
    workers : int or None
        ``None``: the current default (:func:`get_workers`). A positive integer: that
        many threads. A negative integer counts back from the number of usable cores:
        ``-1`` is all of them, ``-2`` all but one; below ``-usable_cores()`` is an error.
        NumPy integers are accepted; bools are not.

    Returns
    -------
    int
        A positive number of threads (not capped at the number of cores).

    Raises
    ------
    TypeError
        If `workers` is not an integer or None (a float, a string, a bool).
    ValueError
        If `workers` is 0 or counts back past the first core.
    """
    if workers is None:
        n = _context_get()
        return n if n else _process_default
    if type(workers) is int:
        if workers > 0:
            return workers
        if workers < 0 and workers >= -_USABLE_CORES:
            return workers + 1 + _USABLE_CORES
    return _check_workers(workers)


def get_workers() -> int:
    """The default number of threads of logitkit's functions in the current context.

    Returns
    -------
    int
        The value of :func:`set_workers` in effect in this thread (or asyncio task), else
        the process default: the number of usable cores, ``LOGITKIT_NUM_THREADS`` if it
        was set at import, or the limit of a :func:`threadpoolctl.threadpool_limits`
        block.

    Examples
    --------
    >>> import logitkit
    >>> with logitkit.set_workers(2):
    ...     logitkit.get_workers()
    2
    """
    n = _context_get()
    return n if n else _process_default


class _WorkersSetting:
    """What :func:`set_workers` returns: restores the previous default on ``__exit__``."""

    __slots__ = ("_token", "workers")

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._token: Token[int] | None = _context_workers.set(workers)

    def __enter__(self) -> int:
        return self.workers

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the default that was in effect before :func:`set_workers` was called.

        Raises
        ------
        RuntimeError
            If it was already restored.
        ValueError
            If called in another context (another thread or asyncio task).
        """
        if self._token is None:
            raise RuntimeError("this set_workers setting was already restored")
        _context_workers.reset(self._token)
        self._token = None

    def __repr__(self) -> str:
        return f"set_workers({self.workers})"


def set_workers(workers: int) -> _WorkersSetting:
    """Set the default number of threads of logitkit's functions in the current context.

    The new default applies at once, to the calling thread (or asyncio task) only: other
    threads keep theirs. Used as a context manager, the previous default comes back when
    the block ends.

    Parameters
    ----------
    workers : int
        A positive number of threads, or a negative one counting back from the number of
        usable cores (``-1``: all of them), as the ``workers=`` argument takes.

    Returns
    -------
    context manager
        Its ``__enter__`` gives the number of threads now in effect; its ``__exit__`` (or
        ``restore()``) puts back the default in effect before this call. One use only.

    Raises
    ------
    TypeError
        If `workers` is not an integer (None, a float, a bool).
    ValueError
        If `workers` is 0 or counts back past the first core.

    Examples
    --------
    >>> import logitkit
    >>> with logitkit.set_workers(1):                # single-threaded in this block
    ...     logitkit.get_workers()
    1
    >>> setting = logitkit.set_workers(2)             # from now on, in this thread
    >>> logitkit.get_workers()
    2
    >>> setting.restore()
    """
    if workers is None:
        raise TypeError("set_workers needs an integer number of workers, not None")
    return _WorkersSetting(_check_workers(workers))


def _get_process_default() -> int:
    """The default of threads that have no :func:`set_workers` in effect."""
    return _process_default


def _set_process_default(workers: int) -> None:
    """Set the default of threads that have no :func:`set_workers` in effect.

    For the threadpoolctl controller. Takes the values ``workers=`` takes (not None).
    """
    global _process_default
    _process_default = _check_workers(workers)


def _default_from_environment() -> int:
    """The process default at import: ``LOGITKIT_NUM_THREADS`` if set, else all cores."""
    raw = os.environ.get(ENV_VAR, "")
    if raw == "":  # unset, or set to the empty string (as LOGITKIT_SIMD)
        return _USABLE_CORES
    try:
        return _check_workers(int(raw))
    except ValueError:
        raise ValueError(
            f"{ENV_VAR}={raw!r} is not a valid number of threads: expected a positive "
            f"integer, or a negative one from -1 (all {_USABLE_CORES} usable cores) to "
            f"-{_USABLE_CORES} (one)"
        ) from None


_process_default: int = _default_from_environment()
