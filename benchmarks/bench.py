#!/usr/bin/env python3
"""Time logitkit against NumPy, SciPy, PyTorch and JAX, next to the memory roof.

Every row is reported twice: in milliseconds, and as a multiple of ``np.copyto``
of the same array timed in the same run ("x memcpy").  A copy reads the array
once and writes it once, which is what a one-pass softmax must do too, so a
softmax near 1.0x runs at memory speed; a reduction such as logsumexp only
reads, so its floor is lower still.  The cross-entropy rows are the loss of
integer class labels, mean over the samples: ``cross_entropy`` alone is a
reduction, ``cross_entropy+grad`` (loss and gradient, a training step's work)
reads the logits and writes a gradient as large, like softmax.  The rest of the
family is timed on fewer arrays: sigmoid, log_sigmoid and binary_cross_entropy
(float targets in [0, 1], mean over all elements) on 4096x1000 and 4096x80,
entropy and kl_divergence (KL(P || Q) averaged over the rows, the gradient in
Q's logits) on 4096x1000; softmax and cross_entropy+grad also on float16 and
bfloat16 arrays (bfloat16 as ml_dtypes.bfloat16), checked against float64 of the
half-precision values.  An implementation that rejects an input (a dtype it does
not take yet) is listed as skipped, with the reason in a note.  Absolute times
mean little on a shared machine: compare ratios.

Method (see the "Performance method" of the design notes): one process, a
warm-up, outputs preallocated wherever an API takes ``out=``, the median of
many samples; tiny calls are timed in batches.  For each input array the
memcpy and all the implementations are measured in interleaved rounds, so
that a slow patch of the machine hits them all alike.  Every implementation's
result is first checked against a float64 reference; a row whose result is off
is marked "!" and explained in a note.

Threads: logitkit (``logitkit.set_workers``) and PyTorch (``torch.set_num_threads``) run
on ``--workers`` threads, one by default, so that every comparison is at the same
thread count; NumPy and SciPy compute these on one thread, and so does JAX (set at
import).  PyTorch and JAX are optional.

``--scaling`` prints, instead of those tables, how logitkit and PyTorch scale with the
thread count (1, 2, ... up to the usable cores, or ``--scaling-workers``): softmax and
cross-entropy with gradient on three arrays, the logsumexp of one long row, and a
small softmax (the per-call cost). For each count N, logitkit with N workers and
PyTorch with N threads are timed in the same interleaved rounds, with a one-thread
memcpy of the same array.  On several threads, a round that follows PyTorch's waits
until its OpenMP threads, which spin for a while after each call, have gone to sleep.

Examples::

    python benchmarks/bench.py                 # everything (about four minutes)
    python benchmarks/bench.py --quick         # smoke run
    python benchmarks/bench.py --workers 2     # logitkit and PyTorch on two threads
    python benchmarks/bench.py --scaling --markdown   # the thread-scaling table
    python benchmarks/bench.py --shapes 64x128256 --ops softmax --impls logitkit,numpy
    python benchmarks/bench.py --ops cross_entropy,cross_entropy+grad
    python benchmarks/bench.py --dtypes float16,bfloat16 --impls logitkit,torch
    python benchmarks/bench.py --markdown      # table for the README

To add a row, write a factory ``factory(x, axis) -> zero-argument callable``
(allocate its outputs in the factory, not in the callable) and append
``(operation, implementation, factory)`` to ``IMPLEMENTATIONS``; a new
operation also needs a float64 reference in ``REFERENCES``, and the arrays to
run on name it in their ``Case.ops``.  Loss rows take their labels from
``class_labels(x, axis)`` (binary targets from ``binary_targets(x)``, the other
distribution of a divergence from ``target_logits(x)``), so that all of them,
and the reference, see the same ones; an operation with a gradient returns
``(loss, gradient)``, and so does its reference.  A factory raises ``Skip`` for
a case it cannot run, ``NotApplicable`` for one its library has no natural
way to compute.
"""

from __future__ import annotations

import argparse
import functools
import math
import operator
import os
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# JAX reads its thread settings when it is first imported: keep it on one core.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np
import scipy
import scipy.special


def _optional_import(name: str) -> tuple[Any, str | None]:
    """Import a module, or return (None, reason) when it is not usable."""
    try:
        return __import__(name), None
    except Exception as exc:  # ImportError, or a broken install
        return None, f"{type(exc).__name__}: {exc}"


logitkit, _LOGITKIT_MISSING = _optional_import("logitkit")
torch, _TORCH_MISSING = _optional_import("torch")
jax, _JAX_MISSING = _optional_import("jax")
ml_dtypes, _ML_DTYPES_MISSING = _optional_import("ml_dtypes")  # NumPy's bfloat16

# bfloat16 as NumPy spells it (None without ml_dtypes: its cases are then left out).
BFLOAT16: type | None = ml_dtypes.bfloat16 if ml_dtypes is not None else None
HALF_DTYPES = {np.dtype(np.float16)} | ({np.dtype(BFLOAT16)} if BFLOAT16 is not None else set())

if torch is not None:
    import torch.nn.functional

    torch.set_num_threads(1)
if jax is not None:
    import jax.numpy as jnp
    import jax.scipy.special

    jax.config.update("jax_enable_x64", True)  # else float64 input becomes float32

MISSING = {
    name: reason
    for name, reason in [
        ("logitkit", _LOGITKIT_MISSING),
        ("torch", _TORCH_MISSING),
        ("jax", _JAX_MISSING),
    ]
    if reason
}


# --------------------------------------------------------------------------- cases


# The operations each input array is timed with (Case.ops).
SOFTMAX_FAMILY = ("softmax", "log_softmax", "logsumexp", "cross_entropy", "cross_entropy+grad")
BINARY = ("sigmoid", "log_sigmoid", "binary_cross_entropy", "binary_cross_entropy+grad")
DIVERGENCE = ("entropy", "kl_divergence", "kl_divergence+grad")
HALF = ("softmax", "cross_entropy+grad")  # what float16 and bfloat16 arrays are timed with


@dataclass(frozen=True)
class Case:
    """One input array: shape, dtype, the axis the operations reduce over, and the
    operations to time on it."""

    shape: tuple[int, ...]
    dtype: type = np.float32
    axis: int = -1
    ops: tuple[str, ...] = SOFTMAX_FAMILY

    @property
    def shape_label(self) -> str:
        return "x".join(map(str, self.shape))

    @property
    def dtype_name(self) -> str:
        return np.dtype(self.dtype).name

    @property
    def kind_label(self) -> str:
        return f"{self.dtype_name}, axis {self.axis}"

    def make_input(self) -> np.ndarray:
        """Deterministic logits of a realistic spread (no underflow to subnormals).

        float16 and bfloat16 arrays are the float32 ones of the same shape, rounded.
        """
        rng = np.random.default_rng(sum(self.shape))
        native = self.dtype in (np.float32, np.float64)
        x = rng.standard_normal(self.shape, dtype=self.dtype if native else np.float32)
        x *= 3.0
        return x if native else x.astype(self.dtype)


CASES = [
    Case((8192, 10)),
    Case((4096, 1000), ops=SOFTMAX_FAMILY + BINARY + DIVERGENCE),
    Case((512, 32000)),
    Case((64, 128256)),  # an LLM vocabulary
    Case((16, 1048576)),
    Case((4096, 1000), np.float64),
    Case((1000, 4096), axis=0),  # a non-last axis: strided reduction
    Case((4096, 80), ops=BINARY),  # multi-label: 80 classes (COCO)
    # Half precision: stored in 16 bits, computed (by logitkit) in float32.
    Case((4096, 1000), np.float16, ops=HALF),
    Case((64, 128256), np.float16, ops=HALF),
    *(
        [Case((4096, 1000), BFLOAT16, ops=HALF), Case((64, 128256), BFLOAT16, ops=HALF)]
        if BFLOAT16 is not None
        else []
    ),
]

# The per-call overhead of tiny inputs, reported in microseconds per call:
# (operation, input array), one column each.
LATENCIES = [
    ("softmax", Case((32, 10))),
    ("cross_entropy+grad", Case((128, 10))),  # a whole training step of a small classifier
]

