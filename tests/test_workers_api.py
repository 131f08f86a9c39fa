"""The workers= policy: resolve_workers, get_workers/set_workers, LOGITKIT_NUM_THREADS,
and logitkit's threadpoolctl controller."""

from __future__ import annotations

import asyncio
import doctest
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import logitkit
from logitkit import _threadpoolctl, _workers
from logitkit._workers import resolve_workers, usable_cores

CORES = usable_cores()


@pytest.fixture(autouse=True)
def _restore_process_default():
    """Every test leaves the process default (and this context's setting) as it found it."""
    before = _workers._get_process_default()
    context_before = _workers._context_workers.get()
    yield
    _workers._set_process_default(before)
    assert _workers._context_workers.get() == context_before, "a set_workers leaked"


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "LOGITKIT_NUM_THREADS"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120
    )


# --- resolve_workers -----------------------------------------------------------------


def test_usable_cores_is_the_affinity_mask():
    assert CORES >= 1
    if hasattr(os, "process_cpu_count"):
        assert CORES == max(1, os.process_cpu_count() or 1)
    elif hasattr(os, "sched_getaffinity"):
        assert CORES == len(os.sched_getaffinity(0))


def test_none_is_the_current_default():
    assert resolve_workers(None) == logitkit.get_workers()
    with logitkit.set_workers(3):
        assert resolve_workers(None) == 3


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000])
def test_positive_is_itself(n):
    assert resolve_workers(n) == n
    assert type(resolve_workers(n)) is int


def test_negative_counts_back_from_the_usable_cores():
    assert resolve_workers(-1) == CORES
    for k in range(1, CORES + 1):
        assert resolve_workers(-k) == CORES + 1 - k
    assert resolve_workers(-CORES) == 1


@pytest.mark.parametrize("n", [-CORES - 1, -CORES - 5, -(2**40)])
def test_too_negative_raises(n):
    with pytest.raises(ValueError, match=rf"^workers value out of range; got {n}, must not "
                                         rf"be less than {-CORES}$"):
        resolve_workers(n)


def test_zero_raises():
    with pytest.raises(ValueError, match="^workers must not be zero$"):
        resolve_workers(0)


@pytest.mark.parametrize("value", [True, False, np.True_, np.bool_(False)])
def test_bool_is_rejected(value):
    with pytest.raises(TypeError, match="bool"):
        resolve_workers(value)


@pytest.mark.parametrize("value", [2.0, 1.5, "2", b"2", [2], (2,), 2 + 0j, np.float64(2.0)])
def test_non_integers_are_rejected(value):
    with pytest.raises(TypeError, match="workers must be an integer or None"):
        resolve_workers(value)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
def test_numpy_integers_are_accepted(dtype):
    assert resolve_workers(dtype(2)) == 2
    assert type(resolve_workers(dtype(2))) is int
    if np.issubdtype(dtype, np.signedinteger):
        assert resolve_workers(dtype(-1)) == CORES
        with pytest.raises(ValueError, match="zero"):
            resolve_workers(dtype(0))


def test_objects_with_index_are_accepted():
    class Two:
        def __index__(self):
            return 2

    assert resolve_workers(Two()) == 2


def test_same_results_and_messages_as_scipy_fft(monkeypatch):
    pytest.importorskip("scipy")
    helper = pytest.importorskip("scipy.fft._pocketfft.helper")
    if not hasattr(helper, "_workers") or not hasattr(helper, "_cpu_count"):
        pytest.skip("scipy.fft's private helper changed")
    monkeypatch.setattr(helper, "_cpu_count", CORES)  # scipy counts os.cpu_count()
    for n in [*range(-CORES - 3, 0), 0, 1, 2, 5]:
        try:
            expected = helper._workers(n)
        except ValueError as e:
            with pytest.raises(ValueError) as got:
                resolve_workers(n)
            assert str(got.value) == str(e)
        else:
            assert resolve_workers(n) == expected


# --- get_workers / set_workers ---------------------------------------------------------


def test_exported():
    assert {"get_workers", "set_workers"} <= set(logitkit.__all__)
    assert logitkit.get_workers is _workers.get_workers
    assert logitkit.set_workers is _workers.set_workers


def test_default_is_the_process_default():
    assert logitkit.get_workers() == _workers._get_process_default()
    assert type(logitkit.get_workers()) is int and logitkit.get_workers() >= 1


def test_set_workers_context_manager_restores():
    before = logitkit.get_workers()
    with logitkit.set_workers(3) as n:
        assert n == 3
        assert logitkit.get_workers() == 3
    assert logitkit.get_workers() == before


