"""`fenliu serve` with metrics and a decision log, end to end, and personal data kept out of everything.

Complaints carrying a complainant's name, id number and phone go through the real server (valid ones and
rejected ones); none of those values may appear in the decision log, the metrics, the server's logs, or
any error a client receives.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.serving import convert
from grpc_helpers import PACK, ServeProcess, serve_refused

pytestmark = pytest.mark.slow

NAME, ID_NUMBER, PHONE = "乌兰其其格", "150626199012301234", "13947712345"
PERSON = {"name": NAME, "id_number": ID_NUMBER, "phone": PHONE}
SECRETS = [NAME, ID_NUMBER, PHONE, "1994771", "19901230"]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode("utf-8"))


def _metric(text: str, metric: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_serve_with_metrics_and_decision_log_keeps_personal_data_out(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    os.environ["FENLIU_DECISION_LOG_KEY"] = "k" * 32
    try:
        sp = ServeProcess(
            [
                "--rules",
                str(PACK),
                "--address",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--metrics-address",
                "127.0.0.1:0",
                "--decision-log",
                str(log_path),
            ],
            tmp_path / "serve.log",
        )
    finally:
        del os.environ["FENLIU_DECISION_LOG_KEY"]
    errors: list[str] = []
    try:
        (serving,) = sp.wait_for("metrics_serving", timeout=20)
        port = int(serving["port"])  # type: ignore[arg-type]
        with grpc.insecure_channel(sp.target) as channel:
            stub = pb_grpc.TriageServiceStub(channel)
            for i in range(30):
                c = convert.complaint_to_proto(
                    {
                        "id": f"ok-{i}",
                        "text": f"{NAME}反映拖欠农民工工资，电话{PHONE}",
                        "people_involved": 12,
                        "complainant": PERSON,
                    }
                )
                d = stub.Triage(pb.TriageRequest(complaint=c, include_trace=True), timeout=10).decision
                assert d.category == "wage_arrears"
            for i in range(10):
                bad = convert.complaint_to_proto(
                    {"id": f"bad-{i}", "complainant": PERSON, "people_involved": 3}
                )
                with pytest.raises(grpc.RpcError) as exc:
                    stub.Triage(pb.TriageRequest(complaint=bad), timeout=10)
                assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                errors.append(str(exc.value.details()) + repr(exc.value.trailing_metadata()))
            reqs = [
                pb.TriageStreamRequest(
                    complaint=convert.complaint_to_proto(
                        {"id": f"s-{k}", "text": "邻居排水" if k % 2 else "", "complainant": PERSON}
                    )
                )
                for k in range(6)
            ]
            items = list(stub.TriageStream(iter(reqs), timeout=10))
            errors += [str(it.error) for it in items if it.HasField("error")]
            assert len(items) == 6 and len(errors) == 13

        # Metrics from both workers, summed by the supervisor's endpoint (poll: workers write asynchronously).
        deadline = time.monotonic() + 20
        while True:
            text = _scrape(port)
            if (
                _metric(text, "fenliu_decisions_total", category="wage_arrears") >= 30
                or time.monotonic() > deadline
            ):
                break
            time.sleep(0.2)
        assert (
            _metric(text, "fenliu_decisions_total", category="wage_arrears", color="RED", tier="BANNER") == 30
        )
        assert _metric(text, "grpc_server_handled_total", grpc_method="Triage", grpc_code="OK") == 30
        assert (
            _metric(text, "grpc_server_handled_total", grpc_method="Triage", grpc_code="INVALID_ARGUMENT")
            == 10
        )
        assert _metric(text, "fenliu_rule_firings_total", rule="classify.agree") >= 30
        assert _metric(text, "fenliu_pack_info", name="wushen", revision="2026.12.1") >= 1

        # A reload is counted; a killed worker is counted as a restart.
        sp.proc.send_signal(signal.SIGHUP)
        sp.wait_for("pack_reloaded", count=2, timeout=60)
        victim = sp.worker_pids[0]
        os.kill(victim, signal.SIGKILL)
        sp.wait_for("worker_ready", count=3, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = _scrape(port)
            if (
                _metric(text, "fenliu_worker_restarts_total") >= 1
                and _metric(text, "fenliu_pack_reloads_total", outcome="ok") >= 2
            ):
                break
            time.sleep(0.2)
        assert _metric(text, "fenliu_pack_reloads_total", outcome="ok") >= 2
        assert _metric(text, "fenliu_worker_restarts_total") >= 1
    finally:
        assert sp.stop() == 0
    server_log = sp.log_path.read_text("utf-8")
    decision_log = log_path.read_text("utf-8")
    entries = [json.loads(line) for line in decision_log.splitlines()]
    assert len(entries) >= 33  # 30 unary and 3 stream decisions
    assert all(
        e["complaint"]["complainant"]["name"].startswith("hmac:")
        for e in entries
        if e["complaint"].get("complainant")
    )
    for secret in SECRETS[:3]:
        assert secret not in text, f"personal data in metrics: {secret}"
        assert secret not in server_log, f"personal data in server log: {secret}"
        for err in errors:
            assert secret not in err, f"personal data in an error: {secret}"
    # The citizen's words, which here carry the name and the phone, are logged as lengths only
    # (unless --decision-log-keep-text); the complainant's own fields are never written in clear.
    assert NAME not in decision_log and PHONE not in decision_log and ID_NUMBER not in decision_log
    assert all("text" not in e["complaint"] for e in entries)
    assert any(e["complaint"].get("text_length", 0) > 0 for e in entries)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_decision_log_without_key(tmp_path: Path, workers: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FENLIU_DECISION_LOG_KEY"}
    proc = serve_refused("--workers", workers, "--decision-log", str(tmp_path / "d.jsonl"), env=env)
    assert proc.returncode == 2
    assert "needs a hash key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "d.jsonl").exists()
