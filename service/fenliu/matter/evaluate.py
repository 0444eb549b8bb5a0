"""Measuring matter linking on labelled pairs (``fenliu store link-eval PAIRS.jsonl``).

Each line of the file is ``{"pair", "kind", "same_matter", "a", "b"}`` with two complaints as
``fenliu eval`` reads them. For each pair a fresh in-memory store (the same recognition as SQLite and
PostgreSQL) records the earlier complaint, then the later one; the pair counts as linked when both get
the same matter. Precision and recall are over all pairs, and recall also per kind of same-matter pair,
the false links per kind of different-matter pair. The labelled set the project ships is
corpus/matter_pairs.jsonl (tools/gen_matter_pairs.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fenliu.domain import model
from fenliu.domain.errors import ComplaintError
from fenliu.matter._core import MatchSettings, sighting_from_complaint
from fenliu.matter.memory import MemoryStore

__all__ = ["LinkReport", "evaluate", "read_pairs"]


@dataclass
class LinkReport:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    per_kind: dict[str, Counter[str]] = field(default_factory=dict)
    evidence: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def pairs(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def to_dict(self) -> model.Json:
        return {
            "pairs": self.pairs,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "per_kind": {k: dict(v) for k, v in sorted(self.per_kind.items())},
            "linked_by": dict(self.evidence),
            "errors": self.errors,
        }

    def render(self) -> str:
        lines = [
            f"{self.pairs} pairs: precision {self.precision:.3f}, recall {self.recall:.3f} "
            f"(tp {self.tp}, fp {self.fp}, fn {self.fn}, tn {self.tn})",
            "",
            "| kind | same matter | pairs | linked | rate |",
            "|---|---|---:|---:|---:|",
        ]
        for kind, c in sorted(self.per_kind.items(), key=lambda kv: (not kv[1]["same"], kv[0])):
            n = c["pairs"]
            lines.append(
                f"| {kind} | {'yes' if c['same'] else 'no'} | {n} | {c['linked']} | {c['linked'] / n:.3f} |"
            )
        if self.evidence:
            lines += ["", "linked by: " + ", ".join(f"{k} {v}" for k, v in sorted(self.evidence.items()))]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def read_pairs(path: str | Path) -> Iterable[Mapping[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def evaluate(
    pairs: Iterable[Mapping[str, Any]], *, key: bytes, settings: MatchSettings | None = None
) -> LinkReport:
    settings = settings or MatchSettings()
    report = LinkReport()
    for n, p in enumerate(pairs, 1):
        name = str(p.get("pair", n))
        try:
            a = model.complaint_from_dict(p["a"])
            b = model.complaint_from_dict(p["b"])
            same = bool(p["same_matter"])
            kind = str(p.get("kind", "same" if same else "different"))
        except (KeyError, TypeError, ComplaintError) as e:
            report.errors.append(f"pair {name}: {type(e).__name__}")
            continue
        first, second = sorted((a, b), key=lambda c: c.received_at)
        store = MemoryStore(settings)
        r1 = store.record(sighting_from_complaint(first, key=key, settings=settings))
        r2 = store.record(sighting_from_complaint(second, key=key, settings=settings))
        linked = r1.matter_id == r2.matter_id
        c = report.per_kind.setdefault(kind, Counter())
        c["pairs"] += 1
        c["same"] = int(same)
        c["linked"] += int(linked)
        if linked:
            report.evidence[",".join(r2.linked_by)] += 1
        if same and linked:
            report.tp += 1
        elif same:
            report.fn += 1
        elif linked:
            report.fp += 1
        else:
            report.tn += 1
    return report
