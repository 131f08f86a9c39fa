"""linear_cross_entropy: the loss and gradients of ``cross_entropy(x @ W.T + b, t)``
computed a chunk of tokens at a time, against the float64 reference on materialised
logits (gradients by the chain rule: G @ W, G.T @ x, sum of G) and against PyTorch's
autograd where PyTorch is installed."""

import math

import numpy as np
import pytest

import logitkit
import reference
from helpers import rng_for
from loss_helpers import REDUCTIONS, class_weights

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - bfloat16 is optional
    ml_dtypes = None

DTYPES = [np.float64, np.float32, np.float16]
if ml_dtypes is not None:
    DTYPES.append(ml_dtypes.bfloat16)


def _problem(rng, batch, hidden, vocab, dtype, ignore=False, bias=True):
    x = (rng.standard_normal(batch + (hidden,)) * 0.7).astype(dtype)
    w = (rng.standard_normal((vocab, hidden)) * 1.3).astype(dtype)
    b = (rng.standard_normal(vocab) * 2.0).astype(dtype) if bias else None
    t = rng.integers(0, vocab, batch)
    if ignore and t.size:
        t.reshape(-1)[:: 3] = -100
    return x, w, b, t


def _reference(x, w, b, t, reference_loss=reference.cross_entropy, **opts):
    """Loss and (grad_x, grad_w, grad_b) in float64 from materialised logits."""
    x64 = np.asarray(x, dtype=np.float64)
    w64 = np.asarray(w, dtype=np.float64)
    z = x64 @ w64.T
    if b is not None:
        z = z + np.asarray(b, dtype=np.float64)
    loss, g = reference_loss(z, t, return_grad=True, **opts)
    g2 = g.reshape(-1, w.shape[0])
    gx = (g2 @ w64).reshape(x.shape)
    gw = g2.T @ x64.reshape(-1, w.shape[1])
    gb = g2.sum(axis=0)
    return loss, gx, gw, gb


def _reference_options(x, w, b, t, **opts):
    """_reference through reference.cross_entropy_options (the part-7 options)."""
    return _reference(x, w, b, t, reference_loss=reference.cross_entropy_options, **opts)


OPTION_CASES = {
    "temperature": {"temperature": 0.7},
    "softcap": {"softcap": 4.0},
    "z_loss": {"z_loss": 1e-2},
    "where": {"where": "vocab"},
    "where-full": {"where": "full"},
    "sample_weight": {"sample_weight": True},
    "all": {"temperature": 1.6, "softcap": 5.0, "z_loss": 3e-3, "where": "vocab",
            "sample_weight": True, "label_smoothing": 0.1},
}


def _options(rng, case, batch, vocab):
    opts = dict(OPTION_CASES[case])
    if opts.get("where") == "vocab":
        mask = rng.random(vocab) < 0.8
        mask[:3] = True  # the targets below avoid masked classes
        opts["where"] = mask
    elif opts.get("where") == "full":
        mask = rng.random(batch + (vocab,)) < 0.8
        opts["where"] = mask
    if opts.get("sample_weight"):
        opts["sample_weight"] = rng.random(batch) * 2.0
    return opts


def _unmasked_targets(rng, t, opts, vocab):
    """Targets moved onto classes their mask keeps (a masked target's loss is +inf)."""
    mask = opts.get("where")
    if mask is None:
        return t
    full = np.broadcast_to(mask, t.shape + (vocab,))
    t = t.copy()
    for i in np.ndindex(t.shape):
        if t[i] >= 0 and not full[i][t[i]]:
            t[i] = int(np.flatnonzero(full[i])[0])
    return t


def _tol(dtype, what="loss"):
    dt = np.dtype(dtype)
    if dt == np.float64:
        return 1e-11
    if dt == np.float32 or what == "loss":
        # 16-bit inputs are widened exactly and computed in float32.
        return 3e-5
    # The gradients of 16-bit inputs are rounded back to their dtype: half an ulp.
    return 3e-5 + (2.0**-11 if dt == np.float16 else 2.0**-8)


