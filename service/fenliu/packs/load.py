"""Load a rule pack folder into checked, position-carrying objects.

A pack is a folder: ``pack.yaml`` (the manifest), rule files (``*.yaml``) holding ``rules`` and
``tables``, lexicon files (``*.yaml`` holding ``lexicon``: one category's vocabulary), test cases
(``*_test.yaml``), and optionally a text model (named by the manifest's ``text.model``). A pack may ``extends`` a base pack; its rules are then
added to the base's, may ``override`` a base rule of the same id, and its table rows update the base's.

:func:`load_pack` returns a :class:`Pack` or raises :class:`~fenliu.domain.errors.PackError` with *every*
problem found, each with file, line and rule id. Nothing here knows about the rule engine.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.resources
import io
import json
import os
import re
import stat
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import fastjsonschema
import jsonschema

from fenliu.domain import fields as F
from fenliu.domain.errors import PackError, Problem
from fenliu.domain.model import PackId
from fenliu.i18n import N_, _
from fenliu.packs import ime
from fenliu.packs._yaml import YamlProblem, YDict, YList, line_at, load_yaml
from fenliu.packs.types import (
    ALWAYS,
    NUMERIC_OPS,
    OPERATORS,
    All,
    AnyOf,
    Case,
    Cond,
    Keywords,
    LexiconEntry,
    Not,
    Pack,
    Pattern,
    Rule,
    Table,
    Test,
    TextSettings,
    Value,
    Yaml,
)

# ---------------------------------------------------------------------------------------------------
# Loading

_SCHEMAS: dict[str, dict[str, object]] = {}


def schema(name: str) -> dict[str, object]:
    """The JSON Schema ``manifest``, ``rules`` or ``cases`` (also usable by editors)."""
    if name not in _SCHEMAS:
        text = importlib.resources.files("fenliu").joinpath(f"schema/{name}.schema.json").read_text("utf-8")
        _SCHEMAS[name] = json.loads(text)
    return _SCHEMAS[name]


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return _("; did you mean '{word}'?").format(word=close[0]) if close else ""


def describe(ftype: F.FieldType) -> str:
    """What a value of ``ftype`` is, in the reader's language."""
    if ftype.kind == "enum":
        return _("one of {values}").format(values=", ".join(ftype.values))
    if ftype.kind == "code":
        return _("a code of table '{table}'").format(table=ftype.table)
    if ftype.kind == "codes":
        return _("a list of codes of table '{table}'").format(table=ftype.table)
    return _(_TYPE_WORDS.get(ftype.kind, ftype.kind))


_TYPE_WORDS: Final = {
    "int": N_("a whole number"),
    "number": N_("a number"),
    "bool": N_("true or false"),
    "text": N_("text"),
    "duration": N_("a duration such as 2h or 15d, or none"),
    "time": N_("a time"),
}


class _Collector:
    def __init__(self, limits: Limits | None = None) -> None:
        self.problems: list[Problem] = []
        self.limits = limits or LIMITS
        self.bytes_read = 0
        self.files_seen = 0

    def add(self, file: str, line: int, rule: str, code: str, message: str) -> None:
        self.problems.append(Problem(file, line, rule, code, _one_line(message)))


MAX_MESSAGE: Final = 300


def _one_line(message: str) -> str:
    """A message quotes at most one line of a pack file, and not much of it."""
    first, newline, _rest = message.partition("\n")
    if newline or len(first) > MAX_MESSAGE:
        return first[:MAX_MESSAGE] + " …"
    return first


def _unquoted(message: str, instance: object) -> str:
    """A schema message without a long quoted value (it may be a whole file read as one string)."""
    shown = repr(instance)
    if len(shown) <= 60 or shown not in message:
        return message
    if isinstance(instance, str):
        what = _("a text of {n} characters").format(n=len(instance))
    elif isinstance(instance, dict):
        what = _("a mapping of {n} keys").format(n=len(instance))
    elif isinstance(instance, list):
        what = _("a list of {n} items").format(n=len(instance))
    else:
        what = _("the value")
    return message.replace(shown, what)


_KINDS: Final = {
    "integer": N_("a whole number"),
    "number": N_("a number"),
    "string": N_("text"),
    "boolean": N_("true or false"),
    "array": N_("a list"),
    "object": N_("a mapping (key: value lines)"),
    "null": N_("empty"),
}


def _shown(v: object) -> str:
    if isinstance(v, dict):
        return _("a mapping")
    if isinstance(v, list):
        return _("a list")
    if v is None:
        return _("nothing")
    if isinstance(v, str) and ("\n" in v or len(v) > 30):
        return _("a text of {n} characters").format(n=len(v))  # never quote much of a file
    return repr(v)


def _in_plain_words(err: jsonschema.ValidationError) -> str:
    """A schema error as a rule author would say it: what the key must be, and what it is."""
    value: Any = err.validator_value
    if err.validator in ("oneOf", "anyOf") and err.context:
        deeper = jsonschema.exceptions.best_match(err.context)
        if deeper is not None and list(deeper.relative_path) == []:
            return _in_plain_words(deeper)
        kinds = sorted({str(e.validator_value) for e in err.context if e.validator == "type"})
        if kinds and all(k in _KINDS for k in kinds):
            wanted = _(" or ").join(_(_KINDS[k]) for k in kinds)
            return _("must be {wanted}, not {found}").format(wanted=wanted, found=_shown(err.instance))
    key = next((str(p) for p in reversed(err.absolute_path) if isinstance(p, str)), "")
    it = f"'{key}'" if key else _("this")
    if err.validator == "type":
        kinds = value if isinstance(value, list) else [value]
        wanted = _(" or ").join(_(_KINDS[str(k)]) if str(k) in _KINDS else str(k) for k in kinds)
        return _("{it} must be {wanted}, not {found}").format(
            it=it, wanted=wanted, found=_shown(err.instance)
        )
    if err.validator == "required":
        missing = [k for k in value if isinstance(err.instance, dict) and k not in err.instance]
        return _("'{key}:' is missing here").format(key=missing[0] if missing else value[0])
    if err.validator == "enum":
        choices = [str(c) for c in value if c not in (None, "")]
        return _("{it} must be one of {choices}, not {found}").format(
            it=it, choices=", ".join(choices), found=_shown(err.instance)
        ) + _suggest(str(err.instance), choices)
    if err.validator in ("minItems", "minLength", "minProperties") and value == 1:
        return _("{it} must not be empty").format(it=it)
    if err.validator == "minimum":
        return _("{it} must be at least {n}, not {found}").format(it=it, n=value, found=_shown(err.instance))
    if err.validator == "maximum":
        return _("{it} must be at most {n}, not {found}").format(it=it, n=value, found=_shown(err.instance))
    if err.validator == "pattern":
        return _("{it} does not have the form it needs ({found}; the form: {form})").format(
            it=it, found=_shown(err.instance), form=value
        )
    return str(err.message)


