"""``fenliu fmt PACK``: rewrite what a Chinese input method or a Windows editor leaves in a pack's YAML.

Each ``*.yaml`` file of the pack folder (links are not followed) gets, in place and keeping every comment
and every other byte:

* the full-width punctuation where YAML syntax needs ASCII (:mod:`fenliu.packs.ime`) replaced;
* tabs and ideographic spaces in the indentation replaced by spaces;
* trailing spaces removed (not inside ``|`` / ``>`` text, where they are content);
* a GBK (GB18030) file converted to UTF-8.

A rewrite is kept only when the new text parses as YAML and, where nothing but whitespace or the
encoding changed, reads as exactly the same data as before; otherwise the file is left alone and said
why. Key order is not touched: reordering keys would move comments away from what they describe.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from fenliu.i18n import _
from fenliu.packs import ime
from fenliu.packs._yaml import YamlProblem, load_yaml

#: Larger files are not pack files (the loader refuses them anyway).
MAX_FILE_BYTES = 1 << 20


@dataclass(slots=True)
class FileResult:
    """What ``fmt`` did (or would do) to one file."""

    path: Path
    slips: list[ime.Slip] = field(default_factory=list)
    trailing: int = 0  # lines that lost trailing spaces
    converted: str = ""  # the encoding it was converted from, "" when it was UTF-8
    refused: str = ""  # why it was left alone

    @property
    def changed(self) -> bool:
        return not self.refused and bool(self.slips or self.trailing or self.converted)


def pack_yaml_files(root: Path) -> list[Path]:
    """The ``*.yaml`` files under ``root``, in path order; linked folders and files are not followed."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            p = Path(folder) / name
            if name.endswith(".yaml") and not p.is_symlink() and p.is_file():
                found.append(p)
    return found


def _same_data(before: str, after: str) -> bool:
    try:
        return bool(load_yaml(before) == load_yaml(after))
    except YamlProblem:
        return False


def format_file(path: Path, *, write: bool) -> FileResult:
    result = FileResult(path)
    data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    if len(data) > MAX_FILE_BYTES:
        result.refused = _("larger than 1 MiB; not a pack file")
        return result
    try:
        text, encoding = ime.decode(data)
    except UnicodeDecodeError:
        result.refused = _("neither UTF-8 nor GBK; save it as UTF-8")
        return result
    new, result.slips = ime.fixed(text)
    result.converted = "" if encoding == "utf-8" else "GBK"
    old_lines, new_lines = text.split("\n"), new.split("\n")
    slip_lines = {s.line for s in result.slips}
    result.trailing = sum(
        1
        for n, (a, b) in enumerate(zip(old_lines, new_lines, strict=True), 1)
        if a != b and n not in slip_lines
    )
    if not result.changed:
        return result
    try:
        load_yaml(new)
    except YamlProblem as e:
        result.refused = _(
            "still not valid YAML after the rewrite (line {line}: {message}); fix it by hand"
        ).format(line=e.line, message=e.message)
        return result
    if not result.slips and not _same_data(text, new):
        result.refused = _("rewriting the spaces would change what the file says; fix it by hand")
        return result
    if write:
        _replace(path, new.encode("utf-8"))
    return result


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` atomically, keeping its permissions."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(root: Path, out: TextIO, *, write: bool, shown: Callable[[Path], str]) -> int:
    """Format every pack file; report each change. Exit status: 0 when nothing is (or was left) to fix;
    with ``write=False`` (``--check``) 1 when something would change; 1 when a file was left alone."""
    results = [format_file(p, write=write) for p in pack_yaml_files(root)]
    for r in results:
        name = shown(r.path)
        if r.refused:
            print(_("{file}: left alone: {why}").format(file=name, why=r.refused), file=out)
            continue
        if r.converted:
            print(
                _("{file}: converted from {encoding} to UTF-8").format(file=name, encoding=r.converted),
                file=out,
            )
        for s in r.slips:
            was = {"\t": _("a tab"), "\u3000": _("an ideographic space")}.get(s.char, f"'{s.char}'")
            now = _("spaces") if s.char in "\t\u3000" else f"'{s.fix.strip()}'"
            print(
                _("{file}:{line}: column {column}: {was} -> {now} ({role})").format(
                    file=name, line=s.line, column=s.column, was=was, now=now, role=_(s.role)
                ),
                file=out,
            )
        if r.trailing:
            print(
                _("{file}: trailing spaces removed on {n} line(s)").format(file=name, n=r.trailing), file=out
            )
    changed = [r for r in results if r.changed]
    refused = [r for r in results if r.refused]
    summary = (
        _("fmt: {changed} of {files} file(s) changed, {refused} left alone")
        if write
        else _("fmt: {changed} of {files} file(s) would change, {refused} left alone")
    )
    print(summary.format(changed=len(changed), files=len(results), refused=len(refused)), file=out)
    if refused:
        return 1
    return 1 if changed and not write else 0
