"""Time and peak memory of a linear layer's cross-entropy, forward and backward.

    python benchmarks/bench_linear_cross_entropy.py                  # 4096x1024 -> 32000
    python benchmarks/bench_linear_cross_entropy.py --chunks 128,256,512,1024,4096
    python benchmarks/bench_linear_cross_entropy.py --no-grad --vocab 128256

Compares, each in a fresh process (so that peak RSS is its own):

- ``logitkit``: ``logitkit.linear_cross_entropy(..., return_grad=True)`` (default chunk,
  or each of ``--chunks``);
- ``materialize``: the N x V logits by ``np.matmul``, ``logitkit.cross_entropy`` with
  its gradient in place, and the two gradient products;
- ``torch``: ``torch.nn.functional.linear_cross_entropy`` with autograd (all threads),
  when PyTorch is installed.

Every method uses all cores: NumPy's BLAS and PyTorch use their default threads, and
logitkit's kernel gets ``workers=-1``. Reported: the median time of ``--repeat`` calls
after one warm-up, the process's peak RSS from the moment the inputs are made (Linux's
VmHWM, reset then), and that peak above the RSS at that moment ("extra": what the method
itself needed).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Start the peak RSS (VmHWM) afresh, so that making the inputs does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux, or not allowed: the peak then includes the setup
        pass


def _peak_mb() -> float:
    try:
        return _status_mb("VmHWM")
    except (OSError, RuntimeError):
        # ru_maxrss is in KiB on Linux.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    import numpy as np

    method = args.child
    if method == "torch":
        import torch

    import logitkit

    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    n, h, v = args.tokens, args.hidden, args.vocab
    x = rng.standard_normal((n, h), dtype=np.float32).astype(dtype, copy=False)
    x *= 0.5
    w = rng.standard_normal((v, h), dtype=np.float32).astype(dtype, copy=False)
    w *= 1 / np.sqrt(h)
    t = rng.integers(0, v, n)
    grad = not args.no_grad

    if method == "logitkit":
        chunk = args.chunk or None

        def run() -> None:
            logitkit.linear_cross_entropy(x, w, t, return_grad=grad, chunk_size=chunk, workers=-1)

    elif method == "materialize":

        def run() -> None:
            logits = np.matmul(x, w.T)
            if not grad:
                logitkit.cross_entropy(logits, t, workers=-1)
                return
            _, g = logitkit.cross_entropy(logits, t, return_grad=True, grad_out=logits, workers=-1)
            np.matmul(g, w)
            np.matmul(g.T, x)

    else:
        xt = torch.from_numpy(x)
        wt = torch.from_numpy(w)
        tt = torch.from_numpy(t)

        def run() -> None:
            xr = xt.detach().requires_grad_(grad)
            wr = wt.detach().requires_grad_(grad)
            loss = torch.nn.functional.linear_cross_entropy(xr, wr, tt)
            if grad:
                loss.backward()

    base = _rss_mb()
    _reset_peak()
    run()  # warm-up (BLAS threads, page faults of the buffers)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(json.dumps({"time": statistics.median(times), "peak": _peak_mb(), "base": base}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunks", default="", help="comma-separated chunk sizes to compare")
    parser.add_argument("--no-grad", action="store_true", help="forward only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    runs: list[tuple[str, list[str]]] = [("logitkit (default chunk)", ["--child", "logitkit"])]
    for c in filter(None, args.chunks.split(",")):
        runs.append((f"logitkit chunk={int(c)}", ["--child", "logitkit", "--chunk", c]))
    runs.append(("materialize (np.matmul + logitkit.cross_entropy)", ["--child", "materialize"]))
    if have_torch:
        runs.append(("torch linear_cross_entropy", ["--child", "torch"]))
    common = [
        "--tokens", str(args.tokens), "--hidden", str(args.hidden), "--vocab", str(args.vocab),
        "--dtype", args.dtype, "--repeat", str(args.repeat),
    ] + (["--no-grad"] if args.no_grad else [])
    what = "forward" if args.no_grad else "forward+backward"
    print(
        f"# {args.tokens}x{args.hidden} -> {args.vocab} {args.dtype}, {what}, "
        f"median of {args.repeat}; logits alone: "
        f"{args.tokens * args.vocab * (4 if args.dtype == 'float32' else 8) / 2**20:.0f} MiB"
    )
    print(f"| method | time | peak RSS | extra over inputs |")
    print("|---|---:|---:|---:|")
    results = {}
    for name, extra in runs:
        out = subprocess.run(
            [sys.executable, __file__, *extra, *common], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[name] = r
        print(
            f"| {name} | {r['time']:.3f} s | {r['peak']:.0f} MiB | {r['peak'] - r['base']:.0f} MiB |",
            flush=True,
        )
    ours = results["logitkit (default chunk)"]
    ref = results["materialize (np.matmul + logitkit.cross_entropy)"]
    print(
        f"\nlogitkit / materialize: time {ours['time'] / ref['time']:.2f}x, "
        f"peak RSS {ref['peak'] - ours['peak']:.0f} MiB lower"
    )
    if have_torch:
        tr = results["torch linear_cross_entropy"]
        print(f"torch / logitkit: time {tr['time'] / ours['time']:.2f}x")


if __name__ == "__main__":
    main()
