"""Files that are never seen half written and never replaced: atomic writes, and fresh names for new outputs."""

import itertools
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | Path, write: Callable[[IO], Any], binary: bool = False) -> Path:
    """Call `write(file)` on a temporary file beside `path`, flush it to disk, then rename it to `path`: a reader
    never sees half a file, and a crash mid-write leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
