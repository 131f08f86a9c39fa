"""Regression tests for the defects found by trying to break logitkit from the outside
(crashes, aliased outputs, float32 sums and overflow, wrapped labels, shapes, warnings).

Each test reproduces one reported defect exactly and failed before its fix.
"""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import logitkit
import reference
from loss_helpers import assert_loss_close

F32_MAX = float(np.finfo(np.float32).max)


def _run_isolated(code):
    """Run ``code`` in a fresh interpreter, so that a crash fails this test only."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout


# ---------------------------------------------------------------------------------------
# 1. labels stored inside grad_out: validated, then overwritten by earlier rows' gradients
# ---------------------------------------------------------------------------------------


def test_labels_inside_grad_out_do_not_crash():
    out = _run_isolated("""
        import numpy as np, logitkit
        z = np.random.default_rng(0).standard_normal((64, 64))
        buf = np.zeros(64 * 64)
        labels = buf.view(np.int64)[:64]
        labels[:] = np.arange(64)
        expected = logitkit.cross_entropy(z, labels.copy(), return_grad=True)
        loss, grad = logitkit.cross_entropy(z, labels, return_grad=True,
                                            grad_out=buf.reshape(64, 64))
        assert grad is not None and grad.base is buf
        np.testing.assert_array_equal(loss, expected[0])
        np.testing.assert_array_equal(grad, expected[1])
        print("ok")
    """)
    assert out.strip() == "ok"


# ---------------------------------------------------------------------------------------
# 2. outputs that share memory with an input other than the logits
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [0, 3])
def test_grad_out_overlapping_probability_target(simd_target, dtype, shift):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((8, 13)).astype(dtype)
    buf = np.zeros(8 * 13 + shift, dtype)
    probs = buf[shift:].reshape(8, 13) if shift else buf.reshape(8, 13)
    probs[:] = reference.softmax(rng.standard_normal((8, 13)))
    grad_out = buf[:8 * 13].reshape(8, 13)
    expected_loss, expected_grad = logitkit.cross_entropy(z, probs.copy(), return_grad=True)
    loss, grad = logitkit.cross_entropy(z, probs, return_grad=True, grad_out=grad_out)
    assert grad is grad_out
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 40), (3000, 5)])  # row kernel; column kernel blocks
def test_class_weight_stored_inside_grad_out(simd_target, dtype, shape):
    rng = np.random.default_rng(2)
    z = rng.standard_normal(shape).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    grad_out = np.empty(shape, dtype)
    weight = grad_out[0]  # the first row of the gradient holds the class weights
    weight[:] = rng.uniform(0.5, 2.0, shape[1])
    w = weight.copy()
    expected_loss, expected_grad = logitkit.cross_entropy(z, labels, weight=w, return_grad=True)
    loss, grad = logitkit.cross_entropy(z, labels, weight=weight, return_grad=True,
                                        grad_out=grad_out)
    assert_loss_close(loss, reference.cross_entropy(z, labels, weight=w), "loss", dtype)
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("which", ["weight", "pos_weight", "per_class_pos_weight", "target"])
def test_bce_grad_out_overlapping_an_input(simd_target, which):
    # The gradient buffer starts 3 elements after the input's memory: each gradient written
    # lands where a later element of the input is still to be read.
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, 6))
    inputs = {"target": rng.uniform(0, 1, (4, 6)), "weight": rng.uniform(0.5, 2, (4, 6)),
              "pos_weight": rng.uniform(0.5, 2, (4, 6))}
    if which == "per_class_pos_weight":
        inputs["pos_weight"] = rng.uniform(0.5, 2, 6)
    key = "pos_weight" if which == "per_class_pos_weight" else which
    buf = np.empty(4 * 6 + 3)
    shared = buf[:inputs[key].size].reshape(inputs[key].shape)
    shared[:] = inputs[key]
    grad_out = buf[3:].reshape(4, 6)
    copies = {k: v.copy() for k, v in inputs.items()}
    inputs[key] = shared
    expected = logitkit.binary_cross_entropy(z, copies.pop("target"), **copies,
                                             return_grad=True)
    target = inputs.pop("target")
    loss, grad = logitkit.binary_cross_entropy(z, target, **inputs, return_grad=True,
                                               grad_out=grad_out)
    assert grad is grad_out
    np.testing.assert_array_equal(loss, expected[0])
    np.testing.assert_array_equal(grad, expected[1])


def _self_overlapping(dtype=np.float64):
    buf = np.zeros(40, dtype)
    item = buf.itemsize
    return np.lib.stride_tricks.as_strided(buf, shape=(4, 8), strides=(item, item))


@pytest.mark.parametrize("func", ["softmax", "log_softmax", "sigmoid", "log_sigmoid"])
def test_self_overlapping_out_is_rejected(func):
    out = _self_overlapping()
    x = np.random.default_rng(4).standard_normal((4, 8))
    with pytest.raises(ValueError, match="overlaps itself"):
        getattr(logitkit, func)(x, out=out)
    with pytest.raises(ValueError, match="overlaps itself"):  # in place on it, too
        getattr(logitkit, func)(out, out=out)


def test_self_overlapping_grad_out_is_rejected():
    z = np.random.default_rng(5).standard_normal((4, 8))
    with pytest.raises(ValueError, match="grad_out overlaps itself"):
        logitkit.cross_entropy(z, np.arange(4), return_grad=True, grad_out=_self_overlapping())
    with pytest.raises(ValueError, match="grad_out overlaps itself"):
        logitkit.binary_cross_entropy(z, z > 0, return_grad=True, grad_out=_self_overlapping())
    with pytest.raises(ValueError, match="out overlaps itself"):
        logitkit.softmax_backward(z, z, out=_self_overlapping())


def test_ordinary_views_are_not_self_overlapping():
    from logitkit._arrays import self_overlapping

    a = np.zeros((6, 5, 4))
    for view in (a, a.T, a[::-2], a[:, ::3], a[..., 1], a.transpose(1, 0, 2)[::2],
                 np.zeros(0), np.zeros((1, 7))[:, ::2], np.broadcast_to(1.0, (1, 1))):
        assert not self_overlapping(view)
    assert self_overlapping(np.broadcast_to(1.0, (3, 2)))


# ---------------------------------------------------------------------------------------
# 3. binary cross-entropy sums in float32
# ---------------------------------------------------------------------------------------


def test_bce_float32_mean_of_a_long_row(simd_target):
    n = 2**24
    loss = logitkit.binary_cross_entropy(np.zeros(n, np.float32), np.ones(n, np.float32))
    assert abs(float(loss) - np.log(2)) <= 1e-6  # was 0.6592
    total = logitkit.binary_cross_entropy(np.zeros((4, n // 4), np.float32),
                                          np.ones((4, n // 4), np.float32), reduction="sum")
    assert abs(float(total) / (n * np.log(2)) - 1) <= 1e-6


def test_bce_float32_mean_of_random_data(simd_target):
    rng = np.random.default_rng(6)
    z = rng.standard_normal(2**22, dtype=np.float32) * 4
    y = (rng.random(2**22) < 0.3).astype(np.float32)
    loss = logitkit.binary_cross_entropy(z, y)
    assert_loss_close(loss, reference.binary_cross_entropy(z, y), "loss", np.float32)


# ---------------------------------------------------------------------------------------
# 4. uint64 labels past int64
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**64 - 100, 2**63 + 5, 2**63])
@pytest.mark.parametrize("func", ["cross_entropy", "nll_loss"])
def test_huge_uint64_labels_are_rejected_with_their_value(func, value):
    z = np.zeros((3, 4))
    labels = np.array([1, value, 2], dtype=np.uint64)
    with pytest.raises(IndexError, match=rf"target {value} at position \(1,\)"):
        getattr(logitkit, func)(z, labels)


def test_ignore_index_past_int64_is_a_clear_error():
    with pytest.raises(ValueError, match="ignore_index"):
        logitkit.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=2**64)
    with pytest.raises(ValueError, match="ignore_index"):
        logitkit.nll_loss(np.zeros((2, 3)), np.array([0, 1]), ignore_index=-(2**63) - 1)
    # The edges of int64 are fine.
    logitkit.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=2**63 - 1)


# ---------------------------------------------------------------------------------------
# 5. float32 intermediates that overflow where the result does not
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_cross_entropy_smoothing_over_huge_logits(simd_target, layout):
    rng = np.random.default_rng(7)
    z64 = np.where(rng.random((64, 40)) < 0.5, -3.3e38, 3.3e38)
    labels = rng.integers(0, 40, 64)
    axis = -1
    if layout == "columns":  # a non-last class axis: the column kernel
        z64, axis = np.ascontiguousarray(z64.T), 0
    z = z64.astype(np.float32)
    expected = reference.cross_entropy(z64, labels, axis=axis, label_smoothing=0.5)
    assert np.isfinite(expected) and abs(expected) < F32_MAX
    loss = logitkit.cross_entropy(z, labels, axis=axis, label_smoothing=0.5)
    assert_loss_close(loss, expected, "loss", np.float32)
    per_row = logitkit.cross_entropy(z, labels, axis=axis, label_smoothing=0.5,
                                     reduction="none")
    ref_rows = reference.cross_entropy(z64, labels, axis=axis, label_smoothing=0.5,
                                       reduction="none")
    assert_loss_close(per_row, np.where(np.abs(ref_rows) > F32_MAX, np.inf, ref_rows),
                      "loss", np.float32)


def test_cross_entropy_probability_target_over_huge_logits(simd_target):
    z = np.array([[3.3e38, -3.3e38, 0.0]], np.float32)
    y = np.array([[0.9, 0.05, 0.05]], np.float32)
    expected = reference.cross_entropy(z, y, label_smoothing=0.1)
    loss = logitkit.cross_entropy(z, y, label_smoothing=0.1)
    assert np.isfinite(expected) and np.isfinite(loss)
    assert_loss_close(loss, expected, "loss", np.float32)


def test_softmax_backward_with_huge_gradients(simd_target):
    g = np.array([3e38, -3e38, -3e38, -3e38], np.float32)
    p = np.array([0.9, 0.05, 0.03, 0.02], np.float32)
    out = logitkit.softmax_backward(g, p)
    expected = reference.softmax_backward(g, p)
    assert np.all(np.isfinite(out))
    assert_loss_close(out, expected, "grad", np.float32, scale=np.abs(g) * p)


def test_log_softmax_backward_with_huge_gradient_sum(simd_target):
    g = np.array([3e38, 3e38], np.float32)
    lp = np.log(np.array([0.5, 0.5], np.float32))
    out = logitkit.log_softmax_backward(g, lp)
    assert np.all(np.isfinite(out))  # was -inf: sum(g) = 6e38 rounded to float32
    # (exp of float32 log(0.5) is not exactly 0.5: the formula gives 5.7e29, not 0.)
    assert_loss_close(out, reference.log_softmax_backward(g, lp), "grad", np.float32,
                      scale=np.abs(g))


def test_bce_weighted_huge_logits(simd_target):
    z = np.array([-3e38, 3e38, 2.0], np.float32)
    y = np.array([1.0, 0.0, 0.5], np.float32)
    w = np.array([0.25, 0.5, 1.0], np.float32)
    pw = np.array([4.0, 4.0, 4.0], np.float32)  # 4 * -3e38 overflows; 0.25 * 4 * -3e38 not
    loss = logitkit.binary_cross_entropy(z, y, weight=w, pos_weight=pw, reduction="none")
    expected = reference.binary_cross_entropy(z, y, weight=w, pos_weight=pw, reduction="none")
    assert np.all(np.isfinite(loss))
    assert_loss_close(loss, expected, "loss", np.float32)


def test_kl_divergence_huge_logits(simd_target):
    # log q_1 - log q_0 = -6e38 is past float32's range; p_1 * 6e38 ~ 5e35 is not.
    p = np.array([[0.0, -7.0], [1.0, 2.0]], np.float32)
    q = np.array([[3e38, -3e38], [1.0, 2.0]], np.float32)
    kl, grad = logitkit.kl_divergence(p, q, return_grad=True)
    expected = reference.kl_divergence(p, q)
    assert np.all(np.abs(expected) < F32_MAX) and np.all(np.isfinite(kl))
    assert_loss_close(kl, expected, "loss", np.float32)
    mean = logitkit.kl_divergence(p, q, reduction="mean")
    assert_loss_close(mean, reference.kl_divergence(p, q, reduction="mean"), "loss",
                      np.float32)


# ---------------------------------------------------------------------------------------
# 6. 0-d binary cross-entropy
# ---------------------------------------------------------------------------------------


def test_bce_of_a_scalar_keeps_its_shape(simd_target):
    z, y = np.float64(0.5), np.float64(1.0)
    loss = logitkit.binary_cross_entropy(z, y, reduction="none")
    assert np.shape(loss) == ()
    loss, grad = logitkit.binary_cross_entropy(z, y, reduction="none", return_grad=True)
    assert np.shape(loss) == () and np.shape(grad) == ()
    assert_loss_close(np.asarray(loss), reference.binary_cross_entropy(z, y, reduction="none"),
                      "loss", np.float64)
    g = np.empty(())
    _, grad = logitkit.binary_cross_entropy(np.array(0.5), 1.0, return_grad=True, grad_out=g)
    assert grad is g


# ---------------------------------------------------------------------------------------
# 8. smaller ones
# ---------------------------------------------------------------------------------------


def test_short_weight_to_the_core_is_rejected():
    z = np.zeros((3, 1000))
    labels = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="one value per class"):
        logitkit._core.cross_entropy(z, labels, None, np.ones(2), -100, 0.0, 2, None, None, 1)
    with pytest.raises(ValueError, match="one value per class"):
        logitkit._core.nll_loss(z, labels, np.ones(999), -100, 2, None, 1)


def test_float16_total_past_65504_is_inf_without_warning():
    z = np.full((100, 2), 1000, np.float16)
    z[:, 1] = -1000
    loss = logitkit.cross_entropy(z, np.ones(100, np.int64), reduction="sum")
    assert loss.dtype == np.float16 and np.isposinf(loss)
    out = logitkit.log_softmax(np.array([60000, -60000], np.float16))
    assert out.dtype == np.float16 and np.isneginf(out[1])


def test_softmax_jacobian_with_inf_is_quiet():
    # Not a distribution: the entries are inf or NaN, and no NumPy warning escapes
    # (warnings are errors in this suite).
    jac = logitkit.softmax_jacobian(np.array([np.inf, 0.5]))
    assert jac.shape == (2, 2) and np.isnan(jac[0, 0]) and jac[1, 1] == 0.25


def test_column_kernel_fits_a_small_thread_stack():
    # The cross-entropy column kernel kept ~100 KiB of per-block state on the stack; musl's
    # default thread stack is 128 KiB. Run it in a thread with a 96 KiB stack (which
    # crashed it), part of which Python's own frames take.
    out = _run_isolated("""
        import threading, numpy as np, logitkit
        threading.stack_size(96 * 1024)
        z = np.random.default_rng(0).standard_normal((8, 50, 300))
        labels = np.random.default_rng(1).integers(0, 50, (8, 300))
        expected = logitkit.cross_entropy(z.copy(), labels, axis=1, label_smoothing=0.1,
                                          return_grad=True)
        result = []
        def work():
            result.append(logitkit.cross_entropy(z, labels, axis=1, label_smoothing=0.1,
                                                 return_grad=True))
        t = threading.Thread(target=work)
        t.start(); t.join()
        np.testing.assert_array_equal(result[0][1], expected[1])
        print("ok")
    """)
    assert out.strip() == "ok"


def test_threads_do_not_share_column_state():
    z = np.random.default_rng(8).standard_normal((4, 20, 200))
    labels = np.random.default_rng(9).integers(0, 20, (4, 200))
    expected = logitkit.cross_entropy(z, labels, axis=1, return_grad=True)
    results = [None] * 4

    def work(i):
        results[i] = logitkit.cross_entropy(z, labels, axis=1, return_grad=True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in results:
        np.testing.assert_array_equal(r[1], expected[1])


# ---------------------------------------------------------------------------------------
# found by the differential fuzzer (tests/fuzzing.py)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape_axis", [((1, 2), -1), ((2, 40), -1), ((2, 3000), 0)],
                         ids=["short", "row", "column"])
def test_cross_entropy_with_plus_inf_on_another_class_is_inf(simd_target, dtype, shape_axis):
    # lse = +inf, so lse - z_t = +inf for a finite z_t (was NaN).
    shape, axis = shape_axis
    z = np.zeros(shape, dtype)
    other = (slice(None), 1) if axis == -1 else (1, slice(None))
    z[other] = np.inf
    n = shape[axis]
    labels = np.zeros(z.shape[0] if axis == -1 else z.shape[1], np.int64)
    loss = logitkit.cross_entropy(z, labels, axis=axis, reduction="none")
    assert_loss_close(loss, reference.cross_entropy(z, labels, axis=axis, reduction="none"),
                      "loss", dtype)
    probs = np.zeros(z.shape, dtype)
    probs[(slice(None), 0) if axis == -1 else (0, slice(None))] = 1
    loss = logitkit.cross_entropy(z, probs, axis=axis, reduction="none")
    assert np.all(np.isposinf(loss)), (n, loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_backward_with_log_probs_above_exp_range(simd_target, dtype):
    # log_probs are not checked to be <= 0: exp(100) * 2 overflows float32 to inf.
    big = 100.0 if dtype == np.float32 else 800.0
    g = np.array([2.0, 1.0], dtype)
    lp = np.array([big, np.inf], dtype)
    out = logitkit.log_softmax_backward(g, lp)
    np.testing.assert_array_equal(out, np.array([-np.inf, -np.inf], dtype))


def test_kl_divergence_of_huge_float64_logits_does_not_cancel(simd_target):
    p = np.array([[8e149, -8e149, 8e149]])
    q = np.array([[-29.0, 35.0, 10.0]])
    assert_loss_close(logitkit.kl_divergence(p, q), reference.kl_divergence(p, q), "loss",
                      np.float64)


def test_kl_divergence_in_another_base_scales_before_rounding(simd_target):
    # 6.6e38 nats is past float32's range, 2.9e38 decimal digits is not.
    p = np.array([[-np.inf, 0.0]], np.float32)
    q = np.array([[3.3e38, -3.3e38]], np.float32)
    expected = reference.kl_divergence(p, q, base=10)
    assert np.all(np.abs(expected) < F32_MAX)
    assert_loss_close(logitkit.kl_divergence(p, q, base=10), expected, "loss", np.float32)
    # Past it in base 0.5 (-9.5e38): -inf, without NumPy's overflow warning.
    assert np.isneginf(logitkit.kl_divergence(p, q, base=0.5))


def test_kl_divergence_where_q_excludes_a_class_p_allows(simd_target):
    # p_0 = e^-717 is subnormal (flushed to 0 by the kernels' exp), but q_0 = 0: KL = inf.
    kl = logitkit.kl_divergence(np.array([0.0, 717.0]), np.array([-np.inf, 0.0]))
    assert np.isposinf(kl)


@pytest.mark.parametrize("func", ["bce", "nll"])
def test_float32_means_of_losses_past_float32(simd_target, func):
    if func == "bce":
        z, y = np.full(4, -3e38, np.float32), np.ones(4, np.float32)
        loss = logitkit.binary_cross_entropy(z, y)
        expected = reference.binary_cross_entropy(z, y)
    else:
        lp, t, w = (np.array([[-3e38, 0]], np.float32), np.array([0]),
                    np.array([2.0, 1.0], np.float32))
        loss = logitkit.nll_loss(lp, t, weight=w)
        expected = reference.nll_loss(lp, t, weight=w)
    assert np.isfinite(loss)
    assert_loss_close(loss, expected, "loss", np.float32)


def test_cross_entropy_row_with_plus_inf_and_nan_is_nan(simd_target):
    # +inf makes lse +inf, unless the row also holds a NaN (fuzzer: inf where NaN was due).
    for shape, axis in (((2, 40), -1), ((40, 3000), 0), ((5, 3), -1)):
        z = np.zeros(shape)
        first = (0, slice(None)) if axis == -1 else (slice(None), 0)
        z[first] = np.inf
        z[(0, 2) if axis == -1 else (2, 0)] = np.nan
        labels = np.ones(shape[0] if axis == -1 else shape[1], np.int64)
        loss = logitkit.cross_entropy(z, labels, axis=axis, reduction="none")
        expected = reference.cross_entropy(z, labels, axis=axis, reduction="none")
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(expected))
        assert np.isnan(loss[0])


def test_log_softmax_backward_with_zero_gradient_sum_and_log_probs_past_88(simd_target):
    # exp(89) overflows float32, but exp(89) * sum(g) = exp(89) * 0 = 0 in the formula.
    g = np.array([0.5, -0.5], np.float32)
    lp = np.array([89.0, -1.0], np.float32)
    np.testing.assert_array_equal(logitkit.log_softmax_backward(g, lp), g)
    g2 = np.array([0.5, -0.4], np.float32)  # float64 result -4.5e37 fits float32
    out = logitkit.log_softmax_backward(g2, lp)
    assert_loss_close(out, reference.log_softmax_backward(g2, lp), "grad", np.float32)


@pytest.mark.parametrize("layout", ["reversed", "every_other"])
def test_result_through_a_temporary_is_that_of_the_same_out_layout(simd_target, layout):
    # An out that overlaps its input goes through a temporary of out's own layout, so the
    # result is bit-identical to writing into a separate array of that layout (the kernel
    # chosen, rows or columns, depends on the output's layout; a C-ordered temporary gave
    # other last bits for a reversed out).
    x = np.random.default_rng(10).standard_normal((6, 40)).astype(np.float32)
    buf = np.zeros((6, 80), np.float32)
    if layout == "reversed":
        out_shared, x_shared = buf[:, :40][:, ::-1], buf[:, 1:41]
        separate = np.zeros((6, 40), np.float32)[:, ::-1]
    else:
        out_shared, x_shared = buf[:, ::2], buf[:, 1::2]  # interleaved: bounds overlap
        separate = np.zeros((6, 80), np.float32)[:, ::2]
    for func in ("softmax", "log_softmax"):
        x_shared[:] = x
        expected = getattr(logitkit, func)(x.copy(), out=separate).copy()
        got = getattr(logitkit, func)(x_shared, out=out_shared)
        np.testing.assert_array_equal(got, expected)


def test_mean_of_per_row_losses_of_both_signs_keeps_the_small_ones(simd_target):
    # nll_loss of log-probabilities +-1e150 (not log-probabilities, but valid input): the
    # huge per-row losses cancel exactly; a plain left-to-right sum lost the others.
    lp = np.zeros((6, 3))
    lp[:, 0] = [1e150, -18.5, -1e150, 2.0, 1e150, -1e150]
    t = np.zeros(6, np.int64)
    # (The reference's pairwise np.sum gives 0.0 here; the exact sum is 16.5.)
    assert logitkit.nll_loss(lp, t, reduction="sum") == 16.5
    assert logitkit.nll_loss(lp, t, reduction="mean") == 16.5 / 6


def test_probability_target_with_no_weight_on_a_row_of_minus_inf(simd_target):
    z = np.full((2, 5), -np.inf)
    z[1] = 0.0
    y = np.zeros((2, 5))
    y[1, 2] = 1.0
    loss = logitkit.cross_entropy(z, y, reduction="none")
    np.testing.assert_array_equal(loss, reference.cross_entropy(z, y, reduction="none"))


def test_softmax_column_kernels_fit_a_small_thread_stack():
    # Like the cross-entropy column kernel: softmax / log_softmax / logsumexp along a
    # non-last axis kept ~48 KiB of block state on the stack.
    out = _run_isolated("""
        import threading, numpy as np, logitkit
        threading.stack_size(48 * 1024)  # the previous kernels crashed here
        z = np.random.default_rng(0).standard_normal((8, 50, 300))
        expected = [f(z.copy(), axis=1) for f in (logitkit.softmax, logitkit.log_softmax,
                                                 logitkit.logsumexp)]
        result = []
        def work():
            result.extend(f(z, axis=1) for f in (logitkit.softmax, logitkit.log_softmax,
                                                 logitkit.logsumexp))
        t = threading.Thread(target=work)
        t.start(); t.join()
        for a, b in zip(result, expected):
            np.testing.assert_array_equal(a, b)
        print("ok")
    """)
    assert out.strip() == "ok"


# found by the sanitizer job's extra pass (tools/sanitize.sh): the private core read
# shape[axis] before checking the axis (a heap read past the shape; a segfault for
# axis = -2**31)


@pytest.mark.parametrize("axis", [2, -1, -(2**31)])
def test_core_loss_functions_check_the_axis_first(axis):
    core = logitkit._core
    x = np.ones((2, 3))
    labels = np.zeros(2, np.int64)
    calls = [
        lambda: core.entropy(x, np.empty(2), axis),
        lambda: core.kl_divergence(x, x, np.empty(2), 1.0, None, 1.0, axis),
        lambda: core.softmax_backward(x, x, np.empty_like(x), axis),
        lambda: core.log_softmax_backward(x, x, np.empty_like(x), axis),
        lambda: core.cross_entropy(x, labels, None, None, -100, 0.0, 1, None, None, axis),
        lambda: core.cross_entropy(x, None, x, None, -100, 0.0, 1, None, None, axis),
        lambda: core.nll_loss(x, labels, None, -100, 1, None, axis),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="axis"):
            call()


def test_core_rejects_an_unknown_reduction_code():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="reduction"):
        logitkit._core.cross_entropy(x, np.zeros(2, np.int64), None, None, -100, 0.0, 7,
                                     None, None, 1)



def test_float32_total_past_float32_is_inf_without_warning():
    # Per-row losses are kept in double; their float32 sum of 2 x 3e38 is inf, quietly.
    z = np.array([[3e38, -3e38], [3e38, -3e38]], np.float32)
    loss = logitkit.cross_entropy(z, np.array([1, 1]), reduction="sum")
    assert loss.dtype == np.float32 and np.isposinf(loss)


def test_bce_float64_mean_of_many_equal_losses(simd_target):
    # A plain double sum of 70000 losses of log 2 was off by 1.0e-12.
    loss = logitkit.binary_cross_entropy(np.zeros(70000), np.zeros(70000))
    assert abs(float(loss) - np.log(2)) <= 1e-13  # (measured 1.3e-15)


def test_kl_divergence_float32_mean_of_rows_past_float32(simd_target):
    # One row's divergence (6.6e38) overflows float32, the mean of five (1.3e38) not.
    p = np.zeros((5, 2), np.float32)
    p[0] = [-np.inf, 0.0]
    q = np.zeros((5, 2), np.float32)
    q[0] = [3.3e38, -3.3e38]
    expected = reference.kl_divergence(p, q, reduction="mean")
    assert abs(expected) < F32_MAX
    assert_loss_close(logitkit.kl_divergence(p, q, reduction="mean"), expected, "loss",
                      np.float32)
    per_row = logitkit.kl_divergence(p, q)  # float32 rows: the first is inf, quietly
    assert per_row.dtype == np.float32 and np.isposinf(per_row[0])


def test_special_log_softmax_float16_past_65504_is_quiet():
    from logitkit import special

    out = special.log_softmax(np.array([60000, -60000], np.float16))
    assert out.dtype == np.float16 and np.isneginf(out[1])


def test_bce_infinite_total_is_inf_not_nan(simd_target):
    # The compensated sum turned an infinite total into NaN (inf - inf in the carry).
    z = np.array([-np.inf, 1.0, 2.0] * 100)
    y = np.ones(300)
    assert np.isposinf(logitkit.binary_cross_entropy(z, y, reduction="sum"))
    assert np.isposinf(logitkit.binary_cross_entropy(z, y))


def _unaligned(values):
    raw = np.zeros(values.nbytes + 1, np.uint8)
    a = raw[1:].view(values.dtype).reshape(values.shape)
    a[...] = values
    assert not a.flags.aligned
    return a


# found by the in-suite fuzz run under tools/sanitize.sh (UBSan: misaligned loads)
def test_unaligned_targets_and_weights(simd_target):
    rng = np.random.default_rng(12)
    z = rng.standard_normal((5, 7)).astype(np.float32)
    y = rng.random((5, 7)).astype(np.float32)
    w = rng.uniform(0.5, 2, (5, 7)).astype(np.float32)
    pw = rng.uniform(0.5, 2, 7).astype(np.float32)
    expected = logitkit.binary_cross_entropy(z, y, weight=w, pos_weight=pw, reduction="none")
    got = logitkit.binary_cross_entropy(z, _unaligned(y), weight=_unaligned(w),
                                        pos_weight=_unaligned(pw), reduction="none")
    np.testing.assert_array_equal(got, expected)
    cw = rng.uniform(0.5, 2, 7).astype(np.float32)
    labels = rng.integers(0, 7, 5)
    np.testing.assert_array_equal(logitkit.cross_entropy(z, labels, weight=_unaligned(cw)),
                                  logitkit.cross_entropy(z, labels, weight=cw))


def test_core_rejects_unaligned_contiguous_operands():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="aligned"):
        logitkit._core.binary_cross_entropy(z, _unaligned(z), None, None, None, None, 1.0)
