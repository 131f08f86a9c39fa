"""benchmarks/bench.py runs: a short selection of every kind of row (float32 losses,
float16/bfloat16 rows, the small-call latency table) completes, and no result is
marked "!" (off from its float64 reference)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.mark.parametrize(
    "args",
    [
        ["--shapes", "4096x80,32x10", "--impls", "logitkit,numpy", "--dtypes", "float32"],
        ["--shapes", "4096x1000", "--ops", "softmax,cross_entropy+grad", "--impls", "logitkit",
         "--dtypes", "float16,bfloat16"],
    ],
    ids=["float32-losses-latency", "half"],
)
def test_bench_quick_run(args):
    if "bfloat16" in args[-1]:
        pytest.importorskip("ml_dtypes")
    run = subprocess.run([sys.executable, str(BENCH), "--quick", *args],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    table_rows = [line for line in run.stdout.splitlines() if " logitkit " in line]
    assert table_rows, run.stdout
    assert "marked !" not in run.stdout and "logitkit !" not in run.stdout, run.stdout
    assert "skipped" not in run.stdout, run.stdout
