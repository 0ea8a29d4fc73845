"""Content hashes of files, for the settings records that tell a resumed run whether its inputs changed."""

import hashlib


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks (weight files are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
