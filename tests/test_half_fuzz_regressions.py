"""Regression tests for the 16-bit failures the differential fuzzer found
(``python tests/fuzzing.py --dtypes float16,bfloat16``), in test_half.py's terms: each
result within 2 units in the last place of its dtype of the float64 result.

Each test failed before its fix.
"""

import numpy as np
import pytest

import logitkit
import reference
from logitkit import special

ml_dtypes = pytest.importorskip("ml_dtypes")

from test_half import assert_ulp  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)

# exp(-88.5) ~ 3.7e-39, ..., exp(-92) ~ 1.1e-40: below 2**-126 ~ 1.18e-38, bfloat16's (and
# float32's) smallest normal, and above half its subnormal spacing 2**-133 ~ 9.2e-41.
SUBNORMAL_LOGITS = [-88.5, -89.0, -90.0, -92.0]


@pytest.mark.parametrize("name", ["softmax", "special.softmax", "sigmoid", "softmax axis 0",
                                  "cross_entropy grad", "bce grad", "kl grad"])
def test_bfloat16_subnormal_probabilities(simd_target, name):
    """Fuzzer: ``--seed 20260101 --case 276 --small`` (shrunk: softmax of a (2, 14, 3, 3)
    bfloat16 array along axis -4: 0 where the result is 8.2e-40). The kernels' fast exp
    flushed results below 2**-126, bfloat16's smallest normal too; bfloat16 outputs now
    take the general exp (``lk_exp_shifted``)."""
    row = np.array([[0.0] + SUBNORMAL_LOGITS], BF16)
    row64 = row.astype(np.float64)
    if name == "softmax axis 0":
        assert_ulp(logitkit.softmax(row.T, axis=0), reference.softmax(row64.T, 0), BF16, name)
        return
    if name == "cross_entropy grad":
        _, g = logitkit.cross_entropy(row, np.array([0]), reduction="sum", return_grad=True)
        _, ref = reference.cross_entropy(row64, np.array([0]), reduction="sum",
                                         return_grad=True)
        assert_ulp(g[:, 1:], ref[:, 1:], BF16, name)
        return
    if name == "bce grad":
        x = np.array(SUBNORMAL_LOGITS, BF16)
        y = np.zeros(len(SUBNORMAL_LOGITS), BF16)
        _, g = logitkit.binary_cross_entropy(x, y, reduction="sum", return_grad=True)
        _, ref = reference.binary_cross_entropy(x.astype(np.float64), y.astype(np.float64),
                                                reduction="sum", return_grad=True)
        assert_ulp(g, ref, BF16, name)
        return
    if name == "kl grad":
        q = np.zeros_like(row)
        _, g = logitkit.kl_divergence(q, row, reduction="sum", return_grad=True)
        _, ref = reference.kl_divergence(q.astype(np.float64), row64, reduction="sum",
                                         return_grad=True)
        assert_ulp(g, ref, BF16, name, operand_scale=1.0)
        return
    if name == "sigmoid":
        x = np.array(SUBNORMAL_LOGITS, BF16)
        ref = reference.sigmoid(x.astype(np.float64))
        got = logitkit.sigmoid(x)
    else:
        x = np.array([[0.0] + SUBNORMAL_LOGITS], BF16)
        ref = reference.softmax(x.astype(np.float64), -1)
        got = (special.softmax(x, axis=-1) if name == "special.softmax"
               else logitkit.softmax(x))
    assert np.all((ref[ref < 1] > 2.0 ** -134) & (ref[ref < 1] < 2.0 ** -126))
    assert_ulp(got, ref, BF16, name)


def test_mixed_16_bit_targets_and_weights_are_not_rounded_to_the_logits_format(simd_target):
    """Fuzzer: ``--seed 1 --cases 3000 --dtypes float16,bfloat16`` (bfloat16 logits
    with float16 targets: binary_cross_entropy's loss 1.2 ulp and gradient 2.8 ulp off,
    cross_entropy's gradient 4.4 ulp off).  A float16 target of bfloat16 logits was
    rounded to bfloat16 (3 bits lost); a bfloat16 weight of float16 logits to float16
    (beyond 65504: inf).  Fixed in ``_arrays.widen_for``: the kernels compute from
    float32 copies, as for float32 targets."""
    bf16, f16 = BF16, np.dtype(np.float16)
    # 0.49951172 = 0.5 - 2**-11 is a float16; its bfloat16 rounding is 0.5
    z = np.array([0.0, 0.0], bf16)
    y = np.array([0.5 - 2.0**-11, 0.5 + 2.0**-10], f16)
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    _, grad = logitkit.binary_cross_entropy(z, y, reduction="none", return_grad=True)
    _, ref = reference.binary_cross_entropy(z64, y64, reduction="none", return_grad=True)
    assert_ulp(grad, ref, bf16, "bce grad", operand_scale=1.0)
    zz, yy = z.reshape(1, 2), np.array([[0.5 - 2.0**-11, 0.5 + 2.0**-11]], f16)
    _, grad = logitkit.cross_entropy(zz, yy, reduction="sum", return_grad=True)
    _, ref = reference.cross_entropy(zz.astype(np.float64), yy.astype(np.float64),
                                     reduction="sum", return_grad=True)
    assert_ulp(grad, ref, bf16, "ce grad", operand_scale=1.0)
    # the other way: a bfloat16 weight past float16's range, of float16 logits
    z = np.array([1.0], f16)
    t = np.array([1.0], f16)
    w = np.array([99840.0], bf16)
    loss = logitkit.binary_cross_entropy(z, t, weight=w, reduction="sum")
    ref = reference.binary_cross_entropy(z.astype(np.float64), t.astype(np.float64),
                                         w.astype(np.float64), reduction="sum")
    assert_ulp(loss, ref, f16, "bce weight")


