"""examples/dask_perplexity.py runs on a small LocalCluster of worker processes, and the
numbers it prints agree with logitkit on the same logits as one NumPy array.

The example runs in a subprocess (its workers are spawned processes, which import the
script's module); the test then makes the same data again (dask.array.random gives the
same numbers for the same seed and chunks), computes it into NumPy arrays, and checks the
printed mean cross-entropy, perplexity, per-token log-probabilities and least likely tokens.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

import logitkit  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dask_perplexity.py"
# Small, with the class axis split unevenly (1000 = 3 x 300 + 100) and uneven row chunks.
SIZES = dict(rows=3000, classes=1000, row_chunk=700, class_chunk=300, seed=7,
             ignore_fraction=0.1)


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("dask_perplexity", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def printed(example):
    args = [f"--{name.replace('_', '-')}={value}" for name, value in SIZES.items()]
    run = subprocess.run([sys.executable, str(EXAMPLE), *args, "--workers=2",
                          "--memory-limit=400MiB"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "perplexity" in run.stdout and "GB/s" in run.stdout, run.stdout
    return example.parse_results(run.stdout)


@pytest.fixture(scope="module")
def expected(example):
    logits, labels = example.make_data(
        SIZES["rows"], SIZES["classes"], SIZES["row_chunk"], SIZES["class_chunk"],
        seed=SIZES["seed"], ignore_fraction=SIZES["ignore_fraction"])
    x = logits.compute(scheduler="sync")
    t = labels.compute(scheduler="sync")
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (3000, 1000)
    assert (t == -100).sum() > 100  # some labels are ignored
    return x, t


def test_mean_cross_entropy_and_perplexity(printed, expected):
    x, t = expected
    mean = float(logitkit.cross_entropy(x, t))  # NumPy in, NumPy out: no Dask here
    assert printed["mean_cross_entropy"] == pytest.approx(mean, rel=1e-5)
    assert printed["perplexity"] == pytest.approx(np.exp(mean), rel=1e-4)
    assert printed["scored_tokens"] == (t != -100).sum()
    # float64 reference, independent of logitkit: log-softmax of the rows, by NumPy.
    x64 = x.astype(np.float64)
    lse = np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1)) + x64.max(1)
    keep = t != -100
    reference = np.mean(lse[keep] - x64[keep, t[keep]])
    assert printed["mean_cross_entropy"] == pytest.approx(reference, rel=1e-5)


def test_per_token_log_probs(printed, expected):
    x, t = expected
    logp = -logitkit.cross_entropy(x, t, reduction="none")
    keep = t != -100
    assert printed["mean_token_logp"] == pytest.approx(logp[keep].mean(), rel=1e-5)
    assert printed["mean_token_logp"] == pytest.approx(-printed["mean_cross_entropy"],
                                                       rel=1e-5)
    assert printed["min_token_logp"] == pytest.approx(logp[keep].min(), rel=1e-5)
    order = np.argsort(np.where(keep, logp, np.inf), kind="stable")[:10]
    assert printed["least_likely_tokens"] == order.tolist()
    np.testing.assert_allclose(printed["least_likely_logp"], logp[order], rtol=1e-5)
