"""Outputs that share memory with the arrays of the *options*: the ``where=`` mask of
softmax / log_softmax / logsumexp, and ``sample_weight=`` of binary_cross_entropy.

The contract is that of test_aliasing.py: an output may alias any input; the result must
then be the one the same call gives on unshared memory (computed through a temporary),
never a silently wrong answer. The kernels read the mask while they write the output, so
an ``out`` laid over the mask's bytes could overwrite mask bytes before they are read.

Each case builds the aliasing from one raw ``np.uint8`` buffer: the float output is a
view of part of it and the bool mask (or the sample weights) a view of the same bytes in
some pattern. The mask values are written through their view, copied to fresh memory,
and the call on the aliased arrays is compared with the call on the fresh copies.
(entropy and kl_divergence take ``where=`` but have no output argument: nothing to alias.)
"""

import numpy as np
import pytest

import logitkit

pytestmark = pytest.mark.filterwarnings("error")

N_ROWS = 11
ROW_LENGTHS = (7, 17, 33)
DTYPES = (np.float32, np.float64)


def _align_up(n, k):
    return -(-n // k) * k


def _align_down(n, k):
    return n // k * k


def _c_view(raw, offset, shape, dtype):
    return np.ndarray(shape, np.dtype(dtype), buffer=raw, offset=offset)


# name -> f(out_bytes, mask_bytes, itemsize, mask_row_bytes) -> (out_offset, mask_offset);
# both C-ordered in one raw buffer, the output always aligned to its item size.
PATTERNS = {
    # the mask is the first bytes of the output
    "start": lambda o, m, i, r: (0, 0),
    # the two end on the same byte
    "end": lambda o, m, i, r: (_align_down(max(o, m) - o, i), max(o, m) - m),
    # the mask starts one output element in
    "mask_shift_1": lambda o, m, i, r: (0, i),
    # the output starts at the mask's second row (what row 0's result overwrites is
    # what row 1 reads)
    "out_shift_row": lambda o, m, i, r: (_align_up(r, i), 0),
}


def _arrange(pattern, out_shape, dtype, mask_shape):
    """(out, mask) views of one raw buffer in ``pattern``, or None if they do not overlap."""
    dtype = np.dtype(dtype)
    o = int(np.prod(out_shape)) * dtype.itemsize
    m = int(np.prod(mask_shape))
    r = mask_shape[-1] if mask_shape else 1
    if pattern == "element_bytes":
        # each mask element is the first byte of the output element at its index
        if tuple(mask_shape) != tuple(out_shape):
            return None
        raw = np.zeros(o + 64, dtype=np.uint8)
        out = _c_view(raw, 0, out_shape, dtype)
        mask = out.view(np.uint8)[..., :: dtype.itemsize].view(np.bool_)
        assert mask.shape == tuple(mask_shape)
        return out, mask
    out_off, mask_off = PATTERNS[pattern](o, m, dtype.itemsize, r)
    assert out_off >= 0 and mask_off >= 0
    raw = np.zeros(max(out_off + o, mask_off + m) + 64, dtype=np.uint8)
    out = _c_view(raw, out_off, out_shape, dtype)
    mask = _c_view(raw, mask_off, mask_shape, np.bool_)
    if not np.shares_memory(out, mask):
        return None
    return out, mask


def _mask_values(rng, shape):
    # About half left out, so that bytes of a float written over the mask (almost never 0)
    # turn left-out elements into included ones; at least one included per row.
    w = rng.random(shape) < 0.5
    w[..., 0] = True
    return w


def _check(fn_name, call, x, out_shape, dtype, mask_shape, pattern, rng):
    arranged = _arrange(pattern, out_shape, dtype, mask_shape)
    if arranged is None:
        return None
    out, mask = arranged
    values = _mask_values(rng, mask_shape)
    mask[...] = values
    assert np.array_equal(mask, values)
    expected = call(x, np.array(mask, copy=True), None)  # fresh, unshared memory
    returned = call(x, mask, out)
    if returned is not out:
        return f"{fn_name}: did not return its out array"
    tol = 2e-6 if np.dtype(dtype) == np.float32 else 1e-13
    if not np.allclose(out, expected, rtol=tol, atol=tol, equal_nan=True) or not np.array_equal(
        np.isinf(out), np.isinf(expected)
    ):
        with np.errstate(invalid="ignore"):
            diff = np.nanmax(np.abs(out.astype(np.float64) - expected.astype(np.float64)))
        return f"{fn_name}: out differs from the unshared call (max |diff| {diff:.3g})"
    return None


def _cases(fn_name, per_class_mask):
    """Run one function over dtypes, row lengths, axes and patterns; the failures."""
    failures = []
    for dtype in DTYPES:
        for n_cls in ROW_LENGTHS:
            for axis in (-1, 0):
                shape = (N_ROWS, n_cls) if axis == -1 else (n_cls, N_ROWS)
                if per_class_mask:
                    # one row of the mask, broadcast over the other axis (zero strides)
                    mask_shape = (n_cls,) if axis == -1 else (n_cls, 1)
                else:
                    mask_shape = shape
                for pattern in (*PATTERNS, "element_bytes"):
                    rng = np.random.default_rng(
                        [len(fn_name), n_cls, axis + 2, np.dtype(dtype).itemsize,
                         int(per_class_mask), len(pattern)])
                    x = (rng.standard_normal(shape) * 3).astype(dtype)
                    if fn_name == "logsumexp":
                        out_shape = tuple(n for i, n in enumerate(shape) if i != axis % 2)

                        def call(x, where, out, axis=axis):
                            if out is None:
                                return np.asarray(
                                    logitkit.logsumexp(x, axis=axis, where=where, workers=1))
                            return logitkit.logsumexp(x, axis=axis, where=where, out=out,
                                                      workers=1)
                    else:
                        out_shape = shape
                        fn = getattr(logitkit, fn_name)

                        def call(x, where, out, axis=axis, fn=fn):
                            return fn(x, axis=axis, where=where, out=out, workers=1)

                    problem = _check(fn_name, call, x, out_shape, dtype, mask_shape,
                                     pattern, rng)
                    if problem:
                        failures.append(f"{problem}; {np.dtype(dtype).name}, {n_cls} "
                                        f"classes, axis {axis}, mask {mask_shape}, "
                                        f"pattern {pattern}")
    return failures


def _report(failures):
    shown = "\n".join(failures[:8])
    more = f"\n... and {len(failures) - 8} more" if len(failures) > 8 else ""
    return f"{len(failures)} aliased calls went wrong:\n{shown}{more}"


@pytest.mark.parametrize("per_class_mask", [False, True], ids=["full_mask", "per_class_mask"])
@pytest.mark.parametrize("fn_name", ["softmax", "log_softmax", "logsumexp"])
def test_out_sharing_memory_with_where_mask(simd_target, fn_name, per_class_mask):
    failures = _cases(fn_name, per_class_mask)
    assert not failures, _report(failures)


@pytest.mark.parametrize("fn_name", ["softmax", "log_softmax"])
def test_where_mask_viewed_from_out_bytes(simd_target, fn_name):
    # The plain fast path (float64 in, float64 out, both owning their memory): `where` is
    # a bool view of the first bytes of out's own buffer.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N_ROWS, 17)) * 3
    out = np.empty_like(x)
    assert out.flags.owndata and x.flags.owndata
    where = out.reshape(-1).view(np.bool_)[: x.size].reshape(x.shape)
    where[...] = _mask_values(rng, x.shape)
    expected = getattr(logitkit, fn_name)(x, where=where.copy())
    result = getattr(logitkit, fn_name)(x, where=where, out=out, workers=1)
    assert result is out
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------------
# binary_cross_entropy: grad_out against sample_weight
# ---------------------------------------------------------------------------------------

BCE_PATTERNS = ("column", "start", "end", "shift_1")


def _bce_arrange(pattern, shape, dtype, sw_dtype):
    """(grad_out, sample_weight) sharing one raw buffer, or None if they do not overlap."""
    dtype, sw_dtype = np.dtype(dtype), np.dtype(sw_dtype)
    o = int(np.prod(shape)) * dtype.itemsize
    s = shape[0] * sw_dtype.itemsize
    raw = np.zeros(o + s + 64, dtype=np.uint8)
    grad_out = _c_view(raw, 0, shape, dtype)
    if pattern == "column":
        if sw_dtype != dtype:
            return None
        sw = grad_out[:, 0]  # one weight per sample: the first column of the gradient
    else:
        # ("end": the weights end where grad_out does, or start with it if they are longer;
        # never a negative offset, which np.ndarray does not check)
        offset = {"start": 0, "end": max(o - s, 0), "shift_1": dtype.itemsize}[pattern]
        offset = _align_up(offset, sw_dtype.itemsize)
        assert 0 <= offset and offset + s <= raw.size
        sw = _c_view(raw, offset, (shape[0],), sw_dtype)
    if not np.shares_memory(grad_out, sw):
        return None
    return grad_out, sw


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("pattern", BCE_PATTERNS)
def test_bce_grad_out_sharing_memory_with_sample_weight(simd_target, pattern, reduction):
    failures = []
    for dtype in DTYPES:
        for sw_dtype in (dtype, np.float64, np.float32):
            for n_cls in (1, *ROW_LENGTHS):
                shape = (N_ROWS, n_cls)
                arranged = _bce_arrange(pattern, shape, dtype, sw_dtype)
                if arranged is None:
                    continue
                grad_out, sw = arranged
                rng = np.random.default_rng([n_cls, np.dtype(dtype).itemsize,
                                             np.dtype(sw_dtype).itemsize, len(pattern)])
                z = (rng.standard_normal(shape) * 3).astype(dtype)
                y = rng.uniform(0, 1, size=shape).astype(dtype)
                values = rng.uniform(0.0, 3.0, size=shape[0]).astype(sw_dtype)
                values[rng.random(shape[0]) < 0.3] = 0.0
                sw[...] = values
                want_loss, want_grad = logitkit.binary_cross_entropy(
                    z, y, sample_weight=values.copy(), reduction=reduction,
                    return_grad=True, workers=1)
                loss, grad = logitkit.binary_cross_entropy(
                    z, y, sample_weight=sw, reduction=reduction, return_grad=True,
                    grad_out=grad_out, workers=1)
                label = (f"{np.dtype(dtype).name} grad, {np.dtype(sw_dtype).name} weights, "
                         f"{n_cls} classes")
                if grad is not grad_out:
                    failures.append(f"{label}: did not return grad_out")
                    continue
                tol = 2e-6 if np.dtype(dtype) == np.float32 else 1e-13
                if not np.allclose(grad, want_grad, rtol=tol, atol=tol):
                    failures.append(f"{label}: gradient differs from the unshared call")
                if not np.allclose(loss, want_loss, rtol=tol, atol=tol):
                    failures.append(f"{label}: loss differs from the unshared call")
    assert not failures, _report(failures)
