"""Atomic file writes: a temporary file in the target folder, then one rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    Readers never see a half-written file, and an interrupted write leaves nothing behind. With
    ``overwrite=False`` an existing ``path`` raises ``FileExistsError`` and is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(errno.EEXIST, "file exists", str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600 files
        if overwrite:
            os.replace(tmp_path, path)
        else:
            _publish_exclusive(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _publish_exclusive(tmp_path: Path, path: Path) -> None:
    # A hard link fails if ``path`` appeared meanwhile, so a file created by someone else survives.
    try:
        os.link(tmp_path, path)
    except FileExistsError:
        raise
    except OSError:  # file systems without hard links: check, then rename
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp_path, path)
