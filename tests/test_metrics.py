"""fenliu.serving.metrics: decision and pack metrics, label hygiene, the gRPC interceptor, several processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fenliu import Decision, Triage, complaint_from_dict
from fenliu.domain.model import Given, PackId, TraceEntry
from fenliu.serving import metrics

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "rules" / "wushen"

#: Complaints that reach many categories, colours, tiers, stages and every exclusion.
COMPLAINTS: list[dict[str, Any]] = [
    {"id": "c1", "text": "邻居家排水堵了我家的通道"},
    {"id": "c2", "text": "老板拖欠农民工工资三个月", "people_involved": 12},
    {"id": "c3", "text": "草场边界纠纷，网围栏被拆", "cross_village": True},
    {"id": "c4", "text": "征地补偿款没有发放", "people_involved": 40},
    {"id": "c5", "text": "公司违法辞退我", "intent": "LITIGATION"},
    {
        "id": "c6",
        "text": "案件已经起诉到法院",
        "category_hint": "neighbor",
        "procedure": "LITIGATION_PENDING",
    },
    {"id": "c7", "text": "举报村干部贪污", "intent": "REPORT"},
    {"id": "c8", "text": "宅基地纠纷", "procedure": "REVIEW_TERMINATED"},
    {"id": "c9", "text": "小区物业乱收费", "existing_case_id": "CASE-1"},
    {"id": "c10", "text": "说不清楚的事情"},
    {"id": "c11", "text": "赡养老人问题", "vulnerable": True, "repeat_visits": 1},
    {"id": "c12", "text": "医院手术误诊", "extreme_risk": True},
]


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage.from_path(PACK)


@pytest.fixture
def m() -> metrics.Metrics:
    """A test's own metrics, in a registry of their own."""
    assert metrics.MULTIPROC_ENV not in os.environ, "a test left multiprocess mode on"
    return metrics.Metrics()


def decisions(triage: Triage) -> list[Decision]:
    return [triage.decide(complaint_from_dict(c)) for c in COMPLAINTS]


