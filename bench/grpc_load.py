"""gRPC load: servers started as separate processes, load from separate client processes.

* :class:`ServerProcess` starts ``fenliu serve`` or the echo server on a free port, waits for the health
  check to say SERVING (and times it), reads the CPU time of the server's process tree, and stops it.
* :func:`run_load` starts ``processes`` clients (``python -m bench.grpc_load client ...``), each with its
  own channels, that all measure over the same wall-clock window after a warm-up, and merges what they
  report: throughput, latency percentiles, errors, and the server's CPU time per request.

Clients send pre-serialized requests built from the corpus and do not parse the answers (except a
sample, to check they are decisions), so that as much of the machine as possible is left to the server.
Unary: ``concurrency`` calls in flight per client process. Stream: ``concurrency`` bidirectional streams
per client process, each with ``window`` messages in flight; a message's latency is from its write to
its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

TRIAGE = "/fenliu.v1.TriageService/Triage"
TRIAGE_STREAM = "/fenliu.v1.TriageService/TriageStream"
_CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids[ppid].append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / _CLK


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_serving(address: str, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Poll the health check until SERVING; return the monotonic time it first answered SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    # gRPC waits about a second before it tries a refused connection again: try every 20 ms instead, so
    # that the time measured is the server's, not the client's backoff
    retry_ms = [
        ("grpc.initial_reconnect_backoff_ms", 20),
        ("grpc.min_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 20),
    ]
    with grpc.insecure_channel(address, options=retry_ms) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before SERVING")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic()
            except grpc.RpcError:
                pass
            time.sleep(0.01)
    raise TimeoutError(f"{address} not SERVING after {timeout:.0f} s")


class ServerProcess:
    """A server in its own process group. ``kind``: "fenliu", "echo" or "zen" (the ZEN peer,
    ``bench.zen_server``); ``extra``: more arguments for its command line (``fenliu serve``'s options)."""

    def __init__(
        self,
        kind: str,
        workers: int,
        rules: str = "rules/wushen",
        log_path: str | None = None,
        *,
        pinned: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.workers = workers
        self.pinned = pinned
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        if kind == "fenliu":
            exe = str(Path(sys.executable).with_name("fenliu"))
            self.cmd = [exe, "serve", "--rules", rules, "--address", self.address, "--workers", str(workers)]
        else:
            self.cmd = [
                sys.executable,
                "-m",
                "bench.zen_server" if kind == "zen" else "bench.echo_server",
                "--address",
                self.address,
                "--workers",
                str(workers),
            ]
        if pinned:  # each worker on a CPU of its own (``--pin-cpus auto``), for both servers alike
            self.cmd += ["--pin-cpus", "auto"]
        self.cmd += list(extra)
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"fenliu-bench-{kind}-", suffix=".log")
            os.close(fd)
            self._own_log = True
        else:
            self._own_log = False
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_to_serving = 0.0

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        log.close()
        try:
            self.start_to_serving = wait_serving(self.address, proc=self.proc) - t0
            if self.workers > 1:  # every worker must be up, not just the first to answer
                deadline = time.monotonic() + 60
                while not self._all_workers_up() and time.monotonic() < deadline:
                    time.sleep(0.05)
        except Exception:
            self.stop()
            raise
        return self

    def _all_workers_up(self) -> bool:
        if self.kind == "fenliu":  # each worker logs worker_serving once it listens
            text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
            return text.count('"worker_serving"') >= self.workers
        return len(self.pids()) >= self.workers + 1

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc is not None else []

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._own_log:
            Path(self.log_path).unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LoadResult:
    target: str
    mode: str
    workers: int
    pinned: bool
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else 0.0


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def run_load(
    server: ServerProcess,
    mode: str,
    *,
    processes: int = 2,
    concurrency: int = 8,
    window: int = 8,
    channels: int = 2,
    seconds: float = 8.0,
    warmup: float = 2.0,
    corpus_n: int = 2000,
    trace: bool = False,
    salt: int = 0,
) -> LoadResult:
    cmd = [
        sys.executable,
        "-m",
        "bench.grpc_load",
        "client",
        "--address",
        server.address,
        "--mode",
        mode,
        "--concurrency",
        str(concurrency),
        "--window",
        str(window),
        "--channels",
        str(channels),
        "--seconds",
        repr(seconds),
        "--corpus",
        str(corpus_n),
        "--salt",
        str(salt),
    ]
    if trace:
        cmd.append("--trace")
    procs = [
        subprocess.Popen(
            [*cmd, "--client-index", str(i)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for i in range(processes)
    ]
    # Each client builds its requests and connects, then says READY; all start from one instant.
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().decode().strip()
        if line != "READY":
            raise RuntimeError(f"load client did not start: {line!r}")
    start_at = time.time() + warmup
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{start_at!r}\n".encode())
        p.stdin.close()
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = server.cpu()
    time.sleep(seconds)
    cpu1 = server.cpu()
    outs = []
    for p in procs:
        assert p.stdout is not None
        out = p.stdout.read()
        p.wait(timeout=seconds + warmup + 120)
        if p.returncode != 0:
            raise RuntimeError(f"load client exited with {p.returncode}")
        outs.append(json.loads(out.decode().strip().splitlines()[-1]))
    lat = sorted(x for o in outs for x in o["lat_ms"])
    return LoadResult(
        server.kind,
        mode,
        server.workers,
        server.pinned,
        sum(o["n"] for o in outs),
        seconds,
        _percentile(lat, 0.50),
        _percentile(lat, 0.99),
        sum(o["errors"] + o["bad"] for o in outs),
        cpu1 - cpu0,
    )


# ----------------------------------------------------------------------------------------------------
# The client process


def _requests(n: int, client_index: int, stream: bool, trace: bool, salt: int = 0) -> list[bytes]:
    """Distinct complaints: each client process, mode and ``salt`` (round) draws its own, so a server sees
    no repeats within a run unless the run outlasts the corpus."""
    from bench import corpus
    from fenliu._proto.fenliu.v1 import triage_pb2 as pb
    from fenliu.serving import convert

    data = corpus.generate(
        n, seed=corpus.DEFAULT_SEED + 1000 * (client_index + 1) + 100 * salt + (7 if stream else 0)
    )
    cls = pb.TriageStreamRequest if stream else pb.TriageRequest
    return [
        cls(complaint=convert.complaint_to_proto(c), include_trace=trace).SerializeToString() for c in data
    ]


async def _client(args: argparse.Namespace) -> dict[str, Any]:
    import grpc
    import grpc.aio

    from fenliu._proto.fenliu.v1 import triage_pb2 as pb

    stream = args.mode == "stream"
    reqs = _requests(args.corpus, args.client_index, stream, args.trace, args.salt)
    chans = [
        grpc.aio.insecure_channel(args.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(args.channels)
    ]
    await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), 60) for ch in chans))
    print("READY", flush=True)
    start_at = float(await asyncio.to_thread(sys.stdin.readline))
    end_at = start_at + args.seconds
    lat: list[float] = []
    state = {"n": 0, "errors": 0, "bad": 0, "checked": 0}

    def check(raw: bytes) -> None:
        state["checked"] += 1
        if stream:
            r = pb.TriageStreamResponse.FromString(raw)
            ok = r.WhichOneof("result") == "decision" and bool(r.decision.category)
        else:
            ok = bool(pb.TriageResponse.FromString(raw).decision.category)
        if not ok:
            state["bad"] += 1

    def record(t_sent: float, raw: bytes) -> None:
        now = time.time()
        if start_at <= now < end_at:
            state["n"] += 1
            lat.append((time.perf_counter() - t_sent) * 1000)
            if state["n"] % 97 == 1:
                check(raw)

    async def unary(k: int) -> None:
        call = chans[k % len(chans)].unary_unary(TRIAGE)
        i = k  # the calls in flight take turns through the requests: each is sent once
        while time.time() < end_at:
            t = time.perf_counter()
            try:
                raw = await call(reqs[i % len(reqs)], timeout=30)
            except grpc.RpcError:
                state["errors"] += 1
                continue
            finally:
                i += args.concurrency
            record(t, raw)

    async def bidi(k: int) -> None:
        call = chans[k % len(chans)].stream_stream(TRIAGE_STREAM)()
        sent: collections.deque[float] = collections.deque()
        slots = asyncio.Semaphore(args.window)

        async def writer() -> None:
            i = k  # the streams take turns through the requests: each is sent once
            while time.time() < end_at:
                await slots.acquire()
                sent.append(time.perf_counter())
                await call.write(reqs[i % len(reqs)])
                i += args.concurrency
            await call.done_writing()

        async def reader() -> None:
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    return
                record(sent.popleft(), raw)
                slots.release()

        try:
            await asyncio.gather(writer(), reader())
        except grpc.RpcError:
            state["errors"] += 1

    await asyncio.gather(*((bidi if stream else unary)(k) for k in range(args.concurrency)))
    for ch in chans:
        await ch.close()
    return {
        "n": state["n"],
        "errors": state["errors"],
        "bad": state["bad"],
        "checked": state["checked"],
        "lat_ms": [round(x, 3) for x in lat],
    }


def client_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.grpc_load client")
    ap.add_argument("--address", required=True)
    ap.add_argument("--mode", choices=("unary", "stream"), required=True)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--corpus", type=int, default=2000)
    ap.add_argument("--client-index", type=int, default=0)
    ap.add_argument("--salt", type=int, default=0)
    ap.add_argument("--trace", action="store_true")
    args = ap.parse_args(argv)
    result = asyncio.run(_client(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        raise SystemExit(client_main(sys.argv[2:]))
    raise SystemExit("usage: python -m bench.grpc_load client ...")