# The thread-scaling table (--scaling): (operation, input array), timed with logitkit and
# PyTorch at each thread count. cross_entropy+grad is the loss and its gradient (PyTorch:
# forward and .backward()); the last row is the per-call cost of a tiny call.
SCALING_IMPLS = ("logitkit", "torch")
SCALING = [
    *(
        (op, Case(shape))
        for op in ("softmax", "cross_entropy+grad")
        for shape in [(4096, 1000), (64, 128256), (512, 32000)]
    ),
    ("logsumexp", Case((1, 1 << 24))),  # one long row: split across threads, then merged
    ("softmax", Case((32, 10))),
]
SCALING_KINDS = sorted({case.kind_label for _, case in SCALING})


# ------------------------------------------------------------------ implementations

Factory = Callable[[np.ndarray, int], Callable[[], Any]]


class Skip(Exception):
    """Raised by a factory that cannot run this case; the message says why.

    The row is listed as skipped, with a note. (An implementation whose first call
    raises, such as one that does not take the dtype yet, is reported the same way.)
    """


class NotApplicable(Skip):
    """Raised by a factory for a case its library has no natural way to compute (NumPy
    on bfloat16): the row is left out of the table, with one note."""


def numpy_dtypes(factory: Factory) -> Factory:
    """A NumPy or SciPy factory, not run on bfloat16: NumPy has no bfloat16 arithmetic
    of its own (ml_dtypes' loops round every step to bfloat16, sums included)."""

    @functools.wraps(factory)
    def wrapped(x: np.ndarray, axis: int) -> Callable[[], Any]:
        if BFLOAT16 is not None and x.dtype == BFLOAT16:
            raise NotApplicable("no bfloat16 arithmetic in NumPy")
        return factory(x, axis)

    return wrapped


def to_torch(x: np.ndarray) -> Any:
    """The tensor on x's memory; bfloat16 (ml_dtypes) goes through its 16 bits."""
    if BFLOAT16 is not None and x.dtype == BFLOAT16:
        return torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def to_numpy(value: Any) -> np.ndarray:
    """A result as a NumPy array: torch tensors (bfloat16 ones too), JAX arrays, scalars."""
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype == torch.bfloat16 and BFLOAT16 is not None:
            return value.view(torch.int16).numpy().view(BFLOAT16)
        return value.numpy()
    return np.asarray(value)


def _reduced_shape(x: np.ndarray, axis: int, keepdims: bool = False) -> tuple[int, ...]:
    shape = list(x.shape)
    if keepdims:
        shape[axis] = 1
    else:
        del shape[axis]
    return tuple(shape)


def class_labels(x: np.ndarray, axis: int) -> np.ndarray:
    """Integer labels in [0, C) for the logits ``x``, one per sample (x's shape without axis).

    Deterministic: every factory and the reference that ask for them get the same ones.
    """
    rng = np.random.default_rng(sum(x.shape) + 1)
    return rng.integers(0, x.shape[axis], size=_reduced_shape(x, axis), dtype=np.int64)


