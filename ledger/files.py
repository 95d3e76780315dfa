"""Writing files so that a reader never sees half of one, and never through a link.

A file is written as a temporary file in its folder and renamed over its name
(:meth:`Place.replace`): a reader sees the old bytes or the new, and a hard
link or symlink at the name is replaced, never written into. kx's own files
under ``.kx/`` use :func:`write_atomic`. Every file kx writes under a plan's
root goes through :func:`place_beneath`, which reaches the folder from the
root one component at a time on opened directories (``O_NOFOLLOW``) and
follows a symlink only into places a predicate allows: swapping a folder for a
link mid-write cannot redirect the write.

A temporary file is named ``.NAME.kx-HOST-PID-RANDOM.tmp``. One whose writer
died (its process is gone from this host, or it is an hour old) is removed by
the next write of that name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ledger.errors import BadInput

Refuse = Callable[[Path], "str | None"]  # why a real path (symlinks resolved) may not be written, or None

MAX_LINKS = 40  # symlinks followed in one path, as the kernel's limit
MAX_STEPS = 4096  # components walked in one path, links expanded and folders made again included
STALE_AFTER_S = 3600  # a temporary file this much older than a new one is stale, whoever wrote it
NAME_BYTES = 100  # bytes of a name that its temporary files' names keep (a name has at most 255)
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder (kx's own files).
    ``durable=False``: no fsync, for a cache that a crash may lose (a reader still sees old bytes or new)."""
    path = Path(path)
    try:
        folder = os.open(path.parent, _FOLDER)
    except OSError as exc:  # name the file the user asked for
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        Place(folder, path.name, path).replace(data, durable=durable)
    finally:
        os.close(folder)


