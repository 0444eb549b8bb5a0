"""The text normalization that keyword matching relies on is exactly NFKC, then case-folding."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from fenliu.compiling.compiler import _ASCII_FORMS, normalize_text

# Text the way it arrives: Chinese with full-width punctuation and letters, the ideographic space,
# ellipses, combining marks that may compose with what the shortcut produces, and anything else.
_PIECES = st.one_of(
    st.sampled_from(sorted(_ASCII_FORMS)),
    st.sampled_from(["拖欠", "工资", "农民工", "邻居", "排水", "。", "、", "“", "”", "——", "①", "㈱", "ｶﾞ"]),
    st.sampled_from(["\u0301", "\u0308", "\u0323", "\u3099", "\u309a", "A", "e", "K", "ß", "İ"]),
    st.characters(codec="utf-8"),
)


def _reference(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


@settings(max_examples=3_000, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_normalize_text_is_nfkc_then_casefold(s: str) -> None:
    assert normalize_text(s) == _reference(s)


def test_shortcut_covers_full_width_text() -> None:
    s = "ＡＢＣ公司拖欠工资，已经３个月了！　请帮忙……"
    assert normalize_text(s) == _reference(s) == "abc公司拖欠工资,已经3个月了! 请帮忙......"
    assert "，" in _ASCII_FORMS and "…" in _ASCII_FORMS and "　" in _ASCII_FORMS
