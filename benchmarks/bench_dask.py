"""logitkit.cross_entropy over a Dask array larger than a worker's memory, against memcpy
and against the same computation on one in-memory NumPy array.

Default: 40000 x 32000 float32 logits (5.12 GB) in 2000 x 8000 chunks (the class axis in
4 chunks), int64 labels (5% ignore_index=-100), reduction="mean", on a LocalCluster of 2
worker processes with 1 thread each. Phases, in this order, the big arrays freed between
them (each time is the median, and the best, of --repeats runs):

(a) memcpy: ``np.copyto(dst, src)`` of the logits as one NumPy array (one thread: NumPy's
    copy is single-threaded), after one untimed copy that faults dst's pages in.
(b) ``logitkit.cross_entropy(x, t)`` on that NumPy array, workers=1 and workers=2.
(c) Dask, the logits already in the workers' memory: generated in the workers and
    persisted (the workers' memory limit, --persist-memory, must then hold them); only
    the cross-entropy's ``.compute()`` is timed (and, for scale, Dask's own ``x.sum()``).
(d) Dask, the logits generated lazily per block (dask.array.random) under a worker memory
    limit smaller than the data (--lazy-memory): generation + cross-entropy, and the
    generation alone (a trivial per-block reduction: one element of each block), so the
    cross-entropy's share is their difference.

For (c) and (d) the script checks that no worker was restarted (the scheduler's set of
workers is the same before and after) and reports each worker's peak resident memory
(VmHWM from /proc/self/status, Linux only; each phase starts a fresh cluster). The NumPy
array of (a)/(b) is made by NumPy's own generator: the same size and distribution as the
Dask one, not the same numbers.

    python benchmarks/bench_dask.py
    python benchmarks/bench_dask.py --rows 4000 --classes 3000 --row-chunk 500 \\
        --class-chunk 1000 --persist-memory 1GiB --lazy-memory 200MiB --repeats 2

Columns: time (median of the repeats; best in brackets; for the cross-entropy's share in
(d), the difference of the medians (of the bests)), GB/s = logits bytes / time,
"x memcpy" = time / memcpy's time, "x NumPy w=1" and "x NumPy w=2" = time / the in-memory
NumPy cross-entropy's time with that many threads.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import logitkit

IGNORE_INDEX = -100


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Seconds of each of `repeats` calls of fn, and its last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def make_labels(rows: int, classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    labels = rng.integers(0, classes, rows)
    labels[rng.random(rows) < 0.05] = IGNORE_INDEX
    return labels


def dask_logits(args: argparse.Namespace) -> Any:
    import dask.array as da

    return da.random.default_rng(args.seed).standard_normal(
        (args.rows, args.classes), chunks=(args.row_chunk, args.class_chunk),
        dtype=np.float32)


def _corner(block: np.ndarray) -> np.ndarray:
    """One element of a block: makes the block (generation) and nothing else."""
    return block[:1, :1].astype(np.float64)


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux), else -1."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def cluster_phase(args: argparse.Namespace, memory_limit: str,
                  body: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """body(client) on a fresh LocalCluster; adds the workers' peaks and restart check."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.n_workers, threads_per_worker=1, processes=True,
                      memory_limit=memory_limit, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        client.wait_for_workers(args.n_workers)
        before = set(client.scheduler_info()["workers"])
        out = body(client)
        after = set(client.scheduler_info()["workers"])
        out["restarted"] = before != after
        out["peaks"] = sorted(client.run(_peak_rss).values())
        out["spilled"] = sum(w.get("metrics", {}).get("spilled_bytes", {}).get("disk", 0)
                             for w in client.scheduler_info()["workers"].values())
    return out


