"""fsspec paths: expanding inputs with clear errors, writing small files anywhere.

Every stage reads and writes through here, so ``s3://bucket/x`` and ``/tmp/x`` behave alike.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable

import fsspec
from fsspec.core import url_to_fs

from cluster.config.errors import InputError

KNOWN_SCHEMES = {"file", "local", "s3", "s3a", "gs", "gcs", "http", "https", "memory", "az", "abfs"}


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``uri`` and the path within it, or one clear InputError."""
    scheme = scheme_of(uri)
    if scheme not in KNOWN_SCHEMES:
        raise InputError(f"{uri}: unknown scheme {scheme!r} (use a local path, s3://, http(s)://)")
    try:
        return url_to_fs(uri)
    except ImportError as exc:
        raise InputError(f"{uri}: no filesystem for {scheme!r} installed ({exc})") from None


def join(base: str, *parts: str) -> str:
    if "://" in base:
        return posixpath.join(base, *parts)
    return posixpath.join(base, *parts) if base else posixpath.join(*parts)


def absolute(uri: str) -> str:
    """A local path made absolute (Ray workers may run elsewhere than the driver); URLs as is."""
    return uri if "://" in uri else os.path.abspath(uri)


def _full(fs: fsspec.AbstractFileSystem, uri: str, path: str) -> str:
    """Re-attach the scheme to a path that a filesystem returned."""
    scheme = scheme_of(uri)
    if scheme in ("file", "local"):
        return path
    if scheme in ("http", "https"):
        return path
    return f"{scheme}://{path}"


def expand_inputs(uris: Iterable[str], suffixes: tuple[str, ...] = ()) -> list[str]:
    """Expand files, directories (recursively) and globs into a sorted list of file URIs.

    ``suffixes`` filters directory listings (not explicitly named files). Raises InputError for
    a path that does not exist, matches nothing, or cannot be read (credentials, permissions).
    """
    files: list[str] = []
    for uri in uris:
        fs, path = filesystem(uri)
        try:
            if scheme_of(uri) in ("http", "https"):
                if not fs.exists(path):
                    raise InputError(f"{uri}: not found or server unreachable")
                files.append(uri)
                continue
            if any(ch in path for ch in "*?["):
                matches = sorted(p for p in fs.glob(path) if fs.isfile(p))
                if not matches:
                    raise InputError(f"{uri}: the pattern matches no file")
                files.extend(_full(fs, uri, p) for p in matches)
            elif fs.isdir(path):
                found = sorted(
                    p
                    for p in fs.find(path)
                    if not suffixes
                    or p.endswith(suffixes)
                    or _strip_compression(p).endswith(suffixes)
                )
                found = [p for p in found if not posixpath.basename(p).startswith((".", "_"))]
                if not found:
                    raise InputError(f"{uri}: directory holds no input file")
                files.extend(_full(fs, uri, p) for p in found)
            elif fs.exists(path):
                files.append(_full(fs, uri, path))
            else:
                raise InputError(f"{uri}: no such file or directory")
        except InputError:
            raise
        except PermissionError as exc:
            raise InputError(f"{uri}: permission denied ({exc})") from None
        except Exception as exc:  # botocore credential errors and friends, as one line
            raise InputError(f"{uri}: cannot be read: {type(exc).__name__}: {exc}") from None
    return files


def _strip_compression(path: str) -> str:
    for ext in (".gz", ".zst", ".bz2", ".xz"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def ensure_dir(uri: str) -> None:
    fs, path = filesystem(uri)
    try:
        fs.makedirs(path, exist_ok=True)
    except Exception as exc:
        raise InputError(f"{uri}: cannot create output directory: {exc}") from None


def write_text(uri: str, text: str) -> None:
    fs, path = filesystem(uri)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "w") as fh:
        fh.write(text)


def read_text(uri: str) -> str:
    fs, path = filesystem(uri)
    with fs.open(path, "r") as fh:
        return fh.read()


def remove_tree(uri: str) -> None:
    """Delete a directory if it exists (a rerun replaces its output, never appends)."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)
