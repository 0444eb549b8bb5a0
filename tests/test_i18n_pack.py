"""`fenliu check`, `lint` and `test` on broken copies of the reference pack speak Chinese in a Chinese
locale, and say the same things at the same places as in English: file:line, rule id and code alike."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

_HAN = re.compile("[\u4e00-\u9fff]")


def _fenliu(lang: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "fenliu.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "LANG": lang},
        timeout=300,
    )


def _both(*args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    return _fenliu("zh_CN.UTF-8", *args), _fenliu("en_US.UTF-8", *args)


def _copy(tmp_path: Path) -> Path:
    pack = tmp_path / "wushen"
    shutil.copytree(ROOT / "rules" / "wushen", pack)
    return pack


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")


def _findings(out: str) -> list[tuple[str, str]]:
    """``file:line: rule`` and ``[code]`` of each finding line (what must not depend on the language)."""
    found = []
    for line in out.splitlines():
        m = re.match(r"(\S+:\d+: \S*)(?::| ).*(\[[a-z-]+\])$", line)
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def _assert_same_places(zh: str, en: str, *codes: str) -> None:
    assert _findings(zh) == _findings(en), (zh, en)
    assert {code for _where, code in _findings(en)} >= {f"[{c}]" for c in codes}, en
    for line in zh.splitlines():
        if _findings(line):
            assert _HAN.search(line.split("[")[0]), line  # the message itself is in Chinese


def test_check_speaks_chinese_with_the_same_codes_and_places(tmp_path: Path) -> None:
    pack = _copy(tmp_path)
    _edit(pack / "grade.yaml", "when: {extreme_risk: true}", "when: {extreme_risks: true}")
    _edit(pack / "grade.yaml", "when: {public_opinion: VIRAL}", "when: {public_opinion: VIRALL}")
    _edit(pack / "grade.yaml", "    stage: grade\n", "    stage: grad\n")
    _edit(pack / "route.yaml", "then:", "then:\n      colour: RED\n     ")
    zh, en = _both("check", str(pack))
    assert zh.returncode == en.returncode == 1, zh.stdout + zh.stderr
    _assert_same_places(zh.stdout, en.stdout, "unknown-field", "unknown-value", "unknown-stage")
    assert "未知的字段 'extreme_risks'；是不是想写 'extreme_risk'？" in zh.stdout
    assert "unknown field 'extreme_risks'; did you mean 'extreme_risk'?" in en.stdout
    assert "阶段 'grad' 不在" in zh.stdout and "stage 'grad' is not one of" in en.stdout
    assert "'colour' 不是决定字段；是不是想写 'color'？" in zh.stdout
    assert re.search(r"个错误$", zh.stdout.strip()) and en.stdout.strip().endswith("error(s)")


def test_lint_speaks_chinese_with_the_same_codes_and_places(tmp_path: Path) -> None:
    pack = _copy(tmp_path)
    _edit(
        pack / "grade.yaml",
        "rules:\n",
        "rules:\n"
        "  - id: grade.never\n"
        "    stage: grade\n"
        "    when: {all: [{people_involved: {gte: 10}}, {people_involved: {lt: 5}}]}\n"
        "    then: {color: RED}\n",
    )
    zh, en = _both("lint", str(pack))
    assert zh.returncode == en.returncode != 0, zh.stdout + zh.stderr
    _assert_same_places(zh.stdout, en.stdout, "dead-contradiction")
    assert "这条规则永远不会触发：它对 people_involved 的判断" in zh.stdout
    assert "this rule can never fire: its tests on people_involved" in en.stdout
    assert zh.stdout.strip().splitlines()[-1].startswith("1 个错误，")
    assert en.stdout.strip().splitlines()[-1].startswith("1 error(s), ")


def test_failed_cases_speak_chinese_at_the_same_places(tmp_path: Path) -> None:
    pack = _copy(tmp_path)
    _edit(
        pack / "color_test.yaml",
        "      people_involved: 2\n    expect:\n      color: BLUE",
        "      people_involved: 2\n    expect:\n      color: RED",
    )
    zh, en = _both("test", str(pack))
    assert zh.returncode == en.returncode == 1, zh.stdout + zh.stderr
    heads = [
        [line.split(": ", 2)[:1] for line in out.splitlines() if re.match(r"\S+_test\.yaml:\d+: ", line)]
        for out in (zh.stdout, en.stdout)
    ]
    assert heads[0] == heads[1] and len(heads[0]) == 1, (zh.stdout, en.stdout)
    assert "color_test.yaml:" in zh.stdout and ": 未通过 people 2 → BLUE" in zh.stdout
    assert '    color: 应为 "RED"，实际为 "BLUE"' in zh.stdout
    assert '    color: expected "RED", got "BLUE"' in en.stdout


@pytest.mark.parametrize("lang", ["zh_CN.UTF-8", "en_US.UTF-8"])
def test_the_reference_pack_passes_in_either_language(lang: str) -> None:
    assert _fenliu(lang, "check", "rules/wushen").returncode == 0