def samples(m: metrics.Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one sample name (e.g. ``fenliu_decisions_total``) in the current exposition."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(m: metrics.Metrics, name: str, **match: str) -> float:
    return sum(v for k, v in samples(m, name).items() if all(dict(k).get(a) == b for a, b in match.items()))


# ----------------------------------------------------------------------------------------------------
# Decisions


def test_observe_decision_counts_every_decision_with_its_codes(triage: Triage, m: metrics.Metrics) -> None:
    ds = decisions(triage)
    for d in ds:
        m.observe_decision(d)
    got = samples(m, "fenliu_decisions_total")
    assert sum(got.values()) == len(ds)
    for d in ds:
        o = d.outcome
        want = {
            "category": o.category,
            "color": o.color,
            "tier": o.tier,
            "approach": o.approach if o.approach not in ("", "NONE") else "none",
            "stage": o.stage,
            "excluded": "true" if o.excluded else "false",
            "exclusion": o.exclusion or "none",
        }
        assert got[tuple(sorted(want.items()))] >= 1
    excluded = {dict(k)["exclusion"] for k in got if dict(k)["excluded"] == "true"}
    assert excluded == {"judicial", "misconduct_or_crime", "terminated", "duplicate"}
    firings = samples(m, "fenliu_rule_firings_total")
    assert sum(firings.values()) == sum(len(d.outcome.trace) for d in ds)
    assert all(dict(k)["layer"] == "wushen" for k in firings)


def test_grassroots_ratio_is_computable_from_decisions(triage: Triage, m: metrics.Metrics) -> None:
    ds = decisions(triage)
    for d in ds:
        m.observe_decision(d)
    kept = [d for d in ds if not d.outcome.excluded]
    want = sum(d.outcome.tier in ("VILLAGE", "TOWNSHIP") for d in kept) / len(kept)
    num = total(m, "fenliu_decisions_total", excluded="false", tier="VILLAGE") + total(
        m, "fenliu_decisions_total", excluded="false", tier="TOWNSHIP"
    )
    den = total(m, "fenliu_decisions_total", excluded="false")
    assert num / den == pytest.approx(want)


def _weird(d: Decision) -> Decision:
    o = d.outcome
    bad_trace = (
        TraceEntry("规则 一", "classify", "layer with space", "x.yaml", 1, 0, {}),
        TraceEntry("classify.neighbor", "classify", "wushen", "x.yaml", 1, 0, {}),
    )
    o2 = replace(
        o,
        category="张三 13800138000",
        color="PURPLE",
        tier="CITY",
        approach="",
        stage="PRAY",
        exclusion="DROP TABLE",
        excluded=True,
        explanation=Given(bad_trace),
    )
    return replace(d, outcome=o2)


def test_unexpected_label_values_are_counted_as_other(triage: Triage, m: metrics.Metrics) -> None:
    d = triage.decide(complaint_from_dict(COMPLAINTS[0]))
    m.observe_decision(_weird(d))
    (labels,) = samples(m, "fenliu_decisions_total")
    assert dict(labels) == {
        "category": "other",
        "color": "other",
        "tier": "other",
        "approach": "none",
        "stage": "other",
        "excluded": "true",
        "exclusion": "other",
    }
    firings = {dict(k)["rule"]: dict(k)["layer"] for k in samples(m, "fenliu_rule_firings_total")}
    assert firings == {"other": "other", "classify.neighbor": "wushen"}


def test_codes_outside_the_loaded_pack_are_counted_as_other(triage: Triage, m: metrics.Metrics) -> None:
    assert triage.decider is not None
    m.set_pack(triage.decider.pack)
    d = triage.decide(complaint_from_dict(COMPLAINTS[0]))
    o = replace(
        d.outcome,
        category="looks_like_a_code",
        explanation=Given((TraceEntry("classify.not_in_pack", "classify", "wushen", "x.yaml", 1, 0, {}),)),
    )
    m.observe_decision(replace(d, outcome=o))
    m.observe_decision(d)
    cats = {dict(k)["category"] for k in samples(m, "fenliu_decisions_total")}
    assert cats == {"other", d.outcome.category}
    rules = {dict(k)["rule"] for k in samples(m, "fenliu_rule_firings_total")}
    assert "other" in rules and "classify.not_in_pack" not in rules


def test_label_cardinality_is_bounded(triage: Triage, m: metrics.Metrics) -> None:
    d = triage.decide(complaint_from_dict(COMPLAINTS[0]))
    for i in range(500):
        m.observe_decision(replace(d, outcome=replace(d.outcome, category=f"code_{i}")))
    cats = {dict(k)["category"] for k in samples(m, "fenliu_decisions_total")}
    assert len(cats) <= 65 and "other" in cats


def test_decision_timer_and_timed_triage_fill_the_histogram(triage: Triage, m: metrics.Metrics) -> None:
    with m.decision_timer():
        pass
    timed = metrics.TimedTriage(triage, m)
    timed.decide(complaint_from_dict(COMPLAINTS[0]))
    m.observe_decision(triage.decide(complaint_from_dict(COMPLAINTS[1])), seconds=0.002)
    assert total(m, "fenliu_decision_seconds_count") == 3
    assert timed.info() is triage.info()


def test_observer_counts_decisions_and_failed_items(triage: Triage, m: metrics.Metrics) -> None:
    d = triage.decide(complaint_from_dict(COMPLAINTS[0]))
    m.observer("Triage", None, d, grpc.StatusCode.OK)
    m.observer("TriageStream", None, None, grpc.StatusCode.INVALID_ARGUMENT)
    m.observer("/fenliu.v1.TriageService/Triage", None, None, grpc.StatusCode.UNAVAILABLE)
    m.observer("免费 text", None, None, "not a code")
    assert total(m, "fenliu_decisions_total") == 1
    errs = {
        (dict(k)["grpc_method"], dict(k)["grpc_code"]): v
        for k, v in samples(m, "fenliu_decision_errors_total").items()
    }
    assert errs == {
        ("TriageStream", "INVALID_ARGUMENT"): 1,
        ("Triage", "UNAVAILABLE"): 1,
        ("other", "other"): 1,
    }


# ----------------------------------------------------------------------------------------------------
# Pack, reloads, workers


def test_pack_info_follows_the_pack_and_reloads_are_counted(m: metrics.Metrics) -> None:
    assert total(m, "fenliu_pack_loaded") == 0
    assert samples(m, "fenliu_pack_reloads_total") == {
        (("outcome", "ok"),): 0.0,
        (("outcome", "refused"),): 0.0,
    }
    m.set_pack(PackId("wushen", "1", "aaaa"))
    m.record_reload(False)
    m.record_reload(True, PackId("wushen", "2", "bbbb"))
    m.record_reload(True, PackId("wushen", "has spaces", "cccc"))
    info = {(dict(k)["revision"], dict(k)["digest"]): v for k, v in samples(m, "fenliu_pack_info").items()}
    assert info == {("1", "aaaa"): 0, ("2", "bbbb"): 0, ("other", "cccc"): 1}
    assert total(m, "fenliu_pack_loaded") == 1
    assert total(m, "fenliu_pack_reloads_total", outcome="ok") == 2
    assert total(m, "fenliu_pack_reloads_total", outcome="refused") == 1
    m.set_pack(None)
    assert total(m, "fenliu_pack_loaded") == 0


def test_watch_sets_pack_info_from_the_triage(triage: Triage, m: metrics.Metrics) -> None:
    m.watch(triage)
    info = triage.info()
    assert info is not None
    assert samples(m, "fenliu_pack_info") == {
        (("digest", info.digest), ("name", info.name), ("revision", info.revision)): 1.0
    }


def test_worker_restarts_by_reason(m: metrics.Metrics) -> None:
    m.record_worker_restart()
    m.record_worker_restart(planned=True)
    m.record_worker_restart(planned=True)
    assert total(m, "fenliu_worker_restarts_total", reason="crashed") == 1
    assert total(m, "fenliu_worker_restarts_total", reason="rolled") == 2


def test_start_metrics_http_serves_exposition_on_a_free_port(triage: Triage, m: metrics.Metrics) -> None:
    m.observe_decision(triage.decide(complaint_from_dict(COMPLAINTS[0])))
    server, port = m.start_http("127.0.0.1:0")
    try:
        assert port > 0
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert "fenliu_decisions_total{" in body
    finally:
        server.shutdown()
        server.server_close()


def test_start_metrics_http_rejects_an_address_without_port(m: metrics.Metrics) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        m.start_http("localhost")


# ----------------------------------------------------------------------------------------------------
# gRPC interceptor (a real server with generic handlers: unary and every kind of stream)

SERVICE = "fenliu.test.Echo"


def _handlers() -> grpc.GenericRpcHandler:
    def unary(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        if req == b"bad":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
        if req == b"boom":
            raise RuntimeError("boom")
        return req

    def server_stream(req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        for i in range(3):
            if req == b"fail" and i == 1:
                ctx.abort(grpc.StatusCode.INTERNAL, "fail")
            yield req + bytes([i])

    def client_stream(reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> bytes:
        return b"".join(reqs)

    def bidi(reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> Iterator[bytes]:
        for r in reqs:
            yield r
            yield r

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


@pytest.fixture
def channel(m: metrics.Metrics) -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[m.server_interceptor()])
    server.add_generic_rpc_handlers((_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ch
    finally:
        ch.close()
        server.stop(None)


def _rpc(name: str) -> dict[str, str]:
    return {"grpc_service": SERVICE, "grpc_method": name}


def _wait_handled(m: metrics.Metrics, n: float) -> None:
    # The server records "handled" after the client has its answer: wait for it briefly.
    ev = threading.Event()
    for _ in range(500):  # 10 s
        if total(m, "grpc_server_handled_total") >= n:
            return
        ev.wait(0.02)


def test_interceptor_records_unary_calls_by_code(channel: grpc.Channel, m: metrics.Metrics) -> None:
    unary = channel.unary_unary(f"/{SERVICE}/Unary")
    assert unary(b"hi", timeout=10) == b"hi"
    with pytest.raises(grpc.RpcError) as bad:
        unary(b"bad", timeout=10)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as boom:
        unary(b"boom", timeout=10)
    assert boom.value.code() == grpc.StatusCode.UNKNOWN
    _wait_handled(m, 3)
    rpc = {"grpc_type": "unary", **_rpc("Unary")}
    assert total(m, "grpc_server_started_total", **rpc) == 3
    assert total(m, "grpc_server_handled_total", grpc_code="OK", **rpc) == 1
    assert total(m, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **rpc) == 1
    assert total(m, "grpc_server_handled_total", grpc_code="UNKNOWN", **rpc) == 1
    assert total(m, "grpc_server_msg_received_total", **rpc) == 3
    assert total(m, "grpc_server_msg_sent_total", **rpc) == 1
    assert total(m, "grpc_server_handling_seconds_count", **rpc) == 3


def test_interceptor_records_streams(channel: grpc.Channel, m: metrics.Metrics) -> None:
    ss = channel.unary_stream(f"/{SERVICE}/ServerStream")
    assert list(ss(b"a", timeout=10)) == [b"a\x00", b"a\x01", b"a\x02"]
    with pytest.raises(grpc.RpcError) as fail:
        list(ss(b"fail", timeout=10))
    assert fail.value.code() == grpc.StatusCode.INTERNAL
    cs = channel.stream_unary(f"/{SERVICE}/ClientStream")
    assert cs(iter([b"x", b"y", b"z"]), timeout=10) == b"xyz"
    bidi = channel.stream_stream(f"/{SERVICE}/Bidi")
    assert list(bidi(iter([b"1", b"2"]), timeout=10)) == [b"1", b"1", b"2", b"2"]
    _wait_handled(m, 4)

    s = {"grpc_type": "server_stream", **_rpc("ServerStream")}
    assert total(m, "grpc_server_handled_total", grpc_code="OK", **s) == 1
    assert total(m, "grpc_server_handled_total", grpc_code="INTERNAL", **s) == 1
    assert total(m, "grpc_server_msg_sent_total", **s) == 4  # 3, then 1 before the failure
    assert total(m, "grpc_server_msg_received_total", **s) == 2
    c = {"grpc_type": "client_stream", **_rpc("ClientStream")}
    assert total(m, "grpc_server_msg_received_total", **c) == 3
    assert total(m, "grpc_server_msg_sent_total", **c) == 1
    assert total(m, "grpc_server_handled_total", grpc_code="OK", **c) == 1
    b = {"grpc_type": "bidi_stream", **_rpc("Bidi")}
    assert total(m, "grpc_server_msg_received_total", **b) == 2
    assert total(m, "grpc_server_msg_sent_total", **b) == 4
    assert total(m, "grpc_server_handled_total", grpc_code="OK", **b) == 1
    assert total(m, "grpc_server_handling_seconds_count", **b) == 1


def _cancel_after_first(
    m: metrics.Metrics, call_with: Callable[[Iterator[bytes]], Any], read_first: bool
) -> None:
    gate = threading.Event()
    received = total(m, "grpc_server_msg_received_total")

    def requests() -> Iterator[bytes]:
        yield b"1"
        gate.wait(10)

    call = call_with(requests())
    if read_first:
        assert next(call) == b"1"
    else:
        while total(m, "grpc_server_msg_received_total") < received + 1:
            gate.wait(0.002)
    call.cancel()
    gate.set()


# gRPC sometimes hands a cancelled stream's handler the end of its requests, as if the client had
# half-closed (about 1 stream in 75 here), so a single cancellation would rarely catch a wrong code.
CANCELLATIONS = 200


def test_interceptor_records_every_cancelled_bidi_stream_once_as_cancelled(
    channel: grpc.Channel, m: metrics.Metrics
) -> None:
    bidi = channel.stream_stream(f"/{SERVICE}/Bidi")
    for n in range(1, CANCELLATIONS + 1):
        _cancel_after_first(m, lambda reqs: bidi(reqs, timeout=10), read_first=True)
        _wait_handled(m, n)
    b = {"grpc_type": "bidi_stream", **_rpc("Bidi")}
    assert total(m, "grpc_server_handled_total", **b) == CANCELLATIONS
    assert total(m, "grpc_server_handled_total", grpc_code="CANCELLED", **b) == CANCELLATIONS
    assert total(m, "grpc_server_handling_seconds_count", **b) == CANCELLATIONS


def test_interceptor_records_a_cancelled_client_stream_as_cancelled(
    channel: grpc.Channel, m: metrics.Metrics
) -> None:
    cs = channel.stream_unary(f"/{SERVICE}/ClientStream")
    for n in range(1, 51):
        _cancel_after_first(m, lambda reqs: cs.future(reqs, timeout=10), read_first=False)
        _wait_handled(m, n)
    c = {"grpc_type": "client_stream", **_rpc("ClientStream")}
    assert total(m, "grpc_server_handled_total", **c) == 50
    assert total(m, "grpc_server_handled_total", grpc_code="CANCELLED", **c) == 50
    assert total(m, "grpc_server_msg_sent_total", **c) == 0


def test_interceptor_does_not_take_unknown_method_names_as_labels(
    channel: grpc.Channel, m: metrics.Metrics
) -> None:
    probe = channel.unary_unary("/evil.Service/张三13800138000")
    with pytest.raises(grpc.RpcError) as e:
        probe(b"", timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    handled = samples(m, "grpc_server_handled_total")
    assert {(dict(k)["grpc_service"], dict(k)["grpc_method"], dict(k)["grpc_code"]) for k in handled} == {
        ("unknown", "unknown", "UNIMPLEMENTED")
    }


# ----------------------------------------------------------------------------------------------------
# Several processes (in a child interpreter: multiprocess mode changes process-wide state)

MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, sys, urllib.request
    from fenliu.serving import metrics

    def worker(n, pack_dir):
        from fenliu import complaint_from_dict
        from fenliu import Triage
        t = Triage.from_path(pack_dir)
        m = metrics.Metrics()
        m.watch(t)
        for i in range(n):
            m.observe_decision(t.decide(complaint_from_dict({"id": str(i), "text": "邻居排水纠纷"})))
        m.record_reload(False)

    if __name__ == "__main__":
        directory, pack_dir = sys.argv[1], sys.argv[2]
        m = metrics.prepare_multiprocess(directory)
        server, port = m.start_http("127.0.0.1:0")
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=worker, args=(n, pack_dir)) for n in (5, 7, 11)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        before = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        m.mark_worker_dead(procs[0].pid)
        m.record_worker_restart()
        after_one = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for p in procs[1:]:
            m.mark_worker_dead(p.pid)
        after_all = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        server.shutdown()
        print(json.dumps({"before": before, "after_one": after_one, "after_all": after_all,
                          "exitcodes": [p.exitcode for p in procs]}))
    """
)


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **match: str) -> float:
    return sum(
        v for (n, k), v in parsed.items() if n == name and all(dict(k).get(a) == b for a, b in match.items())
    )


def test_several_worker_processes_are_summed_and_dead_ones_dropped_from_live_gauges(tmp_path: Path) -> None:
    script = tmp_path / "mp.py"
    script.write_text(MULTIPROCESS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "prom"), str(PACK)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["exitcodes"] == [0, 0, 0]
    before, after_one, after_all = (_parse(out[k]) for k in ("before", "after_one", "after_all"))

    assert _sum(before, "fenliu_decisions_total") == 5 + 7 + 11
    assert _sum(before, "fenliu_rule_firings_total", rule="classify.agree") == 23
    assert _sum(before, "fenliu_pack_reloads_total", outcome="refused") == 3
    # live gauges: max over live processes, no pid label
    assert _sum(before, "fenliu_pack_loaded") == 1
    info = [k for (n, k) in before if n == "fenliu_pack_info"]
    assert len(info) == 1 and "pid" not in dict(info[0])
    # one worker gone: the others still have the pack; counters keep every worker's counts
    assert _sum(after_one, "fenliu_pack_loaded") == 1
    assert _sum(after_one, "fenliu_decisions_total") == 23
    assert _sum(after_one, "fenliu_worker_restarts_total", reason="crashed") == 1
    # all workers gone: no pack loaded (the supervisor's own 0), counts kept
    assert _sum(after_all, "fenliu_pack_loaded") == 0
    assert _sum(after_all, "fenliu_pack_info") == 0
    assert _sum(after_all, "fenliu_decisions_total") == 23


def test_each_metrics_object_keeps_its_own_values(triage: Triage, m: metrics.Metrics) -> None:
    other = metrics.Metrics()
    m.observe_decision(triage.decide(complaint_from_dict(COMPLAINTS[0])))
    m.record_worker_restart()
    assert total(m, "fenliu_decisions_total") == 1
    assert total(other, "fenliu_decisions_total") == 0
    assert total(other, "fenliu_worker_restarts_total") == 0
