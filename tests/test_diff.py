"""``fenliu diff``: two packs that differ in one threshold give exactly the changes it implies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fenliu import Decider, load_pack
from fenliu.authoring.diff import DiffReport, FieldChanges, run_diff
from fenliu.cli import commands as cli

BASE = Path(__file__).resolve().parent / "packs" / "base"
ROOT = Path(__file__).resolve().parent.parent
PEOPLE = [1, 2, 3, 24, 25, 27, 29, 30, 31]


@pytest.fixture()
def packs(tmp_path: Path) -> tuple[Path, Path]:
    old = tmp_path / "old"
    new = tmp_path / "new"
    shutil.copytree(BASE, old)
    shutil.copytree(BASE, new)
    rules = new / "rules.yaml"
    text = rules.read_text("utf-8")
    text = text.replace("{people_involved: {gte: 30}}", "{people_involved: {gte: 25}}")
    rules.write_text(text, "utf-8")
    manifest = new / "pack.yaml"
    manifest.write_text(manifest.read_text("utf-8").replace('revision: "1"', 'revision: "2"'), "utf-8")
    return old, new


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    lines = [
        json.dumps(
            {"id": f"c{n}", "text": f"邻居家的排水流到我家门口，{n}户受影响", "people_involved": n},
            ensure_ascii=False,
        )
        for n in PEOPLE
    ]
    lines += ["", "not json", json.dumps({"id": "bad", "people_involved": -1})]
    lines += [json.dumps({"id": "hint", "category_hint": "homestead", "people_involved": 26})]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_threshold_change_gives_exactly_the_implied_changes(packs: tuple[Path, Path], corpus: Path) -> None:
    old, new = (Decider(load_pack(p)) for p in packs)
    with corpus.open(encoding="utf-8") as f:
        report = run_diff(old, new, f, corpus="corpus.jsonl", examples=2)
    # people 25..29 move from YELLOW to RED (and the homestead hint with 26 people)
    moved = ["c25", "c27", "hint"]
    assert report.complaints == 10
    assert report.invalid == 2 and report.invalid_lines == [11, 12]
    assert report.changed == 4
    changed = {name: fc.changed for name, fc in report.fields.items() if fc.changed}
    assert changed == {"color": 4, "tier": 4, "approach": 4}
    assert dict(report.fields["color"].transitions) == {("YELLOW", "RED"): 4}
    assert dict(report.fields["tier"].transitions) == {("TOWNSHIP", "BANNER"): 4}
    assert dict(report.fields["approach"].transitions) == {("DIVERTED", "JOINT"): 4}
    examples = report.fields["color"].examples[("YELLOW", "RED")]
    assert [cid for cid, _ in examples] == moved[:2]  # --examples 2, in corpus order
    assert examples[0][1].startswith("邻居家的排水")
    rules = {r: (a, b) for r, _, a, b in report.rule_changes()}
    assert rules == {"grade.red.crowd": (2, 6), "route.joint": (2, 6), "route.diverted": (6, 2)}
    assert report.grassroots_old == (8, 10) and report.grassroots_new == (4, 10)
    old.close()
    new.close()


def test_cli_json_and_markdown(
    packs: tuple[Path, Path], corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = packs
    out = tmp_path / "diff.json"
    assert (
        cli.main(
            [
                "diff",
                str(old),
                str(new),
                "--corpus",
                str(corpus),
                "--format",
                "json",
                "--out",
                str(out),
                "--examples",
                "1",
            ]
        )
        == 0
    )
    data = json.loads(out.read_text("utf-8"))
    assert data["old"]["revision"] == "1" and data["new"]["name"] == "base"
    assert data["complaints"] == 10 and data["changed"] == 4 and data["invalid"] == 2
    assert data["fields"]["color"]["transitions"] == [
        {
            "from": "YELLOW",
            "to": "RED",
            "count": 4,
            "examples": [{"id": "c25", "excerpt": "邻居家的排水流到我家门口，25户受影响"}],
        }
    ]
    assert data["fields"]["category"] == {"changed": 0, "transitions": []}
    assert data["grassroots_ratio"] == {"old": 0.8, "new": 0.4}
    assert "4 of 10 decisions change" in capsys.readouterr().err

    assert cli.main(["diff", str(old), str(new), "--corpus", str(corpus), "--examples", "5"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# fenliu diff: base 1 (")
    assert " → base 2 (" in md
    assert "**4 decisions change (40.0%)**" in md
    assert "| color | 4 | 40.0% |" in md
    assert "## color: 4 changed" in md and "| YELLOW | RED | 4 |" in md
    assert "- `c25` YELLOW → RED: 邻居家的排水流到我家门口，25户受影响" in md
    assert "- `hint` YELLOW → RED: (no text; category_hint 'homestead')" in md
    assert "| grade.red.crowd | base | 2 | 6 |" in md
    assert "## category" not in md


def test_cli_identical_packs_change_nothing_and_progress_is_drawn(
    packs: tuple[Path, Path], corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, _ = packs
    assert (
        cli.main(["diff", str(old), str(old), "--corpus", str(corpus), "--progress", "--fail-on-change"]) == 0
    )
    captured = capsys.readouterr()
    assert "**0 decisions change (0.0%)**" in captured.out
    assert "diff [" in captured.err and "13/13" in captured.err


def test_cli_fail_on_change_and_errors(
    packs: tuple[Path, Path], corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = packs
    assert cli.main(["diff", str(old), str(new), "--corpus", str(corpus), "--fail-on-change"]) == 3
    assert cli.main(["diff", str(old), str(new), "--corpus", str(tmp_path / "missing.jsonl")]) == 2
    broken = tmp_path / "broken"
    shutil.copytree(BASE, broken)
    (broken / "rules.yaml").write_text("rules: [\n", "utf-8")
    assert cli.main(["diff", str(old), str(broken), "--corpus", str(corpus)]) == 1
    assert "the pack does not load" in capsys.readouterr().err


def test_parallel_run_matches_single_process(packs: tuple[Path, Path], corpus: Path, tmp_path: Path) -> None:
    old, new = packs
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"d{jobs}.json"
        assert (
            cli.main(
                [
                    "diff",
                    str(old),
                    str(new),
                    "--corpus",
                    str(corpus),
                    "--format",
                    "json",
                    "--out",
                    str(out),
                    "--jobs",
                    jobs,
                ]
            )
            == 0
        )
        data = json.loads(out.read_text("utf-8"))
        data.pop("seconds")
        outs.append(data)
    assert outs[0] == outs[1]


def test_merge_keeps_examples_in_order() -> None:
    from fenliu.domain.model import PackId

    pid = PackId("p", "1", "x")
    a, b = DiffReport(pid, pid, "", 2), DiffReport(pid, pid, "", 2)
    a.fields["color"] = FieldChanges(
        1, __import__("collections").Counter({("A", "B"): 1}), {("A", "B"): [("1", "")]}
    )
    b.fields["color"] = FieldChanges(
        2, __import__("collections").Counter({("A", "B"): 2}), {("A", "B"): [("2", ""), ("3", "")]}
    )
    a.merge(b)
    assert a.fields["color"].changed == 3
    assert a.fields["color"].examples[("A", "B")] == [("1", ""), ("2", "")]


def test_shipped_corpus_runs_on_the_reference_and_example_packs(capsys: pytest.CaptureFixture[str]) -> None:
    corpus = ROOT / "corpus" / "complaints.jsonl"
    assert sum(1 for _ in corpus.open(encoding="utf-8")) >= 2000
    assert (
        cli.main(
            [
                "diff",
                str(ROOT / "rules" / "wushen"),
                str(ROOT / "rules" / "examples" / "galutu"),
                "--corpus",
                str(corpus),
                "--format",
                "json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["invalid"] == 0 and data["complaints"] >= 2000
    assert data["changed"] > 0
    # the township pack only changes colour-driven fields and owners, never the category of a non-heating text
    assert {"color", "owner_department"} <= {k for k, v in data["fields"].items() if v["changed"]}
