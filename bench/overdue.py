"""督办 with a million matters: listing one township's overdue matters, and the gauges' reading (part ``overdue``).

    python -m bench.overdue [--matters 1000000] [--open-share 0.03] [--repeats 30] [--backends sqlite,postgresql]

Fills a fresh store's ``matter_state`` table with ``--matters`` matter states, three years of a banner of
six townships: most matters ended (resolved or withdrawn, no deadline left), ``--open-share`` of them
open, mostly recent (mean age 12 days) and at every point of their handling: each deadline already due
was met nine times in ten, so the matters whose next deadline has passed unmet are overdue, as they
would be. The
states are written straight into the table (what ``ListOverdue`` and the gauges read, and all they read):
filling a million matters through complaints, decisions and events would take hours and measure the
writes, not the listing.

Then, ``--repeats`` times round the six townships, wall-clock time of:

* ``overdue(as_of, township=T)``: every overdue matter of one township (what ``ListOverdue`` with a
  township filter asks the store), the states read and parsed;
* the same with ``colour=RED`` as well, and the first 100 of the township only (a page);
* ``open_counts(as_of)`` and ``overdue(as_of, limit=100_000)``: what each serving process reads every 30
  seconds for the open and overdue gauges.

And the query plan of the township listing (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN``), which
must name the index on (township, next_due) and scan no table. The goal: one township's overdue listed
within 100 ms (p99 of the repeats).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench.matter_store import fresh_store  # noqa: E402
from fenliu.matter import _sql, open_store  # noqa: E402
from fenliu.matter.events import OPEN, RESOLVED, WITHDRAWN, MatterState  # noqa: E402

DAY = 86_400
AS_OF = 1_796_000_000  # late 2026: "now" for the listing
YEARS3 = 3 * 365 * DAY
TOWNSHIPS = [f"150626{100 + t}" for t in range(5)] + ["150626200"]
COLOURS = (("BLUE", 0.62), ("YELLOW", 0.30), ("RED", 0.08))
OWNERS = ("justice", "natural_resources", "human_resources", "housing", "civil_affairs", "ecology", "police")
#: Hours to each deadline after receipt, by colour (rules/wushen/tables.yaml's deadlines; BLUE has no plan).
DUE_HOURS: dict[str, tuple[int | None, ...]] = {
    "RED": (2, 3 * 24, 15 * 24, 15 * 24),
    "YELLOW": (24, 5 * 24, 15 * 24, 30 * 24),
    "BLUE": (24, None, 15 * 24, 15 * 24),
}
NAMES = ("first_contact_by", "plan_by", "accept_by", "resolve_by")
GOAL_MS = 100.0


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    for v, w in weighted:
        x -= w
        if x < 0:
            return v
    return weighted[-1][0]


def states(n: int, open_share: float, seed: int = 20) -> Iterator[tuple[MatterState, int]]:
    """``n`` matter states with the time each was first received."""
    rng = random.Random(seed)
    for i in range(n):
        township = TOWNSHIPS[rng.randrange(len(TOWNSHIPS))]
        colour = _pick(rng, COLOURS)
        tier = {"RED": "BANNER", "YELLOW": "TOWNSHIP", "BLUE": "VILLAGE"}[colour]
        village = f"{township}{rng.randrange(1, 14):03d}"
        point = village if tier == "VILLAGE" else township if tier == "TOWNSHIP" else "150626"
        is_open = rng.random() < open_share
        # an open matter is mostly recent (mean age 12 days, at most 90); an ended one older than that
        age = (
            min(int(rng.expovariate(1 / (12 * DAY))), 90 * DAY)
            if is_open
            else 90 * DAY + rng.randrange(YEARS3)
        )
        received = AS_OF - age
        due = {
            name: received + h * 3600
            for name, h in zip(NAMES, DUE_HOURS[colour], strict=True)
            if h is not None
        }
        met: dict[str, int] = {}
        if is_open:
            # each deadline already due was met in time nine times in ten, one not yet due a third of the
            # time; the handling stops at the first deadline not met (the matter is overdue if it is past)
            for name in NAMES:
                if name not in due:
                    continue
                if rng.random() >= (0.9 if due[name] < AS_OF else 0.3):
                    break
                met[name] = min(due[name], AS_OF) - rng.randrange(3600)
            status, level = OPEN, ""
        else:
            met = {name: t - 3600 for name, t in due.items()}
            status = RESOLVED if rng.random() < 0.93 else WITHDRAWN
            level = tier if status == RESOLVED else ""
        yield (
            MatterState(
                matter_id=f"m-{i:08d}",
                status=status,
                stage="MEDIATE",
                owner_department=OWNERS[rng.randrange(len(OWNERS))],
                point=point,
                first_point=point,
                first_level=tier,
                colour=colour,
                tier=tier,
                township=township,
                category="neighbor",
                deadlines=due,
                met=met,
                resolved_level=level,
                resolved_at=met["resolve_by"] if status == RESOLVED else 0,
                round_started_at=received,
                rounds=1,
                round_ended="" if status == OPEN else ("RESOLVED" if status == RESOLVED else "WITHDRAWN"),
            ),
            received,
        )


def fill_sqlite(path: Path, n: int, open_share: float) -> float:
    t0 = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    rows = (_sql.state_params(st, r) for st, r in states(n, open_share))
    conn.executemany(f"INSERT INTO matter_state ({_sql.STATE_COLUMNS}) VALUES ({', '.join('?' * 10)})", rows)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - t0


def fill_postgresql(url: str, n: int, open_share: float) -> float:
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY matter_state ({_sql.STATE_COLUMNS}) FROM STDIN") as cp:
            for st, r in states(n, open_share):
                cp.write_row(_sql.state_params(st, r))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE matter_state")
    return time.perf_counter() - t0


def township_sql(dialect: _sql.Dialect) -> str:
    p = dialect.param
    return _sql.OVERDUE_SQL.format(where=f"next_due < {p} AND township = {p}", p=p)


def plan(backend: str, url: str, db: Path | None) -> str:
    """The plan of one township's listing, as the database prints it."""
    if backend == "sqlite":
        assert db is not None
        conn = sqlite3.connect(db)
        rows = conn.execute(
            "EXPLAIN QUERY PLAN " + township_sql(_sql.SQLITE), (AS_OF, TOWNSHIPS[0], 10_000)
        ).fetchall()
        conn.close()
        return "\n".join(str(r[-1]) for r in rows)
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "EXPLAIN " + township_sql(_sql.POSTGRESQL), (AS_OF, TOWNSHIPS[0], 10_000)
        ).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def uses_the_index(backend: str, text: str) -> bool:
    """The listing reads the (township, next_due) index and scans no table."""
    if backend == "sqlite":
        return "USING INDEX matter_state_township_due" in text and not any(
            line.strip().startswith("SCAN matter_state") and "INDEX" not in line for line in text.splitlines()
        )
    return "matter_state_township_due" in text and "Seq Scan" not in text


