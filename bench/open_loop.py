"""Open-loop latency (bench part ``latency``): Poisson arrivals at a fixed rate against a server.

Open loop: every request is sent at its scheduled time, whatever the answers to earlier ones (grpc.aio,
each call a task of its own, as many in flight as the server lets pile up), and its latency is measured
from its *scheduled* send time to its answer. A server that falls behind therefore shows its queue in
the latency, and a client that is late in sending is charged to the latency too (no coordinated
omission). The schedule (exponential gaps at the rate, seeded) and the requests (distinct complaints of
the benchmark corpus, each sent once) are built before the start.

    python -m bench.open_loop --rate 300 --seconds 20 [--store auto|on|off]

starts ``fenliu serve --workers 2`` with everything a deployment turns on (:func:`everything_on`: the
decision log, metrics scraped as Prometheus would, the reference pack's text model, and the SQLite
matter store when ``fenliu serve`` has ``--store``), then the same loads on a plain ``fenliu serve``
(nothing turned on: what turning it all on costs), and prints the result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "service")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench.grpc_load import TRIAGE, ServerProcess, _percentile, _requests, free_port  # noqa: E402

#: How often the metrics endpoint is scraped during a load (Prometheus's default is 15 s).
SCRAPE_EVERY_S = 5.0


def schedule(rate: float, seconds: float, seed: int) -> list[float]:
    """Poisson arrivals: offsets in seconds from the start, exponential gaps of mean 1/rate."""
    rng = random.Random(seed)
    out: list[float] = []
    t = rng.expovariate(rate)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate)
    return out


def serve_has_store() -> bool:
    """Whether this ``fenliu serve`` has the matter store option ``--store``."""
    exe = str(Path(sys.executable).with_name("fenliu"))
    out = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    return "--store " in out or "--store\n" in out


def everything_on(tmp: Path, store: str = "auto") -> tuple[list[str], dict[str, Any]]:
    """``fenliu serve`` arguments turning on what a deployment runs with, and what was turned on.

    ``store``: "on" (fail when ``fenliu serve`` has no ``--store``), "off", or "auto" (on when it has)."""
    tmp.mkdir(parents=True, exist_ok=True)
    key = tmp / "hash.key"
    key.write_text(random.SystemRandom().randbytes(32).hex() + "\n", encoding="ascii")
    key.chmod(0o600)
    metrics = f"127.0.0.1:{free_port()}"
    args = [
        "--decision-log",
        str(tmp / "decisions.jsonl"),
        "--decision-log-key-file",
        str(key),
        "--metrics-address",
        metrics,
    ]
    has = serve_has_store()
    if store == "on" and not has:
        raise RuntimeError("fenliu serve has no --store option: run with --store off (or auto)")
    with_store = has if store == "auto" else store == "on"
    if with_store:
        args += ["--store", f"sqlite:///{tmp / 'matters.db'}", "--store-key-file", str(key)]
    on = {
        "decision_log": True,
        "metrics": f"scraped every {SCRAPE_EVERY_S:g} s",
        "text_model": (ROOT / "rules" / "wushen" / "text_model.npz").is_file(),
        "store": "SQLite" if with_store else ("not in fenliu serve" if not has else "off"),
        "metrics_url": f"http://{metrics}/metrics",
    }
    return args, on


class Scraper:
    """Reads a metrics URL every ``every`` seconds in a thread, as Prometheus would; counts failures."""

    def __init__(self, url: str, every: float = SCRAPE_EVERY_S) -> None:
        self.url, self.every = url, every
        self.scrapes = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                self.scrapes += 1
            except OSError:
                self.failures += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def run(
    server: ServerProcess,
    rate: float,
    *,
    seconds: float,
    warmup: float,
    seed: int = 1,
    channels: int = 8,
    timeout: float = 10.0,
    metrics_url: str | None = None,
) -> dict[str, Any]:
    """One open-loop load: ``warmup`` seconds at ``rate``, then ``seconds`` measured at the same rate."""
    cmd = [
        sys.executable,
        "-m",
        "bench.open_loop",
        "client",
        "--address",
        server.address,
        "--rate",
        repr(rate),
        "--seconds",
        repr(seconds),
        "--warmup",
        repr(warmup),
        "--seed",
        str(seed),
        "--channels",
        str(channels),
        "--timeout",
        repr(timeout),
    ]
    p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdin is not None
    line = p.stdout.readline().decode().strip()
    if line != "READY":
        p.kill()
        raise RuntimeError(f"open-loop client did not start: {line!r}")
    start_at = time.time() + 0.5
    p.stdin.write(f"{start_at!r}\n".encode())
    p.stdin.close()
    time.sleep(max(0.0, start_at + warmup - time.time()))
    cpu0 = server.cpu()
    scraper = Scraper(metrics_url) if metrics_url else None
    if scraper:
        scraper.__enter__()
    try:
        time.sleep(seconds)
        cpu1 = server.cpu()
        out = p.stdout.read()
        p.wait(timeout=warmup + seconds + timeout + 120)
    finally:
        if scraper:
            scraper.__exit__()
    if p.returncode != 0:
        raise RuntimeError(f"open-loop client exited with {p.returncode}")
    r: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    r["server_cpu_us"] = (cpu1 - cpu0) / r["ok"] * 1e6 if r["ok"] else 0.0
    if scraper:
        r["scrapes"], r["scrape_failures"] = scraper.scrapes, scraper.failures
    return r


# ----------------------------------------------------------------------------------------------------
# The client process


async def _client(args: argparse.Namespace) -> dict[str, Any]:
    import grpc
    import grpc.aio

    from fenliu._proto.fenliu.v1 import triage_pb2 as pb

    total = args.warmup + args.seconds
    offsets = schedule(args.rate, total, args.seed)
    # distinct complaints, each sent once (a seed of their own: no other load of the run sends them)
    reqs = _requests(len(offsets), client_index=50 + args.seed, stream=False, trace=False, salt=7)
    chans = [
        grpc.aio.insecure_channel(args.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(args.channels)
    ]
    await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), 60) for ch in chans))
    calls = [ch.unary_unary(TRIAGE) for ch in chans]
    print("READY", flush=True)
    start_at = float(await asyncio.to_thread(sys.stdin.readline))
    base = time.perf_counter() + (start_at - time.time())
    lat: list[float] = []
    lag: list[float] = []
    errors: dict[str, int] = {}
    state = {"ok": 0, "bad": 0, "in_flight": 0, "max_in_flight": 0}

    async def one(i: int, due: float, measured: bool) -> None:
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        try:
            raw = await calls[i % len(calls)](reqs[i], timeout=args.timeout)
        except grpc.RpcError as e:
            if measured:
                code = e.code() if isinstance(e, grpc.aio.AioRpcError) else None
                name = code.name if code is not None else type(e).__name__
                errors[name] = errors.get(name, 0) + 1
            return
        finally:
            state["in_flight"] -= 1
        done = time.perf_counter()
        if measured:
            state["ok"] += 1
            lat.append((done - due) * 1000)
            if state["ok"] % 97 == 1 and not pb.TriageResponse.FromString(raw).decision.category:
                state["bad"] += 1

    tasks = []
    for i, off in enumerate(offsets):
        due = base + off
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        measured = off >= args.warmup
        if measured:
            lag.append((time.perf_counter() - due) * 1000)
        tasks.append(asyncio.create_task(one(i, due, measured)))
    await asyncio.gather(*tasks)
    for ch in chans:
        await ch.close()
    lat.sort()
    lag.sort()
    sent = sum(1 for off in offsets if off >= args.warmup)
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "channels": args.channels,
        "sent": sent,
        "ok": state["ok"],
        "errors": sum(errors.values()) + state["bad"],
        "error_codes": errors | ({"not a decision": state["bad"]} if state["bad"] else {}),
        "offered_rps": sent / args.seconds,
        "achieved_rps": state["ok"] / args.seconds,
        "p50_ms": _percentile(lat, 0.50),
        "p99_ms": _percentile(lat, 0.99),
        "p999_ms": _percentile(lat, 0.999),
        "max_ms": lat[-1] if lat else 0.0,
        "send_lag_p99_ms": _percentile(lag, 0.99),
        "send_lag_max_ms": lag[-1] if lag else 0.0,
        "max_in_flight": state["max_in_flight"],
    }


def client_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.open_loop client")
    ap.add_argument("--address", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(_client(args))))
    return 0


def measure(
    rates: tuple[float, ...] = (300.0, 600.0),
    *,
    seconds: float,
    warmup: float,
    store: str = "auto",
    workers: int = 2,
    plain: bool = True,
    log: Any = None,
) -> dict[str, Any]:
    """``fenliu serve --workers N`` with everything on, one open-loop load per rate, in order; then, with
    ``plain``, the same loads on ``fenliu serve`` with nothing turned on (what turning it on costs)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fenliu-bench-latency-") as tmp:
        extra, on = everything_on(Path(tmp), store)
        out: dict[str, Any] = {"on": on, "workers": workers, "runs": [], "plain": []}
        configs = [("runs", extra, on["metrics_url"])] + ([("plain", [], None)] if plain else [])
        for name, args, metrics_url in configs:
            with ServerProcess(
                "fenliu", workers, log_path=str(Path(tmp) / f"serve-{name}.log"), extra=args
            ) as server:
                if name == "runs":
                    out["start_to_serving"] = server.start_to_serving
                for k, rate in enumerate(rates):
                    r = run(server, rate, seconds=seconds, warmup=warmup, seed=k + 1, metrics_url=metrics_url)
                    out[name].append(r)
                    if log:
                        log(
                            f"  open loop {rate:.0f}/s, {'everything on' if name == 'runs' else 'nothing on'}: "
                            f"achieved {r['achieved_rps']:.0f}/s, p50 {r['p50_ms']:.2f} ms, "
                            f"p99 {r['p99_ms']:.2f} ms, p99.9 {r['p999_ms']:.2f} ms, errors {r['errors']}, "
                            f"client late p99 {r['send_lag_p99_ms']:.2f} ms, "
                            f"server CPU {r['server_cpu_us']:.0f} µs/request"
                        )
        # every worker's decisions in the log and the files it rotated to, as proof the log was on
        files = sorted(Path(tmp).glob("decisions.jsonl*"))
        out["decision_log_lines"] = sum(1 for f in files if f.is_file() for _ in f.open("rb"))
        out["decision_log_files"] = len(files)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, action="append", help="requests per second (repeatable)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--store", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--no-plain", action="store_true", help="without the loads on a plain fenliu serve")
    args = ap.parse_args(argv)
    rates = tuple(args.rate or (300.0, 600.0))
    r = measure(
        rates,
        seconds=args.seconds,
        warmup=args.warmup,
        store=args.store,
        workers=args.workers,
        plain=not args.no_plain,
    )
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        raise SystemExit(client_main(sys.argv[2:]))
    raise SystemExit(main())
