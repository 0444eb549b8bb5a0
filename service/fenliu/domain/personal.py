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


def mask(text: str) -> str:
    """``text`` with every id-number-shaped and mobile-shaped run replaced by a placeholder."""
    if _DIGIT.search(text) is None:
        return text
    text = ID_NUMBER.sub(ID_MASK, text)
    return MOBILE.sub(PHONE_MASK, text)


def looks_personal(text: str) -> bool:
    """Whether ``text``, as a whole (surrounding spaces aside), is shaped like an id number or a mobile."""
    t = text.strip()
    return bool(ID_NUMBER.fullmatch(t) or MOBILE.fullmatch(t))
