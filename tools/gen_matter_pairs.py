"""Write corpus/matter_pairs.jsonl: the labelled pairs that measure matter linking.

    .venv/bin/python tools/gen_matter_pairs.py [--out corpus/matter_pairs.jsonl]

From the 48 hand-written matters of tools/matter_texts.py (each told four times: v0 by the complainant at
the village point, v1 by the complainant again through another channel, v2 by the complainant in other
words, v3 by a relative). Complainant k tells matters 2k and 2k+1; complainants k, k+8, k+16 live in
one village. Pairs (first, second, same matter?):

- other_channel (v0, v1)            the same person, another channel and level: same matter
- reworded (v0, v2), (v1, v2)       the same person in other words (v1 and v2 share no identifier)
- relative (v0, v3), (v2, v3)       a relative, another identity: same matter
- same_person_other_matter          v0..v2 of matter 2k against v0..v2 of matter 2k+1: different
- same_village_other_matter         matters of two people of one village, three combinations: different

The output is the same on every run. None of it is real: ids and phones are made up.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matter_texts import MATTERS

TZ = "+08:00"
TOWNSHIPS = ("150626100", "150626101", "150626102")
BASE = datetime(2026, 1, 5, 9, 30)


def village(person: int) -> tuple[str, str]:
    v = person % 8
    twp = TOWNSHIPS[v % 3]
    return twp, f"{twp}{v + 1:03d}"


def id_number(person: int, spaced: bool) -> str:
    n = f"1506261{960 + person:04d}0{person % 9 + 1}1{person % 10}{person:02d}"[:18]
    if person % 5 == 0:
        n = n[:17]  # malformed (too short): still the person's, still used
    elif person % 7 == 3:
        n = n[:17] + "x"  # a lower-case check letter
    return f"{n[:6]} {n[6:14]} {n[14:]}" if spaced else n


def phone(prefix: str, n: int) -> str:
    return f"{prefix}{n:04d}{(n * 37 + 11) % 10000:04d}"


def complaint(s: int, v: int) -> dict[str, Any]:
    person = s // 2
    twp, vil = village(person)
    days = (0, 4 + s % 9, 35 + s % 20, 12 + s % 15)[v]
    at = BASE + timedelta(days=3 * s + days, hours=(s * 5 + v * 3) % 8)
    channel, tier = [
        ("VISIT", "VILLAGE"),
        ("PHONE", "BANNER") if s % 2 == 0 else ("MOBILE", "TOWNSHIP"),
        ("LETTER", "TOWNSHIP") if s % 3 else ("VISIT", "BANNER"),
        ("VISIT", "VILLAGE") if s % 2 else ("ONLINE", "BANNER"),
    ][v]
    who = [
        {"id_number": id_number(person, False), "phone": phone("139", person)},
        {
            "phone": phone("139", person)
            if s % 4
            else phone("139", person)[:3] + "-" + phone("139", person)[3:]
        },
        {"id_number": id_number(person, spaced=s % 4 == 1)},
        {"phone": phone("158", s)},
    ][v]
    return {
        "id": f"mp-{s:02d}-v{v}",
        "text": MATTERS[s][v],
        "received_at": at.isoformat() + TZ,
        "channel": channel,
        "received_tier": tier,
        "region": {"banner_code": "150626", "township_code": twp, "village_code": vil},
        "complainant": who,
    }


def pairs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(kind: str, same: bool, a: tuple[int, int], b: tuple[int, int]) -> None:
        out.append(
            {
                "pair": f"pair-{len(out) + 1:04d}",
                "kind": kind,
                "same_matter": same,
                "a": complaint(*a),
                "b": complaint(*b),
            }
        )

    n = len(MATTERS)
    for s in range(n):
        add("other_channel", True, (s, 0), (s, 1))
        add("reworded", True, (s, 0), (s, 2))
        add("reworded", True, (s, 1), (s, 2))
        add("relative", True, (s, 0), (s, 3))
        add("relative", True, (s, 2), (s, 3))
    for person in range(n // 2):
        for va in range(3):
            for vb in range(3):
                add("same_person_other_matter", False, (2 * person, va), (2 * person + 1, vb))
    for v in range(8):
        people = [v, v + 8, v + 16]
        for i, p in enumerate(people):
            for q in people[i + 1 :]:
                for sa in (2 * p, 2 * p + 1):
                    for sb in (2 * q, 2 * q + 1):
                        for va, vb in ((0, 0), (1, 3), (3, 2)):
                            add("same_village_other_matter", False, (sa, va), (sb, vb))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "corpus" / "matter_pairs.jsonl")
    )
    args = ap.parse_args()
    rows = pairs()
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
