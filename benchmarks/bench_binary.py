#!/usr/bin/env python3
"""Time the binary (sigmoid) family against the memory roof and PyTorch.

Every call is timed against ``np.copyto(dst, x)`` of the same logits array, in
interleaved rounds in one process (median, and minimum, of ``--repeat``
rounds, after a warm-up), and reported as "x memcpy" (median over median, min
over min: on a machine shared with other jobs the minimum is the steadier).  A copy reads the array once and writes
it once: sigmoid / log_sigmoid with ``out=`` move the same bytes (roof 1.0x),
binary_cross_entropy with its gradient reads logits and target and writes the
gradient (1.5x), the loss alone only reads logits and target (1.0x).  Two more
rows time NumPy doing exactly that traffic with no arithmetic, ``np.subtract(x,
y, out=grad)`` and ``np.vdot(x, y)``: where memcpy's 2 arrays fit in the
last-level cache and bce's 3 do not (4096x1000 float32 on a 32 MB L3), these
are the honest roofs.

PyTorch (optional) runs on one thread: ``binary_cross_entropy_with_logits``
forward and backward on a leaf tensor that shares the NumPy buffers.

Examples::

    python benchmarks/bench_binary.py
    python benchmarks/bench_binary.py --shapes 4096x1000,4096x80 --dtypes float32
    python benchmarks/bench_binary.py --target avx2 --repeat 31
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import logitkit

torch: Any
try:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
except Exception:  # not installed, or a broken install
    torch = None


def _time(fn: Callable[[], object], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def cases(shape: tuple[int, ...], dtype: str) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = (rng.random(shape) < 0.3).astype(dtype)
    dst = np.empty_like(x)
    grad = np.empty_like(x)
    out = np.empty_like(x)
    calls: dict[str, Callable[[], object]] = {
        "memcpy": lambda: np.copyto(dst, x),
        # the same memory traffic as bce+grad (read two arrays, write one) and as the loss
        # alone (read two), with no arithmetic to speak of: the roofs of those two rows
        "roof x-y": lambda: np.subtract(x, y, out=grad),
        "roof dot": lambda: np.vdot(x, y),
        "bce+grad": lambda: logitkit.binary_cross_entropy(x, y, return_grad=True, grad_out=grad),
        "bce": lambda: logitkit.binary_cross_entropy(x, y),
        "sigmoid": lambda: logitkit.sigmoid(x, out=out),
        "log_sigmoid": lambda: logitkit.log_sigmoid(x, out=out),
    }
    if torch is not None:
        tz = torch.from_numpy(x).requires_grad_(True)
        ty = torch.from_numpy(y)

        def torch_bce_grad() -> None:
            tz.grad = None
            loss = F.binary_cross_entropy_with_logits(tz, ty)
            loss.backward()

        tx = torch.from_numpy(x)
        tout = torch.from_numpy(out)
        calls["torch bce+grad"] = torch_bce_grad
        calls["torch bce"] = lambda: F.binary_cross_entropy_with_logits(tx, ty)
        calls["torch sigmoid"] = lambda: torch.sigmoid(tx, out=tout)
        calls["torch log_sigmoid"] = lambda: F.logsigmoid(tx)
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="4096x1000,4096x80")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeat", type=int, default=21, help="interleaved rounds (median)")
    ap.add_argument("--target", default=None, help="force a SIMD target (baseline, avx2, avx512)")
    ap.add_argument("--only", default=None, help="comma-separated call names (memcpy is always timed)")
    args = ap.parse_args()
    if args.target:
        from logitkit import _core

        _core._set_target(args.target)
    print(f"target {logitkit._core.active_target()}, torch {torch.__version__ if torch else 'absent'}")
    for dtype in args.dtypes.split(","):
        for s in args.shapes.split(","):
            shape = tuple(int(v) for v in s.split("x"))
            calls = cases(shape, dtype)
            if args.only:
                keep = {"memcpy", "roof x-y", "roof dot", *args.only.split(",")}
                calls = {k: v for k, v in calls.items() if k in keep}
            # Inner repetitions so that one sample takes >= ~5 ms.
            inner = {}
            for name, fn in calls.items():
                fn()
                t = _time(fn, 1)
                inner[name] = max(1, int(5e-3 / max(t, 1e-7)))
            samples: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(args.repeat):
                for name, fn in calls.items():
                    samples[name].append(_time(fn, inner[name]))
            base = statistics.median(samples["memcpy"])
            base_min = min(samples["memcpy"])
            print(f"\n{dtype} {s}: memcpy median {base * 1e3:.3f} ms, min {base_min * 1e3:.3f} ms")
            for name in calls:
                med = statistics.median(samples[name])
                best = min(samples[name])
                lo, hi = np.percentile(samples[name], [25, 75])
                print(f"  {name:18s} median {med * 1e3:8.3f} ms {med / base:6.2f}x memcpy | "
                      f"min {best * 1e3:8.3f} ms {best / base_min:6.2f}x memcpy  "
                      f"(IQR {lo * 1e3:.3f}-{hi * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
