"""``fenliu``: the rule author's and operator's command line.

    fenliu check PACK                    every error at once, as file:line: rule-id: message
    fenliu test PACK [--coverage]        run the pack's cases; expected-versus-got; coverage
    fenliu eval PACK [FILE|-] [--trace]  decide complaints (JSON, or JSON Lines) and print decisions
    fenliu explain PACK COMPLAINT        why each rule fired or did not ([--rule ID] [--stage NAME])
    fenliu lint PACK                     conflicts, dead rules, gaps (errors fail, warnings do not)
    fenliu verify PACK [--against OLD]   what a reload does: fails exactly when the server would refuse
    fenliu fmt PACK [--check]            rewrite input-method punctuation, tabs, trailing spaces, GBK
    fenliu diff OLD NEW --corpus FILE    what a change would do over a corpus
    fenliu train PACK CORPUS             learn the pack's text model from labelled complaints
    fenliu score PACK CORPUS             accuracy of the lexicon, the model and both on a corpus
    fenliu serve --rules DIR ...         the gRPC service
    fenliu call [FILE|-]                 call a running service
    fenliu store migrate|purge|forget|link-eval   the matter store (docs/matters.md)

The CLI converts JSON to domain objects and back; it holds no rule logic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fenliu.domain.errors import ComplaintError, PackError, Problem
from fenliu.i18n import _

if TYPE_CHECKING:
    from fenliu.domain.model import Decision
    from fenliu.engine.decider import Decider


def _display(problem: Problem, pack_path: str) -> str:
    """Problems name files relative to the pack's parent folder; show them relative to the cwd."""
    base = Path(pack_path).resolve().parent
    target = (base / problem.file) if problem.file else base
    try:
        shown = os.path.relpath(target)
    except ValueError:
        shown = str(target)
    message = problem.message  # the severity in the reader's language, the code as it is
    if problem.severity == "warning":
        message = _("warning: {warning}").format(warning=message)
    elif problem.severity == "explained":
        message = _("explained: {message}").format(message=message)
    elif problem.severity != "error":
        message = f"{problem.severity}: {message}"
    return str(Problem(shown, problem.line, problem.rule, problem.code, message))


def missing_folder(path: str) -> str | None:
    """A one-line message when ``path`` is not a folder (with the path as typed, and the nearest
    sibling folder's name when it looks like a typo); ``None`` when it is one."""
    p = Path(path)
    if p.is_dir():
        return None
    if p.exists():
        return _("{path}: not a folder (a pack is a folder holding pack.yaml)").format(path=path)
    import difflib

    parent = p.parent if str(p.parent) else Path(".")
    siblings = sorted(d.name for d in parent.iterdir() if d.is_dir()) if parent.is_dir() else []
    near = difflib.get_close_matches(p.name, siblings, n=1, cutoff=0.6)
    if near:
        guess = str(parent / near[0]) if str(p.parent) not in ("", ".") else near[0]
        return _("{path}: no such folder (did you mean {guess}?)").format(path=path, guess=guess)
    return _("{path}: no such folder").format(path=path)


