#!/usr/bin/env python3
"""Time the part-7 options of the softmax family, entropy, kl_divergence and
binary_cross_entropy (temperature=, where=, reduction="batchmean", sample_weight=)
against the plain calls and np.copyto of the logits' bytes (the memory roof), in the
same run.

Each round times every candidate once, in the same order, after a warm-up; the table
gives the median time of the rounds, its ratio to the plain call of the same function
(median of the per-round ratios, so that a slow patch of a shared machine hits a round's
candidates alike) and to memcpy. Outputs are preallocated where the function takes
``out=``; the others allocate as a caller's call would. The mask is a full bool array
(80% True) broadcast as given, or one shared row (``where (n,)``).

    python benchmarks/bench_family_options.py                      # float32 4096x1000
    python benchmarks/bench_family_options.py --shape 512x32000 --rounds 31
    python benchmarks/bench_family_options.py --dtype float64 --funcs softmax,kl
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import logitkit


def candidates(func, x, y, workers):
    """(function, [(name, callable)]) with the plain call first."""
    rows, n = x.shape
    rng = np.random.default_rng(1)
    full = rng.random(x.shape) < 0.8
    shared = rng.random(n) < 0.8
    w = {"workers": workers}
    if func in ("softmax", "log_softmax"):
        f = getattr(logitkit, func)
        out = np.empty_like(x)
        return [
            ("plain", lambda: f(x, out=out, **w)),
            ("temperature=2", lambda: f(x, temperature=2.0, out=out, **w)),
            ("where (rows, n)", lambda: f(x, where=full, out=out, **w)),
            ("where (n,)", lambda: f(x, where=shared, out=out, **w)),
            ("temperature + where", lambda: f(x, temperature=2.0, where=full, out=out, **w)),
        ]
    if func == "logsumexp":
        out = np.empty(rows, dtype=x.dtype)
        f = logitkit.logsumexp
        return [
            ("plain", lambda: f(x, out=out, **w)),
            ("temperature=2", lambda: f(x, temperature=2.0, out=out, **w)),
            ("where (rows, n)", lambda: f(x, where=full, out=out, **w)),
            ("where (n,)", lambda: f(x, where=shared, out=out, **w)),
        ]
    if func == "entropy":
        f = logitkit.entropy
        return [
            ("plain", lambda: f(x, **w)),
            ("temperature=2", lambda: f(x, temperature=2.0, **w)),
            ("where (rows, n)", lambda: f(x, where=full, **w)),
            ("where (n,)", lambda: f(x, where=shared, **w)),
        ]
    if func == "kl":
        f = logitkit.kl_divergence
        return [
            ("plain mean+grad", lambda: f(x, y, reduction="mean", return_grad=True, **w)),
            ("batchmean+grad", lambda: f(x, y, reduction="batchmean", return_grad=True, **w)),
            ("temperature=2 +grad",
             lambda: f(x, y, temperature=2.0, reduction="batchmean", return_grad=True, **w)),
            ("where (rows, n) +grad",
             lambda: f(x, y, where=full, reduction="batchmean", return_grad=True, **w)),
            ("where (n,) +grad",
             lambda: f(x, y, where=shared, reduction="batchmean", return_grad=True, **w)),
        ]
    if func == "bce":
        f = logitkit.binary_cross_entropy
        t = (rng.random(x.shape) < 0.3).astype(x.dtype)
        grad = np.empty_like(x)
        s = rng.random(rows)
        return [
            ("plain mean+grad", lambda: f(x, t, return_grad=True, grad_out=grad, **w)),
            ("sample_weight +grad",
             lambda: f(x, t, sample_weight=s, return_grad=True, grad_out=grad, **w)),
            ("plain mean", lambda: f(x, t, **w)),
            ("sample_weight", lambda: f(x, t, sample_weight=s, **w)),
        ]
    raise ValueError(f"unknown function {func!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="4096x1000", help="rows x classes")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--funcs", default="softmax,log_softmax,logsumexp,entropy,kl,bce")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    rows, n = (int(v) for v in args.shape.lower().split("x"))
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, n)) * 3).astype(args.dtype)
    y = (x + rng.standard_normal((rows, n))).astype(args.dtype)
    copy = np.empty_like(x)
    print(f"{args.shape} {args.dtype}, workers={args.workers}, {args.rounds} rounds, "
          f"target {logitkit.capabilities()['active']}; medians")
    print(f"{'function':<12} {'variant':<24} {'ms':>8} {'/plain':>8} {'/memcpy':>8}")
    for func in args.funcs.split(","):
        cands = [("memcpy", lambda: np.copyto(copy, x))] + candidates(func, x, y, args.workers)
        for _, c in cands:  # warm-up
            c()
        times = {name: [] for name, _ in cands}
        for _ in range(args.rounds):
            for name, c in cands:
                t0 = time.perf_counter()
                c()
                times[name].append(time.perf_counter() - t0)
        plain = cands[1][0]
        for name, _ in cands[1:]:
            ratio = statistics.median(a / b for a, b in zip(times[name], times[plain]))
            mem = statistics.median(a / b for a, b in zip(times[name], times["memcpy"]))
            print(f"{func:<12} {name:<24} {statistics.median(times[name]) * 1e3:8.3f} "
                  f"{ratio:8.3f} {mem:8.2f}")
        print(f"{func:<12} {'memcpy':<24} {statistics.median(times['memcpy']) * 1e3:8.3f}")


if __name__ == "__main__":
    main()
