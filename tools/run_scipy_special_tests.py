"""Run SciPy's own tests of softmax, log_softmax, logsumexp, expit and log_expit against
logitkit.special, and report.

    python tools/run_scipy_special_tests.py [--from-wheel] [-- PYTEST_ARGS...]

The test files are those of the installed SciPy (scipy/special/tests/test_logsumexp.py
and test_logit.py), so they match its version: by default the copies installed with
SciPy; with --from-wheel (or when the installation has no tests) they are taken from
the wheel of the same version, fetched with ``pip download --no-deps scipy==VERSION``.
They run in a temporary directory with SciPy's conftest.py as a plugin (its ``xp``
fixture and markers) and a small plugin that replaces the five functions in
``scipy.special`` by logitkit.special's before the test modules import them. Only
those five are replaced: tests of logit, and SciPy-internal helpers such as
``_wrap_radians``, still exercise SciPy itself, and are left out (``TestLogit`` and
``test_wrap_radians``).

Some SciPy tests are expected to fail against logitkit.special by design (see its
module docstring): complex input raises TypeError, and only NumPy arrays are returned.
The report prints every failure with its first error line so that nothing is hidden;
it exits 0 whatever the result (it reports, it is not a CI gate).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FILES = ("test_logsumexp.py", "test_logit.py")
DESELECT = ("TestLogit", "test_wrap_radians")  # SciPy's own functions, not logitkit's

PLUGIN = '''
"""Replace scipy.special's five functions by logitkit.special's (loaded before the tests)."""
import scipy.special
from scipy._lib import _array_api

import logitkit.special as lk

_table = _array_api.xp_capabilities_table
for _name in ("softmax", "log_softmax", "logsumexp", "expit", "log_expit"):
    _original = getattr(scipy.special, _name)
    _replacement = getattr(lk, _name)
    if _original in _table:  # make_xp_test_case looks the function up here
        _table[_replacement] = _table[_original]
    setattr(scipy.special, _name, _replacement)
'''


def _scipy_version_and_dir() -> tuple[str, Path]:
    import scipy

    return scipy.__version__, Path(scipy.__file__).resolve().parent


def _files_from_wheel(version: str, dest: Path) -> None:
    download = dest / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         f"scipy=={version}", "-d", str(download)],
        check=True,
    )
    wheel = glob.glob(str(download / "scipy-*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        for name in FILES:
            (dest / name).write_bytes(z.read(f"scipy/special/tests/{name}"))


# Failures that logitkit.special has by design (its module docstring), by their message.
BY_DESIGN = {
    "complex input is not supported": "complex input (logitkit.special is real-only)",
}


def _report(xml: Path, output: str) -> None:
    import xml.etree.ElementTree as ET

    if not xml.exists():
        print(output)
        print("SUMMARY: pytest wrote no report")
        return
    passed = 0
    skipped = 0
    groups: dict[str, list[str]] = {}
    other: list[tuple[str, str]] = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            if case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
            continue
        message = (problem.get("message") or "") + "\n" + (problem.text or "")
        reason = next((r for key, r in BY_DESIGN.items() if key in message), None)
        if reason is None:
            details = [ln.strip() for ln in (problem.text or "").splitlines() if ln.startswith("E ")]
            other.append((name, " | ".join(details[:4])[:300] or (problem.get("message") or "")))
        else:
            groups.setdefault(reason, []).append(name)
    failed = sum(len(v) for v in groups.values()) + len(other)
    print(f"SUMMARY: {passed} passed, {failed} failed, {skipped} skipped")
    for reason, names in groups.items():
        print(f"\n{len(names)} failed by design: {reason}")
        counts: dict[str, int] = {}
        for n in names:
            base = n.split("[")[0]
            counts[base] = counts.get(base, 0) + 1
        for base, count in counts.items():
            print(f"    {base}  ({count} case{'s' if count > 1 else ''})")
    print(f"\n{len(other)} other failures:")
    for n, m in other:
        print(f"    {n}\n        {m}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-wheel", action="store_true",
                        help="take the test files from the wheel of the installed version")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print pytest's own output (tracebacks)")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest")
    args = parser.parse_args()

    version, scipy_dir = _scipy_version_and_dir()
    import numpy
    import logitkit

    work = Path(tempfile.mkdtemp(prefix="scipy-special-tests-"))
    try:
        installed = [scipy_dir / "special" / "tests" / name for name in FILES]
        if not args.from_wheel and all(p.exists() for p in installed):
            source = "installed SciPy"
            for p in installed:
                shutil.copy(p, work / p.name)
        else:
            source = "SciPy wheel"
            _files_from_wheel(version, work)
        (work / "lk_redirect_plugin.py").write_text(PLUGIN)
        # A config of our own, so that no pytest.ini/pyproject.toml around the current
        # directory applies; warnings are errors, as in SciPy's own configuration, but
        # newer pytest's deprecation of SciPy's parametrize(itertools.product(...)).
        (work / "pytest.ini").write_text(
            "[pytest]\nfilterwarnings =\n    error\n"
            "    ignore:Passing a non-Collection iterable:DeprecationWarning\n"
        )
        deselect = " or ".join(DESELECT)
        cmd = [
            sys.executable, "-m", "pytest", "-p", "scipy.conftest", "-p", "lk_redirect_plugin",
            "-c", str(work / "pytest.ini"), "--rootdir", str(work), "-p", "no:cacheprovider",
            "-q", "--tb=short", "-k", f"not ({deselect})", "--junitxml", str(work / "r.xml"),
            *[str(work / name) for name in FILES], *args.pytest_args,
        ]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(work)] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ else [])))
        print(f"Python {sys.version.split()[0]}, NumPy {numpy.__version__}, SciPy {version} "
              f"(test files from the {source}), logitkit {logitkit.__version__}")
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        if args.verbose:
            print(out)
        _report(work / "r.xml", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
