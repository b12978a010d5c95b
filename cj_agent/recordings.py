"""Which file(s) in `recordings_dir` are a call's recording: the resolution contract.

A parser says where a call's audio is with two fields of `Call` (cj/model.py):

`recording_name` — one of:

- a **plain file name**, `x.wav`: looked for at `recordings_dir/x.wav`; if the name is
  a FreePBX/IssabelPBX MixMonitor name (`exten-<src>-<dst>-YYYYMMDD-HHMMSS-<uniqueid>.wav`,
  likewise `out-`, `in-`, `q-`, `rg-`, `g<n>-`, `internal-`, `external-`, `ondemand-`,
  `force-`), then also in the dated directory of its own date, `recordings_dir/YYYY/MM/DD/`;
  then in the dated directories of the call's start date at the PBX (source timezone)
  and of the days either side;
- a **relative path** with subdirectories, `2022/07/19/x.wav`: `recordings_dir/<path>`,
  then its shorter tails (`07/19/x.wav` … `x.wav`), then as a plain file name;
- an **absolute path** as the PBX wrote it (`Record()`/MixMonitor in `lastdata`,
  FreeSWITCH `record_session`), `/var/spool/asterisk/monitor/2022/07/19/x.wav`: its
  part below `recordings_dir` when it lies inside it, then its tails from the longest
  (`var/spool/…/x.wav`) to the base name, each below `recordings_dir`, then as a plain
  file name. So `recordings_dir` may be the PBX's own directory or a copy of it mounted
  elsewhere;
- a **lookup key** `uniqueid:<uniqueid>` (the Asterisk CDR's uniqueid, e.g.
  `uniqueid:1658233024.140`): the file whose name ends in `<sep><uniqueid>.<ext>`
  (`<sep>` is `-` or `_`; `<ext>` matches the source's `recording_patterns`), searched
  in the dated directories of the call's start date and the days either side, then the
  top level, then the whole tree (at most `SEARCH_MAX_ENTRIES` entries, `SEARCH_MAX_DEPTH`
  levels; not for tailed sources, whose lookups stop after the top level so that a
  call without a recording costs four directory listings, not a walk). A pair
  `…<uniqueid>-in.<ext>` / `…<uniqueid>-out.<ext>` (MixMonitor `r()` /
  `t()`, also `-r`/`-t`, `-rx`/`-tx`) is taken as the caller's and the callee's legs
  (see below; a mixed file found with them is finished with them). A lookup is
  *optional*: nothing found when the CDR is read means the call has no recording (no
  waiting), so a parser may set it on every call of a PBX that records some. When
  something is found, the call's `recording_name` sent to the server is the found
  file's name (the mixed name for legs); nothing found: no name at all.

The server is sent a base name, never a path or a lookup key: the upload name below.

`recording_legs` — `(caller, callee)`, each in any of the first three forms above: the
two mono files are merged into one stereo WAV, caller left, callee right, uploaded as
the call's recording under the base name of `recording_name` (when set), else the
legs' common stem (`x-in.wav` + `x-out.wav` → `x.wav`), else `<call uuid>.wav`. Both
must be present and settled (waiting up to `recording_wait_s`, as for one file).

Which leg is which: MixMonitor's `r()` file holds what the channel *received* — the
party on that channel speaking — and `t()` what was sent to it. MixMonitor runs on the
caller's channel in FreePBX and in the usual dialplans, so `r()`/`-in` is the caller
and `t()`/`-out` the callee.

Safety: a name with a NUL, a backslash, a control character or a `..` component is
refused (the CDR is quarantined), and so is a candidate that resolves (through
symlinks) outside `recordings_dir`. Every candidate is below `recordings_dir`.

The names and candidates are pure functions of the text; `locate`, `find_by_uniqueid`
and `recording_target` do the file system I/O (synchronous: run them in a thread).
"""

from __future__ import annotations

import enum
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path, PurePosixPath

LOOKUP_PREFIX = "uniqueid:"
SEARCH_MAX_ENTRIES = 100_000  # directory entries looked at by one whole-tree search
SEARCH_MAX_DEPTH = 4  # YYYY/MM/DD/file is depth 4
MAX_TAILS = 16

# FreePBX/IssabelPBX: ${CALLTYPE}-${TO}-${FROM}-${YYYYMMDD}-${HHMMSS}-${UNIQUEID}.wav
_MIXMONITOR = re.compile(
    r"(?P<kind>exten|out|in|q|rg|g\d*|internal|external|ondemand|force|conf)"
    r"-(?P<first>[^/]*?)-(?P<second>[^/]*?)-(?P<date>\d{8})-(?P<time>\d{6})"
    r"-(?P<uniqueid>[^/]+?)(?:-(?P<leg>in|out|r|t|rx|tx))?\.(?P<ext>[A-Za-z0-9]+)"
)
_CALLER_SUFFIXES = ("in", "r", "rx")
_CALLEE_SUFFIXES = ("out", "t", "tx")
_LEG_SUFFIX = re.compile(r"(?P<stem>.+?)[-_](?P<leg>in|out|rx|tx|r|t)")


