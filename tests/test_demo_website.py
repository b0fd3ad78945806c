"""The demo web site: Python's documentation server, started, crawled and stopped."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from cluster.config import build_config
from pipelines.data import crawl
from pipelines.demo.website import pydoc_process, pydoc_server

ROOT = Path(__file__).resolve().parent.parent


def test_pydoc_server_serves_the_standard_library_and_stops():
    with pydoc_process() as (url, proc):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        html = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "<title>Pydoc: Index of Modules</title>" in html
        assert 'href="json.html"' in html  # the standard library is indexed...
        assert 'href="torch.html"' not in html  # ...site-packages are not (python -S)
        assert 'href="pipelines.html"' not in html  # nor the directory it was started from
    assert proc.poll() is not None  # stopped when the context closed


def test_small_crawl_of_the_docs_yields_python_documentation(tmp_path: Path):
    cfg = build_config({"data": {"crawl": {"max_pages": 10, "rate": 100.0}}})
    with pydoc_server() as url:
        stats = crawl.run(cfg, [url], str(tmp_path))
    assert stats["counts"]["pages"] == 10
    bodies = {}
    for path in tmp_path.glob("*.warc.gz"):
        with path.open("rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    assert rec.http_headers.get_statuscode() == "200"
                    bodies[rec.rec_headers.get_header("WARC-Target-URI")] = (
                        rec.content_stream().read().decode()
                    )
    assert len(bodies) == 10 and url in bodies
    assert all(u.startswith(url) for u in bodies)
    titles = [re.search(r"<title>(.*?)</title>", html).group(1) for html in bodies.values()]
    assert all(title.startswith("Pydoc: ") for title in titles)
    assert sum("module" in title for title in titles) >= 3  # module pages, rendered by pydoc
    assert all('<a href="index.html">Module Index</a>' in html for html in bodies.values())
    assert bodies[url] == bodies[url + "index.html"]  # the same page under two URLs


def test_module_entry_prints_url_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.demo.website"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert b"Index of Modules" in urllib.request.urlopen(url, timeout=10).read()
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    # the pydoc child went with it
    try:
        urllib.request.urlopen(url, timeout=2)
        served_after = True
    except OSError:
        served_after = False
    assert not served_after
