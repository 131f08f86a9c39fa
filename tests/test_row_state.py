"""The core's block-state entry points (for the Dask layer), directly: states of blocks of
a row, merged in any order and tree, give the row's logsumexp and softmax; bad arguments
raise, never crash."""

from __future__ import annotations

import numpy as np
import pytest

import logitkit as lk
from logitkit import _core


def _states(x, cuts):
    """States of the column blocks of x between `cuts`, stacked: rows x blocks x 2."""
    blocks = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        state = np.empty((x.shape[0], 2))
        _core._row_states(x[:, a:b], state)  # a view: rows are a row stride apart
        blocks.append(state)
    return np.ascontiguousarray(np.stack(blocks, axis=1))


def _merge(states):
    out = np.empty((states.shape[0], states.shape[2]))
    _core._merge_row_states(np.ascontiguousarray(states), out)
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("n", [1, 7, 16, 17, 300])
def test_blocks_merged_in_any_tree_give_the_row(simd_target, n, dtype):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((9, n)) * 5 + 100).astype(dtype)
    cuts = sorted({0, n, *rng.integers(0, n + 1, 3).tolist()})
    states = _states(x, cuts)
    flat = _merge(states)
    # A tree: the first half merged, then with the rest.
    half = max(1, states.shape[1] // 2)
    tree = _merge(np.stack([_merge(states[:, :half]), _merge(states[:, half:])], axis=1)) \
        if states.shape[1] > 1 else flat
    rtol = {np.float64: 1e-13, np.float32: 1e-6, np.float16: 1e-6}[dtype]
    expected = lk.logsumexp(x.astype(np.float64))
    for merged in (flat, tree):
        np.testing.assert_allclose(merged[:, 0] + np.log1p(merged[:, 1]), expected, rtol=rtol)
        for log, func in ((False, lk.softmax), (True, lk.log_softmax)):
            out = np.empty_like(x)
            _core._rows_from_state(x, merged, None, out, log)
            np.testing.assert_allclose(out.astype(np.float64), func(x).astype(np.float64),
                                       rtol=20 * rtol if dtype != np.float16 else 2e-3,
                                       atol=1e-300 if dtype == np.float64 else 1e-6)


def test_row_scale_and_non_finite_rows(simd_target):
    x = np.array([[1.0, 2.0, 3.0], [np.inf, 0.0, 1.0], [np.nan, 0, 0], [-np.inf] * 3,
                  [0.0, 0.0, 0.0]])
    state = np.empty((5, 2))
    _core._row_states(x, state)
    np.testing.assert_array_equal(state[1:4, 0], [np.inf, np.nan, -np.inf])
    out = np.empty_like(x)
    scale = np.array([2.0, 1.0, 1.0, 1.0, 0.0])
    _core._rows_from_state(x, state, scale, out, False)
    np.testing.assert_allclose(out[0], 2 * lk.softmax(x[0]), rtol=1e-15)
    assert np.isnan(out[1:4]).all()
    np.testing.assert_array_equal(out[4], 0.0)  # a row that does not count: 0


def test_bad_arguments_raise():
    x = np.ones((4, 5))
    state = np.empty((4, 2))
    with pytest.raises(ValueError):
        _core._row_states(x, np.empty((3, 2)))  # wrong rows
    with pytest.raises(ValueError):
        _core._row_states(x, np.empty((4, 1)))  # too few fields
    with pytest.raises(TypeError):
        _core._row_states(x, np.empty((4, 2), np.float32))  # states are float64
    with pytest.raises(ValueError):
        _core._row_states(x[:, ::2], state)  # rows not contiguous
    with pytest.raises(ValueError):
        _core._row_states(np.ones((4, 5, 1)), state)
    with pytest.raises(ValueError):
        _core._merge_row_states(np.empty((4, 2, 2)), np.empty((4, 3)))
    with pytest.raises(ValueError):
        _core._rows_from_state(x, state, np.ones(3), np.empty_like(x), False)
    with pytest.raises(ValueError):
        _core._rows_from_state(x, state, None, np.empty((4, 4)), False)
    with pytest.raises(ValueError):
        _core._rows_from_state(x, state, None, np.empty_like(x)[:, ::-1], False)
    with pytest.raises(ValueError, match="aligned"):
        raw = np.empty(x.nbytes + 1, np.uint8)
        _core._row_states(np.ndarray(x.shape, x.dtype, raw, 1), state)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bit_identical_for_any_number_of_workers(simd_target, dtype):
    # Rows are cut into tasks by the shape only: every workers= gives the same bits.
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((600, 1000)) * 4).astype(dtype)
    mask = rng.random(x.shape) < 0.9
    results = []
    for workers in (1, 2, 3, 7):
        for scale, where in ((None, None), (1 / 1.7, mask)):
            state = np.empty((600, 2))
            _core._row_states(x, state, workers, scale, where)
            out = np.empty_like(x)
            _core._rows_from_state(x, state, np.linspace(0, 1, 600), out, False, workers,
                                   scale, where)
            results.append((workers, scale is None, state, out))
    for workers, plain, state, out in results[2:]:
        reference = results[0 if plain else 1]
        np.testing.assert_array_equal(state, reference[2])
        np.testing.assert_array_equal(out, reference[3])
