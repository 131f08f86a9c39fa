"""Routing of Dask arrays to logitkit._dask, without importing Dask.

Every public function is wrapped by :func:`dask_aware`: when any argument is a
``dask.array.Array`` the call goes to the function of the same name in ``logitkit._dask``
(imported then, and with it Dask), which returns lazy Dask arrays. A Dask array can only
exist once ``dask.array`` is imported, so calls on NumPy data pay one dictionary lookup.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def has_dask_array(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether any of the arguments is a Dask array (False while Dask is not imported)."""
    dask_array = sys.modules.get("dask.array")
    if dask_array is None:
        return False
    array_type = dask_array.Array
    return any(isinstance(a, array_type) for a in args) or any(
        isinstance(a, array_type) for a in kwargs.values()
    )


def dask_aware(func: F) -> F:
    """Send calls with a Dask array argument to ``logitkit._dask.<name>``."""
    name = func.__name__

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "dask.array" in sys.modules and has_dask_array(args, kwargs):
            from . import _dask

            return getattr(_dask, name)(*args, **kwargs)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