@functools.cache
def _fast_check(schema_name: str) -> Callable[[Any], Any]:
    """The schema compiled to Python by fastjsonschema (once per process): a valid document, the
    common case, is passed in a fraction of jsonschema's time; an invalid one is then read again by
    jsonschema, whose errors carry the path every message names (tests/test_schema_fast_path.py holds
    the two to the same verdict on every file of rules/ and on mutations of them)."""
    return fastjsonschema.compile(schema(schema_name))


def _validate_schema(doc: Yaml, schema_name: str, rel: str, out: _Collector) -> bool:
    try:
        _fast_check(schema_name)(doc)
    except fastjsonschema.JsonSchemaException:
        pass
    else:
        return True
    validator = jsonschema.Draft202012Validator(schema(schema_name))
    ok = True
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        ok = False
        path = list(err.absolute_path)
        line = line_at(doc, path)
        rule = ""
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int) and isinstance(doc, YDict):
            item = doc["rules"][path[1]]
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                rule = item["id"]
        where = ".".join(str(p) for p in path) or _("(top level)")
        msg = _unquoted(_in_plain_words(err), err.instance)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = list(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            for k in extra:
                k_line = err.instance.line_of(k) if isinstance(err.instance, YDict) else line
                unknown = _("unknown key '{key}'").format(key=k)
                out.add(rel, k_line, rule, "schema", f"{where}: {unknown}{_suggest(k, allowed)}")
            continue
        out.add(rel, line, rule, "schema", f"{where}: {msg}")
    return ok


def _read_yaml(data: bytes, rel: str, out: _Collector) -> Yaml:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        out.add(rel, data[: e.start].count(b"\n") + 1, "", "encoding", ime.encoding_advice(data))
        return None
    found = ime.slips(text)
    doc, problem = None, None
    try:
        doc = load_yaml(text)
    except YamlProblem as e:
        problem = e
    explained = problem is not None and any(s.line <= problem.line <= s.line + 2 for s in found)
    for s in found:
        # past a syntax error no slip explains, the scanner's reading of brackets may be off: say nothing
        if problem is None or explained or s.line <= problem.line:
            out.add(rel, s.line, "", "ime-punctuation", s.message())
    if problem is not None and not explained:  # else it is said once, by the slip
        out.add(rel, problem.line, "", problem.code, problem.message)
    return doc


@dataclass(frozen=True, slots=True)
class Limits:
    """What a pack may hold. Beyond these a pack is refused, before the file that crosses one is read.

    The nesting depth and the aliases of one file are limited by :mod:`fenliu.packs._yaml`.
    """

    file_bytes: int = 1 << 20  # one file (the reference pack's largest: 22 KB)
    total_bytes: int = 8 << 20  # every file of the pack and of the packs it extends
    files: int = 1_000
    model_bytes: int = 32 << 20  # the text model (the reference pack's: 1.4 MB), outside the total


LIMITS = Limits()


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root) + os.sep)


def _read_file(
    path: Path, root: Path, rel: str, out: _Collector, *, limit: int | None = None
) -> bytes | None:
    """The bytes of a pack file, or None with a problem: never a file outside ``root``, never too much.

    A symbolic link is followed only if it stays inside the pack folder (checked without opening the
    target); a FIFO, a device or a folder is refused without blocking; a file over the size limits is
    refused from its size and read no further than the limit.
    """
    target = os.path.realpath(path)
    if not _inside(target, root):
        out.add(rel, 0, "", "outside-pack", _("a symbolic link that leaves the pack folder; it is not read"))
        return None
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        out.add(
            rel,
            0,
            "",
            "unreadable",
            _("cannot read the file: {why}").format(why=e.strerror or type(e).__name__),
        )
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            out.add(rel, 0, "", "not-a-file", _("not a regular file; it is not read"))
            return None
        if limit is not None:  # a file with a limit of its own (the text model), not in the total
            if st.st_size > limit:
                out.add(
                    rel,
                    0,
                    "",
                    "too-large",
                    _("the file exceeds {size} (the limit for a model file)").format(size=_mib(limit)),
                )
                return None
            data = f.read(limit + 1)
            if len(data) > limit:
                out.add(
                    rel,
                    0,
                    "",
                    "too-large",
                    _("the file exceeds {size} (the limit for a model file)").format(size=_mib(limit)),
                )
                return None
            return data
        if out.bytes_read > out.limits.total_bytes:  # already over the total: said once
            return None
        budget = min(out.limits.file_bytes, out.limits.total_bytes - out.bytes_read)
        if st.st_size > budget:
            _over_limit(f, rel, out, budget)
            return None
        data = f.read(budget + 1)  # no further than the limit, even if the file grows
    if len(data) > budget:
        _over_limit(io.BytesIO(data), rel, out, budget)
        return None
    out.bytes_read += len(data)
    return data


def _over_limit(f: BinaryIO, rel: str, out: _Collector, budget: int) -> None:
    """Refuse a file that is over a size limit, at the line where it crosses it (read up to there only)."""
    head = f.read(min(budget, out.limits.file_bytes) + 1)
    line = head.count(b"\n") + 1 if head else 0
    if budget < out.limits.file_bytes:
        msg = _("the pack's files exceed {size} in all (the limit)").format(size=_mib(out.limits.total_bytes))
    else:
        msg = _("the file exceeds {size} (the limit for one file)").format(size=_mib(out.limits.file_bytes))
    out.add(rel, line, "", "too-large", msg)
    if budget < out.limits.file_bytes:
        out.bytes_read = out.limits.total_bytes + 1  # nothing more is read


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


@dataclass(slots=True)
class _Layer:
    name: str
    root: Path
    manifest: YDict
    files: list[tuple[str, YDict]]  # (relative name, parsed doc) of rule files
    case_files: list[tuple[str, YDict]]
    digest_parts: list[bytes]
    file_lines: dict[str, int]
    manifest_rel: str
    sources: dict[str, str] = field(default_factory=dict)  # relative file -> "<pack>/<file in pack>"
    read: list[tuple[str, bytes]] = field(default_factory=list)  # (absolute path, bytes) of each file
    lexicon_files: list[tuple[str, YDict]] = field(default_factory=list)