def label_positions(labels: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
    """The fancy index of each sample's labelled logit: ``x[label_positions(...)]``."""
    index = list(np.indices(labels.shape, sparse=True))
    index.insert(axis % (labels.ndim + 1), labels)
    return tuple(index)


def binary_targets(x: np.ndarray) -> np.ndarray:
    """Float targets in [0, 1), one per logit, in x's dtype (deterministic, like class_labels)."""
    rng = np.random.default_rng(sum(x.shape) + 2)
    return rng.random(x.shape, dtype=np.float32).astype(x.dtype)


def target_logits(x: np.ndarray) -> np.ndarray:
    """The logits of P, the target of kl_divergence(P, Q) where x holds Q's (deterministic)."""
    rng = np.random.default_rng(sum(x.shape) + 3)
    p = rng.standard_normal(x.shape, dtype=np.float32)
    p *= 3.0
    return p.astype(x.dtype)


# memcpy: the memory roof.
def memcpy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    dst = np.empty_like(x)
    return functools.partial(np.copyto, dst, x)


# logitkit, with preallocated outputs.
def _logitkit_function(name: str) -> Callable[..., Any]:
    fn = getattr(logitkit, name, None)
    if fn is None:
        raise Skip(f"this logitkit has no {name}")
    return fn


def logitkit_elementwise(name: str) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        fn = _logitkit_function(name)
        out = np.empty_like(x)
        return lambda: fn(x, axis, out=out)

    return factory


def logitkit_pointwise(name: str) -> Factory:
    """sigmoid and log_sigmoid: elementwise, no axis."""

    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        fn = _logitkit_function(name)
        out = np.empty_like(x)
        return lambda: fn(x, out=out)

    return factory


def logitkit_binary_cross_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    fn = _logitkit_function("binary_cross_entropy")
    return functools.partial(fn, x, binary_targets(x))


def logitkit_binary_cross_entropy_grad(x: np.ndarray, axis: int) -> Callable[[], Any]:
    fn = _logitkit_function("binary_cross_entropy")
    grad = np.empty_like(x)
    return functools.partial(fn, x, binary_targets(x), return_grad=True, grad_out=grad)


def logitkit_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    return functools.partial(_logitkit_function("entropy"), x, axis=axis)


# KL(P || Q) averaged over the rows (the distillation loss), differentiated in Q's logits.
def logitkit_kl_divergence(with_grad: bool) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        fn = _logitkit_function("kl_divergence")
        p = target_logits(x)
        return functools.partial(fn, p, x, axis=axis, reduction="mean", return_grad=with_grad)

    return factory


def logitkit_logsumexp(x: np.ndarray, axis: int) -> Callable[[], Any]:
    fn = _logitkit_function("logsumexp")
    out = np.empty(_reduced_shape(x, axis), x.dtype)
    return lambda: fn(x, axis, out=out)


def logitkit_cross_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    fn = _logitkit_function("cross_entropy")
    return functools.partial(fn, x, class_labels(x, axis), axis=axis)


def logitkit_cross_entropy_grad(x: np.ndarray, axis: int) -> Callable[[], Any]:
    fn = _logitkit_function("cross_entropy")
    grad = np.empty_like(x)
    return functools.partial(
        fn, x, class_labels(x, axis), axis=axis, return_grad=True, grad_out=grad
    )


# NumPy, written the way a careful NumPy user would: max-shift, in-place ufuncs,
# every buffer allocated once.
def numpy_softmax(x: np.ndarray, axis: int) -> Callable[[], Any]:
    out = np.empty_like(x)
    m = np.empty(_reduced_shape(x, axis, keepdims=True), x.dtype)
    s = np.empty_like(m)

    def run() -> np.ndarray:
        np.max(x, axis=axis, keepdims=True, out=m)
        np.subtract(x, m, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=axis, keepdims=True, out=s)
        np.divide(out, s, out=out)
        return out

    return run


def numpy_log_softmax(x: np.ndarray, axis: int) -> Callable[[], Any]:
    out = np.empty_like(x)
    tmp = np.empty_like(x)
    m = np.empty(_reduced_shape(x, axis, keepdims=True), x.dtype)
    s = np.empty_like(m)

    def run() -> np.ndarray:
        np.max(x, axis=axis, keepdims=True, out=m)
        np.subtract(x, m, out=out)  # x - m
        np.exp(out, out=tmp)
        np.sum(tmp, axis=axis, keepdims=True, out=s)
        np.log(s, out=s)
        np.subtract(out, s, out=out)  # x - m - log(sum(exp(x - m)))
        return out

    return run


def numpy_logsumexp(x: np.ndarray, axis: int) -> Callable[[], Any]:
    tmp = np.empty_like(x)
    m = np.empty(_reduced_shape(x, axis, keepdims=True), x.dtype)
    s = np.empty_like(m)

    def run() -> np.ndarray:
        np.max(x, axis=axis, keepdims=True, out=m)
        np.subtract(x, m, out=tmp)
        np.exp(tmp, out=tmp)
        np.sum(tmp, axis=axis, keepdims=True, out=s)
        np.log(s, out=s)
        np.add(s, m, out=s)
        return s

    return run


def numpy_cross_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    logsumexp = numpy_logsumexp(x, axis)  # into a buffer of its own, with keepdims
    picked = np.expand_dims(class_labels(x, axis), axis)

    def run() -> np.floating:
        losses = logsumexp()
        losses -= np.take_along_axis(x, picked, axis)  # logsumexp - the labelled logit
        return losses.mean()

    return run


def numpy_cross_entropy_grad(x: np.ndarray, axis: int) -> Callable[[], Any]:
    labels = class_labels(x, axis)
    picked = np.expand_dims(labels, axis)
    positions = label_positions(labels, axis)
    n = labels.size
    grad = np.empty_like(x)
    # Per-row values of float16 input in float32: a row's sum times N passes 65504.
    m = np.empty(_reduced_shape(x, axis, keepdims=True), np.result_type(x.dtype, np.float32))
    s = np.empty_like(m)
    losses = np.empty_like(m)

    def run() -> tuple[np.floating, np.ndarray]:
        np.max(x, axis=axis, keepdims=True, out=m)
        np.subtract(x, m, out=grad)
        np.exp(grad, out=grad)
        np.sum(grad, axis=axis, keepdims=True, out=s)
        np.log(s, out=losses)
        np.add(losses, m, out=losses)
        np.subtract(losses, np.take_along_axis(x, picked, axis), out=losses)
        np.multiply(s, n, out=s)
        np.reciprocal(s, out=s)
        np.multiply(grad, s, out=grad)  # softmax / N
        grad[positions] -= 1 / n  # - onehot / N
        loss = losses.mean()
        return (loss if loss.dtype == x.dtype else loss.astype(x.dtype)), grad

    return run


# SciPy: no out= in its API.
def scipy_op(name: str) -> Factory:
    fn = getattr(scipy.special, name)
    return lambda x, axis: functools.partial(fn, x, axis=axis)


# SciPy's ufuncs take out=.
def scipy_ufunc(name: str) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        fn = getattr(scipy.special, name)
        out = np.empty_like(x)
        return functools.partial(fn, x, out=out)

    return factory


# Binary cross-entropy with SciPy's log_expit and expit and NumPy arithmetic, buffers
# allocated once: the loss is (1 - y) z - log(sigmoid(z)), the gradient sigmoid(z) - y.
def scipy_binary_cross_entropy(with_grad: bool) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        y = binary_targets(x)
        n = x.size
        losses = np.empty_like(x)
        tmp = np.empty_like(x)
        grad = np.empty_like(x) if with_grad else None

        def run() -> Any:
            np.multiply(y, x, out=tmp)
            np.subtract(x, tmp, out=tmp)  # (1 - y) z
            scipy.special.log_expit(x, out=losses)
            np.subtract(tmp, losses, out=losses)
            loss = losses.mean()
            if grad is None:
                return loss
            scipy.special.expit(x, out=grad)
            np.subtract(grad, y, out=grad)
            np.multiply(grad, x.dtype.type(1 / n), out=grad)
            return loss, grad

        return run

    return factory


# scipy.stats.entropy of the probabilities: with one argument the entropy, with two
# KL(P || Q) (it normalizes them again). No out=, no gradient.
def scipy_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    import scipy.stats

    def run() -> np.ndarray:
        return scipy.stats.entropy(scipy.special.softmax(x, axis=axis), axis=axis)

    return run


def scipy_kl_divergence(x: np.ndarray, axis: int) -> Callable[[], Any]:
    import scipy.stats

    p = target_logits(x)

    def run() -> np.floating:
        pk, qk = scipy.special.softmax(p, axis=axis), scipy.special.softmax(x, axis=axis)
        return scipy.stats.entropy(pk, qk, axis=axis).mean()

    return run


# PyTorch on the same memory (from_numpy), with out= preallocated.
def torch_op(name: str) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        fn = getattr(torch, name)
        t = to_torch(x)
        keep_all = name in ("softmax", "log_softmax")
        out = torch.empty(x.shape if keep_all else _reduced_shape(x, axis), dtype=t.dtype)
        return functools.partial(fn, t, axis, out=out)

    return factory


def torch_pointwise(name: str) -> Factory:
    """torch.sigmoid, and log_sigmoid: torch.nn.functional.logsigmoid has no out=, the
    function it calls (torch._C._nn.log_sigmoid) has; without it, the public one."""

    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        t = to_torch(x)
        if name == "sigmoid":
            return functools.partial(torch.sigmoid, t, out=torch.empty_like(t))
        raw = getattr(getattr(torch._C, "_nn", None), "log_sigmoid", None)
        if raw is not None:
            try:
                out = torch.empty_like(t)
                raw(t, out=out)
                return functools.partial(raw, t, out=out)
            except (TypeError, RuntimeError):
                pass
        return functools.partial(torch.nn.functional.logsigmoid, t)

    return factory


def torch_binary_cross_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    t, target = to_torch(x), to_torch(binary_targets(x))
    return functools.partial(torch.nn.functional.binary_cross_entropy_with_logits, t, target)


def torch_binary_cross_entropy_grad(x: np.ndarray, axis: int) -> Callable[[], Any]:
    leaf = to_torch(x).requires_grad_()
    target = to_torch(binary_targets(x))

    def run() -> tuple[Any, Any]:
        leaf.grad = None
        loss = torch.nn.functional.binary_cross_entropy_with_logits(leaf, target)
        loss.backward()
        return loss.detach(), leaf.grad

    return run


def torch_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    t = to_torch(x)

    def run() -> Any:
        return -(torch.softmax(t, axis) * torch.log_softmax(t, axis)).sum(axis)

    return run


def _torch_kl_divergence(p: Any, q: Any, axis: int) -> Any:
    """kl_div(log Q, log P, log_target=True): KL(P || Q); "batchmean" divides the sum by
    the rows (the classes moved last, the rest flattened), logitkit's reduction="mean"."""
    p, q = p.movedim(axis, -1).flatten(0, -2), q.movedim(axis, -1).flatten(0, -2)
    log_p, log_q = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
    return torch.nn.functional.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


def torch_kl_divergence(x: np.ndarray, axis: int) -> Callable[[], Any]:
    p, q = to_torch(target_logits(x)), to_torch(x)
    return functools.partial(_torch_kl_divergence, p, q, axis)


def torch_kl_divergence_grad(x: np.ndarray, axis: int) -> Callable[[], Any]:
    p, leaf = to_torch(target_logits(x)), to_torch(x).requires_grad_()

    def run() -> tuple[Any, Any]:
        leaf.grad = None
        loss = _torch_kl_divergence(p, leaf, axis)
        loss.backward()
        return loss.detach(), leaf.grad

    return run


# PyTorch's losses want the classes on dim 1 (for axis 0 that is a transposed, strided
# view, which they take as it is) and int64 targets; no out= here.
def torch_cross_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    t = to_torch(x).movedim(axis, 1)
    target = torch.from_numpy(class_labels(x, axis))
    return functools.partial(torch.nn.functional.cross_entropy, t, target)


def torch_cross_entropy_grad(x: np.ndarray, axis: int) -> Callable[[], Any]:
    leaf = to_torch(x).requires_grad_()
    target = torch.from_numpy(class_labels(x, axis))

    def run() -> tuple[Any, Any]:
        leaf.grad = None  # as optimizer.zero_grad() leaves it
        loss = torch.nn.functional.cross_entropy(leaf.movedim(axis, 1), target)
        loss.backward()
        return loss.detach(), leaf.grad

    return run


# JAX: jit-compiled, on a device array, waiting for the result.
def jax_op(path: str) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        fn = operator.attrgetter(path)(jax)
        compiled = jax.jit(functools.partial(fn, axis=axis))
        xd = jax.device_put(x)
        return lambda: compiled(xd).block_until_ready()

    return factory


def _jax_cross_entropy(x: Any, labels: Any, axis: int) -> Any:
    """The loss as optax writes it: logsumexp minus the labelled logit (no log_softmax array)."""
    picked = jnp.take_along_axis(x, jnp.expand_dims(labels, axis), axis)
    return jnp.mean(jax.nn.logsumexp(x, axis) - jnp.squeeze(picked, axis))


def jax_cross_entropy(with_grad: bool) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        loss = functools.partial(_jax_cross_entropy, axis=axis)
        compiled = jax.jit(jax.value_and_grad(loss) if with_grad else loss)
        xd, labels = jax.device_put(x), jax.device_put(class_labels(x, axis))
        return lambda: jax.block_until_ready(compiled(xd, labels))

    return factory


def jax_pointwise(path: str) -> Factory:
    """jax.nn.sigmoid and jax.nn.log_sigmoid (no axis)."""

    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        compiled = jax.jit(operator.attrgetter(path)(jax))
        xd = jax.device_put(x)
        return lambda: compiled(xd).block_until_ready()

    return factory


def _jax_binary_cross_entropy(x: Any, y: Any) -> Any:
    """optax.sigmoid_binary_cross_entropy, averaged."""
    return jnp.mean(-y * jax.nn.log_sigmoid(x) - (1 - y) * jax.nn.log_sigmoid(-x))


def jax_binary_cross_entropy(with_grad: bool) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        loss = _jax_binary_cross_entropy
        compiled = jax.jit(jax.value_and_grad(loss) if with_grad else loss)
        xd, yd = jax.device_put(x), jax.device_put(binary_targets(x))
        return lambda: jax.block_until_ready(compiled(xd, yd))

    return factory


def jax_entropy(x: np.ndarray, axis: int) -> Callable[[], Any]:
    def entropy(z: Any) -> Any:
        return -jnp.sum(jax.nn.softmax(z, axis) * jax.nn.log_softmax(z, axis), axis)

    compiled = jax.jit(entropy)
    xd = jax.device_put(x)
    return lambda: compiled(xd).block_until_ready()


def _jax_kl_divergence(q: Any, p: Any, axis: int) -> Any:
    """optax.kl_divergence_with_log_targets(log Q, log P), averaged over the rows."""
    log_p, log_q = jax.nn.log_softmax(p, axis), jax.nn.log_softmax(q, axis)
    return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis))