def _assert_close(actual, expected, dtype, what):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err <= _tol(dtype, what) * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64, None])
def test_matches_reference(simd_target, dtype, reduction, chunk_size):
    rng = rng_for("lce", np.dtype(dtype).name, reduction, chunk_size)
    x, w, b, t = _problem(rng, (3, 7), 24, 37, dtype, ignore=True)
    loss, grads = logitkit.linear_cross_entropy(
        x, w, t, linear_bias=b, reduction=reduction, return_grad=True, chunk_size=chunk_size
    )
    ref_loss, gx, gw, gb = _reference(x, w, b, t, reduction=reduction)
    _assert_close(loss, ref_loss, dtype, "loss")
    _assert_close(grads.x, gx, dtype, "grad x")
    _assert_close(grads.linear_weight, gw, dtype, "grad linear_weight")
    _assert_close(grads.linear_bias, gb, dtype, "grad linear_bias")
    assert grads.x.dtype == np.dtype(dtype) and grads.x.shape == x.shape
    assert grads.linear_weight.dtype == np.dtype(dtype)
    assert grads.linear_bias.dtype == np.dtype(dtype)
    expected_loss_dtype = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    assert np.asarray(loss).dtype == expected_loss_dtype
    if reduction == "none":
        assert loss.shape == t.shape
    # Without return_grad the same loss comes from the forward-only loop.
    alone = logitkit.linear_cross_entropy(
        x, w, t, linear_bias=b, reduction=reduction, chunk_size=chunk_size
    )
    np.testing.assert_array_equal(alone, loss)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_weights_and_smoothing(simd_target, dtype, smoothing, weighted):
    rng = rng_for("lce-opts", np.dtype(dtype).name, smoothing, weighted)
    x, w, b, t = _problem(rng, (29,), 16, 50, dtype, ignore=True, bias=False)
    cw = class_weights(rng, 50) if weighted else None
    for reduction in REDUCTIONS:
        loss, grads = logitkit.linear_cross_entropy(
            x, w, t, weight=cw, label_smoothing=smoothing, reduction=reduction,
            return_grad=True, chunk_size=5,
        )
        ref_loss, gx, gw, _ = _reference(
            x, w, None, t, weight=cw, label_smoothing=smoothing, reduction=reduction
        )
        _assert_close(loss, ref_loss, dtype, f"loss {reduction}")
        _assert_close(grads.x, gx, dtype, "grad x")
        _assert_close(grads.linear_weight, gw, dtype, "grad linear_weight")
        assert grads.linear_bias is None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_options_match_reference(simd_target, dtype, reduction, case):
    rng = rng_for("lce-options", np.dtype(dtype).name, reduction, case)
    x, w, b, t = _problem(rng, (3, 6), 16, 29, dtype, ignore=True)
    opts = _options(rng, case, t.shape, 29)
    t = _unmasked_targets(rng, t, opts, 29)
    loss, grads = logitkit.linear_cross_entropy(
        x, w, t, linear_bias=b, reduction=reduction, return_grad=True, chunk_size=4, **opts
    )
    ref_loss, gx, gw, gb = _reference_options(x, w, b, t, reduction=reduction, **opts)
    _assert_close(loss, ref_loss, dtype, "loss")
    _assert_close(grads.x, gx, dtype, "grad x")
    _assert_close(grads.linear_weight, gw, dtype, "grad linear_weight")
    _assert_close(grads.linear_bias, gb, dtype, "grad linear_bias")
    # And the same as cross_entropy on the materialised logits, with the same options.
    if np.dtype(dtype) == np.float64:
        z = x @ w.T + b
        direct = logitkit.cross_entropy(z, t, reduction=reduction, **opts)
        np.testing.assert_allclose(loss, direct, rtol=1e-12, atol=1e-14)


