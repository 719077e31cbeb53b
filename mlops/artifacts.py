"""Artifacts through Django's storage API (a local directory by default, any storage backend in
production): write bytes under a tenant's prefix with their SHA-256, open them again to stream.

Names are built here from ids only, never from user input, so no path can escape the prefix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


@dataclass(frozen=True)
class Stored:
    path: str
    checksum: str
    size_bytes: int


def artifact_write(*, organization_id: int, kind: str, name: str, data: bytes) -> Stored:
    """Store `data` as mlops/<organization>/<kind>/<name>; the storage may pick another name if
    that one is taken (it never overwrites), so the returned path is the one to keep."""
    path = default_storage.save(f"mlops/{organization_id}/{kind}/{name}", ContentFile(data))
    return Stored(path=path, checksum=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def artifact_open(path: str):
    return default_storage.open(path, "rb")


def artifact_read(path: str) -> bytes:
    with artifact_open(path) as handle:
        return handle.read()
