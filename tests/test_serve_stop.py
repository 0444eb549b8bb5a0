"""A worker that stops (SIGTERM) under load: with the documented client retry policy, no call fails
CANCELLED. Bounded: 8 clients for 10 s against 127.0.0.1."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.serving import convert
from grpc_helpers import PACK, ROOT, ServeProcess

pytestmark = pytest.mark.slow


def documented_service_config() -> str:
    """The client retry policy of docs/api.md, as it is written there."""
    text = (ROOT / "docs" / "api.md").read_text("utf-8")
    m = re.search(r'```json\n\s*(\{"methodConfig".*?)```', text, re.S)
    assert m, "docs/api.md shows no service config"
    config = json.loads(m.group(1))
    assert "UNAVAILABLE" in config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"]
    return json.dumps(config)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_stopping_under_load_no_call_fails_cancelled_with_the_documented_retry(tmp_path: Path) -> None:
    srv = ServeProcess(
        ["--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "2", "--no-watch"], tmp_path / "log"
    )
    codes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    config = documented_service_config()
    complaint = convert.complaint_to_proto({"id": "stop-1", "text": "邻居家的排水沟堵了"})
    end = time.monotonic() + 10

    def client() -> None:
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.service_config", config)]
        with grpc.insecure_channel(srv.target, options=options) as ch:
            stub = pb_grpc.TriageServiceStub(ch)
            while time.monotonic() < end:
                try:
                    stub.Triage(pb.TriageRequest(complaint=complaint), timeout=5)
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                with lock:
                    codes[code] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for _ in range(3):
            time.sleep(2.5)
            ready = [e["worker_pid"] for e in srv.events("worker_ready")]
            os.kill(next(p for p in ready if _alive(p)), signal.SIGTERM)
        for t in threads:
            t.join(30)
        stopped = len(srv.events("worker_stopped"))
    finally:
        srv.stop()
        srv.kill()
    print(f"\ncalls across 3 worker stops: {dict(codes)}")
    assert stopped >= 3
    assert codes["OK"] > 1000
    assert codes["CANCELLED"] == 0