# A float16 row (found by a search after the fuzzer's entropy case) whose entropy in base
# 0.5 and 2 was 2.05 ulp off on avx512: the float16 entropy in nats (1.05 ulp off there)
# divided by float16(log(base)), rounded three times.
ENTROPY_ROW = [28.375, 36.875, 50.03125, -3.921875, 11.0234375, 0.2489013671875, -25.1875,
               -24.46875, -17.6875, 30.640625, 28.90625, -26.328125, -33.34375, -9.265625,
               -10.4296875, 31.28125, -1.3720703125, -46.90625, 11.4921875, 14.0703125,
               -21.5,
               -4.57421875, 23.234375, 4.9375, 7.03125, 1.7333984375, 21.625, 8.5703125,
               31.265625, -32.09375, -16.3125, 14.6796875, -15.265625, 31.515625, -63.3125,
               19.0, 1.1220703125, 32.65625, 18.21875, 3.822265625, 3.830078125, 14.1328125,
               -1.6455078125, -69.0, 22.0625, -28.015625, -12.984375, -6.85546875,
               13.7890625, 31.6875, 37.15625, 27.953125]


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), BF16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("base", [2, 0.5, 10])
def test_entropy_base_rounds_once(simd_target, dtype, base):
    """Fuzzer: ``--seed 1 --cases 3000 --dtypes float16,bfloat16``, entropy of float16
    logits with ``base=2``, 1.53 ulp off (outside the fuzzer's float16 tolerance, inside
    2 ulp): dividing the 16-bit nats by a 16-bit log(base) rounded three times, up to
    1.9 ulp on random rows and 2.05 on ENTROPY_ROW (avx512).  Fixed in ``entropy``:
    16-bit logits with a base are computed in float32 and rounded once, so the random
    rows (well conditioned: the float32 error is far below an ulp) are within 1 ulp."""
    x = np.array(ENTROPY_ROW).astype(dtype)
    ref = reference.entropy(x.astype(np.float64), -1, base)
    assert_ulp(logitkit.entropy(x, base=base), ref, dtype, f"entropy base {base}")
    rng = np.random.default_rng(7)
    xs = (rng.standard_normal((500, 33)) * 4).astype(dtype)
    ref = reference.entropy(xs.astype(np.float64), -1, base)
    assert_ulp(logitkit.entropy(xs, base=base), ref, dtype, f"entropy base {base}",
               bound=1.0)


# A bfloat16 row of 143 logits (standard normal x 30) whose entropy is 4.67e-7: avx512's
# entropy kernel gave 4.42e-7 (14 ulp; float32 input the same 5% error, inside float32's
# absolute tolerance) while baseline and avx2 were within 0.1 ulp: the maximum's term 1
# was summed with the tail in float lanes. Fixed in lk_entropy_row (log1p(s - 1), the 1s
# counted apart).
ENTROPY_TINY_ROW_HEX = (
    "e9c151411ac2cf4099415b4115c1914115c17ec1c5418dc0a1c19741bec15bc15a41684134c06942"
    "8941cd3d20c22dc00c4259417c402fc29c3f04419d41ac4107425d41bcc187c1ea415f40ffc00cc0"
    "f140d44114c2a9406ac1c241dfc1c14008c2954187400ec18a415dc133c2c1c15dc23dc2cac19641"
    "a8411342dcc054c26f4225c0b641863f12c2964153c1d4c19b42a3c178424bc06441c641e3c19441"
    "4041cbc1904201422d3c1ec232c121c23442fa40ff414cc29641074231c176c21c42174150c146c1"
    "07c2a0411140be4115c1ab408a4124c167c142c19fc1ecc1c7413ec08bc1ea415d416fc25bc097c0"
    "be4277410fc24d41b341f8c17bc193c18c42b941f3c19a41a33ea6c1a441ccc1ab419ac1e741a241"
    "cb4195405b41"
)


def test_bfloat16_tiny_entropy(simd_target):
    """Found by a search after the fuzzer's entropy case: the fuzzer's loss tolerance is
    absolute below 1 (rtol x max(1, |ref|)), as for float32, so it does not see this.
    float32 input of the same row is held to 1e-5 relative."""
    x32 = np.frombuffer(bytes.fromhex(ENTROPY_TINY_ROW_HEX), BF16).astype(np.float32)
    ref32 = reference.entropy(x32.astype(np.float64), -1)
    assert abs(float(logitkit.entropy(x32)) - ref32) <= 1e-5 * abs(ref32)
    x = np.frombuffer(bytes.fromhex(ENTROPY_TINY_ROW_HEX), BF16)
    ref = reference.entropy(x.astype(np.float64), -1)
    assert_ulp(logitkit.entropy(x), ref, BF16, "entropy")