def jax_kl_divergence(with_grad: bool) -> Factory:
    def factory(x: np.ndarray, axis: int) -> Callable[[], Any]:
        loss = functools.partial(_jax_kl_divergence, axis=axis)
        compiled = jax.jit(jax.value_and_grad(loss) if with_grad else loss)
        qd, pd = jax.device_put(x), jax.device_put(target_logits(x))
        return lambda: jax.block_until_ready(compiled(qd, pd))

    return factory


# (operation, implementation, factory): the rows of the table, in display order.
IMPLEMENTATIONS: list[tuple[str, str, Factory]] = [
    ("softmax", "logitkit", logitkit_elementwise("softmax")),
    ("softmax", "numpy", numpy_dtypes(numpy_softmax)),
    ("softmax", "scipy", numpy_dtypes(scipy_op("softmax"))),
    ("softmax", "torch", torch_op("softmax")),
    ("softmax", "jax", jax_op("nn.softmax")),
    ("log_softmax", "logitkit", logitkit_elementwise("log_softmax")),
    ("log_softmax", "numpy", numpy_log_softmax),
    ("log_softmax", "scipy", scipy_op("log_softmax")),
    ("log_softmax", "torch", torch_op("log_softmax")),
    ("log_softmax", "jax", jax_op("nn.log_softmax")),
    ("logsumexp", "logitkit", logitkit_logsumexp),
    ("logsumexp", "numpy", numpy_logsumexp),
    ("logsumexp", "scipy", scipy_op("logsumexp")),
    ("logsumexp", "torch", torch_op("logsumexp")),
    ("logsumexp", "jax", jax_op("scipy.special.logsumexp")),
    ("cross_entropy", "logitkit", logitkit_cross_entropy),
    ("cross_entropy", "numpy", numpy_cross_entropy),
    ("cross_entropy", "torch", torch_cross_entropy),
    ("cross_entropy", "jax", jax_cross_entropy(with_grad=False)),
    ("cross_entropy+grad", "logitkit", logitkit_cross_entropy_grad),
    ("cross_entropy+grad", "numpy", numpy_dtypes(numpy_cross_entropy_grad)),
    ("cross_entropy+grad", "torch", torch_cross_entropy_grad),
    ("cross_entropy+grad", "jax", jax_cross_entropy(with_grad=True)),
    ("sigmoid", "logitkit", logitkit_pointwise("sigmoid")),
    ("sigmoid", "scipy", numpy_dtypes(scipy_ufunc("expit"))),
    ("sigmoid", "torch", torch_pointwise("sigmoid")),
    ("sigmoid", "jax", jax_pointwise("nn.sigmoid")),
    ("log_sigmoid", "logitkit", logitkit_pointwise("log_sigmoid")),
    ("log_sigmoid", "scipy", numpy_dtypes(scipy_ufunc("log_expit"))),
    ("log_sigmoid", "torch", torch_pointwise("log_sigmoid")),
    ("log_sigmoid", "jax", jax_pointwise("nn.log_sigmoid")),
    ("binary_cross_entropy", "logitkit", logitkit_binary_cross_entropy),
    ("binary_cross_entropy", "scipy", numpy_dtypes(scipy_binary_cross_entropy(False))),
    ("binary_cross_entropy", "torch", torch_binary_cross_entropy),
    ("binary_cross_entropy", "jax", jax_binary_cross_entropy(with_grad=False)),
    ("binary_cross_entropy+grad", "logitkit", logitkit_binary_cross_entropy_grad),
    ("binary_cross_entropy+grad", "scipy", numpy_dtypes(scipy_binary_cross_entropy(True))),
    ("binary_cross_entropy+grad", "torch", torch_binary_cross_entropy_grad),
    ("binary_cross_entropy+grad", "jax", jax_binary_cross_entropy(with_grad=True)),
    ("entropy", "logitkit", logitkit_entropy),
    ("entropy", "scipy", numpy_dtypes(scipy_entropy)),
    ("entropy", "torch", torch_entropy),
    ("entropy", "jax", jax_entropy),
    ("kl_divergence", "logitkit", logitkit_kl_divergence(with_grad=False)),
    ("kl_divergence", "scipy", numpy_dtypes(scipy_kl_divergence)),
    ("kl_divergence", "torch", torch_kl_divergence),
    ("kl_divergence", "jax", jax_kl_divergence(with_grad=False)),
    ("kl_divergence+grad", "logitkit", logitkit_kl_divergence(with_grad=True)),
    ("kl_divergence+grad", "torch", torch_kl_divergence_grad),
    ("kl_divergence+grad", "jax", jax_kl_divergence(with_grad=True)),
]

def reference_cross_entropy(x: np.ndarray, axis: int, with_grad: bool = False) -> Any:
    """Mean of logsumexp - the labelled logit; with its gradient (softmax - onehot) / N."""
    x = x.astype(np.float64)
    labels = class_labels(x, axis)
    picked = np.take_along_axis(x, np.expand_dims(labels, axis), axis).squeeze(axis)
    loss = np.mean(scipy.special.logsumexp(x, axis=axis) - picked)
    if not with_grad:
        return loss
    grad = scipy.special.softmax(x, axis=axis)
    grad[label_positions(labels, axis)] -= 1.0
    grad /= labels.size
    return loss, grad


def reference_binary_cross_entropy(x: np.ndarray, axis: int, with_grad: bool = False) -> Any:
    """Mean over all elements of log(1 + exp(z)) - y z; gradient (sigmoid(z) - y) / size."""
    z, y = x.astype(np.float64), binary_targets(x).astype(np.float64)
    loss = np.mean(np.logaddexp(0.0, z) - y * z)
    if not with_grad:
        return loss
    return loss, (scipy.special.expit(z) - y) / z.size


def reference_entropy(x: np.ndarray, axis: int) -> np.ndarray:
    log_p = scipy.special.log_softmax(x.astype(np.float64), axis=axis)
    return -np.sum(np.exp(log_p) * log_p, axis=axis)


def reference_kl_divergence(x: np.ndarray, axis: int, with_grad: bool = False) -> Any:
    """KL(P || Q) of P = softmax(target_logits(x)) and Q = softmax(x), averaged over the
    rows; with its gradient in x, (softmax(x) - softmax(p)) / rows."""
    p, q = target_logits(x).astype(np.float64), x.astype(np.float64)
    log_p = scipy.special.log_softmax(p, axis=axis)
    log_q = scipy.special.log_softmax(q, axis=axis)
    per_row = np.sum(np.exp(log_p) * (log_p - log_q), axis=axis)
    if not with_grad:
        return per_row.mean()
    return per_row.mean(), (np.exp(log_q) - np.exp(log_p)) / per_row.size


