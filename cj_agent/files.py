"""Moving processed files: into the archive, the quarantine, or the pending directory.

`move_into(path, directory)` never overwrites: the file keeps its name unless a
*different* file of that name is already there, in which case a numeric suffix is
added (`x.wav` → `x.1.wav`). A file identical to the one already there is simply
removed from its old place, so a move interrupted by a crash and redone after a
restart leaves one copy. The destination name is claimed with `os.link`, which fails
atomically when the name exists; across filesystems the file is copied to a temporary
name in the destination, fsynced and linked the same way.

Synchronous (run it in a worker thread): a cross-filesystem move copies data.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

MAX_SUFFIX = 10_000


class FileMoveError(OSError):
    """A file could not be moved; the message names the file and the destination."""


def move_into(
    path: Path, directory: Path, *, on_placed: Callable[[Path], object] | None = None
) -> Path:
    """Move `path` into `directory` (created if needed); return where it went.

    `on_placed(target)` runs once the file is in place and before the old name is
    removed (the quarantine writes the reason there, so a crash never leaves a
    quarantined file without one).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SUFFIX):
        target = directory / (path.name if n == 0 else _suffixed(path.name, n))
        if target.exists():
            if _same_file_content(path, target):
                if on_placed is not None:
                    on_placed(target)
                path.unlink()
                return target
            continue
        try:
            _link_or_copy(path, target)
        except FileExistsError:  # someone took the name since we looked
            continue
        _apply_umask(target)
        _fsync_directory(directory)
        if on_placed is not None:
            on_placed(target)
        path.unlink(missing_ok=True)
        return target
    raise FileMoveError(
        errno.EEXIST, f"no free name for {path.name} in {directory} after {MAX_SUFFIX} tries"
    )


def process_umask() -> int | None:
    """This process's umask, read without changing it (os.umask would, for a moment,
    for every thread); None where the system does not say (not Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _apply_umask(target: Path) -> None:
    """A kept file gets the permissions of files this process creates: a WAV dropped
    0644 into the spool is archived 0600 under `cj dev`'s umask 077 (the link keeps
    the inode, and with it the mode, unless we change it)."""
    umask = process_umask()
    if not umask:
        return
    try:
        mode = target.stat().st_mode & 0o7777
        if mode & umask:
            target.chmod(mode & ~umask)
    except OSError:  # not ours to change (another owner): the move matters more
        pass


def _suffixed(name: str, n: int) -> str:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return f"{name}.{n}"
    return f"{stem}.{n}.{extension}"


def _same_file_content(a: Path, b: Path) -> bool:
    try:
        if a.samefile(b):
            return False  # a hard link to itself: moving would lose the only name
        return filecmp.cmp(a, b, shallow=False)
    except FileNotFoundError:
        return False


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    # Another filesystem (or one without hard links): copy, then claim the name.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with source.open("rb") as src, temporary.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        shutil.copystat(source, temporary)
        try:
            os.link(temporary, target)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise FileExistsError(exc.errno, exc.strerror, str(target)) from None
            # No hard links here at all: a rename that refuses to overwrite is not
            # portable, so check and rename (the window is ours alone in practice).
            if target.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
            temporary.rename(target)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # The new name must survive a power cut before the old one is gone for good.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_error_file(target: Path, reason: str) -> Path:
    """Write `<target>.error` (atomically) saying why `target` was quarantined."""
    error_path = target.with_name(target.name + ".error")
    temporary = error_path.with_name(f".{error_path.name}.{os.getpid()}.tmp")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    text = f"{reason}\n\nfile: {target.name}\nquarantined at: {stamp}\n"
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(error_path)
    return error_path


def quarantine(path: Path, directory: Path, reason: str) -> Path:
    """Move `path` into the quarantine `directory` with `<name>.error` beside it."""
    return move_into(path, directory, on_placed=lambda target: write_error_file(target, reason))
