"""The authoring lint: each kind of finding, at the right file:line, and none where there is nothing."""

from __future__ import annotations

import json
import random
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fenliu import Decider, Pack, Problem, compile_pack, complaint_from_dict, lint, load_pack
from fenliu.authoring.lint import render_findings
from fenliu.cli import commands as cli

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


@pytest.mark.parametrize("pack", ["wushen", "examples/galutu"], ids=["reference", "example-township"])
def test_shipped_pack_lints_without_errors_or_warnings(pack: str) -> None:
    findings = run_lint(ROOT / "rules" / pack)
    assert [f for f in findings if f.severity in ("error", "warning")] == []


# ---------------------------------------------------------------------------------------------------
# One finding (or none) per pack edit: conflicts, dead rules, categories, stages, keywords, gaps, lookups

#: A category the base pack's tables declare but no rule sets.
FOREST_ROW = {
    "tables.yaml": "      unclassified: => "
    "      forest_rights: {name: 林权, owner: justice, entry_stage: MEDIATE, arbitrable: false}\n"
    "      unclassified: "
}


@dataclass(frozen=True)
class Finds:
    """Rules added to the base pack (``extra``, ``replace``) and what the lint must report of one code."""

    code: str
    #: Every finding of ``code``, in order: (file, line - or a text on that line of the file -, rule, severity).
    found: list[tuple[str, int | str, str, str]]
    extra: str = ""
    replace: dict[str, str] = field(default_factory=dict)
    #: Texts the first finding's message holds, and how it starts.
    says: tuple[str, ...] = ()
    starts: str = ""
    #: Codes that must not be found at all, and codes that must be found too.
    none_of: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    #: No finding of any code is an error.
    no_errors: bool = False


FINDS = {
    # supplement.yaml sorts after rules.yaml: the rule defined second is the one reported
    "conflict-two-classify-rules-same-priority-found-at-second-rule": Finds(
        "conflict",
        [("p/supplement.yaml", 2, "classify.drain_homestead", "error")],
        """\
        rules:
          - id: classify.drain_homestead
            stage: classify
            priority: 30
            when: {keywords: [排水沟, 宅基地]}
            then: {category: homestead}
        """,
        says=("classify.neighbor (p/rules.yaml:2)", "neighbor vs homestead"),
    ),
    # the example complaint is real: both rules fire on it
    "conflict-through-earlier-stages-is-confirmed-with-an-example": Finds(
        "conflict",
        [("p/supplement.yaml", 2, "route.neighbor_red", "error")],
        """\
        rules:
          - id: route.neighbor_red
            stage: route
            priority: 20
            when: {category: neighbor}
            then: {tier: TOWNSHIP}
        """,
        says=("route.joint", "people_involved=30"),
    ),
    "conflict-not-reported-for-exclusive-conditions-or-equal-values": Finds(
        "conflict",
        [],
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
        none_of=("possible-conflict",),
    ),
    "conflict-on-colour-is-not-a-conflict": Finds(
        "conflict",
        [],
        """\
        rules:
          - id: grade.red.drain
            stage: grade
            when: {keywords: [排水]}
            then: {color: RED}
        """,
        none_of=("possible-conflict",),
    ),
    "possible-conflict-when-a-lookup-meets-a-literal": Finds(
        "possible-conflict",
        [("p/supplement.yaml", 2, "route.owner_neighbor", "warning")],
        """\
        rules:
          - id: route.owner_neighbor
            stage: route
            when: {category: neighbor}
            then: {owner_department: governance_center}
        """,
        says=("route.owner",),
        none_of=("conflict",),
    ),
    "dead-contradiction-numeric-range": Finds(
        "dead-contradiction",
        [("p/supplement.yaml", 2, "grade.red.odd", "error")],
        """\
        rules:
          - id: grade.red.odd
            stage: grade
            when: {people_involved: {gte: 30, lt: 10}}
            then: {color: RED}
        """,
        says=("people_involved", "contradict"),
    ),
    "dead-contradiction-two-intents-in-one-all": Finds(
        "dead-contradiction",
        [("p/supplement.yaml", 2, "funnel.both", "error")],
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
        says=("intent",),
    ),
    "dead-contradiction-test-on-a-value-no-earlier-stage-sets": Finds(
        "dead-contradiction",
        [("p/supplement.yaml", 2, "route.forest", "error")],
        """\
        rules:
          - id: route.forest
            stage: route
            priority: 5
            when: {category: forest_rights}
            then: {tier: TOWNSHIP}
        """,
        FOREST_ROW,
        says=("when stage route runs category can only be",),
    ),
    "dead-contradiction-keyword-present-and-absent": Finds(
        "dead-contradiction",
        [("p/supplement.yaml", 2, "classify.odd", "error")],
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
    ),
    # the same word also claims two categories
    "dead-shadowed-by-higher-priority-rule": Finds(
        "dead-shadowed",
        [("p/supplement.yaml", 2, "classify.drain", "error")],
        """\
        rules:
          - id: classify.drain
            stage: classify
            priority: 5
            when: {keywords: [排水]}
            then: {category: homestead}
        """,
        says=("classify.neighbor",),
        also=("keyword-shared",),
    ),
    "dead-shadowed-by-several-rules-together": Finds(
        "dead-shadowed",
        [("p/supplement.yaml", 2, "route.township_by_crowd", "error")],
        """\
        rules:
          - id: route.township_by_crowd
            stage: route
            priority: 5
            when: {color: {in: [RED, YELLOW]}}
            then: {tier: TOWNSHIP}
        """,
        says=("route.joint", "route.diverted"),
    ),
    "shadowed-field-warns-when-only-one-field-is-lost": Finds(
        "shadowed-field",
        [("p/supplement.yaml", 7, "route.crowd", "warning")],
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
        says=("then tier",),
        none_of=("dead-shadowed",),
    ),
    "category-unreachable-reported-at-its-row": Finds(
        "category-unreachable",
        [("p/tables.yaml", "forest_rights:", "forest_rights", "warning")],
        replace=FOREST_ROW,
    ),
    "category-reachable-through-a-hint-rule": Finds(
        "category-unreachable",
        [],
        """\
        rules:
          - id: classify.hint
            stage: classify
            priority: 100
            when: {category_hint: {ne: ""}}
            then: {category: {copy: category_hint}}
        """,
        FOREST_ROW,
    ),
    "stage-unreachable": Finds(
        "stage-unreachable",
        [("p/tables.yaml", "key: category", "LITIGATE", "warning")],
        replace={"rules.yaml": "then: {stage: LITIGATE} => then: {stage: MEDIATE}"},
    ),
    "keyword-claimed-by-two-categories": Finds(
        "keyword-shared",
        [("p/supplement.yaml", 7, "classify.homestead_wall", "warning")],
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
        says=("'排水'", "neighbor wins"),
        no_errors=True,
    ),
    "threshold-gap-integer": Finds(
        "threshold-gap",
        [("p/rules.yaml", "gte: 31", "grade.red.crowd", "warning")],
        replace={"rules.yaml": "when: {people_involved: {gte: 30}} => when: {people_involved: {gte: 31}}"},
        starts="people_involved 30 is covered by no rule",
    ),
    "threshold-gap-real-numbers-and-none-when-bands-touch": Finds(
        "threshold-gap",
        [("p/supplement.yaml", 8, "grade.red.amount", "warning")],
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
        says=("[999999, 1000000)",),
    ),
    "lookup-without-row": Finds(
        "lookup-no-row",
        [("p/supplement.yaml", 11, "route.first_contact", "warning")],
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
        says=("YELLOW",),
    ),
}