def _pack_files(root: Path, rel_root: Path, out: _Collector) -> list[Path]:
    """The pack's ``*.yaml`` files in the order of their paths; folders are walked without following links.

    A linked folder that leaves the pack is a problem; one that stays inside adds nothing (its files are
    read where they lie).
    """
    files: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = Path(folder)
        for d in sorted(dirs):
            full = base / d
            if full.is_symlink() and not _inside(os.path.realpath(full), root):
                out.add(
                    str(rel_root / full.relative_to(root)),
                    0,
                    "",
                    "outside-pack",
                    _("a symbolic link that leaves the pack folder; it is not read"),
                )
        files.extend(base / n for n in names if n.endswith((".yaml", ".yml")))
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    if len(files) + out.files_seen > out.limits.files:
        out.add(
            str(rel_root),
            0,
            "",
            "too-many-files",
            _("the pack has more than {n} .yaml files (the limit); none is read").format(n=out.limits.files),
        )
        return []
    out.files_seen += len(files)
    return files


def _load_layers(root: Path, out: _Collector, seen: tuple[Path, ...], base_rel: Path) -> list[_Layer]:
    root = root.resolve()
    rel_root = Path(_relpath(root, base_rel))
    if root in seen:
        chain = " -> ".join(_relpath(p, base_rel) for p in (*seen, root))
        out.add(
            str(rel_root / "pack.yaml"),
            1,
            "",
            "extends-cycle",
            _("packs extend each other in a cycle: {chain}").format(chain=chain),
        )
        return []
    manifest_path = root / "pack.yaml"
    mrel = str(rel_root / "pack.yaml")
    if not manifest_path.is_file() and not manifest_path.is_symlink():
        out.add(
            mrel, 0, "", "no-manifest", _("a pack folder needs a pack.yaml (name, revision, description)")
        )
        return []
    manifest_data = _read_file(manifest_path, root, mrel, out)
    if manifest_data is None:
        return []
    manifest = _read_yaml(manifest_data, mrel, out)
    if manifest is None or not _validate_schema(manifest, "manifest", mrel, out):
        return []
    if not isinstance(manifest, YDict):  # the schema has checked it is a mapping
        return []
    layers: list[_Layer] = []
    if "extends" in manifest:
        base = (root / manifest["extends"]).resolve()
        if not (base / "pack.yaml").is_file() and base not in seen and base != root:
            out.add(
                mrel,
                manifest.line_of("extends"),
                "",
                "extends-missing",
                _("extends '{path}': no pack.yaml there").format(path=manifest["extends"]),
            )
            return []
        layers = _load_layers(base, out, (*seen, root), base_rel)
        if not layers:
            return []
    parts: list[bytes] = []
    files: list[tuple[str, YDict]] = []
    cases: list[tuple[str, YDict]] = []
    lexicon: list[tuple[str, YDict]] = []
    lines: dict[str, int] = {}
    sources: dict[str, str] = {}
    read: list[tuple[str, bytes]] = []
    for p in _pack_files(root, rel_root, out):
        rel = str(rel_root / p.relative_to(root))
        data = manifest_data if p == manifest_path else _read_file(p, root, rel, out)
        if data is None:
            continue
        # The digest names files by pack name and place in the pack, never by where the pack lies.
        parts.append(f"{manifest['name']}/{p.relative_to(root).as_posix()}".encode() + b"\0" + data + b"\0")
        lines[rel] = data.count(b"\n") + 1
        read.append((str(p), data))
        sources[rel] = f"{manifest['name']}/{p.relative_to(root).as_posix()}"
        if p.name == "pack.yaml":
            if p.parent != root:
                out.add(
                    rel,
                    1,
                    "",
                    "nested-pack",
                    _("a pack.yaml below the pack folder; packs do not nest (use extends)"),
                )
            continue
        doc = _read_yaml(data, rel, out)
        if doc is None:
            continue
        if p.stem.endswith("_test"):
            if _validate_schema(doc, "cases", rel, out) and isinstance(doc, YDict):  # (the schema's object)
                cases.append((rel, doc))
        elif isinstance(doc, YDict) and "lexicon" in doc:
            if _validate_schema(doc, "lexicon", rel, out):
                lexicon.append((rel, doc))
        elif _validate_schema(doc, "rules", rel, out) and isinstance(doc, YDict):
            files.append((rel, doc))
    text = manifest.get("text")
    if isinstance(text, dict) and isinstance(text.get("model"), str):
        # The model is part of the pack: its bytes are in the digest and in the sealed copy (a missing
        # one is refused later, with the file named, when the pack is prepared).
        mp = root / text["model"]
        if os.path.lexists(mp):
            mrel_model = str(rel_root / Path(text["model"]))
            model_data = _read_file(mp, root, mrel_model, out, limit=out.limits.model_bytes)
            if model_data is not None:
                name = f"{manifest['name']}/{Path(text['model']).as_posix()}"
                parts.append(name.encode() + b"\0" + model_data + b"\0")
                read.append((str(mp), model_data))
    layers.append(
        _Layer(
            str(manifest["name"]), root, manifest, files, cases, parts, lines, mrel, sources, read, lexicon
        )
    )
    return layers


def _relpath(p: Path, base: Path) -> str:
    """``p`` relative to ``base`` (with ``..`` where needed), so names do not depend on the checkout."""
    return Path(os.path.relpath(p, base)).as_posix()


def revision_kept(old: PackId, new: PackId) -> str | None:
    """The warning when ``new`` is ``old`` with other rules under the same name and revision (a decision
    names its pack by revision, so two packs with one revision make decisions no one can trace back to
    their rules); ``None`` otherwise. The reload, ``fenliu diff`` and ``fenliu verify --against`` say it.
    """
    if old.name != new.name or old.revision != new.revision or old.digest == new.digest:
        return None
    return _(
        "the rules changed but the revision stayed {revision}: give the pack a new revision (pack.yaml), "
        "so that each decision names the rules that made it [revision-kept]"
    ).format(revision=new.revision)


def load_pack(path: str | Path, *, limits: Limits | None = None) -> Pack:
    """Load, merge and check a pack. Raises :class:`PackError` listing every problem."""
    root = Path(path)
    out = _Collector(limits)
    if not root.is_dir():
        raise PackError([Problem(str(path), 0, "", "no-pack", _("not a folder"))])
    base_rel = root.resolve().parent
    layers = _load_layers(root, out, (), base_rel)
    if not layers:
        raise PackError(out.problems)
    if out.problems:
        raise PackError(out.problems + _errors_of_the_other_files(layers, out))
    pack = _assemble(layers, out)
    if out.problems:
        raise PackError(out.problems)
    assert pack is not None
    return pack


