"""Per-token log-probabilities and perplexity of a batch of sequences, without the logits.

A language model's last layer turns each token's hidden state h (size H) into logits over
the vocabulary, ``z = h @ E.T`` (E: the V x H embedding matrix, for tied weights). Scoring
text (perplexity, or the per-token log-probabilities that RL fine-tuning needs) only wants
``log softmax(z)[next token]`` per token, yet the obvious NumPy code builds all N x V
logits first: 2 GB for 4096 tokens of Llama 3's 128256-token vocabulary in float32.

``logitkit.linear_cross_entropy(h, E, next_tokens, reduction="none")`` returns the
per-token losses ``-log p(next token)`` a chunk of tokens at a time, so only one chunk of
logits exists at once. This script makes a small random "model" on the spot (hidden states
and an embedding matrix; vocabulary 128256 by default), scores it both ways, checks that
they agree, and prints the time and the peak memory NumPy allocated (tracemalloc) of each.

    python examples/llm_scoring.py
    python examples/llm_scoring.py --batch 8 --seq-len 512 --hidden 512
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import logitkit


def make_model(
    batch: int, seq_len: int, hidden: int, vocab: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hidden states (batch, seq_len, hidden), an embedding (vocab, hidden), and the
    token ids (batch, seq_len + 1) whose next-token log-probabilities are scored."""
    rng = np.random.default_rng(seed)
    states = rng.standard_normal((batch, seq_len, hidden), dtype=np.float32)
    embedding = rng.standard_normal((vocab, hidden), dtype=np.float32)
    embedding *= np.float32(1.0 / np.sqrt(hidden))
    tokens = rng.integers(0, vocab, (batch, seq_len + 1))
    return states, embedding, tokens


def score_chunked(states: np.ndarray, embedding: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """log p(token t+1 | tokens <= t) per position, by logitkit.linear_cross_entropy."""
    losses = logitkit.linear_cross_entropy(states, embedding, tokens[:, 1:], reduction="none")
    return -losses


def score_materialized(
    states: np.ndarray, embedding: np.ndarray, tokens: np.ndarray
) -> np.ndarray:
    """The same from all the logits at once (N x V floats)."""
    logits = states @ embedding.T
    return -logitkit.cross_entropy(logits, tokens[:, 1:], reduction="none")


def measure(f: Callable[[], Any]) -> tuple[Any, float, float]:
    """f()'s result, its time in seconds and the peak memory NumPy allocated, in MiB."""
    tracemalloc.start()
    start = time.perf_counter()
    result = f()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak / 2**20


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="sequences")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size")
    parser.add_argument("--vocab", type=int, default=128256, help="vocabulary size")
    args = parser.parse_args(argv)

    states, embedding, tokens = make_model(args.batch, args.seq_len, args.hidden, args.vocab)
    n = args.batch * args.seq_len
    print(
        f"{args.batch} sequences x {args.seq_len} tokens, hidden {args.hidden}, "
        f"vocabulary {args.vocab}: the logits would be {n * args.vocab * 4 / 2**20:.0f} MiB"
    )
    logp, t_chunked, m_chunked = measure(lambda: score_chunked(states, embedding, tokens))
    ref, t_full, m_full = measure(lambda: score_materialized(states, embedding, tokens))
    err = float(np.max(np.abs(logp - ref)))
    mean_nll = -float(np.mean(logp, dtype=np.float64))
    perplexity = float(np.exp(mean_nll))
    per_sequence = np.exp(-np.mean(logp, axis=1, dtype=np.float64))
    print(f"mean log-prob per token {-mean_nll:.4f}, perplexity {perplexity:.1f}")
    print("perplexity per sequence:", np.array2string(per_sequence, precision=1))
    print(f"linear_cross_entropy:  {t_chunked:7.3f} s, peak {m_chunked:7.1f} MiB")
    print(f"materialised logits:   {t_full:7.3f} s, peak {m_full:7.1f} MiB")
    print(f"largest difference in a log-prob: {err:.2e}")
    return {
        "perplexity": perplexity,
        "max_difference": err,
        "peak_chunked_mib": m_chunked,
        "peak_materialized_mib": m_full,
    }


if __name__ == "__main__":
    main()
