"""SHA-256 of files, read in chunks: the one place the project hashes a file's bytes (checkpoints of
hundreds of MB, input images), imported by both the model package and the prediction code."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

__all__ = ["IMAGE_KEY_HEX_DIGITS", "file_sha256", "image_content_key", "merge_image_keys"]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (:func:`hashlib.file_digest`: read in chunks, never whole)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: Hex digits of an image's SHA-256 kept in a model's ``trained_images`` (64 bits: a chance collision among a
#: million images is about 3e-8, and a checkpoint of ten thousand training images carries 160 kB of them).
IMAGE_KEY_HEX_DIGITS = 16


def image_content_key(digest: str) -> str:
    """The short content key of an image file from its hex SHA-256 (:func:`file_sha256`): how a model
    records the images it trained on (``trained_images``), so that a run validating or scoring on one of
    them, under any name or folder, can tell."""
    return digest[:IMAGE_KEY_HEX_DIGITS]


def merge_image_keys(*parts: Iterable[str] | None) -> list[str] | None:
    """Sorted union of image content keys (:func:`image_content_key`; None where no part has any): what a
    network fine-tuned from another has trained on."""
    merged = {str(key) for part in parts for key in (part or ())}
    return sorted(merged) or None
