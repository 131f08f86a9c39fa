"""cross_entropy's part-7 options (spec/options_spec.md): temperature, softcap, z_loss,
where and sample_weight, alone and together, against the float64 reference
(reference.cross_entropy_options) on every SIMD target, every dtype, vector tails, strided
views, a non-last class axis, grad_out over the logits, special values, masked classes and
rows, ignored rows, class weights, label smoothing and every reduction; against PyTorch's
autograd where it has the equivalent; and bad option values."""

import numpy as np
import pytest

import logitkit
import reference as ref
from helpers import random_logits, rng_for
from loss_helpers import assert_loss_close

try:
    import ml_dtypes

    _HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
except ImportError:  # pragma: no cover
    _HALF = [np.dtype(np.float16)]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)] + _HALF
DTYPE_IDS = [d.name for d in DTYPES]

# Each option alone, two pairs, and all of them. "mask" / "sw" are made per case.
OPTION_SETS = {
    "temperature": {"temperature": 0.7},
    "temperature_hot": {"temperature": 3.0},
    "softcap": {"softcap": 5.0},
    "z_loss": {"z_loss": 1e-2},
    "where": {"where": "mask"},
    "sample_weight": {"sample_weight": "sw"},
    "softcap_temperature": {"softcap": 20.0, "temperature": 2.0},
    "where_softcap": {"where": "mask", "softcap": 8.0},
    "all": {"temperature": 1.5, "softcap": 10.0, "z_loss": 1e-3, "where": "mask",
            "sample_weight": "sw"},
}


def _batch(shape, axis):
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1:]


def make_options(spec, rng, shape, axis, labels=None):
    """Concrete options: a random mask (labels' classes kept unless asked otherwise) and
    random sample weights (some 0)."""
    opts = dict(spec)
    axis %= len(shape)
    if opts.get("where") == "mask":
        m = rng.random(shape) < 0.7
        if labels is not None:
            lab = np.where(labels >= 0, labels, 0)
            np.put_along_axis(m, np.expand_dims(lab, axis), True, axis)
        opts["where"] = m
    if opts.get("sample_weight") == "sw":
        s = rng.uniform(0.0, 2.0, size=_batch(shape, axis))
        s.flat[::5] = 0.0
        opts["sample_weight"] = s
    return opts


def check(z, target, dtype, axis=-1, reduction="sum", what="", **kw):
    """logitkit's loss and gradient against the reference on the same (rounded) input."""
    loss, grad = logitkit.cross_entropy(z, target, axis=axis, reduction=reduction,
                                        return_grad=True, **kw)
    rl, rg = ref.cross_entropy_options(ref._as_float64(z), target, axis=axis,
                                       reduction=reduction, return_grad=True, **kw)
    assert_loss_close(loss, np.asarray(rl), "loss", dtype, what)
    assert_loss_close(grad, rg, "grad", dtype, what)
    return loss, grad


@pytest.mark.parametrize("option", list(OPTION_SETS))
@pytest.mark.parametrize("n", [1, 7, 17, 33, 100])
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_options_match_reference(simd_target, dtype, kind, n, option):
    rng = rng_for("ce-options", dtype.name, kind, n, option)
    shape = (13, n)
    z = random_logits(rng, shape, np.float64).astype(dtype)
    if kind == "labels":
        target = rng.integers(0, n, size=13)
        opts = make_options(OPTION_SETS[option], rng, shape, -1, target)
    else:
        target = logitkit.softmax(rng.standard_normal(shape)).astype(dtype)
        opts = make_options(OPTION_SETS[option], rng, shape, -1)
        if "where" in opts:  # no probability on masked classes here (see test_masked_*)
            target = np.where(opts["where"], target, 0).astype(dtype)
    check(z, target, dtype, what=option, **opts)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("option", list(OPTION_SETS))
