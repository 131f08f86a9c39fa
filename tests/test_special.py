"""logitkit.special against scipy.special itself: the drop-in replacement for softmax,
log_softmax, logsumexp, expit and log_expit.

Every test calls both and compares what they return: the type (NumPy scalar or
ndarray), dtype, shape, the positions and signs of inf and NaN, and the finite values
within the rounding of the result dtype. SciPy's own warnings (``inf - inf`` in its
softmax, overflow in its integer ``x - max(x)``) are silenced around the SciPy call only,
with ``quiet``; logitkit's calls run under the project's filterwarnings = error, so they
must not warn.
"""

import inspect
import itertools
import warnings

import numpy as np
import pytest

scipy_special = pytest.importorskip("scipy.special")

from logitkit import special  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error")

LONG = np.dtype(np.longdouble)
# long double with more precision than double (x86: 80-bit; not Windows or macOS arm64)
HAS_LONGDOUBLE = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps

# Relative tolerances: a few units in the last place of each dtype.
RTOL = {
    np.dtype(np.float16): 1e-3,  # 1 ulp (2**-10); float16 is compared against float64 rounded
    np.dtype(np.float32): 1e-6,
    np.dtype(np.float64): 1e-12,
    LONG: 1e-15 if HAS_LONGDOUBLE else 1e-12,
}

REDUCTIONS = ["softmax", "log_softmax", "logsumexp"]
UFUNCS = ["expit", "log_expit"]


def quiet(func, *args, **kwargs):
    """Call a SciPy function with its RuntimeWarnings silenced (for inputs where SciPy
    itself warns: inf - inf, overflow, ...)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(*args, **kwargs)


def assert_matches(actual, expected, *, rtol=None, scale=0.0):
    """``actual`` is what SciPy returned in ``expected``: same type (NumPy scalar or
    ndarray), dtype and shape, inf and NaN in the same places with the same signs, finite
    values within ``rtol`` relative (plus ``rtol * scale`` absolute, for results that are
    differences of values of magnitude ``scale``)."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_matches(a, e, rtol=rtol, scale=scale)
        return
    assert type(actual) is type(expected), (type(actual), type(expected))
    a = np.asarray(actual)
    e = np.asarray(expected)
    assert a.dtype == e.dtype, (a.dtype, e.dtype)
    assert a.shape == e.shape, (a.shape, e.shape)
    if e.dtype.kind in "biu":  # an integer out=
        np.testing.assert_array_equal(a, e)
        return
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg="NaN positions")
    np.testing.assert_array_equal(np.isposinf(a), np.isposinf(e), err_msg="+inf positions")
    np.testing.assert_array_equal(np.isneginf(a), np.isneginf(e), err_msg="-inf positions")
    finite = np.isfinite(e)
    if rtol is None:
        rtol = RTOL[e.dtype]
    work = LONG if e.dtype == LONG else np.float64
    np.testing.assert_allclose(
        a[finite].astype(work), e[finite].astype(work), rtol=rtol, atol=rtol * scale
    )


def scale_of(x):
    """The magnitude of the finite inputs: the absolute error of a max-shifted result."""
    x = np.asarray(x, dtype=np.float64)
    finite = x[np.isfinite(x)]
    return float(np.max(np.abs(finite))) if finite.size else 0.0


def compare(name, *args, **kwargs):
    """Call ``special.<name>`` and ``scipy.special.<name>`` the same way and compare."""
    expected = getattr(scipy_special, name)(*args, **kwargs)
    actual = getattr(special, name)(*args, **kwargs)
    assert_matches(actual, expected, scale=scale_of(args[0]))
    return actual


def compare_quiet(name, *args, **kwargs):
    """As ``compare``, for inputs on which SciPy warns (silenced for SciPy only)."""
    expected = quiet(getattr(scipy_special, name), *args, **kwargs)
    actual = getattr(special, name)(*args, **kwargs)
    assert_matches(actual, expected, scale=scale_of(args[0]))
    return actual


def rand(shape, dtype=np.float64, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def raises_like(name, *args, **kwargs):
    """Both raise, and logitkit's exception is of SciPy's exception's built-in class
    (TypeError or ValueError; SciPy's AttributeError for ``None`` is a TypeError here)."""
    with pytest.raises(Exception) as scipy_err:
        quiet(getattr(scipy_special, name), *args, **kwargs)
    kind = next((k for k in (TypeError, ValueError) if isinstance(scipy_err.value, k)),
                TypeError)
    with pytest.raises(kind) as ours:
        getattr(special, name)(*args, **kwargs)
    return ours


def cast_like(reference, expected):
    """``reference`` in ``expected``'s dtype, a NumPy scalar if ``expected`` is one."""
    value = np.asarray(reference).astype(np.asarray(expected).dtype)
    return value[()] if isinstance(expected, np.generic) else value


# ---------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------


def test_module_exports_the_five_functions():
    assert sorted(special.__all__) == sorted(REDUCTIONS + UFUNCS)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_signature_matches_scipy(name):
    ours = inspect.signature(getattr(special, name))
    theirs = inspect.signature(getattr(scipy_special, name))
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]


