"""Chinese input-method punctuation, tabs and GBK files: named where they are, and `fenliu fmt` fixes them."""

from __future__ import annotations

import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, WUSHEN
from fenliu import PackError, load_pack
from fenliu.packs import ime

FENLIU = [sys.executable, "-m", "fenliu.cli"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FENLIU, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    ("text", "expected", "data"),
    [
        pytest.param(
            "keywords: [供暖，暖气、供热]\n",
            [(1, 14, "，"), (1, 17, "、")],
            {"keywords": ["供暖", "暖气", "供热"]},
            id="flow-list-commas",
        ),
        pytest.param(
            "a:\n  stage：grade\n  when：\n    x: 1\n",
            [(2, 8, "："), (3, 7, "：")],
            {"a": {"stage": "grade", "when": {"x": 1}}},
            id="key-colons",
        ),
        pytest.param(
            "- {term: 供暖，weight: 6}\n- {term：村账, weight: 6}\n",
            [(1, 12, "，"), (2, 8, "：")],
            [{"term": "供暖", "weight": 6}, {"term": "村账", "weight": 6}],
            id="flow-mapping",
        ),
        pytest.param(
            "keywords: 【供暖，暖气】\nx: “欠薪”\n",
            [(1, 11, "【"), (1, 14, "，"), (1, 17, "】"), (2, 4, "“"), (2, 7, "”")],
            {"keywords": ["供暖", "暖气"], "x": "欠薪"},
            id="full-width-brackets-and-quotes",
        ),
        pytest.param("a:\n\tb: 1\n", [(2, 1, "\t")], {"a": {"b": 1}}, id="tab-indent"),
        pytest.param(
            "a:\n\u3000\u3000b: 1\n",
            [(2, 1, "\u3000"), (2, 2, "\u3000")],
            {"a": {"b": 1}},
            id="ideographic-indent",
        ),
        pytest.param(
            "keywords: [供暖，\n  暖气]\n",
            [(1, 14, "，")],
            {"keywords": ["供暖", "暖气"]},
            id="flow-over-two-lines",
        ),
    ],
)
def test_slips_are_named_at_line_and_column_and_fixed(
    text: str, expected: list[tuple[int, int, str]], data: object
) -> None:
    found = ime.slips(text)
    assert [(s.line, s.column, s.char) for s in found] == expected
    new, _ = ime.fixed(text)
    assert yaml.safe_load(new) == data
    assert ime.slips(new) == []


@pytest.mark.parametrize(
    "text",
    [
        "description: 注意：请带上身份证，户口本【原件】\n",
        "guidance: |\n  你好：请，带上[材料，证件]\n  stage：x\n",
        "# keywords: [a，b]\nk: v # [x，y]\n",
        "k: \"[x，y]\"\nj: ['a，b', c]\n",
        "- {term: 嘎查达, weight: 4, note: 嘎查村委会主任，负责村务}\n",
        "description: 材料[身份证，户口本]\n",
        "description: 【重要】说明\n",
        "t: “三到场”工作法\n",
    ],
)
def test_chinese_text_is_left_alone(text: str) -> None:
    assert ime.slips(text) == []
    assert ime.fixed(text)[0] == text


def test_shipped_packs_have_no_slips() -> None:
    files = sorted((ROOT / "rules").rglob("*.yaml")) + sorted((ROOT / "tests" / "packs").rglob("*.yaml"))
    assert len(files) > 40
    for f in files:
        assert ime.slips(f.read_text("utf-8")) == [], f


_cjk = st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF)
_text = st.text(st.one_of(_cjk, st.sampled_from("，。：；、（）！？ ab1")), min_size=1, max_size=12).filter(
    lambda s: s[0] not in "【“" and s.strip() == s
)
_key = st.text(st.sampled_from(string.ascii_lowercase + "_"), min_size=1, max_size=8)
_doc = st.recursive(
    _text | st.integers(0, 99),
    lambda inner: st.dictionaries(_key, inner, max_size=4) | st.lists(inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_key, _doc, min_size=1, max_size=4))
def test_block_yaml_written_by_a_program_has_no_slips(doc: dict[str, object]) -> None:
    """Text with any Chinese punctuation, in block style, is never taken for a slip."""
    text = yaml.safe_dump(doc, allow_unicode=True, default_flow_style=False)
    assert ime.slips(text) == []
    assert yaml.safe_load(ime.fixed(text)[0]) == doc


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("ab: -[]{}#'\"\t\n，、：【】“”\u3000供暖")), max_size=40))
def test_fixing_is_idempotent(text: str) -> None:
    once, _ = ime.fixed(text)
    assert ime.fixed(once)[0] == once


