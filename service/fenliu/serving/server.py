"""The gRPC transport: ``fenliu.v1.TriageService`` with health, reflection and rich errors.

The servicer holds no rule logic: it converts proto ↔ domain (:mod:`fenliu.serving.convert`), asks the engine,
and maps errors to status codes (AIP-193):

=========================  =================  ==================================================
what                       code               details
=========================  =================  ==================================================
bad complaint              INVALID_ARGUMENT   BadRequest (every bad field) + ErrorInfo INVALID_COMPLAINT
                                              + LocalizedMessage (zh-CN; each violation has one too)
bytes that are no message  INVALID_ARGUMENT   ErrorInfo MALFORMED_REQUEST
no rule pack loaded        UNAVAILABLE        ErrorInfo NO_RULE_PACK
engine failure (a bug)     INTERNAL           ErrorInfo ENGINE_FAILURE
a stream beyond the cap    RESOURCE_EXHAUSTED (message names --max-streams)
=========================  =================  ==================================================

ErrorInfo's domain is ``fenliu.v1``. No status or log line carries a stack trace, a submitted value
or personal data.

The engine is not thread-safe (see the durable_rules notes): calls run on gRPC's thread pool and take
one lock around the engine, one engine per process. Scale with processes: :mod:`fenliu.serving.supervisor`.
Streams and health checks have threads of their own, so that neither idle streams nor busy unary
calls starve the other or health (:class:`StreamGuard`).

``create_server(address, triage, ...) -> (server, port)`` builds a server without starting it, so tests
bind port 0. ``fenliu serve`` is :func:`add_serve_arguments` + :func:`run_serve`; ``fenliu call`` (a
small client) is :func:`add_call_arguments` + :func:`run_call`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

import grpc
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf import message as _message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.domain.errors import ComplaintError, FieldViolation, NoPackError
from fenliu.domain.model import MAX_ID, Complaint, Decision, Json
from fenliu.i18n import _
from fenliu.serving import convert, localized
from fenliu.serving.config import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_STREAMS,
    DEFAULT_STREAM_IDLE_SECONDS,
    DEFAULT_THREADS,
    TlsFiles,
)

log = logging.getLogger("fenliu.server")

if TYPE_CHECKING:  # the matter store (and its numerical libraries) is imported only when it is used
    from fenliu.serving.matters import Matters
    from fenliu.serving.runtime import PackInfo, ReloadAttempt, ReloadResult

#: A decoded request: the message (or its byte mirror, whose fields are the same), or what stands for
#: one that is not a valid message.
#: The rest of an interceptor chain: the handler of a call's method, None for an unknown method.
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None]"
TriageCall: TypeAlias = "pb.TriageRequest | pb.TriageStreamRequest | Undecodable"

SERVICE_NAME: Final = "fenliu.v1.TriageService"
#: A matter id: ``m-`` and 32 hex digits.
MATTER_ID: Final = convert.MATTER_ID
#: The health entry of the matter store: SERVING when it is reached, NOT_SERVING while degraded.
MATTER_HEALTH: Final = "fenliu.v1.TriageService/matters"
ERROR_DOMAIN: Final = "fenliu.v1"
#: Threads of a worker that answer only health checks (Check, List): they never wait behind decisions.
HEALTH_THREADS: Final = 2
#: Threads beyond the stream cap, so that a stream over the cap is refused at once, not queued.
_REFUSAL_THREADS: Final = 4

#: Keepalive and connection settings (see docs/api.md). Clients may ping every 10 s at most.
KEEPALIVE_OPTIONS: Final[tuple[tuple[str, int], ...]] = (
    ("grpc.keepalive_time_ms", 60_000),  # ping an idle client every minute
    ("grpc.keepalive_timeout_ms", 20_000),  # and drop it if the ping is not answered in 20 s
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    # Recycle connections (GOAWAY after 5 minutes) so that clients spread again over the workers after
    # one was replaced. No age grace: calls in flight, long bulk streams included, run to their end.
    ("grpc.max_connection_age_ms", 300_000),
)

#: What the servicer needs of the engine (``fenliu.serving.runtime.Triage``).


class TriageEngine(Protocol):
    def decide(self, complaint: Complaint) -> Decision: ...

    def info(self) -> PackInfo | None: ...

    def last_attempt(self) -> ReloadAttempt | None: ...

    def load(self, path: str) -> ReloadResult: ...

    def add_listener(self, fn: Callable[[PackInfo], None]) -> None: ...


#: HOOK (metrics, decision log): called after each item (each unary call, each stream item) with the
#: method name ("Triage", "TriageStream", "GetRulePack"), the validated complaint (None if it was
#: invalid), the decision (None if there is none) and the item's status code. Must be quick and must
#: not raise (an exception is logged and ignored).
Observer = Callable[[str, Complaint | None, Decision | None, grpc.StatusCode], None]


# ----------------------------------------------------------------------------------------------------
# Errors as google.rpc.Status


def _error_info(reason: str, metadata: dict[str, str] | None = None) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    for k, v in (metadata or {}).items():
        info.metadata[k] = v
    return info


def _status(code: grpc.StatusCode, message: str, *details: _message.Message) -> status_pb2.Status:
    st = status_pb2.Status(code=code.value[0], message=message)
    for d in details:
        packed = any_pb2.Any()
        packed.Pack(d)
        st.details.append(packed)
    return st


def _bad_request(violations: Iterable[tuple[str, str]]) -> error_details_pb2.BadRequest:
    """A BadRequest of (field, English description) pairs, each violation with its description in
    Chinese too (``localized_message``, locale zh-CN), from the zh_CN catalog whatever the server's
    language."""
    bad = error_details_pb2.BadRequest()
    for name, description in violations:
        bad.field_violations.add(
            field=name,
            description=description,
            localized_message=error_details_pb2.LocalizedMessage(
                locale=localized.LOCALE, message=localized.description_zh(description)
            ),
        )
    return bad


def _invalid(what: str, names: Sequence[str]) -> tuple[str, error_details_pb2.LocalizedMessage]:
    """The message of an INVALID_ARGUMENT naming ``names``: in English (the status's message), and in
    Chinese (a LocalizedMessage detail)."""
    n = len(names)
    fields = ", ".join(dict.fromkeys(names))
    message = f"invalid {what}: {n} bad field{'s' if n != 1 else ''}: {fields}"
    zh = error_details_pb2.LocalizedMessage(
        locale=localized.LOCALE, message=localized.invalid_zh(what, n, fields)
    )
    return message, zh


def invalid_complaint_status(
    violations: Sequence[FieldViolation], prefix: str = "complaint."
) -> status_pb2.Status:
    """INVALID_ARGUMENT with one BadRequest naming every bad field, one ErrorInfo, and the message in
    Chinese (one LocalizedMessage)."""
    names = [prefix + v.field if v.field else prefix.rstrip(".") for v in violations]
    bad = _bad_request(zip(names, (v.description for v in violations), strict=True))
    message, zh = _invalid("complaint", names)
    info = _error_info("INVALID_COMPLAINT", {"fields": ",".join(dict.fromkeys(names))})
    return _status(grpc.StatusCode.INVALID_ARGUMENT, message, bad, info, zh)


def malformed_status(message_type: str) -> status_pb2.Status:
    return _status(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid {message_type} message (protobuf wire format)",
        _error_info("MALFORMED_REQUEST", {"message_type": message_type}),
    )


def no_pack_status() -> status_pb2.Status:
    return _status(
        grpc.StatusCode.UNAVAILABLE,
        "no rule pack is loaded yet; retry later",
        _error_info("NO_RULE_PACK"),
    )


def matter_id_status() -> status_pb2.Status:
    bad = _bad_request([("matter_id", "must be a matter id: m- and 32 hex digits")])
    message, zh = _invalid("request", ["matter_id"])
    return _status(
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
        bad,
        _error_info("INVALID_MATTER_ID", {"fields": "matter_id"}),
        zh,
    )


def matter_not_found_status() -> status_pb2.Status:
    return _status(grpc.StatusCode.NOT_FOUND, "no such matter", _error_info("MATTER_NOT_FOUND"))


def no_matters_status() -> status_pb2.Status:
    return _status(
        grpc.StatusCode.FAILED_PRECONDITION,
        "this service keeps no matters (started without --store)",
        _error_info("NO_MATTER_STORE"),
    )


def matters_unavailable_status() -> status_pb2.Status:
    return _status(
        grpc.StatusCode.UNAVAILABLE,
        "the matter store could not be read; retry later",
        _error_info("MATTER_STORE_UNAVAILABLE"),
    )


def invalid_request_status(violations: Sequence[FieldViolation], what: str, reason: str) -> status_pb2.Status:
    """INVALID_ARGUMENT for a request that is not a complaint (an event, a listing): one BadRequest
    naming every bad field, one ErrorInfo with ``reason``, and the message in Chinese (one
    LocalizedMessage). ``what``: ``event`` or ``request``."""
    names = [v.field for v in violations]
    bad = _bad_request((v.field, v.description) for v in violations)
    message, zh = _invalid(what, names)
    fields = ",".join(dict.fromkeys(names))
    return _status(
        grpc.StatusCode.INVALID_ARGUMENT, message, bad, _error_info(reason, {"fields": fields}), zh
    )


def event_rejected_status(code: str, description: str) -> status_pb2.Status:
    """FAILED_PRECONDITION: the matter's history makes the event impossible; the violation's type is
    the store's stable code (``second-extension``, ``matter-closed``...)."""
    pf = error_details_pb2.PreconditionFailure()
    pf.violations.add(type=code, subject="event", description=description)
    return _status(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"event rejected: {description}",
        pf,
        _error_info("EVENT_REJECTED", {"code": code}),
    )


def event_matter_not_found_status() -> status_pb2.Status:
    return _status(
        grpc.StatusCode.NOT_FOUND,
        "no such matter or decision",
        _error_info("MATTER_NOT_FOUND"),
    )


def engine_failure_status() -> status_pb2.Status:
    return _status(
        grpc.StatusCode.INTERNAL,
        "the engine failed on this complaint; the failure is logged",
        _error_info("ENGINE_FAILURE"),
    )


# ----------------------------------------------------------------------------------------------------
# Request decoding: bytes that do not parse must give INVALID_ARGUMENT, not INTERNAL


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for a request that is not a valid message of ``message_type``."""

    message_type: str


def _strings_to_bytes(m: descriptor_pb2.DescriptorProto) -> None:
    if m.options.map_entry:
        return
    for f in m.field:
        if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
            f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    for nested in m.nested_type:
        _strings_to_bytes(nested)


def _byte_mirror() -> dict[str, type[_message.Message]]:
    """Request classes like fenliu.v1's, but with bytes where the proto has strings.

    protobuf rejects a whole message whose string field is not UTF-8. Parsing such a message again
    with its byte mirror lets the converter name the offending fields.
    """
    fdp = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = "fenliu/v1/triage_byte_mirror.proto"
    del fdp.service[:]
    for m in fdp.message_type:
        _strings_to_bytes(m)
    return _mirror_classes(
        fdp, ("TriageRequest", "TriageStreamRequest"), (any_pb2, struct_pb2, timestamp_pb2, status_pb2)
    )


def _mirror_classes(
    fdp: descriptor_pb2.FileDescriptorProto, names: tuple[str, ...], deps: tuple[ModuleType, ...] = ()
) -> dict[str, type[_message.Message]]:
    """The messages ``names`` of a mirror file of fenliu.v1, as classes of a pool of their own (the
    default pool, which reflection serves, never sees them)."""
    pool = descriptor_pool.DescriptorPool()
    for dep in deps:
        dep_proto = descriptor_pb2.FileDescriptorProto()
        dep.DESCRIPTOR.CopyToProto(dep_proto)
        pool.Add(dep_proto)
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"fenliu.v1.{name}"))
        for name in names
    }


_MIRROR: Final = _byte_mirror()


def _wire_mirror() -> dict[str, type[_message.Message]]:
    """Response classes like fenliu.v1's, but whose ``decision`` is bytes, without the stream's error.

    The decision arrives serialized (:func:`fenliu.serving.convert.decision_to_wire`); a submessage and a bytes
    field of the same number are written the same way, so an answer built with these is, on the wire,
    the fenliu.v1 answer with that decision.
    """
    names = ("TriageResponse", "TriageStreamResponse")
    fdp = descriptor_pb2.FileDescriptorProto(
        name="fenliu/v1/triage_wire_mirror.proto", package="fenliu.v1", syntax="proto3"
    )
    for name in names:
        m = fdp.message_type.add()
        pb.DESCRIPTOR.message_types_by_name[name].CopyToProto(m)
        kept = [f for f in m.field if f.name != "error"]
        del m.field[:]
        m.ClearField("oneof_decl")
        for f in kept:
            g = m.field.add()
            g.CopyFrom(f)
            g.ClearField("oneof_index")
            if g.name == "decision":
                g.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                g.ClearField("type_name")
    return _mirror_classes(fdp, names)


_WIRE: Final = _wire_mirror()
_TRIAGE_RESPONSE: Final[Callable[..., _message.Message]] = _WIRE["TriageResponse"]
_STREAM_RESPONSE: Final[Callable[..., _message.Message]] = _WIRE["TriageStreamResponse"]


def request_deserializer(cls: type[_message.Message]) -> Callable[[bytes], _message.Message | Undecodable]:
    """Parse ``cls``; on failure try its byte mirror; else return :class:`Undecodable`. Never raises."""
    mirror = _MIRROR.get(cls.DESCRIPTOR.name)
    full_name = str(cls.DESCRIPTOR.full_name)

    def deserialize(data: bytes) -> _message.Message | Undecodable:
        try:
            return cls.FromString(data)
        except _message.DecodeError:
            pass
        except Exception:  # the parser must never turn a client's bytes into INTERNAL
            return Undecodable(full_name)
        if mirror is not None:
            try:
                return mirror.FromString(data)
            except Exception:
                pass
        return Undecodable(full_name)

    return deserialize


# ----------------------------------------------------------------------------------------------------
# The servicer


@dataclass
class CallCounters:
    """Calls started and finished in this process (logged when a worker stops)."""

    started: int = 0
    finished: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        with self.lock:
            self.started += 1

    def finish(self) -> None:
        with self.lock:
            self.finished += 1


def _code_of(status: status_pb2.Status) -> grpc.StatusCode:
    for c in grpc.StatusCode:
        if c.value[0] == status.code:
            return c
    return grpc.StatusCode.UNKNOWN


def _safe_id(request: TriageCall) -> str:
    """The complaint's id, if it is one a client may be told back (UTF-8, within the size limit)."""
    if isinstance(request, Undecodable):
        return ""
    try:
        raw = request.complaint.id
    except AttributeError:
        return ""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return ""
    text = str(raw)
    if not text.strip() or len(text) > MAX_ID or "\x00" in text:
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return text


class TriageServicer:
    """fenliu.v1.TriageService. Calls decide side by side; the engine serializes its own matching."""

    def __init__(
        self, triage: TriageEngine, observers: Sequence[Observer] = (), matters: Matters | None = None
    ) -> None:
        self._triage = triage  # thread-safe: decisions run side by side (the engine serializes itself)
        self.observers: list[Observer] = list(observers)
        self.counters = CallCounters()
        self._matters = matters

    # -- one item: a unary call or one stream message

    def _notify(
        self, method: str, complaint: Complaint | None, decision: Decision | None, code: grpc.StatusCode
    ) -> None:
        for observer in self.observers:
            try:
                observer(method, complaint, decision, code)
            except Exception:
                log.warning("observer_failed", exc_info=True, extra={"method": method})

    def decide_one(
        self, request: TriageCall, method: str
    ) -> tuple[bytes | None, str, status_pb2.Status | None]:
        """(serialized decision, complaint id, None) or (None, complaint id, google.rpc.Status), where the
        id is the one a client may be told back ("" if none). Never raises."""
        complaint: Complaint | None = None
        decision: Decision | None = None
        out: bytes | None = None
        status: status_pb2.Status | None = None
        try:
            if isinstance(request, Undecodable):
                status = malformed_status(request.message_type)
            else:
                complaint = convert.complaint_from_proto(request.complaint)
                matters = self._matters
                if matters is None:
                    decision = self._triage.decide(complaint)
                else:  # the matter step before the engine; the decision id and matter part after
                    complaint, rec = matters.before(complaint)
                    decision = matters.after(complaint, self._triage.decide(complaint), rec)
                out = convert.decision_to_wire(decision, trace=bool(request.include_trace))
        except ComplaintError as e:
            status = invalid_complaint_status(e.violations)
            log.debug(
                "complaint_rejected", extra={"method": method, "fields": [v.field for v in e.violations]}
            )
        except NoPackError:
            status = no_pack_status()
        except Exception:
            log.error("engine_failure", exc_info=True, extra={"method": method})
            status = engine_failure_status()
            decision = None
        code = grpc.StatusCode.OK if status is None else _code_of(status)
        self._notify(method, complaint, decision, code)
        if status is not None:
            return None, _safe_id(request), status
        return out, decision.complaint_id if decision is not None else "", None

    # -- RPCs

    # Triage and TriageStream answer serialized messages (their handlers have no serializer).

    def Triage(self, request: TriageCall, context: grpc.ServicerContext) -> bytes:
        self.counters.start()
        try:
            decision, _cid, status = self.decide_one(request, "Triage")
            if status is not None:
                context.abort_with_status(rpc_status.to_status(status))
            return bytes(_TRIAGE_RESPONSE(decision=decision).SerializeToString())
        finally:
            self.counters.finish()

    def TriageStream(self, requests: Iterator[TriageCall], context: grpc.ServicerContext) -> Iterator[bytes]:
        self.counters.start()
        try:
            for index, request in enumerate(requests):
                decision, cid, status = self.decide_one(request, "TriageStream")
                if status is None:
                    answer = _STREAM_RESPONSE(index=index, complaint_id=cid, decision=decision)
                else:
                    answer = pb.TriageStreamResponse(index=index, complaint_id=cid, error=status)
                yield bytes(answer.SerializeToString())
        finally:
            self.counters.finish()

    def GetRulePack(
        self, request: pb.GetRulePackRequest | Undecodable, context: grpc.ServicerContext
    ) -> pb.GetRulePackResponse | None:  # None: never, abort_with_status raises
        self.counters.start()
        try:
            if isinstance(request, Undecodable):
                status: status_pb2.Status = malformed_status(request.message_type)
            else:
                info = self._triage.info()
                if info is not None:
                    self._notify("GetRulePack", None, None, grpc.StatusCode.OK)
                    return convert.rule_pack_to_proto(info, self._triage.last_attempt())
                status = no_pack_status()
            self._notify("GetRulePack", None, None, _code_of(status))
            context.abort_with_status(rpc_status.to_status(status))
            return None
        finally:
            self.counters.finish()

    def GetMatter(
        self, request: pb.GetMatterRequest | Undecodable, context: grpc.ServicerContext
    ) -> pb.GetMatterResponse | None:  # None: never, abort_with_status raises
        self.counters.start()
        try:
            status: status_pb2.Status
            if isinstance(request, Undecodable):
                status = malformed_status(request.message_type)
            elif self._matters is None:
                status = no_matters_status()
            elif not MATTER_ID.match(request.matter_id):
                status = matter_id_status()
            else:
                rows = self._matters.complaints(request.matter_id)
                history = self._matters.history(request.matter_id) if rows else None
                if rows and history is not None:
                    self._notify("GetMatter", None, None, grpc.StatusCode.OK)
                    resp = convert.matter_to_response(request.matter_id, rows)
                    convert.matter_events_to_response(resp, *history)
                    return resp
                status = matter_not_found_status() if rows == [] else matters_unavailable_status()
            self._notify("GetMatter", None, None, _code_of(status))
            context.abort_with_status(rpc_status.to_status(status))
            return None
        finally:
            self.counters.finish()

    # -- events on a matter (督办、反馈、评价、回访)

    def _departments(self) -> frozenset[str] | None:
        """The loaded pack's department codes (a HANDED_ON names one), ``None`` without a pack."""
        decider = getattr(self._triage, "decider", None)
        pack = getattr(decider, "pack", None)
        tables = getattr(pack, "tables", None)
        if not tables or "departments" not in tables:
            return None
        return frozenset(tables["departments"].rows)

    def record_one(
        self, request: pb.RecordEventRequest | Undecodable, method: str
    ) -> tuple[pb.RecordEventResponse | None, status_pb2.Status | None]:
        """(the answer, None) or (None, google.rpc.Status) for one event. Never raises."""
        from fenliu.matter import StoreError
        from fenliu.matter.events import EventRejected, UnknownMatter

        status: status_pb2.Status | None = None
        answer: pb.RecordEventResponse | None = None
        try:
            if isinstance(request, Undecodable):
                status = malformed_status(request.message_type)
            elif self._matters is None:
                status = no_matters_status()
            else:
                event = convert.event_from_proto(request.event, departments=self._departments())
                answer = convert.record_response(*self._matters.record_event(event))
        except ComplaintError as e:
            violations = [FieldViolation("event." + v.field, v.description) for v in e.violations]
            status = invalid_request_status(violations, "event", "INVALID_EVENT")
            log.debug("event_rejected", extra={"method": method, "fields": [v.field for v in violations]})
        except UnknownMatter:
            status = event_matter_not_found_status()
        except EventRejected as e:
            status = event_rejected_status(e.code, str(e))
            log.info("event_refused", extra={"method": method, "code": e.code})
        except StoreError as e:
            log.warning("matter_store_unwritable", extra={"method": method, "error_type": type(e).__name__})
            status = matters_unavailable_status()
        except Exception:
            log.error("event_failure", exc_info=True, extra={"method": method})
            status = _status(
                grpc.StatusCode.INTERNAL,
                "recording the event failed; the failure is logged",
                _error_info("EVENT_FAILURE"),
            )
        self._notify(method, None, None, grpc.StatusCode.OK if status is None else _code_of(status))
        return answer, status

    def RecordEvent(
        self, request: pb.RecordEventRequest | Undecodable, context: grpc.ServicerContext
    ) -> pb.RecordEventResponse | None:  # None: never, abort_with_status raises
        self.counters.start()
        try:
            answer, status = self.record_one(request, "RecordEvent")
            if status is not None:
                context.abort_with_status(rpc_status.to_status(status))
            return answer
        finally:
            self.counters.finish()

    def RecordEvents(
        self, requests: Iterator[pb.RecordEventRequest | Undecodable], context: grpc.ServicerContext
    ) -> Iterator[pb.RecordEventsResponse]:
        self.counters.start()
        try:
            for index, request in enumerate(requests):
                answer, status = self.record_one(request, "RecordEvents")
                if status is None:
                    yield pb.RecordEventsResponse(index=index, recorded=answer)
                else:
                    yield pb.RecordEventsResponse(index=index, error=status)
        finally:
            self.counters.finish()

    def ListOverdue(
        self, request: pb.ListOverdueRequest | Undecodable, context: grpc.ServicerContext
    ) -> Iterator[pb.OverdueMatter]:
        self.counters.start()
        try:
            status: status_pb2.Status | None = None
            if isinstance(request, Undecodable):
                status = malformed_status(request.message_type)
            elif self._matters is None:
                status = no_matters_status()
            else:
                try:
                    as_of, filters = convert.overdue_filters(request)
                except ComplaintError as e:
                    status = invalid_request_status(e.violations, "request", "INVALID_REQUEST")
                else:
                    from fenliu.matter import StoreError

                    try:
                        for item in self._matters.overdue(as_of, **filters):
                            yield convert.overdue_to_proto(item)
                    except StoreError as e:
                        log.warning("matter_store_unreadable", extra={"error_type": type(e).__name__})
                        status = matters_unavailable_status()
            self._notify(
                "ListOverdue", None, None, grpc.StatusCode.OK if status is None else _code_of(status)
            )
            if status is not None:
                context.abort_with_status(rpc_status.to_status(status))
        finally:
            self.counters.finish()

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "RecordEvent": grpc.unary_unary_rpc_method_handler(
                self.RecordEvent,
                request_deserializer=request_deserializer(pb.RecordEventRequest),
                response_serializer=pb.RecordEventResponse.SerializeToString,
            ),
            "RecordEvents": grpc.stream_stream_rpc_method_handler(
                self.RecordEvents,
                request_deserializer=request_deserializer(pb.RecordEventRequest),
                response_serializer=pb.RecordEventsResponse.SerializeToString,
            ),
            "ListOverdue": grpc.unary_stream_rpc_method_handler(
                self.ListOverdue,
                request_deserializer=request_deserializer(pb.ListOverdueRequest),
                response_serializer=pb.OverdueMatter.SerializeToString,
            ),
            "GetMatter": grpc.unary_unary_rpc_method_handler(
                self.GetMatter,
                request_deserializer=request_deserializer(pb.GetMatterRequest),
                response_serializer=pb.GetMatterResponse.SerializeToString,
            ),
            "Triage": grpc.unary_unary_rpc_method_handler(
                self.Triage, request_deserializer=request_deserializer(pb.TriageRequest)
            ),
            "TriageStream": grpc.stream_stream_rpc_method_handler(
                self.TriageStream, request_deserializer=request_deserializer(pb.TriageStreamRequest)
            ),
            "GetRulePack": grpc.unary_unary_rpc_method_handler(
                self.GetRulePack,
                request_deserializer=request_deserializer(pb.GetRulePackRequest),
                response_serializer=pb.GetRulePackResponse.SerializeToString,
            ),
        }


