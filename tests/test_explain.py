"""``fenliu explain`` and ``fenliu eval --explain``: why a rule fired or did not.

What explain calls fired is what the real decision's trace fired (on a sample of the corpus, on the
reference pack and on a keyword pack); a rule that did not fire names its first failing condition; the
complainant's personal data is never printed; a mistyped rule is one line with "did you mean"; the
guide's example is the command's real output; Chinese with ``--lang zh_CN``.
"""

from __future__ import annotations

import json
import operator
import random
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, WUSHEN
from fenliu.authoring.explain import Explained, explain
from fenliu.domain.model import complaint_from_dict
from fenliu.engine.decider import Decider
from fenliu.packs.load import load_pack

FENLIU = [sys.executable, "-m", "fenliu.cli"]
CORPUS = ROOT / "corpus" / "complaints.jsonl"
KEYWORDS = ROOT / "tests" / "packs" / "keywords"
PERSON = {"name": "乌兰其其格", "id_number": "150626199001011234", "phone": "13947712345"}


def run(*args: str, stdin: str = "", lang: str = "en") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FENLIU, "--lang", lang, *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120
    )


_HOLDS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}


def _sample(n: int) -> list[dict[str, Any]]:
    lines = CORPUS.read_text("utf-8").splitlines()
    return [json.loads(line) for line in random.Random(21).sample(lines, n)]


def _fired(ex: Explained) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    return sorted(
        (st.stage, r.rule.id, dict(r.set or {}), dict(r.overruled or {}))
        for st in ex.stages
        for r in st.rules
        if r.fired
    )


@pytest.mark.parametrize("pack_dir", [WUSHEN, KEYWORDS], ids=["wushen", "keywords"])
def test_explain_fired_rules_are_exactly_the_decisions_trace_on_the_corpus(pack_dir: Path) -> None:
    decider = Decider(load_pack(pack_dir))  # as served: durable_rules, memoized
    not_fired = 0
    for data in _sample(300):
        complaint = complaint_from_dict(data)
        trace = decider.decide(complaint).outcome.explanation.trace()
        ex = explain(decider, complaint)
        want = sorted((e.stage, e.rule, dict(e.set), dict(e.overruled)) for e in trace)
        assert _fired(ex) == want, data["id"]
        # every rule of every stage with rules is told, in the pack's order, and each one not fired says why
        told = [r.rule.id for st in ex.stages for r in st.rules]
        assert told == [r.id for stage in decider.pack.stages for r in decider.pack.rules if r.stage == stage]
        for st in ex.stages:
            for r in st.rules:
                assert r.fired == (r.failed is None)
                not_fired += not r.fired
                if r.failed is not None and r.failed.kind == "test" and not r.failed.hidden:
                    f = r.failed  # the value shown really fails the test shown
                    assert _HOLDS[f.op](f.actual, f.expected) == f.negated, (r.rule.id, f)
    assert not_fired > 300 * 30


def _explain_rule(rule: str, complaint: dict[str, Any], pack: Path = WUSHEN) -> str:
    p = run("explain", str(pack), json.dumps({"id": "t-1", **complaint}, ensure_ascii=False), "--rule", rule)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    return p.stdout


@pytest.mark.parametrize(
    ("rule", "complaint", "expected"),
    [
        # the first of two conditions fails, then the second
        (
            "exclude.terminated",
            {"text": "邻居排水", "procedure": "NONE"},
            'line 38: procedure eq "REVIEW_TERMINATED": the value is "NONE"',
        ),
        (
            "exclude.terminated",
            {"text": "邻居排水", "procedure": "REVIEW_TERMINATED", "new_facts": True},
            "line 39: new_facts eq false: the value is true",
        ),
        # a field an earlier stage set: the category, from the classify stage
        (
            "grade.red.wage_crowd",
            {"category_hint": "neighbor", "people_involved": 12},
            'line 40: category eq "wage_arrears": the value is "neighbor"',
        ),
        (
            "grade.red.wage_crowd",
            {"category_hint": "wage_arrears", "people_involved": 9},
            "line 41: people_involved gte 10: the value is 9",
        ),
        # between [3, 29]: its upper bound
        (
            "grade.yellow.group",
            {"text": "邻居排水", "people_involved": 30},
            "line 54: people_involved lte 29: the value is 30",
        ),
        # a list of values
        (
            "funnel.consult",
            {"text": "邻居排水", "intent": "MEDIATION"},
            'line 19: intent in ["CONSULTATION", "LEGAL_AID"]: the value is "MEDIATION"',
        ),
    ],
)
def test_a_rule_not_fired_names_its_first_failed_condition(
    rule: str, complaint: dict[str, Any], expected: str
) -> None:
    out = _explain_rule(rule, complaint)
    assert re.search(rf"not fired +{re.escape(rule)} +rules/wushen/\w+\.yaml:\d+\n", out), out
    assert "first failed condition, " + expected in out, out


