"""Files that hold keys and signed documents: written atomically, read with a limit.

Shared by the keystores here, the EVM wallet's Web3 Secret Storage files and
mandates, so every one of them refuses to clobber, refuses oversized or
non-regular files, and reports errors alike (naming the path, never the
content).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._exceptions import KeystoreError

__all__ = ["read_keystore", "read_limited", "write_atomically", "write_keystore"]


def write_atomically(path: Path, data: bytes, *, private: bool, overwrite: bool) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new, never half.

    ``private`` files are created 0600 (and forced to it, whatever the umask);
    others get 0644 less the umask. Without ``overwrite`` an existing ``path``
    raises ``FileExistsError`` and is left alone.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    try:
        try:
            if private and hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            _place_without_clobbering(tmp, path)
    finally:
        # Gone already after a successful rename; otherwise do not leave it behind.
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _place_without_clobbering(tmp: Path, path: Path) -> None:
    try:
        # link() fails if ``path`` exists: no window in which another writer's
        # file could be replaced between a check and the rename.
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # Filesystems without hard links: check, then rename (a tiny race).
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) elsewhere.
    if os.name != "posix":  # pragma: no cover
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def read_limited(path: Path, limit: int) -> tuple[bytes, int]:
    """A regular file's bytes (at most ``limit``) and its permission bits.

    ``ValueError`` when it is not a regular file or is larger than ``limit``;
    the mode is taken from the open descriptor, so it describes what was read.
    """
    with path.open("rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data, stat.S_IMODE(info.st_mode)


def write_keystore(
    path: str | os.PathLike[str], document: Mapping[str, Any], *, overwrite: bool
) -> None:
    """Write an encrypted key document as JSON, atomically, mode 0600.

    Shared by every keystore format (ours, and the Web3 Secret Storage one the
    EVM wallet writes) so they refuse to clobber and report errors alike.
    """
    data = json.dumps(dict(document), indent=2).encode("ascii") + b"\n"
    try:
        write_atomically(Path(path), data, private=True, overwrite=overwrite)
    except FileExistsError:
        raise KeystoreError(
            f"keystore {os.fspath(path)!r} already exists; pass overwrite=True to replace it"
        ) from None
    except OSError as exc:
        raise KeystoreError(
            f"cannot write keystore {os.fspath(path)!r}: {exc.strerror or type(exc).__name__}"
        ) from exc


def read_keystore(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read a key file of at most ``limit`` bytes that only its owner can read."""
    name = repr(os.fspath(path))
    try:
        raw, mode = read_limited(Path(path), limit)
    except OSError as exc:
        raise KeystoreError(
            f"cannot read keystore {name}: {exc.strerror or type(exc).__name__}"
        ) from exc
    except ValueError as exc:
        raise KeystoreError(f"cannot read keystore {name}: {exc}") from None
    if os.name == "posix" and mode & 0o077:
        raise KeystoreError(
            f"keystore {name} is accessible by group or others (mode {mode:04o}); "
            "restrict it with chmod 600"
        )
    return raw
