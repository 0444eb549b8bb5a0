"""A month of a banner, simulated: the complaints that come in and the events that follow them.

    .venv/bin/python tools/gen_month.py [--seed 7] [--month 2026-11] [--people 130000] [--out month.jsonl]

The banner is modelled on 乌审旗 (150626, about 130,000 people) and its six towns and sumu. Each matter
starts with a complaint through one door (a village point: a visit or an agent's walk; a township
station: a visit, a letter, a call; the banner centre: a call, the web, 掌上办) in the words of the
labelled corpus (``corpus/labelled.jsonl``: the citizens' own words, by category). Then, as in a real
month, most matters are settled where they were received; some fail mediation or a party refuses it,
and the citizen comes back through another door (the service must re-triage the matter by itself);
some are extended once (§34), withdrawn, handed on to a department, or left without any event (they
become overdue); a few people knock on a second door before theirs is settled (多头访); settled matters
are evaluated (评价) and some revisited (回访). Nothing after the month's end is in it.

Output, one JSON object a line, in time order (``at``: epoch seconds):

- ``{"op": "complaint", "at", "key", "matter", "complaint": {...}}``: ``complaint`` is a complaint in the
  contract's JSON form (``received_at`` included); ``matter`` is the generator's own matter key (the truth
  the service's recognition is checked against).
- ``{"op": "event", "at", "key", "matter", "on", "kind", "actor": {"code", "level"}, ...}``: ``on`` is
  the key of the complaint whose decision the event follows (the player sends that decision's id and
  stage); optional ``reason``, ``extension_days``, ``handed_to_department``, ``satisfaction``.

The same seed gives the same month. The people are invented: id numbers and phones are well-formed and
made up.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "corpus" / "labelled.jsonl"
BANNER: Final = "150626"
TZ: Final = timezone(timedelta(hours=8))
HOUR: Final = 3600
DAY: Final = 86_400
#: The towns and sumu of the banner: code, name, share of the people, villages (嘎查/社区).
TOWNSHIPS: Final = (
    ("150626100", "嘎鲁图镇", 0.34, 14),
    ("150626101", "乌审召镇", 0.12, 10),
    ("150626102", "图克镇", 0.16, 12),
    ("150626103", "乌兰陶勒盖镇", 0.12, 10),
    ("150626104", "无定河镇", 0.16, 12),
    ("150626200", "苏力德苏木", 0.10, 8),
)
#: Complaints a month per person (about one matter a month for every 250 people).
MATTERS_PER_PERSON: Final = 0.004
#: Where a matter is first received: level, its share, the doors of that level.
DOORS: Final = (
    ("VILLAGE", 0.60, ("VISIT", "AGENT_VISIT")),
    ("TOWNSHIP", 0.30, ("VISIT", "LETTER", "PHONE")),
    ("BANNER", 0.10, ("PHONE", "ONLINE", "MOBILE", "LETTER")),
)
#: What becomes of a matter, with its share.
PATHS: Final = (
    ("settled", 0.66),
    ("settled_multi_door", 0.08),
    ("failed_then_moved_on", 0.06),
    ("refused_then_moved_on", 0.03),
    ("extended", 0.05),
    ("withdrawn", 0.04),
    ("handed_on", 0.03),
    ("no_event", 0.03),
    ("contact_only", 0.02),
)
HAND_ON_TO: Final = (
    "natural_resources",
    "hr_social_security",
    "forestry_grassland",
    "civil_affairs",
    "housing",
)
REASONS: Final = {
    "EXTENDED": ("需要补充调查取证", "涉及多个部门，需要会商", "当事人外出放牧，暂时联系不上"),
    "FAILED": ("双方差距太大，调解未达成协议", "对方不认可赔偿数额"),
    "REFUSED": ("对方明确拒绝调解", "企业不同意调解"),
    "WITHDRAWN": ("双方已私下和解", "本人表示不再反映"),
    "HANDED_ON": ("属于专业部门职权", "需要主管部门处理"),
}


@dataclass
class Person:
    n: int
    township: str
    village: str

    def identity(self) -> dict[str, str]:
        n = self.n
        birth = datetime(1950, 1, 1) + timedelta(days=(n * 7919) % (50 * 365))
        body = f"{BANNER}{birth:%Y%m%d}{n % 1000:03d}"
        return {
            "id_number": body + _check_digit(body),
            "phone": f"13{(n % 9) + 1}{(n * 7) % 10000:04d}{n % 10000:04d}",
        }


@dataclass
class Month:
    start: int
    end: int
    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, step: dict[str, Any]) -> None:
        if self.start <= step["at"] < self.end:
            self.steps.append(step)


def _check_digit(body: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def _texts(rng: random.Random) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for line in LABELLED.read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["category"] != "unclassified":
                by.setdefault(row["category"], []).append(row["text"])
    for texts in by.values():
        rng.shuffle(texts)
    return by


def _pick(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(table, weights=[row[1] if isinstance(row[1], float) else row[2] for row in table])[0]


def _point(level: str, person: Person) -> dict[str, str]:
    code = {"VILLAGE": person.village, "TOWNSHIP": person.township, "BANNER": BANNER}[level]
    return {"code": code, "level": level}


def _higher(level: str) -> str:
    return {"VILLAGE": "TOWNSHIP", "TOWNSHIP": "BANNER", "BANNER": "BANNER"}[level]


def generate(seed: int = 7, month: str = "2026-11", people: int = 130_000) -> Iterator[dict[str, Any]]:
    """The month's steps in time order (see the module's docstring)."""
    rng = random.Random(seed)
    first = datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=TZ)
    nxt = (first + timedelta(days=32)).replace(day=1)
    m = Month(int(first.timestamp()), int(nxt.timestamp()))
    days = (m.end - m.start) // DAY
    texts = _texts(rng)
    categories = sorted(texts)
    used: dict[str, int] = dict.fromkeys(categories, 0)
    n_matters = max(1, round(people * MATTERS_PER_PERSON))
    counter = {"c": 0, "e": 0}

    def key(kind: str) -> str:
        counter[kind] += 1
        return f"{kind}-{counter[kind]:05d}"

    def one(i: int) -> None:
        twp, _name, _share, villages = _pick(rng, TOWNSHIPS)
        person = Person(i + 1, twp, f"{twp}{rng.randrange(1, villages + 1):03d}")
        category = rng.choice(categories)
        text = texts[category][used[category] % len(texts[category])]
        used[category] += 1
        matter = f"M-{i + 1:05d}"
        level, _s, doors = _pick(rng, DOORS)
        t0 = m.start + rng.randrange(0, days * DAY - 6 * HOUR)

        def complaint(at: int, level: str, doors: tuple[str, ...]) -> str:
            k = key("c")
            point = _point(level, person)
            m.add(
                {
                    "op": "complaint",
                    "at": at,
                    "key": k,
                    "matter": matter,
                    "complaint": {
                        "id": k,
                        "text": text,
                        "channel": rng.choice(doors),
                        "received_tier": level,
                        "receiving_point": point,
                        "region": {
                            "banner_code": BANNER,
                            "township_code": twp,
                            "village_code": person.village,
                        },
                        "received_at": datetime.fromtimestamp(at, TZ).isoformat(),
                        "complainant": {"name": "某某", **person.identity()},
                    },
                }
            )
            return k

        def event(at: int, on: str, kind: str, level: str, **extra: Any) -> None:
            if kind in REASONS and "reason" not in extra:
                extra["reason"] = rng.choice(REASONS[kind])
            m.add(
                {
                    "op": "event",
                    "at": at,
                    "key": key("e"),
                    "matter": matter,
                    "on": on,
                    "kind": kind,
                    "actor": _point(level, person),
                    **extra,
                }
            )

        def settle(on: str, t: int, level: str, *, extend: bool = False) -> None:
            """Contact, plan, acceptance and the settlement, then the evaluation and a revisit."""
            t += rng.randrange(1 * HOUR, 20 * HOUR)
            event(t, on, "FIRST_CONTACT", level)
            t += rng.randrange(6 * HOUR, 3 * DAY)
            event(t, on, "PLAN_MADE", level)
            t += rng.randrange(1 * HOUR, 2 * DAY)
            event(t, on, "ACCEPTED", level)
            if extend:
                t += rng.randrange(1 * DAY, 5 * DAY)
                event(t, on, "EXTENDED", level, extension_days=rng.randrange(5, 31))
                t += rng.randrange(10 * DAY, 30 * DAY)
            else:
                t += rng.randrange(1 * DAY, 12 * DAY)
            event(t, on, "RESOLVED", level)
            if rng.random() < 0.75:
                t += rng.randrange(1 * DAY, 3 * DAY)
                sat = rng.choices(("SATISFIED", "BASICALLY", "DISSATISFIED"), (0.82, 0.12, 0.06))[0]
                event(t, on, "EVALUATED", level, satisfaction=sat)
                if rng.random() < 0.3:
                    event(t + rng.randrange(3 * DAY, 10 * DAY), on, "REVISITED", level, satisfaction=sat)

        path = _pick(rng, PATHS)[0]
        c1 = complaint(t0, level, doors)
        handler = level
        if path == "settled":
            settle(c1, t0, handler)
        elif path == "settled_multi_door":
            # a second door before the first is settled: the same matter, no new round
            other = _higher(level) if level != "BANNER" else "TOWNSHIP"
            other_doors = next(d for lv, _x, d in DOORS if lv == other)
            complaint(t0 + rng.randrange(2 * HOUR, 2 * DAY), other, other_doors)
            settle(c1, t0, handler)
        elif path in ("failed_then_moved_on", "refused_then_moved_on"):
            kind = "FAILED" if path.startswith("failed") else "REFUSED"
            t = t0 + rng.randrange(1 * HOUR, 20 * HOUR)
            event(t, c1, "FIRST_CONTACT", handler)
            t += rng.randrange(1 * DAY, 6 * DAY)
            event(t, c1, kind, handler)
            # back through another door, higher up, a few days later: the next stage
            again = _higher(level)
            again_doors = next(d for lv, _x, d in DOORS if lv == again)
            t += rng.randrange(1 * DAY, 5 * DAY)
            c2 = complaint(t, again, again_doors)
            if rng.random() < 0.6:
                settle(c2, t, again)
            else:
                event(t + rng.randrange(2 * HOUR, 20 * HOUR), c2, "FIRST_CONTACT", again)
        elif path == "extended":
            settle(c1, t0, handler, extend=True)
        elif path == "withdrawn":
            t = t0 + rng.randrange(1 * HOUR, 20 * HOUR)
            event(t, c1, "FIRST_CONTACT", handler)
            event(t + rng.randrange(1 * DAY, 8 * DAY), c1, "WITHDRAWN", handler)
        elif path == "handed_on":
            t = t0 + rng.randrange(1 * HOUR, 20 * HOUR)
            event(t, c1, "FIRST_CONTACT", handler)
            t += rng.randrange(6 * HOUR, 2 * DAY)
            event(t, c1, "HANDED_ON", handler, handed_to_department=rng.choice(HAND_ON_TO))
            settle(c1, t, "BANNER")
        elif path == "contact_only":
            event(t0 + rng.randrange(1 * HOUR, 20 * HOUR), c1, "FIRST_CONTACT", handler)
        # no_event: nothing follows (the matter becomes overdue)

    for i in range(n_matters):
        one(i)

    m.steps.sort(key=lambda s: (s["at"], s["key"]))
    yield from m.steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--month", default="2026-11", help="YYYY-MM")
    ap.add_argument("--people", type=int, default=130_000)
    ap.add_argument("--out", default="-", help="a JSON lines file (default: standard output)")
    args = ap.parse_args(argv)
    try:
        datetime.strptime(args.month + "-01", "%Y-%m-%d")
    except ValueError:
        print(f"gen_month: --month must be YYYY-MM, not {args.month!r}", file=sys.stderr)
        return 2
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for step in generate(args.seed, args.month, args.people):
            out.write(json.dumps(step, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
