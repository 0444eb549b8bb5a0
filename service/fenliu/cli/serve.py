"""The command line of serving: ``fenliu serve``'s arguments into a :class:`~fenliu.serving.config.ServeConfig`,
and ``fenliu call``, a small gRPC client.

This is the only serving module that knows argparse: below it, the supervisor and the server read a
:class:`~fenliu.serving.config.ServeConfig`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Final

import grpc
from google.rpc import code_pb2
from grpc_status import rpc_status

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.i18n import N_, _
from fenliu.serving import convert
from fenliu.serving.config import (
    DEFAULT_ADDRESS,
    DEFAULT_DECISION_LOG_BACKUPS,
    DEFAULT_DECISION_LOG_MAX_BYTES,
    DEFAULT_GRACE_SECONDS,
    DEFAULT_MATTER_WINDOW_DAYS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_STREAMS,
    DEFAULT_STATE_DIR,
    DEFAULT_STORE_DEADLINE_MS,
    DEFAULT_STREAM_IDLE_SECONDS,
    DEFAULT_THREADS,
    ConfigError,
    ServeConfig,
)
from fenliu.serving.server import status_to_dict

# ----------------------------------------------------------------------------------------------------
# fenliu serve


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", metavar="DIR", help="rule pack directory (without it: NOT_SERVING)")
    parser.add_argument("--address", metavar="HOST:PORT", default=DEFAULT_ADDRESS, help="default %(default)s")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help="unary calls served at once per worker (default %(default)s)",
    )
    parser.add_argument(
        "--max-streams",
        type=int,
        default=DEFAULT_MAX_STREAMS,
        metavar="N",
        help="streams open at once per worker, each on a thread of its own; more are refused with "
        "RESOURCE_EXHAUSTED (default %(default)s)",
    )
    parser.add_argument(
        "--stream-idle-timeout",
        type=float,
        default=DEFAULT_STREAM_IDLE_SECONDS,
        metavar="SECONDS",
        help="cancel a TriageStream that sends nothing this long (0: never; default %(default)s)",
    )
    parser.add_argument(
        "--pin-cpus",
        metavar="auto|LIST",
        help="pin worker i to the i-th CPU of LIST (e.g. 0,1 or 0-3; auto: the CPUs this process may use); "
        "for a machine that runs fenliu alone (default: not pinned)",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (enables TLS)")
    parser.add_argument("--tls-key", metavar="PEM", help="server private key")
    parser.add_argument("--tls-client-ca", metavar="PEM", help="CA for client certificates (mutual TLS)")
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metavar="N",
        help="largest request or response (default %(default)s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        metavar="SECONDS",
        help="on SIGTERM, time for calls in flight to finish (default %(default)s)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, first report NOT_SERVING and keep serving this long, so that health-checking "
        "clients and load balancers move away before the port closes (default %(default)s)",
    )
    parser.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="do not reload when files in the rules folder change (SIGHUP still reloads)",
    )
    parser.add_argument(
        "--metrics-address", metavar="HOST:PORT", help="serve Prometheus metrics here (:PORT: on 127.0.0.1)"
    )
    parser.add_argument(
        "--metrics-tls",
        action="store_true",
        help="serve /metrics over HTTPS with --tls-cert and --tls-key (and require a client certificate "
        "signed by --tls-client-ca when given)",
    )
    parser.add_argument("--decision-log", metavar="PATH", help="append decisions (masked) as JSON lines")
    parser.add_argument(
        "--decision-log-key-file",
        metavar="FILE",
        help="HMAC key for personal data in the decision log (else $FENLIU_DECISION_LOG_KEY)",
    )
    parser.add_argument(
        "--decision-log-max-bytes",
        type=int,
        default=DEFAULT_DECISION_LOG_MAX_BYTES,
        metavar="N",
        help="rotate at this size",
    )
    parser.add_argument(
        "--decision-log-backups",
        type=int,
        default=DEFAULT_DECISION_LOG_BACKUPS,
        metavar="N",
        help="rotated files kept",
    )
    parser.add_argument(
        "--decision-log-keep-text",
        action="store_true",
        help="log the citizen's words (title, text, hint), which may hold personal data; "
        "by default only their lengths are logged",
    )
    parser.add_argument(  # the default since the log redacts free text unless told otherwise
        "--decision-log-redact-text", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default="none",
        help="remember matters in this store: sqlite:///PATH (every worker shares the file), "
        "postgresql://… (replicas share it), memory:, or none (the default; `make run` uses "
        f"sqlite:///{DEFAULT_STATE_DIR}/matters.db)",
    )
    parser.add_argument(
        "--store-key-file",
        metavar="FILE",
        help="HMAC key for the id numbers and phones the store keeps (else --decision-log-key-file, "
        "else $FENLIU_DECISION_LOG_KEY)",
    )
    parser.add_argument(
        "--matter-window-days",
        type=int,
        default=DEFAULT_MATTER_WINDOW_DAYS,
        metavar="N",
        help="earlier complaints this many days around a new one may be its matter",
    )
    parser.add_argument(
        "--store-deadline-ms",
        type=float,
        default=DEFAULT_STORE_DEADLINE_MS,
        metavar="MS",
        help="a lookup-and-write taking longer answers 'history unavailable' (the complaint is queued)",
    )
    parser.add_argument(
        "--store-degraded-ok",
        action="store_true",
        help="start when the store cannot be reached (decisions say history was unavailable, health and "
        "metrics say degraded) and keep trying it; without it, refuse to start",
    )
    parser.add_argument(
        "--store-queue-dir",
        metavar="DIR",
        help="where complaints the store could not take wait (default: PATH.queue beside an SQLite "
        f"file, else {DEFAULT_STATE_DIR}/matter-queue)",
    )
    parser.add_argument("--log-level", default="INFO", help=argparse.SUPPRESS)


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` of parsed ``fenliu serve`` arguments (exits with a usage line for
    settings that do not go together)."""
    names = {f.name for f in dataclasses.fields(ServeConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if given.get("store") in ("none", ""):
        given["store"] = None
    config = ServeConfig(**given)
    try:
        config.tls()
    except ConfigError as e:
        raise SystemExit(_("fenliu serve: {reason}").format(reason=e)) from None
    return config


def run_serve(args: argparse.Namespace) -> int:
    """``fenliu serve``: one process (``--workers 1``) or a supervisor with N workers on one port."""
    from fenliu.serving import supervisor

    return supervisor.serve(serve_config(args))


# ----------------------------------------------------------------------------------------------------
# fenliu call: a small client


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "complaint",
        nargs="?",
        default="-",
        help="the complaint as JSON (a list: sent over TriageStream), a file (or @FILE), or - for stdin (default)",
    )
    parser.add_argument("--address", metavar="HOST:PORT", default=DEFAULT_ADDRESS, help="default %(default)s")
    parser.add_argument("--trace", action="store_true", help="ask for the trace")
    parser.add_argument(
        "--matter", metavar="MATTER_ID", help="instead of a complaint: the matter's complaints (GetMatter)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--tls-ca", metavar="PEM", help="CA of the server's certificate (enables TLS)")
    parser.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")


def _read_input(spec: str) -> Any:
    if spec == "-":
        text = sys.stdin.read()
    elif spec.startswith("@"):
        text = Path(spec[1:]).read_text(encoding="utf-8")
    elif not spec.lstrip().startswith(("{", "[")) and Path(spec).is_file():
        text = Path(spec).read_text(encoding="utf-8")
    else:
        text = spec
    return json.loads(text)


def _channel(args: argparse.Namespace) -> grpc.Channel | None:
    """A channel to ``args.address``: TLS when a CA or client certificate is given. ``None`` (said on
    stderr) when a certificate file cannot be read."""
    if not (args.tls_ca or args.tls_cert):
        return grpc.insecure_channel(args.address)
    try:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(args.tls_ca).read_bytes() if args.tls_ca else None,
            private_key=Path(args.tls_key).read_bytes() if args.tls_key else None,
            certificate_chain=Path(args.tls_cert).read_bytes() if args.tls_cert else None,
        )
    except OSError as e:
        print(json.dumps({"error": f"cannot read {e.filename}: {e.strerror}"}), file=sys.stderr)
        return None
    return grpc.secure_channel(args.address, creds)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "address", nargs="?", default=DEFAULT_ADDRESS, metavar="HOST:PORT", help=_("default %(default)s")
    )
    parser.add_argument("--json", action="store_true", help=_("JSON instead of text"))
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--tls-ca", metavar="PEM", help=_("CA of the server's certificate (enables TLS)"))
    parser.add_argument("--tls-cert", metavar="PEM", help=_("client certificate (mutual TLS)"))
    parser.add_argument("--tls-key", metavar="PEM", help=_("client private key (mutual TLS)"))


