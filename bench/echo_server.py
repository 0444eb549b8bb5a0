"""The ceiling: a gRPC server with fenliu's service and messages that decides nothing.

``python -m bench.echo_server --address 127.0.0.1:PORT --workers N`` serves ``fenliu.v1.TriageService``
(Triage, TriageStream, GetRulePack) and ``grpc.health.v1`` with the transport settings of ``fenliu
serve`` (the same thread pool size and channel options, ``SO_REUSEPORT`` across N worker processes, and with
``--pin-cpus`` each worker pinned to one CPU as ``fenliu serve --pin-cpus`` pins them).
Each call parses the ``TriageRequest`` and answers a ``TriageResponse`` carrying a fixed, typical
decision (with a fixed trace when the request asks for one) whose ``complaint_id`` is the request's.
What fenliu costs beyond this server is validation, the decision and its conversion.

Every worker sets up its collector as a fenliu worker does before serving.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "service")):
    if p not in sys.path:
        sys.path.insert(0, p)

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

from fenliu._proto.fenliu.v1 import triage_pb2 as pb  # noqa: E402
from fenliu.domain.fields import DEADLINE_SLOTS, DECISION_TABLE  # noqa: E402
from fenliu.serving import convert  # noqa: E402

SERVICE = "fenliu.v1.TriageService"

#: What a typical decision of the reference pack (wage arrears, 12 people: RED, joint handling) sets
#: beyond the field table's defaults.
_TYPICAL_SET: dict[str, Any] = {
    "category": "wage_arrears",
    "color": "RED",
    "tier": "BANNER",
    "approach": "JOINT",
    "owner_department": "hr_social_security",
    "co_departments": ["governance_center"],
    "stage": "ASSESS",
    "statutory_route": "由劳动保障监察处理；农民工请求支付劳动报酬申请法律援助不受经济困难条件限制",
}

#: That decision as ``Decision.to_dict(trace=True)`` gives it: every field of the field table (its
#: default unless set above), so a new decision field needs no change here.
TYPICAL: dict[str, Any] = {
    "complaint_id": "",
    "decision_id": "117d6ea0a28c4fe489a2e0da2f36a8ac",
    **{
        f.name: list(f.default) if isinstance(f.default, tuple) else f.default
        for f in DECISION_TABLE
        if f.proto
    },
    **_TYPICAL_SET,
    "existing_case_id": None,
    "path": ["MEDIATE", "LITIGATE"],
    "deadlines": dict.fromkeys(DEADLINE_SLOTS.values(), "2026-11-30T11:27:41.998384+08:00"),
    "guidance": "您反映的事项由旗级人社局牵头，会同相关部门和综治中心联合办理（联管联调）。",
    "rule_pack": {"name": "wushen", "revision": "2026.11.1", "digest": "163485d14744"},
    "trace": [
        {
            "rule": "classify.wage_arrears",
            "stage": "classify",
            "layer": "wushen",
            "source": "wushen/classify.yaml:34",
            "priority": 80,
            "set": {"category": "wage_arrears"},
            "matched_keywords": ["农民工", "工钱"],
        },
        {
            "rule": "grade.red.wage_crowd",
            "stage": "grade",
            "layer": "wushen",
            "source": "wushen/grade.yaml:36",
            "priority": 0,
            "set": {"color": "RED"},
        },
        {
            "rule": "grade.yellow.group",
            "stage": "grade",
            "layer": "wushen",
            "source": "wushen/grade.yaml:51",
            "priority": 0,
            "set": {},
            "overruled": {"color": "grade.red.wage_crowd"},
        },
        {
            "rule": "grade.blue",
            "stage": "grade",
            "layer": "wushen",
            "source": "wushen/grade.yaml:77",
            "priority": 0,
            "set": {},
            "overruled": {"color": "grade.red.wage_crowd"},
        },
        {
            "rule": "route.joint",
            "stage": "route",
            "layer": "wushen",
            "source": "wushen/route.yaml:19",
            "priority": 30,
            "set": {"tier": "BANNER", "approach": "JOINT", "co_departments": ["governance_center"]},
            "table_rows": ["categories.wage_arrears"],
        },
        {
            "rule": "route.diverted",
            "stage": "route",
            "layer": "wushen",
            "source": "wushen/route.yaml:42",
            "priority": 20,
            "set": {},
            "overruled": {"approach": "route.joint", "tier": "route.joint"},
        },
        {
            "rule": "route.village",
            "stage": "route",
            "layer": "wushen",
            "source": "wushen/route.yaml:57",
            "priority": 10,
            "set": {},
            "overruled": {"approach": "route.joint", "tier": "route.joint"},
        },
        {
            "rule": "route.owner",
            "stage": "route",
            "layer": "wushen",
            "source": "wushen/route.yaml:10",
            "priority": 0,
            "set": {
                "owner_department": "hr_social_security",
                "statutory_route": "由劳动保障监察处理；农民工请求支付劳动报酬申请法律援助不受经济困难条件限制",
            },
            "overruled": {"co_departments": "route.joint"},
            "table_rows": ["categories.wage_arrears"],
        },
        {
            "rule": "funnel.entry",
            "stage": "funnel",
            "layer": "wushen",
            "source": "wushen/funnel.yaml:4",
            "priority": 0,
            "set": {"stage": "ASSESS"},
            "table_rows": ["categories.wage_arrears"],
        },
        {
            "rule": "deadlines.by_color",
            "stage": "deadlines",
            "layer": "wushen",
            "source": "wushen/deadlines.yaml:5",
            "priority": 0,
            "set": {
                "first_contact_within": "2h",
                "plan_within": "3d",
                "resolve_within": "15d",
                "accept_within": "15d",
            },
            "table_rows": ["deadlines.RED"],
        },
        {
            "rule": "explain.joint",
            "stage": "explain",
            "layer": "wushen",
            "source": "wushen/explain.yaml:5",
            "priority": 0,
            "set": {},
        },
    ],
    "notes": [],
}


def _transport_settings() -> tuple[list[tuple[str, int]], int]:
    """fenliu serve's channel options and thread pool size, so the ceiling differs only in the work done."""
    try:
        from fenliu.serving.server import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_THREADS, server_options

        return list(server_options(DEFAULT_MAX_MESSAGE_BYTES, True)), int(DEFAULT_THREADS)
    except ImportError:  # the server module is not there yet: the same defaults by hand
        return [
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", 4 << 20),
            ("grpc.max_send_message_length", 4 << 20),
        ], 16