@pytest.mark.parametrize("case", FINDS.values(), ids=list(FINDS))
def test_lint_finding_at_file_line_rule(tmp_path: Path, case: Finds) -> None:
    pack = make_pack(tmp_path, case.extra, replace=case.replace)
    findings = run_lint(pack)
    got = only(findings, case.code)
    expected = [
        (file, line if isinstance(line, int) else line_of(pack / Path(file).name, line), rule, severity)
        for file, line, rule, severity in case.found
    ]
    assert [(f.file, f.line, f.rule, f.severity) for f in got] == expected
    for text in case.says:
        assert text in got[0].message
    if case.starts:
        assert got[0].message.startswith(case.starts)
    for code in case.none_of:
        assert only(findings, code) == []
    for code in case.also:
        assert only(findings, code)
    if case.no_errors:
        assert not [f for f in findings if f.severity == "error"]


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


def test_one_character_and_common_keywords_of_rules_are_warned_of_at_their_line(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, replace={"rules.yaml": "[邻居, 排水] => [邻居, 水, 问题]"})
    findings = run_lint(pack)
    line = line_of(pack / "rules.yaml", "[邻居, 水, 问题]")
    short, common = only(findings, "keyword-short"), only(findings, "keyword-common")
    assert [(f.file, f.line, f.severity) for f in short] == [("p/rules.yaml", line, "warning")]
    assert "one-character keyword '水'" in short[0].message
    assert [(f.file, f.line) for f in common] == [("p/rules.yaml", line)]
    assert "keyword '问题' is too common" in common[0].message
    assert short[0].rule == common[0].rule != ""


def test_a_keyword_most_of_the_corpus_holds_is_warned_of_with_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    pack = make_pack(tmp_path, replace={"rules.yaml": "[宅基地] => [宅基地, 村里]"})
    corpus = tmp_path / "corpus.jsonl"
    texts = ["村里的路坏了", "村里排水不通", "村里宅基地纠纷", "邻居吵架", "工资拖欠"]
    corpus.write_text(
        "".join(
            json.dumps({"id": str(i), "text": t, "category": "x"}, ensure_ascii=False) + "\n"
            for i, t in enumerate(texts)
        ),
        "utf-8",
    )
    assert cli.main(["lint", str(pack)]) == 0
    assert "[keyword-too-common]" not in capsys.readouterr().out
    assert cli.main(["lint", str(pack), "--corpus", str(corpus)]) == 0
    out = [x for x in capsys.readouterr().out.splitlines() if "[keyword-too-common]" in x]
    line = line_of(pack / "rules.yaml", "[宅基地, 村里]")
    assert len(out) == 1 and out[0].startswith(f"p/rules.yaml:{line}: classify.homestead: warning: "), out
    assert "keyword '村里' is in 3 of the corpus's 5 complaints (more than 20%)" in out[0]