_OUTCOME_WORDS: Final = {
    "RELOAD_OUTCOME_LOADED": N_("loaded: this pack now serves"),
    "RELOAD_OUTCOME_REFUSED": N_("refused: the pack above keeps serving"),
    "RELOAD_OUTCOME_UNCHANGED": N_("unchanged: the folder holds the pack that serves"),
    "RELOAD_OUTCOME_UNSPECIFIED": N_("not known"),
}


def run_status(args: argparse.Namespace) -> int:
    """``fenliu status``: the pack a service serves and its last reload. 0 served and the last reload
    loaded (or found nothing new), 1 the last reload was refused, 2 the service could not be asked."""
    from google.protobuf.json_format import MessageToDict

    from fenliu._proto.fenliu.v1 import triage_pb2_grpc

    channel = _channel(args)
    if channel is None:
        return 2
    with channel:
        try:
            resp = triage_pb2_grpc.TriageServiceStub(channel).GetRulePack(
                pb.GetRulePackRequest(), timeout=args.timeout
            )
        except grpc.RpcError as e:
            print(
                _("fenliu status: cannot ask {address}: {code} {details}").format(
                    address=args.address, code=e.code().name, details=e.details() or ""
                ),
                file=sys.stderr,
            )
            return 2
    last = resp.last_reload
    outcome = pb.ReloadOutcome.Name(last.outcome)
    if args.json:
        print(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), ensure_ascii=False, indent=2))
    else:
        loaded = resp.loaded_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
        print(
            _("serving: {name} {revision} ({digest}), loaded {at}, {rules} rules").format(
                name=resp.name, revision=resp.revision, digest=resp.digest, at=loaded, rules=resp.rule_count
            )
        )
        if resp.HasField("last_reload"):
            at = last.at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
            print(_("last reload: {at}: {outcome}").format(at=at, outcome=_(_OUTCOME_WORDS[outcome])))
            if last.HasField("pack") and last.pack.digest != resp.digest:
                print(
                    "  "
                    + _("it read: {name} {revision} ({digest})").format(
                        name=last.pack.name, revision=last.pack.revision, digest=last.pack.digest
                    )
                )
            for p in last.problems:
                print("  " + _("problem: {problem}").format(problem=p))
            for f in last.changed_files:
                print("  " + _("changed: {file}").format(file=f))
            for w in last.warnings:
                print("  " + _("warning: {warning}").format(warning=w))
    return 1 if outcome == "RELOAD_OUTCOME_REFUSED" else 0


