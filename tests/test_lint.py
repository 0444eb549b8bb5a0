"""The authoring lint: each kind of finding, at the right file:line, and none where there is nothing."""

from __future__ import annotations

import json
import random
import shutil
import textwrap
from pathlib import Path

import pytest

from fenliu.authoring.lint import lint, render_findings
from fenliu.cli import commands as cli
from fenliu.compiling.compiler import compile_pack
from fenliu.domain.errors import Problem
from fenliu.domain.model import complaint_from_dict
from fenliu.engine.decider import Decider
from fenliu.packs.load import load_pack
from fenliu.packs.types import Pack

ROOT = Path(__file__).resolve().parent.parent
BASE = Path(__file__).resolve().parent / "packs" / "base"


def make_pack(
    tmp_path: Path,
    extra: str = "",
    *,
    name: str = "p",
    manifest: str = "",
    replace: dict[str, str] | None = None,
) -> Path:
    """A copy of tests/packs/base with ``extra`` rules in supplement.yaml (and text replaced in its files)."""
    dest = tmp_path / name
    shutil.copytree(BASE, dest)
    (dest / "base_test.yaml").unlink()
    for fname, text in (replace or {}).items():
        path = dest / fname
        old, new = text.split(" => ")
        content = path.read_text("utf-8")
        assert old in content, old
        path.write_text(content.replace(old, new), "utf-8")
    if manifest:
        with (dest / "pack.yaml").open("a", encoding="utf-8") as f:
            f.write(textwrap.dedent(manifest))
    if extra:
        (dest / "supplement.yaml").write_text(textwrap.dedent(extra), "utf-8")
    return dest


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    seen = 0
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == nth:
                return n
    raise AssertionError(f"{needle!r} not in {path}")


def run_lint(path: Path) -> list[Problem]:
    pack = load_pack(path)
    return lint(pack, compile_pack(pack))


def only(findings: list[Problem], code: str) -> list[Problem]:
    return [f for f in findings if f.code == code]


# ---------------------------------------------------------------------------------------------------
# Clean packs


def test_base_fixture_lints_clean(tmp_path: Path) -> None:
    assert run_lint(make_pack(tmp_path)) == []


def test_reference_pack_lints_clean() -> None:
    findings = run_lint(ROOT / "rules" / "wushen")
    assert [f for f in findings if f.severity in ("error", "warning")] == []


def test_example_township_pack_lints_clean() -> None:
    findings = run_lint(ROOT / "rules" / "examples" / "galutu")
    assert [f for f in findings if f.severity in ("error", "warning")] == []


# ---------------------------------------------------------------------------------------------------
# Conflicts


def test_conflict_two_classify_rules_same_priority_found_at_second_rule(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: classify.drain_homestead
            stage: classify
            priority: 30
            when: {keywords: [排水沟, 宅基地]}
            then: {category: homestead}
        """,
    )
    findings = run_lint(pack)
    conflicts = only(findings, "conflict")
    assert len(conflicts) == 1
    c = conflicts[0]
    # supplement.yaml sorts after rules.yaml: the rule defined second is the one reported
    assert (c.file, c.line, c.rule, c.severity) == (
        "p/supplement.yaml",
        2,
        "classify.drain_homestead",
        "error",
    )
    assert "classify.neighbor (p/rules.yaml:2)" in c.message
    assert "neighbor vs homestead" in c.message


def test_conflict_through_earlier_stages_is_confirmed_with_an_example(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: route.neighbor_red
            stage: route
            priority: 20
            when: {category: neighbor}
            then: {tier: TOWNSHIP}
        """,
    )
    conflicts = only(run_lint(pack), "conflict")
    assert [(c.file, c.line, c.rule) for c in conflicts] == [("p/supplement.yaml", 2, "route.neighbor_red")]
    assert "route.joint" in conflicts[0].message
    # the example complaint is real: both rules fire on it
    assert "people_involved=30" in conflicts[0].message


def test_conflict_not_reported_for_exclusive_conditions_or_equal_values(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: funnel.mediation
            stage: funnel
            priority: 10
            when: {intent: MEDIATION}
            then: {stage: MEDIATE}
          - id: funnel.litigate_again
            stage: funnel
            priority: 10
            when: {intent: LITIGATION, people_involved: {gte: 2}}
            then: {stage: LITIGATE}
        """,
    )
    findings = run_lint(pack)
    assert only(findings, "conflict") == [] and only(findings, "possible-conflict") == []


def test_conflict_on_colour_is_not_a_conflict(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: grade.red.drain
            stage: grade
            when: {keywords: [排水]}
            then: {color: RED}
        """,
    )
    findings = run_lint(pack)
    assert only(findings, "conflict") == [] and only(findings, "possible-conflict") == []


