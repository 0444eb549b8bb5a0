"""Replay a corpus on every core: ``fenliu diff``, ``fenliu score`` and ``fenliu eval`` over a JSON Lines file.

The corpus file is cut into spans of whole lines (byte offsets, found by scanning for newlines; each
span knows the number of its first line). Worker processes (``--jobs N``, default: the CPUs this
process may run on) each load the packs once, with a memo of their own, then read, parse, validate
and decide their spans themselves and send back only what the report needs: for ``diff`` the counts,
the changed fields and their examples (:class:`~fenliu.diff.DiffReport`, a few kilobytes per span),
for ``score`` the counters of each way of reading, for ``eval`` the output lines. Results are merged
in corpus order, so the output is the one a single process gives (the timing line of ``diff`` aside);
``tests/test_replay.py`` holds each command's output equal to its one-process run. ``--jobs 1`` runs
the same spans in this process, without workers.

Two things make a span cheaper than deciding its complaints one by one:

- **The text step once per text.** What the enrichers derive (:mod:`fenliu.enrich`) depends only on
  the title and text, so each worker keeps the derived fields of the texts it has seen (bounded, like
  the memo: it starts afresh when full). When the two packs of a ``diff`` read text the same way (the
  same lexicon, thresholds and model file, as a pack that ``extends`` another without touching its
  text has), one enrichment serves both.
- **Outcomes counted, not walked.** A memoized outcome is shared by every complaint of its class, so
  ``diff`` counts complaints per (outcome, outcome) pair and adds up the rules that fired and the
  grassroots ratio once per pair at the end of a span.

Knows nothing of the engine or the transport; spawns workers with :mod:`multiprocessing` (``spawn``:
durable_rules' state is never forked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TextIO, TypedDict, TypeVar, cast

from fenliu.domain.errors import ComplaintError

if TYPE_CHECKING:
    from fenliu.authoring.diff import DiffReport, Progress
    from fenliu.authoring.score import Report
    from fenliu.domain.model import Complaint, Outcome, PackId, Suggestion
    from fenliu.engine.decider import Decider
    from fenliu.engine.enrich import Enrichment
    from fenliu.packs.types import Pack

#: A JSON value, as ``json.loads`` gives it.
Json = str | int | float | bool | None | list["Json"] | dict[str, "Json"]

#: A span holds at most this many bytes (about 2,500 generated complaints), and a corpus is cut into
#: at least 8 spans per worker so that workers finish together.
SPAN_BYTES: Final = 1 << 20
SPANS_PER_JOB: Final = 8
#: Texts whose derived fields a worker remembers (it starts afresh when full).
TEXT_CACHE: Final = 65536
#: Below this many lines a corpus is replayed in this process: starting workers would cost more.
SMALL: Final = 1000

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


def add_jobs_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--jobs N`` for a command that replays a corpus; ``what`` says what each worker process does."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"worker processes{what} (default: the number of CPUs; 1: this process only)",
    )


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Span:
    start: int  # byte offset of the span's first line
    end: int  # byte offset just past its last newline (or the end of the file)
    first_line: int  # the number of its first line (1-based)
    lines: int  # newlines in the span (its last line may have none)


def spans(path: Path, jobs: int = 1, *, most: int = SPAN_BYTES) -> list[Span]:
    """``path`` cut into spans of whole lines, at most ``most`` bytes each (one longer line makes a
    longer span), at least ``SPANS_PER_JOB`` per job when the file is large enough."""
    size = path.stat().st_size
    target = max(1, min(most, size // max(1, jobs * SPANS_PER_JOB)))
    out: list[Span] = []
    with path.open("rb") as f:
        start, line = 0, 1
        while start < size:
            f.seek(start + target - 1)
            buf = b""
            cut = size
            pos = start + target - 1
            while pos < size:
                buf = f.read(1 << 16)
                if not buf:
                    break
                i = buf.find(b"\n")
                if i >= 0:
                    cut = pos + i + 1
                    break
                pos += len(buf)
            f.seek(start)
            n = f.read(cut - start).count(b"\n")
            out.append(Span(start, cut, line, n))
            start, line = cut, line + n
    return out


def read_span(path: Path, span: Span) -> list[str]:
    """The span's lines (split on newlines only, as the line numbers count them), without them."""
    with path.open("rb") as f:
        f.seek(span.start)
        data = f.read(span.end - span.start)
    lines = data.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class Job(Protocol[R_co]):
    """What a worker does: ``setup`` once in the worker, then ``run`` on each span's lines."""

    def setup(self) -> None: ...

    def run(self, lines: list[str], first_line: int) -> R_co: ...

    def close(self) -> None: ...


