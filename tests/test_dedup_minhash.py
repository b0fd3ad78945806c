"""MinHash signatures: shingling, agreement with datasketch, big and degenerate documents."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash

from pipelines.data.dedup import minhash
from pipelines.data.dedup.exact import exact_hashes, fmix64, normalize, words
from pipelines.data.dedup.synthetic import jaccard, make_corpus, shingles, vocabulary

NUM_PERM = 112


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """Base documents and variants with 1–40 substituted words: Jaccard from ~0.1 to 1."""
    rng = np.random.default_rng(3)
    vocab = vocabulary(None)
    out = []
    for k in (1, 2, 4, 8, 12, 16, 24, 40) * 5:
        base = [vocab[i] for i in rng.integers(0, len(vocab), 200)]
        variant = list(base)
        for pos in rng.choice(200, size=k, replace=False):
            variant[pos] = vocab[int(rng.integers(len(vocab)))]
        out.append((" ".join(base), " ".join(variant)))
    return out


def test_shingle_hashes_count_distinct_ngrams() -> None:
    docs, _ = make_corpus(50, vocabulary(None), seed=1)
    texts = [d["text"] for d in docs]
    hashes, offsets = minhash.shingle_hashes(texts, 5)
    for i, text in enumerate(texts):
        mine = hashes[offsets[i] : offsets[i + 1]]
        assert len(np.unique(mine)) == len(shingles(text, 5))


def test_short_and_empty_documents() -> None:
    a, b = minhash.permutations(NUM_PERM, 1)
    sig = minhash.signatures(["two words", "", "!!!", "two  WORDS"], 5, a, b)
    assert (sig[1] == minhash.EMPTY).all() and (sig[2] == minhash.EMPTY).all()
    assert (sig[0] != minhash.EMPTY).any()
    assert (sig[0] == sig[3]).all()  # case and spacing do not change the words


def test_estimate_agrees_with_datasketch_within_minhash_error(pairs) -> None:
    a, b = minhash.permutations(NUM_PERM, 7)
    mine, theirs, truth = [], [], []
    for left, right in pairs:
        sig = minhash.signatures([left, right], 5, a, b)
        mine.append(float(minhash.jaccard_estimate(sig[0], sig[1])))
        ds = []
        for text in (left, right):
            m = MinHash(num_perm=NUM_PERM, seed=7)
            m.update_batch([" ".join(s).encode() for s in shingles(text, 5)])
            ds.append(m)
        theirs.append(ds[0].jaccard(ds[1]))
        truth.append(jaccard(shingles(left, 5), shingles(right, 5)))
    mine, theirs, truth = map(np.asarray, (mine, theirs, truth))
    sigma = np.sqrt(np.maximum(truth * (1 - truth), 0.01) / NUM_PERM)
    assert np.all(np.abs(mine - truth) <= 4 * sigma)
    assert np.all(np.abs(mine - theirs) <= 4 * np.sqrt(2) * sigma)
    # no bias beyond what datasketch itself shows
    assert np.abs(mine - truth).mean() <= np.abs(theirs - truth).mean() * 1.5 + 0.01


def test_signatures_equal_the_definition_for_small_and_big_documents() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=200_000, dtype=np.uint64)
    offsets = np.array([0, 10, 199_990, 200_000])
    a, b = minhash.permutations(16, 2)
    with np.errstate(over="ignore"):
        direct = np.stack(
            [
                ((hashes[lo:hi, None] * a + b) >> np.uint64(32)).min(0).astype(np.uint32)
                for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)
            ]
        )
    assert (minhash.signatures_from_hashes(hashes, offsets, a, b) == direct).all()


def test_signatures_are_deterministic_and_seeded() -> None:
    text = "the quick brown fox jumps over the lazy dog again and again"
    a1, b1 = minhash.permutations(NUM_PERM, 1)
    a2, b2 = minhash.permutations(NUM_PERM, 2)
    first = minhash.signatures([text], 5, a1, b1)
    assert (first == minhash.signatures([text], 5, a1, b1)).all()
    assert not (first == minhash.signatures([text], 5, a2, b2)).all()
    assert (a1 % 2 == 1).all()


def test_compiled_word_hashes_follow_the_readable_definition() -> None:
    texts = [
        "It's 2 o'clock! Ünïcödé wörds, 中文 too — “quoted” x×y  ",
        "",
        "!!! ...",
        "snake_case and CamelCase\tand\nnewlines",
        "emoji 🙂 inside, fullwidth ＡＢＣ！ and «guillemets»",
    ]
    hashes, offsets = minhash.word_hashes(texts)
    for i, text in enumerate(texts):
        expected = []
        for word in words(text):
            h = 0xCBF29CE484222325
            for byte in word.encode():
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
            expected.append(h)
        assert (hashes[offsets[i] : offsets[i + 1]] == fmix64(np.array(expected, np.uint64))).all()
    assert words(texts[0]) == ["it", "s", "2", "o", "clock", "ünïcödé", "wörds", "中文", "too",
                               "quoted", "x", "y"]  # fmt: skip


def test_exact_normalization() -> None:
    assert normalize("  Hello\tWORLD \n") == "hello world"
    h = exact_hashes(["Hello  world", "hello world\n", "hello, world"])
    assert h[0] == h[1] and h[0] != h[2]
    assert words("It's 2 o'clock!") == ["it", "s", "2", "o", "clock"]
