"""One run per output folder: a lock held for the whole run, and a guard against silently replacing a finished run.

``RunLock``: ``<output_dir>/.vict-run.lock`` is held with an OS advisory lock (``fcntl.flock``) while the run
lives. It records who holds it (pid, host, start time, command), so a second run on the same folder fails at once
naming the holder (``RunLockedError``). The file appears complete: the record is written and flocked in a private
temporary file (``.vict-run.lock.tmp-*``) that is then hard-linked into place, which fails when a lock exists
already; so no other process ever sees the lock file empty, or free before its holder took it, however long the
holder is paused. Where the file system has no hard links it is created in place with ``O_CREAT | O_EXCL`` and an
empty file younger than a few seconds is waited for. A lock whose holder is gone is stale and is cleared with a
warning: the advisory lock is free (the kernel drops it when its process dies, however it dies), or the recorded
process no longer exists on this host. The holder removes the file when it releases it.

``check_previous_run`` / ``remove_previous_run``: a folder that holds an earlier run's outputs (``final/``,
``checkpoints/``, a non-empty ``metrics.jsonl``) is refused unless the run resumes it (``PreviousRunError`` names
both ways forward); with ``overwrite`` exactly the files a run writes are deleted first, nothing else.

In a multi-process run (torchrun, ``accelerate launch``) only the main process (``is_main_process()``) takes the
lock and checks the folder: the other processes write nothing there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from vict.training.checkpoints import CHECKPOINTS_DIR, CONFIG_YAML, FINAL_DIR

try:  # POSIX; elsewhere the lock relies on O_EXCL and the recorded pid alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_NAME = ".vict-run.lock"
"""The lock file inside the output folder."""

_FRESH_S = 5.0
"""A lock file younger than this with no content yet is being written by its creator: wait, do not clear it."""
_ATTEMPTS = 200
_TEMPORARY = ".tmp-"
"""Infix of the private files a lock is written in before it is linked into place."""


# ================================================================================================ the lock
@dataclass(frozen=True)
class LockHolder:
    """Who holds a run lock, as recorded in the lock file (``None`` fields: not recorded)."""

    pid: int | None
    host: str | None
    started: str | None
    command: str | None

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder recorded in a lock file's text; ``None`` when empty or unreadable (being written, or torn)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        pid = data.get("pid")
        return cls(
            pid=pid if isinstance(pid, int) else None,
            host=data.get("host"),
            started=data.get("started"),
            command=data.get("command"),
        )

    def describe(self) -> str:
        """``PID 123 on host gpu01, started 2025-01-01T10:00:00+01:00 (vict train cfg.yaml)``."""
        command = self.command or ""
        if len(command) > 120:
            command = command[:117] + "..."
        return (
            f"PID {self.pid if self.pid is not None else '?'} on host {self.host or '?'}"
            + (f", started {self.started}" if self.started else "")
            + (f" ({command})" if command else "")
        )


class RunLockedError(RuntimeError):
    """The output folder is in use by a live run (``holder``, ``None`` if it recorded nothing readable)."""

    exit_code = 2
    """``vict``'s exit status for this error: the command cannot run as given (see ``vict.cli``)."""

    def __init__(self, output_dir: Path, holder: LockHolder | None, setting: str) -> None:
        self.output_dir, self.holder = output_dir, holder
        who = holder.describe() if holder is not None else "an unidentified process (its lock file is empty)"
        super().__init__(
            f"{setting}={output_dir} is in use by another run: {who}; wait for it to finish or stop it, or choose "
            f"another {setting} (lock file: {output_dir / LOCK_NAME})"
        )


def is_main_process() -> bool:
    """Whether this process is the main one (global rank 0) of its launch, read from the environment the launchers
    set (torchrun and ``accelerate launch``: ``RANK``; MPI launchers their own), so it is known before
    ``accelerate`` starts; a plain process is the main one."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name)
        if value not in (None, ""):
            return value.strip() == "0"
    return True


def _command_line() -> str:
    """This process's command line as the user typed it (``vict train ...``, ``python -m vict train ...``)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = f"python -m {program.parent.name}" if program.name == "__main__.py" else program.name
    return " ".join([name, shlex.join(sys.argv[1:])]).strip()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return True  # cannot tell: assume it lives
    return True


def _try_flock(fd: int, wait_s: float = 0.0) -> bool | None:
    """An exclusive advisory lock on ``fd``: ``True`` taken, ``False`` held by someone else (after ``wait_s``),
    ``None`` when the file system does not support it."""
    if fcntl is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        except OSError as err:
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF):
                return None
            raise


@contextlib.contextmanager
def _folder_mutex(directory: Path) -> Iterator[None]:
    """Serialise removals of the lock file among processes (an advisory lock on the folder itself), so that two
    processes clearing the same stale lock never delete the fresh one the faster of them created."""
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