# The job of this worker process and its corpus (set by the pool's initializer; a worker runs one job).
_worker: list[tuple[Job[object], Path]] = []


def _init(job: Job[object], path: str) -> None:
    job.setup()
    _worker[:] = [(job, Path(path))]


def _run(span: Span) -> tuple[int, object]:
    job, path = _worker[0]
    return span.lines, job.run(read_span(path, span), span.first_line)


def replay(
    path: Path,
    job: Job[R],
    *,
    jobs: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[R]:
    """``job`` run on every span of ``path``, results in corpus order; with ``jobs`` > 1 in that many
    worker processes. ``progress`` is told the lines done so far after each span."""
    parts = spans(path, jobs)
    done = 0
    if jobs <= 1 or len(parts) <= 1 or sum(s.lines for s in parts) < SMALL:
        job.setup()
        try:
            for s in parts:
                result = job.run(read_span(path, s), s.first_line)
                done += s.lines
                if progress is not None:
                    progress(done)
                yield result
        finally:
            job.close()
        return
    # A worker that dies (killed, out of memory) breaks the pool: the run stops with an error, not a hang.
    pool = ProcessPoolExecutor(
        min(jobs, len(parts)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init,
        initargs=(job, str(path)),
    )
    try:
        for lines, part in pool.map(_run, parts):
            done += lines
            if progress is not None:
                progress(done)
            yield cast("R", part)
    finally:  # stopped early (an error, Ctrl-C, a closed pipe): the spans not started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------
# The text step once per text


def text_signature(pack: Pack) -> tuple[object, ...]:
    """What a pack's enrichment depends on: two packs with the same signature derive the same fields
    from every text."""
    t = pack.text
    model = hashlib.sha256(t.model_path.read_bytes()).hexdigest() if t.model and t.model_path else ""
    # an entry's file is named relative to the pack that reads it; its source is the same wherever it lies
    lexicon = tuple((e.category, e.kind, e.words, e.weight, e.source) for e in pack.lexicon)
    return (
        lexicon,
        t.threshold,
        t.margin,
        t.model_confidence,
        model,
        t.layer or pack.name,
        tuple(pack.categories),
    )


class TextMemo:
    """A decider's enrichment, remembered per (title, text): the complaint returned is the one the
    enrichment gives, its derived fields taken from the first complaint of that text."""

    def __init__(self, enrichment: Enrichment, size: int = TEXT_CACHE) -> None:
        from fenliu.domain.model import TEXT_DERIVED_FIELDS
        from fenliu.engine.enrich import _with_derived

        self.enrichment = enrichment
        self.size = size
        self._fields = (*TEXT_DERIVED_FIELDS, "evidence")
        self._rebuild = _with_derived
        self._seen: dict[tuple[str, str, str], dict[str, object]] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, c: Complaint) -> Complaint:
        if not self.enrichment or c.enriched:
            return c
        key = (c.title, c.text, c.text_category)
        derived = self._seen.get(key)
        if derived is not None:
            self.hits += 1
            return self._rebuild(c, derived)
        self.misses += 1
        e = self.enrichment(c)
        if len(self._seen) >= self.size:
            self._seen.clear()
        self._seen[key] = {k: getattr(e, k) for k in self._fields}
        return e


def _complaints(lines: list[str], first_line: int) -> Iterator[tuple[int, Complaint | None]]:
    """(line number, complaint or None when not valid) for each non-blank line."""
    from fenliu.domain.model import complaint_from_dict

    loads = json.loads
    for n, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        try:
            yield n, complaint_from_dict(loads(line))
        except (json.JSONDecodeError, ComplaintError, RecursionError):
            yield n, None


# ---------------------------------------------------------------------------------------------------
# fenliu diff


class _DiffState(TypedDict):
    paths: tuple[str, str]
    examples: int
    cache_size: int


class DiffJob:
    """Both packs decide a span; the span's :class:`~fenliu.diff.DiffReport` comes back."""

    def __init__(self, old: str, new: str, examples: int, cache_size: int) -> None:
        self.paths = (old, new)
        self.examples = examples
        self.cache_size = cache_size
        self.deciders: tuple[Decider, Decider] | None = None
        self.enrich: tuple[TextMemo, TextMemo] | None = None

    def __getstate__(self) -> _DiffState:
        return {"paths": self.paths, "examples": self.examples, "cache_size": self.cache_size}

    def __setstate__(self, state: _DiffState) -> None:
        self.__init__(*state["paths"], state["examples"], state["cache_size"])  # type: ignore[misc]

    def setup(self) -> None:
        from fenliu.engine.decider import Decider
        from fenliu.packs.load import load_pack

        old, new = (Decider(load_pack(p), cache_size=self.cache_size) for p in self.paths)
        self.deciders = (old, new)
        a = TextMemo(old.enrichment)
        same = text_signature(old.pack) == text_signature(new.pack)
        self.enrich = (a, a if same else TextMemo(new.enrichment))

    def close(self) -> None:
        if self.deciders is not None:
            for d in self.deciders:
                d.close()
            self.deciders = None

    def run(self, lines: list[str], first_line: int) -> DiffReport:
        from fenliu.authoring.diff import FIELDS, DiffReport, excerpt, field_values
        from fenliu.domain.model import UNCLASSIFIED

        assert self.deciders is not None and self.enrich is not None
        old, new = self.deciders
        enrich_old, enrich_new = self.enrich
        report = DiffReport(old.id, new.id, "", self.examples)
        # outcome pair -> complaints; (outcome, suggestions) -> rendered fields
        pairs: dict[tuple[int, int], tuple[Outcome, Outcome]] = {}
        counts: dict[tuple[int, int], int] = {}
        rendered: dict[tuple[int, tuple[Suggestion, ...]], tuple[str, ...]] = {}
        fields = report.fields
        keep = self.examples

        def values(o: Outcome, s: tuple[Suggestion, ...]) -> tuple[str, ...]:
            k = (id(o), s)
            v = rendered.get(k)
            if v is None:
                v = rendered[k] = field_values(o, s)
            return v

        for n, c in _complaints(lines, first_line):
            if c is None:
                report.invalid += 1
                report.invalid_lines.append(n)
                continue
            ea = enrich_old(c)
            eb = ea if enrich_new is enrich_old else enrich_new(c)
            # the outcome alone (no decision id, clock or deadlines); suggestions as Decision gives them
            oa, ob = old.outcome(ea), new.outcome(eb)
            sa = ea.evidence.suggestions if ea.evidence is not None and oa.category == UNCLASSIFIED else ()
            sb = eb.evidence.suggestions if eb.evidence is not None and ob.category == UNCLASSIFIED else ()
            key = (id(oa), id(ob))
            if key in counts:
                counts[key] += 1
            else:
                pairs[key] = (oa, ob)
                counts[key] = 1
            va, vb = values(oa, sa), values(ob, sb)
            report.complaints += 1
            if va != vb:
                report.changed += 1
                cut = None
                for name, x, y in zip(FIELDS, va, vb, strict=True):
                    if x != y:
                        fc = fields[name]
                        fc.changed += 1
                        fc.transitions[(x, y)] += 1
                        ex = fc.examples.setdefault((x, y), [])
                        if len(ex) < keep:
                            if cut is None:
                                cut = excerpt(c)
                            ex.append((c.id, cut))
        for key, (oa, ob) in pairs.items():
            count = counts[key]
            for o, counter, layers in (
                (oa, report.fired_old, report.layers_old),
                (ob, report.fired_new, report.layers_new),
            ):
                for t in o.trace:
                    counter[t.rule] += count
                    layers.setdefault(t.rule, t.layer)
            report.grassroots_old = _grassroots(report.grassroots_old, oa, count)
            report.grassroots_new = _grassroots(report.grassroots_new, ob, count)
        return report


def _grassroots(acc: tuple[int, int], o: Outcome, count: int) -> tuple[int, int]:
    if o.excluded:
        return acc
    return (acc[0] + count * (o.tier in ("VILLAGE", "TOWNSHIP")), acc[1] + count)


def diff_file(
    old: str,
    new: str,
    ids: tuple[PackId, PackId],
    corpus: Path,
    *,
    jobs: int,
    examples: int,
    cache_size: int,
    label: str = "",
    progress: Progress | None = None,
) -> DiffReport:
    """``fenliu diff`` of ``corpus`` on ``jobs`` processes: the report of the whole corpus."""
    from fenliu.authoring.diff import DiffReport

    report = DiffReport(ids[0], ids[1], label, examples)
    start = time.perf_counter()
    job = DiffJob(old, new, examples, cache_size)
    for part in replay(corpus, job, jobs=jobs, progress=progress.update if progress is not None else None):
        report.merge(part)
    report.seconds = time.perf_counter() - start
    if progress is not None:
        progress.finish()
    return report


# ---------------------------------------------------------------------------------------------------
# fenliu score

_LINE = re.compile(r"^line (\d+):")


class _ScoreState(TypedDict):
    path: str
    split: str


class ScoreJob:
    """One pack scores a span of a labelled corpus; each way's :class:`~fenliu.score.Report` comes back."""

    def __init__(self, pack: str, split: str) -> None:
        self.path = pack
        self.split = split
        self.pack: Pack | None = None
        self.decider: Decider | None = None

    def __getstate__(self) -> _ScoreState:
        return {"path": self.path, "split": self.split}

    def __setstate__(self, state: _ScoreState) -> None:
        self.__init__(state["path"], state["split"])  # type: ignore[misc]

    def setup(self) -> None:
        from fenliu.engine.decider import Decider
        from fenliu.packs.load import load_pack

        self.pack = load_pack(self.path)
        self.decider = Decider(self.pack, backend="python", memoize=False)

    def close(self) -> None:
        if self.decider is not None:
            self.decider.close()
            self.decider = None

    def run(self, lines: list[str], first_line: int) -> dict[str, Report]:
        from fenliu.authoring.score import score
        from fenliu.authoring.train import read_labelled

        try:
            items = read_labelled(lines)
        except ValueError as e:  # name the corpus's line, not the span's
            msg = str(e)
            m = _LINE.match(msg)
            if m:
                msg = f"line {int(m.group(1)) + first_line - 1}:{msg[m.end() :]}"
            raise ValueError(msg) from None
        if self.split:
            items = [x for x in items if x.split == self.split]
        assert self.pack is not None
        return score(self.pack, items, self.decider)


def merge_scores(into: dict[str, Report], part: dict[str, Report]) -> None:
    """Add the reports of a later span (examples: the first in corpus order)."""
    for way, r in part.items():
        mine = into.setdefault(way, type(r)(way))
        for name in ("total", "correct", "to_person", "wrong", "suggested_first", "suggestable"):
            setattr(mine, name, getattr(mine, name) + getattr(r, name))
        for name in ("got", "expected", "hits", "confusions"):
            getattr(mine, name).update(getattr(r, name))
        for k, v in r.examples.items():
            mine.examples.setdefault(k, v)


def score_file(
    pack: str, corpus: Path, *, split: str, jobs: int, progress: Progress | None = None
) -> dict[str, Report]:
    """``fenliu score`` of ``corpus`` on ``jobs`` processes."""
    from fenliu.authoring.score import WAYS

    merged: dict[str, Report] = {}
    job = ScoreJob(pack, split)
    for part in replay(corpus, job, jobs=jobs, progress=progress.update if progress is not None else None):
        merge_scores(merged, part)
    if progress is not None:
        progress.finish()
    if not merged:  # an empty corpus: the ways a pack reads, with nothing counted
        job.setup()
        try:
            merged = job.run([], 1)
        finally:
            job.close()
    return {w: merged[w] for w in WAYS if w in merged}


# ---------------------------------------------------------------------------------------------------
# fenliu eval


def eval_line(
    decider: Decider,
    n: int,
    item: Json | BadJson,
    *,
    trace: bool,
    indent: int | None,
    enrich: Callable[[Complaint], Complaint] | None = None,
) -> tuple[str, bool]:
    """The output line for one input item of ``fenliu eval`` (a decision or an error), and whether it
    was bad. ``item`` is parsed JSON, or a :class:`BadJson`."""
    from fenliu.domain.model import complaint_from_dict

    if isinstance(item, BadJson):
        return json.dumps({"line": n, "error": "INVALID_ARGUMENT", "message": f"not JSON: {item.msg}"}), True
    try:
        complaint = complaint_from_dict(item)
    except ComplaintError as e:
        err: dict[str, Json] = {
            "line": n,
            "error": "INVALID_ARGUMENT",
            "field_violations": [{"field": v.field, "description": v.description} for v in e.violations],
        }
        cid = item.get("id") if isinstance(item, dict) else None
        if isinstance(cid, str):
            err["complaint_id"] = cid[:128]
        return json.dumps(err, ensure_ascii=False), True
    decision = decider.decide(enrich(complaint) if enrich is not None else complaint)
    return json.dumps(decision.to_dict(trace=trace), ensure_ascii=False, indent=indent), False


class BadJson:
    def __init__(self, msg: str) -> None:
        self.msg = msg


def parse_line(line: str) -> Json | BadJson:
    try:
        value: Json = json.loads(line)
        return value
    except json.JSONDecodeError as e:
        return BadJson(str(e.msg))
    except RecursionError:
        return BadJson("nested too deeply")


class _EvalState(TypedDict):
    path: str
    trace: bool
    indent: int | None


class EvalJob:
    """One pack decides a span of JSON Lines; the span's output lines and its count of bad ones come back."""

    def __init__(self, pack: str, trace: bool, indent: int | None) -> None:
        self.path = pack
        self.trace = trace
        self.indent = indent
        self.decider: Decider | None = None
        self.enrich: TextMemo | None = None

    def __getstate__(self) -> _EvalState:
        return {"path": self.path, "trace": self.trace, "indent": self.indent}

    def __setstate__(self, state: _EvalState) -> None:
        self.__init__(state["path"], state["trace"], state["indent"])  # type: ignore[misc]

    def setup(self) -> None:
        from fenliu.engine.decider import Decider
        from fenliu.packs.load import load_pack

        self.decider = Decider(load_pack(self.path))
        self.enrich = TextMemo(self.decider.enrichment)

    def close(self) -> None:
        if self.decider is not None:
            self.decider.close()
            self.decider = None

    def run(self, lines: list[str], first_line: int) -> tuple[list[str], int]:
        assert self.decider is not None
        out: list[str] = []
        bad = 0
        for n, line in enumerate(lines, first_line):
            if not line.strip():
                continue
            text, wrong = eval_line(
                self.decider, n, parse_line(line), trace=self.trace, indent=self.indent, enrich=self.enrich
            )
            out.append(text)
            bad += wrong
        return out, bad


def is_json_lines(path: Path) -> bool:
    """Whether ``path`` holds JSON Lines (its first non-blank line is a whole JSON object and more
    follows), not one JSON document or list, which ``fenliu eval`` reads whole."""
    with path.open("rb") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            if not line.startswith(b"{"):
                return False
            try:
                json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                return False
            return any(rest.strip() for rest in f)
    return False


def eval_file(
    pack: str,
    corpus: Path,
    out: TextIO,
    *,
    trace: bool,
    indent: int | None,
    jobs: int,
    progress: Progress | None = None,
) -> int:
    """``fenliu eval`` of a JSON Lines file on ``jobs`` processes: each output line written in corpus
    order; returns the number of bad lines."""
    bad = 0
    job = EvalJob(pack, trace, indent)
    for lines, wrong in replay(
        corpus, job, jobs=jobs, progress=progress.update if progress is not None else None
    ):
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
        bad += wrong
    if progress is not None:
        progress.finish()
    return bad


def count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


__all__: Sequence[str] = (
    "DiffJob",
    "EvalJob",
    "Job",
    "ScoreJob",
    "Span",
    "TextMemo",
    "default_jobs",
    "diff_file",
    "eval_file",
    "replay",
    "score_file",
    "spans",
)
