"""Run the commands of the authoring guides and compare (or refresh) the output they show.

    python tools/guide_outputs.py            # compare both guides; exit 1 on a difference
    python tools/guide_outputs.py --write    # rewrite the shown outputs with the real ones
    python tools/guide_outputs.py --guide zh # one guide only (en: docs/authoring-rules.md,
                                             # zh: docs/zh/authoring-rules.md)

A command block is a fenced block (```, ```sh, ```console) whose first line starts with ``$ ``. Each
``$ `` line is a command; the lines under it, up to the next command, are its output (standard output
and standard error together, as a terminal shows them). The commands of one guide run in order, with
``bash``, in one scratch folder holding a copy of the repository's ``rules/`` (the walkthroughs copy and
patch packs there) and links to ``corpus/`` and ``examples/``. ``fenliu`` is the virtual environment's;
the English guide's commands run with ``--lang en``, the Chinese guide's with ``--lang zh_CN``.

A line that is only ``…`` stands for any number of lines (an output shortened in the guide). Timings
(``3.5 s``, ``578 complaints/s``) are compared as numbers of any value; nothing else is normalized.
With ``--write`` a shortened output keeps its shape: each shown piece is replaced by the same number of
real lines (the last one by every real line to the end), starting at the real line most like the
piece's first line.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDES = {"en": ROOT / "docs" / "authoring-rules.md", "zh": ROOT / "docs" / "zh" / "authoring-rules.md"}
LANGS = {"en": "en", "zh": "zh_CN"}
ELISION = "…"
_RATE_ZH = re.compile(r"每秒 \d[\d,]*(?:\.\d+)? 件诉求")
_FENCE = re.compile(r"^```(\w*)$")
_FENLIU = re.compile(r"(^|[|;&]\s*|\$\(\s*)fenliu(?=\s)")
_TIMING = re.compile(r"\d[\d,]*(?:\.\d+)? ?(?:ms|s|min|complaints/s|条/秒|秒)(?![\w/])")


@dataclass
class Command:
    text: str
    shown: list[str] = field(default_factory=list)
    line: int = 0  # the command's line in the guide (0-based)


@dataclass
class Block:
    start: int  # the line after the opening fence
    end: int  # the closing fence's line
    commands: list[Command]


def blocks(text: str) -> list[Block]:
    """Every command block of a guide, in order."""
    lines = text.split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != "```":
            j += 1
        body = lines[i + 1 : j]
        if m.group(1) in ("", "sh", "console", "shell") and body and body[0].startswith("$ "):
            commands: list[Command] = []
            for k, line in enumerate(body):
                if line.startswith("$ "):
                    commands.append(Command(line[2:], line=i + 1 + k))
                else:
                    commands[-1].shown.append(line)
            found.append(Block(i + 1, j, commands))
        i = j + 1
    return found


def commands(text: str) -> list[str]:
    return [c.text for b in blocks(text) for c in b.commands]


def headings(text: str) -> list[str]:
    """The ``##`` and ``###`` headings outside code blocks, as their marks only (``##``, ``###``)."""
    marks: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"^#{2,3} ", line):
            marks.append(line.split(" ", 1)[0])
    return marks


def _normalize(line: str) -> str:
    return _TIMING.sub("<time>", _RATE_ZH.sub("每秒 <time>", line.rstrip()))


def _pieces(shown: list[str]) -> list[list[str]]:
    pieces: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == ELISION:
            pieces.append([])
        else:
            pieces[-1].append(line)
    return pieces


def matches(shown: list[str], real: list[str]) -> bool:
    """Whether the real output is what the guide shows (``…`` lines standing for any lines)."""
    want = [_normalize(s) for s in shown]
    got = [_normalize(r) for r in real]
    pieces = _pieces(want)
    if len(pieces) == 1:
        return want == got
    first, *middle, last = pieces
    if got[: len(first)] != first:
        return False
    at = len(first)
    for piece in middle:
        while at + len(piece) <= len(got) and got[at : at + len(piece)] != piece:
            at += 1
        if at + len(piece) > len(got):
            return False
        at += len(piece)
    return len(got) - at >= len(last) and (not last or got[len(got) - len(last) :] == last)


