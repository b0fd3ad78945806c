"""Sources beyond the web: text/Markdown trees and tarballs (books, papers), source-code trees.

One file is one document. Text files are decoded with the same charset detection as web pages;
source files get their language from the extension and pass the code filters
(:mod:`pipelines.data.filters.code`) or are counted under the filter's reason.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from cluster.config import IngestConfig
from pipelines.data.filters.code import code_filter
from pipelines.data.stats import StageStats
from pipelines.data.warc import decode_text, skip

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".ipynb": "jupyter",
    ".js": "javascript", ".mjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".cu": "cuda", ".java": "java", ".kt": "kotlin", ".scala": "scala", ".go": "go",
    ".rs": "rust", ".rb": "ruby", ".php": "php", ".cs": "csharp", ".swift": "swift",
    ".m": "objective-c", ".r": "r", ".jl": "julia", ".lua": "lua", ".pl": "perl",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".sql": "sql", ".hs": "haskell",
    ".ml": "ocaml", ".ex": "elixir", ".erl": "erlang", ".clj": "clojure", ".dart": "dart",
    ".zig": "zig", ".f90": "fortran", ".vue": "vue", ".css": "css", ".scss": "scss",
    ".tex": "tex", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".dockerfile": "dockerfile", ".mk": "makefile", ".cmake": "cmake",
}  # fmt: skip
CODE_FILENAMES = {"makefile": "makefile", "dockerfile": "dockerfile", "cmakelists.txt": "cmake"}


def code_language(name: str) -> str | None:
    """Programming language of a file from its name (``src/a.py`` → ``python``), else None."""
    base = posixpath.basename(name).lower()
    if base in CODE_FILENAMES:
        return CODE_FILENAMES[base]
    return CODE_LANGUAGES.get(posixpath.splitext(base)[1])


def file_kind(name: str) -> str | None:
    """``code``, ``text``, ``tar`` or None (not a file this module reads)."""
    lower = name.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if code_language(lower):
        return "code"
    if lower.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def file_document(name: str, data: bytes, cfg: IngestConfig, stats: StageStats) -> dict | None:
    """The document of one text or source file (``text``, ``url``, ``source``, code ``lang``).

    Binary files, oversized code files and code that fails a filter are counted and skipped.
    """
    kind = file_kind(name)
    if kind not in ("text", "code"):
        skip(stats, "unsupported_format")
        return None
    if b"\x00" in data[:8192]:
        skip(stats, "binary")
        return None
    if kind == "text":
        return {"text": decode_text(data), "url": name, "source": cfg.source or "text"}
    if len(data) > cfg.code.max_file_bytes:
        skip(stats, "code_too_large")
        return None
    text = decode_text(data)
    if not text.strip():
        skip(stats, "empty_text")
        return None
    verdict = code_filter(text, cfg.code)
    if not verdict.keep:
        skip(stats, str(verdict.reason))
        return None
    return {
        "text": text,
        "url": name,
        "source": cfg.source or "code",
        # Code has no natural language: the language column names the programming language.
        "lang": code_language(name),
        "lang_score": 1.0,
    }


def iter_tar(stream: BinaryIO, cfg: IngestConfig, stats: StageStats) -> Iterator[tuple[int, dict]]:
    """(member offset, document) of each text/code member, read in one streaming pass.

    A tarball cut short or corrupt is counted under ``errors``; members before it are kept.
    """
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                stats.add("records_read")
                if member.size > cfg.max_record_bytes:
                    skip(stats, "too_large")
                    continue
                if file_kind(member.name) not in ("text", "code"):
                    skip(stats, "unsupported_format")
                    continue
                handle = archive.extractfile(member)
                data = handle.read() if handle else b""
                doc = file_document(member.name, data, cfg, stats)
                if doc is not None:
                    yield member.offset, doc
    except (tarfile.TarError, EOFError, OSError) as exc:
        stats.add("errors")
        stats.add_to("errors_by_kind", f"corrupt_tar:{type(exc).__name__}")
