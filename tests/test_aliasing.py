"""Outputs that share memory with inputs: every output argument of every function, against
every input of that function, in every overlap pattern.

The contract: an output that shares memory with any input other than "exactly the
logits, same layout" is computed through a temporary, so the result is the one the same
call gives without any sharing. The only accepted exception is a writeable output that
overlaps *itself* (``as_strided`` rows that share elements): that raises a ValueError
saying so.

How a case is built (``_run_case``): one raw byte buffer holds both the output and the
input under test, each as an ``np.ndarray`` view placed at a byte offset with a layout
(C order, Fortran order, or a uniform step in bytes, negative for reversed), so that any
overlap -- identical, transposed, strided, shifted by an element or a row, a small
input in a prefix / suffix / column of a large output, or a small output inside a large
input -- is one table entry. The input values are written through the input's view,
then the call is made and its output compared bit for bit with the same call on
unshared memory.

What "the same call on unshared memory" is: the inputs are copied to fresh memory with
the *same strides and the same address modulo 64* (``_relocate``), not with
``np.array(a, copy=True)``, because the kernels read strided input in place and a
strided row is summed in a different order than a contiguous one (the last bits differ).
The output may be either ``None`` (a new array: what a correct implementation computes
into when it goes through a temporary) or a fresh array with the aliased output's
layout (what it computes into when writing directly): the kernel path depends on the
output's layout too, so results written into a Fortran-ordered ``out`` can differ in the
last bit from a C-ordered one. The aliased call must match one of the two exactly (the
loss and the gradient of the same one).

Labels inside ``grad_out`` (integer class indices viewed from the gradient's buffer)
crashed the interpreter, so that family runs in a child interpreter, one per pattern: a
crash fails one test and names the case it was running.
"""

import inspect
import re
import subprocess
import sys
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import logitkit
from logitkit import special

pytestmark = pytest.mark.filterwarnings("error")

TESTS_DIR = str(Path(__file__).resolve().parent)

FLOAT_DTYPES = (np.float32, np.float64)
try:  # the 16-bit formats are read natively by every kernel: aliased the same way
    import ml_dtypes

    FLOAT_DTYPES += (np.float16, ml_dtypes.bfloat16)
except ImportError:
    FLOAT_DTYPES += (np.float16,)
ROW_LENGTHS = (1, 7, 17, 33, 100)
"""Lengths of the softmax axis: scalar-only, and the tails of 4-, 8- and 16-lane vectors."""
N_ROWS = 11
"""Rows (the other axis): more than one vector of columns, with a tail, for the column
kernels of a non-last axis."""
LABEL_DTYPES = (np.int64, np.int32, np.int16, np.uint8)


# ---------------------------------------------------------------------------------------
# placing arrays in a raw buffer
# ---------------------------------------------------------------------------------------


def _strides(shape, itemsize, layout):
    """Byte strides of ``shape`` for a layout: "C", "F", or an int step in bytes that
    replaces the item size in C order (``2 * itemsize``: every other element;
    ``-itemsize``: reversed)."""
    c = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        c[i] = c[i + 1] * shape[i + 1]
    if layout == "C":
        return tuple(s * itemsize for s in c)
    if layout == "F":
        f = [1] * len(shape)
        for i in range(1, len(shape)):
            f[i] = f[i - 1] * shape[i - 1]
        return tuple(s * itemsize for s in f)
    return tuple(s * layout for s in c)


def _span(shape, strides, itemsize):
    """(lowest, one past the highest) byte touched, relative to the data pointer."""
    lo = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    hi = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0) + itemsize
    return lo, hi


def _extent(shape, dtype, layout):
    itemsize = np.dtype(dtype).itemsize
    lo, hi = _span(shape, _strides(shape, itemsize, layout), itemsize)
    return hi - lo


def _place(raw, low, shape, dtype, layout):
    """A view of the byte buffer ``raw`` whose lowest byte is ``raw[low]``."""
    dtype = np.dtype(dtype)
    strides = _strides(shape, dtype.itemsize, layout)
    lo, _ = _span(shape, strides, dtype.itemsize)
    view = np.ndarray(shape, dtype, buffer=raw, offset=low - lo, strides=strides)
    assert np.shares_memory(view, raw)
    return view


