"""Compressed files of backups and exports: gzip or zstd, read by what they hold.

Writing, the compression is chosen (``gzip``, ``zstd`` or none) or read from
the file name (``.gz``; ``.zst`` or ``.zstd``). Reading, it is recognised by
the file's first bytes (gzip's and zstd's magic numbers), so a renamed file
still reads. zstd is the ``zstandard`` package (Python 3.11 has no
``compression.zstd``; that module arrived in 3.14).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from agentkeep.errors import InvalidInput

__all__ = [
    "COMPRESSIONS",
    "SUFFIXES",
    "DecompressError",
    "check_compression",
    "compression_of_file",
    "compression_of_name",
    "open_binary",
    "open_text",
    "wrap_writer",
]

COMPRESSIONS = ("gzip", "zstd")
SUFFIXES = {"gzip": ".gz", "zstd": ".zst"}
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
ZSTD_LEVEL = 3

DecompressError = (OSError, EOFError, zstandard.ZstdError)
"""What reading a damaged compressed file raises."""


def check_compression(value: Any, field: str = "compress") -> str | None:
    """``True`` (gzip), ``False``/``None`` (none), ``"gzip"`` or ``"zstd"`` as a compression name."""
    if value is None or value is False:
        return None
    if value is True:
        return "gzip"
    if value in COMPRESSIONS:
        return str(value)
    raise InvalidInput(f"must be one of {', '.join(COMPRESSIONS)} (or true for gzip)", field=field)


def compression_of_name(name: str | Path) -> str | None:
    text = str(name)
    if text.endswith(".gz"):
        return "gzip"
    if text.endswith((".zst", ".zstd")):
        return "zstd"
    return None


def compression_of_file(path: str | Path) -> str | None:
    """The compression a file's first bytes show (None: plain)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


class _ZstdReader(io.RawIOBase):
    """Reads zstd frames one after another; a file that ends inside a frame is an ``EOFError``.

    (``zstandard.open`` returns what it has when the data stops mid-frame, so
    a truncated file would read as a shorter one.)
    """

    def __init__(self, path: str | Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._pending = b""
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            chunk = self._file.read(1 << 16)
            if not chunk:
                if self._started and not self._obj.eof:
                    raise EOFError(
                        "the zstd data ends before its frame does: the file is truncated"
                    )
                return 0
            while chunk:
                if self._obj.eof:  # the next frame
                    self._obj = self._dctx.decompressobj()
                self._started = True
                self._pending += self._obj.decompress(chunk)
                chunk = self._obj.unused_data if self._obj.eof else b""
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


_CHUNK = 1 << 20


def open_binary(path: str | Path, mode: str, compression: str | None) -> IO[bytes]:
    """``path`` opened for bytes (``mode``: ``rb`` or ``wb``) through ``compression``."""
    if compression == "gzip":
        return cast(IO[bytes], gzip.open(path, mode))
    if compression == "zstd":
        if "w" in mode:
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
            return cast(IO[bytes], zstandard.open(path, mode, cctx=cctx))
        return cast(IO[bytes], io.BufferedReader(_ZstdReader(path), _CHUNK))
    return open(path, mode)


def wrap_writer(stream: IO[bytes], compression: str) -> IO[str]:
    """A text stream writing ``compression``-compressed UTF-8 into ``stream`` (left open)."""
    raw: Any
    if compression == "gzip":
        raw = gzip.GzipFile(fileobj=stream, mode="wb")
    else:
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        raw = cctx.stream_writer(stream, closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", newline="\n")


def open_text(path: str | Path, mode: str, compression: str | None) -> IO[str]:
    """``path`` opened for UTF-8 text lines (``mode``: ``r`` or ``w``) through ``compression``."""
    raw = open_binary(path, mode + "b", compression)
    return io.TextIOWrapper(cast(Any, raw), encoding="utf-8", newline="\n")
