"""Chinese input-method punctuation where YAML syntax needs the ASCII character.

An author typing with a Chinese input method gets full-width punctuation unless they switch it off:
``keywords: [供暖，暖气，供热]`` is then *one* keyword that never matches (YAML reads the full-width
commas as text), and ``stage：grade`` is a syntax error reported on the next line. Both are silent or
misleading in YAML's own words, so the pack loader reads every file for these slips first and names each
at its line and column, with the character to type instead; ``fenliu fmt`` rewrites them.

Only places where YAML *syntax* is meant are read: a key's colon, the separators and brackets of a flow
list or mapping (``[…]``, ``{…}``), quotes around a whole value, and the indentation (a tab or an
ideographic space). Full-width punctuation inside text — descriptions, guidance, notes, keywords — is
Chinese writing and is left alone. Comments and block scalars (``|``, ``>``) are never read.

This is a small hand-written scanner, not a YAML parser: PyYAML reports only the first error of a file
and knows nothing of input methods, and no library does this job. It errs towards silence: a line it
cannot read for sure gives nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from fenliu.i18n import N_, _

#: Full-width character → the ASCII one YAML syntax needs.
ASCII_OF: Final[dict[str, str]] = {
    "，": ",",
    "、": ",",
    "：": ":",
    "【": "[",
    "】": "]",
    "［": "[",
    "］": "]",
    "｛": "{",
    "｝": "}",
    "“": '"',
    "”": '"',
    "\t": "  ",
    "\u3000": "  ",
}

_NAMES: Final[dict[str, str]] = {
    "，": N_("full-width comma '，'"),
    "、": N_("enumeration comma '、'"),
    "：": N_("full-width colon '：'"),
    "【": N_("full-width bracket '【'"),
    "】": N_("full-width bracket '】'"),
    "［": N_("full-width bracket '［'"),
    "］": N_("full-width bracket '］'"),
    "｛": N_("full-width brace '｛'"),
    "｝": N_("full-width brace '｝'"),
    "“": N_("curly quote '“'"),
    "”": N_("curly quote '”'"),
    "\t": N_("a tab"),
    "\u3000": N_("an ideographic (full-width) space"),
}

_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_KEY_AHEAD: Final = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_.\-]*\s*[:：]")
_BLOCK_SCALAR: Final = re.compile(r"[|>][0-9+\-]*\s*(#.*)?$")
_OPEN_FULL: Final = {"【": "】", "［": "］", "｛": "｝"}


@dataclass(frozen=True, slots=True)
class Slip:
    """One full-width character (or tab) where YAML syntax needs an ASCII one."""

    line: int  # 1-based
    column: int  # 1-based, in characters
    char: str
    role: str  # what YAML would read there: "key colon", "list separator", …
    fix: str  # what replaces it (a separator or a key's colon is followed by a space)

    def message(self) -> str:
        name = _(_NAMES[self.char])
        if self.char in "\t\u3000":
            return _(
                "column {column}: {name} in the indentation; YAML indents with ordinary spaces "
                "(switch the input method to half-width, or run `fenliu fmt`)"
            ).format(column=self.column, name=name)
        return _(
            "column {column}: {name} where YAML needs '{ascii}' ({role}); "
            "type the half-width '{ascii}' (or run `fenliu fmt`)"
        ).format(column=self.column, name=name, ascii=self.fix.strip(), role=_(self.role))


def _comment_start(line: str, start: int) -> int:
    """Where a comment begins in ``line`` at or after ``start`` (outside quotes), or ``len(line)``."""
    quote = ""
    prev = " "
    for j in range(start, len(line)):
        c = line[j]
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"" and prev in " \t[{,:":
            quote = c
        elif c == "#" and prev in " \t":
            return j
        prev = c
    return len(line)


class _Scanner:
    def __init__(self) -> None:
        self.slips: list[Slip] = []
        self.flow: list[str] = []  # the open flow collections ('[' or '{'), carried across lines
        self.block_indent: int | None = None  # inside a block scalar: its key's indentation

    def add(self, n: int, j: int, c: str, role: str, line: str = "") -> None:
        fix = ASCII_OF[c]
        if c in "，、：" and j + 1 < len(line) and line[j + 1] not in " \u3000":
            fix += " "  # YAML needs the space after a key's colon; after a comma it reads better
        self.slips.append(Slip(n, j + 1, c, role, fix))

    def line(self, n: int, line: str) -> None:
        body = line.rstrip()
        indent = len(line) - len(line.lstrip(" \t\u3000"))
        if self.block_indent is not None:
            if not body.strip() or len(line) - len(line.lstrip(" ")) > self.block_indent:
                return
            self.block_indent = None
        if not body.strip() or body.lstrip(" \t\u3000").startswith("#"):
            return
        if not self.flow:
            for j in range(indent):
                if line[j] != " ":
                    self.add(n, j, line[j], N_("indentation"))
        pos = indent
        if not self.flow:
            while line.startswith("- ", pos) or line.startswith("-\u3000", pos):
                if line[pos + 1] == "\u3000":
                    self.add(n, pos + 1, "\u3000", N_("indentation"))
                pos += 2
                while pos < len(line) and line[pos] == " ":
                    pos += 1
            m = _KEY.match(line, pos)
            if m:
                k = m.end()
                while k < len(line) and line[k] == " ":
                    k += 1
                if k < len(line) and line[k] == "：":
                    self.add(n, k, "：", N_("the colon after a key"), line)
                    pos = k + 1
                elif k < len(line) and line[k] == ":":
                    pos = k + 1
            rest = line[pos:]
            if _BLOCK_SCALAR.match(rest.strip()):
                self.block_indent = len(line) - len(line.lstrip(" "))
                return
            value_start = pos + (len(rest) - len(rest.lstrip(" ")))
            end = _comment_start(line, value_start)
            value = line[value_start:end].rstrip()
            if value and self._whole_value(n, value_start, value, line):
                return
            if value[:1] not in ("[", "{"):
                return  # a plain or quoted scalar: its punctuation is text
            pos = value_start
        self._flow(n, line, pos)

    def _whole_value(self, n: int, start: int, value: str, line: str) -> bool:
        """A block value written as a full-width list, mapping or quoted string; True when read."""
        first, last = value[0], value[-1]
        if first in _OPEN_FULL and last == _OPEN_FULL[first] and re.search("[,，、]", value):
            self.add(
                n, start, first, N_("the bracket that opens a list") if first != "｛" else N_("the brace")
            )
            for i, c in enumerate(value[1:-1], 1):
                if c in "，、":
                    self.add(n, start + i, c, N_("a list separator"), line)
            self.add(n, start + len(value) - 1, last, N_("the bracket that closes it"))
            return True
        if first == "“" and last == "”" and len(value) > 1 and "“" not in value[1:-1]:
            self.add(n, start, first, N_("the quote that opens the value"))
            self.add(n, start + len(value) - 1, last, N_("the quote that closes it"))
            return True
        return False

    def _flow(self, n: int, line: str, pos: int) -> None:
        """Scan flow collections (``[…]``, ``{…}``) from ``pos``; the depth carries to the next line."""
        quote = ""
        token_start = True  # at the start of an item, key or value
        j = pos
        while j < len(line):
            c = line[j]
            if quote:
                if c == quote:
                    quote = ""
                j += 1
                continue
            if c == "#" and (j == 0 or line[j - 1] in " \t"):
                return
            if token_start and c in "'\"":
                quote = c
            elif token_start and c in "[{":
                self.flow.append(c)
            elif c in "]}" and self.flow:
                self.flow.pop()
            elif self.flow and c in "，、" and (self.flow[-1] == "[" or _KEY_AHEAD.match(line, j + 1)):
                # in a list, always a separator; in a mapping, only before the next key (else it is text)
                self.add(
                    n,
                    j,
                    c,
                    N_("a separator in a flow list") if self.flow[-1] == "[" else N_("a separator"),
                    line,
                )
                token_start = True
                j += 1
                continue
            elif self.flow and token_start and c == "“":
                close = _item_end(line, j)
                if close > j + 1 and line[close - 1] == "”":
                    self.add(n, j, "“", N_("the quote that opens an item"))
                    self.add(n, close - 1, "”", N_("the quote that closes it"))
                    j = close
                    token_start = False
                    continue
            elif self.flow and self.flow[-1] == "{" and token_start and (m := _KEY.match(line, j)):
                k = m.end()
                if k < len(line) and line[k] == "：":
                    self.add(n, k, "：", N_("the colon after a key"), line)
                    j = k + 1
                    token_start = True
                    continue
            if not self.flow and not token_start and c not in " ":
                return
            token_start = c in " ,:[{" or (c == "-" and token_start)
            j += 1


def _item_end(line: str, j: int) -> int:
    """The end of a flow item starting at ``j``: the next separator or closing bracket."""
    for k in range(j + 1, len(line)):
        if line[k] in ",，、]}":
            return k
    return len(line)


def slips(text: str) -> list[Slip]:
    """Every full-width character (or tab) in ``text`` where YAML syntax needs an ASCII one."""
    scanner = _Scanner()
    for n, line in enumerate(text.split("\n"), 1):
        scanner.line(n, line.rstrip("\r"))
    return scanner.slips


def fixed(text: str) -> tuple[str, list[Slip]]:
    """``text`` with every slip replaced by its ASCII character (tabs and ideographic spaces in the
    indentation by two spaces), and trailing spaces removed outside block scalars; and the slips."""
    found = slips(text)
    by_line: dict[int, list[Slip]] = {}
    for s in found:
        by_line.setdefault(s.line, []).append(s)
    lines = text.split("\n")
    scanner = _Scanner()  # to know which lines are block-scalar text (their spaces are content)
    out: list[str] = []
    for n, line in enumerate(lines, 1):
        cr = "\r" if line.endswith("\r") else ""
        body = line[: len(line) - len(cr)]
        in_block = scanner.block_indent is not None and (
            not body.strip() or len(body) - len(body.lstrip(" ")) > scanner.block_indent
        )
        scanner.line(n, body)
        chars = list(body)
        for s in sorted(by_line.get(n, ()), key=lambda s: -s.column):
            chars[s.column - 1] = s.fix
        new = "".join(chars)
        out.append((new if in_block else new.rstrip(" \t")) + cr)
    return "\n".join(out), found


def encoding_advice(data: bytes) -> str:
    """What to say of a file that is not UTF-8: most often a Windows editor saved it in GBK."""
    try:
        data.decode("gb18030")
    except UnicodeDecodeError:
        return _("file is not UTF-8: save it as UTF-8")
    return _(
        "file is not UTF-8: it is saved in GBK (GB18030), as Windows editors do; save it as UTF-8 "
        "(Save As, encoding UTF-8), or run `fenliu fmt`, which converts it"
    )


def decode(data: bytes) -> tuple[str, str]:
    """The text of a pack file and its encoding: UTF-8 (with or without a byte-order mark), else GB18030.
    Raises :class:`UnicodeDecodeError` when it is neither."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gb18030"