def task_profile(client: Any, compute: Callable[[], Any]) -> str:
    """One more, untimed, compute under distributed's task stream: the wall time, and
    the seconds the workers spent computing (and transferring), in total and by task
    kind -- where the time of a run goes."""
    from dask.distributed import get_task_stream

    start = time.perf_counter()
    with get_task_stream(client) as stream:
        compute()
    wall = time.perf_counter() - start
    kinds: dict[str, float] = {}
    busy = {"compute": 0.0, "transfer": 0.0}
    for task in stream.data:
        name = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        name = str(name).rsplit("-", 1)[0]
        for ss in task["startstops"]:
            seconds = ss["stop"] - ss["start"]
            busy[ss["action"]] = busy.get(ss["action"], 0.0) + seconds
            if ss["action"] == "compute":
                kinds[name] = kinds.get(name, 0.0) + seconds
    top = sorted(kinds.items(), key=lambda kv: -kv[1])[:4]
    return (f"wall {wall:.2f} s, {len(stream.data)} tasks; worker-seconds computing "
            f"{busy['compute']:.2f}, transferring {busy['transfer']:.2f}; by kind: "
            + ", ".join(f"{k} {v:.2f}" for k, v in top))


def phase_persisted(args: argparse.Namespace, labels: np.ndarray) -> dict[str, Any]:
    import dask.array as da
    from dask.distributed import wait

    def body(client: Any) -> dict[str, Any]:
        x = dask_logits(args).persist()
        t = da.from_array(labels, chunks=args.row_chunk).persist()
        wait([x, t])
        seconds, value = timed(lambda: logitkit.cross_entropy(x, t).compute(),
                               args.repeats)
        # For scale: Dask's own reduction over the same persisted blocks.
        sum_seconds, _ = timed(lambda: x.sum().compute(), args.repeats)
        profile = task_profile(client, lambda: logitkit.cross_entropy(x, t).compute())
        del x, t
        return {"ce": seconds, "sum": sum_seconds, "value": float(value), "profile": profile}

    return cluster_phase(args, args.persist_memory, body)


def phase_lazy(args: argparse.Namespace, labels: np.ndarray) -> dict[str, Any]:
    import dask.array as da

    def body(client: Any) -> dict[str, Any]:
        x = dask_logits(args)
        t = da.from_array(labels, chunks=args.row_chunk)
        gen = x.map_blocks(_corner, chunks=(1, 1), dtype=np.float64).sum()
        loss = logitkit.cross_entropy(x, t)
        gen_s, ce_s, value = [], [], None
        for _ in range(args.repeats):  # interleaved, so drifts hit both alike
            s, _ = timed(gen.compute, 1)
            gen_s += s
            s, value = timed(loss.compute, 1)
            ce_s += s
        profile = task_profile(client, loss.compute)
        return {"gen": gen_s, "gen+ce": ce_s, "value": float(value), "profile": profile}

    return cluster_phase(args, args.lazy_memory, body)


def phase_numpy(args: argparse.Namespace, labels: np.ndarray) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    x = np.empty((args.rows, args.classes), dtype=np.float32)
    rng.standard_normal(dtype=np.float32, out=x)
    dst = np.empty_like(x)
    np.copyto(dst, x)  # untimed: faults dst's pages in
    out: dict[str, Any] = {}
    out["memcpy"], _ = timed(lambda: np.copyto(dst, x), args.repeats)
    del dst
    gc.collect()
    for w in (1, args.n_workers):
        out[f"numpy w={w}"], value = timed(
            lambda: logitkit.cross_entropy(x, labels, workers=w), args.repeats)
        out[f"value w={w}"] = float(value)
    del x
    gc.collect()
    return out


