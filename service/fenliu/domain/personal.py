"""What personal data looks like, wherever it is typed: Chinese id numbers and mobile numbers.

The complainant's own fields are hashed before anything is written (:mod:`fenliu.serving.decision_log`); but
citizens and frontends also type an id number into a case number, a phone into a region code or a
complaint id. So every line fenliu writes (its JSON logs, the decision log) goes through :func:`mask`,
which replaces anything *shaped* like one:

* an id number (居民身份证号码): 18 characters, the last a digit or X, or the old form of 15 digits;
* a mobile number: 11 digits ``1[3-9]…``, optionally after ``+86`` / ``86``, with spaces or dashes
  between the digits (``138 0013 8000``, ``+86-138-0013-8000``);

in ASCII or full-width digits (１３８…).

A run of digits that is part of a longer run of letters and digits (a hex digest, a keyed hash, a longer
number) is not a match. Nothing is checked beyond the shape (no checksum): masking errs on the side of
hiding. This module knows nothing of complaints or logs.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_D: Final = "[0-9０-９]"  # ASCII and full-width digits
_EDGE_BEFORE: Final = "(?<![0-9A-Za-z０-９Ａ-Ｚａ-ｚ])"
_EDGE_AFTER: Final = "(?![0-9A-Za-z０-９Ａ-Ｚａ-ｚ])"

ID_NUMBER: Final = re.compile(_EDGE_BEFORE + f"(?:{_D}{{17}}(?:{_D}|[XxＸｘ])|{_D}{{15}})" + _EDGE_AFTER)
MOBILE: Final = re.compile(
    _EDGE_BEFORE + f"(?:[+＋]?[8８][6６][ \\-－]?)?[1１][3-9３-９](?:[ \\-－]?{_D}){{9}}" + _EDGE_AFTER
)
_DIGIT: Final = re.compile(_D)

ID_MASK: Final = "[id-number]"
PHONE_MASK: Final = "[phone]"


#: The fewest characters a match can have (a mobile number's 11 digits): a shorter text holds none.
SHORTEST: Final = 11


def mask(text: str) -> str:
    """``text`` with every id-number-shaped and mobile-shaped run replaced by a placeholder."""
    if len(text) < SHORTEST or _DIGIT.search(text) is None:  # most strings a line holds are short
        return text
    text = ID_NUMBER.sub(ID_MASK, text)
    return MOBILE.sub(PHONE_MASK, text)


def mask_number(v: int | float) -> int | float | str:
    """A number as it is, or, when its digits are shaped like an id number or a mobile (a phone typed
    into a number field), their masked text: 13800138000.0 becomes "[phone].0"."""
    if abs(v) < 1e10:  # fewer digits than a mobile number
        return v
    text = repr(v)
    masked = mask(text)
    return v if masked == text else masked


def looks_personal(text: str) -> bool:
    """Whether ``text``, as a whole (surrounding spaces aside), is shaped like an id number or a mobile."""
    t = text.strip()
    return bool(ID_NUMBER.fullmatch(t) or MOBILE.fullmatch(t))


# The complainant's own fields: well formed or not (contract v2: a malformed one never refuses a complaint;
# it is kept as given, hashed for matching, and the decision's notes say so).

_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"
_MOBILE_WHOLE: Final = re.compile(r"(?:\+?86)?1[3-9][0-9]{9}")
_LANDLINE_WHOLE: Final = re.compile(r"0[0-9]{2,3}[0-9]{7,8}")
_SEPARATORS: Final = re.compile(r"[\s\-()（）]")


def _plain(value: str) -> str:
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).upper()


def id_number_well_formed(value: str) -> bool:
    """An 18-character id number whose check character (GB 11643, ISO 7064 MOD 11-2) is right, or the
    old 15-digit form."""
    v = _plain(value)
    if len(v) == 15:
        return v.isdigit()
    if len(v) != 18 or not v[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(v[:17], _ID_WEIGHTS, strict=True))
    return v[17] == _ID_CHECK[total % 11]


def phone_well_formed(value: str) -> bool:
    """A mobile number (11 digits, ``1[3-9]…``, optionally after +86) or a fixed line with its area code."""
    v = _plain(value)
    return bool(_MOBILE_WHOLE.fullmatch(v) or _LANDLINE_WHOLE.fullmatch(v))


def malformed_personal_fields(id_number: str, phone: str) -> tuple[str, ...]:
    """The names of the complainant's fields that are given but malformed (never their values)."""
    bad: list[str] = []
    if id_number and not id_number_well_formed(id_number):
        bad.append("complainant.id_number")
    if phone and not phone_well_formed(phone):
        bad.append("complainant.phone")
    return tuple(bad)