class UnsafeRecordingName(ValueError):
    """A recording name that would lead out of the recordings directory."""


class Leg(enum.Enum):
    MIXED = "mixed"
    CALLER = "caller"
    CALLEE = "callee"


@dataclass(frozen=True)
class MixMonitorName:
    """The parts of a FreePBX MixMonitor file name."""

    kind: str
    first: str  # `exten-`: the extension called; `out-`: the number dialled
    second: str  # the other party
    day: date
    time: str  # HHMMSS, PBX local time
    uniqueid: str
    leg: Leg


@dataclass(frozen=True)
class Lookup:
    """`uniqueid:<uniqueid>`: find the file by the call's uniqueid."""

    uniqueid: str


def parse_mixmonitor_name(name: str) -> MixMonitorName | None:
    """The parts of `exten-1001-1002-20220719-081945-1658233178.154.wav`, or None."""
    match = _MIXMONITOR.fullmatch(name)
    if match is None:
        return None
    stamp = match["date"]
    try:
        day = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))
    except ValueError:
        return None
    return MixMonitorName(
        kind=match["kind"],
        first=match["first"],
        second=match["second"],
        day=day,
        time=match["time"],
        uniqueid=match["uniqueid"],
        leg=_leg(match["leg"]),
    )


def _leg(suffix: str | None) -> Leg:
    if suffix in _CALLER_SUFFIXES:
        return Leg.CALLER
    if suffix in _CALLEE_SUFFIXES:
        return Leg.CALLEE
    return Leg.MIXED


def parse_reference(value: str) -> Lookup | PurePosixPath:
    """A `recording_name` as a lookup key or a path; UnsafeRecordingName if refused."""
    if value.startswith(LOOKUP_PREFIX):
        uniqueid = value[len(LOOKUP_PREFIX) :].strip()
        if not uniqueid or any(ch in uniqueid for ch in "/\\") or not uniqueid.isprintable():
            raise UnsafeRecordingName(f"recording lookup {value[:80]!r} has no usable uniqueid")
        return Lookup(uniqueid)
    if not value.strip():
        raise UnsafeRecordingName("recording name is empty")
    if "\\" in value or "\0" in value or not value.isprintable():
        raise UnsafeRecordingName(
            f"recording name {value[:80]!r} holds a backslash or a control character"
        )
    path = PurePosixPath(value)
    if ".." in path.parts or path.name in ("", ".", "..") or value.endswith("/"):
        raise UnsafeRecordingName(
            f"recording name {value[:80]!r} is not a file below the directory"
        )
    return path


def dated_dir(day: date) -> PurePosixPath:
    """`YYYY/MM/DD`, where FreePBX puts a day's recordings."""
    return PurePosixPath(f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}")


def around(day: date) -> tuple[date, date, date]:
    """The call's day first, then the days either side (a zone set wrong, midnight)."""
    return day, day - timedelta(days=1), day + timedelta(days=1)


def candidate_paths(
    reference: PurePosixPath, day: date, recordings_dir: PurePosixPath | None = None
) -> list[PurePosixPath]:
    """Paths relative to the recordings directory where `reference` may be, in order.

    `recordings_dir` (absolute) lets an absolute reference inside it map to its part
    below it first.
    """
    found: list[PurePosixPath] = []

    def add(path: PurePosixPath) -> None:
        if path.parts and path not in found:
            found.append(path)

    parts = reference.parts
    if reference.is_absolute():
        parts = parts[1:]
        if recordings_dir is not None:
            normal = PurePosixPath(posixpath.normpath(str(recordings_dir)))
            if reference.is_relative_to(normal) and reference != normal:
                add(reference.relative_to(normal))
    for start in range(max(0, len(parts) - MAX_TAILS), len(parts)):
        add(PurePosixPath(*parts[start:]))
    name = reference.name
    parsed = parse_mixmonitor_name(name)
    if parsed is not None:
        add(dated_dir(parsed.day) / name)
    for other in around(day):
        add(dated_dir(other) / name)
    return found


def leg_of(file_name: str, uniqueid: str) -> Leg | None:
    """Whether `file_name` is the recording (or a leg) of the call `uniqueid`."""
    stem, dot, _ext = file_name.rpartition(".")
    if not dot or not stem:
        return None
    if _ends_with_id(stem, uniqueid):
        return Leg.MIXED
    match = _LEG_SUFFIX.fullmatch(stem)
    if match is not None and _ends_with_id(match["stem"], uniqueid):
        return _leg(match["leg"])
    return None