#: Problems about a reference to what another file declares: when some file could not be read, they
#: may only say that it could not (its tables, rules or categories are missing), so they wait for it.
_CROSS_FILE: Final = frozenset(
    {
        "missing-table",
        "missing-column",
        "bad-lookup",
        "bad-table-field",
        "unknown-rule",
        "unknown-value",
        "override-missing",
        "remove-missing",
        "lexicon-category",
        "default-category",
        "duplicate-rule",
        "duplicate-table",
        "duplicate-case",
    }
)


#: Problems that leave files unread (a limit, a link out of the pack, a device): no second pass then.
_UNREAD: Final = frozenset({"too-large", "too-many-files", "unreadable", "outside-pack", "not-a-file"})


def _errors_of_the_other_files(layers: list[_Layer], out: _Collector) -> list[Problem]:
    """With some files refused (syntax, schema), the errors of the files that were read, so one run
    names every file's errors; those that may stem from the refused files are left for the next run."""
    if any(p.code in _UNREAD for p in out.problems):
        return []  # files past a limit were not read at all: what the others lack says nothing
    refused = {p.file for p in out.problems}
    other = _Collector(out.limits)
    try:
        _assemble(layers, other)
    except Exception:
        return []
    # a refused test file declares nothing others refer to: then every reference can still be checked
    declaring = any(not f.endswith("_test.yaml") for f in refused)
    return [p for p in other.problems if p.file not in refused and not (declaring and p.code in _CROSS_FILE)]


# ---------------------------------------------------------------------------------------------------
# Assembling layers


def _assemble(layers: list[_Layer], out: _Collector) -> Pack | None:
    top = layers[-1]
    manifest = top.manifest
    stages: tuple[str, ...] = F.DEFAULT_STAGES
    for layer in layers:
        if "stages" in layer.manifest:
            stages = tuple(layer.manifest["stages"])
    defaults: dict[str, object] = dict(F.BUILTIN_DEFAULTS)
    defaults_lines: dict[str, tuple[str, int]] = {}
    for layer in layers:
        d = layer.manifest.get("defaults")
        if isinstance(d, YDict):
            for k, v in d.items():
                defaults_lines[k] = (layer.manifest_rel, d.line_of(k))
                defaults[k] = v

    # Tables: base rows first; an extending layer updates given columns of a row or adds rows.
    tables: dict[str, Table] = {}
    defined: dict[tuple[str, str], str] = {}  # (layer, table) -> file
    for layer in layers:
        for rel, doc in layer.files:
            for tname, tdoc in (doc.get("tables") or {}).items():
                trows = tdoc["rows"]
                if (layer.name, tname) in defined:
                    out.add(
                        rel,
                        tdoc.line,
                        "",
                        "duplicate-table",
                        _("table '{table}' is already defined in {file}").format(
                            table=tname, file=defined[(layer.name, tname)]
                        ),
                    )
                    continue
                defined[(layer.name, tname)] = rel
                if tname in tables:
                    t = tables[tname]
                    if t.key != tdoc["key"]:
                        out.add(
                            rel,
                            tdoc.line_of("key"),
                            "",
                            "table-key",
                            _("table '{table}' is keyed by '{key}' in {file}, not '{other}'").format(
                                table=tname, key=t.key, file=t.file, other=tdoc["key"]
                            ),
                        )
                        continue
                else:
                    t = Table(
                        tname, str(tdoc["key"]), {}, rel, tdoc.line, {}, {}, str(tdoc.get("description", ""))
                    )
                    tables[tname] = t
                for row_key, row in trows.items():
                    row_key = str(row_key)
                    merged = dict(t.rows.get(row_key, {}))
                    merged.update(row)
                    t.rows[row_key] = merged
                    t.row_lines[row_key] = (rel, trows.line_of(row_key))
                    t.row_layers[row_key] = layer.name

    _check_tables(tables, out, top.manifest_rel)

    # Rules: base layers first; an extending layer adds, overrides (override: true) or removes.
    rules: dict[str, tuple[YDict, str, str]] = {}
    duplicates: list[tuple[YDict, str, str]] = []  # still checked, so every error shows at once
    removed: set[str] = set()
    order: list[str] = []
    for li, layer in enumerate(layers):
        for rel, doc in layer.files:
            removals = doc.get("remove_rules") or []
            for ri, rid in enumerate(removals):
                if rid in rules and li > 0:
                    del rules[rid]
                    order.remove(rid)
                    removed.add(rid)
                else:
                    out.add(
                        rel,
                        removals.line_of(ri) if isinstance(removals, YList) else doc.line_of("remove_rules"),
                        rid,
                        "remove-missing",
                        _("remove_rules names '{rule}', which no base pack defines").format(rule=rid)
                        + _suggest(rid, rules),
                    )
            for i, rdoc in enumerate(doc.get("rules") or []):
                rid = rdoc["id"]
                line = doc["rules"].line_of(i)
                if rdoc.get("override"):
                    if li == 0 or rid not in rules or rules[rid][2] == layer.name:
                        out.add(
                            rel,
                            line,
                            rid,
                            "override-missing",
                            _("override of rule '{rule}', which no base pack defines").format(rule=rid)
                            + _suggest(rid, rules),
                        )
                        continue
                    rules[rid] = (rdoc, rel, layer.name)
                    continue
                if rid in rules:
                    prev = rules[rid]
                    where = f"{prev[1]}:{prev[0].line}"
                    hint = _(" (to replace a base rule, add override: true)") if prev[2] != layer.name else ""
                    msg = _("rule id '{rule}' is already used at {where}").format(rule=rid, where=where)
                    out.add(rel, line, rid, "duplicate-rule", msg + hint)
                    duplicates.append((rdoc, rel, layer.name))
                    continue
                rules[rid] = (rdoc, rel, layer.name)
                order.append(rid)

    checker = _RuleChecker(tables, stages, out)
    source_of = {rel: src for layer in layers for rel, src in layer.sources.items()}
    built: list[Rule] = []
    for n, rid in enumerate(order):
        rdoc, rel, lname = rules[rid]
        r = checker.rule(rdoc, rel, lname, n, source_of.get(rel, rel))
        if r is not None:
            built.append(r)
    for rdoc, rel, lname in duplicates:
        checker.rule(rdoc, rel, lname, -1, rel)

    for k, v in defaults.items():
        rel, line = defaults_lines.get(k, (top.manifest_rel, 0))
        if k not in F.DECISION_FIELDS:
            out.add(
                rel,
                line,
                "",
                "unknown-field",
                _("defaults: '{field}' is not a decision field").format(field=k)
                + _suggest(k, F.DECISION_FIELDS),
            )
            continue
        ok, why, _unknown = checker.fits(F.DECISION_FIELDS[k], v, allow_empty=True)
        if not ok:
            out.add(rel, line, "", "type-mismatch", f"defaults: {k}: {why}")
    if "categories" in tables and defaults.get("category") not in tables["categories"].rows:
        out.add(
            top.manifest_rel,
            0,
            "",
            "default-category",
            _("the default category '{category}' is not a row of table categories").format(
                category=defaults.get("category")
            ),
        )

    cases: list[Case] = []
    for rel, doc in top.case_files:
        names: set[str] = set()
        for i, c in enumerate(doc["cases"]):
            line = doc["cases"].line_of(i)
            if c["name"] in names:
                out.add(
                    rel,
                    line,
                    "",
                    "duplicate-case",
                    _("case name '{case}' is used twice in this file").format(case=c["name"]),
                )
            names.add(c["name"])
            _check_case_codes(c, rel, checker, out)
            cases.append(
                Case(
                    str(c["name"]),
                    _plain_map(c["complaint"]),
                    _plain_map(c["expect"]),
                    tuple(c.get("fired") or ()),
                    tuple(c.get("not_fired") or ()),
                    rel,
                    line,
                )
            )
    known = {r.id for r in built} | set(rules) | removed
    for c in cases:
        for rid in (*c.fired, *c.not_fired):
            if rid not in known:
                out.add(
                    c.file,
                    c.line,
                    rid,
                    "unknown-rule",
                    _("case '{case}' names rule '{rule}', which does not exist").format(case=c.name, rule=rid)
                    + _suggest(rid, known),
                )

    lexicon = _lexicon(layers, tables, out)
    text = _text_settings(layers, out)

    digest = hashlib.sha256()
    file_lines: dict[str, int] = {}
    for layer in layers:
        for part in layer.digest_parts:
            digest.update(part)
        file_lines.update(layer.file_lines)
    return Pack(
        name=str(manifest["name"]),
        revision=str(manifest["revision"]),
        description=str(manifest.get("description", "")),
        root=top.root,
        stages=stages,
        defaults=defaults,
        rules=tuple(built),
        tables=tables,
        cases=tuple(cases),
        layers=tuple(layer.name for layer in layers),
        digest=digest.hexdigest()[:12],
        explained_warnings=tuple(_texts(w) for w in manifest.get("explained_warnings") or ()),
        files=file_lines,
        sources=tuple(item for layer in layers for item in layer.read),
        lexicon=lexicon,
        text=text,
    )


