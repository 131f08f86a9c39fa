"""Regression tests for the 16-bit failures the differential fuzzer found
(``python tests/fuzzing.py --dtypes float16,bfloat16``), in test_half.py's terms: each
result within 2 units in the last place of its dtype of the float64 result.

A test marked ``xfail(strict=True)`` reproduces a kernel (C++) bug that is reported, not
fixed here; it starts to pass (and so fails as XPASS) once the kernels are fixed: then
drop the mark, and the fuzzer's matching acceptance (``fuzzing.ACCEPT_KNOWN_BF16_FLUSH``).
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


@pytest.mark.xfail(strict=True, reason="kernel bug: the exp on shifted arguments flushes "
                   "results below 2**-126 to zero, bfloat16's subnormal range")
@pytest.mark.parametrize("name", ["softmax", "special.softmax", "sigmoid"])
def test_bfloat16_subnormal_probabilities(simd_target, name):
    """Fuzzer: ``--seed 20260101 --case 276 --small --strict-known`` (shrunk: softmax of a
    (2, 14, 3, 3) bfloat16 array along axis -4: 0 where the result is 8.2e-40)."""
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