def test_an_any_that_fails_names_each_alternative() -> None:
    out = _explain_rule("route.diverted", {"text": "邻居排水", "people_involved": 40})
    assert "first failed condition, line 47: none of the 3 alternatives holds:" in out
    assert 'line 48: color eq "YELLOW": the value is "RED"' in out
    assert "line 49: cross_village eq true: the value is false" in out
    assert 'line 51: category in ["land_expropriation",' in out and 'the value is "neighbor"' in out


def test_a_rule_that_fired_says_what_it_set_or_who_overruled_it() -> None:
    out = _explain_rule("grade.red.crowd", {"text": "邻居排水", "people_involved": 40})
    assert re.search(r"  fired +grade\.red\.crowd +rules/wushen/grade\.yaml:6\n +set color=RED\n", out), out
    out = _explain_rule("grade.blue", {"text": "邻居排水", "people_involved": 40})
    assert "overruled: color → grade.red.crowd" in out


def _override(tmp_path: Path) -> Path:
    """A pack on top of the reference pack with `not`, `keywords` and `pattern` conditions."""
    pack = tmp_path / "t"
    pack.mkdir()
    (pack / "pack.yaml").write_text(
        f'name: t\nrevision: "1"\ndescription: conditions of every kind\nextends: {WUSHEN}\n', "utf-8"
    )
    (pack / "extra.yaml").write_text(
        """rules:
  - id: grade.t.heating
    stage: grade
    description: 供暖
    when:
      keywords: [供暖, 暖气]
    then: {color: YELLOW}
  - id: grade.t.not_report
    stage: grade
    description: 非举报
    when:
      not: {intent: REPORT}
    then: {color: YELLOW}
  - id: grade.t.times
    stage: grade
    description: 第几次
    when:
      pattern: '第[0-9]+次'
    then: {color: YELLOW}
  - id: grade.t.calm
    stage: grade
    description: 没有打架
    when:
      amount_yuan: {gte: 5}
      not: {keywords: [打架, 斗殴]}
    then: {color: YELLOW}
  - id: grade.t.case
    stage: grade
    description: 某个案件
    when:
      existing_case_id: WS-2026-0001
    then: {color: YELLOW}
""",
        "utf-8",
    )
    return pack


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("grade.t.heating", "line 6: keywords [供暖, 暖气]: none of them in the title or text"),
        ("grade.t.not_report", 'line 12: not intent eq "REPORT": but the value is "REPORT"'),
        ("grade.t.times", "line 18: pattern 第[0-9]+次: no match in the title or text"),
        ("grade.t.calm", "line 25: not keywords: found 打架 in the title or text"),
    ],
)
def test_keywords_patterns_and_not_name_what_failed(tmp_path: Path, rule: str, expected: str) -> None:
    complaint = {"text": "邻居打架", "intent": "REPORT", "amount_yuan": 100}
    out = _explain_rule(rule, complaint, _override(tmp_path))
    assert "first failed condition, " + expected in out, out


def test_a_value_shaped_like_personal_data_is_not_shown(tmp_path: Path) -> None:
    # a case number holding a phone number, and a complaint id that is one
    complaint = {"id": "13947712345", "text": "邻居", "existing_case_id": "WS-13947712345"}
    p = run("explain", str(_override(tmp_path)), json.dumps(complaint), "--rule", "grade.t.case")
    assert p.returncode == 0, p.stderr
    assert "13947712345" not in p.stdout + p.stderr
    assert "complaint [phone]\n" in p.stdout
    assert 'line 31: existing_case_id eq "WS-2026-0001": the value is (personal data, not shown)' in p.stdout


def test_personal_data_is_never_printed() -> None:
    complaint = {"id": "p-1", "text": "邻居排水", "complainant": PERSON, "people_involved": 3}
    text = json.dumps(complaint, ensure_ascii=False)
    outputs = [run("explain", str(WUSHEN), text), run("eval", str(WUSHEN), "-", "--explain", stdin=text)]
    outputs.append(run("explain", str(WUSHEN), text, lang="zh_CN"))
    for p in outputs:
        assert p.returncode == 0, p.stderr
        for value in PERSON.values():
            assert value not in p.stdout + p.stderr
    for name in ("name", "id_number", "phone"):
        assert f"  complainant.{name}: (personal data, not shown)\n" in outputs[0].stdout
        assert f"  complainant.{name}: （个人信息，不显示）\n" in outputs[2].stdout