def _check_case_codes(c: YDict, rel: str, checker: _RuleChecker, out: _Collector) -> None:
    """The codes a case gives or expects (category, departments …) are rows of the pack's tables."""
    for part, table in (("complaint", F.COMPLAINT_FIELDS), ("expect", F.DECISION_FIELDS)):
        doc = c[part]
        for key, v in doc.items():
            ftype = table.get(key)
            if ftype is None or ftype.kind not in ("code", "codes") or v is None or key == "category_hint":
                continue
            ok, why, _unknown = checker.fits(ftype, v, allow_empty=True)
            if not ok:
                line = doc.line_of(key) if isinstance(doc, YDict) else c.line
                where = _("case '{case}'").format(case=c["name"])
                out.add(rel, line, "", "unknown-value", f"{where}: {part}.{key}: {why}")


def _lexicon(layers: list[_Layer], tables: dict[str, Table], out: _Collector) -> tuple[LexiconEntry, ...]:
    """Every layer's lexicon files; an extending layer's file for a category replaces the base's."""
    cats = tables["categories"].rows if "categories" in tables else {}
    by_category: dict[str, list[LexiconEntry]] = {}
    where: dict[tuple[str, str], str] = {}  # (layer, category) -> file
    for layer in layers:
        for rel, doc in layer.lexicon_files:
            lex = doc["lexicon"]
            cat = str(lex["category"])
            if cats and cat not in cats:
                out.add(
                    rel,
                    lex.line_of("category"),
                    "",
                    "lexicon-category",
                    _("lexicon of '{category}', which is not a category").format(category=cat)
                    + _suggest(cat, cats),
                )
                continue
            if (layer.name, cat) in where:
                out.add(
                    rel,
                    lex.line,
                    "",
                    "lexicon-duplicate",
                    _("the lexicon of '{category}' is already in {file}").format(
                        category=cat, file=where[(layer.name, cat)]
                    ),
                )
                continue
            where[(layer.name, cat)] = rel
            src = layer.sources.get(rel, rel)
            entries: list[LexiconEntry] = []
            for kind, key in (("term", "terms"), ("together", "together"), ("against", "against")):
                items = lex.get(key) or []
                for i, item in enumerate(items):
                    line = items.line_of(i) if isinstance(items, YList) else lex.line
                    raw = [item["term"]] if kind != "together" else list(item["words"])
                    words = tuple(str(w).strip() for w in raw)
                    if any(not w for w in words):
                        out.add(
                            rel,
                            line,
                            "",
                            "lexicon-empty",
                            _("{key}[{i}]: an empty word matches everything").format(key=key, i=i),
                        )
                        continue
                    entries.append(
                        LexiconEntry(cat, kind, words, float(item["weight"]), rel, line, f"{src}:{line}")
                    )
            by_category[cat] = entries
    return tuple(e for entries in by_category.values() for e in entries)


def _text_settings(layers: list[_Layer], out: _Collector) -> TextSettings:
    """The last layer's ``text`` settings that give any; the model file is the layer's own."""
    for layer in reversed(layers):
        t = layer.manifest.get("text")
        if not isinstance(t, YDict):
            continue
        model = str(t.get("model", ""))
        base = TextSettings()
        return TextSettings(
            threshold=float(t.get("threshold", base.threshold)),
            margin=float(t.get("margin", base.margin)),
            model=model,
            model_confidence=float(t.get("model_confidence", base.model_confidence)),
            floors=_plain_map(t.get("floors") or {}),
            file=layer.manifest_rel,
            line=t.line,
            model_file=str(Path(layer.manifest_rel).parent / model) if model else "",
            model_path=(layer.root / model) if model else None,
            layer=layer.name,
            root=layer.root,
        )
    return TextSettings()


def _plain(v: Yaml) -> Yaml:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _plain_map(v: Yaml) -> dict[str, Yaml]:
    """A mapping the schema has checked, as plain dicts and lists."""
    assert isinstance(v, dict)
    return {str(k): _plain(x) for k, x in v.items()}


def _texts(v: Yaml) -> dict[str, str]:
    """A mapping of texts the schema has checked (an explained warning)."""
    assert isinstance(v, dict)
    return {str(k): str(x) for k, x in v.items()}


