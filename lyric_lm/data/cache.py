"""The tokenized-data cache on disk: entries appear whole or not at all, are checked cheaply, and heal when damaged.

An entry is `<cache_dir>/<fingerprint>/`: `songs/` and `blocks/` (datasets' `save_to_disk`) and `summary.json`,
written last, which lists every other file of the entry with its size. It is built in a `.tmp-<fingerprint>-*`
folder that names its owner (pid and host in `owner.json`) and then renamed into place, so a reader sees all of an
entry or none of it. A run killed while tokenizing leaves its temporary folder behind; a later run removes it once
its owner is gone, and never while the owner still runs (two runs may build the same entry at once).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
OWNER = "owner.json"
# A temporary folder with no owner file is an older lyric_lm's, or one whose maker is between creating it and
# writing the owner file (microseconds). Past this age it is stale: no build runs that long without the file.
UNOWNED_STALE_S = 3600


def make_temp_dir(cache_dir: Path, fingerprint: str) -> Path:
    """A fresh `.tmp-<fingerprint>-*` folder in `cache_dir` (same filesystem: the final rename is atomic), owned
    by this process."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{fingerprint}-", dir=cache_dir))
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    part = tmp / f"{OWNER}.part"
    part.write_text(json.dumps(owner))
    part.rename(tmp / OWNER)  # whole or absent: a reader never sees half an owner file
    return tmp


def remove_stale_temp_dirs(cache_dir: Path) -> None:
    """Remove the temporary folders of builds that ended without cleaning up (killed, power cut), and leftovers of
    an interrupted removal; folders of builds still running, here or on another host, stay."""
    for trash in cache_dir.glob(".trash-*"):  # only `discard` makes these, and it was cut short
        shutil.rmtree(trash, ignore_errors=True)
    for tmp in cache_dir.glob(".tmp-*"):
        try:
            why = _stale_reason(tmp)
            if why is not None:
                discard(tmp)
                log.info("data: removed the temporary folder %s (%s)", tmp, why)
        except FileNotFoundError:  # its owner finished, or another run removed it meanwhile
            continue
        except OSError as err:  # not ours to fight over: the next run tries again
            log.warning("data: could not remove the temporary folder %s (%s)", tmp, err)


def _stale_reason(tmp: Path) -> str | None:
    """Why `tmp` is stale ("its run, pid 123, has ended"), or None while its owner may still be building."""
    try:
        owner = json.loads((tmp / OWNER).read_text())
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):  # no owner file (or not one of ours): judge by age
        age_s = time.time() - tmp.stat().st_mtime
        return f"no owner file, untouched for {age_s / 3600:.1f} h" if age_s > UNOWNED_STALE_S else None
    if host != socket.gethostname():
        return None  # a shared cache: that host's processes cannot be seen from here
    return None if _running(pid) else f"its run, pid {pid}, has ended"


def _running(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process on Windows: assume it runs
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True  # a reused pid keeps the folder: the safe mistake


def discard(path: Path) -> None:
    """Delete a folder the project made: first renamed aside, so that no run ever opens it half-deleted.

    Of two runs discarding the same folder, one renames it and the other finds it gone (FileNotFoundError, raised).
    """
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """Write `summary.json` last, listing every file of the entry with its size (what `entry_problem` checks)."""
    files = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    (out / SUMMARY).write_text(json.dumps({**summary, "files": files}, indent=1))


def entry_problem(entry: Path) -> str | None:
    """What is wrong with an existing cache entry, from file sizes alone (no data read); None when it looks whole."""
    try:
        summary = json.loads((entry / SUMMARY).read_text())
    except FileNotFoundError:
        return f"no {SUMMARY}"
    except (OSError, ValueError) as err:
        return f"{SUMMARY} unreadable: {type(err).__name__}"
    # Entries written before file sizes were recorded: their layout alone; setup() catches a damaged Arrow file.
    files = summary.get("files") or {"songs/dataset_dict.json": None, "blocks/dataset_dict.json": None}
    for name, size in files.items():
        try:
            actual = (entry / name).stat().st_size
        except FileNotFoundError:
            return f"{name} is missing"
        if size is not None and actual != size:
            return f"{name} has {actual:,} bytes of {size:,}"
    return None
