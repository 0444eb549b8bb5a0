"""``fenliu diff OLD NEW --corpus FILE``: what a change to a pack would do, before it ships.

Both packs decide every complaint of a corpus (JSON Lines, one complaint per line, as ``fenliu eval``
reads them). The report says how many decisions change, and for each output field how many change,
a from → to table with counts, and example complaints (id and the start of the text) for each change.
It also lists the rules whose firing counts differ, and the grassroots ratio before and after.

Deadlines are compared as durations after ``received_at`` (``first_contact 24h, plan 5d, …``), so a
corpus without ``received_at`` diffs the same on every run. Each pack is a memoizing
:class:`~fenliu.engine.decider.Decider`, so a corpus of many similar complaints runs at the speed of feature
extraction (see docs/authoring-rules.md for measured throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fenliu.authoring import replay
from fenliu.domain import fields as F
from fenliu.domain.errors import ComplaintError, PackError
from fenliu.domain.model import (
    DEADLINE_NAMES,
    DECIDED_FIELDS,
    Complaint,
    Outcome,
    PackId,
    Suggestion,
    complaint_from_dict,
)
from fenliu.i18n import _
from fenliu.packs.load import revision_kept

if TYPE_CHECKING:
    from fenliu.engine.decider import Decider

#: The decision fields compared, in report order.
FIELDS: tuple[str, ...] = (*DECIDED_FIELDS, "suggestions")

EXCERPT = 40
NONE = "—"
_DEADLINE_SHORT = {
    "first_contact_by": "contact",
    "plan_by": "plan",
    "accept_by": "accept",
    "resolve_by": "resolve",
}


def _deadlines(o: Outcome) -> str:
    return ", ".join(
        f"{_DEADLINE_SHORT[name]} {F.format_duration(o.within[name]) if name in o.within else NONE}"
        for name in DEADLINE_NAMES
    )


#: How a compared field is rendered when it is not its ``Outcome`` attribute as it stands (a bool as
#: true/false, a list joined by ", "): by name, never by position.
_RENDER: dict[str, Callable[[Outcome, tuple[Suggestion, ...]], object]] = {
    "co_departments": lambda o, _s: ", ".join(sorted(o.co_departments)),
    "deadlines": lambda o, _s: _deadlines(o),
    "suggestions": lambda _o, s: ", ".join(f"{x.category} {x.score:g}" for x in s),
}


def _rendered(name: str, o: Outcome, suggestions: tuple[Suggestion, ...]) -> object:
    render = _RENDER.get(name)
    if render is not None:
        return render(o, suggestions)
    v = getattr(o, name)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ", ".join(v)
    return v


def field_values(o: Outcome, suggestions: tuple[Suggestion, ...] = ()) -> tuple[str, ...]:
    """The compared fields of an outcome (and the decision's suggestions), in :data:`FIELDS` order,
    each rendered as one string (``—`` when empty)."""
    raw = [_rendered(name, o, suggestions) for name in FIELDS]
    return tuple(str(v) if v not in ("", None) else NONE for v in raw)


@dataclass(slots=True)
class FieldChanges:
    changed: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)


@dataclass(slots=True)
class DiffReport:
    old: PackId
    new: PackId
    corpus: str
    examples_per_change: int
    complaints: int = 0
    invalid: int = 0
    invalid_lines: list[int] = field(default_factory=list)
    changed: int = 0
    fields: dict[str, FieldChanges] = field(default_factory=lambda: {f: FieldChanges() for f in FIELDS})
    fired_old: Counter[str] = field(default_factory=Counter)
    fired_new: Counter[str] = field(default_factory=Counter)
    layers_old: dict[str, str] = field(default_factory=dict)
    layers_new: dict[str, str] = field(default_factory=dict)
    grassroots_old: tuple[int, int] = (0, 0)  # (village or township, not excluded)
    grassroots_new: tuple[int, int] = (0, 0)
    seconds: float = 0.0

    # -- accumulation -------------------------------------------------------------------------------
    def add(
        self,
        cid: str,
        excerpt: str,
        old: Outcome,
        new: Outcome,
        suggested: tuple[tuple[Suggestion, ...], tuple[Suggestion, ...]] = ((), ()),
    ) -> None:
        self.complaints += 1
        a, b = field_values(old, suggested[0]), field_values(new, suggested[1])
        if a != b:
            self.changed += 1
            for name, x, y in zip(FIELDS, a, b, strict=True):
                if x != y:
                    fc = self.fields[name]
                    fc.changed += 1
                    fc.transitions[(x, y)] += 1
                    ex = fc.examples.setdefault((x, y), [])
                    if len(ex) < self.examples_per_change:
                        ex.append((cid, excerpt))
        for o, counter, layers in (
            (old, self.fired_old, self.layers_old),
            (new, self.fired_new, self.layers_new),
        ):
            for t in o.trace:
                counter[t.rule] += 1
                layers.setdefault(t.rule, t.layer)
        self.grassroots_old = _grassroots(self.grassroots_old, old)
        self.grassroots_new = _grassroots(self.grassroots_new, new)

    def merge(self, other: DiffReport) -> None:
        """Add a report on a later part of the same corpus (examples keep corpus order)."""
        self.complaints += other.complaints
        self.invalid += other.invalid
        self.invalid_lines += other.invalid_lines
        self.changed += other.changed
        for name, fc in other.fields.items():
            mine = self.fields[name]
            mine.changed += fc.changed
            mine.transitions.update(fc.transitions)
            for key, ex in fc.examples.items():
                have = mine.examples.setdefault(key, [])
                have += ex[: max(0, self.examples_per_change - len(have))]
        self.fired_old.update(other.fired_old)
        self.fired_new.update(other.fired_new)
        for rule, layer in other.layers_old.items():
            self.layers_old.setdefault(rule, layer)
        for rule, layer in other.layers_new.items():
            self.layers_new.setdefault(rule, layer)
        self.grassroots_old = (
            self.grassroots_old[0] + other.grassroots_old[0],
            self.grassroots_old[1] + other.grassroots_old[1],
        )
        self.grassroots_new = (
            self.grassroots_new[0] + other.grassroots_new[0],
            self.grassroots_new[1] + other.grassroots_new[1],
        )

    # -- output -------------------------------------------------------------------------------------
    def rule_changes(self) -> list[tuple[str, str, int, int]]:
        rules = sorted(set(self.fired_old) | set(self.fired_new))
        return [
            (r, self._layer(r), self.fired_old[r], self.fired_new[r])
            for r in rules
            if self.fired_old[r] != self.fired_new[r]
        ]

    def _layer(self, rule: str) -> str:
        a, b = self.layers_old.get(rule, ""), self.layers_new.get(rule, "")
        return f"{a} → {b}" if a and b and a != b else a or b

    def to_dict(self) -> dict[str, object]:
        warnings = self.warnings()
        return {
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            **({"warnings": warnings} if warnings else {}),
            "corpus": self.corpus,
            "complaints": self.complaints,
            "invalid": self.invalid,
            "invalid_lines": self.invalid_lines[:100],
            "changed": self.changed,
            "grassroots_ratio": {"old": _ratio(self.grassroots_old), "new": _ratio(self.grassroots_new)},
            "fields": {
                name: {
                    "changed": fc.changed,
                    "transitions": [
                        {
                            "from": x,
                            "to": y,
                            "count": n,
                            "examples": [
                                {"id": cid, "excerpt": ex} for cid, ex in fc.examples.get((x, y), [])
                            ],
                        }
                        for (x, y), n in _ordered(fc.transitions)
                    ],
                }
                for name, fc in self.fields.items()
            },
            "rules": [
                {"rule": r, "layer": layer, "fired_old": a, "fired_new": b}
                for r, layer, a, b in self.rule_changes()
            ],
            "seconds": round(self.seconds, 3),
        }

    def warnings(self) -> list[str]:
        """What the reader should know before the figures: a changed pack that kept its revision."""
        kept = revision_kept(self.old, self.new)
        return [kept] if kept else []

    def to_markdown(self) -> str:
        out: list[str] = []
        pct = _pct(self.changed, self.complaints)
        out.append(f"# fenliu diff: {_pack(self.old)} → {_pack(self.new)}")
        out.append("")
        for w in self.warnings():
            out.append(_("warning: {warning}").format(warning=w))
            out.append("")
        invalid = _("; {n} invalid line(s) skipped").format(n=self.invalid) if self.invalid else ""
        out.append(
            _("Corpus `{corpus}`: {n} complaints{invalid}.").format(
                corpus=self.corpus, n=f"{self.complaints:,}", invalid=invalid
            )
        )
        out.append("")
        out.append(
            _(
                "**{n} decisions change ({pct})**. Grassroots ratio (village + township among non-excluded): "
                "{old} → {new}."
            ).format(
                n=f"{self.changed:,}",
                pct=pct,
                old=_ratio_s(self.grassroots_old),
                new=_ratio_s(self.grassroots_new),
            )
        )
        out.append("")
        out.append(_("| field | changed | share |"))
        out.append("|---|---:|---:|")
        for name, fc in self.fields.items():
            out.append(f"| {name} | {fc.changed:,} | {_pct(fc.changed, self.complaints)} |")
        for name, fc in self.fields.items():
            if not fc.changed:
                continue
            out.append("")
            out.append(_("## {field}: {n} changed").format(field=name, n=f"{fc.changed:,}"))
            out.append("")
            out.append(_("| from | to | count |"))
            out.append("|---|---|---:|")
            ordered = _ordered(fc.transitions)
            for (x, y), n in ordered:
                out.append(f"| {_cell(x)} | {_cell(y)} | {n:,} |")
            if self.examples_per_change:
                out.append("")
                out.append(_("Examples:"))
                out.append("")
                for (x, y), _n in ordered:
                    for cid, ex in fc.examples.get((x, y), []):
                        out.append(f"- `{cid}` {_short(x, 60)} → {_short(y, 60)}: {ex}")
        changes = self.rule_changes()
        if changes:
            out.append("")
            out.append(_("## Rules that fire differently"))
            out.append("")
            out.append(_("| rule | layer | fired before | fired after |"))
            out.append("|---|---|---:|---:|")
            for r, layer, a, b in changes:
                out.append(f"| {r} | {layer} | {a:,} | {b:,} |")
        out.append("")
        rate = (
            _(" ({n} complaints/s)").format(n=f"{self.complaints / self.seconds:,.0f}")
            if self.seconds > 0
            else ""
        )
        out.append(
            _("_Decided by both packs in {seconds} s{rate}._").format(
                seconds=f"{self.seconds:.1f}", rate=rate
            )
        )
        return "\n".join(out) + "\n"


def _grassroots(acc: tuple[int, int], o: Outcome) -> tuple[int, int]:
    if o.excluded:
        return acc
    return (acc[0] + (o.tier in ("VILLAGE", "TOWNSHIP")), acc[1] + 1)


def _ratio(acc: tuple[int, int]) -> float | None:
    return round(acc[0] / acc[1], 4) if acc[1] else None


def _ratio_s(acc: tuple[int, int]) -> str:
    return f"{100 * acc[0] / acc[1]:.1f}%" if acc[1] else NONE


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else NONE


def _pack(p: PackId) -> str:
    return f"{p.name} {p.revision} ({p.digest})"


def _ordered(c: Counter[tuple[str, str]]) -> list[tuple[tuple[str, str], int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))


def _short(v: str, n: int = 24) -> str:
    return v if len(v) <= n else v[: n - 1] + "…"


def _cell(v: str) -> str:
    return _short(v, 60).replace("|", "\\|")


def excerpt(c: Complaint) -> str:
    text = " ".join((c.title + " " + c.text).split()) or _("(no text; category_hint {hint!r})").format(
        hint=c.category_hint.strip()
    )
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


# ---------------------------------------------------------------------------------------------------
# Running


class Progress:
    """A one-line progress bar on a terminal stream, redrawn at most ten times a second."""

    def __init__(self, total: int | None, stream: TextIO, width: int = 30, label: str = "diff") -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.width = width
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * self.width)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            line = (
                f"\r{self.label} [{bar:<{self.width}}] {self.done:,}/{self.total:,} {100 * frac:5.1f}% "
                + _("{rate}/s eta {eta}s ").format(rate=f"{rate:,.0f}", eta=f"{eta:,.0f}")
            )
        else:
            line = f"\r{self.label} " + _("{n} complaints {rate}/s ").format(
                n=f"{self.done:,}", rate=f"{rate:,.0f}"
            )
        self.stream.write(line)
        self.stream.flush()

    def finish(self) -> None:
        if self.total:
            self.done = max(self.done, self.total)  # blank lines are counted in the total, not as complaints
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()


def read_corpus(lines: Iterable[str], first: int = 1) -> Iterator[tuple[int, Complaint | None]]:
    """(line number, complaint) for each non-blank line; None for a line that is not a valid complaint."""
    for n, line in enumerate(lines, first):
        if not line.strip():
            continue
        try:
            yield n, complaint_from_dict(json.loads(line))
        except (json.JSONDecodeError, ComplaintError):
            yield n, None


def run_diff(
    old: Decider,
    new: Decider,
    lines: Iterable[str],
    *,
    corpus: str = "",
    examples: int = 3,
    progress: Progress | None = None,
    first_line: int = 1,
) -> DiffReport:
    """Decide every complaint of ``lines`` (JSON Lines) with both deciders and compare."""
    report = DiffReport(old.id, new.id, corpus, examples)
    start = time.perf_counter()
    for seen, (n, complaint) in enumerate(read_corpus(lines, first_line), 1):
        if complaint is None:
            report.invalid += 1
            report.invalid_lines.append(n)
        else:
            a, b = old.decide(complaint), new.decide(complaint)
            report.add(complaint.id, excerpt(complaint), a.outcome, b.outcome, (a.suggestions, b.suggestions))
        if progress is not None:
            progress.update(seen)
    report.seconds = time.perf_counter() - start
    if progress is not None:
        progress.finish()
    return report


# -- several processes: fenliu.replay ---------------------------------------------------------------------

#: Outcomes memoized per pack. A realistic corpus repeats few classes of input (a quarter of the 100,000
#: generated complaints hit the cache); 16,384 keeps nearly all of those hits at a quarter of the
#: engine's default memory.
CACHE_SIZE = 16384


def _count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help=_("the pack as it is now (folder)"))
    parser.add_argument("new", help=_("the changed pack (folder)"))
    parser.add_argument("--corpus", required=True, help=_("complaints, one JSON object per line"))
    parser.add_argument("--format", choices=["markdown", "json"], default="markdown")
    parser.add_argument(
        "--examples",
        type=int,
        default=3,
        metavar="N",
        help=_("example complaints shown for each from→to change (default 3)"),
    )
    parser.add_argument("--out", metavar="FILE", help=_("write the report here instead of standard output"))
    parser.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help=_("show a progress bar on standard error (default: when it is a terminal)"),
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    replay.add_jobs_argument(parser, _(", each holding both packs"))
    parser.add_argument(
        "--fail-on-change",
        action="store_true",
        help=_("exit with status 3 when any decision changes (for CI)"),
    )


def _load(path: str) -> Decider | None:
    from fenliu.engine.decider import Decider
    from fenliu.packs.load import load_pack

    try:
        return Decider(load_pack(path), cache_size=CACHE_SIZE)
    except PackError as e:
        print(f"{path}: " + _("the pack does not load:"), file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return None


def main(args: argparse.Namespace) -> int:
    corpus = Path(args.corpus)
    if not corpus.is_file():
        print(f"{args.corpus}: " + _("no such corpus file"), file=sys.stderr)
        return 2
    if args.examples < 0:
        print(_("--examples must be 0 or more"), file=sys.stderr)
        return 2
    old = _load(args.old)
    new = _load(args.new)
    if old is None or new is None:
        return 1
    kept = revision_kept(old.id, new.id)
    if kept and (args.out or args.format == "json"):
        # the Markdown report on standard output says it itself; a report elsewhere, here too
        print(_("warning: {warning}").format(warning=kept), file=sys.stderr)
    total = _count_lines(corpus)
    jobs = max(1, args.jobs) if args.jobs is not None else replay.default_jobs()
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(total, sys.stderr) if show else None
    try:
        with corpus.open(encoding="utf-8") as f:
            if jobs > 1:
                report = replay.diff_file(
                    args.old,
                    args.new,
                    (old.id, new.id),
                    corpus,
                    jobs=jobs,
                    examples=args.examples,
                    cache_size=CACHE_SIZE,
                    label=args.corpus,
                    progress=progress,
                )
            else:
                report = run_diff(old, new, f, corpus=args.corpus, examples=args.examples, progress=progress)
    except UnicodeDecodeError:
        print(f"{args.corpus}: " + _("not UTF-8 text"), file=sys.stderr)
        return 2
    finally:
        old.close()
        new.close()
    text = (
        json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"
        if args.format == "json"
        else report.to_markdown()
    )
    if args.out:
        tmp = f"{args.out}.tmp{os.getpid()}"
        Path(tmp).write_text(text, encoding="utf-8")
        os.replace(tmp, args.out)
        print(
            _("{n} of {total} decisions change; report written to {file}").format(
                n=f"{report.changed:,}", total=f"{report.complaints:,}", file=args.out
            ),
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    if args.fail_on_change and report.changed:
        return 3
    return 0
