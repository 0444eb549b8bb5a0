"""Reloads under attack, against a real `fenliu serve`: a reload storm, a folder replaced the usual ways.

* A storm: 100 triggers in 10 s (a new revision written, then SIGHUP, with the watcher on too) cost
  each worker at most 3 reloads, and the served pack matches the disk within 2 s of the last trigger.
* The watcher survives the folder being replaced (``rm -rf`` + ``cp -r``, ``mv`` + ``cp``, a symlink
  swap, ``git checkout`` of another revision), logs when it re-arms, and later edits are picked up.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from datetime import datetime
from pathlib import Path

import grpc
import pytest

from fenliu import convert
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from grpc_helpers import PACK, ServeProcess

pytestmark = pytest.mark.slow

REVISION = 'revision: "2026.11.1"'


def _set_revision(pack: Path, revision: str) -> None:
    manifest = pack / "pack.yaml"
    text = manifest.read_text("utf-8")
    head, _, rest = text.partition("revision: ")
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(head + f'revision: "{revision}"' + rest[rest.index("\n") :], "utf-8")
    os.replace(tmp, manifest)


def _revisions(target: str, calls: int = 8) -> set[str]:
    """The revisions that answer ``calls`` calls, each on a new connection (so both workers answer)."""
    seen = set()
    complaint = convert.complaint_to_proto({"id": "r1", "text": "邻居排水"})
    for _ in range(calls):
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = pb_grpc.TriageServiceStub(channel)
            resp = stub.Triage(pb.TriageRequest(complaint=complaint), timeout=10)
            seen.add(resp.decision.rule_pack.revision)
    return seen


def _ts(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


def test_reload_storm_is_coalesced_and_the_last_revision_is_served(tmp_path: Path) -> None:
    pack = tmp_path / "wushen"
    shutil.copytree(PACK, pack)
    sp = ServeProcess(
        ["--rules", str(pack), "--address", "127.0.0.1:0", "--workers", "2"], tmp_path / "serve.log"
    )
    try:
        sp.wait_for("watch_started", timeout=20)
        threads_before = {pid: _threads(pid) for pid in sp.worker_pids}
        started = time.monotonic()
        for k in range(100):
            _set_revision(pack, f"storm-{k}")
            sp.proc.send_signal(signal.SIGHUP)
            time.sleep(max(0.0, started + (k + 1) * 0.1 - time.monotonic()))
        last_trigger = time.time()
        storm_s = time.monotonic() - started
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            done = [e for e in sp.events("pack_reloaded") if e.get("revision") == "storm-99"]
            if {e["pid"] for e in done} >= set(sp.worker_pids):
                break
            time.sleep(0.05)
        assert _revisions(sp.target) == {"storm-99"}
        threads_after = {pid: _threads(pid) for pid in sp.worker_pids}
        time.sleep(1.0)  # nothing more is pending
        runs = sp.events("pack_reloaded") + sp.events("pack_reload_failed")
    finally:
        assert sp.stop() == 0
    assert storm_s < 11
    per_worker = {pid: [e for e in runs if e["pid"] == pid] for pid in sp.worker_pids}
    for pid, events in per_worker.items():
        assert 1 <= len(events) <= 3, (pid, [(e["revision"], e.get("triggers")) for e in events])
        final = [e for e in events if e.get("revision") == "storm-99"]
        assert final and _ts(final[0]) - last_trigger < 2.0, (pid, events)
    for pid in sp.worker_pids:
        assert threads_after[pid] <= threads_before[pid] + 2, (threads_before, threads_after)
    print(
        f"\n100 triggers in {storm_s:.1f} s: reloads per worker "
        f"{ {pid: len(e) for pid, e in per_worker.items()} }, last served "
        f"{ {pid: round(_ts(e[-1]) - last_trigger, 2) for pid, e in per_worker.items()} } s after the last"
    )


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")
