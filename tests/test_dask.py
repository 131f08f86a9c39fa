"""Dask arrays in, lazy Dask arrays out, equal to the NumPy path for every chunking.

The class axis split between chunks goes through the block states (the C++ core's
_row_states / _merge_row_states / _rows_from_state, with and without options): the tests
that reach every one of those paths (softmax family, non-finite rows, masks, temperature,
unaligned and edge-shaped blocks) take the simd_target fixture; the threaded scheduler runs
them in this process, on the target chosen. The combinatorial tests of how the functions
compose them (reductions, weights, options, dtypes) run on the active target only.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import logitkit as lk

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

ROWS, CLASSES = 37, 29
# name -> chunks of a (ROWS, CLASSES) array: rows only, classes only, both, uneven.
CHUNKINGS = {
    "rows": (10, -1),
    "classes": (-1, 8),
    "mixed": (10, 8),
    "uneven": ((5, 20, 12), (3, 1, 25)),
}
TOL = {np.float64: dict(rtol=1e-10, atol=1e-14), np.float32: dict(rtol=2e-6, atol=2e-7)}


def _logits(dtype=np.float64, shape=(ROWS, CLASSES), seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _labels(rows=ROWS, classes=CLASSES, seed=1, ignore=-100):
    t = np.random.default_rng(seed).integers(0, classes, rows)
    t[::7] = ignore
    return t


def _close(got, expected, dtype):
    assert isinstance(got, da.Array), type(got)
    value = got.compute(scheduler="threads")
    expected = np.asarray(expected)
    assert value.dtype == expected.dtype, (value.dtype, expected.dtype)
    assert value.shape == expected.shape
    np.testing.assert_allclose(value, expected, **TOL[dtype])


def _chunked(x, chunking):
    return da.from_array(x, chunks=CHUNKINGS[chunking])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("func", [lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy])
def test_row_functions(simd_target, func, chunking, dtype):
    x = _logits(dtype)
    _close(func(_chunked(x, chunking)), func(x), dtype)


@pytest.mark.parametrize("chunking", ["classes", "mixed"])
@pytest.mark.parametrize("func", [lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy])
def test_other_axis_and_three_dims(simd_target, func, chunking):
    x = _logits(shape=(6, 29, 5))
    dx = da.from_array(x, chunks=(4, 8, 3) if chunking == "mixed" else (-1, 8, -1))
    kw = {"axis": 1}
    _close(func(dx, **kw), func(x, **kw), np.float64)


def test_logsumexp_keepdims(simd_target):
    x = _logits()
    for chunking in CHUNKINGS:
        _close(lk.logsumexp(_chunked(x, chunking), keepdims=True),
               lk.logsumexp(x, keepdims=True), np.float64)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_non_finite_rows(simd_target, chunking):
    x = _logits()
    x[1, 2] = np.inf  # +inf in the first class block
    x[2, 20] = np.inf  # ... in a later one
    x[3, :] = -np.inf  # -inf throughout
    x[4, 3] = np.nan
    x[5, 25] = np.nan
    x[6, 25] = np.inf
    x[6, 2] = np.nan
    x[7, :8] = -np.inf  # a whole class block of -inf, the rest finite
    x[8, 8:] = -np.inf
    dx = _chunked(x, chunking)
    t = _labels()
    for func in (lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy):
        _close(func(dx), func(x), np.float64)
    loss, grad = lk.cross_entropy(dx, t, reduction="none", return_grad=True)
    expected_loss, expected_grad = lk.cross_entropy(x, t, reduction="none", return_grad=True)
    _close(loss, expected_loss, np.float64)
    _close(grad, expected_grad, np.float64)
    _close(lk.kl_divergence(dx, dx[::-1]), lk.kl_divergence(x, x[::-1]), np.float64)
    y = lk.softmax(_logits(seed=4))
    sw = np.linspace(0, 2, ROWS)
    for target, kw in [(t, {"label_smoothing": 0.1}), (t, {"z_loss": 0.01, "sample_weight": sw}),
                       (y, {}), (y, {"label_smoothing": 0.2, "weight": np.ones(CLASSES) / 2})]:
        loss, grad = lk.cross_entropy(dx, target, reduction="none", return_grad=True, **kw)
        expected = lk.cross_entropy(x, target, reduction="none", return_grad=True, **kw)
        _close(loss, expected[0], np.float64)
        _close(grad, expected[1], np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_cross_entropy_labels(weighted, reduction, chunking, dtype):
    x = _logits(dtype)
    t = _labels()
    w = np.linspace(0.5, 2.0, CLASSES) if weighted else None
    dx, dt = _chunked(x, chunking), da.from_array(t, chunks=CHUNKINGS[chunking][0])
    loss, grad = lk.cross_entropy(dx, dt, weight=w, reduction=reduction, return_grad=True)
    expected_loss, expected_grad = lk.cross_entropy(x, t, weight=w, reduction=reduction,
                                                    return_grad=True)
    assert loss.ndim == (1 if reduction == "none" else 0)
    _close(loss, expected_loss, dtype)
    _close(grad, expected_grad, dtype)
    _close(lk.cross_entropy(dx, dt, weight=w, reduction=reduction), expected_loss, dtype)


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(
    "options",
    [
        {"label_smoothing": 0.1},
        {"temperature": 2.5},
        {"softcap": 4.0},
        {"z_loss": 1e-3},
        {"sample_weight": "rows"},
        {"where": "classes"},
        {"label_smoothing": 0.2, "weight": "classes", "sample_weight": "rows", "z_loss": 0.01},
        {"temperature": 0.6, "label_smoothing": 0.1, "weight": "classes", "z_loss": 1e-3},
    ],
    ids=lambda o: "+".join(o),
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_options(options, chunking, reduction):
    x = _logits()
    t = _labels()
    rng = np.random.default_rng(5)
    concrete = dict(options)
    if options.get("sample_weight") == "rows":
        concrete["sample_weight"] = rng.uniform(0, 2, ROWS)
    if options.get("weight") == "classes":
        concrete["weight"] = rng.uniform(0.5, 2, CLASSES)
    if options.get("where") == "classes":
        mask = rng.random(CLASSES) < 0.8
        mask[t[t >= 0]] = True  # no label masked
        concrete["where"] = mask
    loss, grad = lk.cross_entropy(_chunked(x, chunking), t, reduction=reduction,
                                  return_grad=True, **concrete)
    expected_loss, expected_grad = lk.cross_entropy(x, t, reduction=reduction,
                                                    return_grad=True, **concrete)
    _close(loss, expected_loss, np.float64)
    _close(grad, expected_grad, np.float64)


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_probabilities(chunking, smoothing):
    x = _logits()
    y = lk.softmax(_logits(seed=9))
    dx, dy = _chunked(x, chunking), _chunked(y, chunking)
    for reduction in ("mean", "sum", "none"):
        loss, grad = lk.cross_entropy(dx, dy, label_smoothing=smoothing, reduction=reduction,
                                      return_grad=True)
        expected = lk.cross_entropy(x, y, label_smoothing=smoothing, reduction=reduction,
                                    return_grad=True)
        _close(loss, expected[0], np.float64)
        _close(grad, expected[1], np.float64)


@pytest.mark.parametrize("chunking", ["classes", "mixed"])
def test_temperature_on_large_float32_logits(simd_target, chunking):
    # The temperature divides differences from the maximum, never the logits first
    # (300 / T in float32 would already be off by more than the tolerance).
    x = _logits(np.float32) + np.float32(300)
    t = _labels()
    y = lk.softmax(_logits(seed=9)).astype(np.float32)
    dx = _chunked(x, chunking)
    for target in (t, y):
        loss, grad = lk.cross_entropy(dx, target, temperature=0.37, reduction="none",
                                      return_grad=True)
        expected = lk.cross_entropy(x, target, temperature=0.37, reduction="none",
                                    return_grad=True)
        _close(loss, expected[0], np.float32)
        _close(grad, expected[1], np.float32)
    for func in (lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy):
        _close(func(dx, temperature=0.37), func(x, temperature=0.37), np.float32)


def test_cross_entropy_other_axis(simd_target):
    x = _logits(shape=(4, 29, 6))
    t = np.random.default_rng(3).integers(0, 29, (4, 6))
    t[0, 0] = -100
    dx = da.from_array(x, chunks=(3, 8, 4))
    loss, grad = lk.cross_entropy(dx, t, axis=1, return_grad=True)
    expected = lk.cross_entropy(x, t, axis=1, return_grad=True)
    _close(loss, expected[0], np.float64)
    _close(grad, expected[1], np.float64)


def test_cross_entropy_everything_ignored(simd_target):
    x = _logits()
    t = np.full(ROWS, -100)
    loss, grad = lk.cross_entropy(_chunked(x, "mixed"), t, return_grad=True)
    _close(loss, lk.cross_entropy(x, t), np.float64)
    _close(grad, np.zeros_like(x), np.float64)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_bad_label_raises_when_computed(chunking):
    x = _logits()
    t = _labels()
    t[11] = CLASSES
    loss = lk.cross_entropy(_chunked(x, chunking), t)  # the graph builds
    with pytest.raises(IndexError, match="out of range for 29 classes"):
        loss.compute(scheduler="threads")
    with pytest.raises(IndexError, match="out of range for 29 classes"):
        lk.nll_loss(_chunked(x, chunking), t).compute(scheduler="threads")


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(chunking, reduction):
    lp = lk.log_softmax(_logits())
    t = _labels()
    w = np.linspace(2.0, 0.5, CLASSES)
    _close(lk.nll_loss(_chunked(lp, chunking), t, weight=w, reduction=reduction),
           lk.nll_loss(lp, t, weight=w, reduction=reduction), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
def test_kl_divergence(chunking, reduction, dtype):
    p, q = _logits(dtype, seed=2), _logits(dtype, seed=3)
    kl, grad = lk.kl_divergence(_chunked(p, chunking), _chunked(q, chunking),
                                reduction=reduction, return_grad=True)
    expected = lk.kl_divergence(p, q, reduction=reduction, return_grad=True)
    _close(kl, expected[0], dtype)
    _close(grad, expected[1], dtype)
    _close(lk.kl_divergence(_chunked(p, chunking), q, reduction=reduction, base=2),
           lk.kl_divergence(p, q, reduction=reduction, base=2), dtype)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_options_of_the_softmax_family(simd_target, chunking):
    x = _logits()
    mask = np.random.default_rng(4).random(CLASSES) < 0.7
    dx = _chunked(x, chunking)
    for func in (lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy):
        _close(func(dx, temperature=1.7), func(x, temperature=1.7), np.float64)
        _close(func(dx, where=mask), func(x, where=mask), np.float64)
    _close(lk.entropy(dx, base=2), lk.entropy(x, base=2), np.float64)
    _close(lk.kl_divergence(dx, dx[::-1], temperature=2.0, where=mask),
           lk.kl_divergence(x, x[::-1], temperature=2.0, where=mask), np.float64)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_backward_products(chunking):
    p = lk.softmax(_logits())
    lp = lk.log_softmax(_logits())
    g = _logits(seed=8)
    dp, dlp, dg = (_chunked(a, chunking) for a in (p, lp, g))
    _close(lk.softmax_backward(dg, dp), lk.softmax_backward(g, p), np.float64)
    _close(lk.log_softmax_backward(dg, dlp), lk.log_softmax_backward(g, lp), np.float64)
    _close(lk.softmax_jacobian(dp), lk.softmax_jacobian(p), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_binary_family(chunking, dtype):
    z = _logits(dtype)
    y = (np.random.default_rng(6).random(z.shape) < 0.3).astype(dtype)
    dz, dy = _chunked(z, chunking), _chunked(y, chunking)
    _close(lk.sigmoid(dz), lk.sigmoid(z), dtype)
    _close(lk.log_sigmoid(dz), lk.log_sigmoid(z), dtype)
    rng = np.random.default_rng(7)
    kwargs = [{}, {"weight": rng.uniform(0, 2, CLASSES)},
              {"pos_weight": rng.uniform(0.5, 3, CLASSES)},
              {"sample_weight": rng.uniform(0, 2, ROWS), "weight": rng.uniform(0, 2, z.shape)}]
    for kw in kwargs:
        for reduction in ("mean", "sum", "none"):
            loss, grad = lk.binary_cross_entropy(dz, dy, reduction=reduction,
                                                 return_grad=True, **kw)
            expected = lk.binary_cross_entropy(z, y, reduction=reduction, return_grad=True,
                                               **kw)
            _close(loss, expected[0], dtype)
            _close(grad, expected[1], dtype)


def test_nothing_is_computed_while_the_graph_is_built():
    def refuse(block):
        raise AssertionError("a block was computed")

    x = da.from_array(_logits(), chunks=(10, 8)).map_blocks(refuse, dtype=np.float64)
    t = da.from_array(_labels(), chunks=10)
    y = da.from_array(lk.softmax(_logits(seed=3)), chunks=(10, 8))
    results = [
        lk.softmax(x), lk.log_softmax(x), lk.logsumexp(x), lk.entropy(x),
        lk.kl_divergence(x, x), *lk.kl_divergence(x, x, return_grad=True),
        *lk.cross_entropy(x, t, return_grad=True), lk.cross_entropy(x, y),
        lk.cross_entropy(x, t, label_smoothing=0.1), lk.nll_loss(x, t), lk.sigmoid(x),
        lk.log_sigmoid(x), *lk.binary_cross_entropy(x, y, return_grad=True),
        lk.softmax_backward(x, x), lk.log_softmax_backward(x, x), lk.softmax_jacobian(x),
    ]
    assert all(isinstance(r, da.Array) for r in results)
    with pytest.raises(AssertionError, match="a block was computed"):
        results[0].compute(scheduler="sync")


def test_out_arguments_are_rejected():
    dx = da.from_array(_logits(), chunks=(10, 8))
    with pytest.raises(TypeError, match="out= is not supported for Dask arrays"):
        lk.softmax(dx, out=np.empty((ROWS, CLASSES)))
    with pytest.raises(TypeError, match="grad_out= is not supported"):
        lk.cross_entropy(dx, _labels(), return_grad=True, grad_out=np.empty((ROWS, CLASSES)))


def test_bad_arguments_fail_while_the_graph_is_built():
    dx = da.from_array(_logits(), chunks=(10, 8))
    with pytest.raises(ValueError):
        lk.cross_entropy(dx, _labels(), reduction="average")
    with pytest.raises(ValueError):
        lk.softmax(dx, temperature=-1.0)
    with pytest.raises(ValueError):
        lk.cross_entropy(dx, _labels(rows=ROWS + 1))
    with pytest.raises(TypeError):
        lk.softmax(da.from_array(np.array([["a", "b"]])))
    for func in (lk.softmax, lk.logsumexp, lk.entropy):
        with pytest.raises(TypeError, match="where must be a boolean array"):
            func(dx, where=np.ones(CLASSES, dtype=int))
        with pytest.raises(ValueError, match="does not broadcast"):
            func(dx, where=np.ones(CLASSES + 1, dtype=bool))


def test_split_every_changes_only_the_tree(simd_target):
    x = _logits(shape=(8, 200))
    dx = da.from_array(x, chunks=(4, 10))  # 20 class blocks
    expected = lk.logsumexp(x)
    for split_every in (2, 3, 16):
        with dask.config.set(split_every=split_every):
            _close(lk.logsumexp(dx), expected, np.float64)
            _close(lk.softmax(dx), lk.softmax(x), np.float64)


def test_float16_and_int_inputs(simd_target):
    x16 = _logits(np.float16)
    _close_16 = lambda got, exp: np.testing.assert_allclose(  # noqa: E731
        got.compute(scheduler="threads").astype(np.float64), exp.astype(np.float64),
        rtol=2e-3, atol=2e-3)
    dx16 = _chunked(x16, "mixed")
    for func in (lk.softmax, lk.log_softmax, lk.logsumexp):
        assert func(dx16).dtype == func(x16).dtype == np.float16
        _close_16(func(dx16), func(x16))
    xi = np.random.default_rng(0).integers(-5, 5, (ROWS, CLASSES))
    _close(lk.softmax(_chunked(xi, "mixed")), lk.softmax(xi), np.float64)


def test_numpy_calls_do_not_import_dask():
    code = (
        "import sys, numpy as np, logitkit as lk\n"
        "lk.softmax(np.ones((2, 3))); lk.cross_entropy(np.ones((2, 3)), np.zeros(2, int))\n"
        "assert 'dask' not in sys.modules, 'dask was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _unaligned(a):
    """A copy of `a` at an odd address."""
    raw = np.empty(a.nbytes + 1, dtype=np.uint8)
    u = np.ndarray(a.shape, dtype=a.dtype, buffer=raw, offset=1)
    u[...] = a
    assert not u.flags.aligned
    return u


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_unaligned_blocks(simd_target, chunking):
    x = _logits()
    t = _labels()
    # Every block at an odd address, as blocks unpickled on another worker can be.
    dx = _chunked(x, chunking).map_blocks(_unaligned, dtype=x.dtype)
    for func in (lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy):
        _close(func(dx), func(x), np.float64)
    loss, grad = lk.cross_entropy(dx, t, return_grad=True)
    expected = lk.cross_entropy(x, t, return_grad=True)
    _close(loss, expected[0], np.float64)
    _close(grad, expected[1], np.float64)
    _close(lk.kl_divergence(dx, dx[::-1]), lk.kl_divergence(x, x[::-1]), np.float64)


@pytest.mark.parametrize("shape", [(0, 10), (10,), (3, 0)],
                         ids=["empty-batch", "one-row", "no-classes"])
def test_edge_shapes(simd_target, shape):
    x = _logits(shape=shape)
    dx = da.from_array(x, chunks=3)
    for func in (lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy):
        _close(func(dx), func(x), np.float64)
    _close(lk.kl_divergence(dx, dx[::-1], reduction="mean"),
           lk.kl_divergence(x, x[::-1], reduction="mean"), np.float64)
    if shape[-1]:
        t = np.zeros(shape[:-1], dtype=int)
        for reduction in ("mean", "none"):
            loss, grad = lk.cross_entropy(dx, t, reduction=reduction, return_grad=True)
            expected = lk.cross_entropy(x, t, reduction=reduction, return_grad=True)
            _close(loss, expected[0], np.float64)
            _close(grad, expected[1], np.float64)


def test_unknown_chunk_sizes_are_refused():
    x = da.from_array(np.arange(10.0), chunks=3)
    with pytest.raises(ValueError, match="known chunk sizes"):
        lk.softmax(x[x > 3])


@pytest.mark.parametrize("workers", [None, 2])
def test_blocks_use_one_thread_unless_told(workers):
    # Dask runs blocks in parallel already: by default each block runs on the thread Dask
    # gives it, and logitkit's pool never starts. (A fresh process: the pool is per
    # process, and other tests start it.)
    if workers == 2 and lk.get_workers() < 2:
        pytest.skip("one usable core")
    code = (
        "import numpy as np, dask.array as da, logitkit as lk\n"
        "from logitkit import _core\n"
        "x = da.random.default_rng(0).standard_normal((1000, 1000), chunks=(500, 500))\n"
        "t = da.zeros(1000, dtype=int, chunks=500)\n"
        f"kw = dict(workers={workers})\n"
        "da.compute(lk.cross_entropy(x, t, return_grad=True, **kw), lk.softmax(x, **kw),\n"
        "           lk.cross_entropy(x.rechunk((500, -1)), t, **kw), scheduler='sync')\n"
        "print(_core._pool_thread_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert (int(out) == 0) == (workers is None), out


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_masks_per_row_with_empty_rows_and_blocks(simd_target, chunking):
    x = _logits()
    mask = np.random.default_rng(11).random(x.shape) < 0.6
    mask[2] = False  # a row with no class included
    mask[3, :8] = False  # a whole class block left out
    mask[4, 8:] = False
    x[5, mask[5]] = -np.inf  # included classes all -inf
    x[6, 0] = np.nan  # a NaN, left out
    mask[6, 0] = False
    dx, dmask = _chunked(x, chunking), _chunked(mask, chunking)
    for kw in ({"where": dmask}, {"where": mask, "temperature": 0.7}):
        numpy_kw = {**kw, "where": mask}
        for func in (lk.softmax, lk.log_softmax, lk.logsumexp, lk.entropy):
            _close(func(dx, **kw), func(x, **numpy_kw), np.float64)
        for reduction in ("none", "sum"):
            _close(lk.kl_divergence(dx, dx[::-1], reduction=reduction, **kw),
                   lk.kl_divergence(x, x[::-1], reduction=reduction, **numpy_kw), np.float64)
        kl, grad = lk.kl_divergence(dx, dx[::-1], return_grad=True, **kw)
        expected = lk.kl_divergence(x, x[::-1], return_grad=True, **numpy_kw)
        _close(kl, expected[0], np.float64)
        _close(grad, expected[1], np.float64)


def test_readme_dask_example_runs():
    # The README's Dask snippet, scaled down (40000 x 32000 -> 400 x 320, chunks 20 x 80).
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Dask: logits larger than memory"):]
    code = section[section.index("```python\n") + 10 : section.index("```\n", 10)]
    code = (code.replace("40000", "400").replace("32000", "320")
            .replace("(2000, 8000)", "(20, 80)").replace("chunks=2000", "chunks=20"))
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    x, t = dask.compute(env["logits"], env["labels"])
    np.testing.assert_allclose(env["mean"], lk.cross_entropy(x, t), rtol=1e-6)
    np.testing.assert_allclose(env["lowest"], -lk.cross_entropy(x, t, reduction="none").max(),
                               rtol=1e-6)
