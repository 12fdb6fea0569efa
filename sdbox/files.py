"""Every file sdbox writes goes through :func:`atomic_write`: complete or absent, never redirected.

A key file or a checkpoint holds the secret, so the way it reaches the disk matters as much as
what it holds. The temporary file is created next to its target under a fresh random name with
``O_CREAT | O_EXCL | O_NOFOLLOW``, so a name planted in advance (a symlink to the attacker's
file, a stale world-readable ``.tmp``) is never opened; a secret is created owner-only (0600)
from the first byte; data and folder are fsync'ed, so a crash leaves the old file or the new
one, not a torn one; and the temporary file is removed on any failure. Ctrl-C during a write is
held until the file is complete (then raised), so an interrupted wrap keeps its newest checkpoint
instead of a torn write that hides the interrupt behind torch's own error. A process killed outright (SIGKILL, power loss) can still leave one behind: it is hidden
(``.NAME.<random>.tmp``) and owner-only when it holds a secret.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from pathlib import Path
from typing import BinaryIO, Iterator

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, secret: bool = False, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` atomically once the ``with`` block succeeds.

    ``secret=True`` creates it with mode 0600 (the owner only). ``overwrite=False`` refuses an
    existing ``path`` with :class:`FileExistsError`, checked at the moment of the rename (a hard
    link, which fails rather than replaces), not before the write.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with ctrl_c_held():
        fd, tmp = _create_unique(folder, path.name, 0o600 if secret else 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                _move_to_new_name(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_folder(folder)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and raise it once the block has finished.

    A KeyboardInterrupt raised in the middle of ``torch.save`` leaves its zip writer half-closed,
    and torch then raises its own ``RuntimeError`` that hides the interrupt (the CLI would print a
    traceback instead of "interrupted; rerun to resume"). Writes are short, so holding the signal
    costs the user nothing. Outside the main thread, or when a program installed its own SIGINT
    handler, nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the name of a fresh temporary file that replaces ``path`` once the block succeeds.

    For writers that want a file name, not a file (safetensors' ``save_model``). They reopen the
    file by name, so this is for public files only; a secret goes through :func:`atomic_write`.
    The file ends with the mode the umask gives a new file (0644 under umask 022), whatever the
    writer did: safetensors swaps in its own owner-only (0600) temporary file, and a public
    bundle must be readable by whoever serves or copies it.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_unique(folder, path.name, 0o666)
    public_mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
                os.fchmod(fd, public_mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def write_bytes(path: str | os.PathLike, data: bytes, *, secret: bool = False, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path, secret=secret, overwrite=overwrite) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` through :func:`atomic_write` (a public file)."""
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` itself (``flock`` on its descriptor: no file is left
    behind) for the block: two processes writing one bundle take turns instead of interleaving."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _create_unique(folder: Path, name: str, mode: int) -> tuple[int, Path]:
    """Open a new, never-before-existing file in ``folder``; retry on a name collision."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, _CREATE_FLAGS, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file in {folder} after 100 tries: check who else writes there.")


def _move_to_new_name(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path`` only if nothing has that name: a hard link fails rather than replaces."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system (FAT, some network mounts): check, then rename
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
