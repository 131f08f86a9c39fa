#!/usr/bin/env python3
"""Differential fuzzer for logitkit: "no crash and no silent wrong answer".

A library (no pytest needed) and a command-line script.

Each case is generated from ``(seed, index)`` alone, as a small JSON-able *spec* (function,
shape, axis, dtype, memory layout, value profile, options, aliasing pattern, deliberate
bad input), which ``build`` turns into arrays and a call.  Every array operand lives in a
byte buffer of our own (``Mem``), so that aliasing patterns (``out`` is ``x``, ``out`` is a
shifted or transposed view of ``x``'s memory, class weights or int64 labels stored inside
``grad_out``, a self-overlapping ``out`` made with ``as_strided``, ...) can be built, and
undone again: the *un-aliased* call gives every operand a private copy of its buffer,
with the same offset, strides and alignment.

Checks (``run_case``):

- an exception is accepted only for deliberately bad input, and must be of the expected
  type (TypeError / ValueError / IndexError / AxisError); a self-overlapping output may
  raise ValueError; anything else is a failure, as is a warning of any kind escaping the
  call (``filterwarnings = error`` in the test suite);
- the results (type, shape, dtype, values) agree with ``tests/reference.py`` (float64)
  within the tolerances the test suite uses (``helpers.tolerance``,
  ``loss_helpers.loss_tolerance``): NaN and inf exactly where the reference has them,
  finite results within tolerance; where the finite reference does not fit in the result
  dtype, an infinity of the right sign is accepted;
- inputs that are not outputs are not modified (byte for byte, outside the memory of the
  outputs);
- a call whose outputs overlap inputs gives exactly (bit for bit, NaN == NaN) the results
  of the same call with copied inputs and fresh outputs; for a self-overlapping output,
  every memory location holds one of the results mapped to it.

Where the comparison is not a literal call of the reference (each place says why):
cross_entropy's logits are shifted by their row maximum before the reference sees them
(``_shift_rows``: the reference's unshifted ``lse - z`` cancels in float64 for 1e30
logits); the backward passes' tolerance scale takes the sums' terms as ``sum |g p|`` /
``sum |g|`` (``term_scale``); float64 operands of the functions whose float64 reference
overflows in intermediates are capped at 1e150 (``_cap``); softmax_jacobian entries of
non-finite probabilities are not compared (``_build_jacobian``); zero classes get the
empty-sum answer the reference cannot compute (``_expect_no_classes``); SciPy's
special-value rules are applied for ``special.log_softmax`` (``_scipy_plus_inf``).

Crashes and hangs: with ``--subprocess`` each batch runs in a child process that announces
every case before running it; a child that dies or times out is reported as a crash /
hang of the case it was running, and the batch continues after it.

Usage::

    python tests/fuzzing.py --seed 1 --cases 2000 [--targets all] [--subprocess]
    python tests/fuzzing.py --seed 1 --cases 2000 --dtypes float16,bfloat16  # 16-bit logits
    python tests/fuzzing.py --replay '<spec json>'      # one case, with a full report

Exit status 1 if any case failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.exceptions import AxisError

try:  # bfloat16 is optional: without ml_dtypes its cases are float16 cases
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import logitkit  # noqa: E402
from logitkit import special  # noqa: E402

import reference  # noqa: E402
from helpers import tolerance as _softmax_tolerance  # noqa: E402
from loss_helpers import loss_tolerance as _loss_tolerance  # noqa: E402

__all__ = ["FUNCS", "generate_spec", "build", "run_case", "fuzz", "spec_from_bytes",
           "describe", "Failure"]

FUNCS = [
    "softmax", "log_softmax", "logsumexp", "cross_entropy", "nll_loss", "sigmoid",
    "log_sigmoid", "binary_cross_entropy", "softmax_backward", "log_softmax_backward",
    "softmax_jacobian", "entropy", "kl_divergence",
    "special.softmax", "special.log_softmax", "special.logsumexp", "special.expit",
    "special.log_expit",
]
ELEMENTWISE = ("sigmoid", "log_sigmoid", "special.expit", "special.log_expit")
ANY_NDIM = ELEMENTWISE + ("binary_cross_entropy", "special.softmax",
                          "special.log_softmax", "special.logsumexp")

BFLOAT16 = np.dtype(ml_dtypes.bfloat16) if ml_dtypes is not None else None
FLOAT_DTYPES = ["float32", "float64", "float16", ">f4", ">f8"] + (
    ["bfloat16"] if BFLOAT16 is not None else [])
HALF_NAMES = ("float16", "bfloat16")
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "bool"]
LABEL_DTYPES = ["int64", "int64", "int64", "int32", "int16", "int8", "uint8", "uint16",
                "uint32", "uint64", ">i8", "intp"]
LAYOUTS = ["C", "C", "C", "C", "F", "T", "every_other", "last_step2", "reversed",
           "reversed_first", "moveaxis", "broadcast"]
PROFILES = ["normal"] * 9 + ["special"] * 3 + ["masked"] * 2 + ["huge"] * 2 + [
    "allneginf", "constant", "small_ints", "tiny", "offsets"]
ROW_LENGTHS_LONG = [127, 128, 129, 255, 256, 257, 1000, 1023, 1025, 4096, 4099]
ROW_LENGTHS_VERY_LONG = [10000, 32769, 70000]
OTHER_DIMS = [1, 1, 1, 2, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33]

EXPECTED_BAD = (TypeError, ValueError, IndexError, AxisError)


class Infeasible(Exception):
    """The spec cannot be built (only raised while shrinking)."""


# --- bfloat16 (ml_dtypes.bfloat16): NumPy knows it as a dtype of kind "V", np.finfo does
# not know it; these helpers treat it as the float format it is.


def _dt(name):
    """The dtype a spec names ("bfloat16" is generated only when ml_dtypes is installed;
    a spec naming it cannot be built without it)."""
    if name == "bfloat16" and BFLOAT16 is None:
        raise SystemExit("this case uses bfloat16: pip install ml_dtypes")
    return np.dtype(name)


def _avail(name):
    """``name``, or float16 for bfloat16 when ml_dtypes is not installed (the generator
    makes the same draws either way)."""
    return "float16" if name == "bfloat16" and BFLOAT16 is None else name


def is_bf16(dtype):
    return BFLOAT16 is not None and np.dtype(dtype) == BFLOAT16


def is_float(dtype):
    """float16/32/64 (any byte order) or bfloat16."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or is_bf16(dtype)


# Formerly a known kernel bug, accepted unless --strict-known: the kernels' exp on
# shifted arguments flushed results below 2**-126 (bfloat16's smallest normal) to zero.
# Fixed (bfloat16 outputs take the general exp); the acceptance is off, --strict-known
# is kept as a no-op for old command lines.
ACCEPT_KNOWN_BF16_FLUSH = False
_BF16_TINY = 2.0 ** -126


def dtype_max(dtype):
    """The largest finite value of a float dtype (ml_dtypes.finfo for bfloat16)."""
    dtype = np.dtype(dtype)
    if is_bf16(dtype):
        return float(ml_dtypes.finfo(dtype).max)
    return float(np.finfo(dtype.newbyteorder("=")).max)


# =======================================================================================
# spec generation
# =======================================================================================


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _maybe(rng, p):
    return bool(rng.random() < p)


def _gen_shape(rng, func, small):
    if not small and func in ("binary_cross_entropy", "cross_entropy", "logsumexp") \
            and _maybe(rng, 0.03):
        # a few big arrays: sums over ~1e6 terms (float32 accumulation)
        shape = _pick(rng, [[1 << 20], [256, 4099], [300_000], [3, 1 << 18]])
        axis = -1 if _maybe(rng, 0.5) else len(shape) - 1
        return list(shape), axis
    if func in ANY_NDIM:
        ndim = int(rng.choice([0, 1, 2, 3, 4], p=[0.08, 0.32, 0.32, 0.18, 0.10]))
    else:
        ndim = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.4, 0.2, 0.1]))
    if ndim == 0:
        return [], 0
    r = rng.random()
    if r < 0.12:
        n = _pick(rng, [0, 1, 2])
    elif r < 0.55:
        n = int(rng.integers(1, 71))
    elif r < 0.75:
        n = int(rng.integers(1, 17))
    elif r < 0.95 or small:
        n = _pick(rng, ROW_LENGTHS_LONG)
    else:
        n = _pick(rng, ROW_LENGTHS_VERY_LONG)
    if func == "softmax_jacobian":
        n = min(n, 70)
    cap = 4000 if small else 150_000
    if func == "softmax_jacobian":
        cap = 20_000
    shape = []
    for _ in range(ndim - 1):
        d = 0 if _maybe(rng, 0.04) else _pick(rng, OTHER_DIMS)
        shape.append(d)
    axis_pos = int(rng.integers(ndim))
    shape.insert(axis_pos, n)
    # cap the total size by shrinking the other dims
    def total():
        t = 1
        for i, d in enumerate(shape):
            t *= d if i != axis_pos else max(d, 1)
        return t * (n if func == "softmax_jacobian" else 1)
    while total() > cap:
        i = max((i for i in range(ndim) if i != axis_pos), key=lambda i: shape[i],
                default=None)
        if i is None or shape[i] <= 1:
            break
        shape[i] = max(1, shape[i] // 2)
    axis = axis_pos - ndim if _maybe(rng, 0.5) else axis_pos
    return shape, axis


def _gen_layout(rng):
    return {"layout": _pick(rng, LAYOUTS), "unaligned": _maybe(rng, 0.08),
            "readonly": _maybe(rng, 0.08)}


def _gen_dtype(rng, allow_int=True):
    r = rng.random()
    if r < 0.33:
        return "float32"
    if r < 0.62:
        return "float64"
    if r < 0.72:
        return "float16"
    if r < 0.79:
        return _avail("bfloat16")
    if r < 0.84:
        return ">f4"
    if r < 0.88 or not allow_int:
        return ">f8"
    return _pick(rng, INT_DTYPES)


def generate_spec(rng, small=False):
    """A random case spec (a dict of JSON-able values) from the Generator ``rng``."""
    func = _pick(rng, FUNCS)
    shape, axis = _gen_shape(rng, func, small)
    spec = {
        "func": func, "shape": shape, "axis": axis, "dtype": _gen_dtype(rng),
        "x": _gen_layout(rng), "values": _pick(rng, PROFILES),
        "data_seed": int(rng.integers(2**31)), "opts": {}, "alias": None, "bad": None,
    }
    o = spec["opts"]
    bad_p = 0.08
    if func in ("softmax", "log_softmax", "logsumexp", "sigmoid", "log_sigmoid"):
        if func == "logsumexp" and _maybe(rng, 0.3):
            o["keepdims"] = True
        if _maybe(rng, 0.3):
            o["out"] = _gen_layout(rng)
            if _maybe(rng, 0.45):
                spec["alias"] = _pick(rng, ["out_is_x", "out_shifted", "out_reversed",
                                            "out_swapaxes", "self_overlap",
                                            "self_overlap_at_x"]
                                      if func != "logsumexp" else
                                      ["out_in_x", "out_shifted_into_x", "self_overlap"])
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["axis", "axis_type", "complex", "object", "out_dtype",
                                      "out_shape", "out_readonly"]
                                if func not in ("sigmoid", "log_sigmoid") else
                                ["complex", "object", "out_dtype", "out_shape",
                                 "out_readonly"])
    elif func in ("cross_entropy", "nll_loss"):
        prob = func == "cross_entropy" and _maybe(rng, 0.35)
        o["target_kind"] = "prob" if prob else "labels"
        o["target"] = _gen_layout(rng)
        o["target_dtype"] = (_avail(_pick(rng, ["float32", "float64", "float64", "float16",
                                                 ">f4", "bfloat16"]))
                             if prob else _pick(rng, LABEL_DTYPES))
        o["target_values"] = "arbitrary" if prob and _maybe(rng, 0.1) else "valid"
        if _maybe(rng, 0.35):
            o["weight"] = {"dtype": _avail(_pick(rng, ["float64", "float32", "int64",
                                                        "float16", "bfloat16"])),
                           "zeros": _maybe(rng, 0.2), **_gen_layout(rng)}
        if not prob and _maybe(rng, 0.4):
            o["ignore_index"] = _pick(rng, ["default", -1, "class", "above", 2**40, 255])
        if func == "cross_entropy" and _maybe(rng, 0.35):
            o["label_smoothing"] = _pick(rng, [0.0, 0.1, 0.5, 1.0, "random"])
        o["reduction"] = _pick(rng, ["mean", "mean", "sum", "none", "default"])
        if func == "nll_loss":
            o["log_probs"] = "arbitrary" if _maybe(rng, 0.2) else "log_softmax"
        if func == "cross_entropy" and _maybe(rng, 0.55):
            o["return_grad"] = True
            if _maybe(rng, 0.5):
                o["grad_out"] = _gen_layout(rng)
                if _maybe(rng, 0.55):
                    choices = ["grad_out_is_logits", "grad_out_shifted_logits",
                               "weight_in_grad_out", "labels_in_grad_out",
                               "self_overlap"]
                    if prob:
                        choices = ["grad_out_is_target", "grad_out_shifted_target",
                                   "grad_out_is_logits", "weight_in_grad_out",
                                   "self_overlap"]
                    spec["alias"] = _pick(rng, choices)
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["axis", "complex", "label_range", "label_huge",
                                      "target_shape", "reduction", "smoothing", "weight_shape",
                                      "bool_target", "grad_out_dtype", "grad_out_readonly"]
                                if not prob else
                                ["axis", "complex", "target_shape", "reduction", "smoothing",
                                 "weight_shape", "grad_out_dtype"])
            if spec["bad"] == "label_huge" and _maybe(rng, 0.6):
                o["target_dtype"] = "uint64"  # labels >= 2**63
    elif func == "binary_cross_entropy":
        o["target_dtype"] = _avail(_pick(rng, ["same", "same", "float64", "float32", "int64",
                                               "bool", "float16", "bfloat16"]))
        o["target"] = _gen_layout(rng)
        if _maybe(rng, 0.35):
            o["weight"] = _pick(rng, ["scalar", "per_class", "full"])
        if _maybe(rng, 0.35):
            o["pos_weight"] = _pick(rng, ["scalar", "per_class", "full", "column"])
        o["reduction"] = _pick(rng, ["mean", "sum", "none", "default"])
        if _maybe(rng, 0.55):
            o["return_grad"] = True
            if _maybe(rng, 0.5):
                o["grad_out"] = _gen_layout(rng)
                if _maybe(rng, 0.55):
                    spec["alias"] = _pick(rng, ["grad_out_is_logits", "grad_out_is_target",
                                                "grad_out_is_weight",
                                                "pos_weight_in_grad_out",
                                                "grad_out_shifted_logits", "self_overlap"])
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["complex", "target_shape", "reduction", "weight_shape",
                                      "grad_out_dtype"])
    elif func in ("softmax_backward", "log_softmax_backward"):
        o["g_dtype"] = _gen_dtype(rng)
        o["g"] = _gen_layout(rng)
        o["g_values"] = _pick(rng, ["normal", "normal", "special", "huge"])
        o["y_values"] = "arbitrary" if _maybe(rng, 0.15) else "valid"
        if _maybe(rng, 0.35):
            o["out"] = _gen_layout(rng)
            if _maybe(rng, 0.5):
                spec["alias"] = _pick(rng, ["out_is_g", "out_is_y", "out_shifted_y",
                                            "out_swapaxes_g", "self_overlap"])
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["axis", "shape_mismatch", "out_dtype", "out_shape"])
    elif func == "softmax_jacobian":
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["axis", "complex"])
    elif func == "entropy":
        if _maybe(rng, 0.4):
            o["base"] = _pick(rng, [2, 10, math.e, 0.5, 3.7])
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["axis", "complex", "base"])
    elif func == "kl_divergence":
        o["q_dtype"] = _gen_dtype(rng)
        o["q"] = _gen_layout(rng)
        o["q_values"] = _pick(rng, PROFILES)
        o["same_array"] = _maybe(rng, 0.05)
        if _maybe(rng, 0.3):
            o["base"] = _pick(rng, [2, 10, 0.5])
        o["reduction"] = _pick(rng, ["none", "sum", "mean", "default"])
        o["return_grad"] = _maybe(rng, 0.5)
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["axis", "shape_mismatch", "base", "reduction"])
    elif func in ("special.softmax", "special.log_softmax", "special.logsumexp"):
        r = rng.random()
        nd = len(shape)
        if r < 0.3:
            spec["axis"] = None
        elif r < 0.45 and nd >= 2:
            k = int(rng.integers(2, nd + 1))
            axes = sorted(rng.choice(nd, size=k, replace=False).tolist())
            spec["axis"] = [a - nd if _maybe(rng, 0.3) else a for a in axes]
        elif r < 0.5:
            spec["axis"] = []
        elif nd == 0:
            spec["axis"] = _pick(rng, [None, 0, -1])
        if func == "special.logsumexp":
            if _maybe(rng, 0.3):
                o["keepdims"] = True
            if _maybe(rng, 0.25):
                o["return_sign"] = True
            if _maybe(rng, 0.15):
                o["b"] = _pick(rng, ["full", "scalar", "last"])
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["axis", "complex", "object", "dup_axis"])
    elif func in ("special.expit", "special.log_expit"):
        if _maybe(rng, 0.2):
            o["dtype"] = _pick(rng, ["float32", "float64"])
        elif _maybe(rng, 0.3):
            o["out"] = _gen_layout(rng)
            if _maybe(rng, 0.5):
                spec["alias"] = _pick(rng, ["out_is_x", "out_shifted", "out_reversed",
                                            "self_overlap"])
        if _maybe(rng, bad_p):
            spec["bad"] = _pick(rng, ["complex", "out_readonly"])
    return spec


