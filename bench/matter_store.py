"""The matter store under a million matters: what one lookup-and-write costs (part ``matters``).

    python -m bench.matter_store [--matters 1000000] [--lookups 3000] [--backends sqlite,postgresql]
                                 [--grpc-seconds 8]

Fills a fresh store with ``--matters`` matters of one complaint each (bulk load: ``load()``, executemany on
SQLite, COPY on PostgreSQL), spread over the three years of retention across 78 villages of 6 townships,
each with an id-number and a phone hash; their signatures are those of the benchmark corpus's texts
(``bench/corpus.py``, a pool of ``--pool`` texts). Then it times ``record()`` — the lookup and the write,
committed — of ``--lookups`` new complaints: a third by a person already in the store (an identity
link), a third by a new person in other words of an existing complaint's village (content compared
against the village's half-year), a third new matters. Wall-clock time per call, in this process;
p50, p99, p99.9 and the worst, with the load average before and after.

Then the gRPC throughput of ``fenliu serve`` (2 workers, unary, ``bench.grpc_load``) with a fresh SQLite
store and without one, alternating, twice each: the goal is within 15 % (``--grpc-seconds 0``: not run).

PostgreSQL is a private server started for the run (Debian's package, as in the tests), with fsync on.
SQLite is a file in a temporary folder (WAL, synchronous=NORMAL, the store's settings).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench import corpus  # noqa: E402
from fenliu.matter import Sighting, open_store  # noqa: E402
from fenliu.matter import signature as sig  # noqa: E402
from fenliu.serving.decision_log import keyed_hash  # noqa: E402

KEY = b"bench-key-of-the-matter-store-32"
T0 = 1_796_000_000  # late 2026
YEARS3 = 3 * 365 * 86_400
TOWNSHIPS = [f"150626{100 + t}" for t in range(6)]
VILLAGES = [f"{TOWNSHIPS[v % 6]}{v // 6 + 1:03d}" for v in range(78)]
CHANNELS = ("VISIT", "LETTER", "PHONE", "ONLINE", "MOBILE", "AGENT_VISIT")
LEVELS = ("VILLAGE", "TOWNSHIP", "BANNER")


def signatures(n: int) -> list[bytes]:
    texts = [c.get("text", "") for c in corpus.generate(n, seed=20261204)]
    out = [sig.signature(t) for t in texts if t.strip()]
    return [s for s in out if s]


def sighting(
    i: int, at: int, sigs: list[bytes], rng: random.Random, *, person: int | None = None
) -> Sighting:
    vil = VILLAGES[rng.randrange(len(VILLAGES))]
    level = LEVELS[rng.randrange(3)]
    p = i if person is None else person
    return Sighting(
        complaint_id=f"b-{i}",
        received_at=at,
        channel=CHANNELS[rng.randrange(6)],
        point=vil if level == "VILLAGE" else vil[:9] if level == "TOWNSHIP" else "150626",
        level=level,
        township=vil[:9],
        village=vil,
        identities=(
            ("id_number", keyed_hash(KEY, "id_number", f"150626{p:012d}")),
            ("phone", keyed_hash(KEY, "phone", f"13{p:09d}")),
        ),
        signature=sigs[rng.randrange(len(sigs))],
    )


def fill(store: Any, n: int, sigs: list[bytes], chunk_weeks: int = 8) -> float:
    """``n`` matters over three years, loaded week range by week range (no bucket spans two loads)."""
    rng = random.Random(7)
    weeks = YEARS3 // (7 * 86_400)
    per_week = n // weeks + 1
    first_week = (T0 - YEARS3) // (7 * 86_400) + 1
    t0 = time.perf_counter()
    i = 0

    def chunk(w0: int) -> Iterator[tuple[Sighting, str]]:
        nonlocal i
        for w in range(w0, min(w0 + chunk_weeks, first_week + weeks)):
            for _ in range(per_week):
                if i >= n:
                    return
                at = w * 7 * 86_400 + rng.randrange(7 * 86_400)
                yield sighting(i, at, sigs, rng), f"m-bench-{i:08d}"
                i += 1

    for w0 in range(first_week, first_week + weeks, chunk_weeks):
        store.load(chunk(w0))
    return time.perf_counter() - t0


def lookups(store: Any, n: int, matters: int, sigs: list[bytes]) -> dict[str, Any]:
    rng = random.Random(11)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    times: list[float] = []
    cpu: list[float] = []
    linked = 0
    for k in range(n):
        at = T0 + k
        kind = k % 3
        if kind == 0:  # an earlier person (recently: within the window)
            s = sighting(matters + k, at, sigs, rng, person=matters - 1 - rng.randrange(matters // 6))
        else:
            s = sighting(matters + k, at, sigs, rng, person=matters + k)
        t, c = time.perf_counter(), time.process_time()
        r = store.record(s)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        linked += not r.new_matter
    times.sort()
    cpu.sort()
    ms = [x * 1000 for x in times]
    return {
        "cpu_p50_ms": cpu[len(cpu) // 2] * 1000,
        "cpu_p99_ms": cpu[int(len(cpu) * 0.99)] * 1000,
        "load_before": load_before,
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "lookups": n,
        "linked": linked,
        "p50_ms": ms[len(ms) // 2],
        "p99_ms": ms[int(len(ms) * 0.99)],
        "p999_ms": ms[min(len(ms) - 1, int(len(ms) * 0.999))],
        "max_ms": ms[-1],
    }


@contextmanager
def fresh_store(backend: str, prefix: str) -> Iterator[tuple[str, Path]]:
    """The URL of a fresh store of ``backend`` and a temporary folder: an SQLite file in that folder
    (``matters.db``), or a database of a private PostgreSQL server started for it, with fsync on. Both
    are gone afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    pg = None
    try:
        if backend == "postgresql":
            from pg import PgServer

            pg = PgServer(durable=True)
            pg.start()
            url = pg.create_database()
        else:
            url = f"sqlite:///{tmp / 'matters.db'}"
        yield url, tmp
    finally:
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run(
    matters: int, n_lookups: int, backends: list[str], pool: int = 20_000, grpc_seconds: float = 8.0
) -> dict[str, Any]:
    """The store's recording cost per backend, then (``grpc_seconds`` > 0) the gRPC throughput of
    ``fenliu serve`` with the store on and off (:func:`grpc_compare`)."""
    sigs = signatures(pool)
    out: dict[str, Any] = {"matters": matters, "pool": len(sigs), "backends": {}}
    for backend in backends:
        with fresh_store(backend, "fenliu-bench-matters-") as (url, tmp):
            store = open_store(url)
            seconds = fill(store, matters, sigs)
            if backend == "postgresql":
                import psycopg

                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
            count = store.count_matters()
            res = lookups(store, n_lookups, matters, sigs)
            res.update(fill_seconds=seconds, fill_rate=matters / seconds, count=count)
            if backend == "postgresql":  # the same store again, commits not waiting for the disk
                from fenliu.matter.postgres import PostgresStore

                fast = PostgresStore(url, synchronous_commit=False)
                r2 = lookups(fast, n_lookups, matters + n_lookups, sigs)
                fast.close()
                out["backends"]["postgresql (synchronous_commit off)"] = {**res, **r2}
            if backend == "sqlite":
                res["file_mb"] = sum(p.stat().st_size for p in tmp.iterdir()) / 1e6
            store.close()
            out["backends"] = {backend: res, **out["backends"]}
            for name, r in out["backends"].items():
                if name.startswith(backend):
                    print(
                        f"{name}: {count:,} matters filled in {seconds:.0f} s ({matters / seconds:,.0f}/s); "
                        f"record p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                        f"p99.9 {r['p999_ms']:.2f} ms, max {r['max_ms']:.1f} ms "
                        f"({r['linked']} of {n_lookups} linked)",
                        flush=True,
                    )
    if grpc_seconds > 0:
        out["grpc"] = grpc_compare(grpc_seconds)
    return out


