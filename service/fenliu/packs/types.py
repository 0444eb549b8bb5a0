"""What a loaded rule pack is: conditions, the values rules set, rules, tables, cases, the lexicon and
the pack itself. Plain, position-carrying data (every node keeps its file and line); loading and
checking it is :mod:`fenliu.packs.load`'s job. Nothing here knows YAML or the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A YAML node as the loader gives it (mappings with string keys).
Yaml = str | int | float | bool | None | list["Yaml"] | dict[str, "Yaml"]

# ---------------------------------------------------------------------------------------------------
# Conditions


@dataclass(frozen=True, slots=True)
class Test:
    """``field op value``. ``op`` is one of eq ne lt lte gt gte in not_in; for in/not_in value is a tuple."""

    field: str
    op: str
    value: Any
    line: int


@dataclass(frozen=True, slots=True)
class Keywords:
    """True when any of the words occurs in the complaint's title or text."""

    words: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Pattern:
    """True when the regular expression matches somewhere in the title or text (Python ``re``)."""

    regex: str
    line: int


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Cond, ...]
    line: int = 0


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Cond, ...]
    line: int = 0


@dataclass(frozen=True, slots=True)
class Not:
    item: Cond
    line: int = 0


Cond = Test | Keywords | Pattern | All | AnyOf | Not
ALWAYS = All(())

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in")
NUMERIC_OPS = ("lt", "lte", "gt", "gte", "between")


# ---------------------------------------------------------------------------------------------------
# Values a rule sets


@dataclass(frozen=True, slots=True)
class Value:
    """What ``then`` assigns: a literal, a copy of another field, or a table lookup (plus extra codes)."""

    kind: str  # literal | copy | lookup
    literal: Any = None
    source: str = ""  # copy: field name
    table: str = ""  # lookup
    column: str = ""
    add: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    stage: str
    priority: int
    description: str
    when: Cond
    then: dict[str, Value]
    guidance: str
    file: str
    line: int
    layer: str
    order: int  # position in the pack (base layers first, files sorted, rules in file order)
    source: str = ""  # "<pack name>/<file in the pack>", the same wherever the pack lies (for traces)


@dataclass(slots=True)
class Table:
    name: str
    key: str
    rows: dict[str, dict[str, Any]]
    file: str
    line: int
    row_lines: dict[str, tuple[str, int]]  # row -> (file, line)
    row_layers: dict[str, str]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    complaint: dict[str, Yaml]
    expect: dict[str, Yaml]
    fired: tuple[str, ...]
    not_fired: tuple[str, ...]
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class LexiconEntry:
    """One entry of a category's vocabulary: a ``term``, a ``together`` entry (all its words in one
    sentence) or an ``against`` entry (subtracted), with its weight and where it is written."""

    category: str
    kind: str  # "term" | "together" | "against"
    words: tuple[str, ...]
    weight: float
    file: str
    line: int
    source: str  # "<pack>/<file in the pack>:<line>", the same wherever the pack lies

    @property
    def label(self) -> str:
        return "+".join(self.words)


@dataclass(frozen=True, slots=True)
class TextSettings:
    """The manifest's ``text``: threshold and margin of the lexicon, the model file, the floors."""

    threshold: float = 6.0
    margin: float = 2.0
    model: str = ""  # relative to the pack folder; "" = no model
    model_confidence: float = 0.6
    floors: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    line: int = 0
    model_file: str = ""  # the model's file as problems name it ("" = no model)
    model_path: Path | None = None
    layer: str = ""  # the pack (layer) whose manifest gives these settings: the model is trained for it
    root: Path | None = None  # that layer's folder: the model and the floors' corpus are relative to it


@dataclass(slots=True)
class Pack:
    name: str
    revision: str
    description: str
    root: Path
    stages: tuple[str, ...]
    defaults: dict[str, object]
    rules: tuple[Rule, ...]
    tables: dict[str, Table]
    cases: tuple[Case, ...]
    layers: tuple[str, ...]  # base first
    digest: str
    explained_warnings: tuple[dict[str, str], ...] = ()
    files: dict[str, int] = field(default_factory=dict)  # relative file -> number of lines
    # (absolute path, bytes) of every file read, base layers first: what the digest was taken of
    sources: tuple[tuple[str, bytes], ...] = ()
    lexicon: tuple[LexiconEntry, ...] = ()
    text: TextSettings = field(default_factory=TextSettings)

    @property
    def categories(self) -> dict[str, dict[str, Any]]:
        return self.tables["categories"].rows

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def iter_tests(c: Cond) -> Iterable[Test | Keywords | Pattern]:
    """Every leaf of a condition."""
    if isinstance(c, All | AnyOf):
        for x in c.items:
            yield from iter_tests(x)
    elif isinstance(c, Not):
        yield from iter_tests(c.item)
    else:
        yield c
