"""SHA-256 of files, read in chunks: the one place the project hashes a file's bytes (checkpoints of
hundreds of MB, input images), imported by both the model package and the prediction code."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256"]


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read ``chunk_bytes`` at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