def test_possible_conflict_when_a_lookup_meets_a_literal(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: route.owner_neighbor
            stage: route
            when: {category: neighbor}
            then: {owner_department: governance_center}
        """,
    )
    findings = run_lint(pack)
    pc = only(findings, "possible-conflict")
    assert [(f.file, f.line, f.rule, f.severity) for f in pc] == [
        ("p/supplement.yaml", 2, "route.owner_neighbor", "warning")
    ]
    assert "route.owner" in pc[0].message
    assert only(findings, "conflict") == []


# ---------------------------------------------------------------------------------------------------
# Dead rules


def test_dead_contradiction_numeric_range(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: grade.red.odd
            stage: grade
            when: {people_involved: {gte: 30, lt: 10}}
            then: {color: RED}
        """,
    )
    dead = only(run_lint(pack), "dead-contradiction")
    assert [(d.file, d.line, d.rule, d.severity) for d in dead] == [
        ("p/supplement.yaml", 2, "grade.red.odd", "error")
    ]
    assert "people_involved" in dead[0].message and "contradict" in dead[0].message


def test_dead_contradiction_two_intents_in_one_all(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: funnel.both
            stage: funnel
            priority: 5
            when:
              all:
                - intent: MEDIATION
                - intent: LITIGATION
            then: {stage: MEDIATE}
        """,
    )
    dead = only(run_lint(pack), "dead-contradiction")
    assert [(d.line, d.rule) for d in dead] == [(2, "funnel.both")]
    assert "intent" in dead[0].message


def test_dead_contradiction_test_on_a_value_no_earlier_stage_sets(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: route.forest
            stage: route
            priority: 5
            when: {category: forest_rights}
            then: {tier: TOWNSHIP}
        """,
        replace={
            "tables.yaml": "      unclassified: => "
            "      forest_rights: {name: 林权, owner: justice, entry_stage: MEDIATE, arbitrable: false}\n"
            "      unclassified: "
        },
    )
    dead = only(run_lint(pack), "dead-contradiction")
    assert [(d.line, d.rule) for d in dead] == [(2, "route.forest")]
    assert "when stage route runs category can only be" in dead[0].message


def test_dead_contradiction_keyword_present_and_absent(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: classify.odd
            stage: classify
            priority: 5
            when:
              keywords: [宅基地纠纷]
              not: {keywords: [宅基地]}
            then: {category: homestead}
        """,
    )
    dead = only(run_lint(pack), "dead-contradiction")
    assert [(d.line, d.rule) for d in dead] == [(2, "classify.odd")]


def test_dead_shadowed_by_higher_priority_rule(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: classify.drain
            stage: classify
            priority: 5
            when: {keywords: [排水]}
            then: {category: homestead}
        """,
    )
    findings = run_lint(pack)
    dead = only(findings, "dead-shadowed")
    assert [(d.file, d.line, d.rule, d.severity) for d in dead] == [
        ("p/supplement.yaml", 2, "classify.drain", "error")
    ]
    assert "classify.neighbor" in dead[0].message
    assert only(findings, "keyword-shared")  # the same word also claims two categories


def test_dead_shadowed_by_several_rules_together(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: route.township_by_crowd
            stage: route
            priority: 5
            when: {color: {in: [RED, YELLOW]}}
            then: {tier: TOWNSHIP}
        """,
    )
    dead = only(run_lint(pack), "dead-shadowed")
    assert [(d.line, d.rule) for d in dead] == [(2, "route.township_by_crowd")]
    assert "route.joint" in dead[0].message and "route.diverted" in dead[0].message


def test_shadowed_field_warns_when_only_one_field_is_lost(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: route.crowd
            stage: route
            priority: 5
            when: {color: RED}
            then:
              tier: TOWNSHIP
              owner_department: governance_center
        """,
    )
    findings = run_lint(pack)
    sf = only(findings, "shadowed-field")
    assert [(f.line, f.rule, f.severity) for f in sf] == [(7, "route.crowd", "warning")]
    assert "then tier" in sf[0].message
    assert only(findings, "dead-shadowed") == []