def test_option_errors_name_the_option():
    x = np.zeros((4, 3))
    w = np.zeros((5, 3))
    t = np.zeros(4, dtype=np.int64)
    f = logitkit.linear_cross_entropy
    for empty in (False, True):
        xe, te = (x[:0], t[:0]) if empty else (x, t)  # checked before any work
        with pytest.raises(ValueError, match="temperature"):
            f(xe, w, te, temperature=0.0)
        with pytest.raises(TypeError, match="temperature"):
            f(xe, w, te, temperature="2")
        with pytest.raises(ValueError, match="z_loss"):
            f(xe, w, te, z_loss=float("nan"))
    with pytest.raises(ValueError, match="softcap"):
        f(x, w, t, softcap=-1.0)
    with pytest.raises(ValueError, match="z_loss"):
        f(x, w, t, z_loss=-1.0)
    with pytest.raises(TypeError, match="where"):
        f(x, w, t, where=np.ones(5))
    with pytest.raises(ValueError, match="where"):
        f(x, w, t, where=np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="sample_weight"):
        f(x, w, t, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):
        f(x, w, t, sample_weight=-np.ones(4))
    with pytest.raises(TypeError, match="sample_weight"):
        f(x, w, t, sample_weight=np.array(["a"] * 4))


def test_chunking_does_not_change_the_float64_result(simd_target):
    rng = rng_for("lce-chunks")
    x, w, b, t = _problem(rng, (41,), 12, 30, np.float64, ignore=True)
    results = [
        logitkit.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True, chunk_size=c)
        for c in (1, 2, 7, 40, 41, 1000, None)
    ]
    first_loss, first = results[0]
    for loss, grads in results[1:]:
        assert abs(loss - first_loss) <= 1e-14 * abs(first_loss)
        for a, e in zip(grads, first):
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-15)


def test_ignored_and_empty():
    rng = rng_for("lce-empty")
    x, w, b, _ = _problem(rng, (5,), 4, 6, np.float64)
    t = np.full(5, -100)
    loss, grads = logitkit.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True)
    assert loss == 0.0
    assert not grads.x.any() and not grads.linear_weight.any() and not grads.linear_bias.any()
    x0 = np.zeros((0, 4))
    t0 = np.zeros(0, dtype=np.int64)
    assert logitkit.linear_cross_entropy(x0, w, t0) == 0.0
    assert logitkit.linear_cross_entropy(x0, w, t0, reduction="sum") == 0.0
    none = logitkit.linear_cross_entropy(x0, w, t0, reduction="none")
    assert none.shape == (0,)
    _, g0 = logitkit.linear_cross_entropy(x0, w, t0, return_grad=True)
    assert g0.x.shape == (0, 4) and not g0.linear_weight.any()


def test_single_token_without_batch_axis():
    rng = rng_for("lce-1")
    x, w, b, _ = _problem(rng, (), 5, 9, np.float64)
    loss, grads = logitkit.linear_cross_entropy(
        x, w, np.int64(4), linear_bias=b, reduction="none", return_grad=True
    )
    ref_loss, gx, gw, gb = _reference(x, w, b, np.int64(4), reduction="none")
    assert loss.shape == ()
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    np.testing.assert_allclose(grads.x, gx, rtol=1e-12, atol=1e-15)


def test_strided_and_fortran_inputs(simd_target):
    rng = rng_for("lce-layout")
    x, w, b, t = _problem(rng, (20,), 10, 17, np.float64)
    xs = np.asfortranarray(np.repeat(x, 2, axis=0)[::2])
    ws = np.asfortranarray(w)
    loss, grads = logitkit.linear_cross_entropy(
        xs, ws, t, linear_bias=b[::-1].copy()[::-1], return_grad=True, chunk_size=6
    )
    ref_loss, gx, gw, gb = _reference(x, w, b, t)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grads.linear_weight, gw, rtol=1e-11, atol=1e-14)


def test_inputs_are_not_modified():
    rng = rng_for("lce-readonly")
    x, w, b, t = _problem(rng, (9,), 6, 11, np.float32)
    for a in (x, w, b, t):
        a.flags.writeable = False
    logitkit.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True, chunk_size=4)