@pytest.mark.parametrize("kind", ["labels", "probs"])
def test_reductions(simd_target, kind, option, reduction):
    rng = rng_for("ce-options-red", kind, option, reduction)
    shape = (37, 45)
    z = random_logits(rng, shape, np.float64).astype(np.float32)
    if kind == "labels":
        target = rng.integers(0, 45, size=37)
        target[::6] = -100
        opts = make_options(OPTION_SETS[option], rng, shape, -1, target)
    else:
        target = logitkit.softmax(rng.standard_normal(shape)).astype(np.float32)
        opts = make_options(OPTION_SETS[option], rng, shape, -1)
        if "where" in opts:
            target = np.where(opts["where"], target, 0).astype(np.float32)
    check(z, target, np.float32, reduction=reduction, what=option, **opts)


@pytest.mark.parametrize("smoothing", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)],
                         ids=["float32", "float64"])
def test_weights_smoothing_ignore(simd_target, dtype, kind, weighted, smoothing):
    """Class weights and label smoothing (spread over the unmasked classes only) with
    every option at once, and ignored rows."""
    rng = rng_for("ce-options-ws", dtype.name, kind, weighted, smoothing)
    shape = (29, 40)
    z = random_logits(rng, shape, np.float64).astype(dtype)
    weight = rng.uniform(0.1, 2.0, size=40) if weighted else None
    if kind == "labels":
        target = rng.integers(0, 40, size=29)
        target[::4] = 3  # ignore_index below
        opts = make_options(OPTION_SETS["all"], rng, shape, -1, target)
        for reduction in ("none", "mean"):
            check(z, target, dtype, weight=weight, label_smoothing=smoothing,
                  ignore_index=3, reduction=reduction, **opts)
    else:
        target = logitkit.softmax(rng.standard_normal(shape)).astype(dtype)
        opts = make_options(OPTION_SETS["all"], rng, shape, -1)
        target = np.where(opts["where"], target, 0).astype(dtype)
        for reduction in ("none", "mean"):
            check(z, target, dtype, weight=weight, label_smoothing=smoothing,
                  reduction=reduction, **opts)


@pytest.mark.parametrize("option", list(OPTION_SETS))
@pytest.mark.parametrize("layout", ["axis1_3d", "axis0", "strided_rows", "strided_classes"])
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64),
                                   np.dtype(np.float16)], ids=["float32", "float64", "float16"])
def test_layouts(simd_target, dtype, layout, option):
    """A class axis that is not the last, and views that are not contiguous (the row
    driver's gather mode): the options take the rows kernel for every layout."""
    rng = rng_for("ce-options-layout", dtype.name, layout, option)
    if layout == "axis1_3d":
        base = random_logits(rng, (3, 21, 5), np.float64, axis=1).astype(dtype)
        z, axis = base, 1
    elif layout == "axis0":
        z, axis = random_logits(rng, (19, 11), np.float64, axis=0).astype(dtype), 0
    elif layout == "strided_rows":
        base = random_logits(rng, (22, 35), np.float64).astype(dtype)
        z, axis = base[::2], -1
    else:
        base = random_logits(rng, (11, 70), np.float64).astype(dtype)
        z, axis = base[:, ::2], -1
    batch = _batch(z.shape, axis)
    n = z.shape[axis]
    target = rng.integers(0, n, size=batch)
    opts = make_options(OPTION_SETS[option], rng, z.shape, axis, target)
    check(z, target, dtype, axis=axis, what=f"{layout} {option}", **opts)
    y = logitkit.softmax(rng.standard_normal(z.shape), axis=axis)
    if "where" in opts:
        y = np.where(opts["where"], y, 0)
    check(z, y.astype(dtype), dtype, axis=axis, what=f"{layout} {option} probs", **opts)


@pytest.mark.parametrize("mask_shape", ["classes", "rows", "transposed", "scalar"])
def test_broadcast_masks(simd_target, mask_shape):
    """Masks with zero strides along the classes or the rows, and a transposed view."""
    rng = rng_for("ce-options-bmask", mask_shape)
    z = random_logits(rng, (17, 33), np.float64).astype(np.float32)
    target = rng.integers(0, 33, size=17)
    if mask_shape == "classes":
        m = rng.random(33) < 0.6
        m[np.unique(target)] = True
    elif mask_shape == "rows":
        m = (rng.random((17, 1)) < 0.8)  # whole rows masked (loss +inf there)
    elif mask_shape == "transposed":
        m = (rng.random((33, 17)) < 0.7).T
        m[np.arange(17), target] = True
    else:
        m = np.bool_(True)
    check(z, target, np.float32, where=m, what=mask_shape)