def open_regular(path: Path, flags: int = 0, mode: int = 0o644) -> int | None:
    """``path`` opened for reading (with ``flags``, such as ``O_NOFOLLOW`` or ``O_CREAT``), never waiting on a FIFO
    at its name; None, closed again, when what is there is not a regular file. The open's OSError is the caller's."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | flags, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


@dataclass(frozen=True)
class Place:
    """A name in an opened folder: where a file is read and replaced without following a link at the name."""

    folder: int  # the folder's descriptor, open while the place is used
    name: str
    path: Path  # the name's real path, for messages

    def open(self) -> int | None:
        """The regular file at the name opened for reading; None when there is none (nothing, or a link)."""
        try:
            return os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                           dir_fd=self.folder)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def read(self) -> bytes | None:
        """The bytes of the regular file at the name, or None (nothing there, or a link a write replaces)."""
        fd = self.open()
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def replace(self, data: bytes, *, unchanged: Callable[[], bool] | None = None, durable: bool = True) -> bool:
        """``data`` at the name: a temp file here, fsynced (when ``durable``), renamed over it; the mode of a file
        it replaces. ``unchanged`` is asked just before the rename; False from it: nothing is written, and False
        returned."""
        temp = temp_name(self.name)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                         dir_fd=self.folder)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if (mode := self._mode()) is not None:
                    os.fchmod(handle.fileno(), mode)
                if durable:
                    os.fsync(handle.fileno())
            self._sweep(temp)
            if unchanged is not None and not unchanged():
                os.unlink(temp, dir_fd=self.folder)
                return False
            os.rename(temp, self.name, src_dir_fd=self.folder, dst_dir_fd=self.folder)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp, dir_fd=self.folder)
            raise
        if durable:
            os.fsync(self.folder)
        return True

    def _mode(self) -> int | None:
        """The permission bits of the regular file at the name (a new file gets 0666 less the umask)."""
        try:
            found = os.stat(self.name, dir_fd=self.folder, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return found.st_mode & 0o7777 if stat.S_ISREG(found.st_mode) else None

    def _sweep(self, mine: str) -> None:
        """Remove the temp files of this name whose writer is gone: its process is not alive on this host, or
        the file is an hour older than ``mine`` (the folder's own clock: no process clock is compared)."""
        pattern = re.compile(re.escape(f".{_short(self.name)}") + r"\.kx-([0-9a-f]{6})-(\d+)-[0-9a-f]+\.tmp")
        try:
            now = os.stat(mine, dir_fd=self.folder, follow_symlinks=False).st_mtime
            with os.scandir(self.folder) as entries:
                found = [(entry.name, match) for entry in entries if (match := pattern.fullmatch(entry.name))]
        except OSError:
            return
        for name, match in found:
            if name == mine:
                continue
            try:
                age = now - os.stat(name, dir_fd=self.folder, follow_symlinks=False).st_mtime
                if age >= STALE_AFTER_S or (match[1] == _host() and not _alive(int(match[2]))):
                    os.unlink(name, dir_fd=self.folder)
            except OSError:  # gone already: another writer swept it
                continue


def _short(name: str) -> str:
    return os.fsencode(name)[:NAME_BYTES].decode("utf-8", errors="ignore")


def temp_name(name: str, *, pid: int | None = None, host: str | None = None) -> str:
    """A temporary file's name for ``name``, as this process on this host (or ``pid`` on ``host``) makes it."""
    return f".{_short(name)}.kx-{host or _host()}-{pid or os.getpid()}-{os.urandom(4).hex()}.tmp"


@cache
def _host() -> str:
    import socket  # (only a write needs it: not imported on every kx command's path)

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not a pid this system can hold: keep its file
    return True


# --- reaching a folder from a root, one component at a time ------------------------------


@contextmanager
def place_beneath(root: Path, path: Path | str, refuse: Refuse, *, make_folders: bool = True) -> Iterator[Place]:
    """The place of ``path`` (relative to ``root``, or absolute inside it): its folder opened from ``root`` one
    component at a time without following a link (``O_NOFOLLOW``); a symlink on the way is walked through
    only where ``refuse`` allows each folder it leads to and never above ``root``; the folders are made
    (``make_folders``). A symlink at the name is followed when ``refuse`` allows where it leads; else the
    name is the link's own, and a write replaces the link. A refusal is :class:`BadInput`."""
    walk = _Walk(Path(root), refuse, make_folders)
    try:
        yield walk.place(walk.parts_of(Path(path)))
    finally:
        walk.close()


def write_beneath(root: Path, path: Path | str, data: bytes, refuse: Refuse) -> Path:
    """``data`` at ``path`` through :func:`place_beneath`, atomically; the real path written."""
    with place_beneath(root, path, refuse) as place:
        place.replace(data)
        return place.path


def make_folders_beneath(root: Path, folder: Path | str, refuse: Refuse) -> Path:
    """``folder`` and the folders above it, reached as :func:`place_beneath` reaches them; its real path."""
    walk = _Walk(Path(root), refuse, True)
    try:
        walk.enter(walk.parts_of(Path(folder)))
        return walk.here
    finally:
        walk.close()


class _Walk:
    """The opened folders from the root down (``fds``, ``names``): each entered without following a link."""

    def __init__(self, root: Path, refuse: Refuse, make_folders: bool):
        self.root, self.refuse, self.make_folders = root, refuse, make_folders
        self.fds = [os.open(root, _FOLDER)]
        self.names: list[str] = []
        self.links = 0

    @property
    def here(self) -> Path:
        return self.root.joinpath(*self.names)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def parts_of(self, path: Path) -> list[str]:
        """``path``'s components below the root (``..`` left for the walk to refuse above the root)."""
        if not path.is_absolute():
            return list(path.parts)
        if path.is_relative_to(self.root):
            return list(path.relative_to(self.root).parts)
        folder = Path(os.path.realpath(path.parent))  # the root named another way (a symlinked folder above it)
        if folder.is_relative_to(self.root):
            return [*folder.relative_to(self.root).parts, path.name]
        raise BadInput(self._refusal(path))

    def place(self, parts: list[str]) -> Place:
        pending = list(parts)
        for _ in range(MAX_STEPS):
            if len(pending) > 1 or pending and pending[0] in (".", ".."):
                pending[:1] = self._step(pending[0])
                continue
            if not pending:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(self.here))
            name = pending[0]
            if (through := self._link_at_name(name)) is not None:
                pending = through
                continue
            self._check(self.here / name)
            return Place(self.fds[-1], name, self.here / name)
        raise self._too_long()

    def enter(self, parts: list[str]) -> None:
        pending = list(parts)
        for _ in range(MAX_STEPS):
            if not pending:
                return
            pending[:1] = self._step(pending[0])
        raise self._too_long()

    def _step(self, part: str) -> list[str]:
        """Into the folder ``part``: [] once entered; else the parts to walk instead (a link's, or ``part``
        again once made)."""
        if part in ("", "."):
            return []
        if part == "..":
            if not self.names:
                raise BadInput(self._refusal(self.root.parent))
            os.close(self.fds.pop())
            self.names.pop()
            return []
        where = self.here / part
        self._check(where)
        try:
            fd = os.open(part, _FOLDER | os.O_NOFOLLOW, dir_fd=self.fds[-1])
        except FileNotFoundError:
            if not self.make_folders:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(where)) from None
            try:
                os.mkdir(part, dir_fd=self.fds[-1])
            except FileExistsError:
                pass
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(where)) from None
            return [part]
        except OSError as exc:
            through = self._link(part)
            if through is not None:
                return through
            if self._folder_or_gone(part):  # a link when opened, and changed since: open it again
                return [part]
            raise OSError(exc.errno, exc.strerror, str(where)) from None
        self.fds.append(fd)
        self.names.append(part)
        return []

    def _link(self, part: str) -> list[str] | None:
        """The parts a symlink ``part`` leads to (:meth:`_through`); None: no link."""
        try:
            text = os.readlink(part, dir_fd=self.fds[-1])
        except OSError:
            return None
        return self._through(part, text)

    def _through(self, part: str, text: str) -> list[str]:
        """The parts the symlink ``part``, which reads ``text``, leads to, to walk from here (an absolute one: from
        the root)."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(self.here / part))
        if not os.path.isabs(text):
            return list(Path(text).parts)
        parts = self.parts_of(Path(text))
        while self.names:
            os.close(self.fds.pop())
            self.names.pop()
        return parts

    def _folder_or_gone(self, part: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(part, dir_fd=self.fds[-1], follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return True

    def _link_at_name(self, name: str) -> list[str] | None:
        """A symlink at the name that leads where ``refuse`` allows: the parts to walk instead; else None (the
        name is written, replacing any link)."""
        try:
            text = os.readlink(name, dir_fd=self.fds[-1])
        except OSError:
            return None
        leads_to = Path(os.path.realpath(self.here / text))
        if not leads_to.is_relative_to(self.root) or self.refuse(leads_to) is not None:
            return None
        return self._through(name, text)

    def _check(self, real: Path) -> None:
        if problem := self.refuse(real):
            raise BadInput(problem)

    def _refusal(self, path: Path) -> str:
        return self.refuse(path) or f"{path} is outside {self.root}"

    def _too_long(self) -> OSError:
        return OSError(errno.ELOOP, "too many components or links", str(self.here))
