"""One process per data directory: an exclusive lock held for the life of the process.

Two bots on one ``data_dir`` share a database, a sync token and a crypto store; each would
answer every command and one dies later with "database is locked". The lock file
(``data_dir/civicbot.lock``, an ``fcntl.flock`` the kernel drops when the process ends, however
it ends) makes the second start fail at once, naming the process that holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "civicbot.lock"


class DataDirInUse(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: str):
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"{data_dir} is in use by a running civicbot ({holder})")
        self.pid = pid


class DataDirUnusable(Exception):
    """The data directory cannot be made or written (a file in its path, no permission)."""

    def __init__(self, data_dir: Path, exc: OSError):
        self.reason = str(exc.strerror or exc)
        super().__init__(
            f"cannot use {data_dir} as the bot's data folder: {self.reason} "
            "(set [bot] data_dir to a folder the bot's user can write)"
        )


class DataDirLock:
    """``with DataDirLock(data_dir):`` or :meth:`acquire` / :meth:`release`."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirInUse` at once (never waits); raise
        :class:`DataDirUnusable` when the folder cannot be made or written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirUnusable(self.path.parent, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Written only once the lock is ours, so the pid in the file is always the holder's.
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.fsync(fd)
        except BlockingIOError:  # only flock's: another process holds the lock
            pid = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirInUse(self.path.parent, pid) from None
        except OSError as exc:  # a full disk, a quota: the folder cannot be written
            os.close(fd)  # the kernel drops a lock of ours with it
            raise DataDirUnusable(self.path.parent, exc) from exc
        self._fd = fd

    def acquire_and_release(self) -> None:
        """Raise :class:`DataDirInUse` if a running process holds the lock; hold nothing."""
        self.acquire()
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
