"""The similarity signature of a complaint's words: character shingles and MinHash.

Chinese is written without spaces, so words are compared as characters: the text is NFKC-normalized and
case-folded, everything that is not a letter or a digit is dropped, and the shingles are its single
characters (less the most common function characters, :data:`STOP_CHARS`) and its character pairs.

Two texts are compared by *containment*, the share of the smaller shingle set found in the other:
a short phone note that repeats part of a long letter is as much the same matter as the letter. It is
estimated from MinHash (datasketch, ``NUM_PERM`` permutations, a fixed seed and scheme, so signatures
stay comparable across processes and releases): MinHash estimates the Jaccard similarity ``j``, and with
the two set sizes ``|A∩B| = j (|A| + |B|) / (1 + j)``. Each value keeps its low 16 bits (b-bit MinHash:
a chance collision is 1 in 65,536 per value, far below the estimate's own noise). The measurement that
chose all this (against Jaccard, other shingle sizes, exact sets and SimHash) is in docs/matters.md.

A signature is ``SIG_BYTES`` bytes: the shingle count (uint16) then ``NUM_PERM`` uint16 values. It
cannot be turned back into the text. This module knows nothing of stores or complaints.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # datasketch (and the scipy it imports: half a second) only when a signature is made
    from datasketch import MinHash

#: What the MinHash arithmetic works on: arrays of 32-bit unsigned integers.
U32: TypeAlias = npt.NDArray[np.uint32]

__all__ = [
    "NUM_PERM",
    "SIG_BYTES",
    "resemblances",
    "shingles",
    "signature",
    "similarities",
    "similarity",
    "unpack",
]

NUM_PERM: Final = 128
SIG_BYTES: Final = 2 + 2 * NUM_PERM
SEED: Final = 20261204
#: datasketch's permutation scheme, named so that a new default cannot change stored signatures.
SCHEME: Final = "affine32"

#: Characters so common in any complaint that sharing them says nothing about the matter.
STOP_CHARS: Final = frozenset("的了我是在有和就不也都这那他她你们吗呢吧啊把被给到说要对去还又很没么个一上下")

_DROP = re.compile(r"[^\w]|_", re.UNICODE)


def normalize(text: str) -> str:
    return _DROP.sub("", unicodedata.normalize("NFKC", text).casefold())


def shingles(text: str) -> set[str]:
    """Single characters (less :data:`STOP_CHARS`) and character pairs of the normalized text."""
    t = normalize(text)
    out = {c for c in t if c not in STOP_CHARS}
    out.update(t[i : i + 2] for i in range(len(t) - 1))
    return out


@lru_cache(maxsize=1)
def _prototype() -> MinHash:
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)


@lru_cache(maxsize=1)
def _permutations() -> tuple[U32, U32]:
    a, b = _prototype().permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


#: The hash of each shingle seen, at most ``HASHES_KEPT`` of them (about 10 MiB): complaints share most
#: of their characters and pairs, and the SHA-1 of each was half the cost of a MinHash.
HASHES_KEPT: Final = 50_000
_HASHES: dict[str, bytes] = {}


def _fmix32(hv: U32) -> U32:
    """MurmurHash3's 32-bit finalizer, as datasketch's ``affine32`` scheme pre-mixes each hash."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    out: U32 = hv ^ (hv >> np.uint32(16))
    return out


def minhash_values(sh: set[str]) -> U32:
    """The MinHash of the shingles: datasketch's ``MinHash(num_perm, seed, scheme="affine32")`` with
    its default hash (the first 4 bytes of SHA-1, little-endian), computed in one step; equal value
    for value to ``MinHash.update_batch`` (a test compares them)."""
    known = _HASHES
    if len(known) > HASHES_KEPT:  # a bound on memory: forget them all, they come back as they are used
        known.clear()
    hv = np.frombuffer(
        b"".join([known.get(x) or known.setdefault(x, hashlib.sha1(x.encode()).digest()[:4]) for x in sh]),
        dtype="<u4",
    )
    a, b = _permutations()
    out: U32 = (_fmix32(hv.astype(np.uint32))[:, None] * a + b).min(axis=0)
    return out


def signature(text: str) -> bytes:
    """The signature of ``text`` (``SIG_BYTES`` bytes), or b"" when it has no letter or digit."""
    sh = shingles(text)
    if not sh:
        return b""
    low = (minhash_values(sh) & np.uint32(0xFFFF)).astype("<u2")
    return np.array([min(len(sh), 0xFFFF)], dtype="<u2").tobytes() + low.tobytes()


def signature_reference(text: str) -> bytes:
    """:func:`signature` through datasketch's own ``update_batch`` (slower; the reference for tests)."""
    sh = shingles(text)
    if not sh:
        return b""
    from datasketch import MinHash

    m = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=_prototype().permutations, scheme=SCHEME)
    m.update_batch([s.encode() for s in sh])
    values: Any = m.hashvalues
    low = (np.asarray(values, dtype=np.uint64) & 0xFFFF).astype("<u2")
    return np.array([min(len(sh), 0xFFFF)], dtype="<u2").tobytes() + low.tobytes()


def unpack(block: bytes) -> np.ndarray[tuple[int, ...], np.dtype[np.uint16]]:
    """Concatenated signatures as an array of rows (shingle count, then the values)."""
    return np.frombuffer(block, dtype="<u2").reshape(-1, NUM_PERM + 1)


def resemblances(
    sig: bytes, many: np.ndarray[tuple[int, ...], np.dtype[np.uint16]]
) -> tuple[
    np.ndarray[tuple[int, ...], np.dtype[np.float64]], np.ndarray[tuple[int, ...], np.dtype[np.float64]]
]:
    """(containment, Jaccard) of ``sig`` against each row of ``many`` (see :func:`unpack`). ``sig`` and
    the rows may be cut to the same prefix (the count and the first values): a coarser estimate.

    Containment says how much of the smaller text is in the other; Jaccard how much the two share of all
    they hold. A short text of few, common characters is largely "contained" in any long complaint; its
    Jaccard with it stays small, which is what keeps links by words alone apart (docs/matters.md)."""
    if len(sig) < 4 or len(sig) % 2 or len(many) == 0 or many.shape[1] != len(sig) // 2:
        return np.zeros(len(many)), np.zeros(len(many))
    mine = np.frombuffer(sig, dtype="<u2")
    j = np.count_nonzero(many[:, 1:] == mine[1:], axis=1) / (many.shape[1] - 1)  # the share equal
    na = float(mine[0])
    nb = many[:, 0].astype(np.float64)
    inter = j * (na + nb) / (1.0 + j)
    out: np.ndarray[tuple[int, ...], np.dtype[np.float64]] = np.minimum(
        1.0, inter / np.maximum(1.0, np.minimum(na, nb))
    )
    return out, j.astype(np.float64)


def similarities(
    sig: bytes, many: np.ndarray[tuple[int, ...], np.dtype[np.uint16]]
) -> np.ndarray[tuple[int, ...], np.dtype[np.float64]]:
    """The containment of ``sig`` against each row of ``many`` (:func:`resemblances`)."""
    return resemblances(sig, many)[0]


def similarity(a: bytes, b: bytes) -> float:
    """The estimated containment of two signatures (0 when either is empty)."""
    if len(a) != SIG_BYTES or len(b) != SIG_BYTES:
        return 0.0
    return float(similarities(a, unpack(b))[0])
