"""Messages in the reader's language: Simplified Chinese or English.

Rule authors and operators are county staff: what the CLI and the server's human-facing output say is
written in English in the code (the gettext message ids) and translated in the catalog
``service/fenliu/locale/zh_CN/LC_MESSAGES/fenliu.po``, managed with Babel (``make messages`` extracts,
``make setup`` compiles). Codes (``[unknown-field]``), field names, rule ids and ``file:line`` are never
translated, so both languages grep alike.

The language is chosen once per process, by :func:`choose`: ``--lang`` when given, else the locale
(``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``, in gettext's order); anything Chinese reads the
zh_CN catalog, anything else English. A message is translated where it is made, with :func:`_`, so a
caller chooses before it loads a pack. The choice is held in a context variable (a thread or task
started afterwards sees it; tests may set it for a block with :func:`language`).
"""

from __future__ import annotations

import contextvars
import gettext
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

DOMAIN: Final = "fenliu"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
#: The languages with a catalog, and what ``--lang`` accepts.
LANGUAGES: Final = ("zh_CN", "en")

_NULL: Final = gettext.NullTranslations()
_current: contextvars.ContextVar[gettext.NullTranslations] = contextvars.ContextVar(
    "fenliu_lang", default=_NULL
)
_loaded: dict[str, gettext.NullTranslations] = {}


def normalize(lang: str) -> str:
    """``zh``, ``zh_CN.UTF-8``, ``zh-Hans``, ``C``, ``en_US`` … → ``zh_CN`` or ``en``."""
    return "zh_CN" if lang.strip().lower().replace("-", "_").startswith("zh") else "en"


def from_environment(env: dict[str, str] | None = None) -> str:
    """The language the locale asks for, in gettext's order of variables."""
    env = dict(os.environ) if env is None else env
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            return normalize(value.split(":")[0])
    return "en"


def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of ``lang`` (English: the message ids themselves)."""
    lang = normalize(lang)
    if lang == "en":
        return _NULL
    if lang not in _loaded:
        _loaded[lang] = gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)
    return _loaded[lang]


def choose(lang: str | None = None) -> str:
    """Set the process's language: ``lang`` when given, else the locale's. Returns it (normalized)."""
    chosen = normalize(lang) if lang else from_environment()
    _current.set(translations(chosen))
    return chosen


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Messages made inside the block are in ``lang``."""
    token = _current.set(translations(lang))
    try:
        yield
    finally:
        _current.reset(token)


def _(message: str) -> str:
    """``message`` in the chosen language."""
    return _current.get().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _current.get().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks ``message`` for the catalog without translating it yet (it is translated where it is shown)."""
    return message
