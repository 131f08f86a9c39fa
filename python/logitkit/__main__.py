"""``python -m logitkit``: version, SIMD target, a correctness check and a speed table."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

import logitkit


def _numpy_softmax(x: NDArray[Any], out: NDArray[Any]) -> NDArray[Any]:
    np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def _numpy_log_softmax(x: NDArray[Any], out: NDArray[Any]) -> NDArray[Any]:
    np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
    return out


def _numpy_logsumexp(x: NDArray[Any]) -> NDArray[Any]:
    m = x.max(axis=-1, keepdims=True)
    result: NDArray[Any] = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    return result


def _numpy_cross_entropy_grad(
    x: NDArray[Any], labels: NDArray[Any], grad: NDArray[Any]
) -> tuple[float, NDArray[Any]]:
    """Mean cross-entropy and its gradient (p - onehot) / N, the NumPy way."""
    _numpy_softmax(x, grad)
    rows = np.arange(x.shape[0])
    loss = float(-np.log(grad[rows, labels]).mean())
    grad[rows, labels] -= 1
    grad /= x.shape[0]
    return loss, grad


def _check() -> float:
    """Compare against float64 NumPy; return the worst error seen."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1000)) * 4
    worst = 0.0
    for dtype in (np.float32, np.float64):
        xs = x.astype(dtype)
        ref = _numpy_softmax(x, np.empty_like(x))
        worst = max(worst, float(np.max(np.abs(logitkit.softmax(xs) - ref))))
        ref = _numpy_log_softmax(x, np.empty_like(x))
        worst = max(worst, float(np.max(np.abs(logitkit.log_softmax(xs) - ref))))
        ref = _numpy_logsumexp(x)
        worst = max(worst, float(np.max(np.abs(logitkit.logsumexp(xs) - ref))))
        labels = np.asarray(rng.integers(0, x.shape[1], size=x.shape[0]))
        ref_loss, ref_grad = _numpy_cross_entropy_grad(x, labels, np.empty_like(x))
        loss, grad = logitkit.cross_entropy(xs, labels, return_grad=True)
        worst = max(worst, abs(float(loss) - ref_loss), float(np.max(np.abs(grad - ref_grad))))
    stable = logitkit.softmax(np.array([123, 456, 789]))
    if not np.allclose(stable, [0, 0, 1]):
        raise SystemExit(f"softmax([123, 456, 789]) gave {stable}")
    return worst


def _time(fn: Callable[[], Any], budget: float = 0.15) -> float:
    fn()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        fn()
        runs += 1
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(max(1, runs // 5)):
            fn()
        best = min(best, (time.perf_counter() - t0) / max(1, runs // 5))
    return best * 1e3


def main() -> int:
    caps = logitkit.capabilities()
    print(f"logitkit {logitkit.__version__}  SIMD target: {caps['active']} "
          f"(supported: {', '.join(caps['supported'])})")
    worst = _check()
    print(f"check against float64 NumPy: max abs error {worst:.1e}  "
          f"{'ok' if worst < 1e-5 else 'FAILED'}")
    if worst >= 1e-5:
        return 1
    rng = np.random.default_rng(1)
    print(f"\n{'float32, last axis':<30}{'logitkit ms':>12}{'NumPy ms':>10}{'speed-up':>10}")
    for shape in [(8192, 10), (4096, 1000), (64, 128256)]:
        x = rng.standard_normal(shape).astype(np.float32)
        labels = rng.integers(0, shape[1], size=shape[0])
        out = np.empty_like(x)
        for name, ours, theirs in [
            ("softmax", lambda: logitkit.softmax(x, out=out), lambda: _numpy_softmax(x, out)),
            ("log_softmax", lambda: logitkit.log_softmax(x, out=out),
             lambda: _numpy_log_softmax(x, out)),
            ("logsumexp", lambda: logitkit.logsumexp(x), lambda: _numpy_logsumexp(x)),
            ("cross_entropy+grad",
             lambda: logitkit.cross_entropy(x, labels, return_grad=True, grad_out=out),
             lambda: _numpy_cross_entropy_grad(x, labels, out)),
        ]:
            a, b = _time(ours), _time(theirs)
            label = f"{name} {shape[0]}x{shape[1]}"
            print(f"{label:<30}{a:>12.3f}{b:>10.3f}{b / a:>9.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