# ----------------------------------------------------------------------------------------------------
# Capacity: health, streams and unary calls each have their own threads


class StreamGuard:
    """The open streams of one server: at most ``max_streams``, and an idle timeout.

    gRPC's synchronous server runs every call on a thread of its pool, and a stream holds its thread
    for as long as it is open, waiting for the client's next message. So streams run on a pool of their
    own (``max_streams`` threads, and a few to refuse more at once with RESOURCE_EXHAUSTED): however
    many are open, idle or busy, unary calls keep the server's pool and health checks their own. A
    request stream that neither receives nor sends for ``idle_seconds`` is cancelled (logged
    ``stream_idle_closed``; the client sees CANCELLED), which frees its thread. Health's Watch counts
    against the cap but is never idle by design, so it has no timeout; keepalive pings find dead clients.
    """

    def __init__(self, max_streams: int, idle_seconds: float) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.max_streams = max_streams
        self.idle_seconds = idle_seconds
        self.pool = futures.ThreadPoolExecutor(
            max_workers=max_streams + _REFUSAL_THREADS, thread_name_prefix="fenliu-stream"
        )
        self.health_pool = futures.ThreadPoolExecutor(
            max_workers=HEALTH_THREADS, thread_name_prefix="fenliu-health"
        )
        self._lock = threading.Lock()
        self._open: dict[int, list[Any]] = {}  # token -> [context, last activity, idle timeout applies]
        self._next = 0
        self._reaper: threading.Thread | None = None
        self.refused = 0
        self.idle_closed = 0

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._open)

    def enter(self, context: grpc.ServicerContext, *, idles: bool) -> int | None:
        """A token for a new stream, or None when the cap is reached."""
        with self._lock:
            if len(self._open) >= self.max_streams:
                self.refused += 1
                return None
            self._next += 1
            token = self._next
            self._open[token] = [context, time.monotonic(), idles]
            if idles and self.idle_seconds > 0 and self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="fenliu-stream-idle", daemon=True)
                self._reaper.start()
            return token

    def touch(self, token: int) -> None:
        entry = self._open.get(token)
        if entry is not None:
            entry[1] = time.monotonic()

    def leave(self, token: int) -> None:
        with self._lock:
            self._open.pop(token, None)

    def closed_idle(self, token: int) -> bool:
        with self._lock:
            return token not in self._open

    def _reap(self) -> None:
        period = max(0.05, min(1.0, self.idle_seconds / 4))
        while True:
            time.sleep(period)
            now = time.monotonic()
            idle: list[grpc.ServicerContext] = []
            with self._lock:
                for token, (context, last, idles) in list(self._open.items()):
                    if idles and now - last > self.idle_seconds:
                        del self._open[token]
                        idle.append(context)
                if not any(e[2] for e in self._open.values()) and not idle:
                    self._reaper = None
                    return
            for context in idle:
                self.idle_closed += 1
                log.info("stream_idle_closed", extra={"idle_s": self.idle_seconds, "open": self.open})
                with contextlib.suppress(Exception):
                    context.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.health_pool.shutdown(wait=False, cancel_futures=True)


