"""The annotations hold: mypy --strict on the package and on a typed user, and stubtest.

Skipped when mypy is not installed (it is in the `test` extra).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    "target",
    [["-p", "logitkit"], [str(HERE / "typing_usage.py")]],
    ids=["package", "usage"],
)
def test_mypy_strict(target: list[str], tmp_path: Path) -> None:
    # Two runs: mypy takes a package (-p, found where it is installed, as users see it) or
    # files, not both; and an installed package's directory passed as a file would make
    # mypy treat site-packages as a source root.
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--cache-dir", str(tmp_path / "mypy-cache"), *target]
    )
    assert status == 0, stdout + stderr


def test_stubtest(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "logitkit",
            "--allowlist",
            str(HERE / "stubtest_allowlist.txt"),
            "--mypy-config-file",
            str(tmp_path / "none.ini"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
