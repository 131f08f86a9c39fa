"""A short seeded run of the differential fuzzer (tests/fuzzing.py) on every SIMD target.

The long runs are ``python tests/fuzzing.py --seed S --cases 100000 --subprocess``
(see CONTRIBUTING.md); this one keeps the suite honest in a few seconds: the same cases
on every target, small arrays (rows still cover every vector tail up to 70 classes),
every function, dtype, layout, option and aliasing pattern the generator knows.
A failure message holds, for each distinct failure, a shrunk case with a self-contained
reproduction and the ``--replay`` command line.
"""

import io

import pytest

import fuzzing

SEED = 20260101
CASES = 400


def test_fuzz_short_run(simd_target):
    failures = fuzzing.fuzz(SEED, 0, CASES, targets=[simd_target], small=True)
    if failures:
        text = io.StringIO()
        for f in failures:
            fuzzing.report(f, file=text)
        summary = "\n".join(f"  [{f.kind}] {f.func}: {f.what} x{f.count} "
                            f"(case {f.index})" for f in failures)
        pytest.fail(f"{len(failures)} distinct fuzzing failure(s) on {simd_target}:\n"
                    f"{summary}\n{text.getvalue()}", pytrace=False)