def test_grad_out_aliases_logits(simd_target):
    for dtype in DTYPES:
        rng = rng_for("ce-options-alias", dtype.name)
        for kind in ("labels", "probs"):
            z = random_logits(rng, (23, 50), np.float64).astype(dtype)
            target = (rng.integers(0, 50, size=23) if kind == "labels"
                      else logitkit.softmax(rng.standard_normal((23, 50))).astype(dtype))
            opts = make_options(OPTION_SETS["all"], rng, z.shape, -1,
                                target if kind == "labels" else None)
            expected = logitkit.cross_entropy(z.copy(), target, return_grad=True, **opts)
            zz = z.copy()
            loss, g = logitkit.cross_entropy(zz, target, return_grad=True, grad_out=zz, **opts)
            assert g is zz
            np.testing.assert_array_equal(np.asarray(loss), np.asarray(expected[0]))
            np.testing.assert_array_equal(g, expected[1])
            # A strided in-place gradient (gather mode writes back through the buffer).
            big = np.repeat(z, 2, axis=1)
            view = big[:, ::2]
            expected = logitkit.cross_entropy(view.copy(), target, return_grad=True, **opts)
            loss, g = logitkit.cross_entropy(view, target, return_grad=True, grad_out=view,
                                             **opts)
            np.testing.assert_array_equal(g, expected[1])


def test_grad_out_overlapping_mask_or_weights_goes_through_a_temporary(simd_target):
    rng = rng_for("ce-options-overlap")
    z = random_logits(rng, (8, 16), np.float64)
    t = rng.integers(0, 16, size=8)
    sw = rng.uniform(0.5, 1.5, size=(8, 16))  # grad_out over the sample weights' buffer
    expected = logitkit.cross_entropy(z, t, return_grad=True, sample_weight=sw[:, 0].copy())
    loss, g = logitkit.cross_entropy(z, t, return_grad=True, sample_weight=sw[:, 0],
                                     grad_out=sw)
    np.testing.assert_array_equal(g, expected[1])