def test_set_workers_restores_on_exception():
    before = logitkit.get_workers()
    with pytest.raises(KeyError):
        with logitkit.set_workers(5):
            raise KeyError
    assert logitkit.get_workers() == before


def test_set_workers_plain_call_applies_at_once():
    before = logitkit.get_workers()
    setting = logitkit.set_workers(4)
    try:
        assert logitkit.get_workers() == 4
        assert resolve_workers(None) == 4
    finally:
        setting.restore()
    assert logitkit.get_workers() == before
    with pytest.raises(RuntimeError, match="already restored"):
        setting.restore()


def test_set_workers_stores_the_resolved_count():
    with logitkit.set_workers(-1) as n:
        assert n == CORES == logitkit.get_workers()
    with logitkit.set_workers(np.int64(2)) as n:
        assert n == 2 and type(logitkit.get_workers()) is int


def test_nesting():
    before = logitkit.get_workers()
    with logitkit.set_workers(2):
        with logitkit.set_workers(5):
            assert logitkit.get_workers() == 5
            with logitkit.set_workers(1):
                assert logitkit.get_workers() == 1
            assert logitkit.get_workers() == 5
        assert logitkit.get_workers() == 2
    assert logitkit.get_workers() == before


@pytest.mark.parametrize(
    "value, error",
    [(0, ValueError), (-CORES - 1, ValueError), (None, TypeError), (True, TypeError),
     (2.0, TypeError), ("3", TypeError)],
)
def test_set_workers_rejects_what_workers_rejects(value, error):
    before = logitkit.get_workers()
    with pytest.raises(error):
        logitkit.set_workers(value)
    assert logitkit.get_workers() == before


def test_precedence_argument_then_context_then_process_default():
    _workers._set_process_default(7)
    assert logitkit.get_workers() == 7 == resolve_workers(None)
    with logitkit.set_workers(2):
        _workers._set_process_default(9)  # does not reach a context with set_workers
        assert resolve_workers(None) == 2
        assert resolve_workers(3) == 3
    assert resolve_workers(None) == 9


def test_process_default_validated():
    with pytest.raises(ValueError):
        _workers._set_process_default(0)
    _workers._set_process_default(-1)
    assert _workers._get_process_default() == CORES


def test_threads_do_not_see_each_other():
    ready, check, done = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def other():
        seen["start"] = logitkit.get_workers()
        with logitkit.set_workers(11):
            ready.set()
            check.wait(30)
            seen["own"] = logitkit.get_workers()
        seen["after"] = logitkit.get_workers()
        done.set()

    _workers._set_process_default(3)
    thread = threading.Thread(target=other)
    thread.start()
    assert ready.wait(30)
    assert logitkit.get_workers() == 3  # the other thread's set_workers is not seen here
    with logitkit.set_workers(6):  # nor this one there
        check.set()
        assert done.wait(30)
        assert logitkit.get_workers() == 6
    thread.join(30)
    assert seen == {"start": 3, "own": 11, "after": 3}


def test_process_default_reaches_every_thread():
    seen = []
    _workers._set_process_default(5)
    thread = threading.Thread(target=lambda: seen.append(logitkit.get_workers()))
    thread.start()
    thread.join(30)
    assert seen == [5]


def test_asyncio_tasks_do_not_see_each_other():
    async def task(n):
        with logitkit.set_workers(n):
            for _ in range(3):
                await asyncio.sleep(0)
                assert logitkit.get_workers() == n
        return logitkit.get_workers()

    async def main():
        return await asyncio.gather(task(2), task(3), task(4))

    before = logitkit.get_workers()
    assert asyncio.run(main()) == [before] * 3
    assert logitkit.get_workers() == before


def test_docstring_examples():
    result = doctest.testmod(_workers, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --- LOGITKIT_NUM_THREADS ---------------------------------------------------------------

_PRINT_DEFAULT = "import logitkit; print(logitkit.get_workers())"


@pytest.mark.parametrize(
    "value, expected",
    [("3", 3), ("1", 1), ("64", 64), ("-1", CORES), (str(-CORES), 1), ("", CORES),
     (" 2 ", 2)],
)
def test_env_var_sets_the_process_default(value, expected):
    run = _run_python(_PRINT_DEFAULT, LOGITKIT_NUM_THREADS=value)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(expected)]


def test_env_var_unset_means_the_usable_cores():
    run = _run_python(_PRINT_DEFAULT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(CORES)]