# Float64 references that every implementation's result is checked against.
REFERENCES: dict[str, Callable[[np.ndarray, int], Any]] = {
    "softmax": lambda x, axis: scipy.special.softmax(x.astype(np.float64), axis=axis),
    "log_softmax": lambda x, axis: scipy.special.log_softmax(x.astype(np.float64), axis=axis),
    "logsumexp": lambda x, axis: scipy.special.logsumexp(x.astype(np.float64), axis=axis),
    "cross_entropy": reference_cross_entropy,
    "cross_entropy+grad": functools.partial(reference_cross_entropy, with_grad=True),
    "sigmoid": lambda x, axis: scipy.special.expit(x.astype(np.float64)),
    "log_sigmoid": lambda x, axis: scipy.special.log_expit(x.astype(np.float64)),
    "binary_cross_entropy": reference_binary_cross_entropy,
    "binary_cross_entropy+grad": functools.partial(reference_binary_cross_entropy, with_grad=True),
    "entropy": reference_entropy,
    "kl_divergence": reference_kl_divergence,
    "kl_divergence+grad": functools.partial(reference_kl_divergence, with_grad=True),
}

# Largest error allowed, relative to max(1, the largest |value| of the reference) (for a
# (loss, gradient) pair, to each part's own largest |value|: see relative_error): a sanity
# check that catches a wrong axis or formula, not an accuracy test (tests/ does that).
# Half precision: 2 ulp at 1 (float16 has eps 2**-10, bfloat16 2**-7), relative to the same
# scale, of the float64 result of the half-precision input.
TOLERANCES: dict[Any, float] = {
    np.float32: 1e-5,
    np.float64: 1e-12,
    np.float16: 2 * 2.0**-10,
    **({BFLOAT16: 2 * 2.0**-7} if BFLOAT16 is not None else {}),
}


# ------------------------------------------------------------------------- timing

BUSY_LOAD = 0.5  # a 1-minute load average above this before the run earns a warning


@dataclass(frozen=True)
class Settings:
    target_s: float  # wall time spent sampling one implementation on one case
    rounds: int  # interleaved rounds that time is split into
    warmup_s: float  # minimum warm-up per implementation (after the first call)
    min_sample_s: float  # tiny calls are batched until one sample takes this long
    # A call so slow that one sample a round would take longer than max_s in all (NumPy's
    # emulated float16 runs ~1 s a call) is sampled in fewer rounds, spread over the run,
    # but in at least min_samples.
    max_s: float
    min_samples: int


FULL = Settings(
    target_s=0.35, rounds=10, warmup_s=0.03, min_sample_s=2e-3, max_s=3.0, min_samples=3
)
QUICK = Settings(
    target_s=0.05, rounds=3, warmup_s=0.005, min_sample_s=1e-3, max_s=0.15, min_samples=1
)


class Timer:
    """Samples one zero-argument callable; ``median`` is seconds per call."""

    def __init__(self, fn: Callable[[], Any], settings: Settings) -> None:
        self.fn = fn
        self.samples: list[float] = []
        per_call = self._warm_up(settings.warmup_s)
        self.batch = max(1, math.ceil(settings.min_sample_s / per_call))
        per_round = settings.target_s / settings.rounds
        self.samples_per_round = max(1, round(per_round / (per_call * self.batch)))
        affordable = math.floor(settings.max_s / (per_call * self.batch * self.samples_per_round))
        n = min(settings.rounds, max(settings.min_samples, affordable))
        # n of the rounds, evenly spread (all of them unless the call is that slow)
        self.rounds = {i * settings.rounds // n for i in range(n)}

    def _warm_up(self, warmup_s: float) -> float:
        """Run until warm (JIT, page faults, caches); return the seconds per call."""
        self.fn()
        calls, start = 0, time.perf_counter()
        while True:
            self.fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= warmup_s:
                return elapsed / calls

    def run_round(self, index: int) -> None:
        if index not in self.rounds:
            return
        fn, batch = self.fn, range(self.batch)
        for _ in range(self.samples_per_round):
            start = time.perf_counter()
            for _ in batch:
                fn()
            self.samples.append((time.perf_counter() - start) / self.batch)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def time_interleaved(
    fns: dict[Any, Callable[[], Any]],
    settings: Settings,
    setups: dict[Any, Callable[[], Any]] | None = None,
) -> dict[Any, float]:
    """Median seconds per call of each callable, sampled in interleaved rounds.

    ``setups[key]``, where given, runs before that callable's warm-up and before each of
    its rounds, untimed: it sets the thread counts the callable is to run with.
    """
    setups = setups or {}

    def prepare(key: Any) -> None:
        setup = setups.get(key)
        if setup is not None:
            setup()

    timers = {}
    for key, fn in fns.items():
        prepare(key)
        timers[key] = Timer(fn, settings)
    for index in range(settings.rounds):
        for key, timer in timers.items():
            prepare(key)
            timer.run_round(index)
    return {key: timer.median for key, timer in timers.items()}


# ------------------------------------------------------------------------ threads


def usable_cores() -> int:
    """The CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def has_workers() -> bool:
    """Whether this logitkit takes a thread count (set_workers); older ones run on one."""
    return logitkit is not None and hasattr(logitkit, "set_workers")


def set_threads(n: int) -> None:
    """Run logitkit (its default workers=, in this thread) and PyTorch on n threads."""
    if has_workers():
        logitkit.set_workers(n)
    if torch is not None:
        torch.set_num_threads(n)


def threads_label(n: int) -> str:
    return "one thread" if n == 1 else f"{n} threads"


# PyTorch's OpenMP threads (libgomp's default) spin, a core each, for ~10 ms after each of
# its multi-threaded calls: the next implementation timed would find its cores taken (on
# 2 cores, logitkit's 2 workers ran ~1.4x slower right after PyTorch on 2 threads). So a
# round after one of those starts only once they have gone to sleep.
OPENMP_SETTLE_S = 0.03


class ThreadSetups:
    """The ``setups`` of bench_case for implementations on several threads: each sets
    logitkit's and PyTorch's thread counts, after waiting out PyTorch's spinning threads
    where the round before was PyTorch's on more than one."""

    def __init__(self) -> None:
        self.spinning = False  # the last round was PyTorch's on several threads

    def __call__(self, impl: str, n: int) -> Callable[[], None]:
        def setup() -> None:
            if self.spinning:
                time.sleep(OPENMP_SETTLE_S)
            set_threads(n)
            self.spinning = impl == "torch" and n > 1

        return setup


# ------------------------------------------------------------------------ running


@dataclass
class Row:
    op: str
    case: Case
    impl: str
    seconds: float
    memcpy_seconds: float
    ok: bool = True  # result within TOLERANCES of the float64 reference
    skipped: bool = False  # not run (see the notes): seconds is NaN

    @property
    def ratio(self) -> float:
        return self.seconds / self.memcpy_seconds


def relative_error(result: Any, reference: Any, dtype: type, floor: float = 1.0) -> float:
    """Largest error over max(floor, largest |reference|); inf for a wrong dtype or a NaN.

    A (loss, gradient) pair is checked part by part, each against its own largest |value|:
    the gradient of a mean over N samples is ~1/N, and next to 1 even a wrong one would pass.
    """
    if isinstance(reference, tuple):
        if not isinstance(result, tuple) or len(result) != len(reference):
            return math.inf
        parts = zip(result, reference, strict=True)
        return max(relative_error(got, ref, dtype, floor=0.0) for got, ref in parts)
    got = to_numpy(result)
    if got.dtype != np.dtype(dtype):
        return math.inf
    error = np.max(np.abs(got.astype(np.float64).reshape(reference.shape) - reference))
    error /= max(floor, np.max(np.abs(reference)))
    return math.inf if math.isnan(error) else float(error)


def bench_case(
    case: Case,
    rows: list[tuple[str, str, Factory]],
    settings: Settings,
    notes: list[str],
    with_memcpy: bool = True,
    setups: dict[str, Callable[[], Any]] | None = None,
) -> list[Row]:
    """Check and time every (op, impl) of ``rows`` on one input array.

    An implementation that cannot run the case (its factory raises Skip, or its first
    call raises, e.g. for a dtype it does not take yet) gets a skipped row and a note;
    one whose factory raises NotApplicable is left out, with a note. ``setups[impl]``,
    where given, runs before that implementation's factory, first call and every round
    of timing (see time_interleaved).
    """
    setups = setups or {}
    x = case.make_input()
    axis = case.axis
    references = {op: REFERENCES[op](x, axis) for op in dict.fromkeys(op for op, _, _ in rows)}

    def add_note(note: str) -> None:
        if note not in notes:
            notes.append(note)

    order: list[tuple[str, str]] = []  # the rows to report, timed or skipped
    fns: dict[tuple[str, str], Callable[[], Any]] = {}
    ok: dict[tuple[str, str], bool] = {}
    if with_memcpy:
        order.append(("memcpy", "np.copyto"))
        fns["memcpy", "np.copyto"] = memcpy(x, axis)
        ok["memcpy", "np.copyto"] = True
    for op, impl, factory in rows:
        if impl in setups:
            setups[impl]()
        try:
            fn = factory(x, axis)
            result = fn()
        except NotApplicable as why:
            add_note(f"{impl} on {case.dtype_name}: left out ({why})")
            continue
        except Skip as why:
            add_note(f"{op} {impl} on {case.dtype_name}: skipped ({why})")
            order.append((op, impl))
            continue
        except Exception as exc:  # noqa: BLE001 - an unsupported input is a result too
            reason = f"{type(exc).__name__}: {exc}"
            add_note(f"{op} {impl} on {case.dtype_name}: not supported ({reason})")
            order.append((op, impl))
            continue
        error = relative_error(result, references[op], case.dtype)
        ok[op, impl] = error <= TOLERANCES[case.dtype]
        if not ok[op, impl]:
            scale = (
                "each part's largest |value|"
                if isinstance(references[op], tuple)
                else "max(1, largest |value|)"
            )
            parts = result if isinstance(result, tuple) else (result,)
            got = ", ".join(str(to_numpy(part).dtype) for part in parts)
            problem = (
                f"error {error:.1e} > {TOLERANCES[case.dtype]:.0e} (relative to {scale})"
                if math.isfinite(error)
                else f"a NaN, or a result of dtype {got} (not {case.dtype_name})"
            )
            notes.append(f"{op} {impl} {case.shape_label} {case.kind_label}: {problem}, marked !")
        order.append((op, impl))
        fns[op, impl] = fn

    seconds = time_interleaved(
        fns, settings, {key: setups[key[1]] for key in fns if key[1] in setups}
    )
    roof = seconds.get(("memcpy", "np.copyto"), math.nan)
    return [
        Row(op, case, impl, seconds[op, impl], roof, ok[op, impl])
        if (op, impl) in seconds
        else Row(op, case, impl, math.nan, roof, ok=True, skipped=True)
        for op, impl in order
    ]


# ------------------------------------------------------------------------ reports


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_lines(threads: str = "all single-threaded") -> list[str]:
    if logitkit is not None:
        active = logitkit.capabilities().get("active", "?")
        lk = f"logitkit {getattr(logitkit, '__version__', '?')} (SIMD target: {active})"
    else:
        lk = "logitkit not importable"
    versions = [f"numpy {np.__version__}", f"scipy {scipy.__version__}"]
    versions += [f"torch {torch.__version__}"] if torch is not None else []
    versions += [f"jax {jax.__version__}"] if jax is not None else []
    return [
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); Python {platform.python_version()}",
        f"{lk}; " + ", ".join(versions) + f"; {threads}",
    ]


