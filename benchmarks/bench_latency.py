#!/usr/bin/env python3
"""Per-call latency of small logitkit calls, next to PyTorch's (one thread).

For small inputs the time of a call is mostly fixed cost: argument checks in Python,
the pybind11 call, planning the axis in C++, then a kernel that touches a few hundred
elements. This script times such calls: one thread, float32, outputs preallocated
wherever the API takes one, each sample a batch of ``--number`` calls (per-call time =
batch time / number), ``--samples`` samples in interleaved rounds (every case in every
round, so that a slow patch of a shared machine hits them all alike), reported as the
median and the minimum per call in microseconds.

Two reference rows put the numbers in scale: ``np.copyto`` of the 32x10 input (about
the cheapest NumPy call on an array: argument parsing plus a 1 KiB copy) and a call of
an empty Python function.

Every result is first checked against a float64 NumPy reference.

Examples::

    python benchmarks/bench_latency.py
    python benchmarks/bench_latency.py --samples 101 --number 2000
    python benchmarks/bench_latency.py --no-torch
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import logitkit


@dataclass
class Case:
    name: str
    logitkit: Callable[[], Any]
    torch: Callable[[], Any] | None = None
    check: Callable[[], None] | None = None
    times: dict[str, list[float]] = field(default_factory=dict)


def _reference_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _close(actual: Any, expected: Any, what: str) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    if not np.allclose(actual, expected, rtol=1e-5, atol=1e-6):
        raise SystemExit(f"{what}: result differs from the float64 reference")


def make_cases(use_torch: bool) -> list[Case]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 10)) * 3).astype(np.float32)
    x_out = np.empty_like(x)
    lse_out = np.empty(32, dtype=np.float32)
    row = (rng.standard_normal((1, 1000)) * 3).astype(np.float32)
    row_out = np.empty_like(row)
    z = (rng.standard_normal((128, 10)) * 3).astype(np.float32)
    labels = rng.integers(0, 10, 128).astype(np.int64)
    grad = np.empty_like(z)

    ref_ls = _reference_log_softmax(x)
    ref_row = np.exp(_reference_log_softmax(row))
    ref_z = _reference_log_softmax(z)
    ref_loss = -ref_z[np.arange(128), labels].mean()
    onehot = np.zeros_like(ref_z)
    onehot[np.arange(128), labels] = 1
    ref_grad = (np.exp(ref_z) - onehot) / 128

    def check_ce_grad() -> None:
        loss, g = logitkit.cross_entropy(z, labels, return_grad=True, grad_out=grad)
        _close(loss, ref_loss, "cross_entropy+grad loss")
        _close(g, ref_grad, "cross_entropy+grad gradient")

    cases = [
        Case("softmax 32x10 out=", lambda: logitkit.softmax(x, out=x_out),
             check=lambda: _close(logitkit.softmax(x, out=x_out), np.exp(ref_ls), "softmax")),
        Case("softmax 32x10", lambda: logitkit.softmax(x),
             check=lambda: _close(logitkit.softmax(x), np.exp(ref_ls), "softmax")),
        Case("log_softmax 32x10 out=", lambda: logitkit.log_softmax(x, out=x_out),
             check=lambda: _close(logitkit.log_softmax(x, out=x_out), ref_ls, "log_softmax")),
        Case("logsumexp 32x10 out=", lambda: logitkit.logsumexp(x, out=lse_out),
             check=lambda: _close(logitkit.logsumexp(x, out=lse_out),
                                  (x.astype(np.float64) - ref_ls)[:, 0], "logsumexp")),
        Case("softmax 1x1000 out=", lambda: logitkit.softmax(row, out=row_out),
             check=lambda: _close(logitkit.softmax(row, out=row_out), ref_row, "softmax 1x1000")),
        Case("cross_entropy+grad 128x10", lambda: logitkit.cross_entropy(
                 z, labels, return_grad=True, grad_out=grad), check=check_ce_grad),
        Case("cross_entropy 128x10", lambda: logitkit.cross_entropy(z, labels),
             check=lambda: _close(logitkit.cross_entropy(z, labels), ref_loss, "cross_entropy")),
        Case("np.copyto 32x10 (reference)", lambda: np.copyto(x_out, x)),
        Case("empty Python call (reference)", lambda: None),
    ]
    if use_torch:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(1)
        xt, xt_out = torch.from_numpy(x), torch.empty(32, 10)
        lse_t = torch.empty(32)
        rowt, rowt_out = torch.from_numpy(row), torch.empty(1, 1000)
        zt, lt = torch.from_numpy(z), torch.from_numpy(labels)
        zg = torch.from_numpy(z.copy()).requires_grad_()

        def torch_ce_grad() -> Any:
            # What a training step does: the loss, then its gradient by autograd.
            zg.grad = None
            loss = F.cross_entropy(zg, lt)
            loss.backward()
            return loss, zg.grad

        def torch_ce() -> Any:
            with torch.no_grad():
                return F.cross_entropy(zt, lt)

        torch_impls = {
            "softmax 32x10 out=": lambda: torch.softmax(xt, -1, out=xt_out),
            "softmax 32x10": lambda: torch.softmax(xt, -1),
            "log_softmax 32x10 out=": lambda: torch.log_softmax(xt, -1, out=xt_out),
            "logsumexp 32x10 out=": lambda: torch.logsumexp(xt, -1, out=lse_t),
            "softmax 1x1000 out=": lambda: torch.softmax(rowt, -1, out=rowt_out),
            "cross_entropy+grad 128x10": torch_ce_grad,
            "cross_entropy 128x10": torch_ce,
        }
        for case in cases:
            case.torch = torch_impls.get(case.name)
        loss, g = torch_ce_grad()
        _close(loss.detach().numpy(), ref_loss, "torch cross_entropy")
        _close(g.numpy(), ref_grad, "torch cross_entropy gradient")
    return cases


def time_batch(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``fn`` over a batch of ``number`` calls."""
    clock = time.perf_counter
    start = clock()
    for _ in range(number):
        fn()
    return (clock() - start) / number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=1000, help="calls per sample")
    parser.add_argument("--samples", type=int, default=41, help="samples per row")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    args = parser.parse_args(argv)

    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            use_torch = False
    cases = make_cases(use_torch)
    for case in cases:
        if case.check is not None:
            case.check()

    impls = ["logitkit"] + (["torch"] if use_torch else [])
    for case in cases:  # warm-up
        for impl in impls:
            fn = case.logitkit if impl == "logitkit" else case.torch
            if fn is not None:
                time_batch(fn, max(1, args.number // 10))
                case.times[impl] = []
    for _ in range(args.samples):
        for case in cases:
            for impl in impls:
                fn = case.logitkit if impl == "logitkit" else case.torch
                if fn is not None:
                    case.times[impl].append(time_batch(fn, args.number))

    info = f"logitkit {logitkit.__version__} ({logitkit.capabilities()['active']})"
    if use_torch:
        import torch

        info += f", torch {torch.__version__} (1 thread)"
    print(f"# {info}, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"# {args.samples} samples of {args.number} calls; microseconds per call")
    header = f"{'call':32s} {'median':>8s} {'min':>8s}"
    if use_torch:
        header += f" {'torch med':>10s} {'torch min':>10s} {'torch/lk':>9s}"
    print(header)
    for case in cases:
        lk = case.times["logitkit"]
        med, low = statistics.median(lk) * 1e6, min(lk) * 1e6
        line = f"{case.name:32s} {med:8.3f} {low:8.3f}"
        if use_torch and "torch" in case.times:
            tt = case.times["torch"]
            tmed = statistics.median(tt) * 1e6
            line += f" {tmed:10.3f} {min(tt) * 1e6:10.3f} {tmed / med:9.2f}"
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
