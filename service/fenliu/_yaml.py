"""YAML loading that remembers where every node came from.

Mappings load as :class:`YDict` and sequences as :class:`YList`; both carry ``line`` (1-based) and the
line of each key or item, so every later error can name ``file:line``. Duplicate keys are errors
(PyYAML would silently keep the last one).

A document is refused, at the line where it crosses a limit, when it nests deeper than
:data:`MAX_DEPTH`, uses more than :data:`MAX_ALIASES` aliases, or would expand (aliases counted as
copies of what they name) to more than :data:`MAX_NODES` nodes: an alias bomb is refused while it is
composed, before anything is built from it, and deep nesting never reaches Python's recursion limit.
"""

from __future__ import annotations

from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

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


class _Loader(yaml.SafeLoader):
    """The safe loader, counting depth, aliases and the expanded size of what it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes below it, aliases expanded (itself included)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlProblem(line, f"more than {MAX_ALIASES} aliases (*name) in one file", "yaml-limit")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlProblem(line, f"nested more than {MAX_DEPTH} levels deep", "yaml-limit")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None and id(node) not in self._sizes:
            size = 1
            if isinstance(node, SequenceNode):
                size += sum(self._sizes.get(id(c), 1) for c in node.value)
            elif isinstance(node, MappingNode):
                size += sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
            if size > MAX_NODES:
                raise YamlProblem(
                    line,
                    f"expands to more than {MAX_NODES} values (aliases repeat what they name)",
                    "yaml-limit",
                )
            self._sizes[id(node)] = size
        return node


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


def load_yaml(text: str) -> Any:
    """Parse one YAML document. Raises :class:`YamlProblem` with the line of the first error."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except YamlProblem:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlProblem(line, f"YAML syntax: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise YamlProblem(1, f"YAML: {e}") from None
    finally:
        loader.dispose()


def line_at(doc: Any, path: list[Any] | tuple[Any, ...]) -> int:
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
