"""Reload status where authors look: GetRulePack carries the last reload attempt, `fenliu status` prints it.

A real `fenliu serve` on a copy of the reference pack: a refused reload names its problems and the files
that changed, and the old pack keeps serving (status exits 1); a pack whose rules changed under the same
revision loads with a warning; a SIGHUP on an unchanged folder says so.
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

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from grpc_helpers import PACK, ROOT, ServeProcess


def _status(target: str, *extra: str, lang: str = "en") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LANGUAGE": lang}
    return subprocess.run(
        [sys.executable, "-m", "fenliu.cli", "status", target, *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def _last(target: str) -> pb.GetRulePackResponse:
    with grpc.insecure_channel(target) as ch:
        resp: pb.GetRulePackResponse = pb_grpc.TriageServiceStub(ch).GetRulePack(
            pb.GetRulePackRequest(), timeout=10
        )
    return resp


def test_reload_status_in_get_rule_pack_and_fenliu_status(tmp_path: Path) -> None:
    pack = tmp_path / "wushen"
    shutil.copytree(PACK, pack)
    sp = ServeProcess(
        ["--rules", str(pack), "--address", "127.0.0.1:0", "--workers", "1", "--no-watch"], tmp_path / "s.log"
    )
    try:
        first = _last(sp.target)
        assert first.last_reload.outcome == pb.RELOAD_OUTCOME_LOADED
        assert first.last_reload.pack.digest == first.digest and not first.last_reload.problems
        ok = _status(sp.target)
        assert ok.returncode == 0, ok.stderr
        assert f"serving: wushen {first.revision} ({first.digest})" in ok.stdout
        assert "last reload:" in ok.stdout and "loaded: this pack now serves" in ok.stdout

        # a refused reload: a full-width colon typed into one rule file
        f = pack / "grade.yaml"
        good = f.read_text("utf-8")
        f.write_text(good.replace("    stage: grade", "    stage：grade", 1), "utf-8")
        sp.proc.send_signal(signal.SIGHUP)
        sp.wait_for("pack_refused", timeout=60)
        refused = _last(sp.target)
        assert refused.digest == first.digest  # the old pack keeps serving
        last = refused.last_reload
        assert last.outcome == pb.RELOAD_OUTCOME_REFUSED
        assert list(last.changed_files) == ["grade.yaml"]
        assert any("grade.yaml:" in p and "[ime-punctuation]" in p for p in last.problems), last.problems
        st = _status(sp.target)
        assert st.returncode == 1
        assert "refused: the pack above keeps serving" in st.stdout and "changed: grade.yaml" in st.stdout
        zh = _status(sp.target, lang="zh_CN")
        assert "已拒绝" in zh.stdout and "grade.yaml" in zh.stdout, zh.stdout
        as_json = json.loads(_status(sp.target, "--json").stdout)
        assert as_json["last_reload"]["outcome"] == "RELOAD_OUTCOME_REFUSED"

        # the rules change but the revision does not: loaded, with a warning
        f.write_text(good.replace("description:", "description: （改）", 1), "utf-8")
        sp.proc.send_signal(signal.SIGHUP)
        sp.wait_for("pack_revision_kept", timeout=60)
        kept = _last(sp.target)
        assert kept.digest != first.digest and kept.revision == first.revision
        assert kept.last_reload.outcome == pb.RELOAD_OUTCOME_LOADED
        assert list(kept.last_reload.changed_files) == ["grade.yaml"]
        assert "revision stayed" in kept.last_reload.warnings[0]
        assert "warning: the rules changed but the revision stayed" in _status(sp.target).stdout

        # nothing changed: said so
        sp.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while _last(sp.target).last_reload.outcome != pb.RELOAD_OUTCOME_UNCHANGED:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert _status(sp.target).returncode == 0
    finally:
        sp.stop()
        sp.kill()


def test_status_of_nothing_listening_is_one_line() -> None:
    p = _status("127.0.0.1:1", "--timeout", "2")
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("fenliu status: cannot ask 127.0.0.1:1:")
    assert "Traceback" not in p.stderr