@pytest.mark.parametrize("option", ["temperature", "softcap", "z_loss", "where",
                                    "sample_weight", "all"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_special_values(simd_target, dtype, option):
    """inf and NaN logits: softcap makes +-inf finite (gradient 0 there: tanh saturates),
    NaN stays NaN in its row; everything else as the reference says."""
    rng = rng_for("ce-options-special", dtype.name, option)
    z = random_logits(rng, (10, 19), np.float64)
    z[1, 3] = np.inf
    z[2, 4] = -np.inf
    z[3, 5] = np.nan
    z[4, :] = -np.inf
    # A huge logit (its lse**2 for z_loss stays in range of the result dtype).
    z[5, 6] = 200.0 if "z_loss" in OPTION_SETS[option] else 1e30
    z[6, :3] = [np.inf, -np.inf, np.inf]
    with np.errstate(over="ignore"):  # 1e30 is inf in float16
        z = z.astype(dtype)
    target = rng.integers(0, 19, size=10)
    target[2] = 4  # label on a -inf logit
    opts = make_options(OPTION_SETS[option], rng, z.shape, -1, target)
    for reduction in ("none", "sum"):
        check(z, target, dtype, reduction=reduction, what=option, **opts)
    if option == "softcap":
        _, g = logitkit.cross_entropy(z, target, return_grad=True, reduction="sum", **opts)
        assert g[1, 3] == 0 and g[2, 4] == 0  # saturated tanh: no gradient


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_masked_target_and_fully_masked_rows(simd_target, dtype):
    rng = rng_for("ce-options-masked", dtype.name)
    z = random_logits(rng, (6, 9), np.float64).astype(dtype)
    target = np.array([0, 1, 2, 3, 4, 5])
    m = np.ones((6, 9), dtype=bool)
    m[0, 0] = False      # target masked: +inf
    m[1, :] = False      # fully masked row: +inf (its label is masked too)
    m[2, 5:] = False     # ordinary partial mask
    for z_loss in (0.0, 0.1):
        for eps in (0.0, 0.3):
            loss, g = logitkit.cross_entropy(z, target, where=m, z_loss=z_loss,
                                             label_smoothing=eps, reduction="none",
                                             return_grad=True)
            assert loss[0] == np.inf and loss[1] == np.inf
            assert np.isfinite(loss[2:]).all()
            assert (g[~m] == 0).all() and not np.signbit(g[~m].astype(np.float64)).any()
            assert (g[1] == 0).all()
            check(z, target, dtype, reduction="none", where=m, z_loss=z_loss,
                  label_smoothing=eps)
    # Probabilities: mass on a masked class gives +inf; a fully masked row with no mass
    # has loss 0 (and z_loss's term 0: lse = -inf), gradient 0.
    y = logitkit.softmax(rng.standard_normal((6, 9))).astype(dtype)
    y = np.where(m, y, 0).astype(dtype)
    y[0, 0] = 0.25
    loss, g = logitkit.cross_entropy(z, y, where=m, z_loss=0.1, reduction="none",
                                     return_grad=True)
    assert loss[0] == np.inf and loss[1] == 0
    assert (g[~m] == 0).all() and (g[1] == 0).all()
    check(z, y, dtype, reduction="none", where=m, z_loss=0.1)
    check(z, y, dtype, reduction="none", where=m, z_loss=0.1, label_smoothing=0.2)


def test_sample_weight_semantics(simd_target):
    rng = rng_for("ce-options-sw")
    z = random_logits(rng, (12, 10), np.float64)
    t = rng.integers(0, 10, size=12)
    w = rng.uniform(0.5, 2.0, size=10)
    s = rng.uniform(0.0, 3.0, size=12)
    s[3] = 0.0
    rows = logitkit.cross_entropy(z, t, weight=w, reduction="none")
    mine = logitkit.cross_entropy(z, t, weight=w, reduction="none", sample_weight=s)
    np.testing.assert_allclose(mine, s * rows, rtol=1e-14)
    mean = logitkit.cross_entropy(z, t, weight=w, sample_weight=s)
    np.testing.assert_allclose(mean, np.sum(s * rows) / np.sum(s * w[t]), rtol=1e-13)
    # A zero-weight row contributes exactly 0, even with an infinite loss.
    z[3, t[3]] = -np.inf
    loss, g = logitkit.cross_entropy(z, t, sample_weight=s, reduction="none", return_grad=True)
    assert loss[3] == 0 and (g[3] == 0).all()
    # Broadcasting: a scalar weight scales everything.
    a = logitkit.cross_entropy(z[:3], t[:3], reduction="sum", sample_weight=2.5)
    b = logitkit.cross_entropy(z[:3], t[:3], reduction="sum")
    np.testing.assert_allclose(a, 2.5 * b, rtol=1e-14)
    # mean of probability targets divides by sum(s).
    y = logitkit.softmax(rng.standard_normal((12, 10)))
    rows = logitkit.cross_entropy(z[:, :], y, reduction="none")
    mean = logitkit.cross_entropy(z, y, sample_weight=s)
    finite = np.isfinite(rows)
    assert not finite.all()  # row 3 has a -inf logit, its weight is 0
    counted = np.where(s > 0, rows, 0.0)
    np.testing.assert_allclose(mean, np.sum(s * counted) / s.sum(), rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)],
                         ids=["float32", "float64"])
def test_neutral_options_are_bit_identical(simd_target, dtype):
    """Options at values that change nothing (a sample weight of 1, an all-True mask, a
    mask with no False) take the options kernel and give the plain call's bits."""
    rng = rng_for("ce-options-neutral", dtype.name)
    z = random_logits(rng, (40, 77), np.float64).astype(dtype)
    t = rng.integers(0, 77, size=40)
    for kw in ({}, {"label_smoothing": 0.1}, {"weight": rng.uniform(0.5, 2, 77)}):
        plain = logitkit.cross_entropy(z, t, reduction="none", return_grad=True, **kw)
        for neutral in ({"sample_weight": np.ones(40)}, {"where": np.ones((40, 77), bool)},
                        {"where": np.bool_(True), "sample_weight": 1.0}):
            got = logitkit.cross_entropy(z, t, reduction="none", return_grad=True,
                                         **neutral, **kw)
            np.testing.assert_array_equal(got[1], plain[1])
            if "where" in neutral and "label_smoothing" in kw:
                # The smoothing sum's select (masked terms 0) may vectorize in another
                # order: the loss within a few ulp, not always the same bits.
                np.testing.assert_allclose(got[0], plain[0], rtol=4 * np.finfo(dtype).eps)
            else:
                np.testing.assert_array_equal(got[0], plain[0])


