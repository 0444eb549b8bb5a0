"""A real Prometheus scrapes a running fenliu and answers queries about its decisions.

A small "supervisor" process (the fixture below) switches fenliu.serving.metrics to multiprocess mode, serves
the metrics endpoint, and spawns two workers. Each worker loads the Wushen pack and serves the real
gRPC service (``fenliu.serving.server.create_server``) with a ``Metrics``'s ``observer`` and
``server_interceptor()``. The test sends complaints over gRPC, starts ``prometheus`` (random
port on 127.0.0.1, temporary storage, 1 s scrape and rule evaluation, the project's recording and
alert rules), and reads back through ``/api/v1/query``: the number of decisions, the gRPC call count,
the grassroots ratio from its recording rule, the pack in service, and every dashboard query.

Needs Debian's ``prometheus`` package: ``bash scripts/install-prometheus.sh`` (run by make test).
Bounded: 60 s for Prometheus to show the expected values; everything started is stopped.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.serving import convert

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "rules" / "wushen"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "fenliu-dashboard.json"
DEADLINE_S = 60.0

pytestmark = pytest.mark.timeout(240)

#: Spread over tiers (village, township, banner) and exclusions, with personal data on each.
COMPLAINTS: list[dict[str, Any]] = [
    {"id": "v1", "text": "邻居家排水堵了我家的通道"},
    {"id": "v2", "text": "赡养老人问题"},
    {"id": "v3", "text": "小区物业乱收费"},
    {"id": "t1", "text": "老板拖欠农民工工资", "people_involved": 5},
    {"id": "t2", "text": "草场边界纠纷，网围栏被拆", "cross_village": True},
    {"id": "b1", "text": "征地补偿款没有发放", "people_involved": 40},
    {"id": "b2", "text": "医院手术误诊", "extreme_risk": True},
    {"id": "x1", "text": "举报村干部贪污", "intent": "REPORT"},
    {
        "id": "x2",
        "text": "案件已经起诉到法院",
        "category_hint": "neighbor",
        "procedure": "LITIGATION_PENDING",
    },
]
PERSON = {"name": "巴特尔", "id_number": "150627198001010011", "phone": "13947700000"}

SUPERVISOR = textwrap.dedent(
    """
    import json, multiprocessing, os, sys

    def worker(pack, ports, stop):
        from fenliu.serving import metrics, server
        from fenliu import Triage
        triage = Triage.from_path(pack)
        m = metrics.Metrics()
        m.watch(triage)
        srv, port = server.create_server(
            "127.0.0.1:0", metrics.TimedTriage(triage, m),
            observers=[m.observer], interceptors=[m.server_interceptor()],
        )
        srv.start()
        ports.put(port)
        parent = os.getppid()
        while not stop.wait(0.5) and os.getppid() == parent:  # never outlive the supervisor
            pass
        srv.stop(0).wait()

    if __name__ == "__main__":
        from fenliu.serving import metrics
        directory, pack = sys.argv[1], sys.argv[2]
        m = metrics.prepare_multiprocess(directory)
        http, port = m.start_http("127.0.0.1:0")
        ctx = multiprocessing.get_context("spawn")
        ports, stop = ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=worker, args=(pack, ports, stop)) for _ in range(2)]
        for p in procs:
            p.start()
        grpc_ports = [ports.get(timeout=60) for _ in procs]
        print(json.dumps({"metrics_port": port, "grpc_ports": grpc_ports}), flush=True)
        sys.stdin.readline()
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
            m.mark_worker_dead(p.pid)
        http.shutdown()
    """
)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not installed: run `bash scripts/install-prometheus.sh` (installs Debian's "
            "prometheus package; make test does it first)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(p: subprocess.Popen[Any], timeout: float = 10) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@dataclass
class Fenliu:
    metrics_port: int
    grpc_ports: list[int]


@pytest.fixture
def fenliu(tmp_path: Path) -> Iterator[Fenliu]:
    script = tmp_path / "supervisor.py"
    script.write_text(SUPERVISOR)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "multiproc"), str(PACK)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE_S)
        line = proc.stdout.readline() if ready else ""
        if not line:
            stop_process(proc)
            pytest.fail(f"fenliu did not start: {proc.stderr.read()[-3000:] if proc.stderr else ''}")
        info = json.loads(line)
        yield Fenliu(info["metrics_port"], info["grpc_ports"])
    finally:
        if proc.stdin is not None:
            try:
                proc.stdin.write("\n")
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            stop_process(proc)


@dataclass
class Prometheus:
    port: int
    proc: subprocess.Popen[str]

    def query(self, expr: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body: dict[str, Any] = json.loads(r.read())
        return body

    def value(self, expr: str) -> float | None:
        res = self.query(expr)["data"]["result"]
        if not res:
            return None
        return float(res[0]["value"][1])

    def wait_for(self, expr: str, ok: Callable[[float | None], bool], deadline: float) -> float | None:
        v: float | None = None
        while time.monotonic() < deadline:
            v = self.value(expr)
            if ok(v):
                return v
            time.sleep(0.25)
        pytest.fail(f"Prometheus never showed the expected value of {expr!r} (last: {v})")


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    started: list[subprocess.Popen[str]] = []

    def start(target_port: int) -> Prometheus:
        exe = need("prometheus")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": "fenliu", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
                    ],
                }
            )
        )
        for _attempt in range(3):
            port = free_port()
            log = (tmp_path / f"prometheus-{port}.log").open("w")
            proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / f'tsdb-{port}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            started.append(proc)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                        if r.status == 200:
                            return Prometheus(port, proc)
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                time.sleep(0.2)
            stop_process(proc)
        log_text = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("prometheus-*.log"))
        pytest.fail(f"prometheus did not become ready:\n{log_text}")

    try:
        yield start
    finally:
        for p in started:
            stop_process(p)


def triage_all(ports: list[int]) -> list[dict[str, Any]]:
    """Send every complaint once, spread over the workers, half unary and half in one stream each;
    plus one invalid complaint. Returns the decisions."""
    decisions: list[dict[str, Any]] = []
    for n, port in enumerate(ports):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.TriageServiceStub(ch)
            mine = [dict(c, complainant=PERSON) for i, c in enumerate(COMPLAINTS) if i % len(ports) == n]
            unary, streamed = mine[: len(mine) // 2], mine[len(mine) // 2 :]
            for c in unary:
                r = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(c)), timeout=30)
                decisions.append(convert.decision_from_proto(r.decision))
            reqs = [pb.TriageStreamRequest(complaint=convert.complaint_to_proto(c)) for c in streamed]
            for item in stub.TriageStream(iter(reqs), timeout=30):
                assert item.WhichOneof("result") == "decision"
                decisions.append(convert.decision_from_proto(item.decision))
            with pytest.raises(grpc.RpcError) as bad:
                stub.Triage(pb.TriageRequest(complaint=pb.Complaint()), timeout=30)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(decisions) == len(COMPLAINTS)
    return decisions


def equals(want: float) -> Callable[[float | None], bool]:
    return lambda v: v == want


def dashboard_queries() -> list[str]:
    d = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    subst = {"$__rate_interval": "5s", "$__range": "1h", "$__interval": "1s", "$job": ".*", "$instance": ".*"}
    out = []
    for e in exprs:
        for k, v in sorted(subst.items(), key=lambda kv: -len(kv[0])):
            e = e.replace(k, v)
        out.append(e)
    return out


def test_prometheus_scrapes_fenliu_and_reads_decisions_back(
    fenliu: Fenliu, prometheus_for: Callable[[int], Prometheus]
) -> None:
    first = triage_all(fenliu.grpc_ports)  # before Prometheus starts: its first sample holds them all
    n = len(first)
    kept = [d for d in first if not d["excluded"]]
    ratio = sum(d["tier"] in ("VILLAGE", "TOWNSHIP") for d in kept) / len(kept)
    assert 0 < ratio < 1 and len(kept) < n  # the mix reaches every tier and some exclusions

    prom = prometheus_for(fenliu.metrics_port)
    deadline = time.monotonic() + DEADLINE_S
    prom.wait_for('up{job="fenliu"}', lambda v: v == 1, deadline)
    prom.wait_for("sum(fenliu_decisions_total)", lambda v: v == n, deadline)

    second = triage_all(fenliu.grpc_ports)  # the same again: now rates are defined
    assert [d["tier"] for d in second] == [d["tier"] for d in first]
    assert prom.wait_for("sum(fenliu_decisions_total)", lambda v: v == 2 * n, deadline) == 2 * n
    assert prom.wait_for(
        'sum(fenliu_decisions_total{excluded="false"})', lambda v: v == 2 * len(kept), deadline
    )

    unary = sum(len(COMPLAINTS[i :: len(fenliu.grpc_ports)]) // 2 for i in range(len(fenliu.grpc_ports)))
    svc = 'grpc_service="fenliu.v1.TriageService"'
    for expr, want in (
        (f'sum(grpc_server_handled_total{{{svc},grpc_type="unary",grpc_code="OK"}})', 2 * unary),
        (f'sum(grpc_server_handled_total{{{svc},grpc_code="INVALID_ARGUMENT"}})', 2 * len(fenliu.grpc_ports)),
        (
            f'sum(grpc_server_handled_total{{{svc},grpc_type="bidi_stream",grpc_code="OK"}})',
            2 * len(fenliu.grpc_ports),
        ),
        (f'sum(grpc_server_msg_sent_total{{{svc},grpc_type="bidi_stream"}})', 2 * (n - unary)),
        (f"sum(grpc_server_started_total{{{svc}}})", 2 * (unary + 2 * len(fenliu.grpc_ports))),
        (f"sum(grpc_server_handling_seconds_count{{{svc}}})", 2 * (unary + 2 * len(fenliu.grpc_ports))),
        ('sum(fenliu_decision_errors_total{grpc_code="INVALID_ARGUMENT"})', 2 * len(fenliu.grpc_ports)),
    ):
        assert prom.wait_for(expr, equals(want), deadline) == want

    # the recording rule gives the grassroots ratio of what was decided
    got = prom.wait_for(
        "fenliu:grassroots_ratio:rate1d", lambda v: v is not None and abs(v - ratio) < 1e-9, deadline
    )
    assert got == pytest.approx(ratio, abs=1e-9)

    # the pack in service, and the engine-time histogram
    info = prom.query('fenliu_pack_info{job="fenliu"} == 1')["data"]["result"]
    assert len(info) == 1 and info[0]["metric"]["name"] == "wushen"
    assert info[0]["metric"]["revision"] == first[0]["rule_pack"]["revision"]
    assert prom.value("fenliu_pack_loaded") == 1
    assert prom.value("sum(fenliu_decision_seconds_count)") == 2 * n

    # nothing personal reached Prometheus: ask for every label value it knows
    with urllib.request.urlopen(f"http://127.0.0.1:{prom.port}/api/v1/labels", timeout=10) as r:
        labels = json.loads(r.read())["data"]
    values = set()
    for label in labels:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{prom.port}/api/v1/label/{label}/values", timeout=10
        ) as r:
            values.update(json.loads(r.read())["data"])
    for secret in PERSON.values():
        assert not any(secret in v for v in values)

    # every dashboard query is accepted by a real Prometheus
    for expr in dashboard_queries():
        body = prom.query(expr)
        assert body["status"] == "success", (expr, body)
