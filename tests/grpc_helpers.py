"""Helpers for the gRPC tests: servers on real ports, sample complaints, certificates, load clients.

Run as a script it is a load client (used by the multi-process serving tests)::

    python tests/grpc_helpers.py load TARGET --seconds 6 --prefix c1 --out result.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from grpc_status import rpc_status

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.domain.model import parse_timestamp
from fenliu.serving import convert
from fenliu.serving.server import Serving, build_server, status_to_dict

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "rules" / "wushen"
PROTO_DIR = ROOT / "proto"
NODE_DIR = ROOT / "tests" / "node"
RECEIVED_AT = "2025-03-01T09:30:00+08:00"


# ----------------------------------------------------------------------------------------------------
# Servers and clients


@contextlib.contextmanager
def serving(triage: Any, **kwargs: Any) -> Iterator[tuple[str, Serving]]:
    """A started server on 127.0.0.1:<free port>; yields ("127.0.0.1:port", Serving)."""
    s = build_server("127.0.0.1:0", triage, **kwargs)
    s.server.start()
    try:
        yield f"127.0.0.1:{s.port}", s
    finally:
        s.server.stop(0).wait()


@contextlib.contextmanager
def stub_for(
    target: str, credentials: grpc.ChannelCredentials | None = None, **options: Any
) -> Iterator[Any]:
    opts = list(options.items())
    channel = (
        grpc.secure_channel(target, credentials, options=opts)
        if credentials is not None
        else grpc.insecure_channel(target, options=opts)
    )
    with channel:
        yield pb_grpc.TriageServiceStub(channel)


def error_of(err: grpc.RpcError) -> dict[str, Any]:
    """The rich status of a failed call as JSON (code, message, field_violations, reason, domain)."""
    st = rpc_status.from_call(err)
    if st is None:
        return {"code": err.code().name, "message": err.details()}
    return status_to_dict(st)


def bad_fields(error: Mapping[str, Any]) -> set[str]:
    return {v["field"] for v in error.get("field_violations", [])}


# ----------------------------------------------------------------------------------------------------
# Complaints and decisions


def pack_complaints() -> list[dict[str, Any]]:
    """The complaints of the reference pack's own test cases, each with an id and a fixed received_at."""
    from fenliu import load_pack
    from fenliu.domain.model import DERIVED_FIELDS

    out = []
    for i, case in enumerate(load_pack(PACK).cases):
        # without the fields the enrichers derive, which a case may give but a client never sends
        d = {k: v for k, v in case.complaint.items() if k not in DERIVED_FIELDS}
        d.setdefault("id", f"case-{i}")
        d.setdefault("received_at", RECEIVED_AT)
        out.append(d)
    return out


def comparable(decision: Mapping[str, Any]) -> dict[str, Any]:
    """A decision's JSON form without its decision_id, deadlines as UTC instants."""
    d = {k: v for k, v in decision.items() if k != "decision_id"}
    d["deadlines"] = {
        k: (parse_timestamp(v).astimezone(UTC).isoformat() if v else None)
        for k, v in decision["deadlines"].items()
    }
    return d


# ----------------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: a client trusting it must fail


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(path: Path, k: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(k, hashes.SHA256())
        )
        return cert, k

    def leaf(
        cn: str, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, server: bool
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = key()
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return b.sign(issuer_key, hashes.SHA256()), k

    pem = serialization.Encoding.PEM
    ca_cert, ca_key = ca("fenliu test CA")
    other_cert, _ = ca("some other CA")
    server_cert, server_key = leaf("localhost", ca_cert, ca_key, server=True)
    client_cert, client_key = leaf("intake-frontend", ca_cert, ca_key, server=False)
    certs = Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )
    certs.ca.write_bytes(ca_cert.public_bytes(pem))
    certs.other_ca.write_bytes(other_cert.public_bytes(pem))
    certs.server_cert.write_bytes(server_cert.public_bytes(pem))
    write_key(certs.server_key, server_key)
    certs.client_cert.write_bytes(client_cert.public_bytes(pem))
    write_key(certs.client_key, client_key)
    return certs


# ----------------------------------------------------------------------------------------------------
# `fenliu serve` as a child process


def serve_refused(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fenliu serve ARGS`` run to its end (it is expected to refuse to start), its output captured."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fenliu.cli",
            "serve",
            "--rules",
            str(PACK),
            "--address",
            "127.0.0.1:0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=None if env is None else dict(env),
    )


