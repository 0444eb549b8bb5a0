"""One address, one server: a second ``fenliu serve`` on a held address refuses to start.

The workers of one server still share their port (SO_REUSEPORT). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import grpc
import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.serving import convert
from grpc_helpers import ServeProcess, established_connections, serve_refused, stub_for

PACK_ARGS = ["--rules", "rules/wushen", "--no-watch"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("first", "second"), [("2", "2"), ("2", "1"), ("1", "2"), ("1", "1")])
def test_second_server_on_a_held_address_refuses_with_one_line(
    tmp_path: Path, first: str, second: str
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    srv = ServeProcess([*PACK_ARGS, "--address", address, "--workers", first], tmp_path / "log")
    try:
        started = time.monotonic()
        proc = serve_refused("--address", address, "--workers", second, "--no-watch")
        assert proc.returncode != 0
        assert time.monotonic() - started < 30
        assert proc.stdout == ""  # no banner: it never served
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("{")]
        assert lines == [
            f"fenliu serve: cannot listen on {address}: another server holds it (address already in use)"
        ]
        assert "Traceback" not in proc.stderr
        # the first one still serves, all its workers on the one port
        with stub_for(srv.target) as stub:
            for i in range(20):
                c = convert.complaint_to_proto({"id": f"a{i}", "text": "邻居家的排水沟堵了"})
                assert stub.Triage(pb.TriageRequest(complaint=c), timeout=10).decision.category == "neighbor"
        assert srv.proc.poll() is None
    finally:
        srv.stop()
        srv.kill()


def test_workers_of_one_server_share_the_port_and_a_restart_takes_it_again(tmp_path: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    port = int(address.rsplit(":", 1)[1])
    srv = ServeProcess([*PACK_ARGS, "--address", address, "--workers", "2"], tmp_path / "log1")
    try:
        channels = [
            grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(16)
        ]
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=10)
        assert all(established_connections(pid, port) > 0 for pid in srv.worker_pids)
        for ch in channels:
            ch.close()
    finally:
        assert srv.stop() == 0
        srv.kill()
    again = ServeProcess([*PACK_ARGS, "--address", address, "--workers", "2"], tmp_path / "log2")
    try:
        assert again.target == address
    finally:
        again.stop()
        again.kill()
