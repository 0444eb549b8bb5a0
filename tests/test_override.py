"""Override packs: a township pack extends a base pack; its changes apply only there; the trace names layers."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fenliu import Decider, Outcome, PackError, complaint_from_dict, load_pack
from fenliu.cli import commands as cli

BASE = Path(__file__).resolve().parent / "packs" / "base"
ROOT = Path(__file__).resolve().parent.parent

TOWN_MANIFEST = """\
name: town
revision: "1-town"
extends: ../base
"""
TOWN_RULES = """\
rules:
  - id: classify.town.wall
    stage: classify
    priority: 25
    when: {keywords: [围墙]}
    then: {category: homestead}
  - id: grade.yellow.group
    override: true
    stage: grade
    when: {people_involved: {between: [2, 29]}}
    then: {color: YELLOW}
remove_rules: [funnel.consult]
"""
TOWN_TABLES = """\
tables:
  departments:
    key: department
    rows:
      town_office: {name: 镇综合办}
  categories:
    key: category
    rows:
      homestead: {owner: town_office}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


@pytest.fixture()
def packs(tmp_path: Path) -> Iterator[tuple[Decider, Decider]]:
    shutil.copytree(BASE, tmp_path / "base")
    write(tmp_path / "town" / "pack.yaml", TOWN_MANIFEST)
    write(tmp_path / "town" / "town.yaml", TOWN_RULES)
    write(tmp_path / "town" / "tables.yaml", TOWN_TABLES)
    base = Decider(load_pack(tmp_path / "base"))
    town = Decider(load_pack(tmp_path / "town"))
    yield base, town
    base.close()
    town.close()


def decide(d: Decider, **fields: Any) -> Outcome:
    return d.outcome(complaint_from_dict({"id": "x", **fields}))


def layers(o: Outcome) -> dict[str, str]:
    return {t.rule: t.layer for t in o.trace}


def test_pack_layers_and_rule_count(packs: tuple[Decider, Decider]) -> None:
    base, town = packs
    assert base.pack.layers == ("base",)
    assert town.pack.layers == ("base", "town")
    assert {r.id for r in town.pack.rules} == {r.id for r in base.pack.rules} - {"funnel.consult"} | {
        "classify.town.wall"
    }


def test_added_rule_only_in_township_and_trace_names_its_layer(packs: tuple[Decider, Decider]) -> None:
    base, town = packs
    b = decide(base, text="院子的围墙倒了")
    t = decide(town, text="院子的围墙倒了")
    assert b.category == "unclassified" and b.owner_department == "petition_bureau"
    assert t.category == "homestead"
    assert layers(t)["classify.town.wall"] == "town"
    assert layers(t)["route.owner"] == "base"
    wall = next(e for e in t.trace if e.rule == "classify.town.wall")
    assert wall.file == "town/town.yaml" and wall.line == 2
    assert "classify.town.wall" not in layers(b)


def test_overridden_rule_only_in_township(packs: tuple[Decider, Decider]) -> None:
    base, town = packs
    b = decide(base, text="邻居家的排水", people_involved=2)
    t = decide(town, text="邻居家的排水", people_involved=2)
    assert (b.color, b.tier) == ("BLUE", "VILLAGE")
    assert (t.color, t.tier) == ("YELLOW", "TOWNSHIP")
    assert layers(t)["grade.yellow.group"] == "town"
    assert "grade.yellow.group" not in layers(b)
    # the override replaces the base rule at its place: it is still one rule, with the same id
    assert [r.id for r in town.pack.rules].count("grade.yellow.group") == 1
    assert town.pack.rule("grade.yellow.group").layer == "town"
    assert base.pack.rule("grade.yellow.group").layer == "base"


def test_removed_rule_only_in_township(packs: tuple[Decider, Decider]) -> None:
    base, town = packs
    b = decide(base, text="邻居家的排水", intent="CONSULTATION")
    t = decide(town, text="邻居家的排水", intent="CONSULTATION")
    assert b.stage == "CONSULT" and layers(b)["funnel.consult"] == "base"
    assert t.stage == "MEDIATE" and "funnel.consult" not in layers(t)


def test_table_rows_changed_only_in_township(packs: tuple[Decider, Decider]) -> None:
    base, town = packs
    b = decide(base, text="宅基地被占")
    t = decide(town, text="宅基地被占")
    assert b.owner_department == "housing"
    assert t.owner_department == "town_office"
    row = town.pack.categories["homestead"]
    # only the named column changed; the others come from the base row
    assert row == {"name": "宅基地", "owner": "town_office", "entry_stage": "ASSESS", "arbitrable": False}
    assert town.pack.tables["categories"].row_layers["homestead"] == "town"
    assert town.pack.tables["categories"].row_layers["neighbor"] == "base"
    assert "town_office" in town.pack.tables["departments"].rows
    assert "town_office" not in base.pack.tables["departments"].rows
    owner = next(e for e in t.trace if e.rule == "route.owner")
    assert owner.table_rows == ("categories.homestead",)