def load_average() -> float | None:
    """The 1-minute load average before we start: other work on the machine skews timings."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def format_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def print_table(header: list[str], body: list[list[str]], markdown: bool, right: set[int]) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|")
        for cells in body:
            print("| " + " | ".join(cells) + " |")
        return
    widths = [max(len(c) for c in column) for column in zip(header, *body, strict=True)]

    def line(cells: list[str]) -> str:
        aligned = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(aligned)

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for cells in body:
        print(line(cells).rstrip())


def ordered_ops(rows: list[Row]) -> list[str]:
    """The operations of ``rows``: memcpy first, then in the order of IMPLEMENTATIONS."""
    rank = {op: i for i, op in enumerate(dict.fromkeys(op for op, _, _ in IMPLEMENTATIONS))}
    return sorted(dict.fromkeys(row.op for row in rows), key=lambda op: rank.get(op, -1))


def print_results(rows: list[Row], markdown: bool) -> None:
    """One table, grouped by operation (memcpy first), then by case."""
    body = []
    for op in ordered_ops(rows):
        for row in (r for r in rows if r.op == op):
            mark = "" if row.ok else " !"
            body.append(
                [
                    row.op,
                    row.case.shape_label,
                    row.case.kind_label,
                    row.impl + mark,
                    "skipped" if row.skipped else format_ms(row.seconds),
                    "-" if row.skipped else f"{row.ratio:.2f}",
                ]
            )
    print_table(
        ["op", "shape", "dtype/axis", "impl", "ms", "x memcpy"], body, markdown, right={4, 5}
    )


def print_wide(rows: list[Row]) -> None:
    """The README's table: one row per operation and array, the memcpy's time, logitkit's
    (in bold, with its multiple of the memcpy) and each other implementation's, in ms."""
    impls = [i for i in dict.fromkeys(r.impl for r in rows if r.op != "memcpy") if i != "logitkit"]
    names = {"numpy": "NumPy", "scipy": "SciPy", "torch": "PyTorch", "jax": "JAX"}
    header = ["op", "shape", "dtype, axis", "memcpy ms", "logitkit ms (× memcpy)"]
    header += [names.get(i, i) for i in impls]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")

    def cell(row: Row | None) -> str:
        if row is None:
            return "–"
        if row.skipped:
            return "n/a"
        return format_ms(row.seconds) + ("" if row.ok else " !")

    for op in ordered_ops(rows):
        if op == "memcpy":
            continue
        for case in dict.fromkeys(r.case for r in rows if r.op == op):
            found = {r.impl: r for r in rows if r.op == op and r.case is case}
            lk = found.get("logitkit")
            dtype = np.dtype(case.dtype).name.replace("float", "f")  # f32, f16, bf16
            axis = case.kind_label.split("axis ")[-1]
            memcpy_ms = format_ms(next(iter(found.values())).memcpy_seconds)
            lk_cell = "–" if lk is None else (
                "n/a" if lk.skipped else f"**{cell(lk)}** ({lk.ratio:.2f})")
            cells = [op, case.shape_label, f"{dtype}, {axis}", memcpy_ms, lk_cell]
            cells += [cell(found.get(i)) for i in impls]
            print("| " + " | ".join(cells) + " |")


def print_latency(rows: list[Row], markdown: bool) -> None:
    """One row per implementation, one column per (operation, array) of LATENCIES."""
    columns = list(dict.fromkeys((row.op, row.case) for row in rows))
    impls = list(dict.fromkeys(row.impl for row in rows))
    cells = {
        (row.impl, row.op, row.case): "skipped"
        if row.skipped
        else f"{row.seconds * 1e6:.2f}" + ("" if row.ok else " !")
        for row in rows
    }
    kinds = ", ".join(dict.fromkeys(case.kind_label for _, case in columns))
    print()
    print(f"Per-call latency on small arrays ({kinds}), µs per call")
    print()
    header = ["impl"] + [f"{op} {case.shape_label}" for op, case in columns]
    body = [[impl] + [cells.get((impl, *column), "-") for column in columns] for impl in impls]
    print_table(header, body, markdown, right=set(range(1, len(header))))
    if any(op == "cross_entropy+grad" for op, _ in columns):
        print()
        print("(cross_entropy+grad: loss and gradient; for PyTorch, forward and .backward())")


