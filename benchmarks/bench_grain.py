"""Where more threads start to pay: logitkit with 1 and with N workers on growing arrays.

The core keeps a call on the calling thread below 2 x kMinElementsPerWorker elements and
gives each thread at least kMinElementsPerWorker (csrc/logitkit/parallel.hpp); this
script measures the ratio of the two around that size, to choose it. Rounds of the two
worker counts are interleaved; the minimum of each is reported.

    python benchmarks/bench_grain.py [--workers 2] [--reps 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import logitkit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"float32, {args.classes} classes; times in us (min of {args.reps} interleaved rounds)")
    print(f"{'rows':>6} {'elements':>9} | {'op':<18} {'1 worker':>9} "
          f"{str(args.workers) + ' workers':>10} {'ratio':>6}")
    for rows in (32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048):
        x = rng.standard_normal((rows, args.classes)).astype(np.float32)
        out = np.empty_like(x)
        labels = rng.integers(0, args.classes, rows)
        grad = np.empty_like(x)
        ops = {
            "softmax": lambda w: logitkit.softmax(x, out=out, workers=w),
            "cross_entropy+grad": lambda w: logitkit.cross_entropy(
                x, labels, return_grad=True, grad_out=grad, workers=w
            ),
        }
        for name, op in ops.items():
            best = {1: float("inf"), args.workers: float("inf")}
            for _ in range(args.reps):
                for w in best:
                    t0 = time.perf_counter()
                    op(w)
                    best[w] = min(best[w], time.perf_counter() - t0)
            one, many = best[1] * 1e6, best[args.workers] * 1e6
            print(f"{rows:>6} {rows * args.classes:>9} | {name:<18} {one:>9.1f} {many:>10.1f} "
                  f"{one / many:>6.2f}")


if __name__ == "__main__":
    main()
