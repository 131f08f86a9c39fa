#!/usr/bin/env python3
"""Coverage-guided fuzzing of logitkit with atheris (libFuzzer for Python).

The fuzz bytes are decoded into a case by the generator of ``tests/fuzzing.py``: the
first byte picks the SIMD target, the rest drive every choice of ``generate_spec``
(function, shape, axis, dtype, layout, values, options, aliasing, bad input) through
``ByteSource``, one or two bytes per choice, so that a mutation of a byte changes one
choice and libFuzzer's coverage feedback (of logitkit's Python code, instrumented below,
and of the extension if it was built with ``-fsanitize=fuzzer-no-link``) can steer the
search.  The case is then run with exactly the checks of ``tests/fuzzing.py``
(reference values, aliasing, unmodified inputs, warnings, exception types); any failure
raises, and libFuzzer saves the input as ``crash-<sha1>``.

    pip install atheris
    python fuzz/atheris_logitkit.py -max_total_time=600 fuzz/corpus
    python fuzz/atheris_logitkit.py crash-<sha1>          # re-run one saved input

Replaying a saved input prints the failure report, including the case's spec (for
``python tests/fuzzing.py --replay '<spec>'``) and a self-contained reproduction.
"""

import io
import os
import sys

import atheris

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

with atheris.instrument_imports(include=["logitkit"]):
    import logitkit  # noqa: F401

import numpy as np  # noqa: E402

import fuzzing  # noqa: E402

TARGETS = list(logitkit.capabilities()["supported"])


class ByteSource:
    """The part of numpy.random.Generator that ``fuzzing.generate_spec`` uses, with
    every draw read from the fuzz bytes (zeros once they run out)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _u16(self):
        chunk = self.data[self.pos:self.pos + 2]
        self.pos += 2
        return int.from_bytes(chunk.ljust(2, b"\0"), "little")

    def random(self, size=None):
        if size is not None:
            return np.array([self.random() for _ in range(int(np.prod(size)))]).reshape(size)
        return self._u16() / 65536.0

    def integers(self, low, high=None, size=None):
        if high is None:
            low, high = 0, low
        span = int(high) - int(low)
        if size is not None:
            return np.array([self.integers(low, high) for _ in range(int(np.prod(size)))])
        if span <= 1:
            return int(low)
        if span > 65536:  # seeds: four bytes
            return int(low) + (self._u16() << 16 | self._u16()) % span
        return int(low) + self._u16() % span

    def choice(self, a, size=None, replace=True, p=None):
        items = list(range(a)) if isinstance(a, (int, np.integer)) else list(a)
        if size is not None:
            pool = list(items)
            out = []
            for _ in range(int(size)):
                k = self.integers(len(pool))
                out.append(pool[k])
                if not replace:
                    pool.pop(k)
            return np.array(out)
        if p is not None:
            u = self.random()
            acc = 0.0
            for item, w in zip(items, p):
                acc += w
                if u < acc:
                    return item
            return items[-1]
        return items[self.integers(len(items))]


def case_from_bytes(data):
    """(SIMD target, spec) decoded from the fuzz input."""
    data = bytes(data)
    target = TARGETS[data[0] % len(TARGETS)] if data else None
    spec = fuzzing.generate_spec(ByteSource(data[1:]), small=len(data) < 64)
    return target, spec


def TestOneInput(data):
    target, spec = case_from_bytes(data)
    failures = fuzzing._run_on_target(spec, target)
    if failures:
        text = io.StringIO()
        for f in failures:
            fuzzing.report(f, file=text)
        raise AssertionError(f"{len(failures)} failure(s) on target {target}:\n"
                             + text.getvalue())


def main():
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