def _on_pool(fn: Callable[..., Any], pool: futures.ThreadPoolExecutor) -> Callable[..., Any]:
    """``fn`` as a handler behavior that gRPC runs on ``pool`` instead of the server's own."""

    def behavior(*args: Any) -> Any:
        return fn(*args)

    behavior.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return behavior


def _too_many_streams(context: grpc.ServicerContext, guard: StreamGuard) -> None:
    context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"this worker has {guard.max_streams} streams open, its limit (--max-streams); "
        "retry later, or send the complaints over fewer streams",
    )


class _Capacity(grpc.ServerInterceptor):  # type: ignore[misc]
    """Puts health checks on their own threads, and streams on theirs, under a cap and an idle timeout.

    Innermost of the interceptors, so that the others (metrics) see a refused stream like any call.
    The pools are given to gRPC by :class:`_Pools`, the outermost.
    """

    def __init__(self, guard: StreamGuard) -> None:
        self.guard = guard

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        guard = self.guard
        if not handler.request_streaming:  # health Watch: capped, never idle by design
            inner_us = handler.unary_stream

            def unary_stream(request: object, context: grpc.ServicerContext) -> Iterator[object]:
                token = guard.enter(context, idles=False)
                if token is None:
                    _too_many_streams(context, guard)
                    return
                try:
                    yield from inner_us(request, context)
                finally:
                    guard.leave(token)

            return handler._replace(unary_stream=unary_stream)

        def watched(requests: Iterator[object], token: int) -> Iterator[object]:
            try:
                for r in requests:
                    guard.touch(token)
                    yield r
            except grpc.RpcError:
                if guard.closed_idle(token):  # cancelled for idling: end quietly
                    return
                raise

        if handler.response_streaming:
            inner_ss = handler.stream_stream

            def stream_stream(requests: Iterator[object], context: grpc.ServicerContext) -> Iterator[object]:
                token = guard.enter(context, idles=True)
                if token is None:
                    _too_many_streams(context, guard)
                    return
                try:
                    for response in inner_ss(watched(requests, token), context):
                        guard.touch(token)
                        yield response
                finally:
                    guard.leave(token)

            return handler._replace(stream_stream=stream_stream)
        inner_su = handler.stream_unary

        def stream_unary(requests: Iterator[object], context: grpc.ServicerContext) -> object:
            token = guard.enter(context, idles=True)
            if token is None:
                _too_many_streams(context, guard)
            try:
                return inner_su(watched(requests, token), context)  # type: ignore[arg-type]
            finally:
                guard.leave(token)  # type: ignore[arg-type]

        return handler._replace(stream_unary=stream_unary)