def test_dead_rules_really_never_take_effect(tmp_path: Path) -> None:
    """Soundness: random complaints never see a rule the lint calls dead change a decision."""
    pack_dir = make_pack(
        tmp_path,
        """\
        rules:
          - id: classify.drain
            stage: classify
            priority: 5
            when: {keywords: [排水]}
            then: {category: homestead}
          - id: route.township_by_crowd
            stage: route
            priority: 5
            when: {color: {in: [RED, YELLOW]}}
            then: {tier: TOWNSHIP}
          - id: grade.red.odd
            stage: grade
            when: {people_involved: {gte: 30, lt: 10}}
            then: {color: RED}
        """,
    )
    pack = load_pack(pack_dir)
    dead = {f.rule for f in lint(pack, compile_pack(pack)) if f.code.startswith("dead-")}
    assert dead == {"classify.drain", "route.township_by_crowd", "grade.red.odd"}
    decider = Decider(pack, backend="python", memoize=False)
    rng = random.Random(5)
    words = ["邻居", "排水", "宅基地", "辞退", "工伤", "其他"]
    for i in range(1500):
        c = complaint_from_dict(
            {
                "id": str(i),
                "text": "".join(rng.sample(words, rng.randint(1, 3))),
                "people_involved": rng.choice([1, 2, 3, 9, 10, 29, 30, 31, 100]),
                "intent": rng.choice(["PETITION", "CONSULTATION", "LITIGATION", "MEDIATION"]),
            }
        )
        for t in decider.outcome(c).trace:
            assert not (t.rule in dead and t.set), t


# ---------------------------------------------------------------------------------------------------
# Categories, stages, keywords, gaps, lookups


def test_category_unreachable_reported_at_its_row(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        replace={
            "tables.yaml": "      unclassified: => "
            "      forest_rights: {name: 林权, owner: justice, entry_stage: MEDIATE, arbitrable: false}\n"
            "      unclassified: "
        },
    )
    cu = only(run_lint(pack), "category-unreachable")
    assert [(f.file, f.line, f.rule, f.severity) for f in cu] == [
        ("p/tables.yaml", line_of(pack / "tables.yaml", "forest_rights:"), "forest_rights", "warning")
    ]


def test_category_reachable_through_a_hint_rule(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: classify.hint
            stage: classify
            priority: 100
            when: {category_hint: {ne: ""}}
            then: {category: {copy: category_hint}}
        """,
        replace={
            "tables.yaml": "      unclassified: => "
            "      forest_rights: {name: 林权, owner: justice, entry_stage: MEDIATE, arbitrable: false}\n"
            "      unclassified: "
        },
    )
    assert only(run_lint(pack), "category-unreachable") == []


def test_stage_unreachable(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, replace={"rules.yaml": "then: {stage: LITIGATE} => then: {stage: MEDIATE}"})
    su = only(run_lint(pack), "stage-unreachable")
    assert [(f.file, f.rule, f.severity) for f in su] == [("p/tables.yaml", "LITIGATE", "warning")]
    assert su[0].line == line_of(pack / "tables.yaml", "key: category")


def test_keyword_claimed_by_two_categories(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: classify.homestead_wall
            stage: classify
            priority: 25
            description: a wall between homesteads
            when:
              keywords: [围墙, 排水]
            then: {category: homestead}
        """,
    )
    findings = run_lint(pack)
    ks = only(findings, "keyword-shared")
    assert [(f.file, f.line, f.rule, f.severity) for f in ks] == [
        ("p/supplement.yaml", 7, "classify.homestead_wall", "warning")
    ]
    assert "'排水'" in ks[0].message and "neighbor wins" in ks[0].message
    assert not [f for f in findings if f.severity == "error"]


def test_threshold_gap_integer(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        replace={"rules.yaml": "when: {people_involved: {gte: 30}} => when: {people_involved: {gte: 31}}"},
    )
    gaps = only(run_lint(pack), "threshold-gap")
    assert [(f.file, f.line, f.rule, f.severity) for f in gaps] == [
        ("p/rules.yaml", line_of(pack / "rules.yaml", "gte: 31"), "grade.red.crowd", "warning")
    ]
    assert gaps[0].message.startswith("people_involved 30 is covered by no rule")


