"""The authoring guides tell the truth: every command they show prints what they show.

The commands of docs/authoring-rules.md (and of its Chinese version, docs/zh/authoring-rules.md, run
with ``--lang zh_CN``) run in order in a scratch folder with a copy of rules/ (tools/guide_outputs.py);
a drifted output fails here, and ``python tools/guide_outputs.py --write`` refreshes the guides. The two
guides keep the same sections and the same commands.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guide_outputs", ROOT / "tools" / "guide_outputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["guide_outputs"] = module
    spec.loader.exec_module(module)
    return module


guide = _tool()


def _text(name: str) -> str:
    return str(guide.GUIDES[name].read_text("utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["en", "zh"])
def test_every_shown_output_is_the_real_output(name: str) -> None:
    problems = guide.check(name)
    assert not problems, "\n\n".join(problems) + "\n\n(refresh: python tools/guide_outputs.py --write)"


def test_the_guides_have_the_same_sections() -> None:
    en, zh = guide.headings(_text("en")), guide.headings(_text("zh"))
    assert len(en) > 20
    assert en == zh


def test_the_guides_show_the_same_commands() -> None:
    en, zh = guide.commands(_text("en")), guide.commands(_text("zh"))
    assert len(en) > 30
    assert en == zh


def test_every_example_pack_is_used_by_the_guide() -> None:
    text = _text("en")
    shipped = {p.parent.name for p in (ROOT / "rules" / "examples").glob("*/pack.yaml")}
    used = set(re.findall(r"rules/examples/([\w-]+)", " ".join(guide.commands(text))))
    assert shipped - {"mypack"} <= used, shipped - used
    for patch in (ROOT / "rules" / "examples" / "edits").glob("*.patch"):
        assert f"rules/examples/edits/{patch.name}" in text, patch.name


def test_the_guides_walk_through_packs_that_ship() -> None:
    for name in ("en", "zh"):
        for command in guide.commands(_text(name)):
            for folder in re.findall(r"\brules/[\w/.-]+", command):
                made = "mypack" in folder or folder.endswith(".md")
                assert made or (ROOT / folder).exists(), (name, command)


def test_a_shortened_output_matches_its_pieces() -> None:
    real = ["a", "b", "c", "d", "took 3.5 s (578 complaints/s)"]
    assert guide.matches(["a", "…", "d", "took 9 s (2 complaints/s)"], real)
    assert guide.matches(["a", "…"], real)
    assert not guide.matches(["a", "…", "x"], real)
    assert not guide.matches(["a", "b"], real)
    assert guide.refreshed(["a", "…", "c", "…", "took 1 s (1 complaints/s)"], real) == [
        "a",
        "…",
        "c",
        "…",
        "took 3.5 s (578 complaints/s)",
    ]
