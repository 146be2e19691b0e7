"""Content-addressed file store with a total size cap (photos, voice notes, drafts).

A file is stored once under ``root/ab/cd/<sha256><ext>`` and named by its sha256, so the same
photo sent twice costs one copy and a visit's evidence is just the hash. Writes go to a
temporary file and are renamed into place (atomic). When the store grows past ``max_bytes``
the least recently written files are evicted; a single file larger than ``max_file_bytes`` is
refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import BinaryIO

_HASH = re.compile(r"^[0-9a-f]{64}$")
_EXT = re.compile(r"^\.[a-z0-9]{1,8}$")


class FileTooLarge(ValueError):
    pass


class FileStore:
    def __init__(self, root: Path | str, max_bytes: int = 2 * 1024 ** 3,
                 max_file_bytes: int = 50 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_file_bytes = min(max_file_bytes, max_bytes)
        self._lock = threading.Lock()

    def _path(self, digest: str, ext: str = "") -> Path:
        return self.root / digest[:2] / digest[2:4] / f"{digest}{ext}"

    def put(self, data: bytes, ext: str = "") -> str:
        """Store ``data`` (idempotent); return its sha256 hex digest."""
        if len(data) > self.max_file_bytes:
            raise FileTooLarge(f"{len(data)} bytes is over the per-file cap")
        ext = ext.lower() if ext and _EXT.match(ext.lower()) else ""
        def place(path: Path) -> None:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)

        return self._settle(hashlib.sha256(data).hexdigest(), ext, place)

    def _settle(self, digest: str, ext: str, place) -> str:
        """Under the lock: an existing copy is only touched; else ``place(path)`` puts the
        bytes there and the store is trimmed to its cap. Returns ``digest``."""
        path = self._path(digest, ext)
        with self._lock:
            if path.exists():
                os.utime(path)
                return digest
            path.parent.mkdir(parents=True, exist_ok=True)
            place(path)
            self._evict(keep=path)
        return digest

    def put_stream(self, src: BinaryIO, ext: str = "", chunk: int = 1 << 20) -> str:
        """Store the rest of file object ``src`` without holding it in memory (an upload's
        spooled part): hashed while it is copied; the same result as ``put``."""
        ext = ext.lower() if ext and _EXT.match(ext.lower()) else ""
        self.root.mkdir(parents=True, exist_ok=True)
        h, size = hashlib.sha256(), 0
        tmp = self.root / f".upload.{os.getpid()}.{threading.get_ident()}.{id(src)}.tmp"
        try:
            with open(tmp, "wb") as out:
                while block := src.read(chunk):
                    size += len(block)
                    if size > self.max_file_bytes:
                        raise FileTooLarge(f"over {self.max_file_bytes} bytes: the per-file cap")
                    h.update(block)
                    out.write(block)
            return self._settle(h.hexdigest(), ext, tmp.replace)
        finally:
            tmp.unlink(missing_ok=True)

    def find(self, digest: str) -> Path | None:
        if not _HASH.match(digest or ""):
            return None
        folder = self.root / digest[:2] / digest[2:4]
        if not folder.is_dir():
            return None
        for p in folder.iterdir():
            if p.name.startswith(digest):
                return p
        return None

    def get(self, digest: str) -> bytes | None:
        p = self.find(digest)
        return p.read_bytes() if p else None

    def usage(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("??/??/*") if p.is_file() and not
                p.name.startswith(".")]

    def _evict(self, keep: Path) -> None:
        files = self._files()
        total = sum(p.stat().st_size for p in files)
        if total <= self.max_bytes:
            return
        for p in sorted(files, key=lambda f: f.stat().st_mtime):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            size = p.stat().st_size
            p.unlink(missing_ok=True)
            total -= size