# =======================================================================================
# memory: operands as views into byte buffers of our own
# =======================================================================================

PAD_ELEMS = 4  # slack on both sides of every buffer, for shifted views


class Mem:
    """Byte buffers (64-byte aligned, or at +1 for unaligned operands) and views of them."""

    def __init__(self):
        self.bufs = []

    def alloc(self, nbytes, misalign=0):
        raw = np.zeros(nbytes + 128, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64 + misalign
        buf = raw[start:start + nbytes]
        self.bufs.append(buf)
        return buf

    def locate(self, arr):
        """(buffer index, byte offset) of the ndarray ``arr``, or None."""
        if not isinstance(arr, np.ndarray):
            return None
        lo, hi = np.lib.array_utils.byte_bounds(arr)
        for i, b in enumerate(self.bufs):
            blo = b.ctypes.data
            if blo <= lo and hi <= blo + b.size:
                return i, arr.__array_interface__["data"][0] - blo
        return None

    def snapshot(self):
        return [b.copy() for b in self.bufs]


def _view(buf, shape, dtype, offset, strides, writeable=True):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    strides = (strides,) if isinstance(strides, int) else tuple(strides)
    v = np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset, strides=strides)
    if not writeable:
        v.flags.writeable = False
    return v


def _aligned_copy(buf, misalign):
    """A copy of the byte buffer ``buf`` at ``misalign`` modulo 64."""
    raw = np.zeros(buf.size + 128, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + misalign
    new = raw[start:start + buf.size]
    new[...] = buf
    return new


def clone(arr, mem, snapshot):
    """``arr`` rebuilt on a private copy of (the snapshot of) its buffer: same offset,
    strides, alignment and writeability, no memory shared with anything."""
    loc = mem.locate(arr)
    if loc is None:
        return arr if not isinstance(arr, np.ndarray) else arr.copy()
    i, off = loc
    # at the address of the original buffer modulo 64 (the snapshot is elsewhere)
    return _view(_aligned_copy(snapshot[i], mem.bufs[i].ctypes.data % 64), arr.shape,
                 arr.dtype, off, arr.strides, arr.flags.writeable)


def _cast_into(view, values):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if view.dtype.kind in "biu" and np.asarray(values).dtype.kind == "f":
            values = np.nan_to_num(values)
        view[...] = values


def place(mem, values, dtype, layout="C", unaligned=False, readonly=False, rng=None):
    """A new array equal to ``values`` (cast to ``dtype``) with the memory ``layout``
    (see helpers.with_layout; plus "broadcast": stride 0 along one axis)."""
    dtype = _dt(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    values = np.asarray(values)
    shape = values.shape
    nd = len(shape)
    if nd == 0 and layout not in ("C", "broadcast"):
        layout = "C"
    if layout == "broadcast":
        if nd == 0 or 0 in shape:
            layout = "C"
        else:
            ax = int(rng.integers(nd)) if rng is not None else 0
            small_shape = tuple(1 if i == ax else n for i, n in enumerate(shape))
            small = place(mem, np.take(values, [0], axis=ax).reshape(small_shape), dtype,
                          "C", unaligned, False)
            return np.broadcast_to(small, shape)  # read-only, stride 0
    if layout == "C":
        base_shape, f = shape, (lambda b: b)
    elif layout == "F":
        base_shape, f = shape[::-1], (lambda b: b.T)
    elif layout == "T":
        base_shape, f = shape[::-1], (lambda b: b.T)
    elif layout == "every_other":
        base_shape = tuple(2 * n for n in shape)
        f = (lambda b: b[(slice(None, None, 2),) * nd])
    elif layout == "last_step2":
        base_shape = shape[:-1] + (2 * shape[-1],)
        f = (lambda b: b[..., ::2])
    elif layout == "reversed":
        base_shape, f = shape, (lambda b: b[(slice(None, None, -1),) * nd])
    elif layout == "reversed_first":
        base_shape, f = shape, (lambda b: b[::-1])
    elif layout == "moveaxis":
        base_shape = (shape[-1],) + shape[:-1]
        f = (lambda b: np.moveaxis(b, 0, -1))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    pad = PAD_ELEMS * dtype.itemsize
    nbytes = math.prod(base_shape) * dtype.itemsize + 2 * pad
    buf = mem.alloc(nbytes, 1 if unaligned else 0)
    base = _view(buf, base_shape, dtype, pad, _c_strides(base_shape, dtype.itemsize))
    view = f(base)
    assert view.shape == shape
    _cast_into(view, values)
    if readonly:
        view.flags.writeable = False
    return view


def _c_strides(shape, itemsize):
    strides, s = [], itemsize
    for n in reversed(shape):
        strides.append(s)
        s *= max(n, 1)
    return tuple(reversed(strides))


def shifted(mem, arr, shift):
    """A view of ``arr``'s buffer with ``arr``'s shape and strides, ``shift`` elements
    further on (may be negative), or None if it leaves the buffer."""
    loc = mem.locate(arr)
    if loc is None:
        return None
    i, off = loc
    buf = mem.bufs[i]
    new_off = off + shift * arr.dtype.itemsize
    lo, hi = np.lib.array_utils.byte_bounds(arr)
    start = arr.__array_interface__["data"][0]
    if new_off + (lo - start) < 0 or new_off + (hi - start) > buf.size:
        return None
    return _view(buf, arr.shape, arr.dtype, new_off, arr.strides)


def self_overlapping(mem, shape, dtype, at=None, rng=None):
    """A writeable array of ``shape`` whose elements share memory (as_strided: one
    stride 0, or strides of one element on two axes); in a new buffer, or starting at
    the data of the array ``at``."""
    dtype = np.dtype(dtype)
    nd = len(shape)
    if nd == 0 or math.prod(shape) <= 1:
        return None
    strides = list(_c_strides(shape, dtype.itemsize))
    big = [i for i, n in enumerate(shape) if n > 1]
    if nd >= 2 and len(big) >= 2 and (rng is None or _maybe(rng, 0.5)):
        strides[big[0]] = dtype.itemsize  # rows that start one element apart
        strides[big[1]] = dtype.itemsize
    else:
        strides[big[0]] = 0
    extent = sum((n - 1) * s for n, s in zip(shape, strides)) + dtype.itemsize
    if at is not None and at.dtype == dtype:
        loc = mem.locate(at)
        if loc is not None and at.flags.writeable:
            i, off = loc
            buf = mem.bufs[i]
            if off + extent <= buf.size:
                return np.lib.stride_tricks.as_strided(
                    _view(buf, (buf.size - off) // dtype.itemsize, dtype, off,
                          (dtype.itemsize,)), shape, strides)
    buf = mem.alloc(extent + 2 * PAD_ELEMS * dtype.itemsize)
    flat = _view(buf, (buf.size - PAD_ELEMS * dtype.itemsize) // dtype.itemsize, dtype,
                 PAD_ELEMS * dtype.itemsize, (dtype.itemsize,))
    flat[...] = 0
    return np.lib.stride_tricks.as_strided(flat, shape, strides)


def _internal_overlap(arr):
    offs = _byte_offsets(arr)
    return len(np.unique(offs)) < offs.size


def _byte_offsets(arr):
    offs = np.zeros(arr.shape, dtype=np.int64)
    for ax, (n, s) in enumerate(zip(arr.shape, arr.strides)):
        shp = [1] * arr.ndim
        shp[ax] = n
        offs = offs + (np.arange(n, dtype=np.int64) * s).reshape(shp)
    return offs.reshape(-1)


# =======================================================================================
# values
# =======================================================================================


def _finfo_huge(dtype):
    dtype = np.dtype(dtype)
    if is_bf16(dtype):  # float32's exponent range, 8 significant bits
        return [3e38, 3.3e38, dtype_max(dtype), 1e30]
    if dtype.kind != "f" or dtype.itemsize == 8:
        return [1e308, 1.7e308, 3.3e38, 1e30]
    if dtype.itemsize == 4:
        return [3e38, 3.3e38, float(np.finfo(np.float32).max), 1e30]
    return [6e4, 65504.0, 3e4]


def gen_values(rng, shape, dtype, profile, axis=-1, cap=None):
    """float64 (or integer, for integer dtypes) values of ``shape`` for ``dtype``;
    ``cap``: the largest finite magnitude (float dtypes)."""
    v = _gen_values(rng, shape, dtype, profile, axis)
    if cap is not None and is_float(dtype):
        v = np.where(np.isfinite(v), np.clip(v, -cap, cap), v)
    return v


def _cap(func, dtype):
    """The magnitude cap for float64 operands of functions whose float64 reference
    overflows in intermediates (sums of products, differences of log-probabilities, and
    nll_loss's sums of losses of both signs, which overflow or not depending on the
    order of summation): there the reference gives NaN (inf - inf) or inf where the
    true result is +-inf or finite, so those inputs could not be judged.  float32 / float16 operands are not capped: their
    float64 reference never overflows, and float32 intermediate overflow is a bug."""
    if np.dtype(dtype).itemsize == 8 and func in (
            "softmax_backward", "log_softmax_backward", "softmax_jacobian",
            "kl_divergence", "nll_loss"):
        return 1e150
    return None


def _gen_values(rng, shape, dtype, profile, axis=-1):
    dtype = _dt(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    shape = tuple(shape)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if profile in ("huge", "special") and _maybe(rng, 0.5):
            lo, hi = int(info.min), int(info.max)
            v = rng.integers(0, 2, size=shape)
            return np.where(v == 1, np.array(hi, dtype), np.array(lo, dtype))
        lo = max(int(info.min), -50)
        hi = min(int(info.max), 50)
        return rng.integers(lo, hi + 1, size=shape).astype(dtype)
    x = rng.standard_normal(shape)
    nd = len(shape)
    if nd and x.size:
        ax = axis % nd
        row_shape = tuple(1 if i == ax else n for i, n in enumerate(shape))
        scale = rng.choice([0.01, 1.0, 4.0, 30.0], size=row_shape)
        offset = rng.choice([0.0, 5.0, -40.0, 300.0, -7.5], size=row_shape)
        x = x * scale + offset
    if profile == "normal" or x.size == 0:
        return x
    huge = _finfo_huge(dtype)
    if profile == "special":
        pool = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, huge[0], -huge[0], huge[1],
                         -huge[1], 1e-30, -1e-30, 5e-324, 1e4, -1e4, 88.7, -104.0, 710.0])
        mask = rng.random(shape) < _pick(rng, [0.02, 0.1, 0.5])
        return np.where(mask, rng.choice(pool, size=shape), x)
    if profile == "masked":
        mask = rng.random(shape) < 0.3
        x = np.where(mask, -np.inf, x)
        if nd and x.size:
            rows = rng.random(tuple(1 if i == axis % nd else n
                                    for i, n in enumerate(shape))) < 0.2
            x = np.where(rows, -np.inf, x)
        return x
    if profile == "huge":
        h = _pick(rng, huge)
        return rng.choice([h, -h, h * 0.5, -h * 0.9, 0.0, 1.0], size=shape)
    if profile == "allneginf":
        return np.full(shape, -np.inf)
    if profile == "constant":
        return np.full(shape, _pick(rng, [0.0, 1.0, -3.5, 1e4, huge[0]]))
    if profile == "small_ints":
        return rng.integers(-3, 4, size=shape).astype(np.float64)
    if profile == "tiny":
        return x * _pick(rng, [1e-30, 1e-300, 1e-40])
    if profile == "offsets":
        return x + _pick(rng, [1e4, -1e4, 1e6, 88.0, -88.0])
    raise ValueError(profile)


def _axis_index(axis, ndim):
    return axis % ndim


def _batch_shape(shape, ax):
    return tuple(n for i, n in enumerate(shape) if i != ax)


def _result_dtype(dtype):
    dtype = np.dtype(dtype)
    if is_bf16(dtype):
        return dtype
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


def _prob_values(rng, shape, ax):
    y = rng.random(shape) ** 3
    y = np.where(rng.random(shape) < 0.3, 0.0, y)
    y = np.moveaxis(y, ax, -1).copy()
    if y.size:
        first = rng.integers(0, y.shape[-1], size=y.shape[:-1])
        np.put_along_axis(y, first[..., None], 1.0, axis=-1)
        y = y / np.sum(y, axis=-1, keepdims=True)
    return np.moveaxis(y, -1, ax)


# =======================================================================================
# the call and its expected results
# =======================================================================================


@dataclass
class Expect:
    """One checked result: ``path`` into the returned value (() is the value itself)."""
    name: str
    path: tuple
    ref: object  # float64 array
    kind: str    # softmax | log_softmax | logsumexp | loss | grad | exact
    dtype: object
    scale: object = None
    scalar: object = None  # True: must be a NumPy scalar; False: an ndarray; None: either
    native: bool = True    # the dtype must be native (not just equal kind and size)
    mask: object = None    # bool array: the only elements whose values are checked


@dataclass
class Call:
    spec: dict
    fname: str
    fn: object
    args: list
    kwargs: dict
    outputs: dict = field(default_factory=dict)   # name -> array written by the call
    returns: dict = field(default_factory=dict)   # output name -> path where it is returned
    must_raise: tuple = ()       # deliberately bad input: one of these must be raised
    may_raise: tuple = ()        # allowed, not required
    expect: object = None        # callable(pristine kwargs/args) -> list[Expect]
    mem: Mem = None
    notes: list = field(default_factory=list)
    allowed_warnings: tuple = ()  # substrings of warnings that NumPy / SciPy give too

    def operands(self):
        """(name, value) of every argument."""
        items = [(f"arg{i}", a) for i, a in enumerate(self.args)]
        items += list(self.kwargs.items())
        return items


def _func(fname):
    if fname.startswith("special."):
        return getattr(special, fname.split(".", 1)[1])
    return getattr(logitkit, fname)


def _out_status(out, shape, dtype):
    """How the library may treat ``out``: "ok", "maybe" (byte-swapped: rejected or
    correct) or "bad" (must raise)."""
    if out.shape != tuple(shape) or not out.flags.writeable:
        return "bad"
    if out.dtype == dtype:
        return "ok"
    if out.dtype.newbyteorder("=") == dtype:
        return "maybe"
    return "bad"


def _apply_out_status(call, status):
    if status == "bad":
        call.must_raise = call.must_raise + (TypeError, ValueError)
    elif status == "maybe":
        call.may_raise = (TypeError, ValueError)


def _x(spec, mem, rng, dtype=None, values=None, shape=None, layout=None, axis=None):
    dtype = dtype or spec["dtype"]
    shape = spec["shape"] if shape is None else shape
    ax = spec["axis"] if axis is None else axis
    if not isinstance(ax, int):
        ax = -1
    if values is None:
        values = gen_values(rng, shape, dtype, spec["values"], ax if len(shape) else -1,
                            cap=_cap(spec["func"], dtype))
    lay = layout or spec["x"]
    return place(mem, values, dtype, lay["layout"], lay["unaligned"], lay["readonly"], rng)


def _make_out(call, spec, mem, rng, x, shape, dtype, lay, kind="out"):
    """An ``out`` array for the result of ``shape`` / ``dtype``, following spec["alias"]."""
    alias = spec["alias"]
    out = None
    if alias in ("out_is_x", "out_is_g") and x is not None:
        out = x
    elif alias in ("out_shifted", "out_shifted_y") and x is not None:
        out = shifted(mem, x, _pick(rng, [1, -1, 2, 3]))
    elif alias == "out_reversed" and x is not None and x.ndim:
        out = x[(slice(None, None, -1),) * x.ndim]
    elif alias in ("out_swapaxes", "out_swapaxes_g") and x is not None and x.ndim >= 2:
        out = np.swapaxes(x, -1, -2)
        if out.shape != x.shape:
            out = None
    elif alias == "self_overlap":
        out = self_overlapping(mem, shape, dtype, rng=rng)
    elif alias == "self_overlap_at_x" and x is not None:
        out = self_overlapping(mem, shape, dtype, at=x, rng=rng)
    if out is None:
        if alias is not None and alias not in ("out_in_x", "out_shifted_into_x"):
            call.notes.append(f"alias {alias} not applicable: fresh out")
            spec["alias"] = None
        out = place(mem, np.zeros(shape), dtype, lay["layout"], lay["unaligned"],
                    lay["readonly"], rng)
    if spec["alias"] and spec["alias"].startswith("self_overlap"):
        call.may_raise = call.may_raise + (ValueError,)
    return out


def _square_last_two(spec):
    """Make the last two dims equal (for out = x.swapaxes(-1, -2)): the smaller one."""
    n = min(spec["shape"][-1], spec["shape"][-2])
    spec["shape"][-1] = spec["shape"][-2] = n


def _bad_axis(rng, ndim):
    return _pick(rng, [ndim, -ndim - 1, ndim + 3, 99])


def build(spec):
    """Turn a spec into a ``Call`` (deterministic: the data come from spec["data_seed"])."""
    spec = json.loads(json.dumps(spec))  # a private copy; build may adjust it
    if BFLOAT16 is None and "bfloat16" in json.dumps(spec):
        raise SystemExit("this case uses bfloat16: pip install ml_dtypes")
    rng = np.random.default_rng(spec["data_seed"])
    mem = Mem()
    fname = spec["func"]
    b = _BUILDERS.get(fname) or _BUILDERS[fname.split(".")[0] if "." not in fname
                                           else fname]
    call = b(spec, mem, rng)
    call.mem = mem
    call.spec = spec
    return call


# --- softmax, log_softmax, logsumexp, sigmoid, log_sigmoid ------------------------------


def _build_normalize(spec, mem, rng):
    fname = spec["func"]
    o = spec["opts"]
    bad = spec["bad"]
    elementwise = fname in ("sigmoid", "log_sigmoid")
    shape = tuple(spec["shape"])
    if not elementwise and len(shape) == 0:
        shape = (3,)
        spec["shape"] = [3]
    x = _x(spec, mem, rng, shape=shape)
    if spec["alias"] in ("out_swapaxes",) and x.ndim >= 2 and x.shape[-1] != x.shape[-2]:
        _square_last_two(spec)
        shape = tuple(spec["shape"])
        x = _x(spec, mem, rng, shape=shape)
    kwargs = {}
    axis = spec["axis"]
    call = Call(spec, fname, _func(fname), [x], kwargs)
    if not elementwise:
        kwargs["axis"] = axis
    if bad == "axis" and not elementwise:
        kwargs["axis"] = _bad_axis(rng, x.ndim)
        call.must_raise = call.must_raise + (AxisError,)
    elif bad == "axis_type" and not elementwise:
        kwargs["axis"] = float(axis)
        call.must_raise = call.must_raise + (TypeError,)
    elif bad == "complex":
        call.args[0] = x.astype(np.complex128)
        call.must_raise = call.must_raise + (TypeError,)
    elif bad == "object":
        call.args[0] = np.array(["a"] * max(1, x.size), dtype=object)
        call.must_raise = call.must_raise + (TypeError,)
    rdtype = _result_dtype(x.dtype)
    keepdims = bool(o.get("keepdims"))
    if fname == "logsumexp" and keepdims:
        kwargs["keepdims"] = True
    if fname == "logsumexp":
        ax = _axis_index(axis, x.ndim)
        rshape = (tuple(1 if i == ax else n for i, n in enumerate(shape)) if keepdims
                  else _batch_shape(shape, ax))
    else:
        rshape = shape
    out = None
    if "out" in o or bad in ("out_dtype", "out_shape", "out_readonly"):
        lay = o.get("out") or {"layout": "C", "unaligned": False, "readonly": False}
        odtype = rdtype
        oshape = rshape
        if bad == "out_dtype":
            odtype = np.dtype(_pick(rng, ["float32", "float64", "int64", "complex128"]))
            if odtype == rdtype:
                odtype = np.dtype(np.int32)
        if bad == "out_shape":
            oshape = tuple(rshape) + (2,)
        if bad in ("out_dtype", "out_shape", "out_readonly"):
            spec["alias"] = None
        if fname == "logsumexp" and spec["alias"] in ("out_in_x", "out_shifted_into_x"):
            # out inside x's memory: an index of x along axis (keepdims: a length-1 slice)
            ax = _axis_index(axis, x.ndim)
            if x.dtype == rdtype and x.flags.writeable and x.shape[ax] > 0:
                idx = [slice(None)] * x.ndim
                idx[ax] = slice(0, 1) if keepdims else 0
                out = x[tuple(idx)]
                if spec["alias"] == "out_shifted_into_x":
                    out = shifted(mem, out, 1)
            if out is None:
                spec["alias"] = None
        if out is None:
            out = _make_out(call, spec, mem, rng, x, oshape, odtype, lay)
        if bad == "out_readonly":
            out.flags.writeable = False
        kwargs["out"] = out
        call.outputs["out"] = out
        call.returns["out"] = ()
        status = _out_status(out, rshape, rdtype)
        if status == "bad" and not call.must_raise:
            call.must_raise = call.must_raise + (TypeError, ValueError)
        elif status == "maybe":
            call.may_raise = call.may_raise + (TypeError, ValueError)

    def expect(args, kw):
        xx = args[0]
        if elementwise:
            ref = getattr(reference, fname)(xx)
            kind = "softmax" if fname == "sigmoid" else "log_softmax"
        elif fname == "logsumexp":
            ref = reference.logsumexp(xx, axis, keepdims=keepdims)
            kind = "logsumexp"
        else:
            ref = getattr(reference, fname)(xx, axis)
            kind = fname
        scalar = None
        if "out" not in kw and np.ndim(ref) == 0 and not keepdims:
            scalar = True
        return [Expect("result", (), np.asarray(ref), kind, rdtype, scalar=scalar)]

    call.expect = expect
    return call


# --- cross_entropy, nll_loss -------------------------------------------------------------


def _labels(rng, bshape, n, dtype, ignore):
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    hi = min(n, int(info.max) + 1)
    if hi <= 0:
        t = np.zeros(bshape, dtype=np.int64)
    else:
        t = rng.integers(0, hi, size=bshape)
    if ignore is not None and info.min <= ignore <= info.max:
        mask = rng.random(bshape) < 0.25
        t = np.where(mask, ignore, t)
    return np.asarray(t)


def _build_cross_entropy(spec, mem, rng):
    fname = spec["func"]
    o = spec["opts"]
    bad = spec["bad"]
    shape = tuple(spec["shape"])
    axis = spec["axis"]
    ax = _axis_index(axis, len(shape))
    n = shape[ax]
    bshape = _batch_shape(shape, ax)
    if fname == "nll_loss" and o.get("log_probs") == "log_softmax":
        z_src = gen_values(rng, shape, np.float64, spec["values"], ax)
        if is_float(_dt(spec["dtype"])):
            vals = reference.log_softmax(z_src, ax) if n else z_src
        else:
            vals = None
        z = _x(spec, mem, rng, values=vals)
    else:
        z = _x(spec, mem, rng)
    rdtype = _result_dtype(z.dtype)
    kwargs = {}
    call = Call(spec, fname, _func(fname), [z, None], kwargs)
    prob = o.get("target_kind") == "prob"
    finite_z = bool(np.all(np.isfinite(np.asarray(z, dtype=np.float64))))
    reduction = o.get("reduction", "default")
    if reduction != "default":
        kwargs["reduction"] = reduction
    red = "mean" if reduction == "default" else reduction
    # ignore_index
    ignore = -100
    ig = o.get("ignore_index")
    if ig is not None and not prob:
        if ig == "class":
            ig = int(rng.integers(max(n, 1)))
        elif ig == "above":
            ig = n + 3
        elif ig == "default":
            ig = -100
        kwargs["ignore_index"] = ig
        ignore = ig
    # target
    tlay = o["target"]
    alias = spec["alias"]
    if prob:
        tdtype = o["target_dtype"]
        if alias == "grad_out_is_target" or alias == "grad_out_shifted_target":
            tdtype = rdtype
            tlay = dict(tlay, readonly=False)
            if tlay["layout"] == "broadcast":
                tlay["layout"] = "C"
        if o.get("target_values") == "arbitrary":
            # rows that do not sum to 1 (the formula does not need it); entries stay in
            # [0, 1): the loss tolerances assume terms of the size of probabilities
            yv = np.where(rng.random(shape) < 0.2, 0.0, rng.random(shape))
        else:
            yv = _prob_values(rng, shape, ax)
        target = place(mem, yv, tdtype, tlay["layout"], tlay["unaligned"], tlay["readonly"],
                       rng)
    else:
        tdtype = o["target_dtype"]
        t = _labels(rng, bshape, n, tdtype, ignore)
        if n == 0 and math.prod(bshape) > 0:
            info = np.iinfo(np.dtype(tdtype))
            if info.min <= ignore <= info.max:
                t = np.full(bshape, ignore)  # no class: every label must be ignored
            else:
                call.must_raise = call.must_raise + (IndexError,)
        target = place(mem, t, tdtype, tlay["layout"], tlay["unaligned"], tlay["readonly"],
                       rng)
    # weight
    weight = None
    if "weight" in o:
        wo = o["weight"]
        wv = 0.5 + 1.5 * rng.random(n)
        zeros_ok = finite_z and red != "mean" and wo["dtype"] != "int64"
        if wo["zeros"] and zeros_ok and n:
            wv = np.where(rng.random(n) < 0.3, 0.0, wv)
        if wo["dtype"] == "int64":
            wv = np.ceil(wv)
        wdtype = wo["dtype"]
        weight = place(mem, wv, wdtype, wo["layout"], wo["unaligned"], wo["readonly"], rng)
    label_smoothing = 0.0
    if "label_smoothing" in o:
        ls = o["label_smoothing"]
        label_smoothing = float(rng.random()) if ls == "random" else float(ls)
        kwargs["label_smoothing"] = label_smoothing
    return_grad = bool(o.get("return_grad"))
    grad_out = None
    if return_grad:
        kwargs["return_grad"] = True
        if "grad_out" in o or bad in ("grad_out_dtype", "grad_out_readonly"):
            lay = o.get("grad_out") or {"layout": "C", "unaligned": False, "readonly": False}
            if bad in ("grad_out_dtype", "grad_out_readonly"):
                alias = spec["alias"] = None
            if alias == "grad_out_is_logits":
                grad_out = z
            elif alias == "grad_out_shifted_logits":
                grad_out = shifted(mem, z, _pick(rng, [1, -1, 2]))
            elif alias == "grad_out_is_target" and prob:
                grad_out = target
            elif alias == "grad_out_shifted_target" and prob:
                grad_out = shifted(mem, target, _pick(rng, [1, -1, 3]))
            elif alias == "self_overlap":
                grad_out = self_overlapping(mem, shape, rdtype, rng=rng)
                call.may_raise = call.may_raise + (ValueError,)
            elif alias in ("weight_in_grad_out", "labels_in_grad_out"):
                grad_out = place(mem, np.zeros(shape), rdtype, "C", False, False, rng)
                loc = mem.locate(grad_out)
                gbytes = grad_out.nbytes
                if alias == "weight_in_grad_out" and n and grad_out.size >= n:
                    j = int(rng.integers(0, grad_out.size - n + 1))
                    wv = (weight if weight is not None else 0.5 + 1.5 * rng.random(n))
                    wv = np.asarray(wv, dtype=np.float64)
                    weight = _view(mem.bufs[loc[0]], (n,), rdtype,
                                   loc[1] + j * rdtype.itemsize, (rdtype.itemsize,))
                    _cast_into(weight, wv)
                elif alias == "labels_in_grad_out" and not prob and \
                        8 * math.prod(bshape) <= gbytes and math.prod(bshape) > 0:
                    tv = np.asarray(target, dtype=np.int64) if np.dtype(
                        target.dtype).kind in "iu" else None
                    # at a random 8-byte aligned place inside grad_out's memory
                    first = loc[1] + (8 - loc[1] % 8) % 8
                    last = loc[1] + gbytes - 8 * math.prod(bshape)
                    off = first + 8 * int(rng.integers(0, max(0, (last - first) // 8) + 1))
                    if tv is not None and first <= last:
                        target = _view(mem.bufs[loc[0]], bshape, np.int64, off,
                                       _c_strides(bshape, 8))
                        target[...] = np.asarray(tv)
                    else:
                        spec["alias"] = None
                else:
                    spec["alias"] = None
            else:
                spec["alias"] = None
            if grad_out is None:
                gdtype = rdtype
                if bad == "grad_out_dtype":
                    gdtype = np.dtype(np.float32 if rdtype == np.float64 else np.float64)
                grad_out = place(mem, np.zeros(shape), gdtype, lay["layout"],
                                 lay["unaligned"], lay["readonly"], rng)
                if bad == "grad_out_readonly":
                    grad_out.flags.writeable = False
            kwargs["grad_out"] = grad_out
            call.outputs["grad_out"] = grad_out
            call.returns["grad_out"] = (1,)
            status = _out_status(grad_out, shape, rdtype)
            if status == "bad" and not call.must_raise:
                call.must_raise = call.must_raise + (TypeError, ValueError)
            elif status == "maybe":
                call.may_raise = call.may_raise + (TypeError, ValueError)
    if weight is not None:
        kwargs["weight"] = weight
    kwargs["axis"] = axis
    # deliberate bad input
    if bad == "axis":
        kwargs["axis"] = _bad_axis(rng, z.ndim)
        call.must_raise = call.must_raise + (AxisError,)
    elif bad == "complex":
        call.args[0] = np.asarray(z).astype(np.complex64)
        call.must_raise = call.must_raise + (TypeError,)
    elif bad == "reduction":
        kwargs["reduction"] = _pick(rng, ["avg", "MEAN", "", None, 1])
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "smoothing" and fname == "cross_entropy":
        kwargs["label_smoothing"] = _pick(rng, [-0.1, 1.5, float("nan"), float("inf")])
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "weight_shape":
        kwargs["weight"] = np.ones(n + 1)
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "target_shape":
        target = np.asarray(target)[..., None] if np.ndim(target) else np.zeros(2, np.int64)
        if prob:
            target = np.concatenate([target, target], axis=-1)
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "bool_target" and not prob:
        target = np.asarray(target) > 0
        call.must_raise = call.must_raise + (TypeError,)
    elif bad in ("label_range", "label_huge") and not prob and math.prod(bshape) > 0:
        tdt = np.dtype(target.dtype)
        info = np.iinfo(tdt)
        if bad == "label_huge" and tdt.kind == "u" and tdt.itemsize == 8:
            val = _pick(rng, [2**64 - 100, 2**63, 2**63 + 5, 2**64 - 1])
            if val == 2**64 - 100:
                kwargs.pop("ignore_index", None)
        elif bad == "label_huge":
            val = int(info.max)
        else:
            cands = [v for v in (n, n + 7, -1, -5) if info.min <= v <= info.max and v != ignore
                     and not 0 <= v < n]
            val = _pick(rng, cands) if cands else None
        if val is not None and val != kwargs.get("ignore_index", -100) and not 0 <= val < n:
            tv = np.array(target)  # a writeable copy with the same dtype
            pos = int(rng.integers(tv.size))
            tv.reshape(-1)[pos] = val
            target = place(mem, tv, tdt, "C", False, False, rng)
            call.must_raise = call.must_raise + (IndexError,)
        else:
            spec["bad"] = None
    elif bad is not None and not call.must_raise:
        spec["bad"] = None
    call.args[1] = target
    if fname == "nll_loss":
        for k in ("label_smoothing", "return_grad", "grad_out"):
            kwargs.pop(k, None)
        call.outputs.clear()
        call.returns.clear()
        return_grad = False

    def expect(args, kw):
        zz, tt = args
        w = kw.get("weight")
        if n == 0:
            return _expect_no_classes(zz, tt, axis, red, return_grad, rdtype, prob,
                                      fname)
        if fname == "cross_entropy":
            zz = _shift_rows(zz, axis)
        if fname == "nll_loss":
            loss = reference.nll_loss(zz, tt, axis, w, kw.get("ignore_index", -100), red)
            res = [(loss, "loss")]
        else:
            r = reference.cross_entropy(zz, tt, axis, w, kw.get("ignore_index", -100),
                                        label_smoothing, red, return_grad)
            res = list(zip(r, ("loss", "grad"))) if return_grad else [(r, "loss")]
        exps = []
        for i, (val, kind) in enumerate(res):
            path = (i,) if return_grad else ()
            scalar = True if (kind == "loss" and red != "none") else None
            exps.append(Expect(kind, path, np.asarray(val), kind, rdtype, scalar=scalar))
        return exps

    call.expect = expect
    return call


def _shift_rows(z, axis):
    """z - (row max) where the row max is finite.  Cross-entropy is unchanged by the
    shift, but the reference computes logsumexp(z) - z_c unshifted, which for logits of
    1e30 or 3e38 cancels away the whole loss in float64 (3e38 + log 2 == 3e38); the
    kernels compute it shifted."""
    z = np.asarray(z, dtype=np.float64)
    if z.size == 0:
        return z
    with np.errstate(all="ignore"):
        m = np.max(z, axis=axis, keepdims=True)
        return z - np.where(np.isfinite(m), m, 0.0)


def _expect_no_classes(z, t, axis, red, return_grad, rdtype, prob, fname):
    """Zero classes (the reference divides by C or indexes an empty weight): every
    label is ignore_index (else IndexError is expected), so each sample's loss is the
    empty sum 0; "mean" of nothing counted is 0; the gradient is empty."""
    z = np.asarray(z)
    bshape = _batch_shape(z.shape, axis % z.ndim)
    per = np.zeros(bshape)
    loss = per if red == "none" else np.float64(0.0)
    exps = [Expect("loss", (0,) if return_grad else (), np.asarray(loss), "loss", rdtype,
                   scalar=True if red != "none" else None)]
    if return_grad and fname == "cross_entropy":
        exps.append(Expect("grad", (1,), np.zeros(z.shape), "grad", rdtype))
    return exps


# --- binary_cross_entropy ---------------------------------------------------------------


def _build_bce(spec, mem, rng):
    o = spec["opts"]
    bad = spec["bad"]
    shape = tuple(spec["shape"])
    z = _x(spec, mem, rng)
    rdtype = _result_dtype(z.dtype)
    alias = spec["alias"]
    kwargs = {}
    call = Call(spec, "binary_cross_entropy", logitkit.binary_cross_entropy, [z, None],
                kwargs)
    tdtype = o["target_dtype"]
    if tdtype == "same":
        tdtype = z.dtype
    tdtype = np.dtype(tdtype)
    tlay = dict(o["target"])
    if alias == "grad_out_is_target":
        tdtype = rdtype
        tlay.update(readonly=False, layout="C")
    if tdtype.kind == "b":
        yv = rng.random(shape) < 0.5
    elif tdtype.kind in "iu":
        yv = rng.integers(0, 2, size=shape)
    else:
        yv = rng.random(shape)
        yv = np.where(rng.random(shape) < 0.3, np.round(yv), yv)
    target = place(mem, yv, tdtype, tlay["layout"], tlay["unaligned"], tlay["readonly"], rng)
    C = shape[-1] if shape else 1

    def weight_values(kind):
        if kind == "scalar":
            return np.float64(0.5 + 1.5 * rng.random())
        if kind == "per_class" and shape:
            return 0.5 + 1.5 * rng.random((C,))
        if kind in ("per_class", "scalar"):
            return np.float64(0.5 + 1.5 * rng.random())
        if kind == "column":
            return 0.5 + 1.5 * rng.random(shape[:-1] + (1,)) if shape else \
                np.float64(1.5)
        return 0.5 + 1.5 * rng.random(shape)

    wkind, pkind = o.get("weight"), o.get("pos_weight")
    if alias == "grad_out_is_weight":
        wkind = "full"
    if alias == "pos_weight_in_grad_out":
        pkind = "per_class"
    weight = pos_weight = None
    if wkind:
        wv = weight_values(wkind)
        weight = wv if np.ndim(wv) == 0 else place(mem, wv, z.dtype if is_float(z.dtype)
                                                     else np.float64, "C", False, False)
        kwargs["weight"] = weight
    if pkind:
        pv = weight_values(pkind)
        pos_weight = pv if np.ndim(pv) == 0 else place(mem, pv, np.float64, "C", False,
                                                         False)
        kwargs["pos_weight"] = pos_weight
    reduction = o.get("reduction", "default")
    if reduction != "default":
        kwargs["reduction"] = reduction
    red = "mean" if reduction == "default" else reduction
    return_grad = bool(o.get("return_grad"))
    if return_grad:
        kwargs["return_grad"] = True
        if "grad_out" in o or bad == "grad_out_dtype":
            lay = o.get("grad_out") or {"layout": "C", "unaligned": False, "readonly": False}
            grad_out = None
            if bad == "grad_out_dtype":
                alias = spec["alias"] = None
            if alias == "grad_out_is_logits":
                grad_out = z
            elif alias == "grad_out_shifted_logits":
                grad_out = shifted(mem, z, _pick(rng, [1, -1, 2]))
            elif alias == "grad_out_is_target":
                grad_out = target
            elif alias == "grad_out_is_weight" and isinstance(weight, np.ndarray) and \
                    weight.shape == shape:
                weight = place(mem, np.asarray(weight, np.float64), rdtype, "C", False,
                               False)
                kwargs["weight"] = grad_out = weight
            elif alias == "pos_weight_in_grad_out" and shape and math.prod(shape) > 0:
                grad_out = place(mem, np.zeros(shape), rdtype, "C", False, False)
                row = grad_out.reshape(-1, C)[_pick(rng, [0, -1])]
                _cast_into(row, np.asarray(pos_weight, np.float64).reshape(-1)[:C]
                           if np.size(pos_weight) == C else 1.0)
                kwargs["pos_weight"] = pos_weight = row
            elif alias == "self_overlap":
                grad_out = self_overlapping(mem, shape, rdtype, rng=rng)
                if grad_out is not None:
                    call.may_raise = call.may_raise + (ValueError,)
            if grad_out is None:
                spec["alias"] = None
                gdtype = rdtype
                if bad == "grad_out_dtype":
                    gdtype = np.dtype(np.float32 if rdtype == np.float64 else np.float64)
                grad_out = place(mem, np.zeros(shape), gdtype, lay["layout"],
                                 lay["unaligned"], lay["readonly"], rng)
            kwargs["grad_out"] = grad_out
            call.outputs["grad_out"] = grad_out
            call.returns["grad_out"] = (1,)
            status = _out_status(grad_out, shape, rdtype)
            if status == "bad" and not call.must_raise:
                call.must_raise = call.must_raise + (TypeError, ValueError)
            elif status == "maybe":
                call.may_raise = call.may_raise + (TypeError, ValueError)
    else:
        spec["alias"] = None
    if bad == "complex":
        call.args[0] = np.asarray(z).astype(np.complex128)
        call.must_raise = call.must_raise + (TypeError,)
    elif bad == "target_shape":
        target = np.zeros(shape + (2,))
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "reduction":
        kwargs["reduction"] = _pick(rng, ["avg", "Sum", None])
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "weight_shape":
        kwargs["weight"] = np.ones(tuple(shape) + (3,)) if shape else np.ones(3)
        call.must_raise = call.must_raise + (ValueError,)
    elif bad is not None and not call.must_raise:
        spec["bad"] = None
    call.args[1] = target

    # logitkit converts the target and the weights to the logits' computation dtype
    # (float32 for float16/float32 logits): the reference gets them so converted, or
    # 1 - y of a float64 target near 1 would differ from that of its float32 rounding by
    # far more than the tolerance.
    compute = np.float32 if np.dtype(rdtype).itemsize <= 4 else np.float64

    def converted(a):
        return None if a is None else np.asarray(a).astype(compute)

    def expect(args, kw):
        r = reference.binary_cross_entropy(args[0], converted(args[1]),
                                           converted(kw.get("weight")),
                                           converted(kw.get("pos_weight")), red, return_grad)
        vals = list(r) if return_grad else [r]
        exps = []
        for i, (val, kind) in enumerate(zip(vals, ("loss", "grad"))):
            path = (i,) if return_grad else ()
            scalar = True if (kind == "loss" and red != "none") else None
            exps.append(Expect(kind, path, np.asarray(val), kind, rdtype, scalar=scalar))
        return exps

    call.expect = expect
    return call


# --- softmax_backward, log_softmax_backward ---------------------------------------------


def term_scale(func, g, y, axis):
    """The magnitude of the terms of each backward result (test_backward.term_scale):

    softmax_backward      p (g - dot), dot = sum(g p):  |p| (|g| + sum |g p|)
    log_softmax_backward  g - p S,     S = sum(g):      |g| + p sum |g|

    As in test_backward.py the relative tolerance applies to the terms, but for the sums
    dot and S the terms are taken as sum |g p| and sum |g| rather than |dot| and |S|:
    the fuzzer's g mixes +-3e38 with O(1) values, whose sums cancel, and then even the
    float64 reference's sum (and any correctly rounded one) is off by an ulp of the
    largest term.  For test_backward's normal g the two differ by about sqrt(C)."""
    g = np.asarray(g, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(all="ignore"):
        if func == "softmax_backward":
            dot = np.sum(np.abs(g * y), axis=axis, keepdims=True)
            return np.abs(y) * (np.abs(g) + dot)
        p = np.exp(y)
        return np.abs(g) + p * np.sum(np.abs(g), axis=axis, keepdims=True)


def _build_backward(spec, mem, rng):
    fname = spec["func"]
    o = spec["opts"]
    bad = spec["bad"]
    shape = tuple(spec["shape"])
    axis = spec["axis"]
    ax = _axis_index(axis, len(shape))
    if spec["alias"] == "out_swapaxes_g" and len(shape) >= 2 and shape[-1] != shape[-2]:
        _square_last_two(spec)
        shape = tuple(spec["shape"])
    fwd = "softmax" if fname == "softmax_backward" else "log_softmax"
    if o.get("y_values") == "valid" and is_float(_dt(spec["dtype"])) and shape[ax]:
        yv = getattr(reference, fwd)(gen_values(rng, shape, np.float64, spec["values"], ax),
                                     ax)
    else:
        yv = None
    y = _x(spec, mem, rng, values=yv)
    gdt = o["g_dtype"]
    g = place(mem, gen_values(rng, shape, gdt, o["g_values"], ax, cap=_cap(fname, gdt)),
              gdt, o["g"]["layout"],
              o["g"]["unaligned"], o["g"]["readonly"], rng)
    rdtype = np.result_type(_result_dtype(g.dtype), _result_dtype(y.dtype))
    kwargs = {"axis": axis}
    call = Call(spec, fname, _func(fname), [g, y], kwargs)
    alias = spec["alias"]
    if "out" in o or bad in ("out_dtype", "out_shape"):
        lay = o.get("out") or {"layout": "C", "unaligned": False, "readonly": False}
        out = None
        if bad in ("out_dtype", "out_shape"):
            alias = spec["alias"] = None
        if alias == "out_is_y":
            out = y
        elif alias == "out_shifted_y":
            out = shifted(mem, y, _pick(rng, [1, -1, 2]))
        if out is None:
            odtype, oshape = rdtype, shape
            if bad == "out_dtype":
                odtype = np.dtype(np.int64)
            if bad == "out_shape":
                oshape = shape + (1,)
            out = _make_out(call, spec, mem, rng, g, oshape, odtype, lay)
        kwargs["out"] = out
        call.outputs["out"] = out
        call.returns["out"] = ()
        status = _out_status(out, shape, rdtype)
        if status == "bad" and not call.must_raise:
            call.must_raise = call.must_raise + (TypeError, ValueError)
        elif status == "maybe":
            call.may_raise = call.may_raise + (TypeError, ValueError)
    else:
        spec["alias"] = None
    if bad == "axis":
        kwargs["axis"] = _bad_axis(rng, len(shape))
        call.must_raise = call.must_raise + (AxisError,)
    elif bad == "shape_mismatch":
        call.args[0] = np.zeros(shape + (2,))
        call.must_raise = call.must_raise + (ValueError,)

    def expect(args, kw):
        gg, yy = args
        ref = getattr(reference, fname)(gg, yy, axis)
        return [Expect("result", (), np.asarray(ref), "grad", rdtype,
                       scale=term_scale(fname, gg, yy, axis), scalar=False)]

    call.expect = expect
    return call


# --- softmax_jacobian, entropy, kl_divergence -------------------------------------------


def _build_jacobian(spec, mem, rng):
    shape = tuple(spec["shape"])
    axis = spec["axis"]
    ax = _axis_index(axis, len(shape))
    if is_float(_dt(spec["dtype"])) and spec["values"] == "normal" and shape[ax]:
        vals = reference.softmax(gen_values(rng, shape, np.float64, "normal", ax), ax)
    else:
        vals = None
    p = _x(spec, mem, rng, values=vals)
    rdtype = _result_dtype(p.dtype)
    kwargs = {"axis": axis}
    call = Call(spec, "softmax_jacobian", logitkit.softmax_jacobian, [p], kwargs)
    if spec["bad"] == "axis":
        kwargs["axis"] = _bad_axis(rng, len(shape))
        call.must_raise = call.must_raise + (AxisError,)
    elif spec["bad"] == "complex":
        call.args[0] = np.asarray(p).astype(np.complex128)
        call.must_raise = call.must_raise + (TypeError,)

    def expect(args, kw):
        # The reference's p_i [i == j] - p_i p_j gives NaN off the diagonal where p_i is
        # infinite (inf * 0); the formula gives -p_i p_j there.  Probabilities are never
        # infinite, so entries with a non-finite p_i or p_j are not compared (but the
        # call must still not crash or warn).
        pp = np.moveaxis(np.asarray(args[0], dtype=np.float64), axis, -1)
        fin = np.isfinite(pp)
        mask = fin[..., :, None] & fin[..., None, :]
        return [Expect("result", (), reference.softmax_jacobian(args[0], axis), "grad",
                       rdtype, scalar=False, mask=mask)]

    call.expect = expect
    return call


def _build_entropy(spec, mem, rng):
    z = _x(spec, mem, rng)
    rdtype = _result_dtype(z.dtype)
    axis = spec["axis"]
    base = spec["opts"].get("base")
    kwargs = {"axis": axis}
    if base is not None:
        kwargs["base"] = base
    call = Call(spec, "entropy", logitkit.entropy, [z], kwargs)
    bad = spec["bad"]
    if bad == "axis":
        kwargs["axis"] = _bad_axis(rng, z.ndim)
        call.must_raise = call.must_raise + (AxisError,)
    elif bad == "complex":
        call.args[0] = np.asarray(z).astype(np.complex128)
        call.must_raise = call.must_raise + (TypeError,)
    elif bad == "base":
        kwargs["base"] = _pick(rng, [1, 0, -2.0, float("inf"), float("nan")])
        call.must_raise = call.must_raise + (ValueError,)

    def expect(args, kw):
        ref = np.asarray(reference.entropy(args[0], axis, kw.get("base")))
        return [Expect("result", (), ref, "loss", rdtype,
                       scalar=True if ref.ndim == 0 else False)]

    call.expect = expect
    return call


def _build_kl(spec, mem, rng):
    o = spec["opts"]
    shape = tuple(spec["shape"])
    axis = spec["axis"]
    ax = _axis_index(axis, len(shape))
    p = _x(spec, mem, rng)
    if o.get("same_array"):
        q = p
    else:
        qd = o["q_dtype"]
        q = place(mem, gen_values(rng, shape, qd, o["q_values"], ax,
                                  cap=_cap("kl_divergence", qd)), qd, o["q"]["layout"],
                  o["q"]["unaligned"], o["q"]["readonly"], rng)
    rdtype = np.result_type(_result_dtype(p.dtype), _result_dtype(q.dtype))
    kwargs = {"axis": axis}
    base = o.get("base")
    if base is not None:
        kwargs["base"] = base
    reduction = o.get("reduction", "default")
    if reduction != "default":
        kwargs["reduction"] = reduction
    red = "none" if reduction == "default" else reduction
    return_grad = bool(o.get("return_grad"))
    if return_grad:
        kwargs["return_grad"] = True
    call = Call(spec, "kl_divergence", logitkit.kl_divergence, [p, q], kwargs)
    bad = spec["bad"]
    if bad == "axis":
        kwargs["axis"] = _bad_axis(rng, len(shape))
        call.must_raise = call.must_raise + (AxisError,)
    elif bad == "shape_mismatch":
        call.args[1] = np.zeros(shape + (2,))
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "base":
        kwargs["base"] = _pick(rng, [1, 0, -2.0, float("inf")])
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "reduction":
        kwargs["reduction"] = "avg"
        call.must_raise = call.must_raise + (ValueError,)

    def expect(args, kw):
        r = reference.kl_divergence(args[0], args[1], axis, kw.get("base"), red, return_grad)
        vals = list(r) if return_grad else [r]
        exps = []
        for i, (val, kind) in enumerate(zip(vals, ("loss", "grad"))):
            val = np.asarray(val)
            path = (i,) if return_grad else ()
            scalar = (val.ndim == 0) if kind == "loss" else False
            exps.append(Expect(kind, path, val, kind, rdtype, scalar=scalar))
        return exps

    call.expect = expect
    return call


# --- logitkit.special -------------------------------------------------------------------


def _special_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (list, tuple)):
        return tuple(a % ndim for a in axis)
    return (axis % ndim,)


def _ref_over_axes(func, x, axes, plus_inf_fix=False):
    """reference.<func> over several axes (merged at the end), of x's shape."""
    x = np.asarray(x, dtype=np.float64)
    nd = x.ndim
    if not axes:
        x1 = x[..., None]
        r = getattr(reference, func)(x1, -1)
        if plus_inf_fix:
            r = _scipy_plus_inf(x1, r)
        return r[..., 0]
    kept = [i for i in range(nd) if i not in axes]
    perm = kept + sorted(axes)
    moved = x.transpose(perm)
    merged = moved.reshape(moved.shape[:len(kept)] + (math.prod(moved.shape[len(kept):]),))
    r = getattr(reference, func)(merged, -1)
    if plus_inf_fix:
        r = _scipy_plus_inf(merged, r)
    return r.reshape(moved.shape).transpose(np.argsort(perm))


def _scipy_plus_inf(x, r):
    """SciPy's log_softmax of a row with +inf and no NaN: NaN at +inf, -inf elsewhere."""
    pos = x == np.inf
    fix = pos.any(axis=-1, keepdims=True) & ~np.isnan(x).any(axis=-1, keepdims=True)
    fix = np.broadcast_to(fix, x.shape)
    r = r.copy()
    r[fix & pos] = np.nan
    r[fix & ~pos] = -np.inf
    return r


def _special_softmax_dtype(dtype):
    dtype = np.dtype(dtype)
    if is_float(dtype):
        return dtype.newbyteorder("=")
    return np.result_type(dtype, np.float16)


def _build_special(spec, mem, rng):
    fname = spec["func"]
    name = fname.split(".")[1]
    o = spec["opts"]
    bad = spec["bad"]
    x = _x(spec, mem, rng)
    axis = spec["axis"]
    ax_arg = tuple(axis) if isinstance(axis, list) else axis
    call = Call(spec, fname, _func(fname), [x], {})
    nd = x.ndim
    kwargs = call.kwargs
    if name in ("softmax", "log_softmax"):
        if ax_arg is not None or _maybe(rng, 0.5):
            kwargs["axis"] = ax_arg
        rdtype = (None if x.dtype.kind == "b" else _special_softmax_dtype(x.dtype))
        if x.dtype.kind == "b":
            call.must_raise = call.must_raise + (TypeError,)
        if nd == 0:
            axes = ()
            if isinstance(ax_arg, int) and ax_arg not in (0, -1):
                call.must_raise = call.must_raise + (AxisError,)
        else:
            axes = _special_axes(ax_arg, nd)
        if any(x.shape[a] == 0 for a in axes):
            call.must_raise = call.must_raise or (ValueError,)
    else:  # logsumexp
        if ax_arg is not None or _maybe(rng, 0.5):
            kwargs["axis"] = ax_arg
        if o.get("keepdims"):
            kwargs["keepdims"] = True
        if o.get("return_sign"):
            kwargs["return_sign"] = True
        bmode = o.get("b")
        bvals = None
        if bmode == "scalar":
            bvals = 0.5 + 1.5 * float(rng.random())
            kwargs["b"] = bvals
        elif bmode == "full":
            bvals = place(mem, 0.5 + 1.5 * rng.random(x.shape), np.float64, "C", False,
                          False)
            kwargs["b"] = bvals
        elif bmode == "last" and nd:
            bvals = place(mem, 0.5 + 1.5 * rng.random(x.shape[-1:]), x.dtype
                          if is_float(x.dtype) else np.float64, "C", False, False)
            kwargs["b"] = bvals
        arr_nd = max(nd, 1)
        axes = _special_axes(ax_arg, arr_nd)
        strong = [x.dtype] + ([np.asarray(bvals).dtype] if isinstance(bvals, np.ndarray)
                              else [])
        rdtype = np.result_type(*strong)
        if not is_bf16(rdtype):  # bfloat16 stays bfloat16 (ml_dtypes < 0.7 adds 1.0 up
            rdtype = np.result_type(*strong, 1.0)  # to float64)
        rdtype = rdtype.newbyteorder("=")
    if bad == "axis":
        kwargs["axis"] = _bad_axis(rng, max(nd, 1))
        call.must_raise = call.must_raise + (AxisError,)
    elif bad == "dup_axis" and nd >= 1:
        kwargs["axis"] = (0, -nd)
        call.must_raise = call.must_raise + (ValueError,)
    elif bad == "complex":
        call.args[0] = np.asarray(x).astype(np.complex128)
        call.must_raise = call.must_raise + (TypeError,)
    elif bad == "object":
        call.args[0] = np.array(["a", "b"], dtype=object)
        call.must_raise = call.must_raise + (TypeError,)
    elif bad is not None:
        spec["bad"] = None

    def expect(args, kw):
        xx = np.asarray(args[0])
        if name in ("softmax", "log_softmax"):
            ref = _ref_over_axes(name, xx, axes, plus_inf_fix=(name == "log_softmax"))
            return [Expect("result", (), np.asarray(ref), name, rdtype,
                           scalar=(xx.ndim == 0), native=False)]
        a = np.atleast_1d(xx).astype(np.float64)
        b = kw.get("b")
        with np.errstate(all="ignore"):
            if b is not None:
                a = a + np.log(np.broadcast_to(np.asarray(b, np.float64), a.shape))
            kept = [i for i in range(a.ndim) if i not in axes]
            moved = a.transpose(kept + sorted(axes))
            merged = moved.reshape(moved.shape[:len(kept)]
                                   + (math.prod(moved.shape[len(kept):]),))
            if merged.shape[-1] == 0:
                r = np.full(merged.shape[:-1], -np.inf)
            else:
                r = reference.logsumexp(merged, -1)
        kshape = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
        if kw.get("keepdims"):
            r = np.asarray(r).reshape(kshape)
        r = np.asarray(r)
        scalar = r.ndim == 0
        exps = []
        path = (0,) if kw.get("return_sign") else ()
        exps.append(Expect("result", path, r, "logsumexp", rdtype, scalar=scalar,
                           native=False))
        if kw.get("return_sign"):
            sgn = np.where(np.isnan(r), np.nan, np.where(r == -np.inf, 0.0, 1.0))
            if a.size == 0:
                sgn = np.full(r.shape, -1.0)
            exps.append(Expect("sign", (1,), sgn, "exact", rdtype, scalar=scalar,
                               native=False))
        return exps

    call.expect = expect
    return call


def _expit_loop_dtype(dtype):
    """The loop NumPy picks for scipy.special.expit: the input's own type if SciPy has a
    loop for it, else the first of the installed SciPy's loops that the input casts to
    safely ('d->d' first up to SciPy 1.17, 'f->f' first from 1.18); without SciPy,
    1.17's rules."""
    dtype = np.dtype(dtype).newbyteorder("=")  # byte order plays no part in the choice
    try:
        import scipy.special
        loops = [np.dtype(t.split("->")[0]) for t in scipy.special.expit.types]
    except ImportError:
        loops = None
    if loops:
        if dtype in loops:  # an exact match wins over an earlier safe cast
            return dtype
        for loop in loops:
            if np.can_cast(dtype, loop, "safe"):
                return loop
        return np.dtype(np.float64)
    if dtype.type is np.float32:
        return np.dtype(np.float32)
    if dtype.type is np.longdouble and dtype.itemsize > 8:
        return np.dtype(np.longdouble)
    return np.dtype(np.float64)


def _build_special_expit(spec, mem, rng):
    fname = spec["func"]
    name = fname.split(".")[1]
    o = spec["opts"]
    x = _x(spec, mem, rng)
    call = Call(spec, fname, _func(fname), [x], {})
    loop = _expit_loop_dtype(x.dtype)
    if "dtype" in o:
        loop = np.dtype(o["dtype"])
        call.kwargs["dtype"] = o["dtype"]
        if not np.can_cast(x.dtype, loop, "same_kind"):
            call.must_raise = call.must_raise + (TypeError,)
        # an explicit dtype= narrower than the input: the input cast overflows, and
        # NumPy's ufuncs (so scipy.special.expit) warn about it too
        call.allowed_warnings = ("overflow encountered in cast",)
    rdtype = loop
    if "out" in o or spec["bad"] == "out_readonly":
        lay = o.get("out") or {"layout": "C", "unaligned": False, "readonly": False}
        out = _make_out(call, spec, mem, rng, x, x.shape, loop, lay)
        if spec["bad"] == "out_readonly":
            out.flags.writeable = False
            call.must_raise = call.must_raise + (ValueError,)
        elif not out.flags.writeable:
            call.must_raise = call.must_raise + (ValueError,)
        elif out.dtype != loop and not np.can_cast(loop, out.dtype, "same_kind"):
            call.must_raise = call.must_raise + (TypeError,)
        rdtype = out.dtype.newbyteorder("=")
        call.kwargs["out"] = out
        call.outputs["out"] = out
        call.returns["out"] = ()
    if spec["bad"] == "complex":
        call.args[0] = np.asarray(x).astype(np.complex128)
        call.must_raise = call.must_raise + (TypeError,)

    def expect(args, kw):
        ref = getattr(reference, "sigmoid" if name == "expit" else "log_sigmoid")(args[0])
        scalar = (np.ndim(args[0]) == 0) if "out" not in kw else False
        return [Expect("result", (), np.asarray(ref),
                       "softmax" if name == "expit" else "log_softmax", rdtype,
                       scalar=scalar, native=False)]

    call.expect = expect
    return call


_BUILDERS = {
    "softmax": _build_normalize, "log_softmax": _build_normalize,
    "logsumexp": _build_normalize, "sigmoid": _build_normalize,
    "log_sigmoid": _build_normalize,
    "cross_entropy": _build_cross_entropy, "nll_loss": _build_cross_entropy,
    "binary_cross_entropy": _build_bce,
    "softmax_backward": _build_backward, "log_softmax_backward": _build_backward,
    "softmax_jacobian": _build_jacobian, "entropy": _build_entropy,
    "kl_divergence": _build_kl,
    "special.softmax": _build_special, "special.log_softmax": _build_special,
    "special.logsumexp": _build_special,
    "special.expit": _build_special_expit, "special.log_expit": _build_special_expit,
}


# =======================================================================================
# running and checking
# =======================================================================================


@dataclass
class Failure:
    kind: str       # crash | hang | exception | no-exception | warning | wrong-value | ...
    func: str
    what: str       # the output / detail
    message: str
    spec: dict
    seed: object = None
    index: object = None
    target: str = None

    def key(self):
        return (self.func, self.kind, self.what)

    def to_json(self):
        return {"kind": self.kind, "func": self.func, "what": self.what,
                "message": self.message, "spec": self.spec, "seed": self.seed,
                "index": self.index, "target": self.target}


def _invoke(call, args, kwargs):
    """Call the library with NumPy's default error state; return
    (result, exception, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(divide="warn", over="warn", invalid="warn", under="ignore"):
            try:
                result = call.fn(*args, **kwargs)
                exc = None
            except Exception as e:  # noqa: BLE001 -- judged by the caller
                result, exc = None, e
    return result, exc, list(caught)


def _get(result, path):
    for p in path:
        result = result[p]
    return result


def _dtype_ok(actual, expected, native):
    if native:
        return actual == expected
    return actual.newbyteorder("=") == np.dtype(expected).newbyteorder("=")


def check_values(actual, e):
    """None if ``actual`` matches the Expect ``e``, else a message."""
    if not isinstance(actual, (np.ndarray, np.generic)):
        return f"{e.name}: expected an ndarray or NumPy scalar, got {type(actual).__name__}"
    if e.scalar is True and not isinstance(actual, np.generic):
        return f"{e.name}: expected a NumPy scalar, got {type(actual).__name__} " \
               f"of shape {np.shape(actual)}"
    if e.scalar is False and not isinstance(actual, np.ndarray):
        return f"{e.name}: expected an ndarray, got {type(actual).__name__}"
    a = np.asarray(actual)
    dtype = np.dtype(e.dtype)
    if not _dtype_ok(a.dtype, dtype, e.native):
        return f"{e.name}: dtype {a.dtype}, expected {dtype}"
    ref = np.asarray(e.ref, dtype=np.float64)
    if a.shape != ref.shape:
        return f"{e.name}: shape {a.shape}, expected {ref.shape}"
    a64 = a.astype(np.float64)
    if e.mask is not None:
        a64 = np.where(e.mask, a64, 0.0)
        ref = np.where(e.mask, ref, 0.0)
    if e.kind == "exact":
        if not np.array_equal(a64, ref, equal_nan=True):
            return f"{e.name}: {a64!r} != {ref!r}"
        return None
    nd = dtype.newbyteorder("=")
    big = dtype_max(nd)
    nan_a, nan_r = np.isnan(a64), np.isnan(ref)
    # a finite reference beyond the dtype's range may come out as inf of its sign
    over = np.isfinite(ref) & (np.abs(ref) > big)
    ok_over = over & np.isinf(a64) & (np.sign(a64) == np.sign(ref))
    if np.any(nan_a != nan_r):
        return f"{e.name} {nd}: NaN positions differ\n" + _describe_diff(
            nan_a != nan_r, a64, ref)
    inf_r = np.isinf(ref)
    inf_mismatch = ((np.isinf(a64) & ~ok_over) != inf_r) | (inf_r & (a64 != ref))
    if np.any(inf_mismatch):
        return f"{e.name} {nd}: infinities differ at {int(np.sum(inf_mismatch))} " \
               f"positions\n" + _describe_diff(inf_mismatch, a64, ref)
    finite = np.isfinite(ref) & ~ok_over
    if ACCEPT_KNOWN_BF16_FLUSH and is_bf16(nd) and e.kind == "softmax":
        finite &= ~((a64 == 0) & (np.abs(ref) < _BF16_TINY * (1 + 2.0 ** -7)))
    r = np.where(finite, ref, 0.0)
    with np.errstate(all="ignore"):
        err = np.where(finite, np.abs(a64 - r), 0.0)
        if e.kind in ("softmax", "log_softmax", "logsumexp"):
            tol = _softmax_tolerance(e.kind, nd, r)
        else:
            scale = None
            if e.scale is not None:
                # 0 * inf (a zero probability times an overflowing float64 sum): 0
                sc = np.nan_to_num(np.broadcast_to(e.scale, r.shape), nan=0.0,
                                   posinf=np.inf)
                scale = np.where(finite, sc, 0.0)
            tol = _loss_tolerance(e.kind, nd, r, scale)
        tol = np.where(finite, tol, 1.0)
        bad = ~(err <= tol)
    if np.any(bad):
        ratio = np.where(bad, err / tol, 0.0)
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        worst = np.unravel_index(np.argmax(ratio), err.shape)
        return (f"{e.name} {nd} ({e.kind}): {int(np.sum(bad))} of {a.size} elements out "
                f"of tolerance; worst at {tuple(int(i) for i in worst)}: "
                f"actual={a64[worst]!r} ref={r[worst]!r} error={err[worst]:.3g} "
                f"tolerance={tol[worst]:.3g}\n" + _describe_diff(bad, a64, ref))
    return None


def _describe_diff(where, a, ref, limit=4):
    idx = np.argwhere(where)[:limit]
    return "\n".join(f"    at {tuple(int(i) for i in ix)}: actual={a[tuple(ix)]!r} "
                     f"ref={ref[tuple(ix)]!r}" for ix in idx)


def _same(a, b):
    """Bit-for-bit equal values (NaN equals NaN); type, shape and dtype equal."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)):
            return False
        return all(_same(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if is_float(a.dtype):
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _pristine(call, snapshot):
    """args and kwargs with every array operand cloned from the pre-call snapshot."""
    args = [clone(a, call.mem, snapshot) for a in call.args]
    kwargs = {k: clone(v, call.mem, snapshot) for k, v in call.kwargs.items()}
    return args, kwargs


def _output_mask(call):
    """Per buffer, a bool mask of the bytes that belong to an output."""
    masks = [np.zeros(b.size, dtype=bool) for b in call.mem.bufs]
    for out in call.outputs.values():
        loc = call.mem.locate(out)
        if loc is None:
            continue
        i, off = loc
        if out.size == 0:
            continue
        offs = _byte_offsets(out) + off
        for k in range(out.dtype.itemsize):
            masks[i][offs + k] = True
    return masks


def _bytes_mask(mem, arr):
    """(buffer index, bool mask of the buffer's bytes that ``arr`` covers), or None.
    (np.shares_memory is exact but can take minutes and gigabytes on the strided and
    self-overlapping views the fuzzer makes; this is linear in the size.)"""
    loc = mem.locate(arr)
    if loc is None or arr.size == 0:
        return None
    i, off = loc
    mask = np.zeros(mem.bufs[i].size, dtype=bool)
    offs = _byte_offsets(arr) + off
    for k in range(arr.dtype.itemsize):
        mask[offs + k] = True
    return i, mask


def _overlap(mem, a, b):
    ma, mb = _bytes_mask(mem, a), _bytes_mask(mem, b)
    if ma is None or mb is None or ma[0] != mb[0]:
        return False
    return bool(np.any(ma[1] & mb[1]))


def _has_alias(call):
    outs = list(call.outputs.values())
    if not outs:
        return False
    arrays = [v for _, v in call.operands() if isinstance(v, np.ndarray)]
    for o in outs:
        if o.size > 1 and _internal_overlap(o):
            return True
        for a in arrays:
            if a is not o and _overlap(call.mem, o, a):
                return True
            if a is o and sum(1 for b in arrays if b is o) > 1:
                return True
    return False


def run_case(spec, target=None):
    """Build and check one case; return a list of Failures (empty: passed)."""
    fails = []
    func = spec["func"]

    def fail(kind, what, message):
        fails.append(Failure(kind, func, what, message, spec, target=target))

    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call = build(spec)
    except Exception:  # noqa: BLE001 -- a bug of the fuzzer, reported as such
        fail("harness-error", "build", traceback.format_exc()[-1500:])
        return fails
    spec = call.spec
    snapshot = call.mem.snapshot()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_args, p_kwargs = _pristine(call, snapshot)
    result, exc, caught = _invoke(call, call.args, call.kwargs)
    for w in caught:
        if any(a in str(w.message) for a in call.allowed_warnings):
            continue
        fail("warning", f"{w.category.__name__}: {_generic(str(w.message))}",
             f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})")
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _check_outcome(call, spec, result, exc, fail, p_args, p_kwargs, snapshot)
    except Exception:  # noqa: BLE001 -- a bug of the fuzzer, reported as such
        fail("harness-error", "check", traceback.format_exc()[-1500:])
    return fails


def _generic(msg):
    """A warning / exception message without its numbers (for grouping)."""
    out, prev_digit = [], False
    for ch in msg[:80]:
        if ch.isdigit():
            if not prev_digit:
                out.append("#")
            prev_digit = True
        else:
            out.append(ch)
            prev_digit = False
    return "".join(out)


def _check_outcome(call, spec, result, exc, fail, p_args, p_kwargs, snapshot):
    if exc is not None:
        if call.must_raise and isinstance(exc, call.must_raise):
            return
        if call.may_raise and isinstance(exc, call.may_raise):
            return
        # An output whose own elements share memory may always be refused, however it
        # came about (e.g. a shifted view of a broadcast input, stride 0); so may a
        # read-only output (whichever of several errors is reported first).
        if isinstance(exc, ValueError) and "overlaps itself" in str(exc) and any(
            o.size > 1 and _internal_overlap(o) for o in call.outputs.values()
        ):
            return
        if isinstance(exc, ValueError) and "read-only" in str(exc) and any(
            isinstance(o, np.ndarray) and not o.flags.writeable
            for o in call.outputs.values()
        ):
            return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
        if call.must_raise:
            fail("wrong-exception", f"{type(exc).__name__} (expected "
                 f"{'/'.join(t.__name__ for t in call.must_raise)})", tb)
        else:
            fail("exception", f"{type(exc).__name__}: {_generic(str(exc))[:60]}", tb)
        return
    if call.must_raise:
        fail("no-exception", f"bad input {spec['bad']!r} accepted",
             f"expected {'/'.join(t.__name__ for t in call.must_raise)}; got a result")
        return
    # outputs returned as themselves
    for name, path in call.returns.items():
        try:
            got = _get(result, path)
        except Exception as e:  # noqa: BLE001
            fail("wrong-type", f"{name} not returned", repr(e))
            continue
        if got is not call.outputs[name]:
            fail("wrong-type", f"{name} not returned as itself",
                 f"returned {type(got).__name__}, not the {name} array passed in")
    # values against the reference
    expects = call.expect(p_args, p_kwargs)
    self_overlap = any(o.size > 1 and _internal_overlap(o) for o in call.outputs.values())
    for e in expects:
        try:
            actual = _get(result, e.path)
        except Exception as ex:  # noqa: BLE001
            fail("wrong-type", f"{e.name}: result structure", repr(ex))
            continue
        if self_overlap and any(actual is o for o in call.outputs.values()):
            continue  # judged against the un-aliased call below
        msg = check_values(actual, e)
        if msg:
            kind = ("wrong-shape" if "shape" in msg.split("\n")[0] and "tolerance" not in msg
                    else "wrong-type" if ("dtype" in msg.split(":")[1][:8]
                                          or "expected" in msg.split("\n")[0]
                                          and "tolerance" not in msg
                                          and "NaN" not in msg and "infinit" not in msg)
                    else "wrong-value")
            fail(kind, f"{e.name} ({np.dtype(e.dtype)})", msg)
    # inputs that are not outputs are unchanged
    masks = _output_mask(call)
    for i, (before, after) in enumerate(zip(snapshot, call.mem.bufs)):
        changed = (before != after) & ~masks[i]
        if np.any(changed):
            names = [n for n, v in call.operands() if call.mem.locate(v) and
                     call.mem.locate(v)[0] == i]
            fail("input-modified", f"buffer of {'/'.join(names)}",
                 f"{int(np.sum(changed))} bytes changed outside the outputs")
    # aliasing: the same call on private copies
    if _has_alias(call):
        _check_unaliased(call, result, fail, p_args, p_kwargs, snapshot, self_overlap)


def _check_unaliased(call, result, fail, p_args, p_kwargs, snapshot, self_overlap):
    c_args = [clone(a, call.mem, snapshot) for a in call.args]
    c_kwargs = {k: clone(v, call.mem, snapshot) for k, v in call.kwargs.items()}
    # The keyword that passes each output: its own name where it is passed under it (an
    # output may also be passed as an input, weight=grad_out: that keyword is not it).
    out_names = {name: name if call.kwargs.get(name) is arr
                 else next(k for k, v in call.kwargs.items() if v is arr)
                 for name, arr in call.outputs.items()}
    if self_overlap:
        # fresh, non-overlapping outputs for the reference call
        for name, key in out_names.items():
            o = call.outputs[name]
            c_kwargs[key] = np.zeros(o.shape, dtype=o.dtype)
    r2, exc2, _ = _invoke(call, c_args, c_kwargs)
    if exc2 is not None:
        fail("alias-mismatch", "un-aliased call raised",
             f"the aliased call succeeded, the un-aliased one raised {exc2!r}")
        return
    for name, key in out_names.items():
        o = call.outputs[name]
        fresh = c_kwargs[key]
        if self_overlap:
            msg = _check_overlapping_out(o, fresh)
            if msg:
                fail("alias-mismatch", f"self-overlapping {key}", msg)
        elif not _same(np.array(o), np.array(fresh)):
            fail("alias-mismatch", f"{key} ({_alias_name(call)})",
                 _diff_summary(np.asarray(o), np.asarray(fresh)))
    # the other returned values (losses)
    outs = list(call.outputs.values())
    if isinstance(result, tuple):
        for i, (a, b) in enumerate(zip(result, r2)):
            if any(a is o for o in outs):
                continue
            if not _same(a, b):
                fail("alias-mismatch", f"returned value {i} ({_alias_name(call)})",
                     _diff_summary(np.asarray(a), np.asarray(b)))
    elif not any(result is o for o in outs) and not _same(result, r2):
        fail("alias-mismatch", f"result ({_alias_name(call)})",
             _diff_summary(np.asarray(result), np.asarray(r2)))


def _alias_name(call):
    return call.spec.get("alias") or "overlap"


def _diff_summary(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"aliased: {a.dtype}{a.shape}, un-aliased: {b.dtype}{b.shape}"
    with np.errstate(all="ignore"):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        diff = ~((a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
        idx = np.argwhere(diff)[:4]
        err = np.where(diff, np.abs(a64 - b64), 0.0)
    lines = [f"{int(np.sum(diff))} of {a.size} elements differ from the un-aliased call; "
             f"max |diff| {np.nanmax(err) if err.size else 0:.3g}"]
    lines += [f"    at {tuple(int(i) for i in ix)}: aliased={a64[tuple(ix)]!r} "
              f"un-aliased={b64[tuple(ix)]!r}" for ix in idx]
    return "\n".join(lines)


def _check_overlapping_out(o, fresh):
    """Every memory location of the self-overlapping ``o`` holds one of the results
    (from ``fresh``) of the elements mapped to it."""
    offs = _byte_offsets(o)
    vals = np.asarray(o).reshape(-1).astype(np.float64)
    exp = np.asarray(fresh).reshape(-1).astype(np.float64)
    match = (vals == exp) | (np.isnan(vals) & np.isnan(exp))
    ok = {}
    for off, m in zip(offs.tolist(), match.tolist()):
        ok[off] = ok.get(off, False) or m
    bad = [off for off, m in ok.items() if not m]
    if bad:
        return (f"{len(bad)} of {len(ok)} memory locations hold none of the results "
                f"mapped to them")
    return None


# =======================================================================================
# describing a case
# =======================================================================================


def _arr_desc(mem, v):
    if not isinstance(v, np.ndarray):
        return repr(v)
    loc = mem.locate(v)
    where = f"buf{loc[0]}+{loc[1]}" if loc else "own memory"
    flags = []
    if not v.flags.aligned:
        flags.append("unaligned")
    if not v.flags.writeable:
        flags.append("read-only")
    return (f"ndarray {_dtype_str(v.dtype)} shape={v.shape} strides={v.strides} at {where}"
            + (f" ({', '.join(flags)})" if flags else ""))


def _dtype_str(dt):
    """``dt.str``, but "bfloat16" for bfloat16 (whose ``str`` is "<V2")."""
    return "bfloat16" if is_bf16(dt) else dt.str


def _dtype_src(dt):
    """Source text that makes the dtype ``dt`` in a reproduction."""
    return "ml_dtypes.bfloat16" if is_bf16(dt) else f"np.dtype('{dt.str}')"


def describe(spec, code=True):
    """A readable description of the case, and a self-contained Python reproduction
    (when its buffers are small enough to print)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call = build(spec)
    lines = [f"call: {'logitkit.' + call.fname}("
             + ", ".join([f"arg{i}" for i in range(len(call.args))]
                         + [f"{k}={k if isinstance(v, np.ndarray) else repr(v)}"
                            for k, v in call.kwargs.items()]) + ")"]
    for name, v in call.operands():
        lines.append(f"  {name}: {_arr_desc(call.mem, v)}")
    if call.notes:
        lines.append("  notes: " + "; ".join(call.notes))
    if not code:
        return "\n".join(lines)
    total = sum(b.size for b in call.mem.bufs)
    lines.append("spec: " + json.dumps(call.spec, sort_keys=True))
    if total > 6000 or any(isinstance(v, np.ndarray) and call.mem.locate(v) is None
                           and v.size > 200 for _, v in call.operands()):
        lines.append(f"(buffers of {total} bytes: replay with --replay '<spec>')")
        return "\n".join(lines)
    uses_bf16 = any(isinstance(v, np.ndarray) and is_bf16(v.dtype)
                    for _, v in call.operands())
    src = ["import numpy as np, logitkit" + (", ml_dtypes" if uses_bf16 else ""),
           "from logitkit import special",
           "def buffer(hexdata, misalign):",
           "    raw = np.zeros(len(hexdata) // 2 + 128, np.uint8)",
           "    start = (-raw.ctypes.data) % 64 + misalign",
           "    b = raw[start:start + len(hexdata) // 2]",
           "    b[:] = np.frombuffer(bytes.fromhex(hexdata), np.uint8)",
           "    return b"]
    for i, b in enumerate(call.mem.bufs):
        src.append(f"buf{i} = buffer('{b.tobytes().hex()}', {b.ctypes.data % 64})")
    names = {}
    for name, v in call.operands():
        if isinstance(v, np.ndarray):
            loc = call.mem.locate(v)
            if loc:
                src.append(f"{name} = np.ndarray({v.shape}, {_dtype_src(v.dtype)}, "
                           f"buffer=buf{loc[0]}, offset={loc[1]}, strides={v.strides})")
                if not v.flags.writeable:
                    src.append(f"{name}.flags.writeable = False")
            else:
                vals = v.astype(np.float64).tolist() if is_bf16(v.dtype) else v.tolist()
                src.append(f"{name} = np.array({vals!r}, dtype={_dtype_src(v.dtype)})")
            names[id(v)] = name
    argl = [names.get(id(a), repr(a)) for a in call.args]
    kwl = [f"{k}={names.get(id(v), repr(v))}" for k, v in call.kwargs.items()]
    mod = "special." + call.fname.split(".")[1] if "." in call.fname else \
        "logitkit." + call.fname
    src.append(f"result = {mod}({', '.join(argl + kwl)})")
    src.append("print(result)")
    lines.append("reproduction:\n    " + "\n    ".join(src))
    return "\n".join(lines)


# =======================================================================================
# shrinking
# =======================================================================================


def _shrink_candidates(spec):
    s = json.loads(json.dumps(spec))
    shape = s["shape"]
    for i, n in enumerate(shape):
        for m in (1, 2, n // 2, n - 1):
            if 0 <= m < n and not (m == 0 and n > 0):
                c = json.loads(json.dumps(s))
                c["shape"][i] = m
                yield c
    if len(shape) > 1 and isinstance(s["axis"], int):
        ax = s["axis"] % len(shape)
        for i in range(len(shape)):
            if i != ax:
                c = json.loads(json.dumps(s))
                del c["shape"][i]
                nd = len(c["shape"])
                c["axis"] = (ax - (1 if i < ax else 0)) - (nd if s["axis"] < 0 else 0)
                yield c
    for key in ("layout",):
        if s["x"][key] != "C":
            c = json.loads(json.dumps(s))
            c["x"][key] = "C"
            yield c
    for key in ("unaligned", "readonly"):
        if s["x"][key]:
            c = json.loads(json.dumps(s))
            c["x"][key] = False
            yield c
    for k in list(s["opts"]):
        if isinstance(s["opts"][k], dict) and s["opts"][k].get("layout", "C") != "C":
            c = json.loads(json.dumps(s))
            c["opts"][k]["layout"] = "C"
            yield c
        if k in ("weight", "pos_weight", "ignore_index", "label_smoothing", "keepdims",
                 "base", "b", "return_sign", "out", "grad_out", "return_grad"):
            c = json.loads(json.dumps(s))
            del c["opts"][k]
            yield c
        if k == "reduction" and s["opts"][k] != "sum":
            c = json.loads(json.dumps(s))
            c["opts"][k] = "sum"
            yield c
    if s["alias"] is not None:
        c = json.loads(json.dumps(s))
        c["alias"] = None
        yield c
    if s["values"] != "normal":
        c = json.loads(json.dumps(s))
        c["values"] = "normal"
        yield c
    for seed in (0, 1, 2):
        if s["data_seed"] != seed:
            c = json.loads(json.dumps(s))
            c["data_seed"] = seed
            yield c


def shrink(spec, still_fails, budget=150):
    """Greedy: keep applying simplifications while ``still_fails(spec)`` holds."""
    best = spec
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for cand in _shrink_candidates(best):
            tries += 1
            if tries > budget:
                break
            try:
                if still_fails(cand):
                    best = cand
                    improved = True
                    break
            except Infeasible:
                continue
            except Exception:  # noqa: BLE001 -- a candidate the builder cannot make
                continue
    return best


def _same_failure(key, target):
    def pred(cand):
        return any(f.key() == key for f in _run_on_target(cand, target))
    return pred


def _run_on_target(spec, target):
    prev = None
    if target is not None:
        prev = logitkit._core._set_target(target)
    try:
        return run_case(spec, target)
    finally:
        if prev is not None:
            logitkit._core._set_target(prev)


# =======================================================================================
# driver
# =======================================================================================


def case_spec(seed, index, small=False, dtypes=None):
    """The spec of case ``index`` of ``seed`` (each case has its own generator).

    ``dtypes`` (names, e.g. ("float16", "bfloat16")): only cases whose logits (the
    spec's "dtype") have one of them: the case's generator draws specs until one does
    (the other operands' dtypes are drawn as usual)."""
    rng = np.random.default_rng([int(seed), int(index)])
    spec = generate_spec(rng, small=small)
    if dtypes:
        wanted = {parse_dtype_name(d) for d in dtypes}
        while spec["dtype"] not in wanted:
            spec = generate_spec(rng, small=small)
    return spec


def parse_dtype_name(name):
    """A --dtypes entry as the generator spells it ("float16", "bfloat16", ">f4", ...)."""
    name = name.strip()
    if name == "bfloat16":
        if BFLOAT16 is None:
            raise SystemExit("--dtypes bfloat16 needs ml_dtypes: pip install ml_dtypes")
        return name
    known = FLOAT_DTYPES + INT_DTYPES
    if name not in known:
        raise SystemExit(f"unknown dtype {name!r} for --dtypes; one of {known}")
    return name


def spec_from_bytes(data):
    """A spec from arbitrary bytes (the atheris target): the bytes seed the generator,
    so every input decodes to a valid case; coverage guidance then favours the bytes
    whose cases reach new code."""
    data = bytes(data)
    words = np.frombuffer(data[: len(data) - len(data) % 4] or b"\0\0\0\0", dtype="<u4")
    small = len(data) % 2 == 0
    return generate_spec(np.random.default_rng(words.astype(np.uint64)), small=small)


def resolve_targets(arg):
    supported = list(logitkit.capabilities()["supported"])
    if arg in (None, "active"):
        return [None]
    if arg == "all":
        return supported
    names = arg.split(",")
    for n in names:
        if n not in supported:
            raise SystemExit(f"unknown or unsupported target {n!r}; supported: {supported}")
    return names


def fuzz(seed, start, count, targets=(None,), small=False, announce=None, do_shrink=True,
         on_failure=None, dtypes=None):
    """Run cases [start, start + count) of ``seed`` on each target; return Failures
    (the first of each key; all, if ``on_failure`` collects them).  ``dtypes``: see
    ``case_spec``."""
    seen = {}
    for index in range(start, start + count):
        spec = case_spec(seed, index, small, dtypes)
        for target in targets:
            if announce:
                announce(index, target)
            fails = _run_on_target(spec, target)
            for f in fails:
                f.seed, f.index = seed, index
                if on_failure:
                    on_failure(f)
                if f.key() in seen:
                    seen[f.key()][1] += 1
                    continue
                if do_shrink and f.kind not in ("crash", "hang"):
                    small_spec = shrink(f.spec, _same_failure(f.key(), target))
                    if small_spec is not f.spec:
                        again = [g for g in _run_on_target(small_spec, target)
                                 if g.key() == f.key()]
                        if again:
                            f.message = again[0].message
                            f.spec = again[0].spec
                seen[f.key()] = [f, 1]
    out = []
    for f, n in seen.values():
        f.count = n
        out.append(f)
    return out


def report(f, file=sys.stdout):
    print("=" * 88, file=file)
    print(f"FAILURE [{f.kind}] {f.func}: {f.what}", file=file)
    print(f"  seed={f.seed} case={f.index} target={f.target or 'active'} "
          f"(occurrences: {getattr(f, 'count', 1)})", file=file)
    print("  " + f.message.replace("\n", "\n  "), file=file)
    try:
        print(describe(f.spec), file=file)
    except Exception as e:  # noqa: BLE001
        print(f"(could not describe the case: {e!r})", file=file)
    print(f"replay: python tests/fuzzing.py --replay '{json.dumps(f.spec)}'"
          + (f" --targets {f.target}" if f.target else ""), file=file)


# --- subprocess mode --------------------------------------------------------------------


def _child(args):
    """Run a batch; one JSON line per event on stdout."""
    import faulthandler
    faulthandler.enable()
    targets = resolve_targets(args.targets)

    def announce(index, target):
        print(json.dumps({"start": index, "target": target}), flush=True)

    def on_failure(f):
        pass

    fails = fuzz(args.seed, args.start, args.cases, targets, args.small, announce,
                 not args.no_shrink, on_failure, _dtypes_arg(args))
    for f in fails:
        d = f.to_json()
        d["count"] = f.count
        print(json.dumps({"fail": d}), flush=True)
    print(json.dumps({"done": True}), flush=True)


def _parent(args):
    targets = resolve_targets(args.targets)
    seen = {}
    pos, end = args.start, args.start + args.cases
    t0 = time.time()
    while pos < end:
        n = min(args.batch, end - pos)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--seed",
               str(args.seed), "--start", str(pos), "--cases", str(n), "--targets",
               args.targets or "active", "--no-shrink"]
        if args.small:
            cmd.append("--small")
        if args.strict_known:
            cmd.append("--strict-known")
        if args.dtypes:
            cmd += ["--dtypes", args.dtypes]
        last = None
        done = False
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            stdout, stderr = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            kind = "hang"
        else:
            kind = "crash"
        for line in stdout.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if "start" in ev:
                last = ev
            elif "fail" in ev:
                d = ev["fail"]
                f = Failure(d["kind"], d["func"], d["what"], d["message"], d["spec"],
                            d["seed"], d["index"], d["target"])
                f.count = d.get("count", 1)
                if f.key() in seen:
                    seen[f.key()].count += f.count
                else:
                    seen[f.key()] = f
                    if args.verbose:
                        report(f)
            elif ev.get("done"):
                done = True
        if done:
            pos += n
        else:
            if last is None:
                raise SystemExit(f"child failed before its first case:\n{stderr[-3000:]}")
            idx = last["start"]
            spec = case_spec(args.seed, idx, args.small, _dtypes_arg(args))
            what = (f"signal {-proc.returncode}" if proc.returncode and proc.returncode < 0
                    else f"exit status {proc.returncode}") if kind == "crash" else \
                f"no result within {args.timeout} s (batch)"
            f = Failure(kind, spec["func"], what, stderr[-2500:], spec, args.seed, idx,
                        last["target"])
            f.count = 1
            if f.key() in seen:
                seen[f.key()].count += 1
            else:
                seen[f.key()] = f
                if args.verbose:
                    report(f)
            pos = idx + 1
        if args.verbose:
            print(f"... {pos - args.start}/{args.cases} cases, {len(seen)} failure classes, "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    if not args.no_shrink:
        for f in seen.values():
            if f.kind in ("crash", "hang"):
                continue
            _shrink_in_child(f, args.timeout)
    return list(seen.values())


def _shrink_in_child(f, timeout):
    """Shrink the failure ``f`` in a child process (a candidate may crash)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--shrink-failure",
           json.dumps(f.to_json())] + ([] if ACCEPT_KNOWN_BF16_FLUSH else ["--strict-known"])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
        d = json.loads(out.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return
    f.spec, f.message = d["spec"], d["message"]


def _shrink_failure(text):
    d = json.loads(text)
    f = Failure(d["kind"], d["func"], d["what"], d["message"], d["spec"], d["seed"],
                d["index"], d["target"])
    small = shrink(f.spec, _same_failure(f.key(), f.target))
    again = [g for g in _run_on_target(small, f.target) if g.key() == f.key()]
    if again:
        f.spec, f.message = again[0].spec, again[0].message
    print(json.dumps(f.to_json()), flush=True)


def _dtypes_arg(args):
    return [parse_dtype_name(d) for d in args.dtypes.split(",")] if args.dtypes else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--targets", default=None,
                    help="'all' (every supported SIMD target), 'active' (default), or "
                         "names separated by commas")
    ap.add_argument("--subprocess", action="store_true",
                    help="run batches in child processes (reports crashes and hangs)")
    ap.add_argument("--batch", type=int, default=500, help="cases per child process")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per batch")
    ap.add_argument("--small", action="store_true", help="small arrays only (quick runs)")
    ap.add_argument("--dtypes", metavar="NAMES",
                    help="only cases whose logits have one of these dtypes, separated by "
                         "commas (e.g. float16,bfloat16); --case needs the same option")
    ap.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    ap.add_argument("--strict-known", action="store_true",
                    help="report the known bug ACCEPT_KNOWN_BF16_FLUSH describes too")
    ap.add_argument("--replay", metavar="SPEC_JSON", help="run one case given by its spec")
    ap.add_argument("--case", type=int, help="run one case of --seed by its index")
    ap.add_argument("--announce", action="store_true",
                    help="print every case before running it (to stderr)")
    ap.add_argument("--json", metavar="FILE", help="also write the failures as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shrink-failure", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global ACCEPT_KNOWN_BF16_FLUSH
    if args.strict_known:
        ACCEPT_KNOWN_BF16_FLUSH = False
    if args.shrink_failure:
        _shrink_failure(args.shrink_failure)
        return 0

    if args.child:
        _child(args)
        return 0
    targets = resolve_targets(args.targets)
    if args.replay or args.case is not None:
        spec = json.loads(args.replay) if args.replay else case_spec(
            args.seed, args.case, args.small, _dtypes_arg(args))
        print(describe(spec))
        fails = []
        for t in targets:
            for f in _run_on_target(spec, t):
                f.seed, f.index = args.seed if args.case is not None else None, args.case
                fails.append(f)
        for f in fails:
            report(f)
        print("FAILED" if fails else "passed")
        return 1 if fails else 0
    t0 = time.time()
    dtypes = _dtypes_arg(args)
    if args.subprocess:
        fails = _parent(args)
    else:
        announce = None
        if args.announce:
            def announce(index, target):
                print(f"case {index} target {target or 'active'}: "
                      f"{json.dumps(case_spec(args.seed, index, args.small, dtypes))}",
                      file=sys.stderr, flush=True)
        fails = fuzz(args.seed, args.start, args.cases, targets, args.small, announce,
                     not args.no_shrink, dtypes=dtypes)
    for f in sorted(fails, key=lambda f: (f.func, f.kind, f.what)):
        report(f)
    print("=" * 88)
    print(f"{args.cases} cases x {len(targets)} target(s) in {time.time() - t0:.1f} s: "
          f"{len(fails)} distinct failure(s)")
    for f in sorted(fails, key=lambda f: (f.func, f.kind, f.what)):
        print(f"  [{f.kind}] {f.func}: {f.what}  x{getattr(f, 'count', 1)}  "
              f"(seed {f.seed} case {f.index})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([dict(f.to_json(), count=getattr(f, "count", 1)) for f in fails], fh,
                      indent=1)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
