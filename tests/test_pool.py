"""The core's thread pool: several Python threads at once, fork, threadpoolctl, limits.

Bit-identical results for every worker count are tested in test_workers_determinism.py;
this file is about the pool's behaviour: no deadlock or wrong answer when many callers
share it, a child process after fork() that can still compute, threadpool_limits capping
it, and absurd worker counts handled.
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import logitkit

# Large enough for the pool (above 2 x 65536 elements).
SHAPE = (512, 1024)


def _inputs(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(SHAPE) * 3).astype(np.float32)
    t = rng.integers(0, SHAPE[1], SHAPE[0])
    return x, t


def _compute(x, t, workers):
    loss, grad = logitkit.cross_entropy(x, t, return_grad=True, workers=workers)
    return logitkit.softmax(x, workers=workers), logitkit.logsumexp(x, workers=workers), loss, grad


def _run_python(code, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_eight_python_threads_asking_for_two_workers_each():
    inputs = [_inputs(seed) for seed in range(8)]
    expected = [_compute(x, t, 1) for x, t in inputs]
    errors = []
    start = threading.Barrier(8)

    def work(k):
        try:
            start.wait()
            x, t = inputs[k]
            for _ in range(20):
                got = _compute(x, t, 2)
                for a, b in zip(got, expected[k]):
                    if not np.array_equal(a, b):
                        errors.append(f"thread {k}: wrong result")
                        return
        except Exception as e:  # reported below, not lost in the thread
            errors.append(f"thread {k}: {e!r}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a caller hung"
    assert not errors, errors


def test_threads_with_different_worker_counts_at_once():
    x, t = _inputs(99)
    expected = _compute(x, t, 1)
    errors = []

    def work(workers):
        try:
            for _ in range(10):
                if not all(np.array_equal(a, b) for a, b in zip(_compute(x, t, workers), expected)):
                    errors.append(f"workers={workers}: wrong result")
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(w,)) for w in (1, 2, 3, 7, 16, 64)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_fork_after_the_pool_is_used():
    # The parent's pool threads do not exist in the child: the child must make a new pool
    # instead of waiting for them. A hang is caught by alarm() in the child.
    run = _run_python(
        """
        import os, signal, warnings
        import numpy as np, logitkit
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
        expected = logitkit.softmax(x, workers=1)
        assert np.array_equal(logitkit.softmax(x, workers=2), expected)
        assert logitkit._core._pool_thread_count() >= 1
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)
            ok = np.array_equal(logitkit.softmax(x, workers=2), expected)
            ok = ok and np.array_equal(logitkit.softmax(x, workers=4), expected)
            ok = ok and logitkit._core._pool_thread_count() >= 3
            # The pool's threads really exist in the child (a pool inherited from the
            # parent would count threads that are not there).
            if os.path.isdir("/proc/self/task"):
                ok = ok and len(os.listdir("/proc/self/task")) >= 4
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        assert np.array_equal(logitkit.softmax(x, workers=2), expected)  # the parent's pool
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_fork_while_another_thread_uses_the_pool():
    # The fork may come while another thread makes the pool, holds its lock or has a job
    # posted: the child must not wait for any of them. Fifty forks at random points of the
    # other thread's calls; each child computes with the pool and must finish. (With the
    # fork handler registered by the first parallel call instead of at import, about one
    # child in a few hundred had the parent's pool and hung on its lock.)
    run = _run_python(
        """
        import os, signal, threading, warnings
        import numpy as np, logitkit
        warnings.simplefilter("ignore", DeprecationWarning)
        x = np.random.default_rng(1).standard_normal((512, 1024)).astype(np.float32)
        expected = logitkit.softmax(x, workers=1)
        stop = False
        def busy():
            while not stop:
                logitkit.softmax(x, workers=2)
        th = threading.Thread(target=busy)
        th.start()  # its first call makes the pool, maybe while the first fork happens
        failures = 0
        for _ in range(50):
            pid = os.fork()
            if pid == 0:
                signal.alarm(60)
                # A child starts without a pool: the parent's threads are not there.
                fresh = logitkit._core._pool_thread_count() == 0
                same = np.array_equal(logitkit.softmax(x, workers=2), expected)
                os._exit(0 if fresh and same else 1)
            _, status = os.waitpid(pid, 0)
            failures += os.waitstatus_to_exitcode(status) != 0
        stop = True
        th.join()
        print(failures)
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_multiprocessing_fork_pool_after_use():
    run = _run_python(
        """
        import multiprocessing as mp, warnings
        import numpy as np, logitkit
        warnings.simplefilter("ignore", DeprecationWarning)

        def child(seed):
            x = np.random.default_rng(seed).standard_normal((512, 1024)).astype(np.float32)
            return float(logitkit.cross_entropy(x, np.zeros(512, int), workers=2))

        if __name__ == "__main__":
            logitkit.softmax(np.ones((512, 1024), np.float32), workers=2)  # pool made
            with mp.get_context("fork").Pool(2) as pool:
                got = pool.map(child, range(4), chunksize=1)
            assert got == [child(s) for s in range(4)], got
            print("ok")
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok"]


def test_threadpool_limits_caps_logitkit():
    pytest.importorskip("threadpoolctl")
    # In a fresh process: under threadpool_limits(1) a large call with the default
    # workers starts no pool thread; after the block, it does again.
    run = _run_python(
        """
        import numpy as np, logitkit, threadpoolctl
        x = np.ones((1024, 1024), np.float32)
        with threadpoolctl.threadpool_limits(1):
            assert logitkit.get_workers() == 1
            logitkit.softmax(x)
            print(logitkit._core._pool_thread_count())
        logitkit.softmax(x, workers=2)
        print(logitkit._core._pool_thread_count())
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "1"]


def test_huge_worker_counts_are_capped():
    # Far more workers than the pool starts (256 threads at most): still right, no error.
    x, t = _inputs(5)
    expected = _compute(x, t, 1)
    got = _compute(x, t, 10**12)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert logitkit._core._pool_thread_count() <= 255


def test_workers_zero_or_negative_reach_the_core_checked():
    with pytest.raises(ValueError):
        logitkit._core.softmax(np.ones((2, 2)), np.empty((2, 2)), 1, 0)
