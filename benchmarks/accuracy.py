#!/usr/bin/env python3
"""Measure how far logitkit's float32 results are from the float64 results.

For each function, float32 inputs are drawn from a few distributions (standard normal
logits, logits scaled by 10 and by 100, one dominant logit over a long tail), the function
is computed in float32 by logitkit and in float64 by the reference in tests/reference.py
on the *same* (float32-rounded) inputs, and the worst errors are reported:

- "max abs": the largest absolute error;
- "max rel": the largest error relative to max(|reference|, 1) for values of log type
  (log_softmax, logsumexp, losses, entropies), and relative to |reference| for
  probabilities, counted where the reference is above 1e-30.

Usage::

    python benchmarks/accuracy.py             # plain table
    python benchmarks/accuracy.py --markdown  # for the README
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import logitkit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import reference  # noqa: E402  (the test suite's float64 reference)

Array = np.ndarray


def inputs(rng: np.random.Generator) -> list[tuple[str, Array]]:
    tail = rng.standard_normal((8, 32000))
    tail[:, 7] = 20.0
    return [
        ("normal 256x1000", rng.standard_normal((256, 1000))),
        ("10 * normal 256x1000", 10 * rng.standard_normal((256, 1000))),
        ("100 * normal 64x1000", 100 * rng.standard_normal((64, 1000))),
        ("dominant logit 8x32000", tail),
        ("normal 4096x10", rng.standard_normal((4096, 10))),
    ]


def probability_error(ours: Array, ref: Array) -> tuple[float, float]:
    mask = ref > 1e-30
    abs_err = float(np.max(np.abs(ours - ref)))
    rel_err = float(np.max(np.abs(ours[mask] - ref[mask]) / ref[mask]))
    return abs_err, rel_err


def log_error(ours: Array, ref: Array) -> tuple[float, float]:
    finite = np.isfinite(ref)
    diff = np.abs(np.asarray(ours, np.float64)[finite] - ref[finite])
    return float(np.max(diff)), float(np.max(diff / np.maximum(1.0, np.abs(ref[finite]))))


Case = tuple[str, Callable[[Array, Array], tuple[Any, Any]], Callable[..., tuple[float, float]]]


def cases() -> list[Case]:
    def labels_for(x: Array) -> Array:
        return np.arange(x.shape[0]) % x.shape[1]

    def ce(x32: Array, x64: Array) -> tuple[Any, Any]:
        t = labels_for(x64)
        return (logitkit.cross_entropy(x32, t, reduction="none"),
                reference.cross_entropy(x64, t, reduction="none"))

    def ce_grad(x32: Array, x64: Array) -> tuple[Any, Any]:
        t = labels_for(x64)
        _, g = logitkit.cross_entropy(x32, t, reduction="sum", return_grad=True)
        p = reference.softmax(x64, -1)
        p[np.arange(x64.shape[0]), t] -= 1
        return g, p

    return [
        ("softmax", lambda a, b: (logitkit.softmax(a), reference.softmax(b, -1)),
         probability_error),
        ("log_softmax", lambda a, b: (logitkit.log_softmax(a), reference.log_softmax(b, -1)),
         log_error),
        ("logsumexp", lambda a, b: (logitkit.logsumexp(a), reference.logsumexp(b, -1)),
         log_error),
        ("cross_entropy (per sample)", ce, log_error),
        ("cross_entropy gradient", ce_grad, log_error),
        ("entropy", lambda a, b: (logitkit.entropy(a), reference.entropy(b, axis=-1)),
         log_error),
        ("sigmoid", lambda a, b: (logitkit.sigmoid(a), 1 / (1 + np.exp(-b))),
         probability_error),
        ("log_sigmoid", lambda a, b: (logitkit.log_sigmoid(a),
                                      np.minimum(b, 0) - np.log1p(np.exp(-np.abs(b)))),
         log_error),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    data = [(name, x.astype(np.float32)) for name, x in inputs(rng)]
    rows = []
    with np.errstate(all="ignore"):
        for name, run, measure in cases():
            worst_abs = worst_rel = 0.0
            for _, x32 in data:
                ours, ref = run(x32, x32.astype(np.float64))
                a, r = measure(np.asarray(ours, np.float64), np.asarray(ref, np.float64))
                worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
            rows.append((name, worst_abs, worst_rel))
    target = logitkit.capabilities()["active"]
    if args.markdown:
        print(f"| function (float32, {target}) | max abs error | max rel error |")
        print("|---|---:|---:|")
        for name, a, r in rows:
            print(f"| {name} | {a:.1e} | {r:.1e} |")
    else:
        print(f"float32 vs float64 reference, SIMD target {target}")
        for name, a, r in rows:
            print(f"{name:<28} max abs {a:9.1e}   max rel {r:9.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