class RunLock:
    """The run lock of ``output_dir`` (``<output_dir>/.vict-run.lock``); use as a context manager or call
    :meth:`acquire` / :meth:`release`.

    Args:
        output_dir: the run's folder (created if missing; removed again on release if the lock created it and it
            is still empty, so a run refused at its start leaves nothing behind).
        setting: the config key naming the folder, for messages.
        command: what the lock records as the holder's command (default: this process's command line).
    """

    def __init__(self, output_dir: str | Path, setting: str = "output_dir", command: str | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self.setting = setting
        self.command = command if command is not None else _command_line()
        self._fd: int | None = None
        self._created_dir = False

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock, clearing a stale one (with a warning); ``RunLockedError`` when a live run holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this RunLock")
        try:
            self._created_dir = not self.output_dir.exists()
            self.output_dir.mkdir(parents=True, exist_ok=True)
            for _ in range(_ATTEMPTS):
                fd = self._publish()
                if fd is None:
                    self._examine_existing()  # raises when held; returns after clearing a stale lock or waiting
                    continue
                self._fd = fd
                self._clear_orphaned_temporaries()
                return self
            raise RunLockedError(self.output_dir, self._current_holder(), self.setting)
        except PermissionError as err:
            self._remove_created_dir()
            raise PermissionError(
                err.errno,
                f"cannot write to {self.setting}={self.output_dir} ({err.filename}: permission denied); choose a "
                "folder you can write to, or change its permissions",
            ) from err
        except BaseException:
            self._remove_created_dir()
            raise

    def release(self) -> None:
        """Remove the lock file and drop the lock (no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with _folder_mutex(self.output_dir):
                if _same_file(self.path, fd):
                    os.unlink(self.path)
        except OSError as err:  # the folder vanished or turned read-only: the flock is dropped all the same
            logger.warning("could not remove the run lock %s: %s", self.path, err)
        finally:
            os.close(fd)
        self._remove_created_dir()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------ internals
    def _record(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "started_unix": time.time(),
            "command": self.command,
            "output_dir": str(self.output_dir.resolve()),
        }

    def _publish(self) -> int | None:
        """Put a complete, flocked lock file in place: the open descriptor holding it, ``None`` when a lock file
        exists already."""
        temporary = self.output_dir / f"{LOCK_NAME}{_TEMPORARY}{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            if _try_flock(fd, wait_s=2.0) is False:  # only a cleaner examining it this instant can hold it
                os.close(fd)
                return None  # looked at again
            os.write(fd, json.dumps(self._record()).encode())
            os.fsync(fd)
            os.link(temporary, self.path)  # atomic, and fails when the lock file exists
        except FileExistsError:
            os.close(fd)
            return None
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK):
                raise
            return self._create_in_place()  # a file system without hard links
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return fd

    def _create_in_place(self) -> int | None:
        """``_publish`` without hard links: create the lock file itself (``O_EXCL``), then flock and fill it; until
        then others see it empty and wait (``_FRESH_S``)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return None
        try:
            # Ours: only a process examining it at this very moment can hold its flock, and only briefly.
            if _try_flock(fd, wait_s=2.0) is False:
                raise RunLockedError(self.output_dir, None, self.setting)
            os.write(fd, json.dumps(self._record()).encode())
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
            raise
        return fd

    def _clear_orphaned_temporaries(self) -> None:
        """Remove temporary lock files left by processes killed while publishing (their flock is free and they are
        older than ``_FRESH_S``); a live publisher's is flocked from its first moment and kept."""
        for path in self.output_dir.glob(f"{LOCK_NAME}{_TEMPORARY}*"):
            try:
                if time.time() - path.stat().st_mtime < _FRESH_S:
                    continue
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if _try_flock(fd) is not False:
                    path.unlink()
            except OSError:
                pass
            finally:
                os.close(fd)

    def _examine_existing(self) -> None:
        """The lock file exists: raise ``RunLockedError`` if its holder lives, else clear it (or wait a moment if
        it is being written)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:  # released meanwhile
            return
        except PermissionError:  # another user's file: reading it and its flock are enough to examine it
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            free = _try_flock(fd)
            if not _same_file(self.path, fd):  # replaced or removed meanwhile: look again
                return
            holder = LockHolder.parse(_read(fd))
            fresh = time.time() - os.fstat(fd).st_mtime < _FRESH_S
            if holder is None and fresh:  # its creator is writing it
                os.close(fd)
                fd = -1
                time.sleep(0.05)
                return
            pid = holder.pid if holder is not None and holder.host == socket.gethostname() else None
            if pid is not None and not _pid_alive(pid):
                reason = f"its process {pid} is no longer running"
            elif free:
                reason = "no process holds it"
            else:  # held by a live process, or it cannot be told (no flock support and another host)
                raise RunLockedError(self.output_dir, holder, self.setting)
            with _folder_mutex(self.output_dir):
                if _same_file(self.path, fd):
                    os.unlink(self.path)
            logger.warning(
                "cleared a stale run lock %s (%s; it recorded %s)",
                self.path,
                reason,
                holder.describe() if holder is not None else "nothing",
            )
        finally:
            if fd >= 0:
                os.close(fd)

    def _current_holder(self) -> LockHolder | None:
        try:
            return LockHolder.parse(self.path.read_text())
        except OSError:
            return None

    def _remove_created_dir(self) -> None:
        if self._created_dir:
            with contextlib.suppress(OSError):  # not empty (the run wrote there) or gone: keep it as it is
                self.output_dir.rmdir()
            self._created_dir = False


# ==================================================================================== the previous run
METRICS_JSONL = "metrics.jsonl"
LOSS_PNG = "loss.png"
TENSORBOARD_DIR = "tensorboard"
RUN_OUTPUTS: tuple[str, ...] = (FINAL_DIR, CHECKPOINTS_DIR, METRICS_JSONL, LOSS_PNG, CONFIG_YAML, TENSORBOARD_DIR)
"""What a training run writes into its output folder (``vict.recipes.train``): these and the temporary siblings of
an interrupted atomic write of ``final/`` (``.final.tmp-*``, ``.final.old-*``)."""


class PreviousRunError(FileExistsError):
    """The output folder holds an earlier run's outputs and the new run neither resumes nor overwrites it."""

    exit_code = 2
    """``vict``'s exit status for this error: the command cannot run as given (see ``vict.cli``)."""


def _run_outputs(folder: Path) -> list[Path]:
    found = [folder / name for name in RUN_OUTPUTS if (folder / name).exists()]
    found += sorted(folder.glob(f".{FINAL_DIR}.tmp-*")) + sorted(folder.glob(f".{FINAL_DIR}.old-*"))
    return found


def _is_previous_run(folder: Path) -> bool:
    metrics = folder / METRICS_JSONL
    return (
        (folder / FINAL_DIR).exists()
        or (folder / CHECKPOINTS_DIR).exists()
        or (metrics.is_file() and metrics.stat().st_size > 0)
    )


def previous_run_outputs(output_dir: str | Path, stages: Sequence[str] = ()) -> list[Path]:
    """The outputs of an earlier run in ``output_dir`` (its ``stages`` subfolders for a staged method): every file
    and folder a run writes, when there is a run worth keeping (a ``final/``, ``checkpoints/`` or a non-empty
    ``metrics.jsonl``); an empty list otherwise."""
    folders = [f for f in _folders(output_dir, stages) if f.is_dir()]
    if not any(_is_previous_run(f) for f in folders):
        return []
    return [p for f in folders for p in _run_outputs(f)]


def _folders(output_dir: str | Path, stages: Sequence[str]) -> list[Path]:
    root = Path(output_dir)
    return [root, *(root / s for s in stages)]


def _describe(path: Path, root: Path) -> str:
    name = path.relative_to(root).as_posix()
    if path.name == CHECKPOINTS_DIR and path.is_dir():
        steps = sorted(p.name for p in path.iterdir() if p.name.startswith("step-"))
        return f"{name}/ ({len(steps)} checkpoint{'s' if len(steps) != 1 else ''})"
    if path.name == METRICS_JSONL and path.is_file():
        with path.open("rb") as f:
            lines = sum(1 for line in f if line.strip())
        return f"{name} ({lines} record{'s' if lines != 1 else ''})"
    return f"{name}/" if path.is_dir() else name


def check_previous_run(output_dir: str | Path, stages: Sequence[str] = (), setting: str = "train.output_dir") -> None:
    """Raise ``PreviousRunError`` when ``output_dir`` holds an earlier run's outputs (nothing is touched); the message
    lists them and gives both ways forward: resume (``train.resume=true``) or ``--overwrite``."""
    root = Path(output_dir)
    found = previous_run_outputs(root, stages)
    if found:
        raise PreviousRunError(
            f"{setting}={root} already holds a run ({', '.join(_describe(p, root) for p in found)}); continue it "
            "with train.resume=true, or delete those outputs and start over with --overwrite (Python: "
            f"train(..., overwrite=True)), or choose another {setting}"
        )


def remove_previous_run(output_dir: str | Path, stages: Sequence[str] = ()) -> list[Path]:
    """Delete exactly what an earlier run wrote in ``output_dir`` (and in its ``stages`` subfolders, each removed when
    left empty), with a message listing it; anything else in the folder stays. Returns the deleted paths."""
    root = Path(output_dir)
    # Everything a run writes, even when that run recorded nothing worth keeping: the new run starts clean.
    found = [p for f in _folders(root, stages) if f.is_dir() for p in _run_outputs(f)]
    if not found:
        return []
    described = [_describe(p, root) for p in found]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    for stage in stages:
        with contextlib.suppress(OSError):  # kept when the user put something else there
            (root / stage).rmdir()
    logger.warning("--overwrite: removed the previous run's outputs in %s: %s", root, ", ".join(described))
    return found
