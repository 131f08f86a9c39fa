"""temperature= and where= on softmax, log_softmax and logsumexp (spec/options_spec.md).

Checked against the float64 formulas of reference.py (``*_options``) with the suite's
tolerances, on every SIMD target, in every dtype, against JAX's ``where=`` and PyTorch's
``softmax(x / T)`` when they are installed, and bit for bit against the plain calls where
the options change nothing.
"""

import numpy as np
import pytest

import logitkit
import reference
from helpers import assert_close, random_logits, rng_for, with_layout

try:
    import ml_dtypes

    HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
except ImportError:
    HALF = [np.dtype(np.float16)]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)] + HALF
IDS = [d.name for d in DTYPES]
FUNCS = ["softmax", "log_softmax", "logsumexp"]
KIND = {"softmax": "softmax", "log_softmax": "log_softmax", "logsumexp": "logsumexp"}


def run(func, x, axis=-1, **kw):
    return getattr(logitkit, func)(x, axis=axis, **kw)


def ref(func, x, axis=-1, **kw):
    return getattr(reference, func + "_options")(x, axis, **kw)


def masks(rng, shape, axis=-1):
    """where= masks of every broadcast form: full, one shared row (n,), one value per
    row (rows, 1) with some rows fully left out, and a full mask with a row left out."""
    axis = axis % len(shape)
    full = rng.random(shape) < 0.6
    row_shape = tuple(1 if i == axis else n for i, n in enumerate(shape))
    per_row = rng.random(row_shape) < 0.7
    per_row.flat[0] = False
    full_empty = full.copy()
    np.moveaxis(full_empty, axis, -1).reshape(-1, shape[axis])[0] = False
    shared = np.zeros(shape[axis], dtype=bool)
    shared[:: 2] = True
    shared_shape = tuple(shape[axis] if i == axis else 1 for i in range(len(shape)))
    return {"full": full, "full_empty_row": full_empty, "per_row": per_row,
            "shared": shared.reshape(shared_shape) if axis != len(shape) - 1 else shared}


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("n", [1, 7, 17, 33, 100])
@pytest.mark.parametrize("temperature", [0.5, 0.7, 3.0])
@pytest.mark.parametrize("func", FUNCS)
def test_temperature(simd_target, func, temperature, n, dtype):
    x = random_logits(rng_for("T", func, n, dtype.name), (6, n), np.float64).astype(dtype)
    assert_close(run(func, x, temperature=temperature), ref(func, x, temperature=temperature),
                 KIND[func], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("n", [1, 7, 17, 33, 100])
@pytest.mark.parametrize("form", ["full", "full_empty_row", "per_row", "shared"])
@pytest.mark.parametrize("func", FUNCS)
def test_where(simd_target, func, form, n, dtype):
    rng = rng_for("where", func, form, n, dtype.name)
    x = random_logits(rng, (6, n), np.float64).astype(dtype)
    w = masks(rng, x.shape)[form]
    assert_close(run(func, x, where=w), ref(func, x, where=w), KIND[func], dtype)
    assert_close(run(func, x, where=w, temperature=0.7),
                 ref(func, x, where=w, temperature=0.7), KIND[func], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("layout", ["F", "every_other", "last_step2", "reversed", "moveaxis"])
@pytest.mark.parametrize("func", FUNCS)
def test_layouts_and_axes(simd_target, func, layout, dtype):
    rng = rng_for("layout", func, layout, dtype.name)
    for shape, axis in [((5, 37), -1), ((4, 19, 6), 1), ((9, 3, 5), 0)]:
        x = with_layout(random_logits(rng, shape, np.float64, axis=axis).astype(dtype), layout)
        for form, w in masks(rng, shape, axis).items():
            for t in (1.0, 0.6):
                assert_close(run(func, x, axis, where=w, temperature=t),
                             ref(func, x, axis, where=w, temperature=t), KIND[func], dtype)
        assert_close(run(func, x, axis, temperature=2.5), ref(func, x, axis, temperature=2.5),
                     KIND[func], dtype)


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)], ids=str)
@pytest.mark.parametrize("func", FUNCS)
def test_long_row(simd_target, func, dtype):
    n = (1 << 18) + 37
    rng = rng_for("long", func, dtype.name)
    x = random_logits(rng, (2, n), np.float64).astype(dtype)
    w = rng.random(n) < 0.5
    assert_close(run(func, x, temperature=1.7), ref(func, x, temperature=1.7), KIND[func], dtype)
    assert_close(run(func, x, where=w, temperature=0.8),
                 ref(func, x, where=w, temperature=0.8), KIND[func], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("func", ["softmax", "log_softmax"])
def test_out_is_input(simd_target, func, dtype):
    rng = rng_for("inplace", func, dtype.name)
    for layout in ["C", "every_other"]:
        x = with_layout(random_logits(rng, (7, 45), np.float64).astype(dtype), layout)
        w = rng.random(x.shape) < 0.5
        w[3] = False
        expected = ref(func, x, where=w, temperature=0.9)
        result = run(func, x, where=w, temperature=0.9, out=x)
        assert result is x
        assert_close(x, expected, KIND[func], dtype)


def test_logsumexp_out_and_keepdims(simd_target):
    x = random_logits(rng_for("lse_out"), (6, 33), np.float64).astype(np.float32)
    w = np.ones(33, dtype=bool)
    w[::3] = False
    out = np.empty((6, 1), np.float32)
    assert logitkit.logsumexp(x, keepdims=True, where=w, temperature=2.0, out=out) is out
    assert_close(out[:, 0], ref("logsumexp", x, where=w, temperature=2.0), "logsumexp",
                 np.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("func", FUNCS)
def test_special_values(simd_target, func, dtype):
    # Left-out NaN and +inf are ignored; included ones follow the numerical contract.
    x = np.array([[1.0, np.nan, 2.0, np.inf, 0.5, -np.inf, 3.0, 1.0, 2.0],
                  [1.0, np.nan, 2.0, 0.0, 0.5, 0.0, 3.0, 1.0, 2.0],
                  [1.0, 0.0, 2.0, np.inf, 0.5, 0.0, 3.0, 1.0, 2.0],
                  [-np.inf] * 9,
                  [np.nan, np.inf, -np.inf, 1, 2, 3, 4, 5, 6]]).astype(dtype)
    w = np.ones(x.shape, dtype=bool)
    w[0, [1, 3]] = False  # NaN and +inf left out: a normal row
    w[3, :4] = False      # all -inf included elements: NaN softmax, -inf logsumexp
    w[4] = False          # nothing included
    for t in (1.0, 0.25):
        assert_close(run(func, x, where=w, temperature=t), ref(func, x, where=w, temperature=t),
                     KIND[func], dtype)
        assert_close(run(func, x, temperature=t), ref(func, x, temperature=t), KIND[func], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("func", FUNCS)
def test_fully_masked_rows(simd_target, func, dtype):
    x = random_logits(rng_for("empty", func), (4, 21), np.float64).astype(dtype)
    result = np.asarray(run(func, x, where=np.zeros((4, 1), dtype=bool)))
    expected = 0.0 if func == "softmax" else -np.inf
    assert np.all(result.astype(np.float64) == expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("func", FUNCS)
def test_defaults_bit_identical(simd_target, func, dtype):
    # temperature=1 is the plain path; an all-True mask changes no value's formula on
    # the row kernels (rows of 32 and more; the plain call's short rows go to the column
    # kernels, which round differently).
    rng = rng_for("bits", func, dtype.name)
    for shape in [(5, 100), (4, 33), (300, 1000)]:
        x = random_logits(rng, shape, np.float64).astype(dtype)
        plain = np.asarray(run(func, x))
        for kw in ({"temperature": 1.0}, {"temperature": 1}, {"where": True},
                   {"where": np.ones(shape, dtype=bool)}):
            got = np.asarray(run(func, x, **kw))
            assert got.tobytes() == plain.tobytes(), kw


@pytest.mark.parametrize("func", FUNCS)
def test_workers_bit_identical(func):
    rng = rng_for("workers_opt", func)
    for shape, axis, layout in [((257, 1031), -1, "C"), ((1031, 263), 0, "C"),
                                ((131, 2003), -1, "every_other"), ((2, (1 << 18) + 3), -1, "C")]:
        x = with_layout(random_logits(rng, shape, np.float64, axis=axis).astype(np.float32),
                        layout)
        w = rng.random(shape) < 0.8
        results = [np.asarray(run(func, x, axis, where=w, temperature=0.7, workers=k)).tobytes()
                   for k in (1, 2, 3, 7)]
        assert all(r == results[0] for r in results)


@pytest.mark.parametrize("func", FUNCS)
def test_bad_options(func):
    x = np.zeros((3, 4), np.float32)
    for t in (0.0, -1.0, np.inf, np.nan, -np.inf):
        with pytest.raises(ValueError, match="temperature"):
            run(func, x, temperature=t)
    for t in (True, "2", None, [1.0], 1 + 2j):
        with pytest.raises(TypeError, match="temperature"):
            run(func, x, temperature=t)
    for w in (np.ones((3, 4), np.int8), np.ones(4), [1, 0, 1, 1]):
        with pytest.raises(TypeError, match="where"):
            run(func, x, where=w)
    for w in (np.ones(3, bool), np.ones((2, 4), bool), np.ones((3, 4, 1), bool)):
        with pytest.raises(ValueError, match="where"):
            run(func, x, where=w)


def test_jax_where(simd_target):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from jax.scipy.special import logsumexp as jlse

    rng = rng_for("jax")
    x = random_logits(rng, (8, 50), np.float64)
    w = rng.random(x.shape) < 0.5
    w[2] = False
    for func, jf in [("softmax", lambda a, m: jax.nn.softmax(a, where=m)),
                     ("log_softmax", lambda a, m: jax.nn.log_softmax(a, where=m)),
                     ("logsumexp", lambda a, m: jlse(a, axis=-1, where=m))]:
        expected = np.asarray(jf(x / 1.5, w))
        if func == "log_softmax":  # JAX leaves left-out entries' values as they come
            expected = np.where(w, expected, -np.inf)
        assert_close(run(func, x, where=w, temperature=1.5), expected, KIND[func], np.float64)


def test_torch_temperature(simd_target):
    torch = pytest.importorskip("torch")
    x = random_logits(rng_for("torch"), (16, 300), np.float64)
    t = torch.tensor(x) / 0.6
    assert_close(logitkit.softmax(x, temperature=0.6), torch.softmax(t, -1).numpy(),
                 "softmax", np.float64)
    assert_close(logitkit.log_softmax(x, temperature=0.6), torch.log_softmax(t, -1).numpy(),
                 "log_softmax", np.float64)
    assert_close(logitkit.logsumexp(x, temperature=0.6), torch.logsumexp(t, -1).numpy(),
                 "logsumexp", np.float64)