def _timed(fn: Callable[[], int], repeats: int) -> dict[str, float]:
    ms: list[float] = []
    counts: list[int] = []
    for _ in range(repeats):
        t = time.perf_counter()
        counts.append(fn())
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max_ms": ms[-1],
        "rows": statistics.mean(counts),
    }


def measure(store: Any, repeats: int) -> dict[str, dict[str, float]]:
    k = iter(range(10**9))

    def township() -> str:
        return TOWNSHIPS[next(k) % len(TOWNSHIPS)]

    def listed(**f: Any) -> Callable[[], int]:
        return lambda: sum(1 for _ in store.overdue(AS_OF, township=township(), **f))

    store.overdue(AS_OF, township=TOWNSHIPS[0])  # first touch of the pages
    return {
        "township": _timed(listed(), repeats * len(TOWNSHIPS)),
        "township, RED": _timed(listed(colour="RED"), repeats * len(TOWNSHIPS)),
        "township, first 100": _timed(listed(limit=100), repeats * len(TOWNSHIPS)),
        "gauges: open counts": _timed(lambda: len(store.open_counts(AS_OF)), max(3, repeats // 3)),
        "gauges: every overdue": _timed(
            lambda: sum(1 for _ in store.overdue(AS_OF, limit=100_000)), max(3, repeats // 3)
        ),
    }


def run(matters: int, backends: list[str], open_share: float = 0.03, repeats: int = 30) -> dict[str, Any]:
    out: dict[str, Any] = {"matters": matters, "open_share": open_share, "backends": {}}
    for backend in backends:
        with fresh_store(backend, "fenliu-bench-overdue-") as (url, tmp):
            db = tmp / "matters.db" if backend == "sqlite" else None
            store = open_store(url)  # the schema, at its current version
            seconds = (
                fill_sqlite(db, matters, open_share) if db else fill_postgresql(url, matters, open_share)
            )
            res: dict[str, Any] = {"fill_seconds": seconds, "timings": measure(store, repeats)}
            res["plan"] = plan(backend, url, db)
            res["uses_index"] = uses_the_index(backend, res["plan"])
            store.close()
            out["backends"][backend] = res
            t = res["timings"]["township"]
            print(
                f"{backend}: {matters:,} states filled in {seconds:.0f} s; one township's overdue "
                f"({t['rows']:.0f} matters) p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms; "
                f"index used: {res['uses_index']}",
                flush=True,
            )
    return out


def render(result: dict[str, Any]) -> str:
    lines = [
        f"## Overdue matters (督办) with {result['matters']:,} matters (`bench/overdue.py`)",
        "",
        f"{result['open_share']:.0%} of the matters open (mostly recent, at every point of their handling; a "
        "deadline already due met nine times in ten), the rest ended; six townships. Wall-clock time per "
        "call, in this process, the states read and parsed.",
        "",
        "| backend | call | matters returned | p50 | p99 | worst | goal (p99) | |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for b, r in result["backends"].items():
        for name, t in r["timings"].items():
            goal = f"{GOAL_MS:g} ms" if name.startswith("township") else ""
            verdict = ("PASS" if t["p99_ms"] <= GOAL_MS else "MISS") if goal else ""
            lines.append(
                f"| {b} | {name} | {t['rows']:,.0f} | {t['p50_ms']:.1f} ms | {t['p99_ms']:.1f} ms | "
                f"{t['max_ms']:.1f} ms | {goal} | {verdict} |"
            )
    for b, r in result["backends"].items():
        lines += [
            "",
            f"{b}, the plan of one township's listing ({'the index, no table scan' if r['uses_index'] else 'NOT the index'}):",
            "",
            "```",
            r["plan"],
            "```",
        ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matters", type=int, default=1_000_000)
    ap.add_argument("--open-share", type=float, default=0.03)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    result = run(args.matters, [b for b in args.backends.split(",") if b], args.open_share, args.repeats)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