@pytest.mark.parametrize("name", UFUNCS)
def test_ufunc_call_signature(name):
    # A ufunc's: x positional only, out positional or keyword, the rest keyword only.
    params = inspect.signature(getattr(special, name)).parameters
    assert list(params) == [
        "x", "out", "where", "casting", "order", "dtype", "subok", "signature"
    ]
    assert params["x"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert params["out"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params["casting"].default == "same_kind" and params["order"].default == "K"


# ---------------------------------------------------------------------------------------
# SciPy's documented examples
# ---------------------------------------------------------------------------------------

DOC_X = np.array([[1, 0.5, 0.2, 3], [1, -1, 7, 3], [2, 12, 13, 3]])


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_softmax_doc_examples(axis):
    m = compare("softmax", DOC_X, axis=axis)
    np.testing.assert_allclose(m.sum(axis=axis), 1.0, rtol=1e-15)


def test_log_softmax_doc_example():
    y = compare("log_softmax", np.array([1000.0, 1.0]))
    np.testing.assert_array_equal(y, [0.0, -999.0])


def test_logsumexp_doc_examples():
    a = np.arange(10)
    assert compare("logsumexp", a) == pytest.approx(np.log(np.sum(np.exp(a))), rel=1e-15)
    b = np.arange(10, 0, -1)
    assert compare("logsumexp", a, b=b) == pytest.approx(9.9170178533034665, rel=1e-15)
    res, sgn = compare("logsumexp", [1, 2], b=[1, -1], return_sign=True)
    assert res == pytest.approx(1.5413248546129181, rel=1e-15) and sgn == -1.0
    # a masked array, by zero weights
    ma = np.ma.array([np.log(2), 2, np.log(3)], mask=[False, True, False])
    assert compare("logsumexp", ma.data, b=(~ma.mask).astype(int)) == pytest.approx(np.log(5))


def test_expit_doc_example():
    compare("expit", [-np.inf, -1.5, 0, 1.5, np.inf])
    np.testing.assert_allclose(
        special.expit([-np.inf, -1.5, 0, 1.5, np.inf]),
        [0.0, 0.18242552, 0.5, 0.81757448, 1.0],
        atol=5e-9,  # printed to 8 decimals
    )


@pytest.mark.parametrize(
    "x", [[-3.0, 0.25, 2.5, 5.0], [-100, -500, -1000], [29, 120, 400]], ids=str
)
def test_log_expit_doc_examples(x):
    compare("log_expit", x)


# ---------------------------------------------------------------------------------------
# values: shapes, axes, layouts, dtypes
# ---------------------------------------------------------------------------------------

AXES_3D = [None, 0, 1, 2, -1, -3, (), (0,), (2,), (0, 1), (1, 2), (2, 0), (-1, 0),
           (0, 1, 2), (2, 1, 0)]


def layouts(x):
    """The same values in C order, Fortran order and as a strided view."""
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    wide[..., ::2] = x
    return {"C": x, "F": np.asfortranarray(x), "strided": wide[..., ::2]}


@pytest.mark.parametrize("axis", AXES_3D, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_axes_of_a_3d_array(simd_target, name, dtype, axis):
    x = rand((3, 4, 5), dtype, seed=1)
    for layout, v in layouts(x).items():
        compare(name, v, axis=axis)
        if name == "logsumexp":
            compare(name, v, axis=axis, keepdims=True)
            compare(name, v, axis=axis, return_sign=True)


@pytest.mark.parametrize("axis", [None, 0, 3, -2, (1, 3), (0, 2, 3), (3, 0), ()], ids=str)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_axes_of_a_4d_array(name, axis):
    x = rand((2, 3, 4, 5), seed=2)
    compare(name, x, axis=axis)
    compare(name, x.transpose(2, 0, 3, 1), axis=axis)  # neither C nor F
    if name == "logsumexp":
        compare(name, x, axis=axis, keepdims=True)


@pytest.mark.parametrize("n", [1, 2, 7, 16, 17, 33, 1000, 2**16], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_row_lengths(simd_target, name, dtype, n):
    # lengths around the vector widths, along the last axis, the first, and all of them
    x = rand((3, n), dtype, seed=n, scale=5.0)
    compare(name, x[0])
    compare(name, x, axis=-1)
    compare(name, x.T, axis=0)
    compare(name, x)


# SciPy's test_gh18295: the tail next to the largest term must survive (logitkit's kernels
# once returned 0.0 for logsumexp([0, -40])); log_softmax's top entry likewise
# (scipy/scipy#19521, where SciPy itself still returns 0).
TINY_TAIL_CASES = [  # (dtype, low): e^low is far below the rounding of 1 in the dtype
    (np.float64, -40.0),
    (np.float32, -20.0),
    (np.longdouble, -50.0),
]


@pytest.mark.parametrize("dtype, low", TINY_TAIL_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("axis", [None, -1, (0, 1)], ids=str)
def test_tiny_tail_next_to_the_largest_term(simd_target, dtype, low, axis):
    x = np.array([[0.0, low, low - 1.0], [low, low, 0.0]], dtype=dtype)
    lse = special.logsumexp(x, axis=axis)
    lsm = special.log_softmax(x, axis=axis)
    ld = x.astype(np.longdouble)
    e = np.where(ld == 0, 0, np.exp(ld))
    if axis is None or axis == (0, 1):
        expected = np.log1p(np.sum(e) + 1)  # two maxima in the whole array: s = 2 + tail
    else:
        expected = np.log1p(np.sum(e, axis=-1))
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(np.asarray(lse, np.longdouble), expected, rtol=rtol, atol=0)
    top = np.asarray(lsm)[x == 0]
    expected_top = -np.broadcast_to(expected if np.ndim(expected) == 0 else
                                    np.asarray(expected)[..., None], x.shape)[x == 0]
    np.testing.assert_allclose(top.astype(np.longdouble), expected_top, rtol=rtol, atol=0)
    assert np.all(top < 0)


def test_scipy_gh18295():
    a = np.array([0.0, -40.0])
    assert_matches(special.logsumexp(a), np.logaddexp(a[0], a[1]), rtol=1e-15)
    assert float(special.log_softmax(a)[0]) == pytest.approx(-np.exp(-40.0), rel=1e-14)
    res, sgn = special.logsumexp(a, return_sign=True)
    assert float(res) == pytest.approx(np.logaddexp(0.0, -40.0), rel=1e-15) and sgn == 1
    assert float(special.logsumexp(a, b=[1.0, 1.0])) == pytest.approx(4.248354255291589e-18,
                                                                      rel=1e-14)
    f = a.astype(np.float32)
    assert special.logsumexp(f).dtype == np.float32
    assert float(special.logsumexp(f)) == pytest.approx(4.248354255291589e-18, rel=1e-6)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_large_logits_do_not_overflow(name):
    compare(name, np.array([[123.0, 456.0, 789.0], [1e300, 1e300, -1e300]]), axis=1)
    compare(name, np.float32([[80.0, 90.0, 100.0], [3e38, 3e38, 1e30]]), axis=1)


@pytest.mark.parametrize("name", REDUCTIONS + UFUNCS)
def test_input_is_not_modified(name):
    x = rand((4, 6), seed=3)
    before = x.copy()
    getattr(special, name)(x)
    np.testing.assert_array_equal(x, before)


ALL_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
              np.int64, np.uint64, np.float16, np.float32, np.float64, np.longdouble]


def small_values(dtype):
    """Values every dtype holds, for which SciPy's integer arithmetic is still right."""
    if np.dtype(dtype).kind == "b":
        return np.array([[True, False, True], [False, False, True]])
    return np.array([[3, 0, 5], [1, 2, 2]], dtype=dtype)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", REDUCTIONS + UFUNCS)
def test_result_dtype_and_values_per_input_dtype(name, dtype):
    x = small_values(dtype)
    ours, theirs = getattr(special, name), getattr(scipy_special, name)
    if name in ("softmax", "log_softmax") and np.dtype(dtype).kind == "b":
        raises_like(name, x)  # SciPy computes x - max(x): no boolean subtract
        return
    # SciPy's unsigned x - max(x) wraps around (and warns): its dtype is still the
    # contract, its values are not; they come from the float64 computation.
    for kwargs in [{}] + ([{"axis": 0}, {"axis": 1}, {"axis": (0, 1)}]
                          if name in REDUCTIONS else []):
        expected = quiet(theirs, x, **kwargs)
        reference = expected if np.dtype(dtype) == LONG else \
            theirs(x.astype(np.float64), **kwargs)
        actual = ours(x, **kwargs)
        assert actual.dtype == expected.dtype
        assert_matches(actual, cast_like(reference, expected))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", REDUCTIONS + UFUNCS)
def test_random_values_per_float_dtype(name, dtype):
    x = rand((5, 40), dtype, seed=4)
    theirs = getattr(scipy_special, name)
    kwargs = {"axis": 1} if name in REDUCTIONS else {}
    if np.dtype(dtype) == np.float16:
        # SciPy computes float16 in float16; logitkit in float32 (for expit: in SciPy's
        # loop, float64 up to SciPy 1.17, float32 from 1.18). The dtype is SciPy's, the
        # values its float64 ones, rounded.
        reference = cast_like(theirs(x.astype(np.float64), **kwargs), theirs(x, **kwargs))
        assert_matches(getattr(special, name)(x, **kwargs), reference, scale=scale_of(x))
    else:
        compare(name, x, **kwargs)


def test_byte_swapped_input():
    x = rand((3, 7), seed=5)
    swapped = x.astype(x.dtype.newbyteorder())
    for name in REDUCTIONS:
        assert_matches(getattr(special, name)(swapped, axis=1),
                       getattr(scipy_special, name)(x, axis=1))
    for name in UFUNCS:
        assert_matches(getattr(special, name)(swapped), getattr(scipy_special, name)(x))


# ---------------------------------------------------------------------------------------
# scalars, 0-d arrays, lists: the type of the result
# ---------------------------------------------------------------------------------------

SCALARS = [3.0, 3, True, np.float64(3.0), np.float32(-2.5), np.float16(1.5), np.int8(4),
           np.array(3.0), np.array(-1.0, dtype=np.float32), np.longdouble(2)]


@pytest.mark.parametrize("x", SCALARS, ids=repr)
@pytest.mark.parametrize("name", REDUCTIONS + UFUNCS)
def test_scalar_and_0d_input(name, x):
    if name in ("softmax", "log_softmax") and np.asarray(x).dtype.kind == "b":
        raises_like(name, x)
        return
    out = compare(name, x)
    assert isinstance(out, np.generic)  # a NumPy scalar, as SciPy returns


@pytest.mark.parametrize("axis", [0, -1, (), (0,), None], ids=str)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_axes_of_0d_input(name, axis):
    # logsumexp treats 0-d input as 1-D (axis=0 is valid); softmax as 0-d (only
    # axis=None and () are)
    x = np.array(1.5)
    try:
        expected = getattr(scipy_special, name)(x, axis=axis)
    except Exception as err:
        with pytest.raises(type(err)):
            getattr(special, name)(x, axis=axis)
        return
    assert_matches(getattr(special, name)(x, axis=axis), expected)


@pytest.mark.parametrize("name", REDUCTIONS + UFUNCS)
def test_lists(name):
    compare(name, [1.0, 2.0, 3.0])
    compare(name, [[1, 2, 3], [4, 5, 7]])
    compare(name, [[1.5, -2.0], [0.25, 3]])


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_of_a_1d_array(name):
    # logsumexp returns a scalar, softmax an array, whatever the axis spelling
    x = rand(6, seed=6)
    for axis in (None, 0, -1, (0,)):
        out = compare(name, x, axis=axis)
        assert isinstance(out, np.generic if name == "logsumexp" else np.ndarray)


# ---------------------------------------------------------------------------------------
# empty arrays
# ---------------------------------------------------------------------------------------

EMPTY_CASES = [((0,), None), ((0,), 0), ((0,), ()), ((0, 3), 1), ((0, 3), 0), ((3, 0), 1),
               ((3, 0), 0), ((3, 0), None), ((0, 0), 1), ((2, 0, 3), (0, 2)),
               ((2, 0, 3), (1,)), ((2, 0, 3), (0, 1))]


@pytest.mark.parametrize("shape, axis", EMPTY_CASES, ids=str)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_empty_arrays(name, shape, axis):
    # softmax raises like numpy.max over an empty axis; logsumexp gives -inf (sign -1)
    x = np.zeros(shape)
    if name == "logsumexp" and (axis == () or axis is None and len(shape) > 1
                                or isinstance(axis, tuple) and len(axis) > 1):
        # SciPy bugs in its empty-input branch (``shape[axis] = 1`` on a shape array):
        # a tuple of 2+ axes (or axis=None on 2+ dimensions) raises IndexError, and
        # axis=() sets every dimension to 1. logitkit returns what a NumPy reduction
        # over those axes would: -inf (sign -1) of the shape without them.
        if axis != ():
            with pytest.raises(IndexError):
                scipy_special.logsumexp(x, axis=axis)
        reduced = np.sum(x, axis=axis, keepdims=True).shape
        for keepdims in (False, True):
            res, sgn = special.logsumexp(x, axis=axis, keepdims=keepdims, return_sign=True)
            expected = np.full(reduced, -np.inf)
            if not keepdims:
                expected = np.squeeze(expected, axis=axis)
            assert_matches(res, expected[()] if expected.ndim == 0 else expected)
            assert_matches(sgn, -np.ones_like(expected)[()] if expected.ndim == 0
                           else -np.ones_like(expected))
        return
    try:
        expected = getattr(scipy_special, name)(x, axis=axis)
    except ValueError:
        with pytest.raises(ValueError, match="zero-size array"):
            getattr(special, name)(x, axis=axis)
        return
    assert_matches(getattr(special, name)(x, axis=axis), expected)
    if name == "logsumexp":
        compare(name, x, axis=axis, keepdims=True)
        compare(name, x, axis=axis, return_sign=True)
        compare(name, x.astype(np.float32), axis=axis, b=np.ones(shape), return_sign=True)


def test_empty_ufunc_input():
    for name in UFUNCS:
        compare(name, [])
        compare(name, np.zeros((2, 0), dtype=np.float32))


# ---------------------------------------------------------------------------------------
# special values
# ---------------------------------------------------------------------------------------

SPECIAL = [0.5, 2.0, -np.inf, np.inf, np.nan]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.longdouble],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_every_row_of_special_values(simd_target, name, dtype):
    # every row of three from {0.5, 2, -inf, inf, nan}: SciPy's inf/NaN results exactly
    rows = np.array(list(itertools.product(SPECIAL, repeat=3)), dtype=dtype)
    compare_quiet(name, rows, axis=1)
    compare_quiet(name, rows.T, axis=0)
    if name == "logsumexp":
        compare_quiet(name, rows, axis=1, return_sign=True)
        compare_quiet(name, rows, axis=1, keepdims=True)
    for row in rows[::7]:
        compare_quiet(name, row)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_float16_special_values(name):
    # the positions and signs of inf and NaN are those of SciPy's float16 computation;
    # the finite values its float64 ones, rounded (SciPy computes float16 in float16)
    rows = np.array(list(itertools.product(SPECIAL, repeat=3)), dtype=np.float16)
    kwargs = [{"axis": 1}] + ([{"axis": 1, "return_sign": True}] if name == "logsumexp"
                              else [])
    for kw in kwargs:
        theirs = getattr(scipy_special, name)
        expected = quiet(theirs, rows, **kw)
        reference = quiet(theirs, rows.astype(np.float64), **kw)
        if isinstance(expected, tuple):
            reference = tuple(cast_like(r, e) for r, e in zip(reference, expected))
        else:
            reference = cast_like(reference, expected)
        actual = getattr(special, name)(rows, **kw)
        assert_matches(actual, reference)
        for a, e in zip(actual if isinstance(actual, tuple) else [actual],
                        expected if isinstance(expected, tuple) else [expected]):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(e))
            np.testing.assert_array_equal(np.isinf(a) * np.sign(a), np.isinf(e) * np.sign(e))


@pytest.mark.parametrize("name", REDUCTIONS)
def test_special_values_over_several_axes(name):
    x = np.array(list(itertools.product(SPECIAL, repeat=3))).reshape(5, 5, 5, 3)
    for axis in [(1, 3), (0, 3), (3, 2), ()]:
        compare_quiet(name, x, axis=axis)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_rows_with_plus_inf(dtype):
    # SciPy shifts by 0 when the maximum is not finite: inf - inf is NaN at the +inf
    # entries and everything else is -inf (logitkit's kernel makes the whole row NaN)
    x = np.array([[1.0, np.inf, -np.inf], [np.inf, np.inf, 0.0], [np.inf, np.nan, 0.0],
                  [0.0, 1.0, 2.0]], dtype=dtype)
    out = compare_quiet("log_softmax", x, axis=1)
    np.testing.assert_array_equal(out[0], [-np.inf, np.nan, -np.inf])
    compare_quiet("log_softmax", x, axis=None)
    compare_quiet("log_softmax", x.astype(np.float16), axis=1)


SPECIAL_A = [1.0, 1000.0, -np.inf, np.inf, np.nan]  # 1000: exp overflows
SPECIAL_B = [0.0, 1.0, -1.0, 2.0, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("return_sign", [False, True])
def test_weighted_special_values(return_sign):
    # every pair of (a, b) terms: zero weights, weights at inf, NaN and overflowing a
    terms = list(itertools.product(SPECIAL_A, SPECIAL_B))
    pairs = list(itertools.product(terms, repeat=2))
    a = np.array([[t[0][0], t[1][0]] for t in pairs])
    b = np.array([[t[0][1], t[1][1]] for t in pairs])
    compare_quiet("logsumexp", a, axis=1, b=b, return_sign=return_sign)
    compare_quiet("logsumexp", a.T, axis=0, b=b.T, return_sign=return_sign)
    compare_quiet("logsumexp", a.astype(np.float32), axis=1, b=b.astype(np.float32),
                  return_sign=return_sign)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.longdouble],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", UFUNCS)
def test_ufunc_special_values(name, dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 20.0, -20.0, 40.0,
                  -40.0, 80.0, -80.0, 700.0, -700.0, 1000.0, -1000.0]).astype(dtype)
    compare(name, x)


# ---------------------------------------------------------------------------------------
# logsumexp: weights
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1), ()], ids=str)
def test_weights(axis):
    a = rand((4, 6), seed=7)
    b = np.random.default_rng(8).uniform(0.1, 3.0, (4, 6))
    compare("logsumexp", a, axis=axis, b=b)
    compare("logsumexp", a, axis=axis, b=b, keepdims=True)
    compare("logsumexp", a, axis=axis, b=b, return_sign=True)
    compare("logsumexp", a.astype(np.float32), axis=axis, b=b.astype(np.float32))