def test_everything_else_decides_as_the_base(packs: tuple[Decider, Decider]) -> None:
    base, town = packs
    for fields in (
        {"text": "公司把我辞退了", "people_involved": 40},
        {"text": "邻居家的排水"},
        {"text": "邻居家的排水", "intent": "LITIGATION"},
        {"category_hint": "x"},
    ):
        b, t = decide(base, **fields), decide(town, **fields)
        assert (b.category, b.color, b.tier, b.approach, b.owner_department, b.stage, b.path) == (
            t.category,
            t.color,
            t.tier,
            t.approach,
            t.owner_department,
            t.stage,
            t.path,
        ), fields


# ---------------------------------------------------------------------------------------------------
# fenliu check refuses broken override packs


def _town(tmp_path: Path, rules: str, manifest: str = TOWN_MANIFEST) -> Path:
    if not (tmp_path / "base").exists():
        shutil.copytree(BASE, tmp_path / "base")
    write(tmp_path / "town" / "pack.yaml", manifest)
    write(tmp_path / "town" / "town.yaml", rules)
    return tmp_path / "town"


def check(path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.chdir(path.parent)
    code = cli.main(["check", path.name])
    return code, capsys.readouterr().out


def test_check_refuses_override_of_missing_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    town = _town(
        tmp_path,
        """\
        rules:
          - id: grade.yellow.grop
            override: true
            stage: grade
            then: {color: YELLOW}
        """,
    )
    code, out = check(town, monkeypatch, capsys)
    assert code == 1
    assert (
        "town/town.yaml:2: grade.yellow.grop: override of rule 'grade.yellow.grop', which no base pack "
        "defines; did you mean 'grade.yellow.group'? [override-missing]"
    ) in out


def test_check_refuses_override_without_extends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    town = _town(
        tmp_path,
        """\
        rules:
          - id: grade.yellow.group
            override: true
            stage: grade
            then: {color: YELLOW}
        """,
        manifest='name: town\nrevision: "1"\n',
    )
    code, out = check(town, monkeypatch, capsys)
    assert code == 1 and "[override-missing]" in out


def test_check_refuses_remove_of_missing_rule_and_duplicate_without_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    town = _town(
        tmp_path,
        """\
        rules:
          - id: grade.yellow.group
            stage: grade
            then: {color: YELLOW}
        remove_rules: [funnel.consul]
        """,
    )
    code, out = check(town, monkeypatch, capsys)
    assert code == 1
    assert "town/town.yaml:2: grade.yellow.group: rule id 'grade.yellow.group' is already used at" in out
    assert "(to replace a base rule, add override: true) [duplicate-rule]" in out
    assert "town/town.yaml:5: funnel.consul: remove_rules names 'funnel.consul'" in out
    assert "[remove-missing]" in out


def test_check_refuses_a_cycle_of_extends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a" / "pack.yaml", 'name: a\nrevision: "1"\nextends: ../b\n')
    write(tmp_path / "b" / "pack.yaml", 'name: b\nrevision: "1"\nextends: ../a\n')
    code, out = check(tmp_path / "a", monkeypatch, capsys)
    assert code == 1
    assert "packs extend each other in a cycle: a -> b -> a [extends-cycle]" in out
    with pytest.raises(PackError) as e:
        load_pack(tmp_path / "a")
    assert [p.code for p in e.value.problems] == ["extends-cycle"]


def test_check_refuses_a_pack_extending_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a" / "pack.yaml", 'name: a\nrevision: "1"\nextends: .\n')
    code, out = check(tmp_path / "a", monkeypatch, capsys)
    assert code == 1 and "[extends-cycle]" in out


# ---------------------------------------------------------------------------------------------------
# The shipped example township pack


def test_example_galutu_pack_passes_its_cases_and_names_its_layer(capsys: pytest.CaptureFixture[str]) -> None:
    galutu = ROOT / "rules" / "examples" / "galutu"
    assert cli.main(["test", str(galutu)]) == 0
    assert "7 passed, 0 failed" in capsys.readouterr().out
    base = Decider(load_pack(ROOT / "rules" / "wushen"))
    town = Decider(load_pack(galutu))
    try:
        text = "家里暖气一直不热"
        b, t = decide(base, text=text), decide(town, text=text)
        # the base reads the words with its lexicon and model; the town's heating rule decides there
        assert t.category == "property_housing" and b.owner_department != t.owner_department
        assert t.owner_department == "galutu_property_office"
        assert layers(t)["classify.galutu.heating"] == "galutu"
        assert layers(t)["route.owner"] == "wushen"
        assert "grade.yellow.conflict_verbal" not in {r.id for r in town.pack.rules}
        assert decide(base, text="邻居吵架", conflict_verbal=True).color == "YELLOW"
        assert decide(town, text="邻居吵架", conflict_verbal=True).color == "BLUE"
    finally:
        base.close()
        town.close()
