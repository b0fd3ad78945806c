"""Why ingest reads WARCs with FastWARC: records/s and MB/s against warcio on the same files.

Both libraries stream every record of the real WARC.gz files in ``shared/data`` (gzip member
per record) and read each payload in full, in this one process, one after the other, best of
``--repeat`` passes. Run: ``.venv/bin/python benchmarks/warc_read.py`` (~20 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"


def read_fastwarc(path: Path) -> tuple[int, int]:
    from fastwarc.warc import ArchiveIterator

    records = payload = 0
    with path.open("rb") as fh:
        for rec in ArchiveIterator(fh, parse_http=True, strict_mode=False):
            records += 1
            payload += len(rec.reader.read())
    return records, payload


def read_warcio(path: Path) -> tuple[int, int]:
    from warcio.archiveiterator import ArchiveIterator

    records = payload = 0
    with path.open("rb") as fh:
        for rec in ArchiveIterator(fh):
            records += 1
            payload += len(rec.content_stream().read())
    return records, payload


def measure(fn: Callable[[Path], tuple[int, int]], files: list[Path], repeat: int) -> dict:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        totals = [fn(path) for path in files]
        best = min(best, time.perf_counter() - start)
    records = sum(r for r, _ in totals)
    payload = sum(p for _, p in totals)
    return {"records": records, "payload_mb": payload / 1e6, "seconds": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared/data folder")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(args.data.glob("web-html-warc/*.warc.gz")) + sorted(
        args.data.glob("cc-warc/*.warc.gz")
    )
    if not files:
        sys.exit(f"no WARC files under {args.data}")
    compressed = sum(p.stat().st_size for p in files) / 1e6
    print(f"{len(files)} files, {compressed:.1f} MB compressed; best of {args.repeat} passes")
    print(f"{'reader':10} {'records':>8} {'payload MB':>11} {'records/s':>10} {'MB/s':>8}")
    rows = {
        name: measure(fn, files, args.repeat)
        for name, fn in [("fastwarc", read_fastwarc), ("warcio", read_warcio)]
    }
    for name, row in rows.items():
        rate = row["records"] / row["seconds"]
        print(
            f"{name:10} {row['records']:8d} {row['payload_mb']:11.1f} {rate:10.0f} "
            f"{row['payload_mb'] / row['seconds']:8.1f}"
        )
    print(
        f"fastwarc / warcio speed: {rows['warcio']['seconds'] / rows['fastwarc']['seconds']:.1f}x"
    )


if __name__ == "__main__":
    main()
