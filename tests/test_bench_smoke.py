"""benchmarks/bench.py runs: a short selection of every kind of row (float32 losses,
float16/bfloat16 rows on two threads, the small-call latency table, the thread-scaling
table) completes, and no result is marked "!" (off from its float64 reference)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def run_bench(*args):
    run = subprocess.run([sys.executable, str(BENCH), "--quick", *args],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "marked !" not in run.stdout and "logitkit !" not in run.stdout, run.stdout
    assert "skipped" not in run.stdout, run.stdout
    return run.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--shapes", "4096x80,32x10", "--impls", "logitkit,numpy", "--dtypes", "float32"],
        ["--workers", "2", "--shapes", "4096x1000", "--ops", "softmax,cross_entropy+grad",
         "--impls", "logitkit", "--dtypes", "float16,bfloat16"],
    ],
    ids=["float32-losses-latency", "half-two-threads"],
)
def test_bench_quick_run(args):
    if "bfloat16" in args[-1]:
        pytest.importorskip("ml_dtypes")
    stdout = run_bench(*args)
    table_rows = [line for line in stdout.splitlines() if " logitkit " in line]
    assert table_rows, stdout
    workers = args[args.index("--workers") + 1] if "--workers" in args else "1"
    assert f"logitkit workers={workers}" in stdout, stdout


def test_bench_scaling():
    """--scaling --markdown: a row per array and thread count, logitkit and (where
    installed) PyTorch, with the memcpy; 1 is added to --scaling-workers."""
    impls = "logitkit,torch" if importlib.util.find_spec("torch") else "logitkit"
    stdout = run_bench("--scaling", "--scaling-workers", "2", "--markdown", "--impls", impls,
                       "--shapes", "4096x1000,32x10", "--ops", "softmax")
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("| op | shape | threads |"))

    def cells(line):  # "| a | b |" -> ["a", "b"], whichever column is last
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    rows = [cells(line) for line in lines if line.startswith("| ") and line != header]
    arrays = [("softmax", "4096x1000"), ("softmax", "32x10")]  # ms, and µs
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (op, shape, n) for op, shape in arrays for n in "12"], stdout
    speedup = cells(header).index("speedup vs 1")
    for row in rows:
        assert "–" not in row, stdout  # every cell filled (no PyTorch columns without it)
        assert not any(cell.endswith("s !") for cell in row), stdout  # no time marked "!"
        if row[2] == "1":
            assert row[speedup] == "1.00", stdout
