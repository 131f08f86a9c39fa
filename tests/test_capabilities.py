"""capabilities(), the _set_target testing hook, and __version__."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import logitkit
from helpers import FUNC_NAMES, assert_close, call, random_logits, ref, rng_for

pytestmark = pytest.mark.filterwarnings("error")

TARGET_NAMES = {"baseline", "avx2", "avx512", "neon"}


def test_version_is_a_string():
    assert isinstance(logitkit.__version__, str)
    assert logitkit.__version__.strip()


def test_capabilities_well_formed():
    caps = logitkit.capabilities()
    assert isinstance(caps, dict)
    assert {"compiled", "supported", "active"} <= set(caps)
    compiled, supported, active = caps["compiled"], caps["supported"], caps["active"]
    assert isinstance(compiled, list) and isinstance(supported, list)
    assert all(isinstance(name, str) for name in compiled + supported)
    assert set(compiled) <= TARGET_NAMES, compiled
    assert len(set(compiled)) == len(compiled) and len(set(supported)) == len(supported)
    assert supported, "at least one target must run on this CPU"
    assert set(supported) <= set(compiled)
    assert isinstance(active, str)
    assert active in supported


def test_capabilities_baseline_for_the_platform():
    caps = logitkit.capabilities()
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        assert "baseline" in caps["supported"]
        assert "neon" not in caps["compiled"]
    elif machine in ("aarch64", "arm64"):
        assert "neon" in caps["supported"]
        assert not {"avx2", "avx512"} & set(caps["compiled"])
    else:
        pytest.skip(f"no expectation for {machine}")


def _linux_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine().lower() != "x86_64" or not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_supported_matches_cpu_flags():
    # Linux lists a flag only if the kernel also enabled its registers (XSAVE state)
    flags = _linux_cpu_flags()
    if flags is None:
        pytest.skip("needs /proc/cpuinfo on x86-64")
    caps = logitkit.capabilities()
    needs = {"avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512dq",
                                                 "avx512vl"}}
    for target, required in needs.items():
        if target in caps["compiled"]:
            assert (target in caps["supported"]) == (required <= flags), (
                f"{target}: supported={caps['supported']}, cpu has "
                f"{sorted(required & flags)} of {sorted(required)}")


def test_set_target_switches_and_returns_previous():
    core = logitkit._core
    original = logitkit.capabilities()["active"]
    try:
        for name in logitkit.capabilities()["supported"]:
            before = logitkit.capabilities()["active"]
            assert core._set_target(name) == before
            assert logitkit.capabilities()["active"] == name
    finally:
        core._set_target(original)
    assert logitkit.capabilities()["active"] == original


@pytest.mark.parametrize("name", ["bogus", "", "sse2", "avx 2"])
def test_set_target_rejects_unknown_names(name):
    active = logitkit.capabilities()["active"]
    with pytest.raises(ValueError):
        logitkit._core._set_target(name)
    assert logitkit.capabilities()["active"] == active


def test_set_target_rejects_unsupported_targets():
    caps = logitkit.capabilities()
    unsupported = (TARGET_NAMES - set(caps["supported"]))
    for name in sorted(unsupported):
        with pytest.raises(ValueError):
            logitkit._core._set_target(name)
        assert logitkit.capabilities()["active"] == caps["active"]


def test_simd_target_fixture_is_active(simd_target):
    assert logitkit.capabilities()["active"] == simd_target
    x = random_logits(rng_for("fixture"), (4, 33), np.float32)
    for func in FUNC_NAMES:
        assert_close(call(func, x), ref(func, x), func, np.float32)


def test_target_names_match_in_any_case():
    original = logitkit.capabilities()["active"]
    try:
        for name in logitkit.capabilities()["supported"]:
            logitkit._core._set_target(f" {name.upper()} ")
            assert logitkit.capabilities()["active"] == name
    finally:
        logitkit._core._set_target(original)


def test_forced_target_env_accepts_upper_case():
    # LOGITKIT_SIMD=AVX2 used to make `import logitkit` fail.
    name = logitkit.capabilities()["supported"][-1]
    code = "import logitkit; print(logitkit.capabilities()['active'])"
    env = dict(os.environ, LOGITKIT_SIMD=name.upper())
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == name