def _load(pack_path: str, out: TextIO) -> Decider | None:
    from fenliu.engine.decider import Decider
    from fenliu.packs.load import load_pack

    missing = missing_folder(pack_path)
    if missing is not None:
        print(f"fenliu: {missing}", file=sys.stderr)
        return None
    try:
        pack = load_pack(pack_path)
        return Decider(pack)
    except PackError as e:
        for p in e.problems:
            print(_display(p, pack_path), file=out)
        print(_("{n} error(s)").format(n=len(e.problems)), file=out)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    decider = _load(args.pack, sys.stdout)
    if decider is None:
        return 1
    from fenliu.authoring.lint import lint

    findings = lint(decider.pack, decider.compiled)
    errors = [f for f in findings if f.severity == "error"]
    for f in errors:
        print(_display(f, args.pack))
    if errors:
        print(_("{n} error(s)").format(n=len(errors)))
        return 1
    pack = decider.pack
    print(
        _(
            "ok: {name} {revision} ({digest}): {rules} rules in {stages} stages, {tables} tables, {cases} cases"
        ).format(
            name=pack.name,
            revision=pack.revision,
            digest=pack.digest,
            rules=len(pack.rules),
            stages=len(pack.stages),
            tables=len(pack.tables),
            cases=len(pack.cases),
        )
    )
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from fenliu.authoring.cases import run_cases

    decider = _load(args.pack, sys.stdout)
    if decider is None:
        return 1
    report = run_cases(decider.pack, decider)
    base = Path(args.pack).resolve().parent
    for f in report.failures:
        print(f.render(lambda file: os.path.relpath(base / file)))
    print(_("{passed} passed, {failed} failed").format(passed=report.passed, failed=len(report.failures)))
    top = decider.pack.layers[-1]
    rules = sum(r.layer == top for r in decider.pack.rules)
    rows = sum(t.row_layers.get(row) == top for t in decider.pack.tables.values() for row in t.rows)
    covered_rules = rules - len(report.uncovered_rules)
    covered_rows = rows - len(report.uncovered_rows)
    uncovered = bool(report.uncovered_rules or report.uncovered_rows)
    if args.coverage or uncovered:
        layer = _(" of layer {layer}").format(layer=top) if len(decider.pack.layers) > 1 else ""
        print(
            _("coverage{layer}: {covered_rules}/{rules} rules, {covered_rows}/{rows} table rows").format(
                layer=layer, covered_rules=covered_rules, rules=rules, covered_rows=covered_rows, rows=rows
            )
        )
        for rid, file, line in report.uncovered_rules:
            print(f"  {os.path.relpath(base / file)}:{line}: {rid}: " + _("no case reaches this rule"))
        for table, row, file, line in report.uncovered_rows:
            print(
                f"  {os.path.relpath(base / file)}:{line}: {table}.{row}: "
                + _("no case reaches this table row")
            )
    if report.failures:
        return 1
    if args.fail_uncovered and uncovered:
        return 1
    return 0


def _read_complaints(source: TextIO) -> Iterator[tuple[int, object]]:
    text = source.read()
    stripped = text.strip()
    if not stripped:
        return
    try:
        whole = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        whole = None
    if whole is not None:
        if isinstance(whole, list):
            yield from enumerate(whole, 1)
        else:
            yield 1, whole
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                yield n, _BadJson(str(e.msg))
            except RecursionError:
                yield n, _BadJson("nested too deeply")


def _unreadable(file: str | None, e: OSError | UnicodeDecodeError) -> str:
    """One line saying why the input cannot be read (never a traceback, never the file's content)."""
    name = "standard input" if file in (None, "-") else str(file)
    if isinstance(e, UnicodeDecodeError):
        return _("cannot read {path}: not UTF-8 text (byte {byte})").format(path=name, byte=e.start)
    return _("cannot read {path}: {reason}").format(path=name, reason=e.strerror or type(e).__name__)


class _BadJson:
    def __init__(self, msg: str) -> None:
        self.msg = msg


def cmd_eval(args: argparse.Namespace) -> int:
    from fenliu.domain.model import complaint_from_dict

    decider = _load(args.pack, sys.stderr)
    if decider is None:
        return 1
    if args.file not in (None, "-") and _jobs(args) > 1 and not args.explain:
        parallel = _eval_parallel(args, decider)
        if parallel is not None:
            return parallel
    try:
        if args.file in (None, "-"):
            complaints = list(_read_complaints(sys.stdin))
        else:
            with open(args.file, encoding="utf-8") as source:
                complaints = list(_read_complaints(source))
    except (OSError, UnicodeDecodeError) as e:
        print(f"fenliu eval: {_unreadable(args.file, e)}", file=sys.stderr)
        return 2
    bad = 0
    indent = 2 if args.pretty else None
    tables = 0
    for n, item in complaints:
        if isinstance(item, _BadJson):
            bad += 1
            print(
                json.dumps({"line": n, "error": "INVALID_ARGUMENT", "message": f"not JSON: {item.msg}"}),
                flush=True,
            )
            continue
        try:
            complaint = complaint_from_dict(item)
        except ComplaintError as e:
            bad += 1
            err = {
                "line": n,
                "error": "INVALID_ARGUMENT",
                "field_violations": [{"field": v.field, "description": v.description} for v in e.violations],
            }
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                err["complaint_id"] = item["id"][:128]
            print(json.dumps(err, ensure_ascii=False), flush=True)
            continue
        decision = decider.decide(complaint)
        if args.explain:
            print(("\n" if tables else "") + _explain_table(decider, decision, args.pack), flush=True)
            tables += 1
            continue
        print(json.dumps(decision.to_dict(trace=args.trace), ensure_ascii=False, indent=indent), flush=True)
    return 1 if bad else 0  # 1: some complaints were refused (as `fenliu call`); 2: could not run