@pytest.mark.parametrize("return_sign", [False, True])
def test_negative_and_zero_weights(return_sign):
    a = rand((6, 5), seed=9)
    b = np.random.default_rng(10).integers(-2, 3, (6, 5)).astype(float)
    b[0] = 0.0  # all zero: -inf, sign 0
    b[1] = [1, -1, 0, 0, 0]
    a[1, :2] = 0.7  # cancels exactly: -inf, sign 0
    b[2] = -1.0  # all negative: NaN, or sign -1
    compare("logsumexp", a, axis=1, b=b, return_sign=return_sign)
    compare("logsumexp", a, axis=0, b=b, return_sign=return_sign)
    compare("logsumexp", a, b=b, return_sign=return_sign)


def test_weights_ignore_masked_inf_and_nan():
    # a weight of 0 removes its term even where a is inf or NaN
    a = np.array([[np.inf, 1.0], [np.nan, 1.0], [-np.inf, 2.0], [np.inf, np.inf]])
    b = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    out = compare_quiet("logsumexp", a, axis=1, b=b)
    np.testing.assert_array_equal(out[:3], [1.0, 1.0, -np.inf])
    compare_quiet("logsumexp", a, axis=1, b=b, return_sign=True)


def test_weight_examples_with_signs():
    for a, b in [([1, 2], [1, -1]), ([1, 1], [1, -1]), ([1, 2], [0, 0]),
                 ([1, 2, 3], [-1, -1, 1]), ([0, 0], [0.5, 0.5]), ([5, 1], [-1e-300, 1])]:
        compare("logsumexp", a, b=b)
        compare("logsumexp", a, b=b, return_sign=True)


