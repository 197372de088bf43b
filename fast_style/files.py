"""Atomic writes (a temporary file or folder beside the target, then a rename), and writability checks."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fast_style.errors import FastStyleError

__all__ = ["atomic_folder", "atomic_path", "check_writable", "file_sha256", "rescue_path"]


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (remembered while the file's size and modification time stay the same)."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return _sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


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


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; on success its files move to ``path``, else it is deleted.

    A new (or empty) ``path`` appears in one rename, so an interrupted run leaves no half folder
    under its name. An existing folder with files in it needs ``overwrite`` (else
    ``FileExistsError``); the new files then replace those of the same names, and the rest stay.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise FileExistsError(errno.EEXIST, "folder is not empty", str(path))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        if not path.exists():
            os.rename(tmp, path)
            return
        for item in sorted(tmp.rglob("*")):
            if not item.is_dir():
                target = path / item.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def check_writable(path: str | os.PathLike[str], *, folder: bool = False, what: str = "output") -> Path:
    """Fail fast, before any work, unless ``path`` (a file, or a folder with ``folder=True``) can be written.

    Folders that do not exist yet are fine if their nearest existing ancestor is a writable folder;
    writing is tried there (a temporary file, removed at once), so read-only disks are found too.
    """
    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise FastStyleError(f"cannot write {what} {path}: it is a file, not a folder")
    if not folder and path.is_dir():
        raise FastStyleError(f"cannot write {what} {path}: it is a folder; name a file")
    probe = path if folder else path.parent
    probe = Path(os.path.abspath(probe))
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise FastStyleError(f"cannot write {what} {path}: {probe} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fast-style-write-test.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise FastStyleError(f"cannot write {what} {path}: {exc.strerror or exc} in {probe}") from None
    return path


def rescue_path(path: str | os.PathLike[str]) -> Path:
    """Where to keep a result that could not be written to ``path``: a new file in the temporary folder."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"fast-style-rescued-{path.stem}-", suffix=path.suffix or ".bin")
    os.close(fd)
    return Path(tmp)