def _shown_file(pack_path: str) -> Callable[[str], str]:
    """How a rule's file (relative to the pack's parent folder) is shown: relative to the cwd."""
    base = Path(pack_path).resolve().parent
    return lambda file: os.path.relpath(base / file)


def _explain_table(decider: Decider, decision: Decision, pack_path: str) -> str:
    from fenliu.authoring.explain import render_decision

    return render_decision(decision, {r.id: r for r in decider.pack.rules}, _shown_file(pack_path))


def _read_complaint_arg(spec: str) -> object:
    """``fenliu explain``'s COMPLAINT: the JSON itself, a file, or - for standard input."""
    if spec == "-":
        text = sys.stdin.read()
    elif spec.lstrip().startswith(("{", "[")):
        text = spec
    else:
        text = Path(spec).read_text(encoding="utf-8")
    return json.loads(text)


def cmd_explain(args: argparse.Namespace) -> int:
    from fenliu.authoring import explain
    from fenliu.domain.model import complaint_from_dict

    decider = _load(args.pack, sys.stderr)
    if decider is None:
        return 1
    unknown = explain.unknown_selection(decider.pack, args.rule, args.stage)
    if unknown is not None:
        print(f"fenliu explain: {unknown}", file=sys.stderr)
        return 2
    try:
        data = _read_complaint_arg(args.complaint)
    except (OSError, UnicodeDecodeError) as e:
        print(f"fenliu explain: {_unreadable(args.complaint, e)}", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        print("fenliu explain: " + _("not JSON: {reason}").format(reason=msg), file=sys.stderr)
        return 2
    shown = _shown_file(args.pack)
    texts = []
    for item in data if isinstance(data, list) else [data]:
        try:
            complaint = complaint_from_dict(item)
        except ComplaintError as e:
            for v in e.violations:
                print(f"fenliu explain: {v.field}: {v.description}", file=sys.stderr)
            return 2
        texts.append(
            explain.render(explain.explain(decider, complaint, rule=args.rule, stage=args.stage), shown)
        )
    print("\n\n".join(texts))
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from fenliu.authoring.replay import default_jobs

    return max(1, args.jobs) if args.jobs is not None else default_jobs()


def _eval_parallel(args: argparse.Namespace, decider: Decider) -> int | None:
    """``fenliu eval`` of a JSON Lines file on every core (fenliu.replay); None when the file is one
    JSON document or list, which is read whole."""
    from fenliu.authoring import replay
    from fenliu.authoring.diff import Progress

    path = Path(args.file)
    try:
        if not replay.is_json_lines(path):
            return None
        decider.close()
        show = Progress(replay.count_lines(path), sys.stderr, label="eval") if sys.stderr.isatty() else None
        bad = replay.eval_file(
            args.pack,
            path,
            sys.stdout,
            trace=args.trace,
            indent=2 if args.pretty else None,
            jobs=_jobs(args),
            progress=show,
        )
    except (OSError, UnicodeDecodeError) as e:
        print(f"fenliu eval: {_unreadable(args.file, e)}", file=sys.stderr)
        return 2
    return 1 if bad else 0  # 1: some complaints were refused (as `fenliu call`); 2: could not run


def cmd_lint(args: argparse.Namespace) -> int:
    from fenliu.authoring.lint import lint, render_findings

    decider = _load(args.pack, sys.stdout)
    if decider is None:
        return 1
    corpus: list[str] = []
    if args.corpus:
        from fenliu.authoring.train import read_labelled

        try:
            items = read_labelled(Path(args.corpus).read_text("utf-8").splitlines())
        except (OSError, ValueError) as e:
            print(f"fenliu: {e}", file=sys.stderr)
            return 2
        corpus = [x.title + "\n" + x.text for x in items]
    findings = lint(decider.pack, decider.compiled, corpus=corpus)
    print(render_findings(findings, lambda p: _display(p, args.pack), fmt=args.format))
    return 1 if any(f.severity == "error" for f in findings) else 0


def cmd_diff(args: argparse.Namespace) -> int:
    from fenliu.authoring.diff import main as diff_main

    return diff_main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from fenliu.cli.serve import run_serve

    return run_serve(args)


def cmd_status(args: argparse.Namespace) -> int:
    from fenliu.cli.serve import run_status

    return run_status(args)


def cmd_call(args: argparse.Namespace) -> int:
    from fenliu.cli.serve import run_call

    return run_call(args)


def _text_command(run: Callable[[], int], pack: str) -> int:
    try:
        return int(run())
    except PackError as e:
        for p in e.problems:
            print(_display(p, pack), file=sys.stderr)
        print(_("{n} error(s)").format(n=len(e.problems)), file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"fenliu: {e}", file=sys.stderr)
        return 2


def cmd_train(args: argparse.Namespace) -> int:
    from fenliu.authoring import train

    return _text_command(lambda: train.main(args.pack, args.corpus, args.out), args.pack)


def cmd_score(args: argparse.Namespace) -> int:
    from fenliu.authoring import score

    return _text_command(
        lambda: score.main(args.pack, args.corpus, split=args.split, as_json=args.json, jobs=_jobs(args)),
        args.pack,
    )


def cmd_verify(args: argparse.Namespace) -> int:
    """What a reload does, and the same verdict: load, check, lint errors, the pack's cases, its floors.
    With ``--against OLD`` (the pack serving now), the reload's warning too: the rules changed but the
    revision did not. A warning never changes the verdict."""
    for path in (args.pack, *([args.against] if args.against else [])):
        missing = missing_folder(path)
        if missing is not None:
            print(f"fenliu: {missing}", file=sys.stderr)
            return 2
    from fenliu.domain.model import PackId
    from fenliu.packs.load import load_pack, revision_kept
    from fenliu.serving.runtime import prepare

    against = None
    if args.against:
        try:
            against = load_pack(args.against)
        except PackError as e:
            print(f"fenliu verify: {args.against}: " + _("the pack does not load:"), file=sys.stderr)
            for p in e.problems:
                print(f"  {_display(p, args.against)}", file=sys.stderr)
            return 2
    decider, result = prepare(args.pack)
    kept = None
    if against is not None and result.pack is not None:
        kept = revision_kept(PackId(against.name, against.revision, against.digest), result.pack)
    warning = [_("warning: {warning}").format(warning=kept)] if kept else []
    if decider is None:
        for p in result.problems:
            print(_display(p, args.pack))
        for f in result.failures:
            print(f)
        for w in warning:
            print(w)
        n = len(result.problems) + len(result.failures)
        print(_("refused: the server would not load this pack ({n} problem(s))").format(n=n))
        return 1
    pack = decider.pack
    for w in warning:
        print(w)
    print(
        _(
            "ok: the server would load {name} {revision} ({digest}): {rules} rules, {cases} cases passed"
        ).format(
            name=pack.name,
            revision=pack.revision,
            digest=pack.digest,
            rules=len(pack.rules),
            cases=len(pack.cases),
        )
    )
    decider.close()
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    missing = missing_folder(args.pack)
    if missing is not None:
        print(f"fenliu: {missing}", file=sys.stderr)
        return 2
    from fenliu.authoring import fmt

    return fmt.run(Path(args.pack), sys.stdout, write=not args.check, shown=lambda p: os.path.relpath(p))


def cmd_report(args: argparse.Namespace) -> int:
    from fenliu.cli.report import cmd_report as report

    return report(args)


def cmd_store(args: argparse.Namespace) -> int:
    from fenliu.matter.cli import main as store_main

    return store_main(args)


def build_parser() -> argparse.ArgumentParser:
    from fenliu import __version__
    from fenliu.authoring.replay import add_jobs_argument

    parser = argparse.ArgumentParser(
        prog="fenliu", description=_("Rule-driven triage of citizen complaints.")
    )
    parser.add_argument("--version", action="version", version=f"fenliu {__version__}")
    parser.add_argument(
        "--lang",
        choices=["zh_CN", "zh", "en"],
        help=_("the language of messages (default: the locale's; zh_CN for Chinese locales, else en)"),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help=_("check a rule pack; print every error as file:line: rule-id: message"))
    p.add_argument("pack")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "verify", help=_("what a reload does: exit non-zero exactly when the server would refuse the pack")
    )
    p.add_argument("pack")
    p.add_argument(
        "--against",
        metavar="OLD",
        help=_("the pack serving now: warn when the rules changed but the revision did not"),
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "fmt",
        help=_("rewrite full-width punctuation where YAML needs ASCII, tabs, trailing spaces, GBK files"),
    )
    p.add_argument("pack")
    p.add_argument(
        "--check", action="store_true", help=_("change nothing; exit 1 when something would change")
    )
    p.set_defaults(func=cmd_fmt)

    p = sub.add_parser("test", help=_("run a pack's test cases and report coverage"))
    p.add_argument("pack")
    p.add_argument("--coverage", action="store_true", help=_("list every rule and table row no case reaches"))
    p.add_argument(
        "--fail-uncovered", action="store_true", help=_("exit non-zero when anything is uncovered")
    )
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("eval", help=_("decide complaints read as JSON or JSON Lines"))
    p.add_argument("pack")
    p.add_argument("file", nargs="?", help=_("a JSON / JSON Lines file, or - for standard input (default)"))
    p.add_argument("--trace", action="store_true", help=_("include the rule trace"))
    p.add_argument("--pretty", action="store_true", help=_("indent the JSON"))
    p.add_argument(
        "--explain", action="store_true", help=_("a table per decision: stage, rule, file:line, what it set")
    )
    add_jobs_argument(p, " for a JSON Lines file")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("explain", help=_("why each rule fired or did not, for a complaint"))
    p.add_argument("pack")
    p.add_argument(
        "complaint", help=_("the complaint: a JSON file, - for standard input, or the JSON itself")
    )
    p.add_argument("--rule", metavar="ID", help=_("only this rule"))
    p.add_argument("--stage", metavar="NAME", help=_("only the rules of this stage"))
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("lint", help=_("find conflicts, dead rules, gaps and other authoring mistakes"))
    p.add_argument("pack")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument(
        "--corpus", default="", help=_("complaints (JSON Lines): warn of lexicon terms most of them hold")
    )
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("diff", help=_("run two packs over a corpus and report what changes"))
    try:
        from fenliu.authoring.diff import add_arguments as diff_args

        diff_args(p)
    except ImportError:  # pragma: no cover
        pass
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("train", help=_("learn the pack's text model from labelled complaints (JSON Lines)"))
    p.add_argument("pack")
    p.add_argument("corpus", help=_("labelled complaints; only split=train lines when the corpus has splits"))
    p.add_argument("--out", default="", help=_("where to write the model (default: the pack's text.model)"))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "score", help=_("how well the lexicon, the model and both read categories from a corpus")
    )
    p.add_argument("pack")
    p.add_argument("corpus", help=_("labelled complaints (JSON Lines with a category)"))
    p.add_argument("--split", default="", help=_("only the lines with this split (e.g. test)"))
    p.add_argument("--json", action="store_true", help=_("JSON instead of Markdown tables"))
    add_jobs_argument(p, " for a JSON Lines file")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("serve", help=_("serve the gRPC API"))
    try:
        from fenliu.cli.serve import add_serve_arguments

        add_serve_arguments(p)
    except ImportError:  # pragma: no cover - the server module is optional at import time
        pass
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "call", help=_("call a running fenliu service with a complaint (JSON; a list goes over the stream)")
    )
    from fenliu.cli.serve import add_call_arguments

    add_call_arguments(p)
    p.set_defaults(func=cmd_call)

    p = sub.add_parser(
        "status", help=_("the pack a running service serves, and what happened at its last reload")
    )
    from fenliu.cli.serve import add_status_arguments

    add_status_arguments(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "report", help=_("a period's figures by township: resolved at the grassroots, satisfaction, overdue")
    )
    from fenliu.cli.report import add_arguments as report_args

    report_args(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("store", help=_("the matter store: migrate, purge, forget, link-eval"))
    from fenliu.matter.cli import add_arguments as store_args

    store_args(p)
    p.set_defaults(func=cmd_store)
    return parser


def _language(argv: list[str]) -> str | None:
    """``--lang X`` / ``--lang=X`` from the command line, read before the parser is built (its help texts
    are in that language)."""
    for i, a in enumerate(argv):
        if a == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--lang="):
            return a.split("=", 1)[1]
    return None


def use_language(argv: list[str]) -> str:
    """Choose the process's language (``--lang``, else the locale) for fenliu's messages and argparse's."""
    import gettext

    from fenliu import i18n

    lang = i18n.choose(_language(argv))
    # argparse's own words ("usage:", "the following arguments are required") come from the default
    # gettext domain and the locale variables: point both at fenliu's catalog and the chosen language.
    gettext.bindtextdomain(i18n.DOMAIN, str(i18n.LOCALE_DIR))
    gettext.textdomain(i18n.DOMAIN)
    os.environ["LANGUAGE"] = lang
    return lang


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    use_language(argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