def _ends_with_id(stem: str, uniqueid: str) -> bool:
    if stem == uniqueid:
        return True
    return stem.endswith(uniqueid) and stem[-len(uniqueid) - 1] in "-_"


def merged_name(caller: str, callee: str, fallback: str) -> str:
    """The upload name of two legs: `x-in.wav` + `x-out.wav` → `x.wav`."""
    a, b = PurePosixPath(caller), PurePosixPath(callee)
    for name in (a.name, b.name):
        match = _LEG_SUFFIX.fullmatch(PurePosixPath(name).stem)
        if match is not None:
            return f"{match['stem']}.wav"
    length = 0
    for x, y in zip(a.stem, b.stem, strict=False):
        if x != y:
            break
        length += 1
    prefix = a.stem[:length].rstrip("-_.")
    return f"{prefix}.wav" if prefix else fallback


# --- file system --------------------------------------------------------------------------


def safe_path(recordings_dir: Path, relative: PurePosixPath) -> Path:
    """`recordings_dir / relative`, refusing one that resolves (symlinks) elsewhere."""
    base = recordings_dir.resolve()
    candidate = recordings_dir / relative
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise UnsafeRecordingName(
            f"recording {str(relative)!r} cannot be resolved: {exc}"
        ) from None
    if resolved == base or not resolved.is_relative_to(base):
        raise UnsafeRecordingName(
            f"recording {str(relative)!r} leads out of the recordings directory {base} "
            f"(to {resolved})"
        )
    return candidate


def candidates(recordings_dir: Path, reference: PurePosixPath, day: date) -> tuple[Path, ...]:
    """The safe candidate paths of a path reference (UnsafeRecordingName if any is not)."""
    absolute = PurePosixPath(recordings_dir.absolute())
    return tuple(
        safe_path(recordings_dir, relative)
        for relative in candidate_paths(reference, day, absolute)
    )


def locate(paths: Sequence[Path]) -> Path | None:
    """The first of `paths` that is a file."""
    for path in paths:
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class Found:
    """What a uniqueid search found."""

    mixed: Path | None = None
    caller: Path | None = None
    callee: Path | None = None
    scanned: int = 0  # directory entries looked at
    walked: bool = False  # the whole-tree stage ran

    def __bool__(self) -> bool:
        return any((self.mixed, self.caller, self.callee))


def find_by_uniqueid(
    recordings_dir: Path,
    uniqueid: str,
    day: date,
    pattern: re.Pattern[str],
    *,
    max_entries: int = SEARCH_MAX_ENTRIES,
    search_tree: bool = True,
) -> Found:
    """The files of call `uniqueid`: dated directories around `day`, the top level, then
    (with `search_tree`) the whole tree (bounded); the first stage that finds anything
    wins. `Found.scanned` counts the directory entries looked at."""
    stages: list[Iterator[os.DirEntry[str]]] = [
        _entries(recordings_dir / dated_dir(other)) for other in around(day)
    ]
    stages.append(_entries(recordings_dir))
    scanned = 0
    for stage in stages:
        found = _collect(stage, uniqueid, pattern)
        scanned += found.scanned
        if found:
            return replace(found, scanned=scanned)
    if not search_tree:
        return Found(scanned=scanned)
    found = _collect(_walk(recordings_dir, max_entries), uniqueid, pattern)
    return replace(found, scanned=scanned + found.scanned, walked=True)


def _collect(entries: Iterator[os.DirEntry[str]], uniqueid: str, pattern: re.Pattern[str]) -> Found:
    hits: dict[Leg, Path] = {}
    scanned = 0
    matching = []
    for entry in entries:
        scanned += 1
        if (
            uniqueid in entry.name
            and pattern.fullmatch(entry.name)
            and (leg := leg_of(entry.name, uniqueid)) is not None
            and entry.is_file()
        ):
            matching.append((entry.path, leg))
    for path, leg in sorted(matching, key=lambda item: item[0]):  # the same on every run
        hits.setdefault(leg, Path(path))
    return Found(hits.get(Leg.MIXED), hits.get(Leg.CALLER), hits.get(Leg.CALLEE), scanned)


def _entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as listing:
            yield from list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return


def _walk(root: Path, max_entries: int) -> Iterator[os.DirEntry[str]]:
    budget = max_entries
    pending: list[tuple[Path, int]] = [(root, 1)]
    while pending and budget > 0:
        directory, depth = pending.pop()
        for entry in _entries(directory):
            budget -= 1
            if budget < 0:
                return
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if depth < SEARCH_MAX_DEPTH:
                    pending.append((Path(entry.path), depth + 1))
            else:
                yield entry


