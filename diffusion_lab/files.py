"""Files that are never seen half written and never replaced: atomic writes, and fresh names for new outputs."""

import errno
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from diffusion_lab.errors import ConfigError, StorageError, is_first_process

# The write errors a user fixes on the machine (space, quota, permissions), reported in one line.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def write_atomic(path: str | Path, write: Callable[[IO], Any], binary: bool = False) -> Path:
    """Call `write(file)` on a temporary file beside `path`, flush it to disk, then rename it to `path`: a reader
    never sees half a file, and a crash mid-write leaves the previous file whole."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as err:
        written = Path(tmp).stat().st_size if tmp and Path(tmp).exists() else 0
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            raise StorageError(cannot_write(path, err, written)) from None
        raise
    return path


def cannot_write(path: Path, err: OSError, written: int) -> str:
    """The one line for a failed write: the path, why, the space free and the space needed."""
    mb = 1024 ** 2
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(folder).free
    # At least what was written before it failed, and the size of the newest file of its kind beside it.
    siblings = sorted(path.parent.glob(f"*{path.suffix}"), key=lambda p: p.stat().st_mtime) if path.parent.is_dir() else []
    needed = max([written, *(p.stat().st_size for p in siblings[-1:] if p.is_file())])
    need = f"needs at least {needed / mb:.1f} MiB, " if needed else ""
    kept = "the previous file is kept, " if path.is_file() else ""
    return (f"cannot write {path}: {os.strerror(err.errno)} ({need}{free / mb:.1f} MiB free there; {kept}no "
            "temporary file left); free some space or point paths.log_dir / out_dir to a writable disk")


@contextmanager
def removed_if_unfinished(folder: Path) -> Iterator[Path]:
    """A new output folder that is deleted when the block fails: no half-written sample folder stays."""
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def write_json_atomic(path: str | Path, data: dict) -> Path:
    return write_atomic(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def fresh_file(path: Path, sibling_suffix: str = "") -> Path:
    """`path`, or `<stem>-1<suffix>`, `<stem>-2<suffix>`, …: the first name free for it and, with
    `sibling_suffix`, for the file of that suffix beside it (a report's .md), so that no earlier file is replaced."""
    for k in itertools.count():
        candidate = path if k == 0 else path.with_name(f"{path.stem}-{k}{path.suffix}")
        if not candidate.exists() and not (sibling_suffix and candidate.with_suffix(sibling_suffix).exists()):
            if k:
                logging.getLogger(__name__).warning("%s exists: writing %s", path, candidate)
            return candidate


def fresh_dir(base: str | Path) -> Path:
    """Create and return `base`, or `base-1`, `base-2`, …: the first that does not exist yet (never overwrite)."""
    base = Path(base)
    for k in itertools.count():
        path = base if k == 0 else base.with_name(f"{base.name}-{k}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


@contextmanager
def run_lock(run_dir: str | Path, key: str) -> Iterator[None]:
    """Hold a lock on `run_dir` for the block, so that a second process started in the same run directory (two
    resumes of one run at once) is refused in one line naming `key`. The lock is the operating system's (flock on
    the directory itself): nothing is written, and it ends with its process, so a run that was killed never
    leaves its directory locked. Only the job's first process takes it."""
    if not is_first_process():
        yield
        return
    import fcntl

    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(fd)
            raise ConfigError(f"{key}={str(run_dir)!r}: this run directory is in use by "
                              f"{f'process {holder}' if holder else 'another process'}; wait for that run to end "
                              "(or stop it), then start again") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_holder(fd: int) -> int | None:
    """The process holding the flock on the file open as `fd`, from /proc/locks (Linux); None where unknown."""
    info = os.fstat(fd)
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for fields in (line.split() for line in lines):
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None
