"""File helpers shared by training, the zoo and the exporter: hashes, atomic writes, the model card's name."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

CARD_FILE = "README.md"  # a Hub-layout folder's model card, as huggingface_hub names it


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path, durable: bool = False):
    """A temporary path beside ``path`` to write to; when the block succeeds it replaces ``path``
    (file and folder fsynced first with ``durable``), when it fails it is removed: readers see the
    old file or the new one, whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent, os.O_RDONLY)  # the rename itself survives a crash
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def umask_mode(path: Path) -> None:
    """Give a file the mode a plain ``open`` would (0o666 less the umask): some writers (safetensors) create
    theirs owner-only."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
