"""Messages in Chinese and English: the catalog is complete, and the locale or --lang chooses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from conftest import ROOT
from fenliu import i18n

PO = ROOT / "service" / "fenliu" / "locale" / "zh_CN" / "LC_MESSAGES" / "fenliu.po"
_PLACEHOLDER = re.compile(r"\{[a-z_]*\}|%\([a-z_]+\)[rsd]|%[sd]")


def _code_messages() -> set[str]:
    found = extract_from_dir(
        str(ROOT / "service" / "fenliu"),
        method_map=[("**.py", "python")],
        keywords={"_": None, "N_": None, "ngettext": (1, 2)},
    )
    out: set[str] = set()
    for _file, _line, message, _comments, _context in found:
        out.update(message if isinstance(message, tuple) else (message,))
    return {m for m in out if m}


def _catalog() -> dict[str, str]:
    with PO.open("rb") as f:
        cat = read_po(f)
    assert not [m.id for m in cat if m.id and m.fuzzy], "fuzzy entries are not translations"
    return {str(m.id): str(m.string) for m in cat if m.id}


def test_every_message_in_the_code_has_a_chinese_translation() -> None:
    code, catalog = _code_messages(), _catalog()
    assert len(code) > 100
    untranslated = sorted(m for m in code if not catalog.get(m))
    assert not untranslated, f"run `make messages` and translate in {PO.name}: {untranslated}"
    stale = sorted(set(catalog) - code)
    assert not stale, f"messages no longer in the code (run `make messages`): {stale}"


def test_no_message_is_marked_inside_an_f_string() -> None:
    """Babel's extraction does not look inside f-strings: a ``{_("…")}`` there is never in the catalog
    and stays English for every reader."""
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "service" / "fenliu").rglob("*.py"))
        if "_proto" not in p.parts
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\{_\(|\{N_\(", line)
    ]
    assert not found, found


def test_translations_keep_every_placeholder() -> None:
    for msgid, msgstr in _catalog().items():
        assert sorted(_PLACEHOLDER.findall(msgid)) == sorted(_PLACEHOLDER.findall(msgstr)), msgid
        assert re.search("[\u4e00-\u9fff]", msgstr) or not re.search("[a-z]{3}", msgid), msgid


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh_CN"),
        ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh_CN"),
        ({"LANGUAGE": "en", "LANG": "zh_CN.UTF-8"}, "en"),
        ({"LC_MESSAGES": "C"}, "en"),
        ({}, "en"),
    ],
)
def test_the_locale_chooses_in_gettexts_order(env: dict[str, str], expected: str) -> None:
    assert i18n.from_environment(env) == expected


def _fenliu(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "fenliu.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        timeout=120,
    )


def test_a_chinese_locale_gets_chinese_messages_and_help(tmp_path: Path) -> None:
    p = _fenliu("check", "rules/wushn", LANG="zh_CN.UTF-8")
    assert p.returncode == 1
    assert p.stderr.strip() == "fenliu: rules/wushn：没有这个文件夹（是不是 rules/wushen？）"
    ok = _fenliu("check", "rules/wushen", LANG="zh_CN.UTF-8")
    assert ok.returncode == 0 and ok.stdout.startswith("通过：wushen "), ok.stdout
    helped = _fenliu("--help", LANG="zh_CN.UTF-8")
    assert "用法：" in helped.stdout and "显示本帮助并退出" in helped.stdout and "检查规则包" in helped.stdout
    bad = _fenliu("check", LANG="zh_CN.UTF-8")
    assert bad.returncode == 2 and "缺少必需的参数" in bad.stderr


def test_lang_overrides_the_locale_and_codes_stay_as_they_are(tmp_path: Path) -> None:
    pack = tmp_path / "p"
    import shutil

    shutil.copytree(ROOT / "rules" / "wushen", pack)
    f = pack / "grade.yaml"
    f.write_text(f.read_text("utf-8").replace("    then:", "    thn:", 1), "utf-8")
    zh = _fenliu("--lang", "zh_CN", "check", str(pack), LANG="en_US.UTF-8")
    en = _fenliu("--lang=en", "check", str(pack), LANG="zh_CN.UTF-8")
    assert "未知的键 'thn'；是不是想写 'then'？" in zh.stdout
    assert "unknown key 'thn'; did you mean 'then'?" in en.stdout

    # the same lines in both languages up to the message: file:line: rule-id, and the code at the end
    def heads(out: str) -> list[tuple[str, str]]:
        return [(x.split(": ")[0], x.rsplit(" ", 1)[-1]) for x in out.splitlines() if "[" in x]

    assert heads(zh.stdout) == heads(en.stdout) and heads(en.stdout)