def test_defaults_take_the_plain_path(simd_target):
    rng = rng_for("ce-options-defaults")
    z = random_logits(rng, (30, 50), np.float64).astype(np.float32)
    t = rng.integers(0, 50, size=30)
    a = logitkit.cross_entropy(z, t, return_grad=True)
    b = logitkit.cross_entropy(z, t, return_grad=True, temperature=1.0, softcap=None,
                               z_loss=0.0, where=None, sample_weight=None)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("name,value,error", [
    ("temperature", 0.0, ValueError), ("temperature", -1.0, ValueError),
    ("temperature", np.inf, ValueError), ("temperature", np.nan, ValueError),
    ("temperature", True, TypeError), ("temperature", "2", TypeError),
    ("temperature", None, TypeError),
    ("softcap", 0.0, ValueError), ("softcap", -3.0, ValueError),
    ("softcap", np.inf, ValueError), ("softcap", np.nan, ValueError),
    ("softcap", False, TypeError), ("softcap", "x", TypeError),
    ("z_loss", -1e-4, ValueError), ("z_loss", np.inf, ValueError),
    ("z_loss", np.nan, ValueError), ("z_loss", True, TypeError), ("z_loss", [1], TypeError),
    ("where", np.ones((4, 6), dtype=np.int8), TypeError),
    ("where", np.ones((4, 6)), TypeError),
    ("where", np.ones((3, 6), dtype=bool), ValueError),
    ("where", np.ones((4, 6, 1), dtype=bool), ValueError),
    ("sample_weight", np.ones(5), ValueError),
    ("sample_weight", np.ones((4, 6)), ValueError),
    ("sample_weight", np.array([1.0, -1.0, 1.0, 1.0]), ValueError),
    ("sample_weight", np.array([1.0, np.nan, 1.0, 1.0]), ValueError),
    ("sample_weight", np.array([1.0, np.inf, 1.0, 1.0]), ValueError),
    ("sample_weight", np.array(["a", "b", "c", "d"]), TypeError),
    ("sample_weight", np.ones(4, dtype=complex), TypeError),
])
def test_bad_option_values(name, value, error):
    z = np.zeros((4, 6))
    t = np.array([0, 1, 2, 3])
    with pytest.raises(error, match=name):
        logitkit.cross_entropy(z, t, **{name: value})


def test_core_rejects_bad_options():
    """The core checks its arguments too (never trusts the Python layer)."""
    z = np.zeros((4, 6))
    t = np.array([0, 1, 2, 3])
    args = (z, t, None, None, -100, 0.0, 2, None, None, 1, 1)
    with pytest.raises(ValueError, match="temperature"):
        logitkit._core.cross_entropy(*args, temperature=0.0)
    with pytest.raises(ValueError, match="softcap"):
        logitkit._core.cross_entropy(*args, softcap=-1.0)
    with pytest.raises(ValueError, match="z_loss"):
        logitkit._core.cross_entropy(*args, z_loss=np.nan)
    with pytest.raises(ValueError, match="where"):
        logitkit._core.cross_entropy(*args, where=np.ones((4, 5), np.uint8))
    with pytest.raises(TypeError, match="where"):
        logitkit._core.cross_entropy(*args, where=np.ones((4, 6), bool))
    with pytest.raises(ValueError, match="sample_weight"):
        logitkit._core.cross_entropy(*args, sample_weight=np.ones(3))


