"""Authoring lint for rule packs (conflicts, dead rules, gaps). See docs/authoring-rules.md."""

from __future__ import annotations

import json
from collections.abc import Callable

from fenliu.compiler import CompiledPack
from fenliu.errors import Problem
from fenliu.pack import Pack


def lint(pack: Pack, compiled: CompiledPack) -> list[Problem]:
    """Every finding, sorted. Errors block a reload; warnings do not."""
    return []


def render_findings(findings: list[Problem], show: Callable[[Problem], str], *, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps([{"file": f.file, "line": f.line, "rule": f.rule, "code": f.code,
                            "severity": f.severity, "message": f.message} for f in findings], ensure_ascii=False, indent=2)
    lines = [show(f) for f in findings]
    errors = sum(f.severity == "error" for f in findings)
    lines.append(f"{errors} error(s), {len(findings) - errors} warning(s)")
    return "\n".join(lines)
