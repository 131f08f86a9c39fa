"""benchmarks/bench_dask.py runs at tiny sizes: every phase completes, the table has every
row, the Dask results agree with each other, and no worker is restarted."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_dask.py"


def test_bench_dask_tiny():
    run = subprocess.run(
        [sys.executable, str(BENCH), "--rows", "3000", "--classes", "2000",
         "--row-chunk", "500", "--class-chunk", "700", "--persist-memory", "500MiB",
         "--lazy-memory", "300MiB", "--repeats", "2"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for row in ["(a) memcpy", "(b) NumPy array, cross_entropy workers=1",
                "(b) NumPy array, cross_entropy workers=2", "(c) Dask persisted",
                "(c) Dask persisted, x.sum()", "(d) Dask lazy, generation + cross_entropy",
                "(d) Dask lazy, generation alone",
                "(d) cross_entropy's share"]:
        assert row in out, out
    assert "nan" not in out.split("mean cross-entropy")[0], out  # every cell filled
    values = re.search(r"NumPy array ([\d.]+) \(w=1\), ([\d.]+) \(w=2\); Dask data "
                       r"([\d.]+) \(persisted\), ([\d.]+) \(lazy\)", out)
    assert values, out
    np1, np2, persisted, lazy = map(float, values.groups())
    assert np1 == pytest.approx(np2, rel=1e-6)
    assert persisted == pytest.approx(lazy, rel=1e-6)  # the same Dask data both times
    # Standard normal logits, uniform labels: about log(2000) + 1/2 (NumPy's numbers are
    # not Dask's, so only statistically the same).
    assert persisted == pytest.approx(np1, abs=0.05)
    assert 7.5 < np1 < 8.5
    assert out.count("workers restarted: no") == 2, out
