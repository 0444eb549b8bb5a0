"""The honest peer: what a Python team would build instead of fenliu, GoRules ZEN behind the same grpcio server.

``python -m bench.zen_server --address 127.0.0.1:PORT --workers N`` serves ``fenliu.v1.TriageService``
(Triage, TriageStream, GetRulePack) and ``grpc.health.v1`` on the echo server's skeleton, which is
fenliu serve's transport (the same thread pool size and channel options, ``SO_REUSEPORT`` across N
worker processes, the collector set up as a fenliu worker's). Each call:

1. converts and validates the request exactly as fenliu does (``convert.complaint_from_proto``;
   an invalid complaint is refused with INVALID_ARGUMENT);
2. runs the reference pack's text step (``Decider.enrichment``: normalize, lexicon, model), because
   the decision graph reads its fields, as fenliu's rules do;
3. evaluates the reference pack's ZEN decision graph (``bench/zen/wushen.json``, checked equal to
   fenliu's decisions on the benchmark corpus by part ``zen`` and the smoke test) with ZEN's trace when
   the request asks for one;
4. answers a ``Decision``: the graph's fields, a decision id, the deadlines as ``received_at`` plus
   the graph's hours, the pack's name and revision, and with a trace one ``TraceEntry`` per graph node
   evaluated (its name, its id, and the decision table row that matched, if any).

It leaves out what the graph does not decide (the citizen guidance, the notes and suggestions, the
rule-level trace with matched keywords): the peer does a little less than fenliu per call.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc  # noqa: E402

from bench import echo_server, zen_compare  # noqa: E402
from fenliu import Decider, load_pack  # noqa: E402
from fenliu._proto.fenliu.v1 import triage_pb2 as pb  # noqa: E402
from fenliu.domain.errors import ComplaintError  # noqa: E402
from fenliu.domain.fields import DEADLINE_SLOTS  # noqa: E402
from fenliu.serving import convert  # noqa: E402

WUSHEN = ROOT / "rules" / "wushen"

_COLOR = pb.Color.DESCRIPTOR
_TIER = pb.Tier.DESCRIPTOR
_APPROACH = pb.Approach.DESCRIPTOR
_STAGE = pb.Stage.DESCRIPTOR
#: (the graph's output in hours, the Deadlines field), from the field table.
_DEADLINES = tuple((within.removesuffix("_within") + "_h", slot) for within, slot in DEADLINE_SLOTS.items())


class ZenServicer:
    def __init__(self, pack_dir: Path = WUSHEN) -> None:
        pack = load_pack(pack_dir)
        self.pack = pack
        # The text step only (its enrichment); the decision itself is ZEN's.
        self.text_step = Decider(pack).enrichment
        self.engine = zen_compare.zen_engine()
        self.revision = str(pack.revision)

    def decide(self, request: Any) -> Any:
        """The ``Decision`` for a ``TriageRequest`` or ``TriageStreamRequest``; raises ComplaintError."""
        c = convert.complaint_from_proto(request.complaint)
        if self.text_step:
            c = self.text_step(c)
        trace = bool(request.include_trace)
        out = self.engine.evaluate(zen_compare.KEY, zen_compare.zen_input(c), {"trace": trace})
        r = out["result"]
        approach = r.get("approach")
        msg: Any = pb.Decision(
            complaint_id=c.id,
            decision_id=uuid.uuid4().hex,
            category=r["category"],
            excluded=bool(r["excluded"]),
            exclusion=r.get("exclusion") or "",
            referred_to=r.get("referred_to") or "",
            existing_case_id=c.existing_case_id or "",
            color=convert.enum_number(_COLOR, r["color"]),
            tier=convert.enum_number(_TIER, r["tier"]),
            approach=convert.enum_number(_APPROACH, None if approach == "NONE" else approach),
            owner_department=r["owner_department"],
            co_departments=r.get("co_departments") or (),
            stage=convert.enum_number(_STAGE, r["stage"]),
            path=[convert.enum_number(_STAGE, s) for s in r.get("path") or ()],
            statutory_route=r.get("statutory_route") or "",
        )
        msg.deadlines.SetInParent()
        received: dt.datetime = c.received_at
        for key, slot in _DEADLINES:
            hours = r.get(key)
            if hours is not None:
                getattr(msg.deadlines, slot).FromDatetime(received + dt.timedelta(hours=hours))
        msg.rule_pack.name = "wushen-zen"
        msg.rule_pack.revision = self.revision
        if trace:
            nodes = sorted(out.get("trace", {}).values(), key=lambda n: n.get("order", 0))
            for n in nodes:
                data = n.get("traceData")
                row = data.get("rule", {}).get("_id") if isinstance(data, dict) else None
                msg.trace.add(
                    rule=str(n.get("name", "")), stage=str(n.get("id", "")), table_rows=[row] if row else []
                )
        return msg

    def Triage(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return pb.TriageResponse(decision=self.decide(request))
        except ComplaintError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid complaint")

    def TriageStream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for index, request in enumerate(requests):
            cid = request.complaint.id
            try:
                yield pb.TriageStreamResponse(index=index, complaint_id=cid, decision=self.decide(request))
            except ComplaintError:
                yield pb.TriageStreamResponse(
                    index=index, complaint_id=cid, error={"code": 3, "message": "invalid complaint"}
                )

    def GetRulePack(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.GetRulePackResponse(name="wushen-zen", revision=self.revision, digest="")

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
    return echo_server.skeleton(address, ZenServicer().handlers(), threads)


def main(argv: list[str] | None = None) -> int:
    return echo_server.serve_main(argv, "bench.zen_server", __doc__.splitlines()[0], create_server)


if __name__ == "__main__":
    raise SystemExit(main())
