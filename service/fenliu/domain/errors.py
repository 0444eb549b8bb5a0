"""fenliu's exceptions, rooted in one class.

    FenliuError
    ├── ComplaintError        a complaint is invalid; ``violations`` names every bad field
    ├── PackError             a rule pack cannot be used; ``problems`` lists every error, sorted
    ├── NoPackError           no rule pack is loaded yet
    ├── EngineError           the rule engine failed on a valid complaint (a bug; never a client's fault)
    └── MatcherFailure        a matcher failed on a fact (caught: the plain interpreter answers)

No message ever contains a submitted value: only field names, rule ids, files and lines.
"""

from __future__ import annotations

from dataclasses import dataclass


class FenliuError(Exception):
    """Base of every fenliu error."""


@dataclass(frozen=True, slots=True, order=True)
class FieldViolation:
    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}" if self.field else self.description


class ComplaintError(FenliuError):
    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = sorted(violations)
        super().__init__("invalid complaint: " + "; ".join(str(v) for v in self.violations))


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One finding about a rule pack. ``severity`` is ``error`` or ``warning``."""

    file: str
    line: int
    rule: str
    code: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = self.rule or "-"
        sev = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}: {who}: {sev}{self.message} [{self.code}]"


class PackError(FenliuError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__(
            f"rule pack has {len(self.problems)} error(s):\n" + "\n".join(str(p) for p in self.problems)
        )


class NoPackError(FenliuError):
    def __init__(self) -> None:
        super().__init__("no rule pack is loaded")


class EngineError(FenliuError):
    """The engine failed on a valid complaint. Carries no complaint data."""


class MatcherFailure(FenliuError):
    """A matcher (:mod:`fenliu.engine.matchers`) failed on a valid fact. Carries no fact data."""
