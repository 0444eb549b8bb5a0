"""``fenliu report STORE``: a period's figures by township, as a county office puts them in its monthly
report (督办月报): matters received, resolved and resolved at the grassroots (the 95% goal, measured
on what was settled, per matter), failed or refused, withdrawn, extended, the citizens' evaluations,
and what was open and overdue at the period's end.

    fenliu report sqlite:///var/fenliu/matters.db --month 2026-11 [--csv november.csv] [--names townships.yaml]
    fenliu report postgresql://… --from 2026-11-01 --to 2026-11-30

Dates are the banner's local days (UTC+8 unless ``--utc-offset``); ``--to`` is included. The figures
come from the store's ``outcomes`` (:class:`fenliu.matter.events.OutcomeRow`). A township is shown by
the name ``--names`` gives its code (a YAML or JSON mapping; ``deploy/townships-150626.yaml`` holds the
reference banner's), else by its code. The CSV is UTF-8 with a byte-order mark, so that a spreadsheet
opens it as Chinese. Nothing personal is in any of it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Final

import yaml

from fenliu.i18n import _
from fenliu.matter.events import OutcomeRow

__all__ = ["add_arguments", "cmd_report", "period", "table"]

#: The columns, in order: the key of OutcomeRow (or a share computed from it), and its label.
COUNTS: Final = tuple(f.name for f in fields(OutcomeRow) if f.name != "township")


def _labels() -> dict[str, str]:
    return {
        "township": _("township"),
        "received": _("received"),
        "resolved": _("resolved"),
        "resolved_grassroots": _("resolved at the grassroots"),
        "grassroots_share": _("grassroots share"),
        "failed_or_refused": _("failed or refused"),
        "withdrawn": _("withdrawn"),
        "extended": _("extended"),
        "evaluated": _("evaluated"),
        "satisfied": _("satisfied"),
        "basically": _("basically satisfied"),
        "dissatisfied": _("dissatisfied"),
        "satisfaction_share": _("satisfaction"),
        "open_at_end": _("open at the end"),
        "overdue_at_end": _("overdue at the end"),
    }


COLUMNS: Final = (
    "township",
    "received",
    "resolved",
    "resolved_grassroots",
    "grassroots_share",
    "failed_or_refused",
    "withdrawn",
    "extended",
    "evaluated",
    "satisfied",
    "basically",
    "dissatisfied",
    "satisfaction_share",
    "open_at_end",
    "overdue_at_end",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help=_("the matter store: sqlite:///PATH or postgresql://…"))
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", help=_("the month, YYYY-MM"))
    when.add_argument("--from", dest="start", help=_("the first day, YYYY-MM-DD (with --to)"))
    p.add_argument("--to", dest="end", help=_("the last day, YYYY-MM-DD (included)"))
    p.add_argument("--utc-offset", type=int, default=8, help=_("the banner's hours from UTC (default 8)"))
    p.add_argument("--csv", help=_("also write the table as CSV to this file"))
    p.add_argument("--names", help=_("township names: a YAML or JSON mapping of code to name"))


def period(month: str | None, start: str | None, end: str | None, offset_hours: int) -> tuple[int, int]:
    """[start, end) in epoch seconds of the banner's local days; ValueError in plain words."""
    tz = timezone(timedelta(hours=offset_hours))
    if month:
        try:
            first = datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=tz)
        except ValueError:
            raise ValueError(_("--month must be YYYY-MM, not {value!r}").format(value=month)) from None
        nxt = (first + timedelta(days=32)).replace(day=1)
        return int(first.timestamp()), int(nxt.timestamp())
    if not start or not end:
        raise ValueError(_("--from needs --to"))
    try:
        a = datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=tz)
        b = datetime.strptime(end, "%Y-%m-%d").replace(tzinfo=tz) + timedelta(days=1)
    except ValueError:
        raise ValueError(_("dates must be YYYY-MM-DD")) from None
    if b <= a:
        raise ValueError(_("--to must not be before --from"))
    return int(a.timestamp()), int(b.timestamp())


def _share(n: int, of: int) -> str:
    return f"{n / of:.1%}" if of else "-"


def table(rows: Sequence[OutcomeRow], names: Mapping[str, str]) -> list[list[str]]:
    """The header, a row a township (by name, then code), and the total row."""
    labels = _labels()
    total = {k: sum(int(getattr(r, k)) for r in rows) for k in COUNTS}
    out = [[labels[c] for c in COLUMNS]]
    items = [(names.get(r.township) or r.township or _("(no township)"), asdict(r)) for r in rows]
    items.sort(key=lambda t: t[0])
    items.append((_("total"), {"township": "", **total}))
    for name, figures in items:
        line = []
        for c in COLUMNS:
            if c == "township":
                line.append(str(name))
            elif c == "grassroots_share":
                line.append(_share(figures["resolved_grassroots"], figures["resolved"]))
            elif c == "satisfaction_share":
                line.append(_share(figures["satisfied"] + figures["basically"], figures["evaluated"]))
            else:
                line.append(str(figures[c]))
        out.append(line)
    return out


def _render(t: list[list[str]]) -> str:
    """A Markdown table: it pastes into a document and reads in a terminal."""
    lines = ["| " + " | ".join(t[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(t[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in t[1:]]
    return "\n".join(lines) + "\n"


def _names(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    text = Path(path).read_text("utf-8")
    data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(_("{path}: must map township codes to names").format(path=path))
    return {str(k): str(v) for k, v in data.items()}


def cmd_report(args: argparse.Namespace) -> int:
    from fenliu.matter import StoreError, open_store, sqlite_path

    try:
        start, end = period(args.month, args.start, args.end, args.utc_offset)
        names = _names(args.names)
    except (ValueError, OSError, yaml.YAMLError) as e:
        print(f"fenliu report: {e}", file=sys.stderr)
        return 2
    try:
        # a report reads a store; a mistyped path must not make a new, empty one
        if (
            not args.store.startswith(("postgresql://", "postgres://"))
            and not sqlite_path(args.store).is_file()
        ):
            print(
                "fenliu report: " + _("no matter store at {path}").format(path=sqlite_path(args.store)),
                file=sys.stderr,
            )
            return 1
        store = open_store(args.store)
        try:
            rows = store.outcomes(start, end)
        finally:
            store.close()
    except StoreError as e:
        print(f"fenliu report: {e}", file=sys.stderr)
        return 1
    t = table(rows, names)
    tz = timezone(timedelta(hours=args.utc_offset))
    first = datetime.fromtimestamp(start, tz).date()
    last = (datetime.fromtimestamp(end, tz) - timedelta(days=1)).date()
    print(_("Matters from {first} to {last}, by township").format(first=first, last=last))
    print()
    print(_render(t), end="")
    if args.csv:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerows(t)
        try:
            Path(args.csv).write_text("\ufeff" + buf.getvalue(), encoding="utf-8")
        except OSError as e:
            print(f"fenliu report: {e}", file=sys.stderr)
            return 1
    return 0