def test_threshold_gap_real_numbers_and_none_when_bands_touch(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        rules:
          - id: grade.yellow.amount
            stage: grade
            when: {amount_yuan: {gte: 100000, lt: 999999}}
            then: {color: YELLOW}
          - id: grade.red.amount
            stage: grade
            when: {amount_yuan: {gte: 1000000}}
            then: {color: RED}
          - id: grade.yellow.visits
            stage: grade
            when: {repeat_visits: {between: [1, 2]}}
            then: {color: YELLOW}
          - id: grade.red.visits
            stage: grade
            when: {repeat_visits: {gt: 2}}
            then: {color: RED}
        """,
    )
    gaps = only(run_lint(pack), "threshold-gap")
    assert [(f.line, f.rule) for f in gaps] == [(8, "grade.red.amount")]
    assert "[999999, 1000000)" in gaps[0].message


def test_lookup_without_row(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        """\
        tables:
          response:
            key: color
            rows:
              RED: {first_contact: 2h}
              BLUE: {first_contact: 24h}
        rules:
          - id: route.first_contact
            stage: route
            then:
              first_contact_within: {lookup: response.first_contact}
        """,
    )
    lk = only(run_lint(pack), "lookup-no-row")
    assert [(f.line, f.rule, f.severity) for f in lk] == [(11, "route.first_contact", "warning")]
    assert "YELLOW" in lk[0].message


# ---------------------------------------------------------------------------------------------------
# Explained warnings, rendering, CLI


def test_explained_warning_is_marked_and_not_counted(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path,
        manifest="""\
        explained_warnings:
          - code: threshold-gap
            rule: grade.red.crowd
            reason: 30 people is handled by the banner by hand
          - code: keyword-shared
            reason: no longer true
        """,
        replace={"rules.yaml": "when: {people_involved: {gte: 30}} => when: {people_involved: {gte: 31}}"},
    )
    findings = run_lint(pack)
    assert [(f.code, f.severity) for f in findings] == [
        ("unused-explanation", "warning"),
        ("threshold-gap", "explained"),
    ]
    unused = findings[0]
    assert (unused.file, unused.line) == ("p/pack.yaml", line_of(pack / "pack.yaml", "code: keyword-shared"))
    assert "handled by the banner by hand" in findings[1].message
    text = render_findings(findings, str)
    assert text.splitlines()[-1] == "0 error(s), 1 warning(s), 1 explained"


def test_render_json() -> None:
    f = Problem("p/x.yaml", 3, "r.one", "conflict", "boom", "error")
    assert json.loads(render_findings([f], str, fmt="json")) == [
        {
            "file": "p/x.yaml",
            "line": 3,
            "rule": "r.one",
            "code": "conflict",
            "severity": "error",
            "message": "boom",
        }
    ]


def test_cli_lint_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    warn = make_pack(tmp_path, name="warn", replace={"rules.yaml": "{gte: 30}} => {gte: 31}}"})
    assert cli.main(["lint", str(warn)]) == 0
    out = capsys.readouterr().out
    assert f"warn/rules.yaml:{line_of(warn / 'rules.yaml', 'gte: 31')}: grade.red.crowd: warning:" in out
    err = make_pack(
        tmp_path,
        """\
        rules:
          - id: grade.red.odd
            stage: grade
            when: {people_involved: {gte: 30, lt: 10}}
            then: {color: RED}
        """,
        name="err",
    )
    assert cli.main(["lint", str(err)]) == 1
    out = capsys.readouterr().out
    assert "err/supplement.yaml:2: grade.red.odd: this rule can never fire" in out
    assert out.strip().endswith("1 error(s), 0 warning(s)")
    # check refuses a pack with lint errors too (and so does a hot reload)
    assert cli.main(["check", str(err)]) == 1
    assert "err/supplement.yaml:2: grade.red.odd:" in capsys.readouterr().out
    assert cli.main(["lint", str(err), "--format", "json"]) == 1
    assert [f["code"] for f in json.loads(capsys.readouterr().out)] == ["dead-contradiction"]


def test_lint_is_fast_on_the_reference_pack() -> None:
    import time

    pack: Pack = load_pack(ROOT / "rules" / "wushen")
    compiled = compile_pack(pack)
    start = time.perf_counter()
    lint(pack, compiled)
    assert time.perf_counter() - start < 5


def test_a_failing_check_is_a_warning_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fenliu.authoring.lint as lint_module

    def boom(ctx: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(lint_module, "_gaps", boom)
    findings = run_lint(make_pack(tmp_path, replace={"rules.yaml": "{gte: 30}} => {gte: 31}}"}))
    assert [(f.code, f.severity, f.file) for f in findings] == [("lint-failed", "warning", "p/pack.yaml")]