class ServeProcess:
    """``python -m fenliu.cli.serve ...`` with its banner parsed and its JSON log lines collected."""

    def __init__(
        self, args: list[str], log_path: Path, ready_timeout: float = 60.0, *, own_group: bool = False
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fenliu.cli.serve", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
            start_new_session=own_group,  # a process group of its own, to be signalled as a whole
        )
        self.stdout: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(ready_timeout):
            self.kill()
            raise AssertionError(f"fenliu serve did not start: {self.stdout} {self.logs()}")
        banner = "\n".join(self.stdout)
        m = re.search(r"on ([\d.]+):(\d+)", banner)
        pids = re.search(r"\(pid ([\d, ]+)\)", banner)
        assert m and pids, banner
        self.target = f"{m.group(1)}:{m.group(2)}"
        self.worker_pids = [int(p) for p in pids.group(1).split(",")]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))
            if line.startswith("  reload the pack"):
                self._ready.set()
        self._ready.set()

    def logs(self) -> list[dict[str, Any]]:
        self._log.flush()
        data = self.log_path.read_bytes()
        # A worker may be writing a line as it is read: a last line without its newline is not done.
        complete = data[: data.rfind(b"\n") + 1]
        out = []
        for line in complete.decode("utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))  # every line must be JSON
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no {count}x {name} in {timeout}s: {self.logs()}")

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def established_connections(pid: int, port: int) -> int:
    """TCP connections to ``port`` that process ``pid`` holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local_port = int(parts[1].rsplit(":", 1)[1], 16)
                if local_port == port and parts[3] == "01" and parts[9] in inodes:  # 01: ESTABLISHED
                    count += 1
    return count


# ----------------------------------------------------------------------------------------------------
# Load client (a separate process)


def load_complaint(prefix: str, i: int) -> Any:
    samples = [
        "邻居家的排水沟对着我家院子，一下雨院子里全是水。",
        "公司拖欠我们三个月工资，农民工工资一直不给。",
        "另一户牧民老是把羊群赶进我家草场放牧。",
        "煤矿粉尘太大，村里人都受不了。",
    ]
    return convert.complaint_to_proto(
        {
            "id": f"{prefix}-{i}",
            "text": samples[i % len(samples)],
            "received_at": RECEIVED_AT,
            "people_involved": i % 40,
        }
    )


def run_load(target: str, seconds: float, prefix: str, channels: int, stream_every: int) -> dict[str, Any]:
    """Send calls for ``seconds``; retry a call that is UNAVAILABLE until it succeeds (bounded).

    Every ``stream_every``-th call is a TriageStream of 50 complaints instead of a unary call.
    Returns counts; ``lost`` lists calls that never succeeded, ``failures`` any other error.
    """
    chans = [
        grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    stubs = [pb_grpc.TriageServiceStub(c) for c in chans]
    result: dict[str, Any] = {"ok": 0, "ok_items": 0, "retries": 0, "lost": [], "failures": []}
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        stub = stubs[i % len(stubs)]
        is_stream = stream_every > 0 and i % stream_every == stream_every - 1
        give_up = time.monotonic() + 20.0
        while True:
            try:
                if is_stream:
                    reqs = [
                        pb.TriageStreamRequest(complaint=load_complaint(f"{prefix}s{i}", k))
                        for k in range(50)
                    ]
                    items = list(stub.TriageStream(iter(reqs), timeout=15))
                    ids = [it.decision.complaint_id for it in items]
                    if ids != [r.complaint.id for r in reqs]:
                        result["failures"].append(
                            f"stream {i}: {len(items)} of {len(reqs)} items, out of order"
                        )
                    result["ok_items"] += len(items)
                else:
                    c = load_complaint(prefix, i)
                    resp = stub.Triage(pb.TriageRequest(complaint=c), timeout=10)
                    if resp.decision.complaint_id != c.id:
                        result["failures"].append(f"call {i}: wrong complaint_id")
                    result["ok_items"] += 1
                result["ok"] += 1
                break
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < give_up:
                    result["retries"] += 1
                    time.sleep(0.05)
                    continue
                if code == grpc.StatusCode.UNAVAILABLE:
                    result["lost"].append(i)
                else:
                    result["failures"].append(f"call {i}: {code.name}: {e.details()}")
                break
        i += 1
    for c in chans:
        c.close()
    result["calls"] = i
    return result


def run_until_gone(target: str, seconds: float, prefix: str, channels: int) -> dict[str, Any]:
    """Send calls (unary and streams of about a second) until the server is gone; never retries.

    A call either succeeds or fails before any response (``refused``: UNAVAILABLE or CANCELLED); anything else,
    or a stream cut after some of its responses, is ``broken``: an accepted call that was dropped.
    """
    chans = [
        grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    stubs = [pb_grpc.TriageServiceStub(c) for c in chans]
    result: dict[str, Any] = {"ok": 0, "refused": 0, "broken": []}
    end = time.monotonic() + seconds
    i = 0
    refused_in_a_row = 0
    while time.monotonic() < end and refused_in_a_row < 20:
        stub = stubs[i % len(stubs)]
        got = 0
        try:
            if i % 3 == 2:

                def slow(n: int = i) -> Iterator[Any]:
                    for k in range(40):
                        time.sleep(0.02)
                        yield pb.TriageStreamRequest(complaint=load_complaint(f"{prefix}s{n}", k))

                for _item in stub.TriageStream(slow(), timeout=20):
                    got += 1
                if got != 40:
                    result["broken"].append(f"stream {i}: {got} of 40 items")
                else:
                    result["ok"] += 1
            else:
                stub.Triage(pb.TriageRequest(complaint=load_complaint(prefix, i)), timeout=20)
                result["ok"] += 1
            refused_in_a_row = 0
        except grpc.RpcError as e:
            code = e.code()
            # Refused: failed before any response. gRPC answers UNAVAILABLE, or CANCELLED for a call that
            # reached the transport as the server stopped but was never handed to the application. The
            # caller may retry either; that no *accepted* call was dropped is checked by the test's
            # accounting (calls the workers started == calls that succeeded).
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and got == 0:
                result["refused"] += 1
                refused_in_a_row += 1
                time.sleep(0.05)
            else:
                result["broken"].append(f"call {i}: {code.name} after {got} items: {e.details()}")
        i += 1
    for c in chans:
        c.close()
    return result


def start_load(
    mode: str, target: str, seconds: float, prefix: str, out: Path, channels: int = 2
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            mode,
            target,
            "--seconds",
            str(seconds),
            "--prefix",
            prefix,
            "--channels",
            str(channels),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "service")},
    )


def _main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["load", "until-gone"])
    p.add_argument("target")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--prefix", default="c")
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.mode == "load":
        res = run_load(a.target, a.seconds, a.prefix, a.channels, stream_every=10)
    else:
        res = run_until_gone(a.target, a.seconds, a.prefix, a.channels)
    Path(a.out).write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
