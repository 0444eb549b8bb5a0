"""The similarity signature of a complaint's words: character shingles, MinHash, LSH bands.

Chinese is written without spaces, so words are compared as overlapping characters: the text is
NFKC-normalized and case-folded, everything that is not a letter or a digit is dropped, and the shingles
are its single characters (without the most common function characters) and its character pairs. Two
texts' similarity is the Jaccard similarity of their shingle sets, estimated by MinHash (datasketch,
``NUM_PERM`` permutations with a fixed seed and scheme, so signatures stay comparable across processes and
releases). The measurement that chose this (against SimHash, exact Jaccard and other shingle sizes) is in
docs/matters.md.

For lookups without a shared identity the signature is cut into ``BANDS`` bands of ``ROWS`` values (LSH);
each band, keyed with the township, is a 63-bit integer a database can index. Two texts of similarity
``s`` share at least one band with probability ``1 - (1 - s**ROWS) ** BANDS``.

The signature cannot be turned back into the text. This module knows nothing of stores or complaints.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import Any, Final

import numpy as np
from datasketch import MinHash

__all__ = ["BANDS", "NUM_PERM", "ROWS", "band_keys", "jaccard", "shingles", "signature", "similarity"]

NUM_PERM: Final = 64
BANDS: Final = 20
ROWS: Final = 2
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


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


@lru_cache(maxsize=1)
def _prototype() -> MinHash:
    return MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)


def signature(text: str) -> bytes:
    """The MinHash signature of ``text``'s shingles (``NUM_PERM`` little-endian uint32); b"" if none."""
    sh = shingles(text)
    if not sh:
        return b""
    proto = _prototype()
    m = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=proto.permutations, scheme=SCHEME)
    m.update_batch([s.encode() for s in sh])
    values: Any = m.hashvalues
    return bytes(np.asarray(values, dtype="<u4").tobytes())


def similarity(a: bytes, b: bytes) -> float:
    """The estimated Jaccard similarity of two signatures (0 when either is empty or they differ in size)."""
    if not a or len(a) != len(b):
        return 0.0
    x = np.frombuffer(a, dtype="<u4")
    y = np.frombuffer(b, dtype="<u4")
    return float(np.count_nonzero(x == y)) / len(x)


def band_keys(sig: bytes, scope: str) -> tuple[int, ...]:
    """The LSH band keys of a signature within ``scope`` (a township code): 63-bit non-negative ints."""
    if len(sig) != NUM_PERM * 4:
        return ()
    width = ROWS * 4
    prefix = scope.encode() + b"\x00"
    out = []
    for i in range(BANDS):
        h = hashlib.blake2b(prefix + bytes([i]) + sig[i * width : (i + 1) * width], digest_size=8)
        out.append(int.from_bytes(h.digest(), "big") >> 1)
    return tuple(out)
