"""``fenliu test --coverage`` lists every rule and table row no case reaches, with file:line."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from fenliu.cli import commands as cli

BASE = Path(__file__).resolve().parent / "packs" / "base"
ROOT = Path(__file__).resolve().parent.parent


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in line)


@pytest.fixture()
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A two-stage pack: two classify rules and a route rule; the cases reach only one classify rule."""
    pack = tmp_path / "small"
    pack.mkdir()
    shutil.copy(BASE / "tables.yaml", pack / "tables.yaml")
    (pack / "pack.yaml").write_text('name: small\nrevision: "1"\nstages: [classify, route]\n', "utf-8")
    (pack / "rules.yaml").write_text(
        textwrap.dedent("""\
        rules:
          - id: classify.neighbor
            stage: classify
            when: {keywords: [邻居]}
            then: {category: neighbor}
          - id: classify.homestead
            stage: classify
            when: {keywords: [宅基地]}
            then: {category: homestead}
          - id: route.owner
            stage: route
            then: {owner_department: {lookup: categories.owner}}
        """),
        "utf-8",
    )
    (pack / "cases_test.yaml").write_text(
        textwrap.dedent("""\
        cases:
          - name: neighbor
            complaint: {text: 邻居家的狗}
            expect: {category: neighbor, owner_department: justice}
          - name: nothing matches
            complaint: {text: 路灯坏了}
            expect: {category: unclassified}
        """),
        "utf-8",
    )
    monkeypatch.chdir(tmp_path)
    return pack


def test_coverage_lists_uncovered_rule_and_rows(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["test", "small", "--coverage"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2 passed, 0 failed"
    assert out[1] == "coverage: 2/3 rules, 4/10 table rows"
    rules_line = line_of(small / "rules.yaml", "id: classify.homestead")
    assert f"  small/rules.yaml:{rules_line}: classify.homestead: no case reaches this rule" in out
    tables = small / "tables.yaml"
    for table, row in (
        ("categories", "homestead"),
        ("categories", "labor_dispute"),
        ("departments", "housing"),
        ("departments", "hr_social_security"),
        ("departments", "governance_center"),
        ("exclusions", "judicial"),
    ):
        assert (
            f"  small/tables.yaml:{line_of(tables, row + ':')}: {table}.{row}: no case reaches this table row"
            in out
        )
    # reached rows are not listed: neighbor (the decision's category), justice (its owner), and the
    # unclassified row and petition_bureau department of the case nothing classifies
    assert not [line for line in out if "categories.neighbor" in line or "departments.justice" in line]
    assert not [line for line in out if "categories.unclassified" in line or "petition_bureau" in line]
    assert len(out) == 2 + 1 + 6


def test_fail_uncovered_fails(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["test", "small", "--fail-uncovered"]) == 1
    assert "classify.homestead: no case reaches this rule" in capsys.readouterr().out


def test_a_rule_that_fires_but_changes_nothing_is_not_covered(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # both classify rules match; homestead loses (lower in the file at the same priority): not covered
    with (small / "cases_test.yaml").open("a", encoding="utf-8") as f:
        f.write("  - name: both\n    complaint: {text: 邻居占了宅基地}\n    expect: {category: neighbor}\n")
    assert cli.main(["test", "small", "--coverage"]) == 0
    assert "classify.homestead: no case reaches this rule" in capsys.readouterr().out


def test_coverage_after_new_cases_lists_only_what_is_still_unreached(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (small / "tables.yaml").write_text(
        (small / "tables.yaml")
        .read_text("utf-8")
        .replace("      labor_dispute:", "      # labor_dispute:")
        .replace("      hr_social_security:", "      # hr_social_security:")
        .replace("      governance_center:", "      # governance_center:")
        .replace("      judicial:", "      judicial_x:"),
        "utf-8",
    )
    with (small / "cases_test.yaml").open("a", encoding="utf-8") as f:
        f.write(
            "  - name: homestead\n    complaint: {text: 宅基地}\n    expect: {owner_department: housing}\n"
        )
    capsys.readouterr()
    code = cli.main(["test", "small", "--coverage", "--fail-uncovered"])
    out = capsys.readouterr().out
    # the exclusions row is reached by no decision of this pack: it stays listed
    assert "exclusions.judicial_x: no case reaches this table row" in out
    assert "coverage: 3/3 rules, 6/7 table rows" in out
    assert code == 1


def test_reference_pack_has_full_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["test", str(ROOT / "rules" / "wushen"), "--coverage", "--fail-uncovered"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "no case reaches" not in out
