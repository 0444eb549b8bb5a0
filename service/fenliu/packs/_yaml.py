"""YAML loading that remembers where every node came from.

Mappings load as :class:`YDict` and sequences as :class:`YList`; both carry ``line`` (1-based) and the
line of each key or item, so every later error can name ``file:line``. Duplicate keys are errors
(PyYAML would silently keep the last one).

A document is refused, at the line where it crosses a limit, when it nests deeper than
:data:`MAX_DEPTH`, uses more than :data:`MAX_ALIASES` aliases, or would expand (aliases counted as
copies of what they name) to more than :data:`MAX_NODES` nodes: one pass over its parse events checks
this before anything is composed or built, so an alias bomb costs only its own length and deep
nesting never reaches Python's recursion limit. libyaml parses when PyYAML has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from fenliu.i18n import N_, _
from fenliu.packs.types import Yaml

MAX_DEPTH: Final = 64  # nested mappings and sequences (the reference pack needs 8)
MAX_ALIASES: Final = 1_000  # ``*name`` references in one document
MAX_NODES: Final = 200_000  # nodes of the document with every alias expanded


class YDict(dict[str, Any]):
    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YList(list[Any]):
    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class YamlProblem(Exception):
    def __init__(self, line: int, message: str, code: str = "yaml-syntax") -> None:
        self.line = line
        self.message = message
        self.code = code
        super().__init__(f"line {line}: {message}")


#: libyaml's parser when PyYAML was built with it (about 15 times faster), else PyYAML's own.
_BASE: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


class _Loader(_BASE):  # type: ignore[misc]
    """The safe loader, building :class:`YDict` and :class:`YList`."""


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return int(mark.line) + 1 if mark is not None else 1


def _check_limits(text: str) -> None:
    """One pass over the document's parse events: depth, aliases, and its size with aliases expanded.

    Nothing is composed or built here, so an alias bomb or a deep nesting costs only its own length.
    """
    open_sizes: list[int] = []  # per open collection: the nodes in it so far, itself included
    open_anchors: list[str | None] = []
    sizes: dict[str, int] = {}  # anchor -> the size of what it names
    aliases = 0

    def add(n: int, event: yaml.Event) -> None:
        if open_sizes:
            open_sizes[-1] += n
            n = open_sizes[-1]
        if n > MAX_NODES:
            raise YamlProblem(
                _line(event),
                f"expands to more than {MAX_NODES} values (aliases repeat what they name)",
                "yaml-limit",
            )

    for event in yaml.parse(text, Loader=_BASE):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_sizes) >= MAX_DEPTH:
                raise YamlProblem(_line(event), f"nested more than {MAX_DEPTH} levels deep", "yaml-limit")
            open_sizes.append(1)
            open_anchors.append(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_sizes.pop(), open_anchors.pop()
            if anchor:
                sizes[anchor] = size
            add(size, event)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            add(1, event)
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YamlProblem(
                    _line(event),
                    f"more than {MAX_ALIASES} aliases (*name) in one file",
                    "yaml-limit",
                )
            add(sizes.get(str(event.anchor), 1), event)


def _construct_mapping(loader: _Loader, node: Node) -> YDict:
    assert isinstance(node, MappingNode)
    loader.flatten_mapping(node)
    out = YDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            raise YamlProblem(key_node.start_mark.line + 1, f"duplicate key '{key}'")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: Node) -> YList:
    assert isinstance(node, SequenceNode)
    out = YList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


#: PyYAML's words for the commonest slips → what the author did, in plain words (PyYAML's kept after).
_PLAIN: Final = (
    (
        "expected <block end>, but found",
        N_(
            "this line does not line up with the lines above it: the keys of one mapping (such as "
            "`when:` and `then:`) start in the same column"
        ),
    ),
    (
        "did not find expected key",
        N_(
            "this line does not line up with the lines above it: the keys of one mapping (such as "
            "`when:` and `then:`) start in the same column"
        ),
    ),
    ("did not find expected '-' indicator", N_("the items of a list ('- ') start in the same column")),
    ("did not find expected ',' or ']'", N_("a list opened with '[' is not closed with ']'")),
    ("did not find expected ',' or '}'", N_("a mapping opened with '{' is not closed with '}'")),
    (
        "mapping values are not allowed",
        N_(
            "a second ': ' on one line: put text that holds ': ' in quotes ('…'), or give the next key a line"
        ),
    ),
    ("could not find expected ':'", N_("a key without its ':' (write `key: value`)")),
    ("found unexpected end of stream", N_("the file ends inside a quote or a bracket: close it")),
)


def _plain(what: str) -> str:
    for yaml_words, words in _PLAIN:
        if yaml_words in what:
            return _("{words} (YAML: {what})").format(words=_(words), what=what)
    return what


def load_yaml(text: str) -> Yaml:
    """Parse one YAML document. Raises :class:`YamlProblem` with the line of the first error."""
    loader = None
    try:
        _check_limits(text)
        loader = _Loader(text)
        data: Yaml = loader.get_single_data()
        return data
    except YamlProblem:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if e.context and "flow" in e.context and e.context_mark is not None:
            mark = e.context_mark  # an unclosed '[' or '{': the line that opened it
        line = mark.line + 1 if mark else 1
        what = str(e.problem or e.context)
        if "nesting depth" in what:  # libyaml's own limit (deeper than ours, but met first in flow style)
            raise YamlProblem(line, f"nested more than {MAX_DEPTH} levels deep", "yaml-limit") from None
        raise YamlProblem(line, f"YAML syntax: {_plain(what)}") from None
    except yaml.YAMLError as e:
        raise YamlProblem(1, f"YAML: {e}") from None
    finally:
        if loader is not None:
            loader.dispose()


def line_at(doc: Yaml, path: Sequence[str | int]) -> int:
    """The line of the deepest node reachable along ``path`` (a JSON-schema error path)."""
    line = getattr(doc, "line", 1)
    node = doc
    for step in path:
        if isinstance(node, YDict) and isinstance(step, str) and step in node:  # noqa: SIM114 (types differ)
            line, node = node.line_of(step), node[step]
        elif isinstance(node, YList) and isinstance(step, int) and 0 <= step < len(node):
            line, node = node.line_of(step), node[step]
        else:
            break
    return line