def test_an_unknown_rule_or_stage_is_one_line_with_did_you_mean() -> None:
    p = run("explain", str(WUSHEN), '{"id": "x", "text": "邻居"}', "--rule", "grade.red.crwod")
    assert p.returncode == 2
    assert p.stdout == ""
    assert (
        p.stderr
        == "fenliu explain: no rule 'grade.red.crwod' in pack wushen (did you mean grade.red.crowd?)\n"
    )
    p = run("explain", str(WUSHEN), '{"id": "x", "text": "邻居"}', "--stage", "grde")
    assert (p.returncode, p.stderr) == (
        2,
        "fenliu explain: no stage 'grde' in pack wushen (did you mean grade?)\n",
    )
    p = run("explain", str(WUSHEN), '{"id": "x", "text": "邻居"}', "--rule", "grade.blue", "--stage", "route")
    assert (p.returncode, p.stderr) == (2, "fenliu explain: rule 'grade.blue' is in stage grade, not route\n")


@pytest.mark.parametrize(
    ("complaint", "message"),
    [
        ("missing.json", "fenliu explain: cannot read missing.json: No such file or directory\n"),
        ("{not json", "fenliu explain: not JSON: Expecting property name enclosed in double quotes\n"),
        ('{"id": 3, "text": "邻居"}', "fenliu explain: id: must be a string, not number\n"),
    ],
)
def test_a_bad_complaint_is_one_line_per_problem(complaint: str, message: str) -> None:
    p = run("explain", str(WUSHEN), complaint)
    assert (p.returncode, p.stdout, p.stderr) == (2, "", message)


def test_explain_reads_a_file_and_standard_input() -> None:
    by_file = run("explain", "rules/wushen", "examples/complaint.json", "--stage", "grade")
    by_stdin = run(
        "explain",
        "rules/wushen",
        "-",
        "--stage",
        "grade",
        stdin=(ROOT / "examples/complaint.json").read_text(),
    )
    assert by_file.returncode == by_stdin.returncode == 0
    assert by_file.stdout == by_stdin.stdout
    assert "stage grade: 5 of 14 rules fired" in by_file.stdout


def test_explain_in_chinese() -> None:
    p = run(
        "explain",
        "rules/wushen",
        '{"id": "z-1", "text": "邻居排水", "people_involved": 40}',
        "--stage",
        "grade",
        lang="zh_CN",
    )
    assert p.returncode == 0, p.stderr
    assert "wushen 2026.12.1：诉求 z-1\n" in p.stdout
    assert "阶段 grade：14 条规则中 2 条触发\n" in p.stdout
    assert re.search(r"  触发    grade\.red\.crowd +rules/wushen/grade\.yaml:6\n +设定 color=RED\n", p.stdout)
    assert "未触发  grade.red.extreme_risk" in p.stdout
    assert "第一个不成立的条件，第 14 行：extreme_risk eq true：实际值是 false" in p.stdout
    p = run(
        "explain", "rules/wushen", '{"id": "z-1", "text": "邻居"}', "--rule", "grade.red.crwod", lang="zh_CN"
    )
    assert (
        p.stderr == "fenliu explain: 规则包 wushen 中没有规则 'grade.red.crwod'（是不是 grade.red.crowd？）\n"
    )


def test_eval_explain_is_the_trace_as_a_table(tmp_path: Path) -> None:
    sample = _sample(5)
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in sample) + "\n", "utf-8")
    table = run("eval", "rules/wushen", str(f), "--explain")
    traced = run("eval", "rules/wushen", str(f), "--trace")
    assert table.returncode == traced.returncode == 0, table.stderr
    blocks = table.stdout.rstrip("\n").split("\n\n")
    decisions = [json.loads(line) for line in traced.stdout.splitlines()]
    assert len(blocks) == len(decisions) == 5
    for block, d in zip(blocks, decisions, strict=True):
        head, columns, *rows = block.splitlines()
        assert head.startswith(
            f"{d['complaint_id']}: category={d['category']} color={d['color']} tier={d['tier']}"
        )
        assert columns.split() == ["stage", "rule", "file:line", "set"]
        assert len(rows) == len(d["trace"])
        for row, entry in zip(rows, d["trace"], strict=True):
            stage, rule, where = row.split()[:3]
            assert (stage, rule) == (entry["stage"], entry["rule"])
            assert where == "rules/" + entry["source"]
            for k in entry["set"]:
                assert f"{k}=" in row


def _guide_examples() -> list[tuple[str, str]]:
    """The commands of the guide's explain section and the output printed under each."""
    text = (ROOT / "docs" / "authoring-rules.md").read_text("utf-8")
    section = text[text.index('<a id="explain"></a>') :]
    section = section[: section.index("\n---\n")]
    return re.findall(r"```\n\$ (fenliu [^\n]*)\n(.*?)\n```", section, flags=re.S)


def test_the_guides_explain_examples_are_the_real_output() -> None:
    examples = _guide_examples()
    assert len(examples) == 3
    for command, shown in examples:
        p = run(*shlex.split(command)[1:])
        assert p.returncode == 0, p.stderr
        assert p.stdout.rstrip("\n") == shown, command