_HEALTH_CHECKS: Final = frozenset({f"/{health.SERVICE_NAME}/Check", f"/{health.SERVICE_NAME}/List"})


class _Pools(grpc.ServerInterceptor):  # type: ignore[misc]
    """Outermost interceptor: health checks run on the health pool, streams on the stream pool."""

    def __init__(self, guard: StreamGuard) -> None:
        self.guard = guard

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler.request_streaming or handler.response_streaming:
            pool = self.guard.pool
        elif handler_call_details.method in _HEALTH_CHECKS:
            pool = self.guard.health_pool
        else:
            return handler
        kind = (
            ("stream_stream" if handler.response_streaming else "stream_unary")
            if handler.request_streaming
            else ("unary_stream" if handler.response_streaming else "unary_unary")
        )
        return handler._replace(**{kind: _on_pool(getattr(handler, kind), pool)})


# ----------------------------------------------------------------------------------------------------
# Building a server


def _credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    chain = Path(tls.cert).read_bytes()
    key = Path(tls.key).read_bytes()
    ca = Path(tls.client_ca).read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
    )


@dataclass
class Serving:
    """A built (not yet started) server and what a worker needs to run and stop it."""

    server: grpc.Server
    port: int
    servicer: TriageServicer
    health: health.HealthServicer
    streams: StreamGuard | None = None