def threads_caption(workers: int, impls: list[str]) -> str:
    """The thread counts of the main tables, as said above them."""
    if workers == 1:
        torch_too = ", PyTorch torch.set_num_threads(1)" if "torch" in impls else ""
        return f"Threads: one for every implementation (logitkit workers=1{torch_too})."
    others = [name for impl, name in [("numpy", "NumPy"), ("scipy", "SciPy"), ("jax", "JAX")]
              if impl in impls]
    said = f"Threads: logitkit workers={workers}"
    if "torch" in impls:
        said += f", PyTorch torch.set_num_threads({workers})"
    return said + (f"; {', '.join(others)}: one." if others else ".")


@dataclass
class ScalingResult:
    """One array of the scaling table: its memcpy's time, and the Row of each
    (implementation, thread count) that was run."""

    op: str
    case: Case
    memcpy_seconds: float
    rows: dict[tuple[str, int], Row]


def scaling_label(impl: str, workers: int) -> str:
    return f"{impl} on {threads_label(workers)}"


def bench_scaling(
    op: str,
    case: Case,
    counts: list[int],
    impls: list[str],
    settings: Settings,
    notes: list[str],
) -> ScalingResult:
    """Time ``op`` on ``case`` with each implementation at each thread count, all in the
    same interleaved rounds, with a one-thread memcpy of the array."""
    factories = {(o, impl): factory for o, impl, factory in IMPLEMENTATIONS}
    rows: list[tuple[str, str, Factory]] = []
    thread_setups = ThreadSetups()
    setups = {"np.copyto": thread_setups("np.copyto", 1)}
    labels: dict[str, tuple[str, int]] = {}
    for n in counts:
        for impl in impls:
            label = scaling_label(impl, n)
            rows.append((op, label, factories[op, impl]))
            setups[label] = thread_setups(impl, n)
            labels[label] = (impl, n)
    timed = bench_case(case, rows, settings, notes, setups=setups)
    memcpy_seconds = next(row.seconds for row in timed if row.op == "memcpy")
    return ScalingResult(
        op, case, memcpy_seconds, {labels[row.impl]: row for row in timed if row.op == op}
    )


def format_time(seconds: float) -> str:
    """ms, or µs below 0.1 ms (the tiny calls): the scaling table mixes both."""
    if seconds < 1e-4:
        return f"{seconds * 1e6:.2f} µs"
    return f"{format_ms(seconds)} ms"


def print_scaling(results: list[ScalingResult], counts: list[int], markdown: bool) -> None:
    """One row per array and thread count: memcpy, logitkit (its multiple of the memcpy,
    its speedup over itself on one thread), PyTorch, and PyTorch's time over logitkit's."""
    with_torch = any(impl == "torch" for r in results for impl, _ in r.rows)
    header = ["op", "shape", "threads", "memcpy", "logitkit", "× memcpy", "speedup vs 1"]
    if with_torch:
        header += ["PyTorch", "PyTorch / logitkit"]

    def timed(row: Row | None) -> str:
        if row is None:
            return "–"
        if row.skipped:
            return "skipped"
        return format_time(row.seconds) + ("" if row.ok else " !")

    def ratio(numerator: Row | None, denominator: Row | None) -> str:
        if numerator is None or denominator is None or numerator.skipped or denominator.skipped:
            return "–"
        return f"{numerator.seconds / denominator.seconds:.2f}"

    body = []
    for result in results:
        one = result.rows.get(("logitkit", 1))
        for n in counts:
            lk, pt = result.rows.get(("logitkit", n)), result.rows.get(("torch", n))
            cells = [
                result.op,
                result.case.shape_label,
                str(n),
                format_time(result.memcpy_seconds),
                timed(lk),
                "–" if lk is None or lk.skipped else f"{lk.ratio:.2f}",
                ratio(one, lk),
            ]
            if with_torch:
                cells += [timed(pt), ratio(pt, lk)]
            body.append(cells)
    print_table(header, body, markdown, right=set(range(2, len(header))))


# ---------------------------------------------------------------------------- CLI


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected e.g. 4096x1000") from None


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return n