class EchoServicer:
    def __init__(self) -> None:
        plain = {k: v for k, v in TYPICAL.items() if k not in ("trace", "notes")}
        self.decision = convert.decision_dict_to_proto(plain)
        self.decision_traced = convert.decision_dict_to_proto(TYPICAL)

    def _answer(self, request: Any, context: Any) -> Any:
        d = pb.Decision()
        d.CopyFrom(self.decision_traced if request.include_trace else self.decision)
        d.complaint_id = request.complaint.id
        return d

    def Triage(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.TriageResponse(decision=self._answer(request, context))

    def TriageStream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for index, request in enumerate(requests):
            yield pb.TriageStreamResponse(
                index=index, complaint_id=request.complaint.id, decision=self._answer(request, context)
            )

    def GetRulePack(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.GetRulePackResponse(name="echo", revision="0", digest="0")

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Triage": grpc.unary_unary_rpc_method_handler(
                self.Triage,
                request_deserializer=pb.TriageRequest.FromString,
                response_serializer=pb.TriageResponse.SerializeToString,
            ),
            "TriageStream": grpc.stream_stream_rpc_method_handler(
                self.TriageStream,
                request_deserializer=pb.TriageStreamRequest.FromString,
                response_serializer=pb.TriageStreamResponse.SerializeToString,
            ),
            "GetRulePack": grpc.unary_unary_rpc_method_handler(
                self.GetRulePack,
                request_deserializer=pb.GetRulePackRequest.FromString,
                response_serializer=pb.GetRulePackResponse.SerializeToString,
            ),
        }


def create_server(address: str, threads: int | None = None) -> tuple[grpc.Server, int]:
    return skeleton(address, EchoServicer().handlers(), threads)


def skeleton(
    address: str, handlers: dict[str, grpc.RpcMethodHandler], threads: int | None = None
) -> tuple[grpc.Server, int]:
    """A grpcio server with fenliu serve's transport (thread pool, channel options, health check)
    serving ``handlers`` as ``fenliu.v1.TriageService``: the skeleton the echo server and the ZEN peer share."""
    options, default_threads = _transport_settings()
    threads = threads or default_threads
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=options)
    server.add_registered_method_handlers(SERVICE, handlers)
    hs = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    for name in ("", SERVICE):
        hs.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port


def serve_one(
    address: str,
    threads: int | None = None,
    cpu: int | None = None,
    create: Callable[[str, int | None], tuple[grpc.Server, int]] | None = None,
) -> None:
    if cpu is not None:  # as fenliu serve --pin-cpus does: before gRPC starts a thread
        os.sched_setaffinity(0, {cpu})
    server, _ = (create or create_server)(address, threads)
    from fenliu.serving.supervisor import tune_gc

    tune_gc()  # as a fenliu worker does before it serves
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(0.5).wait()


def serve_main(
    argv: list[str] | None,
    module: str,
    description: str,
    create: Callable[[str, int | None], tuple[grpc.Server, int]] | None = None,
) -> int:
    """``--address --workers --threads --pin-cpus``: one worker served here, or N worker processes of
    ``python -m MODULE`` sharing the port (``SO_REUSEPORT``), as ``fenliu serve --workers N`` runs them."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--address", required=True, help="HOST:PORT (a fixed port: workers share it)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="thread pool size (default: fenliu serve's)")
    ap.add_argument(
        "--pin-cpus", metavar="auto|LIST", help="pin worker i to the i-th CPU, as fenliu serve does"
    )
    args = ap.parse_args(argv)
    cpus: list[int] = []
    if args.pin_cpus:
        from fenliu.serving.supervisor import parse_cpus

        cpus = parse_cpus(args.pin_cpus)
    if args.workers <= 1:
        serve_one(args.address, args.threads or None, cpus[0] if cpus else None, create)
        return 0
    cmd = [sys.executable, "-m", module, "--address", args.address, "--workers", "1"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    procs = [
        subprocess.Popen([*cmd, *(["--pin-cpus", str(cpus[i % len(cpus)])] if cpus else [])], cwd=ROOT)
        for i in range(args.workers)
    ]
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        if any(p.poll() is not None for p in procs):
            break
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve_main(argv, "bench.echo_server", __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())
