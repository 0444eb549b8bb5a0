"""Hot reload: a new pack goes live only if it compiles, lints clean and passes its own cases.

Against `fenliu serve --workers 2` under steady load: 200 reloads (good packs, packs with errors and packs
whose own cases fail, mixed); no call fails; every decision comes from a pack that passed its tests; each
refusal is logged with its file:line errors; worker memory stays bounded. And the folder watcher reloads
by itself when a file changes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.serving import convert
from grpc_helpers import PACK, ROOT, ServeProcess

pytestmark = pytest.mark.slow

RELOADS = int(os.environ.get("FENLIU_RELOADS", "200"))


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def _manifest(base: str, kind: str, k: int) -> str:
    if kind == "good":
        return base.replace('revision: "2026.12.1"', f'revision: "good-{k}"')
    if kind == "error":  # a schema error the checker must name with file and line
        return base.replace('revision: "2026.12.1"', f'revision: "error-{k}"').replace(
            "  color: BLUE\n", "  color: PURPLE\n"
        )
    # compiles and lints, but its own cases fail: nothing unclassified any more
    return base.replace('revision: "2026.12.1"', f'revision: "failing-{k}"').replace(
        "  category: unclassified", "  category: neighbor"
    )


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _outcomes(sp: ServeProcess) -> list[dict[str, object]]:
    return [e for e in sp.logs() if e.get("event") in ("pack_reloaded", "pack_reload_failed")]


def test_reload_under_load_never_fails_a_call_and_serves_only_tested_packs(tmp_path: Path) -> None:
    pack = tmp_path / "wushen"
    shutil.copytree(PACK, pack)
    manifest = pack / "pack.yaml"
    base = manifest.read_text("utf-8")
    sp = ServeProcess(
        ["--rules", str(pack), "--address", "127.0.0.1:0", "--workers", "2", "--no-watch"],
        tmp_path / "serve.log",
    )
    stop = tmp_path / "stop"
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "reload_client.py"),
                sp.target,
                str(stop),
                str(tmp_path / f"c{i}.json"),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "service")},
        )
        for i in range(3)
    ]
    try:
        time.sleep(1.0)
        rss_before = {pid: _rss_mb(pid) for pid in sp.worker_pids}
        kinds = ["good", "error", "good", "failing"]
        good: set[str] = {"2026.12.1"}
        expected_events = 0
        started = time.monotonic()
        for k in range(RELOADS):
            kind = kinds[k % len(kinds)]
            _write_atomically(manifest, _manifest(base, kind, k))
            if kind == "good":
                good.add(f"good-{k}")
            sp.proc.send_signal(signal.SIGHUP)
            expected_events += 2  # one outcome per worker
            deadline = time.monotonic() + 60
            while len(_outcomes(sp)) < expected_events:
                assert time.monotonic() < deadline, f"reload {k} did not finish"
                time.sleep(0.05)
        elapsed = time.monotonic() - started
        rss_after = {pid: _rss_mb(pid) for pid in sp.worker_pids}
        stop.touch()
        for c in clients:
            assert c.wait(60) == 0, "a load client failed"
        results = [json.loads((tmp_path / f"c{i}.json").read_text("utf-8")) for i in range(3)]
        outcomes = _outcomes(sp)
        assert sp.stop() == 0
    finally:
        stop.touch()
        for c in clients:
            if c.poll() is None:
                c.kill()
        sp.kill()  # no-op after a clean stop; never leave a server behind a failed test

    # No call failed, and every decision came from a pack that passed its tests.
    for r in results:
        assert r["failures"] == [], r["failures"]
        assert r["calls"] > 0
    seen = {rev for r in results for rev in r["revisions"]}
    assert seen <= good, seen - good
    assert len(seen) > 3  # decisions really came from many successive revisions
    # Refusals are logged with their errors: file:line for the broken manifest, the failing cases otherwise.
    failed = [e for e in outcomes if e["event"] == "pack_reload_failed"]
    assert len(failed) == 2 * (RELOADS // 2)
    assert any("wushen/pack.yaml:" in p and "PURPLE" in p for e in failed for p in e["problems"])  # type: ignore[union-attr]
    assert any("FAIL" in f for e in failed for f in e["failures"])  # type: ignore[union-attr]
    # Memory after all the reloads stays within a stated bound: at most 40 MB more than before.
    for pid, before in rss_before.items():
        assert rss_after[pid] - before < 40, (rss_before, rss_after)
    print(
        f"\n{RELOADS} reloads in {elapsed:.0f} s under load; {sum(r['calls'] for r in results)} calls; "
        f"revisions seen {len(seen)}; RSS {rss_before} -> {rss_after}"
    )


def test_reload_watcher_picks_up_a_changed_file(tmp_path: Path) -> None:
    pack = tmp_path / "wushen"
    shutil.copytree(PACK, pack)
    sp = ServeProcess(
        ["--rules", str(pack), "--address", "127.0.0.1:0", "--workers", "2"], tmp_path / "serve.log"
    )
    try:
        sp.wait_for("watch_started", timeout=20)
        manifest = pack / "pack.yaml"
        _write_atomically(
            manifest, manifest.read_text("utf-8").replace('revision: "2026.12.1"', 'revision: "watched-1"')
        )
        sp.wait_for("pack_reloaded", count=2, timeout=60)
        with grpc.insecure_channel(sp.target) as channel:
            stub = pb_grpc.TriageServiceStub(channel)
            complaint = convert.complaint_to_proto({"id": "w1", "text": "邻居排水"})
            revs = {
                stub.Triage(pb.TriageRequest(complaint=complaint), timeout=10).decision.rule_pack.revision
                for _ in range(20)
            }
        assert revs == {"watched-1"}
        # A broken edit is refused and the old pack keeps serving.
        _write_atomically(
            manifest, manifest.read_text("utf-8").replace("  color: BLUE\n", "  color: PURPLE\n")
        )
        sp.wait_for("pack_reload_failed", count=2, timeout=60)
        with grpc.insecure_channel(sp.target) as channel:
            stub = pb_grpc.TriageServiceStub(channel)
            assert (
                stub.Triage(pb.TriageRequest(complaint=complaint), timeout=10).decision.rule_pack.revision
                == "watched-1"
            )
    finally:
        assert sp.stop() == 0
