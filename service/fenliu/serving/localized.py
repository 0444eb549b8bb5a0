"""The Chinese of what an INVALID_ARGUMENT tells a caller: each field violation's description and the
status message, for ``google.rpc.LocalizedMessage`` (locale ``zh-CN``).

The English descriptions are the stable contract (clients may match on them). They are made, without
translation, where a request is validated (:mod:`fenliu.domain.model`, :mod:`fenliu.serving.convert`),
and read back here against the templates below, whose Chinese is the zh_CN catalog's whatever language
the server process chose. A description no template matches (a new one not added here yet) is given
in Chinese words around the English one; ``tests/test_grpc_localized.py`` holds every description the
validation makes to a template. Nothing here adds to what the English says: a placeholder takes only
what the description already holds (a number, codes, a JSON type), never a submitted value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from fenliu.i18n import N_, translations

#: The locale of the localized messages (BCP 47), as ``google.rpc.LocalizedMessage`` names it.
LOCALE: Final = "zh-CN"

#: Descriptions with nothing variable in them.
_FIXED: Final = (
    N_("unknown field"),
    N_("contains invalid Unicode (a lone surrogate)"),
    N_("contains a NUL character"),
    N_("must be a whole number"),
    N_("must not be negative"),
    N_("must be a finite number"),
    N_(
        "must be a case number: letters, digits, Chinese characters and - _ . / : # ( ) 〔 〕 [ ], "
        "not an id number or a phone number"
    ),
    N_("is required"),
    N_("text or category_hint is required"),
    N_("must be a string"),
    N_(
        "must be an administrative-division code of 6 (banner centre), 9 (township station) "
        "or 12 (village point) digits"
    ),
    N_("is not an ISO 8601 timestamp"),
    N_(
        "must lie between 0001-01-02T00:00:00Z and 9999-09-30T23:59:59Z (every deadline must be a valid time)"
    ),
    N_("is not valid UTF-8"),
    N_("is not a valid timestamp (seconds or nanos out of range)"),
    N_("must not contain NUL"),
    N_("required: the point's code (6, 9 or 12 digits)"),
    N_("required with a level"),
    N_("required: the caller's key for this event"),
    N_("give matter_id or decision_id, not both"),
    N_("required: matter_id or decision_id"),
    N_("must be a matter id: m- and 32 hex digits"),
    N_("must be a decision id: 32 hex digits"),
    N_("must not hold anything shaped like an id number or a phone"),
    N_("required: when the event happened"),
    N_("must be after 2000-01-01 and not in the future"),
    N_("required for EXTENDED: why the handling is extended"),
    N_("only for EXTENDED"),
    N_("required for HANDED_ON (or handed_to_point)"),
    N_("unknown department of the rule pack"),
    N_("only for HANDED_ON"),
    N_("required for EVALUATED"),
    N_("only for EVALUATED and REVISITED"),
    N_("must be a time after 2000-01-01"),
)

#: Descriptions with a part that varies, most specific first (the first that matches the whole
#: description is used).
_TEMPLATES: Final = (
    N_("unknown value; allowed: {allowed}; did you mean {guess}?"),
    N_("unknown value; allowed: {allowed}"),
    N_("unknown enum number; allowed: {allowed}"),
    N_("required; allowed: {allowed}"),
    N_("a complaint must be a JSON object, not {type}"),
    N_("must be a string, not {type}"),
    N_("must be true or false, not {type}"),
    N_("must be a whole number, not {type}"),
    N_("must be a number, not {type}"),
    N_("must be an object, not {type}"),
    N_("must be an ISO 8601 timestamp string, not {type}"),
    N_("is longer than {n} characters"),
    N_("must be at most {n} characters"),
    N_("must be a code of at most {n} characters"),
    N_("must not exceed {n}"),
    N_("must be an administrative-division code of {a} or {b} digits"),
    N_("must be an administrative-division code of {n} digits"),
    N_("must have {n} digits at level {level}"),
    N_("must be 1 to {n} days (§34)"),
    N_("must be 1 to {n} (0: {n})"),
)

#: What each placeholder may hold: nothing a caller typed.
_PARTS: Final = {
    "allowed": r"[A-Z0-9_]+(?:, [A-Z0-9_]+)*",
    "guess": r"[A-Z0-9_]+",
    "type": r"[A-Za-z_]+",
    "n": r"[0-9][0-9.e+]*",
    "a": r"[0-9]+",
    "b": r"[0-9]+",
    "level": r"[A-Z]+",
}

#: The JSON types a description names (``not {type}``).
_TYPES: Final = {
    "boolean": N_("a boolean"),
    "number": N_("a number"),
    "string": N_("a string"),
    "list": N_("a list"),
    "object": N_("an object"),
    "null": N_("null"),
}

_FALLBACK: Final = N_("this field is invalid: {description}")

_INVALID: Final = {
    "complaint": N_("invalid complaint: {n} bad field(s): {fields}"),
    "event": N_("invalid event: {n} bad field(s): {fields}"),
    "request": N_("invalid request: {n} bad field(s): {fields}"),
}


def _pattern(template: str) -> re.Pattern[str]:
    out, seen, at = [], set(), 0
    for m in re.finditer(r"\{([a-z_]+)\}", template):
        name = m.group(1)
        out.append(re.escape(template[at : m.start()]))
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{_PARTS[name]})")
        seen.add(name)
        at = m.end()
    out.append(re.escape(template[at:]))
    return re.compile("".join(out))


_PATTERNS: Final = tuple((template, _pattern(template)) for template in _TEMPLATES)
_FIXED_SET: Final = frozenset(_FIXED)


def _zh() -> Callable[[str], str]:
    return translations("zh_CN").gettext


def template_of(description: str) -> str | None:
    """The catalog's template ``description`` was made from; ``None`` when none matches."""
    if description in _FIXED_SET:
        return description
    for template, pattern in _PATTERNS:
        if pattern.fullmatch(description):
            return template
    return None


def description_zh(description: str) -> str:
    """A violation's English description in Chinese."""
    zh = _zh()
    if description in _FIXED_SET:
        return zh(description)
    for template, pattern in _PATTERNS:
        m = pattern.fullmatch(description)
        if m is not None:
            parts = m.groupdict()
            if "type" in parts:
                parts["type"] = zh(_TYPES[parts["type"]]) if parts["type"] in _TYPES else parts["type"]
            return zh(template).format(**parts)
    return zh(_FALLBACK).format(description=description)


def invalid_zh(what: str, n: int, fields: str) -> str:
    """The status message of an INVALID_ARGUMENT naming ``n`` bad fields, in Chinese. ``what``:
    ``complaint``, ``event`` or ``request``."""
    return _zh()(_INVALID[what]).format(n=n, fields=fields)
