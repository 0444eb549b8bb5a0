"""The matter store in the service: a real server on a real port, a real store (SQLite, PostgreSQL).

The same matter through two channels is one matter with its first receiver; GetMatter; NOT_FOUND and
INVALID_ARGUMENT; a store that does not answer gives decisions without history and its queue is
written afterwards; two ``fenliu serve`` replicas sharing one PostgreSQL, a round-robin client.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.serving import convert, metrics
from fenliu.serving.config import ServeConfig
from fenliu.serving.matters import Matters, open_matters
from fenliu.serving.runtime import Triage
from fenliu.serving.server import MATTER_HEALTH
from grpc_helpers import (
    PACK,
    ServeProcess,
    bad_fields,
    error_of,
    established_connections,
    serve_refused,
    serving,
    stub_for,
)
from matter_helpers import GRASS, GRASS_AGAIN, TWP, VIL
from pg import PgServer

PHONE = "13947712345"
ID_NUMBER = "150627198001010026"
BANNER = "150626"
AGAIN_BY_LETTER = "草场网围栏被邻村的人拆了一百多米，牛羊跑出去吃别人家的草，村里没人管，请帮忙解决。"


def _complaint(cid: str, text: str, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": cid,
        "text": text,
        "channel": "VISIT",
        "received_tier": "VILLAGE",
        "region": {"banner_code": BANNER, "township_code": TWP, "village_code": VIL},
        "received_at": "2026-03-01T09:00:00+08:00",
        "complainant": {"name": "张三", "phone": PHONE},
    }
    d.update(kw)
    return d


def _triage(stub: Any, data: dict[str, Any]) -> dict[str, Any]:
    resp = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(data)), timeout=30)
    return convert.decision_from_proto(resp.decision)


def _key_file(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    return key


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage.from_path(PACK)


#: The store's deadline where a test blocks the store: long enough that its answers when not blocked
#: arrive in time on a machine busy with other tests (20 ms did not, once), short enough that a blocked
#: call gives up well within the tests' bound.
BUSY_DEADLINE_MS = 500.0


def _matters(tmp_path: Path, **kw: Any) -> Matters:
    config = ServeConfig(
        store=f"sqlite:///{tmp_path / 'matters.db'}", store_key_file=str(_key_file(tmp_path)), **kw
    )
    matters = open_matters(config)
    assert matters is not None
    return matters


@pytest.fixture
def served(triage: Triage, tmp_path: Path) -> Iterator[tuple[Any, Matters]]:
    matters = _matters(tmp_path)
    with serving(triage, matters=matters) as (target, _), stub_for(target) as stub:
        yield stub, matters
    matters.close()


def test_matter_serving_two_channels_one_matter_and_the_first_receiver(served: tuple[Any, Matters]) -> None:
    stub, _ = served
    point = VIL  # the village's 代办服务点
    first = _triage(stub, _complaint("c-1", GRASS, receiving_point={"code": point, "level": "VILLAGE"}))
    assert first["matter"]["history_available"] is True
    assert first["matter"]["new_matter"] is True
    assert first["matter"]["multi_door"] is False
    assert first["owning_point"] == {"code": point, "level": "VILLAGE"}

    # The same person phones the banner's centre a week later, in other words.
    again = _triage(
        stub,
        _complaint(
            "c-2",
            GRASS_AGAIN,
            channel="PHONE",
            received_tier="BANNER",
            receiving_point={"code": BANNER, "level": "BANNER"},
            received_at="2026-03-08T10:00:00+08:00",
        ),
    )
    m = again["matter"]
    assert m["matter_id"] == first["matter"]["matter_id"]
    assert m["new_matter"] is False
    assert "identity" in {e["kind"] for e in m["linked_by"]}
    assert {e["field"] for e in m["linked_by"] if e["kind"] == "identity"} == {"phone"}
    assert m["prior_complaints"] == 1
    assert sorted(m["channels"]) == ["PHONE", "VISIT"]
    assert sorted(m["points"]) == sorted([BANNER, point])
    assert m["first_receiver"] == {"point": point, "level": "VILLAGE"}
    assert m["earlier_decision_ids"] == [first["decision_id"]]
    assert m["multi_door"] is True
    # 首接代办: the village point that took it first keeps it; the citizen is told so.
    assert again["owning_point"] == {"code": point, "level": "VILLAGE"}
    assert again["tier"] == "VILLAGE"
    assert again["color"] == "YELLOW"  # one earlier complaint, though repeat_visits was not given
    assert "首接" in again["guidance"]
    assert PHONE not in json.dumps(again, ensure_ascii=False)


def test_matter_serving_a_second_door_keeps_the_first_decisions_owner(served: tuple[Any, Matters]) -> None:
    stub, _ = served
    # The village point reads it as a land-rights matter (the front end's category): natural resources.
    first = _triage(
        stub,
        _complaint(
            "o-1", GRASS, category_hint="land_rights", receiving_point={"code": VIL, "level": "VILLAGE"}
        ),
    )
    assert first["owner_department"] == "natural_resources"
    alone = _triage(  # the same words from someone else, elsewhere: the category's owner
        stub,
        _complaint("o-x", GRASS_AGAIN, complainant={"phone": "13911112222"}, region={"banner_code": BANNER}),
    )
    assert alone["matter"]["new_matter"] is True
    grass_owner = alone["owner_department"]
    assert grass_owner != "natural_resources"
    # The same person phones the banner's centre: 多头访, and the first decision's owner keeps it.
    again = _triage(
        stub,
        _complaint(
            "o-2",
            GRASS_AGAIN,
            channel="PHONE",
            received_tier="BANNER",
            receiving_point={"code": BANNER, "level": "BANNER"},
            received_at="2026-03-08T10:00:00+08:00",
        ),
    )
    assert again["matter"]["matter_id"] == first["matter"]["matter_id"] and again["matter"]["multi_door"]
    assert again["owner_department"] == "natural_resources"  # route.multi_door.owner, not the grassland's


def test_matter_serving_get_matter_lists_complaints_without_personal_data(
    served: tuple[Any, Matters],
) -> None:
    stub, _ = served
    a = _triage(stub, _complaint("g-1", GRASS))
    b = _triage(
        stub, _complaint("g-2", AGAIN_BY_LETTER, channel="LETTER", received_at="2026-03-02T09:00:00+08:00")
    )
    matter_id = a["matter"]["matter_id"]
    assert b["matter"]["matter_id"] == matter_id
    resp = stub.GetMatter(pb.GetMatterRequest(matter_id=matter_id), timeout=10)
    got = convert.matter_from_response(resp)
    assert got["matter_id"] == matter_id
    assert [c["complaint_id"] for c in got["complaints"]] == ["g-1", "g-2"]
    assert [c["channel"] for c in got["complaints"]] == ["VISIT", "LETTER"]
    assert [c["decision_id"] for c in got["complaints"]] == [a["decision_id"], b["decision_id"]]
    assert got["complaints"][0]["point"] == VIL
    wire = resp.SerializeToString()
    assert PHONE.encode() not in wire and "张三".encode() not in wire and "草场".encode() not in wire


@pytest.mark.parametrize(
    ("matter_id", "code", "fields"),
    [
        ("m-" + "0" * 32, grpc.StatusCode.NOT_FOUND, set()),
        ("m-123", grpc.StatusCode.INVALID_ARGUMENT, {"matter_id"}),
        ("", grpc.StatusCode.INVALID_ARGUMENT, {"matter_id"}),
        ("M-" + "A" * 32, grpc.StatusCode.INVALID_ARGUMENT, {"matter_id"}),
    ],
)
def test_matter_serving_get_matter_unknown_or_malformed(
    served: tuple[Any, Matters], matter_id: str, code: grpc.StatusCode, fields: set[str]
) -> None:
    stub, _ = served
    with pytest.raises(grpc.RpcError) as err:
        stub.GetMatter(pb.GetMatterRequest(matter_id=matter_id), timeout=10)
    assert err.value.code() == code
    error = error_of(err.value)
    assert bad_fields(error) == fields
    assert error["reason"] == (
        "MATTER_NOT_FOUND" if code == grpc.StatusCode.NOT_FOUND else "INVALID_MATTER_ID"
    )


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"code": "15062610400"}, "complaint.receiving_point.code"),  # 11 digits
        ({"code": "13947712345"}, "complaint.receiving_point.code"),  # a phone number
        ({"code": "15062610400a"}, "complaint.receiving_point.code"),
        ({"code": BANNER, "level": "VILLAGE"}, "complaint.receiving_point.code"),  # 6 digits at a village
    ],
)
def test_matter_serving_malformed_receiving_point_is_invalid_argument(
    served: tuple[Any, Matters], point: dict[str, str], field: str
) -> None:
    stub, _ = served
    with pytest.raises(grpc.RpcError) as err:
        _triage(stub, _complaint("bad-point", GRASS, receiving_point=point))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = error_of(err.value)
    assert field in bad_fields(error)
    assert "13947712345" not in json.dumps(error)


def test_matter_serving_unknown_receiving_level_number_is_invalid_argument(
    served: tuple[Any, Matters],
) -> None:
    stub, _ = served
    msg = convert.complaint_to_proto(_complaint("bad-level", GRASS))
    msg.receiving_point.level = 9
    with pytest.raises(grpc.RpcError) as err:
        stub.Triage(pb.TriageRequest(complaint=msg), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(error_of(err.value)) == {"complaint.receiving_point.level"}


def test_matter_serving_without_a_store_decides_as_before(triage: Triage) -> None:
    with serving(triage) as (target, _), stub_for(target) as stub:
        d = _triage(stub, _complaint("plain", GRASS))
        assert "matter" not in d and "owning_point" not in d
        with pytest.raises(grpc.RpcError) as err:
            stub.GetMatter(pb.GetMatterRequest(matter_id="m-" + "0" * 32), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with_point = _triage(stub, _complaint("plain-2", GRASS, receiving_point={"code": VIL}))
        assert {k: v for k, v in with_point.items() if k not in ("complaint_id", "decision_id")} == {
            k: v for k, v in d.items() if k not in ("complaint_id", "decision_id")
        }


def test_matter_serving_store_busy_answers_without_history_then_writes_the_queue(
    triage: Triage, tmp_path: Path
) -> None:
    matters = _matters(tmp_path, store_deadline_ms=BUSY_DEADLINE_MS)
    try:
        with serving(triage, matters=matters) as (target, _), stub_for(target) as stub:
            # Another connection holds the database's write lock: the store is busy (as if down).
            blocker = sqlite3.connect(tmp_path / "matters.db", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                start = time.monotonic()
                d = _triage(stub, _complaint("q-1", GRASS))
                assert time.monotonic() - start < 5.0
                assert d["matter"] == {"history_available": False, "multi_door": False}
                assert d["owning_point"] == {"code": VIL, "level": "VILLAGE"}  # its own point
                assert matters.store.unavailable >= 1
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            deadline = time.monotonic() + 30
            while matters.store.pending() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert matters.store.pending() == 0
            # What was queued is in the store: the next complaint of the matter finds it.
            again = _triage(stub, _complaint("q-2", GRASS_AGAIN, received_at="2026-03-02T09:00:00+08:00"))
            assert again["matter"]["history_available"] is True
            assert again["matter"]["prior_complaints"] == 1
            assert {e["complaint_id"] for e in again["matter"]["linked_by"]} == {"q-1"}
    finally:
        matters.close()


def test_matter_serving_two_replicas_share_one_postgresql(pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.create_database()
    key = _key_file(tmp_path)
    replicas = []
    try:
        for i in range(2):
            replicas.append(
                ServeProcess(
                    [
                        "--rules", str(PACK), "--address", "127.0.0.1:0", "--no-watch",
                        "--store", url, "--store-key-file", str(key),
                        "--store-queue-dir", str(tmp_path / f"queue-{i}"),
                        "--store-deadline-ms", "2000",
                        "--decision-log", str(tmp_path / f"decisions-{i}.jsonl"),
                        "--decision-log-key-file", str(key),
                    ],
                    tmp_path / f"serve-{i}.log",
                )
            )  # fmt: skip
        targets = ",".join(r.target for r in replicas)
        options = [("grpc.lb_policy_name", "round_robin")]
        with grpc.insecure_channel(f"ipv4:{targets}", options=options) as channel:
            stub = pb_grpc.TriageServiceStub(channel)
            texts = [GRASS, GRASS_AGAIN, AGAIN_BY_LETTER, GRASS]
            channels = ["VISIT", "PHONE", "LETTER", "ONLINE"]
            decisions = [
                _triage(
                    stub,
                    _complaint(f"r-{i}", text, channel=ch, received_at=f"2026-03-0{i + 1}T09:00:00+08:00"),
                )
                for i, (text, ch) in enumerate(zip(texts, channels, strict=True))
            ]
            matter_ids = {d["matter"]["matter_id"] for d in decisions}
            assert len(matter_ids) == 1
            assert [d["matter"]["prior_complaints"] for d in decisions] == [0, 1, 2, 3]
            assert all(d["owning_point"] == {"code": VIL, "level": "VILLAGE"} for d in decisions)
            resp = stub.GetMatter(pb.GetMatterRequest(matter_id=matter_ids.pop()), timeout=10)
            assert [c.complaint_id for c in resp.complaints] == ["r-0", "r-1", "r-2", "r-3"]
        # Both replicas answered some of them.
        for i in range(2):
            lines = (tmp_path / f"decisions-{i}.jsonl").read_text("utf-8").splitlines()
            assert lines, f"replica {i} answered none"
    finally:
        for r in replicas:
            r.stop()
            r.kill()


# ----------------------------------------------------------------------------------------------------
# Metrics: history unavailable, 多头访, the store's time; townships only, never finer


def _samples(m: metrics.Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_matter_serving_metrics_count_by_township_never_finer(triage: Triage, tmp_path: Path) -> None:
    m = metrics.Metrics()
    matters = _matters(tmp_path, store_deadline_ms=BUSY_DEADLINE_MS)
    matters.metrics = m
    try:
        with serving(triage, matters=matters) as (target, _), stub_for(target) as stub:
            _triage(stub, _complaint("t-1", GRASS))
            _triage(
                stub, _complaint("t-2", GRASS_AGAIN, channel="PHONE", received_at="2026-03-02T09:00:00+08:00")
            )
            blocker = sqlite3.connect(tmp_path / "matters.db", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                # A township given by its 3 digits within the banner: the label is the 9-digit code.
                region = {"banner_code": BANNER, "township_code": TWP[-3:], "village_code": VIL}
                _triage(stub, _complaint("t-3", "另一件事：村里的路灯坏了半年没人修。", region=region))
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
        assert _samples(m, "fenliu_matter_multi_door_decisions_total") == {(("township", TWP),): 1.0}
        assert _samples(m, "fenliu_matter_history_unavailable_total") == {(("township", TWP),): 1.0}
        assert _samples(m, "fenliu_matter_store_seconds_count") == {(): 2.0}
        assert VIL.encode() not in m.exposition()
    finally:
        matters.close()


def test_matter_serving_township_label_is_nine_digits_or_none() -> None:
    m = metrics.Metrics()
    assert m.township_label({"township_code": TWP}) == TWP
    assert m.township_label({"village_code": VIL}) == TWP
    assert m.township_label({"banner_code": BANNER, "township_code": "104"}) == TWP
    assert m.township_label({"township_code": "104"}) == metrics.NONE
    assert m.township_label({}) == metrics.NONE


# ----------------------------------------------------------------------------------------------------
# fenliu serve --store: refused in one line, or started degraded


def test_matter_serving_unreachable_store_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    url = "postgresql://fenliu:secret@127.0.0.1:1/fenliu?connect_timeout=2"
    done = serve_refused("--store", url, "--store-key-file", str(key))
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("fenliu serve:")]
    assert len(lines) == 1, done.stderr
    assert "cannot reach the matter store" in lines[0]
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def test_matter_serving_store_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FENLIU_DECISION_LOG_KEY"}
    done = serve_refused("--store", f"sqlite:///{tmp_path / 'm.db'}", env=env)
    assert done.returncode == 2
    assert "hash key" in done.stderr and "Traceback" not in done.stderr


def test_matter_serving_degraded_start_says_so_and_answers_without_history(tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    url = "postgresql://fenliu@127.0.0.1:1/fenliu?connect_timeout=1"
    proc = ServeProcess(
        [
            "--rules", str(PACK), "--address", "127.0.0.1:0", "--no-watch",
            "--store", url, "--store-key-file", str(key), "--store-degraded-ok",
            "--store-queue-dir", str(tmp_path / "queue"),
        ],
        tmp_path / "serve.log",
    )  # fmt: skip
    try:
        with grpc.insecure_channel(proc.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health.Check(health_pb2.HealthCheckRequest(service=MATTER_HEALTH), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
            overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert overall.status == health_pb2.HealthCheckResponse.SERVING
            d = _triage(pb_grpc.TriageServiceStub(channel), _complaint("d-1", GRASS))
            assert d["matter"]["history_available"] is False
        assert (tmp_path / "queue").is_dir()
        assert proc.events("matter_store_unreachable_at_start")
    finally:
        proc.stop()
        proc.kill()


def test_matter_serving_fenliu_call_matter_prints_its_complaints(triage: Triage, tmp_path: Path) -> None:
    matters = _matters(tmp_path)
    try:
        with serving(triage, matters=matters) as (target, _), stub_for(target) as stub:
            first = _triage(stub, _complaint("call-1", GRASS))

            def call(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [sys.executable, "-m", "fenliu.cli", "call", "--address", target, *args],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )

            found = call("--matter", first["matter"]["matter_id"])
            assert found.returncode == 0, found.stderr
            listed = json.loads(found.stdout)
            assert [c["complaint_id"] for c in listed["complaints"]] == ["call-1"]
            assert PHONE not in found.stdout
            missing = call("--matter", "m-" + "f" * 32)
            assert missing.returncode == 1
            assert json.loads(missing.stdout)["reason"] == "MATTER_NOT_FOUND"
    finally:
        matters.close()


def test_matter_serving_workers_of_one_serve_share_the_sqlite_file(tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    sp = ServeProcess(
        [
            "--rules", str(PACK), "--address", "127.0.0.1:0", "--no-watch", "--workers", "2",
            "--store", f"sqlite:///{tmp_path / 'matters.db'}", "--store-key-file", str(key),
            "--store-deadline-ms", "5000",
        ],
        tmp_path / "serve.log",
    )  # fmt: skip
    try:
        n = 12
        barrier = threading.Barrier(n)
        answers: list[dict[str, Any]] = []
        local = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own each
        channels = [grpc.insecure_channel(sp.target, options=local) for _ in range(n)]
        try:
            for ch in channels:  # connect each channel first, so that the kernel spreads them
                grpc.channel_ready_future(ch).result(timeout=20)

            def one(i: int) -> None:
                stub = pb_grpc.TriageServiceStub(channels[i])
                barrier.wait(timeout=20)
                answers.append(_triage(stub, _complaint(f"w-{i}", GRASS if i % 2 else GRASS_AGAIN)))

            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            port = int(sp.target.rsplit(":", 1)[1])
            held = {pid: established_connections(pid, port) for pid in sp.worker_pids}
        finally:
            for ch in channels:
                ch.close()
        assert len(answers) == n
        # A worker tries the store with at most 4 calls at once; beyond, an answer is without history
        # and its complaint queued: written a moment later, into the same matter.
        known = [a for a in answers if a["matter"]["history_available"]]
        assert known
        assert len({a["matter"]["matter_id"] for a in known}) == 1
        priors = [a["matter"]["prior_complaints"] for a in known]
        assert len(set(priors)) == len(priors)  # recorded one after the other, each seeing the earlier
        matter_id = known[0]["matter"]["matter_id"]
        with grpc.insecure_channel(sp.target) as ch:
            stub = pb_grpc.TriageServiceStub(ch)
            deadline = time.monotonic() + 30
            while True:
                resp = stub.GetMatter(pb.GetMatterRequest(matter_id=matter_id), timeout=10)
                if len(resp.complaints) == n or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert sorted(c.complaint_id for c in resp.complaints) == sorted(f"w-{i}" for i in range(n))
        assert all(held.values()), held  # both workers took some of the calls
    finally:
        sp.stop()
        sp.kill()