@pytest.mark.parametrize("value", ["0", str(-CORES - 1), "abc", "1.5", "2 threads", " "])
def test_bad_env_var_fails_the_import(value):
    run = _run_python(_PRINT_DEFAULT, LOGITKIT_NUM_THREADS=value)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: LOGITKIT_NUM_THREADS="), run.stderr
    assert repr(value) in last and "is not a valid number of threads" in last


# --- threadpoolctl ----------------------------------------------------------------------


def test_marker_symbol_is_exported():
    ctypes = pytest.importorskip("ctypes")
    lib = ctypes.CDLL(logitkit._core.__file__)
    assert hasattr(lib, _threadpoolctl.MARKER_SYMBOL)


def _logitkit_entries(threadpoolctl):
    return [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "logitkit"]


def test_threadpool_info_lists_logitkit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    assert _threadpoolctl.register() is True  # registered at import; again is a no-op
    [entry] = _logitkit_entries(threadpoolctl)
    assert entry["internal_api"] == "logitkit"
    assert entry["version"] == logitkit.__version__
    assert entry["num_threads"] == _workers._get_process_default()
    assert os.path.realpath(entry["filepath"]) == os.path.realpath(logitkit._core.__file__)
    _workers._set_process_default(1)
    assert _logitkit_entries(threadpoolctl)[0]["num_threads"] == 1


@pytest.mark.parametrize("user_api", [None, "logitkit"])
def test_threadpool_limits_sets_the_default(user_api):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _workers._set_process_default(2)
    with threadpoolctl.threadpool_limits(limits=1, user_api=user_api):
        assert logitkit.get_workers() == 1 == resolve_workers(None)
        assert _logitkit_entries(threadpoolctl)[0]["num_threads"] == 1
    assert logitkit.get_workers() == 2


def test_threadpool_limits_as_a_call_and_restore():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _workers._set_process_default(2)
    limiter = threadpoolctl.threadpool_limits(limits=1, user_api="logitkit")
    assert logitkit.get_workers() == 1
    limiter.restore_original_limits()
    assert logitkit.get_workers() == 2


def test_threadpool_limits_of_another_api_leaves_logitkit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = logitkit.get_workers()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert logitkit.get_workers() == before


def test_set_workers_wins_over_threadpool_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with logitkit.set_workers(2):
        with threadpoolctl.threadpool_limits(limits=1, user_api="logitkit"):
            assert logitkit.get_workers() == 2  # though the process default is 1
            assert _workers._get_process_default() == 1


def test_controller_clamps_limits_below_one():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    controller = threadpoolctl.ThreadpoolController().select(user_api="logitkit")
    [lib] = controller.lib_controllers
    lib.set_num_threads(0)
    assert logitkit.get_workers() == 1
    lib.set_num_threads(3)
    assert logitkit.get_workers() == 3


def test_works_without_threadpoolctl():
    code = (
        "import sys; sys.modules['threadpoolctl'] = None\n"  # makes the import fail
        "import logitkit\n"
        "assert logitkit._threadpoolctl.register() is False\n"
        "with logitkit.set_workers(2): assert logitkit.get_workers() == 2\n"
        "print(logitkit.softmax([0.0, 0.0]))"
    )
    run = _run_python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["[0.5", "0.5]"]


def test_import_does_not_import_threadpoolctl_but_registers_when_it_is_imported():
    pytest.importorskip("threadpoolctl")
    code = (
        "import sys, logitkit\n"
        "assert 'threadpoolctl' not in sys.modules\n"
        "import threadpoolctl\n"
        "print(sum(lib['user_api'] == 'logitkit' for lib in threadpoolctl.threadpool_info()))"
    )
    run = _run_python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1"]


def test_registers_when_threadpoolctl_was_imported_first():
    pytest.importorskip("threadpoolctl")
    code = (
        "import threadpoolctl, logitkit\n"
        "with threadpoolctl.threadpool_limits(1):\n"
        "    print(logitkit.get_workers())\n"
        "print(sum(lib['user_api'] == 'logitkit' for lib in threadpoolctl.threadpool_info()))"
    )
    run = _run_python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "1"]


def test_finding_threadpoolctl_without_importing_it_keeps_the_watch():
    # importlib.util.find_spec (pip, pytest plugins) must not use up the one registration.
    pytest.importorskip("threadpoolctl")
    code = (
        "import importlib.util, sys, logitkit\n"
        "assert importlib.util.find_spec('threadpoolctl') is not None\n"
        "import threadpoolctl\n"
        "print(sum(lib['user_api'] == 'logitkit' for lib in threadpoolctl.threadpool_info()))"
    )
    run = _run_python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1"]
