"""The rule author's CLI, run as a real process: check, test, eval."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, WUSHEN

FENLIU = [sys.executable, "-m", "fenliu.cli"]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FENLIU, *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_cli_check_reference_pack_exits_zero() -> None:
    p = run("check", str(WUSHEN))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok: wushen" in p.stdout


def test_cli_test_reference_pack_has_full_coverage() -> None:
    p = run("test", str(WUSHEN), "--coverage", "--fail-uncovered")
    assert p.returncode == 0, p.stdout
    assert "0 failed" in p.stdout
    assert re.search(r"coverage: (\d+)/\1 rules, (\d+)/\2 table rows", p.stdout), p.stdout
    assert "no case reaches" not in p.stdout


def test_cli_eval_one_json_complaint() -> None:
    complaint = {
        "id": "c-1",
        "text": "老板拖欠我们农民工工资",
        "people_involved": 12,
        "received_at": "2026-03-01T09:00:00+08:00",
    }
    p = run("eval", str(WUSHEN), "-", stdin=json.dumps(complaint, ensure_ascii=False))
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["complaint_id"] == "c-1"
    assert (d["category"], d["color"], d["tier"], d["approach"]) == ("wage_arrears", "RED", "BANNER", "JOINT")
    assert d["deadlines"]["first_contact_by"] == "2026-03-01T11:00:00+08:00"
    assert "trace" not in d


def test_cli_eval_json_lines_with_trace_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "text": "邻居排水"}, ensure_ascii=False),
        "{not json",
        json.dumps({"id": "b", "people_involved": -1, "intent": "SHOUT", "text": 3}),
        json.dumps({"id": "c", "category_hint": "labor_dispute", "intent": "LITIGATION"}),
    ]
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(lines) + "\n", "utf-8")
    p = run("eval", str(WUSHEN), str(f), "--trace")
    assert p.returncode == 2  # some complaints were refused
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert out[0]["complaint_id"] == "a" and out[0]["category"] == "neighbor"
    assert out[0]["trace"][0]["rule"] == "classify.agree"  # the lexicon's best, named by the model too
    assert out[1]["error"] == "INVALID_ARGUMENT" and out[1]["line"] == 2
    assert {v["field"] for v in out[2]["field_violations"]} == {"people_involved", "intent", "text"}
    assert out[2]["complaint_id"] == "b"
    assert out[3]["stage"] == "ARBITRATE" and out[3]["statutory_route"]
    assert all(t["source"].startswith("wushen/") for t in out[3]["trace"])
    assert "Traceback" not in p.stderr


def test_cli_eval_missing_id_and_text_is_named() -> None:
    p = run("eval", str(WUSHEN), stdin=json.dumps({"title": "x"}))
    err = json.loads(p.stdout)
    assert {v["field"] for v in err["field_violations"]} == {"id", "text"}


def test_cli_check_broken_pack_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text("name: broken\nrevision: 1\n", "utf-8")
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - id: x\n    stage: nowhere\n    then: {colour: RED}\n", "utf-8"
    )
    p = run("check", str(tmp_path))
    assert p.returncode == 1
    assert "r.yaml:3: x: stage 'nowhere'" in p.stdout
    assert "r.yaml:4: x: then: 'colour' is not a decision field; did you mean 'color'?" in p.stdout
    assert "missing-table" in p.stdout


def test_cli_eval_received_at_past_the_deadlines_range_one_line_no_traceback() -> None:
    lines = [
        json.dumps({"id": "late", "text": "拖欠工资", "received_at": "9999-12-17T00:00:00Z"}),
        json.dumps({"id": "early", "text": "拖欠工资", "received_at": "0001-01-01T00:00:00+08:00"}),
        json.dumps({"id": "ok", "text": "拖欠工资", "received_at": "9999-09-30T12:00:00Z"}),
    ]
    p = run("eval", str(WUSHEN), stdin="\n".join(lines))
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    late, early, ok = (json.loads(x) for x in p.stdout.splitlines())
    for err in (late, early):
        assert err["error"] == "INVALID_ARGUMENT"
        assert [v["field"] for v in err["field_violations"]] == ["received_at"]
    assert ok["deadlines"]["resolve_by"].startswith("9999-10-15")


def test_cli_eval_unreadable_input_one_clear_line(tmp_path: Path) -> None:
    binary = tmp_path / "bad.json"
    binary.write_bytes(b"\xff\xfe{")
    for target, why in ((tmp_path / "missing.json", "No such file"), (binary, "not UTF-8")):
        p = run("eval", str(WUSHEN), str(target))
        assert p.returncode == 2
        assert p.stdout == "" and "Traceback" not in p.stderr
        assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"fenliu eval: cannot read {target}")
        assert why in p.stderr
    p = run("eval", str(WUSHEN), stdin="[" * 100_000)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert json.loads(p.stdout)["error"] == "INVALID_ARGUMENT"


def test_cli_call_unusable_input_one_line_no_traceback(tmp_path: Path) -> None:
    for args in (
        ["--tls-ca", str(tmp_path / "missing.pem"), '{"id": "x", "text": "邻居"}'],
        ['{"id": "x", "text": "邻居", "received_at": "0001-01-01T00:00:00+08:00"}'],
        ["[" * 100_000],
    ):
        p = run("call", "--address", "127.0.0.1:1", "--timeout", "1", *args)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert json.loads(p.stderr)["error"].startswith("cannot read")