def table(rows: list[tuple[str, float, float]], nbytes: int, memcpy: float, np1: float,
          np2: float) -> str:
    """rows: (name, median seconds, best seconds)."""
    head = (f"{'measurement':<62} {'time s (best)':>16} {'GB/s':>7} {'x memcpy':>9} "
            f"{'x NumPy w=1':>12} {'x NumPy w=2':>12}")
    lines = [head, "-" * len(head)]
    for name, med, best in rows:
        lines.append(f"{name:<62} {med:>7.3f} ({best:>6.3f}) {nbytes / 1e9 / med:>7.2f} "
                     f"{med / memcpy:>9.2f} {med / np1:>12.2f} {med / np2:>12.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=40000)
    p.add_argument("--classes", type=int, default=32000)
    p.add_argument("--row-chunk", type=int, default=2000)
    p.add_argument("--class-chunk", type=int, default=8000)
    p.add_argument("--n-workers", type=int, default=2,
                   help="Dask worker processes (1 thread each); also NumPy's workers=")
    p.add_argument("--persist-memory", default="5GiB",
                   help="per-worker memory limit of phase (c): must hold its share of data")
    p.add_argument("--lazy-memory", default="2GiB",
                   help="per-worker memory limit of phase (d): less than the data")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-numpy", action="store_true",
                   help="skip (a) and (b) (no single array of the whole data)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import dask
    import distributed

    nbytes = args.rows * args.classes * 4
    print(f"logits {args.rows} x {args.classes} float32 = {nbytes / 1e9:.2f} GB, chunks "
          f"{args.row_chunk} x {args.class_chunk}; {args.n_workers} worker processes x 1 "
          f"thread; repeats {args.repeats}")
    print(f"logitkit {logitkit.__version__}, numpy {np.__version__}, dask {dask.__version__}, "
          f"distributed {distributed.__version__}, python {sys.version.split()[0]}")
    labels = make_labels(args.rows, args.classes, args.seed)
    results: dict[str, Any] = {}
    if not args.skip_numpy:
        results["numpy"] = phase_numpy(args, labels)
    results["persisted"] = phase_persisted(args, labels)
    results["lazy"] = phase_lazy(args, labels)

    lazy, pers = results["lazy"], results["persisted"]
    rows: list[tuple[str, list[float]]] = []
    if "numpy" in results:
        n = results["numpy"]
        rows += [("(a) memcpy np.copyto, 1 thread", n["memcpy"]),
                 ("(b) NumPy array, cross_entropy workers=1", n["numpy w=1"]),
                 (f"(b) NumPy array, cross_entropy workers={args.n_workers}",
                  n[f"numpy w={args.n_workers}"])]
        memcpy, np1 = statistics.median(n["memcpy"]), statistics.median(n["numpy w=1"])
        np2 = statistics.median(n[f"numpy w={args.n_workers}"])
    else:
        memcpy = np1 = np2 = float("nan")
    rows += [(f"(c) Dask persisted, cross_entropy ({args.persist_memory}/worker)", pers["ce"]),
             ("(c) Dask persisted, x.sum() (Dask's own reduction, for scale)", pers["sum"]),
             (f"(d) Dask lazy, generation + cross_entropy ({args.lazy_memory}/worker)",
              lazy["gen+ce"]),
             ("(d) Dask lazy, generation alone", lazy["gen"]),
             ]
    table_rows = [(name, statistics.median(sec), min(sec)) for name, sec in rows]
    # The cross-entropy's share: the difference of the medians (of the bests).
    table_rows.append((
        "(d) cross_entropy's share: (gen + CE) - gen",
        statistics.median(lazy["gen+ce"]) - statistics.median(lazy["gen"]),
        min(lazy["gen+ce"]) - min(lazy["gen"])))
    print()
    print(table(table_rows, nbytes, memcpy, np1, np2))
    print()
    for name, sec in rows:
        print(f"{name[:40]:<40} runs (s): " + " ".join(f"{v:.3f}" for v in sec))
    if "numpy" in results:
        n = results["numpy"]
        print(f"mean cross-entropy: NumPy array {n['value w=1']:.6f} (w=1), "
              f"{n[f'value w={args.n_workers}']:.6f} (w={args.n_workers}); Dask data "
              f"{pers['value']:.6f} (persisted), {lazy['value']:.6f} (lazy)")
    else:
        print(f"mean cross-entropy: Dask {pers['value']:.6f} (persisted), "
              f"{lazy['value']:.6f} (lazy)")
    for name, phase, limit in (("(c)", pers, args.persist_memory),
                               ("(d)", lazy, args.lazy_memory)):
        peaks = ", ".join(f"{p / 2**30:.2f} GiB" if p >= 0 else "n/a" for p in phase["peaks"])
        print(f"{name} workers restarted: {'YES' if phase['restarted'] else 'no'}; "
              f"spilled to disk: {phase['spilled'] / 2**20:.0f} MiB; worker peak RSS "
              f"(VmHWM): {peaks} (limit {limit} each)")
        print(f"{name} task stream of one more run: {phase['profile']}")
    results["rows"] = rows
    return results


# Worker processes are spawned and import this module: the guard keeps them from
# running the benchmark themselves.
if __name__ == "__main__":
    main()
