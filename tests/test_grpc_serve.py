"""`fenliu serve --workers N` under load: a killed worker is replaced, SIGTERM drops no accepted call.

Loopback only; every test is bounded in time (well under 60 s each).
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import grpc
import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.serving import convert
from grpc_helpers import PACK, ServeProcess, established_connections, serve_refused, start_load, stub_for

pytestmark = pytest.mark.slow


def _results(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def test_serve_killed_worker_is_replaced_and_retrying_callers_lose_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "3", "--grace", "5"],
        tmp_path / "serve.log",
    )
    try:
        assert len(sp.worker_pids) == 3
        outs = [tmp_path / f"load{i}.json" for i in range(3)]
        clients = [start_load("load", sp.target, 8.0, f"k{i}", out, channels=3) for i, out in enumerate(outs)]
        time.sleep(2.5)
        port = int(sp.target.rsplit(":", 1)[1])
        held = {pid: established_connections(pid, port) for pid in sp.worker_pids}
        victim = max(held, key=lambda pid: held[pid])
        assert held[victim] > 0, held  # the worker killed is serving callers
        os.kill(victim, signal.SIGKILL)
        (exited,) = sp.wait_for("worker_exited", timeout=10)
        assert exited["worker_pid"] == victim and exited["how"] == "SIGKILL" and exited["level"] == "ERROR"
        ready = sp.wait_for("worker_ready", count=4, timeout=20)
        replacement = ready[-1]["worker_pid"]
        assert replacement not in sp.worker_pids
        for c in clients:
            assert c.wait(40) == 0
        results = _results(outs)
        for r in results:
            assert r["failures"] == [] and r["lost"] == [], r
            assert r["ok"] == r["calls"] > 0
        total = sum(r["ok"] for r in results)
        print(
            f"\n{total} calls, {sum(r['ok_items'] for r in results)} decisions, "
            f"{sum(r['retries'] for r in results)} retries after SIGKILL of one of 3 workers"
        )
        # the replacement serves
        with stub_for(sp.target) as stub:
            c = convert.complaint_to_proto({"id": "after", "text": "邻居家排水"})
            assert stub.Triage(pb.TriageRequest(complaint=c), timeout=10).decision.complaint_id == "after"
        assert sp.stop() == 0
        stopped = sp.events("worker_stopped")
        assert len(stopped) == 3
        assert {e["pid"] for e in stopped} == {*(set(sp.worker_pids) - {victim}), replacement}
    finally:
        sp.kill()
    assert time.monotonic() - started < 60


def test_serve_sigterm_finishes_accepted_calls_and_exits_0(tmp_path: Path) -> None:
    started = time.monotonic()
    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "2", "--grace", "10"],
        tmp_path / "serve.log",
    )
    try:
        # SIGHUP first: every worker reloads its pack (the old one serves meanwhile)
        sp.proc.send_signal(signal.SIGHUP)
        sp.wait_for("reload_requested", timeout=10)
        reloaded = sp.wait_for("pack_reloaded", count=2, timeout=30)
        assert {e["pid"] for e in reloaded} == set(sp.worker_pids)

        outs = [tmp_path / f"gone{i}.json" for i in range(3)]
        clients = [
            start_load("until-gone", sp.target, 20.0, f"t{i}", out, channels=2) for i, out in enumerate(outs)
        ]
        time.sleep(3.5)
        t0 = time.monotonic()
        assert sp.stop(timeout=30) == 0
        stop_s = time.monotonic() - t0
        for c in clients:
            assert c.wait(40) == 0
        results = _results(outs)
        for r in results:
            assert r["broken"] == [], r
        ok = sum(r["ok"] for r in results)
        stopping = sp.events("worker_stopping")
        in_flight = sum(e["in_flight"] for e in stopping)
        assert in_flight > 0  # SIGTERM came while calls were in flight
        stopped = sp.events("worker_stopped")
        assert len(stopped) == 2
        for e in stopped:
            assert e["calls_started"] == e["calls_finished"]
        # every call a worker accepted came back to its caller with a decision
        assert sum(e["calls_started"] for e in stopped) == ok > 0
        assert sp.events("shutdown_complete")
        refused = sum(r["refused"] for r in results)
        print(
            f"\n{ok} calls succeeded ({in_flight} in flight at SIGTERM), {refused} refused after;"
            f" stop took {stop_s:.1f}s"
        )
    finally:
        sp.kill()
    assert time.monotonic() - started < 60


def test_serve_single_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "1"], tmp_path / "serve.log"
    )
    try:
        assert sp.worker_pids == [sp.proc.pid]
        assert f"kill -HUP {sp.proc.pid}" in "\n".join(sp.stdout)
        with stub_for(sp.target) as stub:
            resp = stub.GetRulePack(pb.GetRulePackRequest(), timeout=10)
            assert resp.name == "wushen"
        assert sp.stop() == 0
        (e,) = sp.events("worker_stopped")
        assert e["calls_started"] == e["calls_finished"] == 1
        for line in sp.logs():
            assert {"ts", "level", "event", "pid"} <= set(line)
    finally:
        sp.kill()


def test_serve_bad_pack_exits_nonzero_and_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "pack"
    bad.mkdir()
    (bad / "pack.yaml").write_text("name: broken\nrevision: [\n", encoding="utf-8")
    log = tmp_path / "serve.log"
    with pytest.raises(AssertionError):
        ServeProcess(
            ["--rules", str(bad), "--address", "127.0.0.1:0", "--workers", "2"], log, ready_timeout=30
        )
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert "pack_error" in events and "worker_failed_to_start" in events
    # and in words, once (by the first worker), with the error at its line
    said = [line for line in lines if not line.startswith("{")]
    assert sum("cannot be served (1 error(s)):" in line for line in said) == 1, said
    assert any("pack/pack.yaml:3: -: YAML syntax" in line for line in said), said


def test_a_worker_failing_to_start_waits_for_the_others_still_starting() -> None:
    """The supervisor stops nobody while they start: the first worker, which says why in words,
    may be the last to find the pack bad (a real race, seen when another worker failed first)."""
    import sys

    from fenliu.serving.config import ServeConfig
    from fenliu.serving.supervisor import Supervisor, _Worker

    class Quick(Supervisor):  # workers that are plain processes: one fails at once, one takes a while
        def spawn(self, index: int) -> _Worker:
            parent, child = self.ctx.Pipe(duplex=False)
            target, args = (sys.exit, (2,)) if index == 1 else (time.sleep, (1.5,))
            p = self.ctx.Process(target=target, args=args)
            p.start()
            child.close()
            w = _Worker(index, p, parent, time.monotonic(), pid=p.pid or 0)
            self.workers[index] = w
            return w

    sup = Quick(ServeConfig(), "127.0.0.1:0", 2)
    try:
        assert sup.start_all() is False
        assert [w.process.is_alive() for w in sup.workers.values()] == [False, False]
        assert sup.workers[0].process.exitcode == 0  # ended on its own, not stopped
        assert sup.workers[1].process.exitcode == 2
    finally:
        for w in sup.workers.values():
            w.process.kill()
            w.process.join(5)
        sup.seal.close()


def test_serve_unreachable_after_stop(tmp_path: Path) -> None:
    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "2"], tmp_path / "serve.log"
    )
    try:
        target = sp.target
        assert sp.stop() == 0
    finally:
        sp.kill()
    with stub_for(target) as stub, pytest.raises(grpc.RpcError) as info:
        stub.GetRulePack(pb.GetRulePackRequest(), timeout=2)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_serve_drain_reports_not_serving_and_keeps_serving_before_it_stops(tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "2", "--drain", "3"],
        tmp_path / "serve.log",
    )
    try:
        complaint = convert.complaint_to_proto({"id": "d-1", "text": "拖欠农民工工资"})
        with grpc.insecure_channel(sp.target) as channel:
            health_stub = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.TriageServiceStub(channel)
            check = health_pb2.HealthCheckRequest(service="fenliu.v1.TriageService")
            assert health_stub.Check(check, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            sp.proc.send_signal(signal.SIGTERM)
            sp.wait_for("worker_stopping", count=2, timeout=10)
            # draining: health says NOT_SERVING, and calls are still answered
            assert health_stub.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert stub.Triage(pb.TriageRequest(complaint=complaint), timeout=5).decision.category
            assert sp.proc.poll() is None
        assert sp.proc.wait(30) == 0
        assert all(e["drain_s"] == 3.0 for e in sp.events("worker_stopping"))
    finally:
        sp.kill()


def test_serve_sigterm_to_the_whole_process_group_stops_every_worker_cleanly(tmp_path: Path) -> None:
    """As a terminal or a container runtime does it: every process gets SIGTERM, then the supervisor
    sends its own to workers already stopping. None of them may die of the second one."""
    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "4"],
        tmp_path / "serve.log",
        own_group=True,
    )
    try:
        with stub_for(sp.target) as stub:
            assert stub.GetRulePack(pb.GetRulePackRequest(), timeout=10).name == "wushen"
        os.killpg(sp.proc.pid, signal.SIGTERM)
        assert sp.proc.wait(30) == 0
        exited = sp.events("worker_exited")
        assert len(exited) == 4
        assert [e["exitcode"] for e in exited] == [0, 0, 0, 0]
    finally:
        sp.kill()


def _thread_cpus(pid: int) -> set[str]:
    """The CPUs each thread of ``pid`` may run on, as /proc writes them (``"0"``, ``"0-1"``)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(FileNotFoundError):  # a thread that ended meanwhile
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    out.add(line.split(":", 1)[1].strip())
    return out


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_serve_pin_cpus_pins_every_thread_of_each_worker_and_a_replacement_takes_its_cpu(
    tmp_path: Path,
) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    cpus = [str(c) for c in allowed[:2]] if len(allowed) >= 2 else [str(allowed[0])] * 2
    unpinned = _thread_cpus(os.getpid())  # what this test (and so the supervisor) may run on
    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "2", "--pin-cpus", "auto"],
        tmp_path / "serve.log",
    )
    try:
        pinned = {e["pid"]: str(e["cpu"]) for e in sp.wait_for("worker_pinned", count=2)}
        assert set(pinned) == set(sp.worker_pids)
        assert sorted(pinned.values()) == sorted(cpus)  # worker i on the i-th allowed CPU
        with stub_for(sp.target) as stub:  # load, so that gRPC has started all of its threads
            for i in range(40):
                c = convert.complaint_to_proto({"id": f"pin-{i}", "text": "拖欠农民工工资三个月"})
                assert (
                    stub.Triage(pb.TriageRequest(complaint=c), timeout=10).decision.category == "wage_arrears"
                )
        for pid, cpu in pinned.items():
            assert _thread_cpus(pid) == {cpu}, (pid, _thread_cpus(pid))
        assert _thread_cpus(sp.proc.pid) == unpinned  # the supervisor itself is not pinned
        victim = sp.worker_pids[1]
        os.kill(victim, signal.SIGKILL)
        ready = sp.wait_for("worker_ready", count=3, timeout=30)
        replacement = ready[-1]["worker_pid"]
        again = [e for e in sp.events("worker_pinned") if e["pid"] == replacement]
        assert [str(e["cpu"]) for e in again] == [pinned[victim]]
        assert _thread_cpus(replacement) == {pinned[victim]}
        assert sp.stop() == 0
    finally:
        sp.kill()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_serve_pin_cpus_with_one_worker_pins_the_serving_process(tmp_path: Path) -> None:
    cpu = str(max(os.sched_getaffinity(0)))  # a list, not auto: the last CPU, not the first
    sp = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "1", "--pin-cpus", cpu],
        tmp_path / "serve.log",
    )
    try:
        (e,) = sp.events("worker_pinned")
        assert (e["worker"], str(e["cpu"])) == (0, cpu)
        with stub_for(sp.target) as stub:
            c = convert.complaint_to_proto({"id": "pin-1", "text": "拖欠农民工工资三个月"})
            assert stub.Triage(pb.TriageRequest(complaint=c), timeout=10).decision.category == "wage_arrears"
        assert _thread_cpus(sp.proc.pid) == {cpu}
        assert sp.stop() == 0
    finally:
        sp.kill()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("99999", "CPU 99999 is not one this process may run on"),
        ("0-", "'0-' is not a CPU number or range"),
        ("", "'' is not a CPU number or range"),
    ],
)
def test_serve_pin_cpus_refuses_a_bad_list_before_serving(workers: str, spec: str, says: str) -> None:
    proc = serve_refused("--workers", workers, "--pin-cpus", spec)
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr
    events = [json.loads(line)["event"] for line in proc.stderr.splitlines() if line.startswith("{")]
    assert "pin_cpus_invalid" in events and "worker_started" not in events and "worker_serving" not in events
