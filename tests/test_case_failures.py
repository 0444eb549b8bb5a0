"""``fenliu test`` says why a case failed: the rule that set each differing field (with its file:line),
or that none did; for a rule named in ``fired:`` that did not fire, its first failed condition; for one in
``not_fired:`` that fired, what it set. The complainant's personal data is never printed."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from fenliu.cli import commands as cli

BASE = Path(__file__).resolve().parent / "packs" / "base"
PERSON = {"name": "乌兰其其格", "id_number": "150626199001011234", "phone": "13947712345"}

RULES = """\
rules:
  - id: classify.neighbor
    stage: classify
    when: {keywords: [邻居]}
    then: {category: neighbor}
  - id: grade.crowd
    stage: grade
    when: {people_involved: {gte: 30}}
    then: {color: RED}
  - id: grade.group
    stage: grade
    when: {people_involved: {gte: 3}}
    then: {color: YELLOW}
  - id: grade.case
    stage: grade
    when: {existing_case_id: WS-2026-0001}
    then: {color: YELLOW}
  - id: route.owner
    stage: route
    then: {owner_department: {lookup: categories.owner}}
  - id: deadlines.contact
    stage: deadlines
    then: {first_contact_within: 2h}
"""

PERSON_YAML = "{name: 乌兰其其格, id_number: '150626199001011234', phone: '13947712345'}"

CASES = f"""\
cases:
  - name: fields differ
    complaint:
      text: 邻居家的狗
      people_involved: 40
      received_at: "2026-03-01T09:00:00+08:00"
      complainant: {PERSON_YAML}
    expect:
      category: neighbor
      owner_department: housing
      color: BLUE
      tier: VILLAGE
      deadlines: {{first_contact_by: "2026-03-01T10:00:00+08:00"}}
  - name: rules go the other way
    complaint:
      id: "13947712345"
      text: 邻居家的狗
      people_involved: 12
      existing_case_id: WS-13947712345
      complainant: {PERSON_YAML}
    fired: [grade.crowd, grade.case, grade.group]
    not_fired: [classify.neighbor]
    expect: {{category: neighbor}}
"""


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in line)


@pytest.fixture()
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pack = tmp_path / "small"
    pack.mkdir()
    shutil.copy(BASE / "tables.yaml", pack / "tables.yaml")
    (pack / "pack.yaml").write_text(
        'name: small\nrevision: "1"\nstages: [classify, grade, route, deadlines]\n', "utf-8"
    )
    (pack / "rules.yaml").write_text(RULES, "utf-8")
    (pack / "cases_test.yaml").write_text(CASES, "utf-8")
    monkeypatch.chdir(tmp_path)
    return pack


def _test(capsys: pytest.CaptureFixture[str], *lang: str) -> list[str]:
    capsys.readouterr()
    assert cli.main([*lang, "test", "small"]) == 1
    out = capsys.readouterr()
    for value in (*PERSON.values(), "13947712345"):
        assert value not in out.out + out.err
    return out.out.splitlines()


def _at(small: Path, rule: str) -> str:
    return f"small/rules.yaml:{line_of(small / 'rules.yaml', 'id: ' + rule)}"


def test_each_differing_field_names_the_rule_that_set_it(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _test(capsys)
    case = line_of(small / "cases_test.yaml", "name: fields differ")
    at = out.index(f"small/cases_test.yaml:{case}: FAIL fields differ")
    assert out[at + 1 : at + 9] == [
        '    owner_department: expected "housing", got "justice"',
        f"      set by route.owner ({_at(small, 'route.owner')})",
        '    color: expected "BLUE", got "RED"',
        f"      set by grade.crowd ({_at(small, 'grade.crowd')}), overruling grade.group",
        '    tier: expected "VILLAGE", got "BANNER"',
        "      no rule set it: the default",
        '    deadlines.first_contact_by: expected "2026-03-01T10:00:00+08:00", got "2026-03-01T11:00:00+08:00"',
        f"      set by deadlines.contact ({_at(small, 'deadlines.contact')})",
    ]


def test_a_rule_that_should_fire_names_its_first_failed_condition(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _test(capsys)
    rules = small / "rules.yaml"
    case = line_of(small / "cases_test.yaml", "name: rules go the other way")
    at = out.index(f"small/cases_test.yaml:{case}: FAIL rules go the other way")
    crowd = line_of(rules, "people_involved: {gte: 30}")
    case_line = line_of(rules, "existing_case_id: WS-2026-0001")
    assert out[at + 1 : at + 7] == [
        "    fired grade.crowd: expected true, got false",
        f"      grade.crowd ({_at(small, 'grade.crowd')}) did not fire: first failed condition, "
        f"line {crowd}: people_involved gte 30: the value is 12",
        "    fired grade.case: expected true, got false",
        # the case number holds a phone number: not shown
        f"      grade.case ({_at(small, 'grade.case')}) did not fire: first failed condition, "
        f'line {case_line}: existing_case_id eq "WS-2026-0001": the value is (personal data, not shown)',
        "    fired classify.neighbor: expected false, got true",
        f"      classify.neighbor ({_at(small, 'classify.neighbor')}) fired: set category=neighbor; found 邻居",
    ]
    assert out[at + 7] == "0 passed, 2 failed"  # grade.group fired as the case says: nothing about it


def test_the_explanations_are_in_chinese_with_lang_zh(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _test(capsys, "--lang", "zh_CN")
    rules = small / "rules.yaml"
    assert f"      由 route.owner（{_at(small, 'route.owner')}）设定" in out
    assert f"      由 grade.crowd（{_at(small, 'grade.crowd')}）设定，覆盖了 grade.group 的设定" in out
    assert "      没有规则设定它：取默认值" in out
    crowd = line_of(rules, "people_involved: {gte: 30}")
    assert (
        f"      grade.crowd（{_at(small, 'grade.crowd')}）没有触发：第一个不成立的条件，"
        f"第 {crowd} 行：people_involved gte 30：实际值是 12"
    ) in out
    assert (
        f"      classify.neighbor（{_at(small, 'classify.neighbor')}）触发了：设定 category=neighbor; 找到 邻居"
        in out
    )


def test_a_passing_pack_prints_no_explanation(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (small / "cases_test.yaml").write_text(
        textwrap.dedent("""\
        cases:
          - name: neighbor
            complaint: {text: 邻居家的狗, people_involved: 40}
            fired: [grade.crowd]
            expect: {category: neighbor, color: RED, owner_department: justice}
        """),
        "utf-8",
    )
    assert cli.main(["test", "small"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "1 passed, 0 failed"
