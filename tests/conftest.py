"""Shared fixtures: the reference pack, prepared once per session on both backends."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fenliu import Decider, Pack, i18n, load_pack

#: tests/pg.py: the private PostgreSQL server fixture (pg_server) of the matter-store tests.
pytest_plugins = ["pg"]

# Messages follow the locale: the tests read them in English (tests/test_i18n.py reads them in Chinese),
# in this process and in every command they start, whatever the machine's locale.
os.environ["LANGUAGE"] = "en"

ROOT = Path(__file__).resolve().parents[1]
WUSHEN = ROOT / "rules" / "wushen"


@pytest.fixture(autouse=True)
def _english_after_each_test() -> Iterator[None]:
    """A command run in this process with ``--lang zh_CN`` leaves the process Chinese (its language and
    ``LANGUAGE``, for argparse and the commands it starts): every test starts from English again,
    whichever tests ran before it in this worker."""
    os.environ["LANGUAGE"] = "en"
    i18n.choose("en")
    yield
    os.environ["LANGUAGE"] = "en"
    i18n.choose("en")


@pytest.fixture(scope="session")
def wushen() -> Pack:
    return load_pack(WUSHEN)


@pytest.fixture(scope="session")
def durable_decider(wushen: Pack) -> Decider:
    return Decider(wushen, backend="durable", memoize=False)


@pytest.fixture(scope="session")
def python_decider(wushen: Pack) -> Decider:
    return Decider(wushen, backend="python", memoize=False)


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    """A writable copy of the reference pack, for tests that break it."""
    dst = tmp_path / "wushen"
    shutil.copytree(WUSHEN, dst)
    return dst