_COLUMN_WORDS: Final = {"owner": N_("owner department"), "entry_stage": N_("entry stage")}


def _check_tables(tables: dict[str, Table], out: _Collector, manifest: str) -> None:
    for tname in F.REQUIRED_TABLES:
        if tname not in tables:
            out.add(
                manifest,
                0,
                "",
                "missing-table",
                _("the pack has no table '{table}' (required)").format(table=tname),
            )
    depts = tables["departments"].rows if "departments" in tables else {}
    checker = _RuleChecker(tables, (), out)
    for tname, cols in F.REQUIRED_TABLES.items():
        t = tables.get(tname)
        if t is None:
            continue
        for row_key, row in t.rows.items():
            rel, line = t.row_lines[row_key]
            for col, ftype in cols.items():
                if col not in row:
                    what = _(_COLUMN_WORDS.get(col, N_("value")))
                    out.add(
                        rel,
                        line,
                        row_key,
                        "missing-column",
                        _("{table} row '{row}' has no {what} (column '{column}')").format(
                            table=tname, row=row_key, what=what, column=col
                        ),
                    )
                    continue
                ok, why, _unknown = checker.fits(ftype, row[col])
                if not ok:
                    out.add(
                        rel,
                        line,
                        row_key,
                        "type-mismatch",
                        _("{table} row '{row}'").format(table=tname, row=row_key) + f": {col}: {why}",
                    )
    if "categories" in tables:
        t = tables["categories"]
        for row_key, row in t.rows.items():
            rel, line = t.row_lines[row_key]
            for d in row.get("co_departments") or []:
                if d not in depts:
                    out.add(
                        rel,
                        line,
                        row_key,
                        "unknown-value",
                        _("categories row '{row}': co_departments: '{value}' is not a department").format(
                            row=row_key, value=d
                        )
                        + _suggest(str(d), depts),
                    )
    for t in tables.values():
        for row_key, row in t.rows.items():
            for col, v in row.items():
                is_duration = isinstance(v, str) and v[-1:] in ("h", "d") and v[:-1].isdigit()
                if not ((col.endswith("_within") or t.name == "deadlines") and is_duration):
                    continue
                hours = F.parse_duration(v)
                if hours is not None and hours > 60 * 24:
                    rel, line = t.row_lines[row_key]
                    out.add(
                        rel,
                        line,
                        row_key,
                        "deadline-too-long",
                        _("{table} row '{row}': {column} {value} exceeds the statutory 60 days").format(
                            table=t.name, row=row_key, column=col, value=v
                        ),
                    )


_PLACEHOLDERS = (
    "category",
    "owner_department",
    "referred_to",
    "exclusion",
    "tier",
    "stage",
    "color",
    "approach",
)