@pytest.mark.parametrize(
    "a_shape, b_shape, axis",
    [((4, 3), (), None), ((4, 3), (3,), 1), ((4, 3), (4, 1), 0), ((4, 3), (1, 3), None),
     ((3,), (4, 3), 0), ((3,), (4, 3), None), ((), (5,), None), ((4, 1), (1, 3), (0, 1)),
     ((2, 3), (4, 2, 3), 0), ((4, 1, 3), (4, 3), 1)],
    ids=str,
)
def test_weights_broadcast(a_shape, b_shape, axis):
    # a and b broadcast to their common shape, either way
    a = rand(a_shape, seed=11)
    b = np.random.default_rng(12).uniform(-1.0, 2.0, b_shape)
    for keepdims in (False, True):
        compare("logsumexp", a, axis=axis, b=b, keepdims=keepdims)
        compare("logsumexp", a, axis=axis, b=b, keepdims=keepdims, return_sign=True)


def test_weights_that_do_not_broadcast():
    raises_like("logsumexp", np.ones((2, 3)), b=np.ones((3, 3)), axis=0)


@pytest.mark.parametrize(
    "a, b",
    [(np.float32([1, 2]), np.float64([1, 2])), (np.float32([1, 2]), [1, 2]),
     (np.float32([1, 2]), 2), (np.float32([1, 2]), 2.0), (np.float32([1, 2]), np.int8(2)),
     (np.float32([1, 2]), True), (np.float16([1, 2]), np.int8([2, 3])),
     (np.float16([1, 2]), np.float32([2, 3])), (np.int8([1, 2]), np.float32([2, 3])),
     (np.int8([1, 2]), np.float16([2, 3])), ([1, 2], np.float32([2, 3])),
     (2.5, np.float32([2, 3])), (np.int64([1, 2]), np.int64([2, 3])),
     (np.float16([20.0]), [0.0]), (np.float16([20.0]), np.float16([0.0])),
     (np.longdouble([1, 2]), [1, 2]), (np.float32([1, 2]), np.longdouble(2))],
    ids=lambda v: f"{type(v).__name__}:{np.asarray(v).dtype}",
)
def test_weights_promote_like_scipy(a, b):
    compare_quiet("logsumexp", a, b=b)
    compare_quiet("logsumexp", a, b=b, return_sign=True)


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------

