"""The double-sign guard on disk: the last (height, round, type) this validator signed.

The engine emits "persist LastSigned" before any signature leaves; the shell calls `save()`,
which returns only after the bytes are on disk (temp file, fsync, rename, fsync of the
directory).  After kill -9 the restarted engine is seeded with `load()`, so it can never sign
two different things for one (H, R, type).  The content is the engine's own canonical encoding;
this module only makes it durable.
"""

from pathlib import Path

from node.errors import StorageError
from node.keys import write_private_file

_MAGIC = b"FCLS1\n"


class LastSignedFile:
    def __init__(self, path: Path) -> None:
        self._path = path

    def load(self) -> bytes | None:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return None
        if not data.startswith(_MAGIC):
            raise StorageError(f"{self._path}: not a fedchain LastSigned file; refusing to sign")
        return data[len(_MAGIC) :]

    def save(self, encoded: bytes) -> None:
        write_private_file(self._path, _MAGIC + encoded)
