#!/usr/bin/env python3
"""Train a small NumPy MLP on scikit-learn's digits, with logitkit computing the loss.

What this shows
---------------
The last layer of a classifier needs two things on every training step: the
cross-entropy loss, and its gradient with respect to the logits.  Chaining
``dE/da_i = -y_i / a_i`` through the softmax Jacobian ``diag(a) - a a^T``, everything
cancels and the gradient is simply the prediction minus the target::

    dE/dz = softmax(z) - y

Worked example: scores ``z = [2, 3, 4]`` with the second class correct give
``softmax(z) = [0.0900, 0.2447, 0.6652]`` and the gradient ``[0.0900, -0.7553, 0.6652]``.
For a batch of N samples and the mean loss, the gradient is ``(softmax(z) - onehot) / N``.

``logitkit.cross_entropy(logits, labels, return_grad=True)`` computes the mean loss
(``logsumexp(z) - z_label``, never ``log(softmax)``) and that gradient in one fused pass
over the logits.  Everything else in this program is plain NumPy: a two-layer network
(64 pixels -> 128 ReLU units -> 10 classes) trained with minibatch SGD with momentum,
whose backward pass starts from logitkit's gradient and continues with matmuls.

At the end, the program times the loss + gradient step with logitkit against the usual
NumPy implementation (max-shifted softmax, mean negative log-likelihood,
``(p - onehot) / N``) on the very batches of logits that the network produced in its
last epoch, and checks that both give the same loss and gradient.

Everything is float32 and seeded; it needs scikit-learn (the digits data set ships with
it, nothing is downloaded) and runs in a few seconds::

    python examples/train_mlp.py                 # train to ~97% test accuracy
    python examples/train_mlp.py --epochs 2      # quick smoke run
    python examples/train_mlp.py --seed 1 --batch-size 64 --quiet
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import logitkit

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("this example needs scikit-learn: pip install scikit-learn")

DTYPE = np.float32
SPLIT_SEED = 0  # the train/test split is the same for every --seed
TEST_FRACTION = 0.25


# --------------------------------------------------------------------------- data


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 8x8 digits as standardized float32 features: X_train, X_test, y_train, y_test."""
    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data,
        digits.target,
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=digits.target,
    )
    scaler = StandardScaler().fit(X_train)  # statistics of the training set only
    X_train = scaler.transform(X_train).astype(DTYPE)
    X_test = scaler.transform(X_test).astype(DTYPE)
    return X_train, X_test, y_train.astype(np.int64), y_test.astype(np.int64)


# --------------------------------------------------------------------------- model


class MLP:
    """``x -> relu(x W1 + b1) W2 + b2``: the logits of a two-layer perceptron."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, rng: np.random.Generator):
        # He initialization for the ReLU layer, Glorot-like for the output layer.
        self.params = {
            "W1": (rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)).astype(DTYPE),
            "b1": np.zeros(n_hidden, dtype=DTYPE),
            "W2": (rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden)).astype(
                DTYPE
            ),
            "b2": np.zeros(n_out, dtype=DTYPE),
        }

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The logits, and what the backward pass needs (input, hidden activations)."""
        p = self.params
        hidden = x @ p["W1"] + p["b1"]
        np.maximum(hidden, 0, out=hidden)  # ReLU in place
        logits = hidden @ p["W2"] + p["b2"]
        return logits, (x, hidden)

    def backward(
        self, grad_logits: np.ndarray, cache: tuple[np.ndarray, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Backpropagate d(loss)/d(logits) to the gradients of the parameters."""
        x, hidden = cache
        W2 = self.params["W2"]
        grad_hidden = grad_logits @ W2.T
        grad_hidden[hidden <= 0] = 0  # ReLU': the units that were off pass nothing back
        return {
            "W2": hidden.T @ grad_logits,
            "b2": grad_logits.sum(axis=0),
            "W1": x.T @ grad_hidden,
            "b1": grad_hidden.sum(axis=0),
        }

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0].argmax(axis=1)


class SGDMomentum:
    """``v = momentum * v - lr * (g + weight_decay * w);  w += v`` (float32 in place)."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float):
        self.params = params
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = {name: np.zeros_like(w) for name, w in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        for name, w in self.params.items():
            g = grads[name]
            if self.weight_decay and name.startswith("W"):
                g = g + self.weight_decay * w
            v = self.velocity[name]
            v *= self.momentum
            v -= self.lr * g
            w += v


# --------------------------------------------------------------------------- the loss


def logitkit_loss_and_grad(logits: np.ndarray, labels: np.ndarray):
    """Mean cross-entropy and d(loss)/d(logits), fused in one pass by logitkit."""
    return logitkit.cross_entropy(logits, labels, return_grad=True)


def numpy_loss_and_grad(logits: np.ndarray, labels: np.ndarray):
    """The same step in plain NumPy, written the careful way."""
    n = logits.shape[0]
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)  # every exponent <= 0
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(total[:, 0]) - shifted[rows, labels])  # -log p[label]
    grad = exp / total  # softmax
    grad[rows, labels] -= 1  # p - onehot
    grad /= n
    return loss, grad


# --------------------------------------------------------------------------- training


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float


@dataclass
class Result:
    history: list[EpochStats] = field(default_factory=list)
    # (logits, labels) of every minibatch of the last epoch, for the timing comparison
    last_epoch_batches: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    train_seconds: float = 0.0

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else float("nan")


def accuracy(model: MLP, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x) == y))