def thread_counts(text: str) -> list[int]:
    """--scaling-workers: comma-separated positive integers; 1 is always added (the
    speedups are over it)."""
    return sorted({1, *(positive_int(item) for item in comma_list(text))})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    all_ops = list(dict.fromkeys(op for op, _, _ in IMPLEMENTATIONS))
    all_impls = list(dict.fromkeys(impl for _, impl, _ in IMPLEMENTATIONS))
    latency_cases = [case for _, case in LATENCIES]
    shapes = ", ".join(dict.fromkeys(c.shape_label for c in [*CASES, *latency_cases]))
    all_dtypes = ["float32", "float64", "float16", "bfloat16"]
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer and shorter samples (smoke run)"
    )
    parser.add_argument(
        "--shapes",
        type=lambda s: [parse_shape(t) for t in comma_list(s)],
        help=f"comma-separated shapes to run (default: all of {shapes})",
    )
    parser.add_argument(
        "--ops", type=comma_list, default=all_ops, help=f"default: {','.join(all_ops)}"
    )
    parser.add_argument(
        "--impls", type=comma_list, default=all_impls, help=f"default: {','.join(all_impls)}"
    )
    parser.add_argument(
        "--dtypes",
        type=comma_list,
        default=all_dtypes,
        help=f"default: {','.join(all_dtypes)} (bfloat16 needs ml_dtypes)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="threads of logitkit (workers=) and of PyTorch (torch.set_num_threads) in the "
        "tables (default: 1; NumPy, SciPy and JAX stay on one)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="print the thread-scaling table of logitkit and PyTorch instead of the other "
        "tables (--shapes, --ops and --impls select from its rows: "
        + "; ".join(f"{op} {case.shape_label}" for op, case in SCALING)
        + ")",
    )
    parser.add_argument(
        "--scaling-workers",
        type=thread_counts,
        metavar="N,N,...",
        help=f"thread counts of --scaling (default: 1 to the {usable_cores()} usable cores; "
        "1 is always included)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="also draw the results against the memcpy roof into FILE (needs matplotlib: "
        "pip install logitkit[bench])",
    )
    args = parser.parse_args(argv)
    for name, chosen, known in [
        ("--ops", args.ops, all_ops),
        ("--impls", args.impls, all_impls),
        ("--dtypes", args.dtypes, all_dtypes),
    ]:
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    if args.scaling_workers is not None and not args.scaling:
        parser.error("--scaling-workers goes with --scaling")
    if args.scaling and args.workers != 1:
        parser.error("--workers does not go with --scaling (its rows set the thread counts)")
    if args.scaling and args.plot:
        parser.error("--plot does not go with --scaling (it draws the other tables)")
    if (args.workers != 1 or args.scaling) and logitkit is not None and not has_workers():
        parser.error("this logitkit has no workers= (set_workers): it runs on one thread")
    if args.scaling_workers is None:
        args.scaling_workers = list(range(1, usable_cores() + 1))
    return args


PLOT_COLORS = {
    "logitkit": "#d62728",
    "numpy": "#1f77b4",
    "scipy": "#9467bd",
    "torch": "#ff7f0e",
    "jax": "#2ca02c",
}


def plot(rows: list[Row], path: str, workers: int = 1) -> None:
    """Panels of bars, two a line: one per operation, and one more per operation for its
    half-precision (float16, bfloat16) arrays. In each, for every array, each
    implementation's time as a multiple of memcpy of the same array (log scale), with the
    memcpy roof drawn at 1; an implementation that did not run is marked "n/a"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.lines
    import matplotlib.patches
    import matplotlib.pyplot as plt

    def is_half(case: Case) -> bool:
        return np.dtype(case.dtype) in HALF_DTYPES

    rows = [row for row in rows if row.op != "memcpy"]  # memcpy itself is the roof line
    panels: dict[tuple[str, bool], list[Row]] = {}
    for op in ordered_ops(rows):
        for half in (False, True):
            panel = [r for r in rows if r.op == op and is_half(r.case) == half]
            if panel:
                panels[op, half] = panel
    impls = list(dict.fromkeys(row.impl for row in rows))
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(8 * ncols, 2.8 * nrows + 0.8), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, ((op, half), panel) in zip(axes.flat, panels.items()):
        cases = list(dict.fromkeys(row.case for row in panel))
        panel_impls = [impl for impl in impls if any(row.impl == impl for row in panel)]
        width = 0.8 / max(1, len(panel_impls))
        for k, impl in enumerate(panel_impls):
            xs, ys = [], []
            for i, case in enumerate(cases):
                for row in panel:
                    if row.case != case or row.impl != impl:
                        continue
                    x = i + (k - (len(panel_impls) - 1) / 2) * width
                    if row.skipped:
                        ax.text(x, 1.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
                    else:
                        xs.append(x)
                        ys.append(row.ratio)
            ax.bar(xs, ys, width, color=PLOT_COLORS.get(impl))
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_yscale("log")
        ax.set_ylabel("time / memcpy")
        ax.set_title(op + (" (half precision)" if half else ""), loc="left", fontsize=11)
        labels = [
            f"{c.shape_label}\n{c.dtype_name}" + ("" if c.axis == -1 else f", axis {c.axis}")
            for c in cases
        ]
        ax.set_xticks(range(len(cases)), labels, fontsize=8)
        ax.set_xlim(-0.5, max(len(cases), 4) - 0.5)  # bars as wide in every panel
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.set_axisbelow(True)  # grid lines behind the bars
    handles: list[Any] = [
        matplotlib.patches.Patch(color=PLOT_COLORS.get(impl), label=impl) for impl in impls
    ]
    roof = matplotlib.lines.Line2D([], [], color="black", linestyle="--", label="memcpy roof")
    handles.append(roof)
    height = fig.get_figheight()
    fig.suptitle(
        f"logitkit {logitkit.__version__} ({logitkit.capabilities()['active']}) on "
        f"{cpu_model()}, {threads_label(workers)}: time / memcpy of the same array, "
        "lower is better",
        fontsize=11,
        y=1 - 0.1 / height,
        va="top",
    )
    fig.legend(
        handles=handles,
        ncol=len(handles),
        fontsize=9,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.4 / height),
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_tables(
    args: argparse.Namespace,
    settings: Settings,
    selected: list[tuple[str, str, Factory]],
    wanted: Callable[[Case], bool],
    notes: list[str],
) -> list[Row]:
    """The main tables and the latency table, on --workers threads; returns the main rows."""
    set_threads(args.workers)
    impls = [impl for impl in args.impls if impl not in MISSING]
    print(threads_caption(args.workers, impls))
    print()

    def rows_for(case: Case) -> list[tuple[str, str, Factory]]:
        return [row for row in selected if row[0] in case.ops]

    # On several threads, wait out PyTorch's spinning threads after its rounds.
    thread_setups = ThreadSetups()
    setups = (
        {impl: thread_setups(impl, args.workers) for impl in [*impls, "np.copyto"]}
        if args.workers > 1
        else None
    )
    rows: list[Row] = []
    for case in filter(wanted, CASES):
        if not rows_for(case):
            continue
        print(f"timing {case.shape_label} {case.kind_label} ...", file=sys.stderr, flush=True)
        rows += bench_case(case, rows_for(case), settings, notes, setups=setups)
    if rows:
        if args.markdown:
            print_wide(rows)  # the README's layout; the long table is the plain-text one
        else:
            print_results(rows, args.markdown)
        print()
        print("x memcpy: time / time of np.copyto of the same array in the same run")
        print("(a one-pass softmax, or cross_entropy+grad, reads the array and writes one as")
        print(" large, as a copy does: ~1.0 is the roof; logsumexp, cross_entropy and entropy")
        print(" only read it; sigmoid and log_sigmoid copy; binary_cross_entropy and")
        print(" kl_divergence read two such arrays (~1.0 too), and with +grad also write one")
        print(" (~1.5)). ! = result far from the float64 reference (see notes).")
        if any(np.dtype(row.case.dtype) in HALF_DTYPES for row in rows):
            print("Half precision (float16, bfloat16): the memcpy is of the 16-bit array.")
        if args.workers > 1:
            print(f"The memcpy runs on one thread: on {args.workers}, below 1.0 is possible.")

    latency: list[Row] = []
    for op, case in LATENCIES:
        latency_rows = [row for row in selected if row[0] == op]
        if latency_rows and wanted(case):
            print(f"timing {case.shape_label} {op} latency ...", file=sys.stderr, flush=True)
            latency += bench_case(
                case, latency_rows, settings, notes, with_memcpy=False, setups=setups
            )
    if latency:
        print_latency(latency, args.markdown)
    return rows


def run_scaling(
    args: argparse.Namespace, settings: Settings, wanted: Callable[[Case], bool], notes: list[str]
) -> None:
    """The thread-scaling table (--scaling)."""
    counts = args.scaling_workers
    impls = [i for i in SCALING_IMPLS if i in args.impls and i not in MISSING]
    if "logitkit" not in impls:
        notes.append("--scaling: nothing to time without logitkit")
        return
    cores = usable_cores()
    if counts[-1] > cores:
        notes.append(f"more threads than the {cores} usable cores: those rows share cores")
    results = []
    for op, case in SCALING:
        if op in args.ops and wanted(case):
            print(f"timing {op} {case.shape_label} on 1-{counts[-1]} threads ...",
                  file=sys.stderr, flush=True)
            results.append(bench_scaling(op, case, counts, impls, settings, notes))
    set_threads(1)
    if not results:
        return
    torch_too = "torch" in impls
    caption = (
        f"Thread scaling on {cores} usable cores ({', '.join(SCALING_KINDS)}): logitkit with "
        "workers=N"
        + (" and PyTorch with torch.set_num_threads(N)" if torch_too else "")
        + ", the same N in each row, timed in the same interleaved rounds (median); "
        "memcpy: np.copyto of the same array, on one thread."
        + (
            " A round after PyTorch's on several threads starts once its OpenMP threads "
            "have stopped spinning."
            if torch_too
            else ""
        )
    )
    legend = (
        "× memcpy: logitkit's time / memcpy's (below 1.0 is possible on several threads); "
        "speedup vs 1: logitkit's time on 1 thread / on N"
        + (
            "; PyTorch / logitkit: PyTorch's time / logitkit's on N threads (above 1: "
            "logitkit is faster). cross_entropy+grad: the mean loss of integer labels and "
            "its gradient (PyTorch: forward and .backward())"
            if torch_too
            else ""
        )
        + ". ! = result far from the float64 reference (see notes)."
    )
    print("\n".join(textwrap.wrap(caption, 88)))
    print()
    print_scaling(results, counts, args.markdown)
    print()
    print("\n".join(textwrap.wrap(legend, 88)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    selected = [
        (op, impl, factory)
        for op, impl, factory in IMPLEMENTATIONS
        if op in args.ops and impl in args.impls and impl not in MISSING
    ]

    def wanted(case: Case) -> bool:
        shape_ok = args.shapes is None or case.shape in args.shapes
        return shape_ok and case.dtype_name in args.dtypes

    notes = [
        f"{name}: skipped ({reason})"
        for name, reason in MISSING.items()
        if name in args.impls and (name in SCALING_IMPLS or not args.scaling)
    ]
    if BFLOAT16 is None and "bfloat16" in args.dtypes and not args.scaling:
        notes.append(f"bfloat16: skipped (ml_dtypes: {_ML_DTYPES_MISSING})")

    if args.scaling:
        threads = "thread counts: see the table"
    elif args.workers == 1:
        threads = "all single-threaded"
    else:
        threads = f"logitkit and PyTorch on {args.workers} threads, the others on one"
    for line in environment_lines(threads):
        print(f"- {line}" if args.markdown else line)
    print()
    load = load_average()
    if load is not None and load > BUSY_LOAD:
        notes.append(f"the machine was busy (load average {load:.1f} at start): timings are noisy")

    started = time.perf_counter()
    rows: list[Row] = []
    if args.scaling:
        run_scaling(args, settings, wanted, notes)
    else:
        rows = run_tables(args, settings, selected, wanted, notes)

    if notes:
        print()
        for note in notes:
            print(f"note: {note}")
    if args.plot and rows:
        plot(rows, args.plot, args.workers)
        print(f"plot written to {args.plot}", file=sys.stderr)
    print(f"\n(total {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
