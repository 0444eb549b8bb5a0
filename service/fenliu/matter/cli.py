"""``fenliu store …``: the operator's commands for the matter store.

    fenliu store migrate URL                       apply the schema migrations (also done at open)
    fenliu store purge URL [--retention-days N]     delete complaints older than the retention
    fenliu store forget URL --id-number|--phone     delete everything linked to one person; the value
                                                    is read from standard input, never from the command line
    fenliu store link-eval PAIRS.jsonl              precision and recall of linking on labelled pairs

The hash key is the decision log's: ``--key-file`` or ``$FENLIU_DECISION_LOG_KEY``. What the commands
print and log names counts and the store, never personal data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from fenliu.domain.model import Complainant
from fenliu.i18n import _
from fenliu.matter._core import MatchSettings, StoreError, identity_hashes
from fenliu.serving import decision_log

_log = logging.getLogger("fenliu.matter")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="store_command", required=True)
    m = sub.add_parser("migrate", help=_("apply the matter store's schema migrations"))
    m.add_argument("url", help=_("sqlite:///PATH, a file path, or postgresql://…"))
    m.set_defaults(store_func=cmd_migrate)

    pu = sub.add_parser("purge", help=_("delete complaints older than the retention"))
    pu.add_argument("url", help=_("the matter store: sqlite:///PATH or postgresql://…"))
    pu.add_argument(
        "--retention-days",
        type=int,
        default=MatchSettings().retention_days,
        help=_("keep complaints received in the last N days (default {days})").format(
            days=MatchSettings().retention_days
        ),
    )
    pu.set_defaults(store_func=cmd_purge)

    f = sub.add_parser(
        "forget", help=_("delete everything linked to one person's id number or phone (read from stdin)")
    )
    f.add_argument("url", help=_("the matter store: sqlite:///PATH or postgresql://…"))
    which = f.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id-number",
        action="store_const",
        const="id_number",
        dest="field",
        help=_("the person's id number, read from standard input"),
    )
    which.add_argument(
        "--phone",
        action="store_const",
        const="phone",
        dest="field",
        help=_("the person's phone number, read from standard input"),
    )
    f.add_argument("--key-file", help=_("the hash key (default: $FENLIU_DECISION_LOG_KEY)"))
    f.set_defaults(store_func=cmd_forget)

    e = sub.add_parser("link-eval", help=_("precision and recall of matter linking on labelled pairs"))
    e.add_argument("pairs", help=_("JSON Lines of {pair, kind, same_matter, a, b}"))
    e.add_argument("--min-precision", type=float, default=0.97, help=_("the precision floor (default 0.97)"))
    e.add_argument("--min-recall", type=float, default=0.90, help=_("the recall floor (default 0.90)"))
    e.add_argument(
        "--identity-similarity",
        type=float,
        default=MatchSettings().identity_similarity,
        help=_("how alike two texts of one person must be to be one matter"),
    )
    e.add_argument(
        "--content-similarity",
        type=float,
        default=MatchSettings().content_similarity,
        help=_("how much of the shorter text a link by words alone must share"),
    )
    e.add_argument(
        "--content-jaccard",
        type=float,
        default=MatchSettings().content_jaccard,
        help=_("how much of all their words two texts linked by words alone must share"),
    )
    e.add_argument("--json", action="store_true", help=_("print the report as JSON"))
    e.set_defaults(store_func=cmd_link_eval)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.store_func(args))
    except StoreError as e:
        print(f"fenliu store: {e}", file=sys.stderr)
        return 1


def _field(field: str) -> str:
    return _("id number") if field == "id_number" else _("phone number")


def _open(url: str, settings: MatchSettings | None = None) -> Any:
    from fenliu.matter import open_store

    return open_store(url, settings)


def cmd_migrate(args: argparse.Namespace) -> int:
    store = _open(args.url)
    try:
        applied = getattr(store, "applied", [])
        version = store.schema_version() if hasattr(store, "schema_version") else 0
        done = (
            _("applied {versions}").format(versions=", ".join(map(str, applied)))
            if applied
            else _("nothing to apply")
        )
        print(
            _("migrate: {url} at schema version {version} ({done})").format(
                url=store.url, version=version, done=done
            )
        )
    finally:
        store.close()
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    settings = MatchSettings(retention_days=args.retention_days)
    store = _open(args.url, settings)
    try:
        n = store.purge()
    finally:
        store.close()
    before = (datetime.now(UTC) - timedelta(days=settings.retention_days)).date().isoformat()
    _log.info("purge: %d complaint(s) received before %s removed", n, before)
    print(_("purge: removed {n} complaint(s) received before {date}").format(n=n, date=before))
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    try:
        key = decision_log.load_hash_key(args.key_file)
    except (ValueError, OSError) as e:
        print(f"fenliu store forget: {e}", file=sys.stderr)
        return 1
    value = sys.stdin.readline().strip()
    if not value:
        print(
            _("fenliu store forget: give the {field} on standard input").format(field=_field(args.field)),
            file=sys.stderr,
        )
        return 1
    hashes = tuple(h for _, h in identity_hashes(Complainant(**{args.field: value}), key))
    del value
    store = _open(args.url)
    try:
        n = store.forget(hashes)
    finally:
        store.close()
    _log.info("forget: %d complaint(s) linked to one %s removed", n, args.field)
    print(_("forget: removed {n} complaint(s) linked to that {field}").format(n=n, field=_field(args.field)))
    return 0


def cmd_link_eval(args: argparse.Namespace) -> int:
    from fenliu.matter.evaluate import evaluate, read_pairs

    settings = MatchSettings(
        identity_similarity=args.identity_similarity,
        content_similarity=args.content_similarity,
        content_jaccard=args.content_jaccard,
    )
    # the pairs' identities are hashed with a key of this run only: nothing is kept

    try:
        report = evaluate(read_pairs(args.pairs), key=os.urandom(32), settings=settings)
    except OSError as e:
        print(
            _("fenliu store link-eval: cannot read {path}: {reason}").format(
                path=args.pairs, reason=e.strerror
            ),
            file=sys.stderr,
        )
        return 1
    except ValueError as e:  # not JSON Lines
        print(
            _("fenliu store link-eval: {path} is not JSON Lines ({error})").format(
                path=args.pairs, error=type(e).__name__
            ),
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(report.render())
    ok = report.precision >= args.min_precision and report.recall >= args.min_recall and not report.errors
    if not ok:
        print(
            _(
                "below the floors: precision {precision} (≥ {min_precision}), recall {recall} (≥ {min_recall})"
            ).format(
                precision=f"{report.precision:.3f}",
                min_precision=args.min_precision,
                recall=f"{report.recall:.3f}",
                min_recall=args.min_recall,
            ),
            file=sys.stderr,
        )
    return 0 if ok else 1