def refreshed(shown: list[str], real: list[str]) -> list[str]:
    """The output to show: the real one, shortened where the guide shortens it."""
    pieces = _pieces(shown)
    if len(pieces) == 1:
        return real
    marks = [line for line in shown if line.strip() == ELISION]
    out: list[str] = []
    at = 0
    for n, piece in enumerate(pieces):
        last = n == len(pieces) - 1
        if n == 0 or not piece:
            start = at
        else:
            candidates = range(at, max(at + 1, len(real) - (1 if last else len(piece)) + 1))
            start = max(
                candidates,
                key=lambda k: difflib.SequenceMatcher(
                    None, piece[0], real[k] if k < len(real) else ""
                ).ratio(),
            )
        out.extend(real[start:] if last and piece else real[start : start + len(piece)])
        at = start + len(piece)
        if n < len(marks):
            out.append(marks[n])
    return out


def workspace(where: Path) -> Path:
    """A scratch folder holding a copy of rules/ and links to the corpus and the example complaints."""
    shutil.copytree(ROOT / "rules", where / "rules")
    for name in ("corpus", "examples"):
        (where / name).symlink_to(ROOT / name)
    return where


def run(command: str, cwd: Path, lang: str) -> list[str]:
    """The lines a terminal shows for the command (standard output and error), in the guide's language."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "100"
    env.pop("LC_ALL", None)
    env.pop("LC_MESSAGES", None)
    line = _FENLIU.sub(lambda m: f"{m.group(1)}fenliu --lang {lang}", command)
    p = subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    return p.stdout.rstrip("\n").split("\n") if p.stdout.strip() else []


def outcomes(guide: str) -> Iterator[tuple[Command, list[str]]]:
    """Each command of a guide with its real output, run in order in a fresh scratch folder."""
    text = GUIDES[guide].read_text("utf-8")
    with tempfile.TemporaryDirectory(prefix="fenliu-guide-") as tmp:
        cwd = workspace(Path(tmp))
        for block in blocks(text):
            for command in block.commands:
                yield command, run(command.text, cwd, LANGS[guide])


def check(guide: str) -> list[str]:
    """A readable difference for every command whose shown output is not the real one."""
    problems = []
    for command, real in outcomes(guide):
        if not matches(command.shown, real):
            diff = difflib.unified_diff(command.shown, real, "shown", "real", lineterm="")
            where = f"{GUIDES[guide].relative_to(ROOT)}:{command.line + 1}"
            problems.append(f"{where}: $ {command.text}\n" + "\n".join(diff))
    return problems


def write(guide: str) -> int:
    """Rewrite the guide's shown outputs; the number of commands whose output changed."""
    path = GUIDES[guide]
    lines = path.read_text("utf-8").split("\n")
    changed = 0
    new_outputs: dict[int, list[str]] = {}
    for command, real in outcomes(guide):
        if matches(command.shown, real):
            new_outputs[command.line] = command.shown  # timings kept as shown: no churn
        else:
            changed += 1
            new_outputs[command.line] = refreshed(command.shown, real)
    out: list[str] = []
    skip = False
    for i, line in enumerate(lines):
        if i in new_outputs:
            out.append(line)
            out.extend(new_outputs[i])
            skip = True
            continue
        if skip and (line.startswith("$ ") or line == "```"):
            skip = False
        if not skip:
            out.append(line)
    path.write_text("\n".join(out), "utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite the shown outputs with the real ones")
    parser.add_argument("--guide", choices=sorted(GUIDES), action="append", help="en, zh (default: both)")
    args = parser.parse_args(argv)
    status = 0
    for guide in args.guide or sorted(GUIDES):
        if args.write:
            print(f"{GUIDES[guide].relative_to(ROOT)}: {write(guide)} output(s) rewritten")
        else:
            problems = check(guide)
            for problem in problems:
                print(problem, end="\n\n")
            print(f"{GUIDES[guide].relative_to(ROOT)}: {len(problems)} output(s) differ")
            status = status or (1 if problems else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