class _RuleChecker:
    """Checks one rule against the fields, types and tables it names, and builds its objects."""

    def __init__(self, tables: dict[str, Table], stages: tuple[str, ...], out: _Collector) -> None:
        self.tables = tables
        self.stages = stages
        self.out = out
        self.file = ""
        self.rule_id = ""

    def err(self, line: int, code: str, msg: str) -> None:
        self.out.add(self.file, line, self.rule_id, code, msg)

    # -- types ----------------------------------------------------------------------------------------
    def fits(self, ftype: F.FieldType, v: Any, *, allow_empty: bool = False) -> tuple[bool, str, bool]:
        """Whether ``v`` is a value of ``ftype``; if not, why, and whether it is an unknown code or value
        (rather than a value of the wrong type)."""
        k = ftype.kind
        if k == "bool":
            return (isinstance(v, bool), _("must be true or false, not {value!r}").format(value=v), False)
        if k in ("int", "number"):
            okn = isinstance(v, int | float) and not isinstance(v, bool)
            if okn and k == "int" and isinstance(v, float) and not v.is_integer():
                return (False, _("must be a whole number, not {value!r}").format(value=v), False)
            if isinstance(v, str):
                return (okn, _("is a number; {value!r} is text").format(value=v), False)
            return (okn, _("is a number; {value!r} is {kind}").format(value=v, kind=type(v).__name__), False)
        if k == "text":
            return (isinstance(v, str), _("is text; {value!r} is not (quote it)").format(value=v), False)
        if k == "enum":
            if not isinstance(v, str):
                return (
                    False,
                    _("must be {kind}, not {value!r}").format(kind=describe(ftype), value=v),
                    False,
                )
            if v not in ftype.values and not (allow_empty and v == ""):
                why = _("'{value}' is not {kind}").format(value=v, kind=describe(ftype))
                return (False, why + _suggest(v, ftype.values), False)
            return (True, "", False)
        if k == "code":
            rows = self.tables[ftype.table].rows if ftype.table in self.tables else {}
            if not isinstance(v, str):
                return (
                    False,
                    _("must be {kind}, not {value!r}").format(kind=describe(ftype), value=v),
                    False,
                )
            if v == "" and allow_empty:
                return (True, "", False)
            if rows and v not in rows:
                why = _("'{value}' is not {kind}").format(value=v, kind=describe(ftype))
                return (False, why + _suggest(v, rows), True)
            return (True, "", False)
        if k == "codes":
            if not isinstance(v, list | tuple):
                return (False, _("must be {kind}").format(kind=describe(ftype)), False)
            for x in v:
                ok, why, unknown = self.fits(F.FieldType("code", table=ftype.table), x)
                if not ok:
                    return (False, why, unknown)
            return (True, "", False)
        if k == "duration":
            try:
                hours = F.parse_duration(v)
            except ValueError:
                return (False, _("a duration is written like 2h or 15d, or none"), False)
            if hours is not None and hours > 60 * 24:
                return (False, _("{value} exceeds the statutory 60 days").format(value=v), False)
            return (True, "", False)
        return (False, _("unknown type {kind}").format(kind=k), False)

    def field_type(self, name: str, line: int) -> F.FieldType | None:
        if name in F.COMPLAINT_FIELDS:
            return F.COMPLAINT_FIELDS[name]
        if name in F.DECISION_FIELDS:
            if F.DECISION_FIELDS[name].kind == "codes":
                self.err(
                    line,
                    "untestable-field",
                    _("'{field}' is a list and cannot be tested in when").format(field=name),
                )
                return None
            if F.DECISION_FIELDS[name].kind == "duration":
                self.err(
                    line,
                    "untestable-field",
                    _("'{field}' is a deadline duration and cannot be tested in when").format(field=name),
                )
                return None
            return F.DECISION_FIELDS[name]
        if name in ("title", "text"):
            self.err(
                line,
                "text-field",
                _("'{field}' is tested with keywords: or pattern:, not compared").format(field=name),
            )
            return None
        if "." in name and name.split(".", 1)[0] in self.tables:
            tname, col = name.split(".", 1)
            t = self.tables[tname]
            if t.key not in F.DECISION_FIELDS:
                self.err(
                    line,
                    "bad-table-field",
                    _(
                        "table '{table}' is keyed by '{key}', not a decision field; its columns cannot be tested"
                    ).format(table=tname, key=t.key),
                )
                return None
            values = [row[col] for row in t.rows.values() if col in row]
            if not values:
                cols = {c for row in t.rows.values() for c in row}
                self.err(
                    line,
                    "unknown-field",
                    _("table '{table}' has no column '{column}'").format(table=tname, column=col)
                    + _suggest(col, cols),
                )
                return None
            if all(isinstance(x, bool) for x in values):
                return F.FieldType("bool")
            if all(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
                return F.FieldType("number")
            if all(isinstance(x, str) for x in values):
                return F.FieldType("text")
            self.err(
                line,
                "untestable-field",
                _("column '{column}' mixes types or holds lists; it cannot be tested").format(column=name),
            )
            return None
        known = [*F.COMPLAINT_FIELDS, *F.DECISION_FIELDS]
        self.err(
            line, "unknown-field", _("unknown field '{field}'").format(field=name) + _suggest(name, known)
        )
        return None

    # -- conditions -----------------------------------------------------------------------------------
    def cond(self, node: Any, line: int) -> Cond | None:
        if not isinstance(node, dict):
            self.err(
                line,
                "schema",
                _("a condition is a mapping (field: value, all:, any:, not:, keywords:, pattern:)"),
            )
            return None
        items: list[Cond] = []
        ok = True
        for key, val in node.items():
            kline = node.line_of(key) if isinstance(node, YDict) else line
            c: Cond | None
            if key in ("all", "any"):
                subs = [
                    self.cond(x, val.line_of(i) if isinstance(val, YList) else kline)
                    for i, x in enumerate(val)
                ]
                if any(s is None for s in subs):
                    ok = False
                    continue
                kids = tuple(s for s in subs if s is not None)
                c = All(kids, kline) if key == "all" else AnyOf(kids, kline)
            elif key == "not":
                sub = self.cond(val, kline)
                c = Not(sub, kline) if sub is not None else None
            elif key == "keywords":
                words = tuple(str(w).strip() for w in val)
                if any(not w for w in words):
                    self.err(kline, "empty-keyword", _("a keyword is empty"))
                    ok = False
                    continue
                dup = sorted({w for w in words if words.count(w) > 1})
                if dup:
                    self.err(
                        kline,
                        "duplicate-keyword",
                        _("keyword listed twice: {words}").format(words=", ".join(dup)),
                    )
                c = Keywords(words, kline)
            elif key == "pattern":
                try:
                    re.compile(val)
                except re.error as e:
                    self.err(
                        kline,
                        "bad-regex",
                        _("pattern is not a valid regular expression: {why}").format(why=e),
                    )
                    ok = False
                    continue
                c = Pattern(val, kline)
            else:
                c = self.field_test(key, val, kline)
            if c is None:
                ok = False
            else:
                items.append(c)
        if not ok:
            return None
        return items[0] if len(items) == 1 else All(tuple(items), line)

    def field_test(self, name: str, val: Any, line: int) -> Cond | None:
        if name.startswith("$"):
            self.err(
                line,
                "bad-operator",
                _(
                    "'{name}' is an engine operator; write field: {{op: value}} with op one of {operators}"
                ).format(name=name, operators=", ".join(OPERATORS)),
            )
            return None
        ftype = self.field_type(name, line)
        if ftype is None:
            return None
        if not isinstance(val, dict):
            if isinstance(val, list):
                self.err(
                    line, "bad-operator", f"{name}: " + _("a list needs an operator: {{in: [...]}}").format()
                )
                return None
            return self._leaf(name, ftype, "eq", val, line)
        tests: list[Cond] = []
        for op, v in val.items():
            oline = val.line_of(op) if isinstance(val, YDict) else line
            if op not in OPERATORS:
                self.err(
                    oline,
                    "bad-operator",
                    f"{name}: "
                    + _("unknown operator '{op}'").format(op=op)
                    + _suggest(op.lstrip("$"), OPERATORS)
                    + _(" (operators: {operators})").format(operators=", ".join(OPERATORS)),
                )
                return None
            if op == "between":
                if not (isinstance(v, list) and len(v) == 2):
                    self.err(oline, "bad-operator", f"{name}: " + _("between takes [low, high]"))
                    return None
                lo, hi = v
                a = self._leaf(name, ftype, "gte", lo, oline)
                b = self._leaf(name, ftype, "lte", hi, oline)
                if a is None or b is None:
                    return None
                if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
                    self.err(
                        oline,
                        "empty-range",
                        f"{name}: " + _("between [{low}, {high}] is empty").format(low=lo, high=hi),
                    )
                    return None
                tests += [a, b]
                continue
            t = self._leaf(name, ftype, op, v, oline)
            if t is None:
                return None
            tests.append(t)
        return tests[0] if len(tests) == 1 else All(tuple(tests), line)

    def _leaf(self, name: str, ftype: F.FieldType, op: str, v: Any, line: int) -> Test | None:
        if op in NUMERIC_OPS and not ftype.numeric:
            self.err(
                line,
                "type-mismatch",
                _("{field} is {kind}; '{op}' compares numbers").format(
                    field=name, kind=describe(ftype), op=op
                ),
            )
            return None
        if op in ("in", "not_in"):
            if not isinstance(v, list):
                self.err(line, "bad-operator", f"{name}: " + _("{op} takes a list").format(op=op))
                return None
            for x in v:
                ok, why, unknown = self.fits(ftype, x, allow_empty=True)
                if not ok:
                    self.err(line, "unknown-value" if unknown else "type-mismatch", f"{name}: {why}")
                    return None
            if len(v) > 500:
                self.err(
                    line,
                    "engine-too-many-tests",
                    f"{name}: "
                    + _("{op} lists {n} values; the engine hangs past 512 tests on one field").format(
                        op=op, n=len(v)
                    ),
                )
                return None
            return Test(name, op, tuple(v), line)
        if ftype.kind == "bool" and op not in ("eq", "ne"):
            self.err(
                line, "type-mismatch", _("{field} is true or false; use {field}: true").format(field=name)
            )
            return None
        ok, why, unknown = self.fits(ftype, v, allow_empty=True)
        if not ok:
            unknown = unknown or (ftype.kind == "enum" and isinstance(v, str))
            code = "unknown-value" if unknown else "type-mismatch"
            self.err(line, code, f"{name}: {why}")
            return None
        return Test(name, op, v, line)

    # -- values ---------------------------------------------------------------------------------------
    def value(self, slot: str, node: Any, line: int) -> Value | None:
        ftype = F.DECISION_FIELDS[slot]
        if isinstance(node, dict):
            if "copy" in node and len(node) == 1:
                src = str(node["copy"])
                st = (
                    self.field_type(src, line)
                    if src in F.COMPLAINT_FIELDS or src in F.DECISION_FIELDS
                    else None
                )
                if st is None:
                    if src not in F.COMPLAINT_FIELDS and src not in F.DECISION_FIELDS:
                        self.err(
                            line,
                            "unknown-field",
                            f"then {slot}: "
                            + _("copy of unknown field '{field}'").format(field=src)
                            + _suggest(src, [*F.COMPLAINT_FIELDS, *F.DECISION_FIELDS]),
                        )
                    return None
                if not _compatible(st, ftype):
                    self.err(
                        line,
                        "type-mismatch",
                        f"then {slot}: "
                        + _("cannot copy '{field}' ({kind}) into {slot} ({slot_kind})").format(
                            field=src, kind=describe(st), slot=slot, slot_kind=describe(ftype)
                        ),
                    )
                    return None
                return Value("copy", source=src, line=line)
            if "lookup" in node and set(node) <= {"lookup", "add"}:
                spec = str(node["lookup"])
                tname, _sep, col = spec.partition(".")
                t = self.tables.get(tname)
                if t is None:
                    self.err(
                        line,
                        "bad-lookup",
                        f"then {slot}: "
                        + _("no table '{table}'").format(table=tname)
                        + _suggest(tname, self.tables),
                    )
                    return None
                if t.key not in F.DECISION_FIELDS:
                    self.err(
                        line,
                        "bad-lookup",
                        f"then {slot}: "
                        + _("table '{table}' is keyed by '{key}', not a decision field").format(
                            table=tname, key=t.key
                        ),
                    )
                    return None
                cols = {c for row in t.rows.values() for c in row}
                if col not in cols:
                    self.err(
                        line,
                        "bad-lookup",
                        f"then {slot}: "
                        + _("table '{table}' has no column '{column}'").format(table=tname, column=col)
                        + _suggest(col, cols),
                    )
                    return None
                already_checked = col in F.REQUIRED_TABLES.get(tname, {})
                for rk, row in t.rows.items():
                    if not already_checked and col in row and row[col] is not None:
                        ok, why, _unknown = self.fits(ftype, row[col], allow_empty=True)
                        if not ok:
                            rrel, rline = t.row_lines[rk]
                            self.out.add(
                                rrel,
                                rline,
                                rk,
                                "type-mismatch",
                                _(
                                    "{table} row '{row}': {column} is looked up into {slot} by rule '{rule}'"
                                ).format(table=tname, row=rk, column=col, slot=slot, rule=self.rule_id)
                                + f": {why}",
                            )
                            return None
                add = tuple(node.get("add") or ())
                if add:
                    if ftype.kind != "codes":
                        self.err(line, "bad-lookup", f"then {slot}: " + _("add: is only for lists"))
                        return None
                    ok, why, _unknown = self.fits(ftype, list(add))
                    if not ok:
                        self.err(line, "unknown-value", f"then {slot}: add: {why}")
                        return None
                return Value("lookup", table=tname, column=col, add=add, line=line)
            self.err(
                line,
                "bad-value",
                f"then {slot}: "
                + _("a value is a literal, {{copy: field}} or {{lookup: table.column}}").format(),
            )
            return None
        lit: Any = node
        ok, why, unknown = self.fits(ftype, lit, allow_empty=True)
        if not ok:
            self.err(line, "unknown-value" if unknown else "type-mismatch", f"then {slot}: {why}")
            return None
        if ftype.kind == "codes":
            lit = tuple(lit)
        elif ftype.kind == "duration":
            lit = F.parse_duration(lit)
        return Value("literal", literal=lit, line=line)

    def rule(self, doc: YDict, rel: str, layer: str, order: int, source: str) -> Rule | None:
        self.file, self.rule_id = rel, str(doc["id"])
        before = len(self.out.problems)
        stage = str(doc["stage"])
        if stage not in self.stages:
            self.err(
                doc.line_of("stage"),
                "unknown-stage",
                _("stage '{stage}' is not one of {stages}").format(stage=stage, stages=", ".join(self.stages))
                + _suggest(stage, self.stages),
            )
        when = self.cond(doc["when"], doc.line_of("when")) if "when" in doc else ALWAYS
        then: dict[str, Value] = {}
        tdoc = doc["then"]
        if not tdoc and not doc.get("guidance"):
            self.err(doc.line_of("then"), "empty-then", _("then sets nothing and the rule has no guidance"))
        for slot, vnode in tdoc.items():
            sline = tdoc.line_of(slot)
            if slot not in F.DECISION_FIELDS:
                self.err(
                    sline,
                    "unknown-field",
                    "then: "
                    + _("'{field}' is not a decision field").format(field=slot)
                    + _suggest(slot, F.DECISION_FIELDS),
                )
                continue
            v = self.value(slot, vnode, sline)
            if v is not None:
                then[slot] = v
        guidance = str(doc.get("guidance", ""))
        if guidance:
            try:
                names = {fname for _, fname, _, _ in string.Formatter().parse(guidance) if fname is not None}
            except ValueError as e:
                self.err(
                    doc.line_of("guidance"),
                    "bad-guidance",
                    "guidance: " + _("{why} (write {{{{ and }}}} for braces)").format(why=e),
                )
                names = set()
            for n in sorted(names):
                if n not in _PLACEHOLDERS:
                    self.err(
                        doc.line_of("guidance"),
                        "bad-guidance",
                        "guidance: "
                        + _("unknown placeholder {{{name}}}").format(name=n)
                        + _suggest(n, _PLACEHOLDERS)
                        + _(" (allowed: {names})").format(names=", ".join(_PLACEHOLDERS)),
                    )
        if len(self.out.problems) > before or when is None:
            return None
        return Rule(
            self.rule_id,
            stage,
            int(doc.get("priority", 0)),
            str(doc.get("description", "")),
            when,
            then,
            guidance,
            rel,
            doc.line,
            layer,
            order,
            source,
        )


def _compatible(src: F.FieldType, dst: F.FieldType) -> bool:
    if src.kind == "enum" and dst.kind == "enum":
        return set(src.values) - {"UNSPECIFIED"} <= set(dst.values)
    if src.kind == "code" and dst.kind == "code":
        return src.table == dst.table
    return src.kind == dst.kind
