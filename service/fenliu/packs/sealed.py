"""A sealed copy of the pack that is serving, for the workers that (re)start.

A worker that puts a pack live (at start, or by a reload that passed every gate) hands the supervisor
the pack's sources: the bytes each file had when it was read, the bytes its digest was taken of. The
supervisor writes them into a private folder (mode 0700, files read-only), one sub-folder per digest,
keeping the layout of the pack and of the packs it extends, so that relative ``extends`` still hold. A
worker that replaces a dead one starts from that copy and checks that what it loaded has the sealed
digest; a pack on disk that was refused, or is half written, never reaches it. The worker's later
reloads read ``--rules`` as before.

Nothing here knows about the engine or about processes: :class:`Seal` is told what to keep.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypedDict

if TYPE_CHECKING:
    from fenliu.packs.types import Pack

log = logging.getLogger("fenliu.sealed")

KEEP: Final = 2  # sealed packs kept: the current one and the one before (a worker may be loading it)


@dataclass(frozen=True, slots=True)
class SealedPack:
    """Where a sealed pack lies, and the digest a worker must find when it loads it."""

    path: str
    digest: str

    def as_option(self) -> dict[str, str]:
        return {"path": self.path, "digest": self.digest}


class PackSources(TypedDict):
    """What a worker sends to have a pack sealed: its digest, its folder and (path, bytes) of each file."""

    digest: str
    root: str
    files: list[tuple[str, bytes]]


def sources_of(pack: Pack) -> PackSources:
    """What a worker sends to have ``pack`` sealed: a plain, picklable dict."""
    return {"digest": pack.digest, "root": str(pack.root), "files": list(pack.sources)}


class Seal:
    """The supervisor's sealed copies, in a private temporary folder removed by :meth:`close`."""

    def __init__(self) -> None:
        self.current: SealedPack | None = None
        self._dir: Path | None = None
        self._kept: list[Path] = []
        self._count = 0

    def store(self, sources: PackSources) -> SealedPack:
        """Seal the pack described by ``sources`` (see :func:`sources_of`) and make it the current one."""
        digest, root = str(sources["digest"]), os.path.abspath(str(sources["root"]))
        files = [(os.path.abspath(str(f)), bytes(data)) for f, data in sources["files"]]
        if self.current is not None and self.current.digest == digest:
            return self.current
        if not files or not digest.isalnum():
            raise ValueError("nothing to seal")
        common = os.path.commonpath([root, *(os.path.dirname(f) for f, _ in files)])
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="fenliu-sealed-"))  # mode 0700
        self._count += 1
        dest = self._dir / f"{self._count}-{digest}"
        staging = self._dir / f".{self._count}-{digest}.tmp"
        for name, data in files:
            target = staging / os.path.relpath(name, common)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o400)
        (staging / os.path.relpath(root, common)).mkdir(parents=True, exist_ok=True)
        staging.rename(dest)
        self.current = SealedPack(str(dest / os.path.relpath(root, common)), digest)
        self._kept.append(dest)
        while len(self._kept) > KEEP:
            shutil.rmtree(self._kept.pop(0), ignore_errors=True)
        log.info("pack_sealed", extra={"digest": digest, "files": len(files)})
        return self.current

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.current = None
        self._kept.clear()
