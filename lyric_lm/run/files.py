"""Writing files safely: whole or not at all, with the user's permissions, and a full or read-only disk as one line."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from lyric_lm.errors import LyricLMError

# Write failures a user can fix, and how each is worded; any other OSError is not theirs to fix and raises as it is.
WRITE_FAILURES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


@contextmanager
def user_write_errors(folder: str | Path, fix: str) -> Iterator[None]:
    """Turn a full disk or a folder we may not write into one line naming `folder` and `fix`."""
    try:
        yield
    except OSError as err:
        reason = WRITE_FAILURES.get(err.errno)
        if reason is None:
            raise
        raise LyricLMError(f"cannot write to {folder}: {reason}; {fix}") from err


def folder_to_write(path: Path) -> tuple[Path, bool]:
    """(the nearest folder of `path` that exists, whether a file can be made there): where `path`'s missing folders
    will be made, checked before any slow work so a bad output path fails at once."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    return folder, folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def temp_path_beside(path: Path) -> Path:
    """A hidden name in `path`'s folder that no other writer picks (a rename within one folder is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_write(path: str | Path, fix: str) -> Iterator[BinaryIO]:
    """Write `path` through a temporary file beside it: fsync, then rename over `path`.

    A kill or a failure while writing leaves `path` as it was and no temporary file. The temporary file is made
    as open() makes files (0o666 less the umask), not 0o600 as tempfile.mkstemp would, so the result has the
    permissions of any other file the user writes.
    """
    path = Path(path)
    tmp = temp_path_beside(path)
    with user_write_errors(path.parent, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)


def give_default_modes(folder: Path) -> None:
    """Give the files under `folder` the mode open() gives a new file there (0o666 less the umask), its folders
    the mode of `folder` (made by mkdir): libraries such as safetensors write their files 0o600."""
    probe = temp_path_beside(folder / "probe")
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    file_mode = stat.S_IMODE(probe.stat().st_mode)
    probe.unlink()
    folder_mode = stat.S_IMODE(folder.stat().st_mode)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(folder_mode if path.is_dir() else file_mode)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut after it cannot bring the old file back)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
