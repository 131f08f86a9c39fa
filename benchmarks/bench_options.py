#!/usr/bin/env python3
"""Time the part-7 options (spec/options_spec.md) against the plain call.

For each function (``--functions``), each shape and dtype, every case below runs in
interleaved rounds in one process, after a warm-up, together with ``np.copyto`` of an
array of the logits' size (the memory roof): the table gives the median time of each case,
its ratio to the plain call of the same function ("x plain": the options' cost) and to
memcpy. Outputs are preallocated where the API allows it (``grad_out=``).

The cases are a dict of name -> factory: a factory takes (logits, rng, workers) and
returns the callable to time, so another function's options are added by writing its
factories into FUNCTIONS (the first entry of each function is its plain call).

Examples::

    python benchmarks/bench_options.py                       # cross_entropy, 4096x1000 float32
    python benchmarks/bench_options.py --functions cross_entropy --repeat 41
    python benchmarks/bench_options.py --shapes 4096x1000,512x32000 --dtypes float32,float64
    python benchmarks/bench_options.py --target avx2 --workers 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import logitkit

Factory = Callable[[np.ndarray, np.random.Generator, int], Callable[[], object]]


def _ce(**opts: Any) -> Factory:
    """cross_entropy, loss + gradient into a preallocated grad_out, with `opts`
    ("mask" and "sw" are made for the shape)."""

    def make(z: np.ndarray, rng: np.random.Generator, workers: int) -> Callable[[], object]:
        t = rng.integers(0, z.shape[-1], size=z.shape[:-1])
        kw = dict(opts)
        if kw.get("where") == "mask":
            kw["where"] = rng.random(z.shape) < 0.9
        if kw.get("sample_weight") == "sw":
            kw["sample_weight"] = rng.uniform(0.5, 1.5, size=z.shape[:-1])
        grad = np.empty_like(z)
        return lambda: logitkit.cross_entropy(z, t, return_grad=True, grad_out=grad,
                                              workers=workers, **kw)

    return make


FUNCTIONS: dict[str, dict[str, Factory]] = {
    "cross_entropy": {
        "plain": _ce(),
        "temperature=0.7": _ce(temperature=0.7),
        "softcap=30": _ce(softcap=30.0),
        "z_loss=1e-4": _ce(z_loss=1e-4),
        "where (90% True)": _ce(where="mask"),
        "sample_weight": _ce(sample_weight="sw"),
        "all five": _ce(temperature=0.7, softcap=30.0, z_loss=1e-4, where="mask",
                        sample_weight="sw"),
    },
}


def _time(fn: Callable[[], object], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def run(function: str, shape: tuple[int, ...], dtype: str, repeat: int, workers: int) -> None:
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    dst = np.empty_like(z)
    calls = {"memcpy": lambda: np.copyto(dst, z)}
    for name, factory in FUNCTIONS[function].items():
        calls[name] = factory(z, np.random.default_rng(1), workers)
    for fn in calls.values():  # warm-up (threads, page faults, caches)
        fn()
        fn()
    probe = _time(calls["plain" if "plain" in calls else next(iter(calls))], 3)
    inner = max(1, int(0.02 / max(probe, 1e-7)))  # ~20 ms per sample
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            times[name].append(_time(fn, inner))
    med = {name: statistics.median(v) for name, v in times.items()}
    plain = med.get("plain", med[next(iter(FUNCTIONS[function]))])
    print(f"\n{function} {'x'.join(map(str, shape))} {dtype} workers={workers} "
          f"target={logitkit.capabilities()['active']} (median of {repeat} x {inner})")
    print(f"{'case':<20} {'ms':>9} {'x plain':>8} {'x memcpy':>9}")
    for name, t in med.items():
        print(f"{name:<20} {t * 1e3:9.3f} {t / plain:8.3f} {t / med['memcpy']:9.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--functions", default="cross_entropy",
                   help=f"comma-separated, from: {', '.join(FUNCTIONS)}")
    p.add_argument("--shapes", default="4096x1000")
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--repeat", type=int, default=21)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--target", default=None, help="SIMD target (default: the one chosen)")
    a = p.parse_args()
    if a.target:
        logitkit._core._set_target(a.target)
    for function in a.functions.split(","):
        if function not in FUNCTIONS:
            p.error(f"unknown function {function!r}; known: {', '.join(FUNCTIONS)}")
        for shape_text in a.shapes.split(","):
            shape = tuple(int(v) for v in shape_text.split("x"))
            for dtype in a.dtypes.split(","):
                run(function, shape, dtype, a.repeat, a.workers)


if __name__ == "__main__":
    main()