COMPLEX_INPUTS = [np.array([1 + 1j, 2]), [1j, 2.0], 1j, np.complex64(1), np.array(1j)]


@pytest.mark.parametrize("x", COMPLEX_INPUTS, ids=repr)
@pytest.mark.parametrize("name", REDUCTIONS + UFUNCS)
def test_complex_input_is_rejected(name, x):
    with pytest.raises(TypeError, match="complex"):
        getattr(special, name)(x)


def test_complex_weights_are_rejected():
    with pytest.raises(TypeError, match="complex"):
        special.logsumexp([1.0, 2.0], b=[1 + 0j, 2])
    with pytest.raises(TypeError, match="complex"):
        special.logsumexp(np.float32([1.0, 2.0]), b=1j)


@pytest.mark.parametrize(
    "axis", [2, -3, (0, 0), (1, -1), (0, 5), 1.0, [0, 1], "0"], ids=repr
)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_bad_axes(name, axis):
    raises_like(name, np.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_integer_like_axes(name):
    x = rand((2, 3), seed=13)
    compare(name, x, axis=np.int64(1))
    compare(name, x, axis=(np.int32(0), -1))


@pytest.mark.parametrize("x", [["a", "b"], np.array([1, 2], dtype=object), None],
                         ids=repr)
@pytest.mark.parametrize("name", REDUCTIONS + UFUNCS)
def test_non_numeric_input(name, x):
    raises_like(name, x)


# ---------------------------------------------------------------------------------------
# expit and log_expit: the ufunc call
# ---------------------------------------------------------------------------------------


def both(name, *args, **kwargs):
    """Run ``name`` of both modules on copies of every array argument; return both
    results and the (copied) arrays each one wrote to."""
    def copies():
        a = [v.copy() if isinstance(v, np.ndarray) else v for v in args]
        k = {key: (v.copy() if isinstance(v, np.ndarray) else
                   tuple(o.copy() for o in v) if isinstance(v, tuple) else v)
             for key, v in kwargs.items()}
        return a, k

    a1, k1 = copies()
    a2, k2 = copies()
    expected = getattr(scipy_special, name)(*a1, **k1)
    actual = getattr(special, name)(*a2, **k2)
    return actual, expected, (a2, k2), (a1, k1)


@pytest.mark.parametrize("name", UFUNCS)
@pytest.mark.parametrize("out_dtype", [np.float64, np.float32, np.float16, np.complex128,
                                       np.longdouble], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("x_dtype", [np.float64, np.float32, np.int32, np.float16],
                         ids=lambda d: np.dtype(d).name)
def test_out_of_any_dtype(name, x_dtype, out_dtype):
    x = rand((3, 4), x_dtype, seed=14) if np.dtype(x_dtype).kind == "f" else \
        np.arange(-6, 6, dtype=x_dtype).reshape(3, 4)
    theirs = np.zeros((3, 4), dtype=out_dtype)
    ours = np.zeros((3, 4), dtype=out_dtype)
    r1 = getattr(scipy_special, name)(x, out=theirs)
    r2 = getattr(special, name)(x, out=ours)
    assert r1 is theirs and r2 is ours
    # computed in the loop dtype (float32 for float32 input), then cast to out's
    loop = np.result_type(getattr(scipy_special, name)(x[:1]).dtype)
    rtol = max(RTOL[loop], RTOL.get(np.dtype(out_dtype), 0.0))
    assert_matches(ours.real, theirs.real, rtol=rtol)
    np.testing.assert_array_equal(ours.imag, 0)


@pytest.mark.parametrize("name", UFUNCS)
def test_out_spellings(name):
    x = rand(7, seed=15)
    for spelling in ("positional", "keyword", "tuple"):
        theirs, ours = np.empty(7), np.empty(7)
        if spelling == "positional":
            r1, r2 = getattr(scipy_special, name)(x, theirs), getattr(special, name)(x, ours)
        elif spelling == "keyword":
            r1 = getattr(scipy_special, name)(x, out=theirs)
            r2 = getattr(special, name)(x, out=ours)
        else:
            r1 = getattr(scipy_special, name)(x, out=(theirs,))
            r2 = getattr(special, name)(x, out=(ours,))
        assert r1 is theirs and r2 is ours
        assert_matches(ours, theirs)
    # out=None and out=(None,) allocate; out=... returns an array even for 0-d input
    assert_matches(getattr(special, name)(x, out=None), getattr(scipy_special, name)(x))
    assert_matches(getattr(special, name)(x, out=(None,)), getattr(scipy_special, name)(x))
    for v in (x, np.array(0.3), np.float32(0.3)):
        assert_matches(getattr(special, name)(v, out=...),
                       getattr(scipy_special, name)(v, out=...))


@pytest.mark.parametrize("name", UFUNCS)
def test_out_0d(name):
    theirs, ours = np.zeros(()), np.zeros(())
    r1 = getattr(scipy_special, name)(1.25, out=theirs)
    r2 = getattr(special, name)(1.25, out=ours)
    assert r1 is theirs and r2 is ours
    assert_matches(ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", UFUNCS)
def test_in_place_and_overlapping_out(name, dtype):
    x = rand(50, dtype, seed=16)
    expected = getattr(scipy_special, name)(x)
    y = x.copy()
    assert getattr(special, name)(y, out=y) is y
    assert_matches(y, expected)
    y = x.copy()
    assert getattr(special, name)(y, y) is y
    assert_matches(y, expected)
    # out overlaps the input shifted by one, and reversed
    for view in (lambda v: v[1:], lambda v: v[::-1]):
        buf1, buf2 = np.concatenate([x, [0]]).astype(dtype), np.concatenate([x, [0]]).astype(dtype)
        getattr(scipy_special, name)(buf1[:-1], out=view(buf1)[: x.size])
        getattr(special, name)(buf2[:-1], out=view(buf2)[: x.size])
        assert_matches(buf2, buf1)


@pytest.mark.parametrize("name", UFUNCS)
def test_out_layouts(name):
    x = rand((5, 6), seed=17)
    for out_maker in (np.zeros_like, lambda v: np.asfortranarray(np.zeros_like(v)),
                      lambda v: np.zeros((5, 12))[:, ::2]):
        for xin in (x, np.asfortranarray(x), x[:, ::-1]):
            theirs, ours = out_maker(x), out_maker(x)
            getattr(scipy_special, name)(xin, out=theirs)
            getattr(special, name)(xin, out=ours)
            assert_matches(ours, theirs)


@pytest.mark.parametrize("name", UFUNCS)
def test_result_layout(name):
    # order='K' (the default) gives the input's memory layout, as a ufunc does
    base = rand((3, 4, 5), seed=21)
    for x in (base, np.asfortranarray(base), base.transpose(1, 0, 2), base[:, ::-1, ::2],
              base.astype(np.float32).transpose(2, 0, 1), np.broadcast_to(base[0], (3, 4, 5)),
              np.broadcast_to(base[:, :, :1], (3, 4, 5)).transpose(2, 1, 0),
              base[::2, :, ::-2].transpose(1, 2, 0), np.zeros((3, 0, 2)).transpose(2, 0, 1),
              base.astype(np.int16)[:, ::2], base.astype(np.longdouble).T):
        for order in ("K", "A", "C", "F"):
            actual = getattr(special, name)(x, order=order)
            expected = getattr(scipy_special, name)(x, order=order)
            assert_matches(actual, expected)
            assert actual.strides == expected.strides, (order, x.strides)


@pytest.mark.parametrize("name", UFUNCS)
def test_out_broadcasting(name):
    # x broadcasts to out's shape; out never broadcasts to x's
    x = rand(4, seed=18)
    actual, expected, _, _ = both(name, x, out=np.zeros((3, 4)))
    assert_matches(actual, expected)
    raises_like(name, x, out=np.zeros(1))
    raises_like(name, x, out=np.zeros(3))
    raises_like(name, np.ones((3, 4)), out=np.zeros(4))


WHERE_CASES = [
    ((3, 4), (3, 4), [[True, False, True, False]] * 3),
    ((3, 4), (3, 4), [True, False, True, False]),
    ((3, 4), (3, 4), [[True], [False], [True]]),
    ((3, 4), (3, 4), False),
    ((3, 4), (3, 4), True),
    ((), (2, 4), [True, False, True, False]),
    ((4,), (3, 4), [[True], [False], [True]]),
]


@pytest.mark.parametrize("x_shape, out_shape, where", WHERE_CASES, ids=str)
@pytest.mark.parametrize("name", UFUNCS)
def test_where(name, x_shape, out_shape, where):
    # NumPy's semantics, as np.exp follows them: out keeps its values where `where` is
    # False, all of x, where and out broadcast. SciPy 1.17.1's own ufuncs get `where`
    # wrong (values land in the wrong places, and the process can crash later: fixed
    # by scipy/scipy#25127), so SciPy is called without `where` and the mask applied.
    x = rand(x_shape, seed=19)
    full = np.broadcast_to(getattr(scipy_special, name)(x), out_shape)
    expected = np.where(where, full, 7.0)
    out = np.full(out_shape, 7.0)
    assert getattr(special, name)(x, out=out, where=where) is out
    assert_matches(out, expected)
    # np.exp agrees on the semantics
    out = np.full(out_shape, 7.0)
    np.exp(x, out=out, where=where)
    np.testing.assert_array_equal(out == 7.0, np.broadcast_to(~np.asarray(where), out_shape))


@pytest.mark.parametrize("name", UFUNCS)
def test_where_without_out(name):
    # the result is uninitialized where False (NumPy warns about it; logitkit does not)
    x = rand((3, 4), seed=20)
    mask = np.array([True, False, True, False])
    actual = getattr(special, name)(x, where=mask)
    assert type(actual) is np.ndarray and actual.shape == (3, 4)
    assert_matches(actual[:, mask], getattr(scipy_special, name)(x)[:, mask])
    actual = getattr(special, name)(0.5, where=np.ones((2, 3), bool))
    assert_matches(actual, np.full((2, 3), getattr(scipy_special, name)(0.5)))


@pytest.mark.parametrize("name", UFUNCS)
@pytest.mark.parametrize(
    "kwargs",
    [{"dtype": np.float32}, {"dtype": "f"}, {"dtype": float}, {"dtype": np.longdouble},
     {"signature": "f->f"}, {"signature": "d->d"}, {"signature": ("f", None)},
     {"signature": (None, "f")}, {"signature": "g->g"}, {"signature": (None, None)},
     {"casting": "unsafe"},
     {"casting": "safe"}, {"order": "C"}, {"order": "F"}, {"order": "A"},
     {"subok": False}],
    ids=repr,
)
@pytest.mark.parametrize("x_dtype", [np.float64, np.float32, np.float16, np.int8, np.int32],
                         ids=lambda d: np.dtype(d).name)
def test_ufunc_keywords(name, kwargs, x_dtype):
    x = np.asfortranarray((np.arange(12).reshape(3, 4) - 6).astype(x_dtype))
    try:
        expected = getattr(scipy_special, name)(x, **kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            getattr(special, name)(x, **kwargs)
        return
    actual = getattr(special, name)(x, **kwargs)
    assert_matches(actual, expected)
    assert actual.flags.c_contiguous == expected.flags.c_contiguous
    assert actual.flags.f_contiguous == expected.flags.f_contiguous


@pytest.mark.parametrize("name", UFUNCS)
@pytest.mark.parametrize(
    "kwargs",
    [{"dtype": np.float16}, {"dtype": np.int64}, {"dtype": np.float32, "casting": "safe"},
     {"out": np.zeros(2, int)}, {"out": np.zeros(2, np.float32), "casting": "safe"},
     {"out": np.zeros(2, np.int64), "casting": "no"}, {"casting": "bogus"},
     {"order": "Q"}, {"foo": 1}, {"out": [0.0, 0.0]}, {"out": (np.zeros(2), np.zeros(2))},
     {"dtype": np.float32, "signature": "f->f"}, {"signature": "g"}, {"signature": "dd"},
     {"signature": "d->"}, {"signature": ("d",)}, {"signature": ("d", "d", "d")},
     {"signature": "i->i"}, {"signature": ("d", "f")}, {"signature": np.float64},
     {"signature": "x->x"}],
    ids=repr,
)
def test_ufunc_errors(name, kwargs):
    raises_like(name, np.array([1.0, 2.0]), **kwargs)


@pytest.mark.parametrize("name", UFUNCS)
def test_ufunc_other_errors(name):
    read_only = np.zeros(2)
    read_only.flags.writeable = False
    raises_like(name, np.array([1.0, 2.0]), out=read_only)
    with pytest.raises(TypeError):
        getattr(special, name)(x=np.ones(2))  # positional only
    with pytest.raises(TypeError):
        getattr(special, name)(np.ones(2), None, None)
    raises_like(name, 2**70)  # an object array: no loop
    raises_like(name, np.int32([1]), dtype=np.float32, casting="safe")


@pytest.mark.parametrize("name", UFUNCS)
def test_unsafe_cast_to_integer_out(name):
    actual, expected, _, _ = both(name, np.array([-3.0, 2.0]), out=np.zeros(2, np.int64),
                                  casting="unsafe")
    assert_matches(actual, expected)


# ---------------------------------------------------------------------------------------
# known differences in logitkit's core
# ---------------------------------------------------------------------------------------
# logitkit's exp flushes results below the smallest normal number to 0 (documented in
# csrc/logitkit/exp.inl: absolute error < 1.2e-38 / 2.3e-308) in softmax; SciPy returns
# the subnormal number. Tested as that contract: exactly 0 where SciPy is subnormal.
# (log_expit is not flushed: test_log_expit_subnormal_results.)

SUBNORMAL_CASES = [
    ("softmax", np.array([0.0, -720.0, -740.0, -700.0])),
    ("softmax", np.float32([0.0, -100.0, -103.0, -80.0])),
    ("log_softmax", np.array([0.0, -720.0])),  # no flush: the log is taken first
    ("expit", np.array([-710.0, -745.0])),  # SciPy's 1/(1 + exp(710)) is 0 as well
]


@pytest.mark.parametrize("name, x", SUBNORMAL_CASES, ids=lambda v: str(v))
def test_subnormal_results_are_flushed_to_zero(name, x):
    actual = getattr(special, name)(x)
    expected = getattr(scipy_special, name)(x)
    tiny = np.finfo(x.dtype).tiny
    subnormal = (expected != 0) & (np.abs(expected) < tiny)
    np.testing.assert_array_equal(actual[subnormal], 0)
    assert_matches(actual[~subnormal], expected[~subnormal])


# log_expit is not flushed: -exp(-x) down to the smallest subnormal, as SciPy (its test
# test_basic_float64 checks 710, 725 and 735 to rtol 1e-15, i.e. exactly).
@pytest.mark.parametrize("dtype, lo, hi", [(np.float64, 700.0, 746.0), (np.float32, 80.0, 104.0)],
                         ids=["float64", "float32"])
def test_log_expit_subnormal_results(simd_target, dtype, lo, hi):
    x = np.linspace(lo, hi, 4001).astype(dtype)
    actual = special.log_expit(x)
    expected = -np.log1p(np.exp(-x.astype(np.longdouble)))
    step = np.finfo(dtype).smallest_subnormal
    assert np.all(actual[expected.astype(dtype) != 0] < 0)
    # subnormal results within one unit of the grid (float32: computed in double, exact)
    sub = np.abs(expected) < np.finfo(dtype).smallest_normal
    units = np.abs(actual.astype(np.longdouble) - expected)[sub] / np.longdouble(step)
    assert sub.sum() > 100 and float(units.max()) <= (1.0 if dtype == np.float64 else 0.5)
    if dtype == np.float64:
        scipy_x = np.array([710.0, 725.0, 735.0])
        np.testing.assert_array_equal(special.log_expit(scipy_x),
                                      [-4.47628622567513e-309, -1.36930634e-315, -6.217e-320])


# expit and log_expit follow the installed SciPy's loops (SciPy 1.18 lists float32 first:
# float16, booleans and 8/16-bit integers give float32 there, float64 before).
def test_ufunc_loops_are_the_installed_scipys():
    from logitkit.special import _ufunc_loops

    assert [d.char for d in _ufunc_loops()] == [t[0] for t in scipy_special.expit.types]
    assert [t[0] for t in scipy_special.log_expit.types] == [t[0] for t in scipy_special.expit.types]


@pytest.mark.parametrize(
    "version, first", [("1.17.1", "d"), ("1.18.0", "f"), ("1.19.0.dev0+123.abc", "f"), (None, "f")]
)
def test_ufunc_loops_without_scipy_imported(monkeypatch, version, first):
    # from SciPy's version number when it is not imported; without SciPy: the newest rules
    import importlib.metadata
    import sys

    from logitkit import special as lk_special

    def fake_version(name):
        if version is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return version

    monkeypatch.delitem(sys.modules, "scipy.special")
    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    monkeypatch.setattr(lk_special, "_ufunc_loops_found", None)  # restored afterwards
    assert lk_special._ufunc_loops()[0].char == first
    expected = np.float64 if first == "d" else np.float32
    assert lk_special.expit(np.int8([1, 2])).dtype == expected
    assert lk_special.log_expit(np.float16(1.0)).dtype == expected
    assert lk_special.expit(np.int32([1])).dtype == np.float64


# Casting huge float64 input to a float32 loop (dtype=, signature=, out=): logitkit warns
# exactly where the installed SciPy does (both SciPy 1.17 and 1.18 with NumPy 2.4/2.5 warn
# "overflow encountered in cast" for dtype="float32"), and the values agree.
CAST_CASES = [
    ({"dtype": "float32"}, None),
    ({"signature": "f->f"}, None),
    ({"dtype": np.float32, "casting": "unsafe"}, None),
    ({"casting": "unsafe"}, np.float32),
    ({}, np.float32),
]


@pytest.mark.parametrize("kwargs, out_dtype", CAST_CASES, ids=str)
@pytest.mark.parametrize("name", UFUNCS)
def test_huge_input_cast_to_float32_warns_as_scipy(name, kwargs, out_dtype):
    x = np.array([1e300, -1e300, 1e39, 3.0, -3.0])

    def run(func):
        kw = dict(kwargs)
        if out_dtype is not None:
            kw["out"] = np.zeros(x.shape, out_dtype)
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
            warnings.simplefilter("always")
            try:
                result = func(x, **kw)
            except TypeError as e:
                return type(e), []
        return result, sorted({w.category.__name__ for w in caught})

    expected, expected_warnings = run(getattr(scipy_special, name))
    actual, actual_warnings = run(getattr(special, name))
    assert actual_warnings == expected_warnings
    if isinstance(expected, type):
        assert actual is expected
    else:
        assert_matches(actual, expected)


@pytest.mark.parametrize(
    "x", [np.float64(np.inf), np.float64(1000.0), np.float32(np.inf), np.float32(200.0)],
    ids=repr,
)
def test_log_expit_sign_of_zero(x):
    actual, expected = special.log_expit(x), scipy_special.log_expit(x)
    assert expected == 0 and np.signbit(expected)
    assert actual == 0 and np.signbit(actual)
