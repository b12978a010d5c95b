"""The durable offsets of tailed files: one small JSON file per source, replaced atomically.

    {"version": 1, "files": {"Master.csv": {"dev": 2049, "ino": 1835, "offset": 51234}}}

Written to a temporary file, fsynced, renamed over the old one, and the directory
fsynced: after a crash (kill -9, power loss) the file is the old or the new one, whole.
An offset is always at the start of a line, and only ever one a restart may resume at
(see `assemble`). A state file that cannot be read is moved aside (`.corrupt`) and every
file is read again from its start: harmless, since a call's uuid is derived from its
key and re-sent calls are upserts.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "tail-offsets.json"


@dataclass(frozen=True)
class FileMark:
    """Where reading of one file (identified by device and inode) resumes."""

    dev: int
    ino: int
    offset: int


class TailState:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self.files: dict[str, FileMark] = {}
        self.problem: str | None = None  # why an unreadable state file was set aside

    def load(self) -> TailState:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            files = data["files"]
            self.files = {
                str(name): FileMark(int(mark["dev"]), int(mark["ino"]), int(mark["offset"]))
                for name, mark in files.items()
            }
            if any(mark.offset < 0 for mark in self.files.values()):
                raise ValueError("negative offset")
        except FileNotFoundError:
            self.files = {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
            self.files = {}
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_name(STATE_FILE + ".corrupt"))
        return self

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = {
            "version": 1,
            "files": {
                name: {"dev": mark.dev, "ino": mark.ino, "offset": mark.offset}
                for name, mark in sorted(self.files.items())
            },
        }
        temporary = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump(body, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self.path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