def _relocate(a):
    """A copy of ``a`` in fresh memory with the same strides and the same address modulo
    64 (so the kernels take the same path over it)."""
    if not isinstance(a, np.ndarray):
        return a
    lo, hi = _span(a.shape, a.strides, a.itemsize)
    raw = np.zeros(hi - lo + 128, dtype=np.uint8)
    lowest = a.__array_interface__["data"][0] + lo
    shift = (lowest - raw.ctypes.data) % 64
    b = np.ndarray(a.shape, a.dtype, buffer=raw, offset=shift - lo, strides=a.strides)
    b[...] = a
    assert not np.shares_memory(a, b)
    return b


def _align_down(n, k):
    return n // k * k


def _align_up(n, k):
    return -(-n // k) * k


# Same shape and dtype (the logits, a probability target, grad_output, ...):
# name -> f(itemsize, row_length_in_items) -> ((out_low, out_layout), (in_low, in_layout)).
# "same_object" passes the output array itself as the input.
FULL_PATTERNS = {
    "same_object": lambda i, r: ((0, "C"), (0, "C")),
    "same_view": lambda i, r: ((0, "C"), (0, "C")),
    "in_transposed": lambda i, r: ((0, "C"), (0, "F")),
    "out_transposed": lambda i, r: ((0, "F"), (0, "C")),
    "in_reversed": lambda i, r: ((0, "C"), (0, -i)),
    "in_every_other": lambda i, r: ((0, "C"), (0, 2 * i)),
    "out_every_other": lambda i, r: ((0, 2 * i), (0, "C")),
    "in_shift_1": lambda i, r: ((0, "C"), (i, "C")),
    "out_shift_1": lambda i, r: ((i, "C"), (0, "C")),
    "in_shift_row": lambda i, r: ((0, "C"), (r * i, "C")),
    "out_shift_row": lambda i, r: ((r * i, "C"), (0, "C")),
}

# A small array inside (or straddling) a large C-ordered one: a class weight or labels
# inside grad_out, or logsumexp's out inside the logits.
# name -> f(big_bytes, small_bytes, big_item, small_item, big_row_bytes)
#      -> ((big_low, "C"), (small_low, small_layout)).
SMALL_PATTERNS = {
    "prefix": lambda bb, sb, bi, si, row: ((0, "C"), (0, "C")),
    "suffix": lambda bb, sb, bi, si, row: ((0, "C"), (bb - sb, "C")),
    "shift_1": lambda bb, sb, bi, si, row: ((0, "C"), (bi, "C")),
    "reversed": lambda bb, sb, bi, si, row: (
        (0, "C"), (_align_down(max(bb - sb, 0) // 2, max(bi, si)), -si)),
    "every_other": lambda bb, sb, bi, si, row: ((0, "C"), (0, 2 * si)),
    # one element per row of the big array (at least a whole element apart)
    "column": lambda bb, sb, bi, si, row: ((0, "C"), (0, max(row, si))),
    "straddle": lambda bb, sb, bi, si, row: ((_align_up(sb // 2, max(bi, si)), "C"), (0, "C")),
}


def _arrange(relation, pattern, out_shape, out_dtype, in_shape, in_dtype):
    """(out, input) sharing one raw buffer in ``pattern``; the input is None when the
    pattern does not make them overlap for these shapes."""
    out_dtype, in_dtype = np.dtype(out_dtype), np.dtype(in_dtype)
    if relation == "full":
        assert out_shape == in_shape and out_dtype == in_dtype
        (o_low, o_lay), (i_low, i_lay) = FULL_PATTERNS[pattern](
            out_dtype.itemsize, out_shape[-1])
        specs = [(o_low, out_shape, out_dtype, o_lay), (i_low, in_shape, in_dtype, i_lay)]
    else:
        # "small": the input is the small one; "reduced": the output is.
        if relation == "small":
            big, small = (out_shape, out_dtype), (in_shape, in_dtype)
        else:
            big, small = (in_shape, in_dtype), (out_shape, out_dtype)
        big_bytes = int(np.prod(big[0])) * big[1].itemsize
        (b_low, b_lay), (s_low, s_lay) = SMALL_PATTERNS[pattern](
            big_bytes, _extent(*small, "C"), big[1].itemsize, small[1].itemsize,
            big[0][-1] * big[1].itemsize)
        b_spec, s_spec = (b_low, *big, b_lay), (s_low, *small, s_lay)
        specs = [b_spec, s_spec] if relation == "small" else [s_spec, b_spec]
    shift = -min(low for low, *_ in specs)
    size = max(low + shift + _extent(shape, dt, lay) for low, shape, dt, lay in specs)
    raw = np.zeros(size + 64, dtype=np.uint8)
    out, inp = (_place(raw, low + shift, shape, dt, lay) for low, shape, dt, lay in specs)
    if pattern == "same_object":
        inp = out
    if not np.shares_memory(out, inp):
        return out, None
    return out, inp


# ---------------------------------------------------------------------------------------
# the functions and their inputs
# ---------------------------------------------------------------------------------------


def _logits(rng, shape, dtype):
    return (rng.standard_normal(shape) * 3 + rng.normal(0, 10, size=(shape[0], 1))).astype(dtype)


def _softmax64(rng, shape, axis):
    z = rng.standard_normal(shape) * 2
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _class_weight(rng, n_cls, dtype):
    return rng.uniform(0.25, 2.0, size=n_cls).astype(dtype)


def _labels(rng, batch, n_cls, dtype):
    t = rng.integers(0, n_cls, size=batch)
    if np.dtype(dtype).kind == "i":
        t[rng.random(batch) < 0.2] = -100  # ignore_index
    return t.astype(dtype)


@dataclass(frozen=True)
class Spec:
    """A function with an output argument.

    make(rng, dtype, shape, axis) -> the inputs (name -> array or None), fresh;
    call(inputs, out, axis) -> (the array returned as the output, the loss or None);
    out_shape(shape, axis) -> the output's shape; aliasable: input name -> how it relates
    to the output ("full": same shape and dtype, "small": the input is smaller,
    "reduced": the output is smaller).
    """

    make: Callable
    call: Callable
    aliasable: dict
    axes: tuple = (-1, 0)
    out_shape: Callable = staticmethod(lambda shape, axis: shape)


def _normalizing(fn):
    return Spec(make=lambda rng, dt, shape, axis: {"x": _logits(rng, shape, dt)},
                call=lambda a, out, axis: (fn(a["x"], axis=axis, out=out), None),
                aliasable={"x": "full"})


def _elementwise(fn):
    return Spec(make=lambda rng, dt, shape, axis: {"x": _logits(rng, shape, dt)},
                call=lambda a, out, axis: (fn(a["x"], out=out), None),
                aliasable={"x": "full"}, axes=(-1,))


def _reduced_shape(shape, axis, keepdims):
    axis %= len(shape)
    if keepdims:
        return tuple(1 if i == axis else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i != axis)


def _logsumexp(keepdims):
    return Spec(make=lambda rng, dt, shape, axis: {"x": _logits(rng, shape, dt)},
                call=lambda a, out, axis: (
                    logitkit.logsumexp(a["x"], axis=axis, keepdims=keepdims, out=out), None),
                aliasable={"x": "reduced"},
                out_shape=lambda shape, axis: _reduced_shape(shape, axis, keepdims))


def _backward(fn, second):
    def make(rng, dt, shape, axis):
        p = _softmax64(rng, shape, axis)
        return {"grad_output": rng.standard_normal(shape).astype(dt),
                second: (p if second == "probs" else np.log(p)).astype(dt)}

    return Spec(make=make,
                call=lambda a, out, axis: (fn(a["grad_output"], a[second], axis=axis, out=out),
                                           None),
                aliasable={"grad_output": "full", second: "full"})


def _swap(loss_grad):
    loss, grad = loss_grad
    return grad, loss


def _ce_probs():
    def make(rng, dt, shape, axis):
        y = _softmax64(rng, shape, axis)
        y[rng.random(shape) < 0.2] = 0.0
        return {"logits": _logits(rng, shape, dt), "target": y.astype(dt),
                "weight": _class_weight(rng, shape[axis], dt)}

    return Spec(make=make,
                call=lambda a, out, axis: _swap(logitkit.cross_entropy(
                    a["logits"], a["target"], axis=axis, weight=a["weight"],
                    label_smoothing=0.1, reduction="none", return_grad=True, grad_out=out)),
                aliasable={"logits": "full", "target": "full", "weight": "small"})


def _ce_labels(label_dtype=np.int64, weighted=True):
    def make(rng, dt, shape, axis):
        n_cls = shape[axis]
        batch = _reduced_shape(shape, axis, False)
        return {"logits": _logits(rng, shape, dt),
                "target": _labels(rng, batch, n_cls, label_dtype),
                "weight": _class_weight(rng, n_cls, dt) if weighted else None}

    reduction = "mean" if weighted else "none"
    return Spec(make=make,
                call=lambda a, out, axis: _swap(logitkit.cross_entropy(
                    a["logits"], a["target"], axis=axis, weight=a["weight"],
                    reduction=reduction, return_grad=True, grad_out=out)),
                aliasable={"logits": "full", "target": "small", "weight": "small"})


def _bce(row_weight):
    """BCE with a full-shape weight and a per-class pos_weight, or the other way round."""
    def make(rng, dt, shape, axis):
        per_class = rng.uniform(0.5, 3.0, size=shape[-1]).astype(dt)
        full = rng.uniform(0.5, 3.0, size=shape).astype(dt)
        return {"logits": _logits(rng, shape, dt),
                "target": rng.uniform(0, 1, size=shape).astype(dt),
                "weight": per_class if row_weight else full,
                "pos_weight": full if row_weight else per_class}

    return Spec(make=make,
                call=lambda a, out, axis: _swap(logitkit.binary_cross_entropy(
                    a["logits"], a["target"], weight=a["weight"], pos_weight=a["pos_weight"],
                    reduction="none", return_grad=True, grad_out=out)),
                aliasable={"logits": "full", "target": "full",
                           "weight": "small" if row_weight else "full",
                           "pos_weight": "full" if row_weight else "small"},
                axes=(-1,))


SPECS = {
    "softmax": _normalizing(logitkit.softmax),
    "log_softmax": _normalizing(logitkit.log_softmax),
    "logsumexp": _logsumexp(False),
    "logsumexp_keepdims": _logsumexp(True),
    "sigmoid": _elementwise(logitkit.sigmoid),
    "log_sigmoid": _elementwise(logitkit.log_sigmoid),
    "special.expit": _elementwise(special.expit),
    "special.log_expit": _elementwise(special.log_expit),
    "softmax_backward": _backward(logitkit.softmax_backward, "probs"),
    "log_softmax_backward": _backward(logitkit.log_softmax_backward, "log_probs"),
    "cross_entropy[probs]": _ce_probs(),
    "cross_entropy[labels]": _ce_labels(),
    "binary_cross_entropy[full_weight]": _bce(row_weight=False),
    "binary_cross_entropy[row_weight]": _bce(row_weight=True),
}


def _patterns(relation):
    return FULL_PATTERNS if relation == "full" else SMALL_PATTERNS


# ---------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def _max_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    return f"max |diff| {np.nanmax(d) if d.size else 0:.3g}"


def _run_case(spec, name, pattern, dtype, n_cls, axis):
    """Run one aliasing case; None if it passed or does not apply, else what went wrong."""
    dtype = np.dtype(dtype)
    label = (f"{name} in {pattern}, {dtype.name}, {n_cls} classes, axis {axis}, "
             f"SIMD {logitkit._core.active_target()}")
    shape = (N_ROWS, n_cls) if axis == -1 else (n_cls, N_ROWS)
    rng = np.random.default_rng(zlib.crc32(repr((name, pattern, label)).encode()))
    values = spec.make(rng, dtype, shape, axis)
    relation = spec.aliasable[name]
    out, inp = _arrange(relation, pattern, spec.out_shape(shape, axis), dtype,
                        values[name].shape, values[name].dtype)
    if inp is None:
        return None
    inp[...] = values[name]
    assert np.array_equal(inp, values[name]), "the input view overlaps itself"
    inputs = dict(values, **{name: inp})
    # Unshared copies, taken before the aliased call overwrites its inputs.
    copies = {k: _relocate(v) for k, v in inputs.items()}
    fresh_out = _relocate(out)
    candidates = [spec.call(copies, None, axis)]
    returned, loss = spec.call(copies, fresh_out, axis)
    assert returned is fresh_out
    candidates.append((fresh_out, loss))
    try:
        returned, loss = spec.call(inputs, out, axis)
    except Exception as e:  # noqa: BLE001 -- any exception is a failure of the contract
        return f"{label}: raised {type(e).__name__}: {e}"
    if returned is not out:
        return f"{label}: did not return the output array it was given"
    for want_out, want_loss in candidates:
        if _same_bits(out, want_out) and _same_bits(loss, want_loss):
            return None
    want_out, want_loss = candidates[0]
    what = []
    if not any(_same_bits(out, c[0]) for c in candidates):
        what.append(f"output differs ({_max_diff(out, want_out)})")
    if not any(_same_bits(loss, c[1]) for c in candidates):
        what.append(f"loss differs ({_max_diff(loss, want_loss)})")
    return f"{label}: " + ", ".join(what or ["output and loss from different candidates"])


def _run_all(spec, name, pattern, dtypes=FLOAT_DTYPES, row_lengths=ROW_LENGTHS):
    failures = []
    for dtype in dtypes:
        for n_cls in row_lengths:
            for axis in spec.axes:
                problem = _run_case(spec, name, pattern, dtype, n_cls, axis)
                if problem:
                    failures.append(problem)
    return failures


def _report(failures):
    shown = "\n".join(failures[:10])
    more = f"\n... and {len(failures) - 10} more" if len(failures) > 10 else ""
    return f"{len(failures)} aliased calls went wrong:\n{shown}{more}"


# ---------------------------------------------------------------------------------------
# the in-process cases: every output against every input, every pattern
# ---------------------------------------------------------------------------------------

CASES = [
    pytest.param(func, name, pattern, id=f"{func}-{name}-{pattern}")
    for func, spec in SPECS.items()
    for name, relation in spec.aliasable.items()
    if not (func == "cross_entropy[labels]" and name == "target")  # in a child, below
    for pattern in _patterns(relation)
]


@pytest.mark.parametrize("func, name, pattern", CASES)
def test_output_sharing_memory_with_input(simd_target, func, name, pattern):
    failures = _run_all(SPECS[func], name, pattern)
    assert not failures, _report(failures)


def test_every_function_with_an_output_is_covered():
    # A public function that grows an output argument needs its line in SPECS.
    covered = {f.split("[")[0] for f in SPECS}
    with_output = set()
    for module, prefix in ((logitkit, ""), (special, "special.")):
        for fname in module.__all__:
            func = getattr(module, fname)
            if callable(func) and not isinstance(func, type):
                try:
                    params = inspect.signature(func).parameters
                except (TypeError, ValueError):
                    continue
                if {"out", "grad_out"} & set(params):
                    with_output.add(prefix + fname)
    assert with_output <= covered, f"not covered: {sorted(with_output - covered)}"


# ---------------------------------------------------------------------------------------
# class-index labels inside grad_out: in a child interpreter (this crashed)
# ---------------------------------------------------------------------------------------


def _label_family_main(pattern):
    """Entry point of the child: every target, label dtype, float dtype, row length and
    axis for one pattern. Prints CASE before each case and FAIL for each failure."""
    for target in logitkit.capabilities()["supported"]:
        logitkit._core._set_target(target)
        for label_dtype in LABEL_DTYPES:
            for weighted in (True, False):
                spec = _ce_labels(label_dtype, weighted)
                for dtype in FLOAT_DTYPES:
                    for n_cls in ROW_LENGTHS:
                        for axis in spec.axes:
                            case = (f"{np.dtype(label_dtype).name} labels, weighted={weighted}, "
                                    f"{np.dtype(dtype).name}, {n_cls} classes, axis {axis}, "
                                    f"SIMD {target}")
                            print("CASE", case, flush=True)
                            problem = _run_case(spec, "target", pattern, dtype, n_cls, axis)
                            if problem:
                                print("FAIL", f"{np.dtype(label_dtype).name} labels, "
                                      f"weighted={weighted}: {problem}", flush=True)
    return 0


def _run_child(code, timeout=120):
    """Run ``code`` in a fresh interpreter; (failures, crash description or None)."""
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code],
                          capture_output=True, text=True, timeout=timeout, cwd=TESTS_DIR)
    lines = proc.stdout.splitlines()
    failures = [line[5:] for line in lines if line.startswith("FAIL ")]
    crash = None
    if proc.returncode != 0:
        cases = [line[5:] for line in lines if line.startswith("CASE ")]
        rc = proc.returncode
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        crash = (f"the child interpreter died ({how}) during case: "
                 f"{cases[-1] if cases else '(before the first case)'}\n"
                 f"stderr:\n{proc.stderr[-2000:]}")
    return failures, crash


@pytest.mark.parametrize("pattern", list(SMALL_PATTERNS))
def test_labels_inside_grad_out(pattern):
    code = (f"import sys; sys.path.insert(0, {TESTS_DIR!r}); import test_aliasing as t; "
            f"sys.exit(t._label_family_main({pattern!r}))")
    failures, crash = _run_child(code)
    assert crash is None, crash + ("\n" + _report(failures) if failures else "")
    assert not failures, _report(failures)


def test_labels_viewed_from_grad_out_buffer():
    # The report's reproducer, verbatim, on every target.
    code = textwrap.dedent("""
        import numpy as np, logitkit
        for target in logitkit.capabilities()["supported"]:
            logitkit._core._set_target(target)
            print("CASE", target, flush=True)
            z = np.random.default_rng(0).standard_normal((64, 64))
            want_loss, want_grad = logitkit.cross_entropy(z, np.arange(64), return_grad=True)
            buf = np.zeros(64 * 64)
            labels = buf.view(np.int64)[:64]
            labels[:] = np.arange(64)
            loss, grad = logitkit.cross_entropy(z, labels, return_grad=True,
                                                grad_out=buf.reshape(64, 64))
            if not (np.array_equal(grad, want_grad) and loss == want_loss):
                print("FAIL", target, "loss", loss, "!=", want_loss, "or gradient differs",
                      flush=True)
    """)
    failures, crash = _run_child(code)
    assert crash is None, crash
    assert not failures, _report(failures)


# ---------------------------------------------------------------------------------------
# an output that overlaps itself: ValueError
# ---------------------------------------------------------------------------------------


def _self_overlapping(shape, dtype):
    """A writeable view whose elements share memory: row i starts at element i."""
    dtype = np.dtype(dtype)
    base = np.zeros(int(np.prod(shape)) + 64, dtype=dtype)
    strides = (dtype.itemsize,) * len(shape)
    out = np.lib.stride_tricks.as_strided(base, shape=shape, strides=strides)
    assert out.flags.writeable
    return out


def _self_overlap_calls():
    x = np.random.default_rng(7).standard_normal((4, 8))
    p = logitkit.softmax(x)
    y = np.random.default_rng(8).uniform(0, 1, size=(4, 8))
    labels = np.array([0, 3, 7, 1])
    return {
        "softmax": lambda dt, out: logitkit.softmax(x.astype(dt), out=out),
        "log_softmax": lambda dt, out: logitkit.log_softmax(x.astype(dt), out=out),
        "softmax axis 0": lambda dt, out: logitkit.softmax(x.astype(dt), axis=0, out=out),
        "logsumexp": lambda dt, out: logitkit.logsumexp(
            x.astype(dt), out=np.lib.stride_tricks.as_strided(out, shape=(4,), strides=(0,))),
        "logsumexp keepdims": lambda dt, out: logitkit.logsumexp(
            x.astype(dt), keepdims=True,
            out=np.lib.stride_tricks.as_strided(out, shape=(4, 1), strides=(0, 0))),
        "sigmoid": lambda dt, out: logitkit.sigmoid(x.astype(dt), out=out),
        "log_sigmoid": lambda dt, out: logitkit.log_sigmoid(x.astype(dt), out=out),
        "softmax_backward": lambda dt, out: logitkit.softmax_backward(
            x.astype(dt), p.astype(dt), out=out),
        "log_softmax_backward": lambda dt, out: logitkit.log_softmax_backward(
            x.astype(dt), np.log(p).astype(dt), out=out),
        "cross_entropy labels": lambda dt, out: logitkit.cross_entropy(
            x.astype(dt), labels, return_grad=True, grad_out=out),
        "cross_entropy probs": lambda dt, out: logitkit.cross_entropy(
            x.astype(dt), p.astype(dt), return_grad=True, grad_out=out),
        "binary_cross_entropy": lambda dt, out: logitkit.binary_cross_entropy(
            x.astype(dt), y.astype(dt), return_grad=True, grad_out=out),
    }


SELF_OVERLAP_CALLS = list(_self_overlap_calls())


# logitkit.special.expit / log_expit are left out on purpose: they follow NumPy's ufunc
# rules for ``out`` (as SciPy's ufuncs, which accept a self-overlapping out).
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("func", SELF_OVERLAP_CALLS)
def test_self_overlapping_output_is_rejected(func, dtype):
    out = _self_overlapping((4, 8), dtype)
    # logsumexp's out is a stride-0 view of it: every element is the same one.
    with pytest.raises(ValueError) as excinfo:
        _self_overlap_calls()[func](dtype, out)
    message = str(excinfo.value)
    assert re.search(r"overlap", message, re.I) and re.search(
        r"itself|self|its own", message, re.I), (
        f"the ValueError does not say that the output overlaps itself: {message!r}")
