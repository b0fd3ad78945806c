"""Exact and MinHash-LSH fuzzy deduplication (``natal dedup``, :mod:`.deduplicate`): pure hashing,
banding and connected components, and the Ray driver of the shuffle rounds.
"""
