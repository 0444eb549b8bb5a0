"""The supervisor's sealed copy of the serving pack: the same digest, whatever happens to the disk."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from fenliu import PackError, load_pack
from fenliu.packs.sealed import Seal, sources_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("pack_dir", ["rules/wushen", "rules/examples/galutu"])
def test_sealed_copy_loads_with_the_same_digest_and_survives_the_disk(tmp_path: Path, pack_dir: str) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    served = rules / Path(pack_dir).relative_to("rules")
    pack = load_pack(served)
    seal = Seal()
    try:
        sealed = seal.store(sources_of(pack))
        assert sealed.digest == pack.digest
        shutil.rmtree(rules)  # the folder is gone (or broken): the sealed copy does not care
        again = load_pack(sealed.path)
        assert again.digest == pack.digest and [r.id for r in again.rules] == [r.id for r in pack.rules]
        assert again.layers == pack.layers  # an extended base pack is sealed with it
        (private,) = [p for p in Path(sealed.path).parents if p.name.startswith("fenliu-sealed-")]
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o400 for p in Path(sealed.path).rglob("*.yaml"))
        assert seal.store(sources_of(pack)) is sealed  # the same digest is sealed once
    finally:
        seal.close()
    assert not Path(sealed.path).exists()


def test_seal_keeps_the_current_and_the_previous_pack(pack_copy: Path) -> None:
    seal = Seal()
    try:
        paths = []
        for k in range(3):
            manifest = pack_copy / "pack.yaml"
            text = manifest.read_text("utf-8")
            manifest.write_text(text.replace("revision: ", f"revision: k{k}-", 1), "utf-8")
            paths.append(seal.store(sources_of(load_pack(pack_copy))).path)
        assert [Path(p).exists() for p in paths] == [False, True, True]
        assert load_pack(paths[-1]).revision.startswith("k2-")
    finally:
        seal.close()


def test_a_changed_sealed_copy_does_not_load_as_the_sealed_digest(pack_copy: Path) -> None:
    seal = Seal()
    try:
        sealed = seal.store(sources_of(load_pack(pack_copy)))
        manifest = Path(sealed.path) / "pack.yaml"
        manifest.chmod(0o600)
        manifest.write_text(manifest.read_text("utf-8") + "\n# edited\n", "utf-8")
        assert load_pack(sealed.path).digest != sealed.digest  # the worker then loads --rules instead
        manifest.write_text("name: [", "utf-8")
        with pytest.raises(PackError):
            load_pack(sealed.path)
    finally:
        seal.close()