def server_options(max_message_bytes: int, reuse_port: bool) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        *KEEPALIVE_OPTIONS,
    ]


def build_server(
    address: str,
    triage: TriageEngine,
    *,
    tls: TlsFiles | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    observers: Sequence[Observer] = (),
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    reuse_port: bool = False,
    threads: int = DEFAULT_THREADS,
    max_streams: int = DEFAULT_MAX_STREAMS,
    stream_idle_seconds: float = DEFAULT_STREAM_IDLE_SECONDS,
    matters: Matters | None = None,
) -> Serving:
    """Build the server with TriageService, health and reflection, bound to ``address``.

    Unary calls run on ``threads`` threads; streams on a pool of their own, at most ``max_streams`` at
    once, cancelled after ``stream_idle_seconds`` without a message (0: never); health checks on
    :data:`HEALTH_THREADS` threads of their own (:class:`StreamGuard`).
    """
    guard = StreamGuard(max_streams, stream_idle_seconds)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fenliu-rpc"),
        # HOOK: metrics and other interceptors, between the one that gives each call its threads and
        # the one that caps streams (so that they see a refused stream like any other call)
        interceptors=[_Pools(guard), *interceptors, _Capacity(guard)],
        options=server_options(max_message_bytes, reuse_port),
    )
    servicer = TriageServicer(triage, observers, matters)
    server.add_registered_method_handlers(SERVICE_NAME, servicer.handlers())

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    def set_health(serving: bool) -> None:
        st = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        health_servicer.set("", st)
        health_servicer.set(SERVICE_NAME, st)

    set_health(triage.info() is not None)
    triage.add_listener(lambda _info: set_health(True))
    if matters is not None:  # the matter store's own health entry: NOT_SERVING while degraded

        def set_matter_health(degraded: bool) -> None:
            st = (
                health_pb2.HealthCheckResponse.NOT_SERVING
                if degraded
                else health_pb2.HealthCheckResponse.SERVING
            )
            health_servicer.set(MATTER_HEALTH, st)

        set_matter_health(matters.degraded)
        matters.on_change(set_matter_health)

    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
        server,
    )
    try:
        if tls is not None:
            port = server.add_secure_port(address, _credentials(tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise OSError(f"cannot listen on {address}: {e}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return Serving(server, port, servicer, health_servicer, guard)


def create_server(
    address: str,
    triage: TriageEngine,
    *,
    tls: TlsFiles | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    observers: Sequence[Observer] = (),
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    reuse_port: bool = False,
    threads: int = DEFAULT_THREADS,
    max_streams: int = DEFAULT_MAX_STREAMS,
    stream_idle_seconds: float = DEFAULT_STREAM_IDLE_SECONDS,
    matters: Matters | None = None,
) -> tuple[grpc.Server, int]:
    """A server (not started) and the port it is bound to; bind ``host:0`` for a free port."""
    s = build_server(
        address,
        triage,
        tls=tls,
        max_message_bytes=max_message_bytes,
        observers=observers,
        interceptors=interceptors,
        reuse_port=reuse_port,
        threads=threads,
        max_streams=max_streams,
        stream_idle_seconds=stream_idle_seconds,
        matters=matters,
    )
    return s.server, s.port


def banner(
    address: str,
    port: int,
    workers: int,
    pids: Iterable[int],
    pack: str,
    tls: TlsFiles | None,
    control_pid: int | None = None,
    *,
    metrics_url: str = "",
) -> str:
    """What ``fenliu serve`` prints once it is ready: where it listens, how to call it, where its
    metrics are, how to ask what it serves."""
    host = address.rsplit(":", 1)[0] or "127.0.0.1"
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    target = f"{host}:{port}"
    sample = json.dumps(
        {"id": "demo-1", "channel": "VISIT", "text": "邻居家的排水沟堵了，污水流进我家院子，多次协商无果"},
        ensure_ascii=False,
    )
    tls_flags = ""
    grpcurl_flags = "-plaintext"
    if tls is not None:
        tls_flags = " --tls-ca CA.pem" + (
            " --tls-cert CLIENT.pem --tls-key CLIENT.key" if tls.client_ca else ""
        )
        grpcurl_flags = "-cacert CA.pem" + (" -cert CLIENT.pem -key CLIENT.key" if tls.client_ca else "")
    grpcurl_body = json.dumps(
        {"complaint": json.loads(sample) | {"channel": "CHANNEL_VISIT"}}, ensure_ascii=False
    )
    pid_list = ", ".join(str(p) for p in pids)
    control = control_pid if control_pid is not None else os.getpid()
    return "\n".join(
        [
            f"fenliu: serving {pack} on {target} ({'TLS' if tls else 'plaintext'}"
            f"{', mutual TLS' if tls and tls.client_ca else ''}), "
            f"{workers} worker{'s' if workers != 1 else ''} (pid {pid_list})",
            "  service:    fenliu.v1.TriageService (Triage, TriageStream, GetRulePack, GetMatter, "
            "RecordEvent, RecordEvents, ListOverdue); "
            "grpc.health.v1.Health; reflection",
            "  call it:",
            f"    fenliu call --address {target}{tls_flags} --trace '{sample}'",
            f"    grpcurl {grpcurl_flags} -d '{grpcurl_body}' {target} fenliu.v1.TriageService/Triage",
            f"    node tests/node/client.js {target} '{sample}'",
            "  " + _("what it serves, its last reload:") + f" fenliu status {target}{tls_flags}",
            "  "
            + (
                _("metrics:") + f" {metrics_url}"
                if metrics_url
                else _("metrics: not served (--metrics-address 127.0.0.1:9464 serves them)")
            ),
            f"  reload the pack: kill -HUP {control}; stop: Ctrl-C or kill -TERM {control}",
        ]
    )


def status_to_dict(status: status_pb2.Status) -> Json:
    """A google.rpc.Status as JSON: code name, message, bad fields and error reason."""
    out: Json = {"code": _code_of(status).name, "message": status.message}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out["field_violations"] = [
                {"field": v.field, "description": v.description} for v in br.field_violations
            ]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            ei = error_details_pb2.ErrorInfo()
            detail.Unpack(ei)
            out["reason"] = ei.reason
            out["domain"] = ei.domain
    return out