def partner(path: Path) -> Path | None:
    """The other leg's expected path: `x-in.wav` ↔ `x-out.wav` (same spelling family)."""
    stem, suffix = path.stem, path.suffix
    match = _LEG_SUFFIX.fullmatch(stem)
    if match is None:
        return None
    swap = {"in": "out", "out": "in", "r": "t", "t": "r", "rx": "tx", "tx": "rx"}
    separator = stem[len(match["stem"])]
    return path.with_name(f"{match['stem']}{separator}{swap[match['leg']]}{suffix}")


# --- a call's recording ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingTarget:
    """The file(s) of one call's recording, each as candidate paths in order.

    `files` holds one entry (a single recording) or two (the caller's and the callee's
    legs, merged before upload). `extra` are files finished with them (a mixed file
    found beside its legs).
    """

    upload_name: str
    files: tuple[tuple[Path, ...], ...]
    extra: tuple[Path, ...] = ()

    @property
    def merged(self) -> bool:
        return len(self.files) == 2

    def locate(self) -> tuple[Path, ...] | None:
        """The path of every file, or None while any is missing."""
        located = []
        for paths in self.files:
            path = locate(paths)
            if path is None:
                return None
            located.append(path)
        return tuple(located)

    def present(self) -> list[Path]:
        """The files (and extras) there now: what is left to finish."""
        found = [path for path in (locate(paths) for paths in self.files) if path is not None]
        return found + [path for path in self.extra if path.is_file()]

    def describe(self) -> str:
        """The first candidate of each file, for logs."""
        return " + ".join(str(paths[0].name) if paths else "?" for paths in self.files)


@dataclass(frozen=True)
class Resolved:
    """What `recording_target` decided: the target (None: no recording), and the
    `recording_name` to send to the server (a base name, never a path or a lookup key);
    for a lookup, the directory entries it looked at and whether it walked the tree."""

    target: RecordingTarget | None
    server_name: str | None
    scanned: int = 0
    walked: bool = False


def recording_target(
    recordings_dir: Path,
    recording_name: str | None,
    legs: tuple[str, str] | None,
    *,
    day: date,
    fallback_name: str,
    pattern: re.Pattern[str],
    search_tree: bool = True,
) -> Resolved:
    """Apply the contract of the module documentation to one call (worker thread).

    `search_tree=False` keeps a lookup to the dated directories and the top level (a
    bounded cost per call: tailed sources). UnsafeRecordingName when a name is refused.
    """
    if legs is not None:
        refs = [parse_reference(leg) for leg in legs]
        paths: list[PurePosixPath] = []
        for ref in refs:
            if isinstance(ref, Lookup):
                raise UnsafeRecordingName("recording legs must be file names, not a lookup")
            paths.append(ref)
        upload = fallback_name
        if recording_name is not None:
            own = parse_reference(recording_name)
            upload = own.name if isinstance(own, PurePosixPath) else fallback_name
        if upload == fallback_name:
            upload = merged_name(str(paths[0]), str(paths[1]), fallback_name)
        files = tuple(candidates(recordings_dir, path, day) for path in paths)
        return Resolved(RecordingTarget(upload, files), upload)
    if recording_name is None:
        return Resolved(None, None)
    ref = parse_reference(recording_name)
    if isinstance(ref, PurePosixPath):
        return Resolved(
            RecordingTarget(ref.name, (candidates(recordings_dir, ref, day),)), ref.name
        )
    found = find_by_uniqueid(recordings_dir, ref.uniqueid, day, pattern, search_tree=search_tree)
    for path in (found.mixed, found.caller, found.callee):
        if path is not None:
            _check_found(recordings_dir, path)
    caller, callee = found.caller, found.callee
    if caller is not None or callee is not None:
        # One leg found: the other one is expected beside it, under the partner name.
        if caller is None:
            assert callee is not None
            caller = partner(callee) or callee
        if callee is None:
            callee = partner(caller) or caller
        extra = (found.mixed,) if found.mixed is not None else ()
        upload = (
            found.mixed.name
            if found.mixed is not None
            else merged_name(caller.name, callee.name, fallback_name)
        )
        return Resolved(
            RecordingTarget(upload, ((caller,), (callee,)), extra),
            upload,
            found.scanned,
            found.walked,
        )
    if found.mixed is not None:
        target = RecordingTarget(found.mixed.name, ((found.mixed,),))
        return Resolved(target, found.mixed.name, found.scanned, found.walked)
    return Resolved(None, None, found.scanned, found.walked)


def _check_found(recordings_dir: Path, path: Path) -> None:
    safe_path(recordings_dir, PurePosixPath(path.relative_to(recordings_dir)))
