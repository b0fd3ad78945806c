"""The streaming sampler and shard reader (pipelines/pretrain/token_shards.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cluster.config.errors import InputError
from pipelines.pretrain.token_shards import ShardReader, read_index, sample_indices


def test_each_epoch_visits_every_sequence_once_across_ranks() -> None:
    n, world, batch = 24, 2, 3
    seen = []
    position = 0
    while position < n:
        for rank in range(world):
            seen += sample_indices(position, rank, world, batch, n, seed=7)
        position += world * batch
    assert sorted(seen) == list(range(n))
    second = sample_indices(n, 0, world, batch, n, seed=7)
    assert second != seen[:batch]  # a new permutation per epoch


def test_position_is_worker_count_independent() -> None:
    """Global sequence g is the same whoever reads it: resuming with 1 worker instead of 2."""
    two = sample_indices(12, 0, 2, 4, 50, seed=3) + sample_indices(12, 1, 2, 4, 50, seed=3)
    one = sample_indices(12, 0, 1, 8, 50, seed=3)
    assert two == one


def write_shards(tmp_path, dtype="uint16"):
    seq = 4
    a = np.arange(3 * seq, dtype=dtype).reshape(3, seq)
    b = np.arange(100, 100 + 2 * seq, dtype=dtype).reshape(2, seq)
    (tmp_path / "train").mkdir()
    a.tofile(tmp_path / "train" / "a.bin")
    b.tofile(tmp_path / "train" / "b.bin")
    index = {
        "dtype": dtype,
        "seq_len": seq,
        "tokenizer_hash": "x",
        "train": {
            "files": [
                {"path": "train/a.bin", "sequences": 3},
                {"path": "train/b.bin", "sequences": 2},
            ]
        },
        "val": {"files": []},
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    return index


def test_reader_reads_across_files(tmp_path) -> None:
    index = write_shards(tmp_path)
    reader = ShardReader(str(tmp_path), read_index(str(tmp_path)), "train")
    assert reader.sequences == 5
    assert reader.sequence(2).tolist() == [8, 9, 10, 11]
    assert reader.sequence(3).tolist() == [100, 101, 102, 103]
    assert reader.batch([4, 0]).dtype == np.int64
    assert ShardReader(str(tmp_path), index, "val").sequences == 0


def test_reader_streams_from_s3(tmp_path, s3_bucket) -> None:
    import s3fs

    write_shards(tmp_path, dtype="uint32")
    s3fs.S3FileSystem().put(str(tmp_path) + "/", f"{s3_bucket}/shards/", recursive=True)
    uri = f"{s3_bucket}/shards"
    reader = ShardReader(uri, read_index(uri), "train")
    assert reader.sequence(4).tolist() == [104, 105, 106, 107]


def test_missing_index_is_an_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="not a token-shard directory"):
        read_index(str(tmp_path))