def train(
    epochs: int = 20,
    batch_size: int = 32,
    seed: int = 0,
    hidden: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    log=print,
) -> Result:
    """Train the MLP; ``log`` receives one line per epoch (pass ``None`` for silence)."""
    X_train, X_test, y_train, y_test = load_data()
    n_classes = int(y_train.max()) + 1
    rng = np.random.default_rng(seed)
    model = MLP(X_train.shape[1], hidden, n_classes, rng)
    optimizer = SGDMomentum(model.params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    result = Result()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X_train))
        last_epoch = epoch == epochs
        loss_sum = 0.0
        for begin in range(0, len(order), batch_size):
            idx = order[begin : begin + batch_size]
            x, y = X_train[idx], y_train[idx]
            logits, cache = model.forward(x)
            # The whole softmax + cross-entropy layer, forward and backward, in one call:
            loss, grad_logits = logitkit.cross_entropy(logits, y, return_grad=True)
            optimizer.step(model.backward(grad_logits, cache))
            loss_sum += float(loss) * len(idx)
            if last_epoch:
                result.last_epoch_batches.append((logits, y))
        stats = EpochStats(
            epoch=epoch,
            loss=loss_sum / len(order),
            train_accuracy=accuracy(model, X_train, y_train),
            test_accuracy=accuracy(model, X_test, y_test),
        )
        result.history.append(stats)
        if log is not None:
            log(
                f"epoch {epoch:{len(str(epochs))}d}/{epochs}  loss {stats.loss:.4f}  "
                f"train {stats.train_accuracy:6.2%}  test {stats.test_accuracy:6.2%}"
            )
    result.train_seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- timing


def check_same(batches) -> tuple[float, float]:
    """Largest |loss| and |grad| differences between logitkit and NumPy; asserts allclose."""
    max_loss_diff = max_grad_diff = 0.0
    for logits, labels in batches:
        loss_lk, grad_lk = logitkit_loss_and_grad(logits, labels)
        loss_np, grad_np = numpy_loss_and_grad(logits, labels)
        assert grad_lk.dtype == grad_np.dtype == DTYPE, (grad_lk.dtype, grad_np.dtype)
        assert np.allclose(loss_lk, loss_np, rtol=1e-5, atol=1e-6), (loss_lk, loss_np)
        assert np.allclose(grad_lk, grad_np, rtol=1e-4, atol=1e-7)
        max_loss_diff = max(max_loss_diff, abs(float(loss_lk) - float(loss_np)))
        max_grad_diff = max(max_grad_diff, float(np.max(np.abs(grad_lk - grad_np))))
    return max_loss_diff, max_grad_diff


def time_per_call(batches, repeats: int) -> dict[str, float]:
    """Median over ``repeats`` sweeps of the batches, in microseconds per call.

    Each sweep calls one implementation once on every batch; the two implementations
    alternate sweeps (and which goes first), so that machine noise hits both alike.
    """
    impls = {"logitkit": logitkit_loss_and_grad, "numpy": numpy_loss_and_grad}
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for fn in impls.values():  # warm-up
        for logits, labels in batches:
            fn(logits, labels)
    names = list(impls)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            fn = impls[name]
            t0 = time.perf_counter()
            for logits, labels in batches:
                fn(logits, labels)
            samples[name].append((time.perf_counter() - t0) / len(batches))
    return {name: statistics.median(s) * 1e6 for name, s in samples.items()}


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a 64-128-10 NumPy MLP on scikit-learn's digits with "
        "logitkit.cross_entropy computing the loss and its gradient."
    )
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and shuffling")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    parser.add_argument(
        "--repeats", type=int, default=200, help="timing sweeps over the batches (default 200)"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "hidden", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print(
        f"logitkit {logitkit.__version__} ({logitkit.capabilities()['active']}), "
        f"numpy {np.__version__}; digits, MLP 64-{args.hidden}-10, float32, "
        f"batch {args.batch_size}, seed {args.seed}"
    )
    result = train(
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        hidden=args.hidden,
        lr=args.lr,
        log=None if args.quiet else print,
    )
    last = result.history[-1]
    print(
        f"after {last.epoch} epochs ({result.train_seconds:.2f} s): loss {last.loss:.4f}, "
        f"train accuracy {last.train_accuracy:.2%}, test accuracy {last.test_accuracy:.2%}"
    )

    batches = result.last_epoch_batches
    loss_diff, grad_diff = check_same(batches)
    times = time_per_call(batches, args.repeats)
    shapes = sorted({logits.shape for logits, _ in batches}, reverse=True)
    print(
        f"\nloss + gradient step on the {len(batches)} batches of the last epoch "
        f"(logits {', '.join('x'.join(map(str, s)) for s in shapes)}), "
        f"median of {args.repeats} sweeps, per call:"
    )
    print(f"  logitkit.cross_entropy(return_grad=True)  {times['logitkit']:8.2f} us")
    print(f"  NumPy softmax + NLL + (p - onehot)/N      {times['numpy']:8.2f} us")
    print(f"  speed-up {times['numpy'] / times['logitkit']:.1f}x")
    print(
        f"  same results: max |loss difference| {loss_diff:.1e}, "
        f"max |gradient difference| {grad_diff:.1e} (allclose)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
