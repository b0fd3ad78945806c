"""Benchmark decontamination: which documents share a long word n-gram with evaluation sets.

Pure functions. Evaluation texts and documents are shingled exactly like MinHash shingles
(lower-cased words, 64-bit n-gram hashes, :mod:`pipelines.dedup.minhash`), with ``n`` = 13 by
default (GPT-3's rule); a document is contaminated if any of its n-grams is an eval n-gram.
An eval text shorter than ``n`` words is one n-gram: it matches documents that are exactly it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pipelines.dedup.minhash import shingle_hashes


def strings_in(record: Any) -> Iterator[str]:
    """Every string value in a JSON record, nested lists and objects included."""
    if isinstance(record, str):
        yield record
    elif isinstance(record, dict):
        for value in record.values():
            yield from strings_in(value)
    elif isinstance(record, list):
        for value in record:
            yield from strings_in(value)


class EvalNgrams:
    """Sorted n-gram hashes of evaluation texts, with the eval set each came from."""

    def __init__(self, texts_by_set: dict[str, Sequence[str]], ngram: int) -> None:
        self.ngram = ngram
        self.names = list(texts_by_set)
        hashes, owners = [], []
        for index, texts in enumerate(texts_by_set.values()):
            h, _ = shingle_hashes(list(texts), ngram)
            hashes.append(h)
            owners.append(np.full(len(h), index, dtype=np.int32))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        all_owners = np.concatenate(owners) if owners else np.zeros(0, np.int32)
        order = np.argsort(all_hashes, kind="stable")
        self.hashes, self.owners = all_hashes[order], all_owners[order]

    def __len__(self) -> int:
        return len(self.hashes)

    def match(self, texts: Sequence[str]) -> list[str]:
        """Per text: the name of the first eval set it shares an n-gram with, or ``""``."""
        hashes, offsets = shingle_hashes(list(texts), self.ngram)
        result = [""] * len(texts)
        if len(self.hashes) == 0 or len(hashes) == 0:
            return result
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        hit = self.hashes[at] == hashes
        doc_of = np.repeat(np.arange(len(texts)), np.diff(offsets))
        for doc, owner in zip(doc_of[hit], self.owners[at[hit]], strict=True):
            if not result[doc]:
                result[doc] = self.names[owner]
        return result
