"""logitkit on a real Dask cluster: two worker processes (LocalCluster, processes=True).

The blocks are pickled to other processes, which import logitkit themselves; results must
equal the NumPy path there too, and a job larger than a worker's memory limit must stream
through without a worker being killed.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import logitkit as lk

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

WORKER_MEMORY = 500 * 2**20


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit=WORKER_MEMORY,
        dashboard_address=None, silence_logs=logging.ERROR,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


CHUNKINGS = {"rows": (16, -1), "classes": (-1, 40), "mixed": (16, 40)}


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_functions_on_worker_processes(client, chunking):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 130)) * 4
    t = rng.integers(0, 130, 50)
    t[::5] = -100
    y = lk.softmax(rng.standard_normal((50, 130)))
    dx = da.from_array(x, chunks=CHUNKINGS[chunking])
    dt = da.from_array(t, chunks=CHUNKINGS[chunking][0])
    w = rng.uniform(0.5, 2, 130)
    lazy = {
        "ce_mean_grad": lk.cross_entropy(dx, dt, weight=w, return_grad=True),
        "ce_none": lk.cross_entropy(dx, dt, reduction="none"),
        "ce_probs": lk.cross_entropy(dx, y, reduction="sum"),
        "nll": lk.nll_loss(lk.log_softmax(dx), dt),
        "softmax": lk.softmax(dx),
        "log_softmax": lk.log_softmax(dx),
        "logsumexp": lk.logsumexp(dx),
        "entropy": lk.entropy(dx),
        "kl": lk.kl_divergence(dx, dx[::-1], reduction="batchmean", return_grad=True),
        "bce": lk.binary_cross_entropy(dx, (dx > 0).astype(float), return_grad=True),
        "sigmoid": lk.sigmoid(dx),
    }
    expected = {
        "ce_mean_grad": lk.cross_entropy(x, t, weight=w, return_grad=True),
        "ce_none": lk.cross_entropy(x, t, reduction="none"),
        "ce_probs": lk.cross_entropy(x, y, reduction="sum"),
        "nll": lk.nll_loss(lk.log_softmax(x), t),
        "softmax": lk.softmax(x),
        "log_softmax": lk.log_softmax(x),
        "logsumexp": lk.logsumexp(x),
        "entropy": lk.entropy(x),
        "kl": lk.kl_divergence(x, x[::-1], reduction="batchmean", return_grad=True),
        "bce": lk.binary_cross_entropy(x, (x > 0).astype(float), return_grad=True),
        "sigmoid": lk.sigmoid(x),
    }
    (computed,) = da.compute(lazy)  # on the cluster: it is the default scheduler now
    for name, value in computed.items():
        for got, want in zip(np.atleast_1d(value) if not isinstance(value, tuple) else value,
                             expected[name] if isinstance(value, tuple) else
                             np.atleast_1d(expected[name])):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=name)


def test_job_larger_than_a_worker_memory_limit(client):
    # 640 MB of float32 logits, made lazily on the workers, 40 MB blocks, classes split
    # in four: more than a worker's memory limit.
    rows, classes, row_chunk = 4000, 40000, 1000
    x = da.random.default_rng(7).standard_normal((rows, classes), chunks=(row_chunk, 10000),
                                                  dtype=np.float32)
    assert x.nbytes > WORKER_MEMORY
    t = da.random.default_rng(8).integers(0, classes, rows, chunks=row_chunk)
    workers_before = set(client.scheduler_info()["workers"])
    loss = lk.cross_entropy(x, t)
    assert isinstance(loss, da.Array) and loss.dtype == np.float32
    value = loss.compute()
    # The same mean from NumPy, one block of rows at a time.
    total = 0.0
    for start in range(0, rows, row_chunk):
        xs, ts = da.compute(x[start : start + row_chunk], t[start : start + row_chunk])
        total += float(lk.cross_entropy(xs, ts, reduction="sum"))
    np.testing.assert_allclose(value, total / rows, rtol=1e-6)
    assert set(client.scheduler_info()["workers"]) == workers_before  # none was restarted
