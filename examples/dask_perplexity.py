"""Perplexity and per-token log-probabilities of logits larger than a worker's memory, on Dask.

logitkit's functions take Dask arrays and return lazy Dask arrays (``pip install
"logitkit[dask]"``; this script also needs ``distributed``). Here the "model output" is a
40000 x 32000 float32 array of logits -- 5.1 GB -- that is never held in memory at once: it
is made lazily, block by block, by ``dask.array.random``, on a cluster of two worker
processes that are each allowed less memory than the whole array. The vocabulary axis is
split between chunks too (2000 x 8000 blocks: each row's 32000 classes lie in 4 blocks);
logitkit merges the blocks of a row exactly (a log-sum-exp of the blocks' states), so the
result does not depend on the chunking.

From the one array of logits, the script computes

* the mean cross-entropy over the tokens whose label is not ``ignore_index`` (-100), and
  the perplexity, ``exp(mean cross-entropy)``;
* the per-token log-probabilities ``log p(label)``, i.e. ``-cross_entropy(...,
  reduction="none")`` (0 for ignored tokens), their mean and minimum, and the 10 least
  likely tokens;

in ONE ``dask.compute`` call: the results share the graph that makes the logits, so each
block of logits is generated once, used by every result, and dropped.

    python examples/dask_perplexity.py
    python examples/dask_perplexity.py --rows 4000 --classes 1000 --row-chunk 500 \\
        --class-chunk 300 --memory-limit 500MiB

The results are also printed as ``name = value`` lines after ``--- results ---`` (see
``parse_results``), which tests/test_example_dask_perplexity.py reads.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import dask
import dask.array as da
import numpy as np

import logitkit

IGNORE_INDEX = -100  # labels equal to this are not scored (padding, prompt tokens, ...)


def make_data(rows: int, classes: int, row_chunk: int, class_chunk: int, *, seed: int = 0,
              ignore_fraction: float = 0.05) -> tuple[da.Array, da.Array]:
    """Lazy float32 logits (rows x classes, chunked row_chunk x class_chunk) and int64 labels
    (rows, chunked row_chunk), about ignore_fraction of them IGNORE_INDEX.

    Nothing is computed here: the logits are a recipe that each worker runs per block.
    dask.array.random gives the same numbers for the same seed and chunks, so the test can
    make the very same data again.
    """
    rng = da.random.default_rng(seed)
    logits = rng.standard_normal((rows, classes), chunks=(row_chunk, class_chunk),
                                 dtype=np.float32)
    # Labels are small (8 bytes a row): a NumPy array, split into the logits' row chunks.
    label_rng = np.random.default_rng(seed + 1)
    labels = label_rng.integers(0, classes, rows)
    labels[label_rng.random(rows) < ignore_fraction] = IGNORE_INDEX
    return logits, da.from_array(labels, chunks=row_chunk)


def score(logits: da.Array, labels: da.Array, *, least_likely: int = 10) -> dict[str, Any]:
    """Compute the perplexity and per-token log-probabilities in one dask.compute call.

    Uses whatever Dask scheduler is active (a distributed Client once one exists).
    """
    # The building blocks: lazy Dask arrays, nothing is computed yet.
    mean_ce = logitkit.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)  # 0-d
    token_logp = -logitkit.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX,
                                         reduction="none")  # (rows,), 0 where ignored
    scored = labels != IGNORE_INDEX
    k = min(least_likely, logits.shape[0])
    # The k lowest log-probabilities (ignored tokens count as +inf here, so are never
    # picked) and their positions.
    candidates = da.where(scored, token_logp, np.inf)
    lowest_at = da.argtopk(-candidates, k)  # positions, the least likely first
    lowest = -da.topk(-candidates, k)  # their log-probabilities, in the same order

    start = time.perf_counter()
    # ONE compute: Dask merges the graphs, so the logits are generated once for everything.
    mean_ce, logp_sum, n_scored, logp_min, lowest_at, lowest_logp = dask.compute(
        mean_ce, token_logp.sum(), scored.sum(), candidates.min(), lowest_at, lowest,
    )
    seconds = time.perf_counter() - start
    return {
        "mean_cross_entropy": float(mean_ce),
        "perplexity": float(np.exp(mean_ce)),
        "scored_tokens": int(n_scored),
        "mean_token_logp": float(logp_sum) / max(int(n_scored), 1),
        "min_token_logp": float(logp_min),
        "least_likely_tokens": [int(i) for i in lowest_at],
        "least_likely_logp": [float(v) for v in lowest_logp],
        "seconds": seconds,
        "logits_gb": logits.nbytes / 1e9,
        "gb_per_s": logits.nbytes / 1e9 / seconds,
    }


def print_results(result: dict[str, Any]) -> None:
    """Human-readable lines, then ``name = value`` lines that parse_results reads back."""
    print(f"mean cross-entropy  {result['mean_cross_entropy']:.6f} nats over "
          f"{result['scored_tokens']} scored tokens")
    print(f"perplexity          {result['perplexity']:.2f}")
    print(f"token log-prob      mean {result['mean_token_logp']:.6f}, "
          f"min {result['min_token_logp']:.6f}")
    print("least likely tokens (position: log p)")
    for i, logp in zip(result["least_likely_tokens"], result["least_likely_logp"]):
        print(f"    {i:>10}: {logp:.4f}")
    print(f"{result['logits_gb']:.2f} GB of logits in {result['seconds']:.2f} s wall time "
          f"(one dask.compute, generating them included): {result['gb_per_s']:.2f} GB/s")
    print("--- results ---")
    for name, value in result.items():
        if isinstance(value, list):
            value = ",".join(repr(v) for v in value)
        print(f"{name} = {value!r}" if not isinstance(value, str) else f"{name} = {value}")


def parse_results(stdout: str) -> dict[str, Any]:
    """The ``name = value`` lines after ``--- results ---`` in this script's output."""
    out: dict[str, Any] = {}
    lines = stdout.split("--- results ---", 1)[1].strip().splitlines()
    for line in lines:
        name, _, value = line.partition(" = ")
        if name.startswith("least_likely"):
            kind = int if name == "least_likely_tokens" else float
            out[name] = [kind(v) for v in value.split(",") if v]
        else:
            out[name] = float(value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=40000, help="tokens (rows of logits)")
    p.add_argument("--classes", type=int, default=32000, help="vocabulary size")
    p.add_argument("--row-chunk", type=int, default=2000, help="rows per block")
    p.add_argument("--class-chunk", type=int, default=8000,
                   help="classes per block (less than --classes: the class axis is split)")
    p.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    p.add_argument("--memory-limit", default="2GiB",
                   help="memory limit of each worker (the logits are larger than this)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ignore-fraction", type=float, default=0.05,
                   help="fraction of labels set to ignore_index=-100")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # distributed is imported here: score() itself works with any Dask scheduler.
    from dask.distributed import Client, LocalCluster

    logits, labels = make_data(args.rows, args.classes, args.row_chunk, args.class_chunk,
                               seed=args.seed, ignore_fraction=args.ignore_fraction)
    print(f"logits {logits.shape} {logits.dtype}, {logits.nbytes / 1e9:.2f} GB in "
          f"{logits.numblocks[0]} x {logits.numblocks[1]} blocks of "
          f"{logits.chunksize[0]} x {logits.chunksize[1]}; {args.workers} workers of "
          f"{args.memory_limit} each")
    # One thread per worker process: logitkit computes each block with one thread too
    # (its workers=1 default for Dask arrays), so the cores are not oversubscribed.
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=args.memory_limit, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster):
        result = score(logits, labels)
    print_results(result)
    return result


# The guard matters: the worker processes are started by importing this module
# (multiprocessing's "spawn"), and must not start clusters of their own.
if __name__ == "__main__":
    main()
