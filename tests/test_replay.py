"""Replay on every core: ``fenliu diff``, ``score`` and ``eval`` with worker processes give the output
of one process, byte for byte (the diff's timing and each decision's id and clock aside)."""

from __future__ import annotations

import itertools
import json
import random
import re
import sys
from pathlib import Path

import pytest

from fenliu import Decider, load_pack
from fenliu.authoring import replay
from fenliu.authoring.diff import run_diff
from fenliu.cli import commands as cli

ROOT = Path(__file__).resolve().parent.parent
WUSHEN = ROOT / "rules" / "wushen"
GALUTU = ROOT / "rules" / "examples" / "galutu"
sys.path.insert(0, str(ROOT / "tools"))
import gen_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,500 generated complaints, with blank lines, lines that are not JSON and invalid complaints
    among them, and no newline after the last."""
    rng = random.Random(7)
    lines = [json.dumps(c, ensure_ascii=False) for c in gen_corpus.generate(2500, 11)]
    for at, bad in ((3, ""), (400, "not json"), (1200, '{"id": "x", "people_involved": -1}'), (2000, "  ")):
        lines.insert(at, bad)
    lines.insert(
        rng.randrange(len(lines)),
        json.dumps(
            {"id": "long", "text": "草场被占" * 3000, "received_at": "2026-03-01T09:00:00+08:00"},
            ensure_ascii=False,
        ),
    )
    path = tmp_path_factory.mktemp("replay") / "corpus.jsonl"
    path.write_text("\n".join(lines), "utf-8")
    return path


def test_spans_cover_the_file_in_whole_lines(tmp_path: Path) -> None:
    lines = [f'{{"n": {i}, "t": "{"字" * (i % 50)}"}}' for i in range(1, 3001)]
    lines[10] = '{"t": "' + "长" * 100_000 + '"}'  # one line longer than a span
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines), "utf-8")  # no newline at the end
    parts = replay.spans(path, 2, most=4096)
    assert len(parts) > 16
    assert parts[0].start == 0 and parts[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    got: list[str] = []
    for s in parts:
        chunk = replay.read_span(path, s)
        assert s.first_line == len(got) + 1
        got += chunk
    assert got == lines


@pytest.mark.slow
def test_diff_on_every_core_equals_one_process(corpus: Path, tmp_path: Path) -> None:
    # the one-process report, as fenliu diff --jobs 1 makes it
    old, new = Decider(load_pack(WUSHEN)), Decider(load_pack(GALUTU))
    with corpus.open(encoding="utf-8") as f:
        report = run_diff(old, new, f, corpus=str(corpus))
    old.close()
    new.close()
    assert report.changed > 0 and report.invalid == 2
    outs = {}
    for jobs in ("1", "2"):
        for fmt in ("markdown", "json"):
            out = tmp_path / f"{jobs}.{fmt}"
            args = ["diff", str(WUSHEN), str(GALUTU), "--corpus", str(corpus), "--no-progress"]
            assert cli.main([*args, "--format", fmt, "--out", str(out), "--jobs", jobs]) == 0
            outs[(jobs, fmt)] = out.read_text("utf-8")
    timing = re.compile(r'_Decided by both packs in .*_|"seconds": [0-9.]+')
    for fmt in ("markdown", "json"):
        one, two = (timing.sub("", outs[(j, fmt)]) for j in ("1", "2"))
        assert one == two
    report.seconds = 0.0
    assert timing.sub("", report.to_markdown()) == timing.sub("", outs[("2", "markdown")])


@pytest.mark.slow
def test_score_on_every_core_equals_one_process(capsys: pytest.CaptureFixture[str]) -> None:
    labelled = ROOT / "corpus" / "labelled.jsonl"
    outs = {}
    for jobs in ("1", "2"):
        for extra in ([], ["--json"], ["--split", "test"]):
            assert cli.main(["score", str(WUSHEN), str(labelled), "--jobs", jobs, *extra]) == 0
            outs[(jobs, tuple(extra))] = capsys.readouterr().out
    for extra in ([], ["--json"], ["--split", "test"]):
        assert outs[("1", tuple(extra))] == outs[("2", tuple(extra))]
    assert "accuracy" in outs[("2", ())]


def test_score_names_the_corpus_line_of_a_bad_line(tmp_path: Path) -> None:
    lines = [json.dumps({"id": str(i), "text": "草场被占", "category": "grassland"}) for i in range(30)]
    lines[20] = json.dumps({"id": "20", "text": "no category"})
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(ValueError, match=r"^line 21: a labelled complaint needs a category"):
        replay.score_file(str(WUSHEN), path, split="", jobs=1)


@pytest.mark.slow
def test_eval_on_every_core_equals_one_process(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outs = {}
    for jobs in ("1", "2"):
        for extra in ([], ["--trace"]):
            assert cli.main(["eval", str(WUSHEN), str(corpus), "--jobs", jobs, *extra]) == 1  # bad lines
            outs[(jobs, tuple(extra))] = capsys.readouterr().out
    own = re.compile(r'"(decision_id|decided_at)": "[^"]*"')
    for extra in ([], ["--trace"]):
        one, two = (own.sub("", outs[(j, tuple(extra))]) for j in ("1", "2"))
        assert one == two
    first = outs[("2", ())].splitlines()
    assert len(first) == 2500 + 1 + 2  # every complaint, the long one, the two bad lines (not blank ones)
    (bad,) = [json.loads(x) for x in first if '"not JSON' in x]
    at = corpus.read_text("utf-8").split("\n").index("not json") + 1
    assert bad == {"line": at, "error": "INVALID_ARGUMENT", "message": "not JSON: Expecting value"}


def test_text_memo_derives_what_the_enrichment_derives() -> None:
    from fenliu import complaint_from_dict
    from fenliu.domain.model import DERIVED_FIELDS

    d = Decider(load_pack(WUSHEN))
    memo = replay.TextMemo(d.enrichment, size=3)
    texts = ["草场被占，放牧受阻", "拖欠农民工工资三个月", "邻居家排水淹了院子", "说不清楚的事情"]
    for i in range(40):
        c = complaint_from_dict({"id": f"c{i}", "text": texts[(i // 2) % 4], "people_involved": i % 7 + 1})
        got, want = memo(c), d.enrichment(c)
        assert got.enriched and got.id == c.id and got.people_involved == c.people_involved
        for k in DERIVED_FIELDS:
            assert getattr(got, k) == getattr(want, k), k
        assert got.evidence is not None and want.evidence is not None
        assert got.evidence.suggestions == want.evidence.suggestions
        assert d.decide(got).to_dict()["category"] == d.decide(want).to_dict()["category"]
    assert memo.hits > 0 and memo.misses > 4  # the memo started afresh when full
    d.close()


def test_packs_that_read_text_alike_share_one_enrichment() -> None:
    assert replay.text_signature(load_pack(WUSHEN)) == replay.text_signature(load_pack(GALUTU))
    base = load_pack(ROOT / "tests" / "packs" / "base")
    assert replay.text_signature(base) != replay.text_signature(load_pack(WUSHEN))


@pytest.mark.slow
def test_progress_with_eta_is_drawn_across_workers(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    total = corpus.read_bytes().count(b"\n")
    args = ["diff", str(WUSHEN), str(GALUTU), "--corpus", str(corpus), "--progress", "--jobs", "2"]
    assert cli.main([*args, "--format", "json"]) == 0
    err = capsys.readouterr().err
    assert "diff [" in err and " eta " in err and f"{total:,}/{total:,}" in err