def _copy_pack(tmp_path: Path) -> Path:
    pack = tmp_path / "pack"
    shutil.copytree(WUSHEN, pack)
    return pack


def test_check_names_the_slip_and_fmt_fixes_it_keeping_comments(tmp_path: Path) -> None:
    pack = _copy_pack(tmp_path)
    f = pack / "classify.yaml"
    original = f.read_text("utf-8")
    broken = original.replace(
        "    stage: classify\n    priority: 100", "    stage：classify\n    priority: 100", 1
    )
    assert broken != original
    f.write_text(broken, "utf-8")
    line = broken.splitlines().index("    stage：classify") + 1

    with pytest.raises(PackError) as e:
        load_pack(pack)
    [p] = e.value.problems
    assert (p.file.endswith("classify.yaml"), p.line, p.code) == (True, line, "ime-punctuation")
    assert "column 10" in p.message and "'：'" in p.message and "':'" in p.message

    check = run("check", str(pack))
    assert check.returncode == 1
    assert f"classify.yaml:{line}:" in check.stdout and "fenliu fmt" in check.stdout
    assert "Traceback" not in check.stdout + check.stderr

    dry = run("fmt", "--check", str(pack))
    assert dry.returncode == 1 and "would change" in dry.stdout
    assert f.read_text("utf-8") == broken  # --check writes nothing

    done = run("fmt", str(pack))
    assert done.returncode == 0, done.stdout
    assert f"classify.yaml:{line}: column 10: '：' -> ':'" in done.stdout
    assert f.read_text("utf-8") == original  # every comment and byte as it was
    assert run("verify", str(pack)).returncode == 0
    again = run("fmt", "--check", str(pack))
    assert again.returncode == 0 and "0 of" in again.stdout


def test_keyword_list_typed_with_full_width_commas_is_an_error_not_one_keyword(tmp_path: Path) -> None:
    pack = _copy_pack(tmp_path)
    (pack / "extra.yaml").write_text(
        "# yaml-language-server: $schema=../../service/fenliu/schema/rules.schema.json\n"
        "rules:\n"
        "  - id: classify.heating\n"
        "    stage: classify\n"
        "    priority: 5\n"
        "    when:\n"
        "      keywords: [供暖，暖气，供热]\n"
        "    then:\n"
        "      category: property_housing\n",
        "utf-8",
    )
    with pytest.raises(PackError) as e:
        load_pack(pack)
    assert [(p.line, p.code) for p in e.value.problems if p.file.endswith("extra.yaml")] == [
        (7, "ime-punctuation"),
        (7, "ime-punctuation"),
    ]


def test_gbk_file_is_named_and_converted(tmp_path: Path) -> None:
    pack = _copy_pack(tmp_path)
    f = pack / "route.yaml"
    original = f.read_text("utf-8")
    f.write_bytes(original.encode("gb18030"))
    check = run("check", str(pack))
    assert check.returncode == 1
    assert "GBK" in check.stdout and "UTF-8" in check.stdout and "route.yaml" in check.stdout
    done = run("fmt", str(pack))
    assert done.returncode == 0 and "converted from GBK to UTF-8" in done.stdout
    assert f.read_text("utf-8") == original


def test_tab_indentation_is_one_message_not_a_yaml_traceback(tmp_path: Path) -> None:
    pack = _copy_pack(tmp_path)
    f = pack / "grade.yaml"
    text = f.read_text("utf-8")
    first = text.index("  - id:")
    f.write_text(text[:first] + "\t- id:" + text[first + len("  - id:") :], "utf-8")
    check = run("check", str(pack))
    assert check.returncode == 1
    lines = [x for x in check.stdout.splitlines() if "grade.yaml" in x]
    assert len(lines) == 1 and "a tab in the indentation" in lines[0], check.stdout
    assert run("fmt", str(pack)).returncode == 0
    assert run("verify", str(pack)).returncode == 0


def test_fmt_leaves_alone_what_it_cannot_fix_safely(tmp_path: Path) -> None:
    pack = _copy_pack(tmp_path)
    bad = pack / "broken.yaml"
    bad.write_text("rules:\n  - id: a\n    when: [unclosed\n\tx: 1   \n", "utf-8")
    before = bad.read_bytes()
    done = run("fmt", str(pack))
    assert done.returncode == 1
    assert "broken.yaml: left alone: still not valid YAML" in done.stdout
    assert bad.read_bytes() == before