@pytest.mark.parametrize("option", list(OPTION_SETS))
@pytest.mark.parametrize("case", ["rows", "axis0", "strided_rows", "probs"])
def test_workers_bit_identical(simd_target, case, option):
    rng = rng_for("ce-options-workers", case, option)
    if case == "axis0":
        z = random_logits(rng, (523, 263), np.float64, axis=0).astype(np.float32)
        axis = 0
    elif case == "strided_rows":
        z = random_logits(rng, (262, 1003), np.float64).astype(np.float32)[::2]
        axis = -1
    else:
        z = random_logits(rng, (257, 1031), np.float64).astype(np.float32)
        axis = -1
    batch = _batch(z.shape, axis)
    n = z.shape[axis]
    if case == "probs":
        target = logitkit.softmax(rng.standard_normal(z.shape), axis=axis).astype(np.float32)
        opts = make_options(OPTION_SETS[option], rng, z.shape, axis)
    else:
        target = rng.integers(0, n, size=batch)
        target.flat[::7] = -100
        opts = make_options(OPTION_SETS[option], rng, z.shape, axis, target)
    results = []
    for w in (1, 2, 3, 7):
        mean, grad = logitkit.cross_entropy(z, target, axis=axis, return_grad=True,
                                            workers=w, **opts)
        rows = logitkit.cross_entropy(z, target, axis=axis, reduction="none", workers=w,
                                      label_smoothing=0.1, **opts)
        results.append((np.asarray(mean).tobytes(), grad.tobytes(), rows.tobytes()))
    assert all(r == results[0] for r in results[1:])


# --------------------------------------------------------------------------------------
# PyTorch autograd, where it has the equivalent
# --------------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("option", list(OPTION_SETS))
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_against_torch(kind, option, reduction):
    torch = _torch()
    F = torch.nn.functional
    rng = rng_for("ce-options-torch", kind, option, reduction)
    shape = (21, 30)
    z = random_logits(rng, shape, np.float64)
    weight = rng.uniform(0.5, 2.0, size=30)
    if kind == "labels":
        target = rng.integers(0, 30, size=21)
        target[::5] = -100
        opts = make_options(OPTION_SETS[option], rng, shape, -1, target)
    else:
        target = logitkit.softmax(rng.standard_normal(shape))
        opts = make_options(OPTION_SETS[option], rng, shape, -1)
        if "where" in opts:
            target = np.where(opts["where"], target, 0)
    eps = 0.0 if "where" in opts else 0.1  # torch smooths over every class
    T = opts.get("temperature", 1.0)
    cap = opts.get("softcap")
    zl = opts.get("z_loss", 0.0)
    zt = torch.tensor(z, requires_grad=True)
    x = zt
    if cap is not None:
        x = cap * torch.tanh(x / cap)
    x = x / T
    if "where" in opts:
        # -inf for labels; for probabilities torch's 0 * log_softmax(-inf) is NaN, so a
        # logit so low that its probability is 0 stands in for it.
        fill = -torch.inf if kind == "labels" else -1e300
        x = x.masked_fill(~torch.tensor(opts["where"]), fill)
    tt = torch.tensor(target)
    w_t = torch.tensor(weight)
    per = F.cross_entropy(x, tt, weight=w_t, reduction="none", label_smoothing=eps,
                          ignore_index=-100)
    if kind == "labels":
        counted = tt != -100
        base_den = torch.where(counted, w_t[torch.where(counted, tt, 0)], 0.0)
    else:
        # torch's "mean" for probabilities divides by N (class weights do not enter it)
        counted = torch.ones(21, dtype=torch.bool)
        base_den = torch.ones(21, dtype=torch.float64)
    lse = torch.logsumexp(x, dim=-1)
    per = per + torch.where(counted, zl * lse * lse, 0.0)
    s = torch.tensor(opts["sample_weight"]) if "sample_weight" in opts else torch.ones(21)
    per = per * s
    if reduction == "none":
        out = per
    elif reduction == "sum":
        out = per.sum()
    else:
        out = per.sum() / (s * base_den).sum()
    out.sum().backward()
    loss, grad = logitkit.cross_entropy(z, target, weight=weight, label_smoothing=eps,
                                        reduction=reduction, return_grad=True, **opts)
    np.testing.assert_allclose(loss, out.detach().numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-13)
