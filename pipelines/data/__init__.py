"""Phase 1, data: crawl, WARC, ingest and extraction, quality filters, dedup, decontamination,
sources and mixture; documents as Parquet through ``storage`` on any fsspec URL, ``stats`` counting.
"""