def test_verify_exits_non_zero_exactly_when_a_reload_would_refuse(tmp_path: Path) -> None:
    ok = run("verify", str(WUSHEN))
    assert ok.returncode == 0 and "ok: the server would load wushen" in ok.stdout
    pack = _copy_pack(tmp_path)
    # a lint error (a rule no complaint can reach) that `fenliu test` alone does not see
    (pack / "dead.yaml").write_text(
        "# yaml-language-server: $schema=../../service/fenliu/schema/rules.schema.json\n"
        "rules:\n"
        "  - id: classify.never\n"
        "    stage: classify\n"
        "    priority: 5\n"
        "    when:\n"
        "      all: [{keywords: [供暖]}, {not: {keywords: [供暖]}}]\n"
        "    then:\n"
        "      category: property_housing\n",
        "utf-8",
    )
    assert run("test", str(pack)).returncode == 0
    refused = run("verify", str(pack))
    assert refused.returncode == 1, refused.stdout
    assert "refused: the server would not load this pack" in refused.stdout
    assert "dead.yaml" in refused.stdout


def test_missing_folder_is_one_line_with_the_path_as_typed() -> None:
    for cmd in ("check", "test", "lint", "verify", "fmt"):
        p = run(cmd, "rules/wushn")
        assert p.returncode != 0
        assert p.stderr.strip() == "fenliu: rules/wushn: no such folder (did you mean rules/wushen?)", (
            cmd,
            p.stderr,
        )
        assert "rules/rules" not in p.stdout + p.stderr


def test_version() -> None:
    import fenliu

    p = run("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"fenliu {fenliu.__version__}"


def _edit(pack: Path, name: str, old: str, new: str) -> int:
    """Replace the first ``old`` in ``name``; the line it was on."""
    f = pack / name
    text = f.read_text("utf-8")
    at = text.index(old)
    f.write_text(text[:at] + new + text[at + len(old) :], "utf-8")
    return text[:at].count("\n") + 1 + old[: len(old) - len(old.lstrip("\n"))].count("\n")


def test_every_files_errors_in_one_run_in_plain_words(tmp_path: Path) -> None:
    pack = _copy_pack(tmp_path)
    prio = _edit(pack, "classify.yaml", "priority: 1000", "priority: high")
    then = _edit(pack, "grade.yaml", "    then:", "    thn:")
    stage = _edit(pack, "route.yaml", "stage: route", "stage: rout")
    with pytest.raises(PackError) as e:
        load_pack(pack)
    got = {(Path(p.file).name, p.line, p.code): p.message for p in e.value.problems}
    assert got[("classify.yaml", prio, "schema")].endswith("'priority' must be a whole number, not 'high'")
    assert got[("grade.yaml", then, "schema")].endswith("unknown key 'thn'; did you mean 'then'?")
    assert any(k[0] == "grade.yaml" and m.endswith("'then:' is missing here") for k, m in got.items())
    # route.yaml has no schema error: its own semantic error is named in the same run
    assert "did you mean 'route'?" in got[("route.yaml", stage, "unknown-stage")]


@pytest.mark.parametrize(
    ("name", "old", "new", "words"),
    [
        (
            "classify.yaml",
            "    then:\n      category: {copy: category_hint}",
            "     then:\n      category: {copy: category_hint}",
            "start in the same column",
        ),
        (
            "grade.yaml",
            "    stage: grade",
            "    stage: [grade",
            "a list opened with '[' is not closed with ']'",
        ),
        ("route.yaml", "    stage: route", "    stage: route: x", "put text that holds ': ' in quotes"),
    ],
    ids=["misaligned-key", "unclosed-bracket", "two-colons"],
)
def test_yaml_syntax_errors_in_plain_words_at_the_right_line(
    tmp_path: Path, name: str, old: str, new: str, words: str
) -> None:
    pack = _copy_pack(tmp_path)
    line = _edit(pack, name, old, new)
    with pytest.raises(PackError) as e:
        load_pack(pack)
    [p] = e.value.problems
    assert (Path(p.file).name, p.code) == (name, "yaml-syntax")
    assert words in p.message and "(YAML: " in p.message
    assert p.line == line  # the misaligned key, the opening bracket, the second colon
