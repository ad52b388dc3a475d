"""Files that are not run stores (claims.json, report.html, figures, sweep manifests,
exported tables): every one is written by `write_artifact`, the same way the store writes
its own files.

A file is written whole or not at all: into a temporary sibling (`.NAME.tmp-PID`), fsynced,
renamed over the target with `os.replace`, and the folder fsynced. A full disk or a folder
that cannot be written is one StoreError line ("expected free disk space to ...", "expected a
writable folder to ..."); the temporary file is removed and the previous version of the file,
if any, is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sgdwalk.store.disk import fault, write_atomic


def write_artifact(path, content: str | bytes | Callable[[BinaryIO], None],
                   where: str | None = None) -> Path:
    """Write `content` to `path` atomically, creating its folder; returns the path.

    content: text (written as UTF-8), bytes, or a function that writes into a binary file
    (e.g. `lambda f: frame.to_parquet(f)`).
    where: how error messages name the file (default: its path), e.g. "report PATH".
    """
    path = Path(path)
    where = where or str(path)
    write = content
    if isinstance(content, (str, bytes)):
        data = content.encode("utf-8") if isinstance(content, str) else content

        def write(f):
            f.write(data)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fault(exc, where, "create the output folder") from None
    write_atomic(path, write, where)
    return path