def test_bad_input():
    x = np.zeros((4, 3))
    w = np.zeros((5, 3))
    t = np.zeros(4, dtype=np.int64)
    f = logitkit.linear_cross_entropy
    with pytest.raises(ValueError, match="H = 3"):
        f(np.zeros((4, 2)), w, t)
    with pytest.raises(ValueError, match="2-d"):
        f(x, np.zeros(3), t)
    with pytest.raises(ValueError, match="at least one row"):
        f(x, np.zeros((0, 3)), t)
    with pytest.raises(ValueError, match="at least one dimension"):
        f(np.float64(1.0), w, t)
    with pytest.raises(ValueError, match="linear_bias"):
        f(x, w, t, linear_bias=np.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        f(x, w, np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        f(x, w, np.zeros(4))
    with pytest.raises(TypeError, match="boolean"):
        f(x, w, np.zeros(4, dtype=bool))
    with pytest.raises(TypeError, match="floating-point"):
        f(np.zeros((4, 3), dtype=np.int64), w, t)
    with pytest.raises(TypeError, match="floating-point"):
        f(x, np.zeros((5, 3), dtype=np.int32), t)
    with pytest.raises(TypeError):
        f(x.astype(np.complex128), w, t)
    with pytest.raises(IndexError, match=r"position \(2,\)"):
        f(x, w, np.array([0, 1, 5, 2]))
    with pytest.raises(IndexError, match=r"position \(1,\)"):
        f(x, w, np.array([0, -3, 1, 2]))
    for bad in (0, -1):
        with pytest.raises(ValueError, match="chunk_size"):
            f(x, w, t, chunk_size=bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="chunk_size"):
            f(x, w, t, chunk_size=bad)
    with pytest.raises(ValueError, match="reduction"):
        f(x, w, t, reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing"):
        f(x, w, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight"):
        f(x, w, t, weight=np.ones(4))
    with pytest.raises(ValueError, match="workers"):
        f(x, w, t, workers=0)


def test_grads_named_tuple():
    x = np.eye(3)
    w = np.eye(3)
    _, grads = logitkit.linear_cross_entropy(x, w, np.arange(3), return_grad=True)
    assert isinstance(grads, logitkit.LinearCrossEntropyGrads)
    assert grads._fields == ("x", "linear_weight", "linear_bias")
    gx, gw, gb = grads
    assert gb is None and gx is grads.x


# -- PyTorch autograd --------------------------------------------------------------------

torch = pytest.importorskip("torch")


def _torch(x, w, b, t, reduction, **opts):
    xt = torch.tensor(np.asarray(x), requires_grad=True)
    wt = torch.tensor(np.asarray(w), requires_grad=True)
    bt = None if b is None else torch.tensor(np.asarray(b), requires_grad=True)
    z = torch.nn.functional.linear(xt, wt, bt)
    loss = torch.nn.functional.cross_entropy(
        z.reshape(-1, w.shape[0]), torch.tensor(t.reshape(-1)), reduction=reduction, **opts
    )
    if reduction == "none":
        loss = loss.reshape(t.shape)
    loss.sum().backward()
    gb = None if bt is None else bt.grad.numpy()
    return loss.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), gb


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_matches_torch_autograd(simd_target, dtype, reduction, smoothing):
    rng = rng_for("lce-torch", np.dtype(dtype).name, reduction, smoothing)
    x, w, b, t = _problem(rng, (4, 9), 32, 70, dtype, ignore=True)
    cw = class_weights(rng, 70).astype(dtype)
    loss, grads = logitkit.linear_cross_entropy(
        x, w, t, linear_bias=b, weight=cw, label_smoothing=smoothing, reduction=reduction,
        return_grad=True, chunk_size=10,
    )
    tl, tx, tw, tb = _torch(
        x, w, b, t, reduction, weight=torch.tensor(cw), label_smoothing=smoothing
    )
    # float64: within 1e-9 of autograd (the bar); float32: BLAS vs BLAS rounding.
    tol = 1e-9 if np.dtype(dtype) == np.float64 else 1e-4
    for a, e, what in ((loss, tl, "loss"), (grads.x, tx, "x"),
                       (grads.linear_weight, tw, "w"), (grads.linear_bias, tb, "b")):
        a = np.asarray(a, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        scale = max(1.0, float(np.max(np.abs(e))))
        assert float(np.max(np.abs(a - e))) <= tol * scale, what
    if hasattr(torch.nn.functional, "linear_cross_entropy") and reduction != "none":
        # PyTorch's own fused function agrees too.
        xt = torch.tensor(x)
        wt = torch.tensor(w)
        fused = torch.nn.functional.linear_cross_entropy(
            xt.reshape(-1, x.shape[-1]), wt, torch.tensor(t.reshape(-1)),
            linear_bias=torch.tensor(b), weight=torch.tensor(cw), reduction=reduction,
            label_smoothing=smoothing,
        )
        assert math.isclose(float(fused), float(loss), rel_tol=tol, abs_tol=tol)


def _torch_options(x, w, b, t, reduction, weight=None, label_smoothing=0.0, temperature=1.0,
                   softcap=None, z_loss=0.0, where=None, sample_weight=None):
    """PyTorch autograd of the part-7 definitions: z' = softcap tanh(z/softcap) / T,
    masked classes -inf, row loss s_r (ce_r + z_loss lse_r^2), "mean" divided by the sum
    of s_r w_t over the counted rows."""
    vocab = w.shape[0]
    xt = torch.tensor(np.asarray(x), requires_grad=True)
    wt = torch.tensor(np.asarray(w), requires_grad=True)
    bt = torch.tensor(np.asarray(b), requires_grad=True)
    z = torch.nn.functional.linear(xt, wt, bt).reshape(-1, vocab)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z / temperature
    if where is not None:
        mask = torch.tensor(np.broadcast_to(where, t.shape + (vocab,)).reshape(-1, vocab))
        z = z.masked_fill(~mask, -math.inf)
    tt = torch.tensor(t.reshape(-1))
    cw = None if weight is None else torch.tensor(weight)
    ce = torch.nn.functional.cross_entropy(
        z, tt, weight=cw, reduction="none", label_smoothing=label_smoothing
    )
    counted = tt != -100
    row = ce + z_loss * torch.logsumexp(z, -1) ** 2 * counted
    s = torch.ones(len(tt), dtype=z.dtype)
    if sample_weight is not None:
        s = torch.tensor(np.broadcast_to(sample_weight, t.shape).reshape(-1), dtype=z.dtype)
    row = row * s
    w_t = torch.ones_like(s) if cw is None else cw[torch.where(counted, tt, 0)]
    if reduction == "none":
        loss = row.reshape(t.shape)
    elif reduction == "sum":
        loss = row.sum()
    else:
        loss = row.sum() / (s * w_t * counted).sum()
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_options_match_torch_autograd(simd_target, dtype, reduction, case):
    rng = rng_for("lce-torch-options", np.dtype(dtype).name, reduction, case)
    x, w, b, t = _problem(rng, (2, 11), 24, 45, dtype, ignore=True)
    opts = _options(rng, case, t.shape, 45)
    if "where" in opts:
        # PyTorch smooths over every class, -inf ones included (an infinite loss);
        # logitkit over the unmasked ones: compare without smoothing.
        opts.pop("label_smoothing", None)
    t = _unmasked_targets(rng, t, opts, 45)
    cw = class_weights(rng, 45).astype(dtype)
    loss, grads = logitkit.linear_cross_entropy(
        x, w, t, linear_bias=b, weight=cw, reduction=reduction, return_grad=True,
        chunk_size=7, **opts,
    )
    expected = _torch_options(x, w, b, t, reduction, weight=cw, **opts)
    tol = 1e-9 if np.dtype(dtype) == np.float64 else 1e-4
    for a, e, what in zip((loss, *grads), expected, ("loss", "x", "w", "b")):
        a = np.asarray(a, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        scale = max(1.0, float(np.max(np.abs(e))))
        assert float(np.max(np.abs(a - e))) <= tol * scale, what
