"""Reading the token shards that ``natal tokenize`` writes: index checks and a streaming sampler.

The sampler is a pure function of (seed, position): sequence ``g`` of the whole run (``g``
counts sequences consumed by all workers together) is ``permutation(epoch)[g % N]`` with
``epoch = g // N``. A worker of rank ``r`` out of ``w`` takes ``[p + r·b, p + (r+1)·b)`` at
position ``p``, and the position advances by ``w·b``: it is the same number on every rank, so
a checkpoint stores one integer and a resumed run continues exactly, at any worker count.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from cluster.config.errors import InputError
from pipelines.data import storage


def read_index(shard_dir: str) -> dict[str, Any]:
    """``index.json`` of a shard directory, or a clear InputError."""
    path = storage.join(shard_dir, "index.json")
    fs, local = storage.filesystem(path)
    if not fs.exists(local):
        raise InputError(f"{shard_dir}: not a token-shard directory (no index.json; run tokenize)")
    try:
        index = json.loads(storage.read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    for key in ("dtype", "seq_len", "train", "val", "tokenizer_hash"):
        if key not in index:
            raise InputError(f"{path}: missing field {key!r}")
    return index


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def sample_indices(
    position: int, rank: int, world: int, batch: int, n: int, seed: int
) -> list[int]:
    """Sequence numbers (0..n-1) of rank ``rank``'s micro-batch at global ``position``."""
    start = position + rank * batch
    return [int(epoch_permutation(seed, g // n, n)[g % n]) for g in range(start, start + batch)]


class ShardReader:
    """Random access to the sequences of one split: memory-mapped locally, ranged reads remotely."""

    def __init__(self, shard_dir: str, index: dict[str, Any], split: str) -> None:
        self.seq_len = int(index["seq_len"])
        self.dtype = np.dtype(index["dtype"])
        files = index[split]["files"]
        self.paths = [storage.join(shard_dir, f["path"]) for f in files]
        self.starts = np.cumsum([0] + [int(f["sequences"]) for f in files])
        self.sequences = int(self.starts[-1])
        self._open: dict[int, Any] = {}

    def _file(self, i: int) -> Any:
        if i not in self._open:
            path = self.paths[i]
            if "://" in path:
                fs, local = storage.filesystem(path)
                self._open[i] = fs.open(local, "rb")
            else:
                self._open[i] = np.memmap(path, dtype=self.dtype, mode="r").reshape(
                    -1, self.seq_len
                )
        return self._open[i]

    def sequence(self, k: int) -> np.ndarray:
        """Sequence ``k`` of the split as int64 token ids."""
        i = int(np.searchsorted(self.starts, k, side="right")) - 1
        row = k - int(self.starts[i])
        handle = self._file(i)
        if isinstance(handle, np.ndarray):
            return np.asarray(handle[row], dtype=np.int64)
        width = self.seq_len * self.dtype.itemsize
        handle.seek(row * width)
        return np.frombuffer(handle.read(width), dtype=self.dtype).astype(np.int64)

    def batch(self, indices: list[int]) -> np.ndarray:
        return np.stack([self.sequence(k) for k in indices])