def _refused_here(items: list[Any], many: bool) -> set[int]:
    """Validate the complaints before sending them, as the service would: each invalid one is printed
    with every bad field, in the form `fenliu eval` prints (``index`` for an item of a list); the
    indexes of those refused."""
    from fenliu.domain.errors import ComplaintError
    from fenliu.domain.model import complaint_from_dict

    refused: set[int] = set()
    for i, item in enumerate(items):
        try:
            complaint_from_dict(item)
        except ComplaintError as e:
            refused.add(i)
            err: dict[str, Any] = {
                "error": "INVALID_ARGUMENT",
                "field_violations": [{"field": v.field, "description": v.description} for v in e.violations],
            }
            if many:
                err = {"index": i, **err}
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                err["complaint_id"] = item["id"][:128]
            print(json.dumps(err, ensure_ascii=False))
    return refused


def run_call(args: argparse.Namespace) -> int:
    """``fenliu call``: 0 decided (or the matter found), 1 rejected (INVALID_ARGUMENT, an unknown matter:
    NOT_FOUND), 2 any other failure."""
    from fenliu._proto.fenliu.v1 import triage_pb2_grpc

    try:
        data = {} if args.matter is not None else _read_input(args.complaint)
        items = data if isinstance(data, list) else [data]
        refused = set() if args.matter is not None else _refused_here(items, isinstance(data, list))
        if refused and (not isinstance(data, list) or len(refused) == len(items)):
            return 1
        sent = [i for i in range(len(items)) if i not in refused]  # a list's valid items still go
        complaints = [] if args.matter is not None else [convert.complaint_to_proto(items[i]) for i in sent]
    except (OSError, ValueError, TypeError, AttributeError, OverflowError, RecursionError) as e:
        print(json.dumps({"error": f"cannot read the complaint: {type(e).__name__}: {e}"}), file=sys.stderr)
        return 2
    channel = _channel(args)
    if channel is None:
        return 2
    with channel:
        stub = triage_pb2_grpc.TriageServiceStub(channel)
        if args.matter is not None:
            try:
                found = stub.GetMatter(pb.GetMatterRequest(matter_id=args.matter), timeout=args.timeout)
            except grpc.RpcError as e:
                st = rpc_status.from_call(e)
                err = (
                    status_to_dict(st) if st is not None else {"code": e.code().name, "message": e.details()}
                )
                print(json.dumps(err, ensure_ascii=False, indent=2))
                return 1 if err["code"] in ("INVALID_ARGUMENT", "NOT_FOUND") else 2
            print(json.dumps(convert.matter_from_response(found), ensure_ascii=False, indent=2))
            return 0
        if not isinstance(data, list):
            try:
                resp = stub.Triage(
                    pb.TriageRequest(complaint=complaints[0], include_trace=args.trace), timeout=args.timeout
                )
            except grpc.RpcError as e:
                st = rpc_status.from_call(e)
                err = (
                    status_to_dict(st) if st is not None else {"code": e.code().name, "message": e.details()}
                )
                print(json.dumps(err, ensure_ascii=False, indent=2))
                return 1 if err["code"] == "INVALID_ARGUMENT" else 2
            print(json.dumps(convert.decision_from_proto(resp.decision), ensure_ascii=False, indent=2))
            return 0
        worst = 0
        requests = (pb.TriageStreamRequest(complaint=c, include_trace=args.trace) for c in complaints)
        try:
            for item in stub.TriageStream(requests, timeout=args.timeout):
                if item.HasField("decision"):
                    out = {"index": sent[item.index], "decision": convert.decision_from_proto(item.decision)}
                else:
                    out = {
                        "index": sent[item.index] if item.index < len(sent) else item.index,
                        "complaint_id": item.complaint_id,
                        "error": status_to_dict(item.error),
                    }
                    worst = max(worst, 1 if item.error.code == code_pb2.INVALID_ARGUMENT else 2)
                print(json.dumps(out, ensure_ascii=False))
        except grpc.RpcError as e:
            print(json.dumps({"code": e.code().name, "message": e.details()}), file=sys.stderr)
            return 2
        return max(worst, 1 if refused else 0)


def main(argv: list[str] | None = None) -> int:
    """``python -m fenliu.cli.serve`` takes the arguments of ``fenliu serve``."""
    parser = argparse.ArgumentParser(prog="fenliu serve", description="serve the gRPC API")
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    from fenliu.cli.serve import main as _main  # the importable copy, so that spawn can pickle workers

    raise SystemExit(_main())