GOALS_MS = {"sqlite": 2.0, "postgresql": 3.0}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"## The matter store with {result['matters']:,} matters (`bench/matter_store.py`)",
        "",
        "| backend | fill (bulk) | record p50 | record p99 | p99.9 | worst | CPU p50 / p99 (this process) "
        "| load (before → after) | goal (p99) | |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for b, r in result["backends"].items():
        goal = GOALS_MS.get(b.split()[0], 0.0)
        lines.append(
            f"| {b} | {r['fill_seconds']:.0f} s ({r['fill_rate']:,.0f}/s) | {r['p50_ms']:.2f} ms | "
            f"{r['p99_ms']:.2f} ms | {r['p999_ms']:.2f} ms | {r['max_ms']:.1f} ms | "
            f"{r['cpu_p50_ms']:.2f} / {r['cpu_p99_ms']:.2f} ms | {r['load_before']} → {r['load']} | "
            f"{goal:g} ms | {'PASS' if r['p99_ms'] <= goal else 'MISS'} |"
        )
    grpc = result.get("grpc")
    if grpc:
        lines += [
            "",
            "| `fenliu serve` (unary, 2 workers) | requests/s | p50 | p99 | server CPU per request | load |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, g in grpc["runs"].items():
            lines.append(
                f"| {name} | {g['rps']:,.0f} | {g['p50_ms']:.2f} ms | {g['p99_ms']:.2f} ms | "
                f"{g['cpu_us']:.0f} µs | {g['load']} |"
            )
            if "stored" in g:
                lines.append(
                    f"| (in the store by the end: {g['stored']:,.0f} of {g['requests']:,.0f} measured calls "
                    "and the warm-up's) | | | | | |"
                )
        lines.append(f"\nstore on / off: {grpc['ratio']:.3f} (goal ≥ 0.85)")
    return "\n".join(lines)


def grpc_compare(seconds: float = 8.0, workers: int = 2, rounds: int = 2) -> dict[str, Any]:
    """The gRPC throughput of ``fenliu serve`` with the store (a fresh SQLite file) and without it, the
    two alternating ``rounds`` times; each client sends distinct complaints (a corpus larger than a
    run's requests), so every call with the store on is a new recording, not an idempotent repeat."""
    from bench.grpc_load import ServerProcess, run_load

    tmp = Path(tempfile.mkdtemp(prefix="fenliu-bench-grpc-matters-"))
    key = tmp / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    runs: dict[str, dict[str, Any]] = {}
    try:
        for rnd in range(rounds):
            for name in ("store off", "store on (SQLite)"):
                server = ServerProcess("fenliu", workers)
                if name != "store off":
                    server.cmd += [
                        "--store",
                        f"sqlite:///{tmp / f'matters-{rnd}.db'}",
                        "--store-key-file",
                        str(key),
                        "--store-queue-dir",
                        str(tmp / f"queue-{rnd}"),
                    ]
                with server:
                    r = run_load(server, "unary", seconds=seconds, corpus_n=6000, salt=rnd)
                g = runs.setdefault(name, {"rps": [], "p50_ms": [], "p99_ms": [], "cpu_us": [], "load": []})
                g["rps"].append(r.rps)
                g["p50_ms"].append(r.p50_ms)
                g["p99_ms"].append(r.p99_ms)
                g["cpu_us"].append(r.cpu_us_per_request)
                g["load"].append(" ".join(f"{x:.1f}" for x in os.getloadavg()))
                if name != "store off":  # how many calls the store took (the rest: deadline missed, queued)
                    import sqlite3

                    conn = sqlite3.connect(tmp / f"matters-{rnd}.db")
                    stored = int(conn.execute("SELECT count(*) FROM complaints").fetchone()[0])
                    conn.close()
                    g.setdefault("stored", []).append(stored)
                    g.setdefault("requests", []).append(r.requests)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        name: {k: (v if k == "load" else sum(v) / len(v)) for k, v in g.items()} for name, g in runs.items()
    }
    for g in out.values():
        g["load"] = "; ".join(g["load"])
    on, off = out["store on (SQLite)"]["rps"], out["store off"]["rps"]
    return {"runs": out, "ratio": on / off if off else 0.0, "seconds": seconds, "rounds": rounds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matters", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=3000)
    ap.add_argument("--pool", type=int, default=20_000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument(
        "--grpc-seconds", type=float, default=8.0, help="per gRPC load with the store on and off (0: none)"
    )
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    result = run(args.matters, args.lookups, backends, args.pool, args.grpc_seconds)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
