#!/usr/bin/env python3
"""Time entropy, kl_divergence and the softmax / log_softmax backward products against
np.copyto of one logits array (the memory roof) and against PyTorch (one thread).

Each round times every candidate once (after a warm-up), in the same order; a candidate's
ratio to memcpy is taken per round and the median of the rounds is reported, with the
range of the middle half, so that a slow patch of a shared machine hits every candidate
of a round alike. "cpu": the same ratio of the medians of the thread's CPU time (which
leaves out the time the thread waited for a core: steadier when the machine is loaded;
the memory roof itself still moves with the other processes' traffic). Outputs are
preallocated: the logitkit rows call the core (``_core``) with preallocated outputs, as
an ``out=`` argument would; the ``api`` rows call the public function (which allocates
its outputs).

    python benchmarks/bench_divergence.py                       # float32 4096x1000
    python benchmarks/bench_divergence.py --dtype float64 --rounds 25
    python benchmarks/bench_divergence.py --shapes 4096x1000,512x32000,16x1048576
    python benchmarks/bench_divergence.py --ops entropy,kl+grad --no-torch
    python benchmarks/bench_divergence.py --old /tmp/old   # also an earlier build, below

``--old DIR``: DIR holds an earlier build of the package renamed to ``logitkit_old``
(``pip install --no-build-isolation --no-deps --target DIR <checkout>``, then rename
``DIR/logitkit`` to ``DIR/logitkit_old``), timed in the same rounds as row "old".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import logitkit
from logitkit import _core

try:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
except ImportError:  # optional
    torch = None


OLD = None  # the module logitkit_old._core with --old


def candidates(op, x, y, dtype, use_torch):
    """(name, zero-argument callable) pairs for one operation on logits x (and y)."""
    rows = x.shape[0]
    out = []
    old = OLD
    if op == "entropy":
        h = np.empty(rows, dtype=dtype)
        out.append(("logitkit", lambda: _core.entropy(x, h, 1)))
        if old:
            out.append(("old", lambda: old.entropy(x, h, 1)))
        out.append(("logitkit api", lambda: logitkit.entropy(x)))
        if use_torch:
            tx = torch.from_numpy(x)

            def torch_entropy():
                with torch.no_grad():
                    return -(torch.softmax(tx, -1) * torch.log_softmax(tx, -1)).sum(-1)

            out.append(("torch", torch_entropy))
    elif op in ("kl", "kl+grad"):
        grad = np.empty_like(y) if op == "kl+grad" else None
        kl = np.empty(rows, dtype=np.float64)
        out.append(("logitkit", lambda: _core.kl_divergence(x, y, kl, 1.0, grad, 1.0, 1)))
        if old:
            out.append(("old", lambda: old.kl_divergence(x, y, kl, 1.0, grad, 1.0, 1)))
        out.append(("logitkit api", lambda: logitkit.kl_divergence(
            x, y, reduction="sum", return_grad=op == "kl+grad")))
        if use_torch:
            tp, tq0 = torch.from_numpy(x), torch.from_numpy(y)
            # kl_divergence(p, q) = KL(P || Q), d/dq: kl_div(input=log Q, target=log P).
            if op == "kl":

                def torch_kl():
                    with torch.no_grad():
                        return F.kl_div(F.log_softmax(tq0, -1), F.log_softmax(tp, -1),
                                        reduction="sum", log_target=True)
            else:
                tq = tq0.clone().requires_grad_(True)

                def torch_kl():
                    tq.grad = None
                    with torch.no_grad():
                        lp = F.log_softmax(tp, -1)
                    loss = F.kl_div(F.log_softmax(tq, -1), lp, reduction="sum", log_target=True)
                    loss.backward()
                    return loss, tq.grad

            out.append(("torch", torch_kl))
    elif op in ("softmax_backward", "log_softmax_backward"):
        g = y
        if op == "softmax_backward":
            p = logitkit.softmax(x)
            fn, core = logitkit.softmax_backward, _core.softmax_backward
            tfn = "_softmax_backward_data"
        else:
            p = logitkit.log_softmax(x)
            fn, core = logitkit.log_softmax_backward, _core.log_softmax_backward
            tfn = "_log_softmax_backward_data"
        dx = np.empty_like(x)
        out.append(("logitkit", lambda: core(g, p, dx, 1)))
        if old:
            old_core = getattr(old, op)
            out.append(("old", lambda: old_core(g, p, dx, 1)))
        out.append(("logitkit api", lambda: fn(g, p, out=dx)))
        if use_torch:
            tg, tp_ = torch.from_numpy(g), torch.from_numpy(p)
            tdt = torch.float32 if dtype == np.float32 else torch.float64
            f = getattr(torch, tfn)
            out.append(("torch", lambda: f(tg, tp_, 1, tdt)))
    else:
        raise SystemExit(f"unknown op {op!r}")
    return out


def measure(shape, dtype, ops, rounds, use_torch):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = (x + rng.standard_normal(shape).astype(dtype)).astype(dtype)
    dst = np.empty_like(x)
    memcpy = ("memcpy", lambda: np.copyto(dst, x))
    for op in ops:
        cands = [memcpy] + candidates(op, x, y, dtype, use_torch)
        for _, f in cands:  # warm-up
            f()
            f()
        times = {name: [] for name, _ in cands}
        cpu = {name: [] for name, _ in cands}
        for _ in range(rounds):
            for name, f in cands:
                c0 = time.thread_time()
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
        base, cpu_base = times["memcpy"], cpu["memcpy"]
        print(f"{op:22s} {np.dtype(dtype).name} {shape[0]}x{shape[1]}  "
              f"memcpy {statistics.median(base) * 1e3:.3f} ms")
        med = {}
        for name, _ in cands[1:]:
            ratios = sorted(t / b for t, b in zip(times[name], base))
            q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
            med[name] = statistics.median(times[name])
            cpu_ratio = statistics.median(cpu[name]) / statistics.median(cpu_base)
            print(f"    {name:14s} {med[name] * 1e3:8.3f} ms  {statistics.median(ratios):6.2f}x "
                  f"memcpy  [{q1:.2f}-{q3:.2f}]  cpu {cpu_ratio:5.2f}x")
        for other in ("torch", "old"):
            if other in med:
                print(f"    {other} / logitkit: {med[other] / med['logitkit']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="4096x1000")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--ops", default="entropy,kl,kl+grad,softmax_backward,log_softmax_backward")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--old", metavar="DIR", help="also time DIR/logitkit_old (see above)")
    a = ap.parse_args()
    if a.old:
        global OLD
        sys.path.insert(0, a.old)
        import logitkit_old._core

        OLD = logitkit_old._core
    print("SIMD target:", logitkit.capabilities()["active"])
    for s in a.shapes.split(","):
        shape = tuple(int(v) for v in s.split("x"))
        measure(shape, np.dtype(a.dtype).type, a.ops.split(","), a.rounds,
                torch is not None and not a.no_torch)


if __name__ == "__main__":
    main()
