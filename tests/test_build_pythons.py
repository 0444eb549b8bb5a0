"""durable-rules builds from source and runs on Python 3.11, 3.12 and 3.13 with the project's flags."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def _interpreter(minor: int) -> str | None:
    found = shutil.which(f"python3.{minor}")
    candidates = sorted(glob.glob(f"/root/.pyenv/versions/3.{minor}.*/bin/python3.{minor}"))
    for path in ([found] if found else []) + candidates:
        if subprocess.run([path, "-c", "pass"], capture_output=True).returncode == 0:
            return path
    return None


@pytest.mark.slow
@pytest.mark.parametrize("minor", [12, 13])
def test_durable_rules_builds_on_python(minor: int) -> None:
    if sys.version_info[:2] == (3, minor):
        pytest.skip("the test suite itself runs on this version")
    py = _interpreter(minor)
    if py is None:
        pytest.skip(f"no Python 3.{minor} on this machine")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "check-durable-build.sh"), py], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"builds and runs on Python 3.{minor}" in proc.stdout
