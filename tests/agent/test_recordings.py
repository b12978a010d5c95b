"""Recording names as PBXs write them, and where the agent looks for them (pure + files)."""

from __future__ import annotations

from datetime import date
from pathlib import Path, PurePosixPath

import pytest

from cj_agent.recordings import (
    Leg,
    Lookup,
    UnsafeRecordingName,
    candidate_paths,
    find_by_uniqueid,
    leg_of,
    merged_name,
    parse_mixmonitor_name,
    parse_reference,
    partner,
    recording_target,
)
from cj_agent.watch import compile_patterns

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "realcdr" / "asterisk"
MONITOR_NAMES = SHARED / "karthik0112-issabelpbx-monitor-filenames.txt"
WAV = compile_patterns(["*.wav"])
DAY = date(2022, 7, 19)


def test_freepbx_mixmonitor_names_are_parsed() -> None:
    parsed = parse_mixmonitor_name("exten-1001-1002-20220719-081945-1658233178.154.wav")
    assert parsed is not None
    assert (parsed.kind, parsed.first, parsed.second) == ("exten", "1001", "1002")
    assert parsed.day == DAY and parsed.time == "081945"
    assert parsed.uniqueid == "1658233178.154" and parsed.leg is Leg.MIXED
    out = parse_mixmonitor_name("out-9500901528-1001-20220719-004323-1658205803.228.wav")
    assert out is not None and out.kind == "out" and out.first == "9500901528"
    # A uniqueid with the system name in front (systemname set in asterisk.conf).
    queue = parse_mixmonitor_name("q-6500-79161234567-20240128-100406-mainpbx-1706407446.50.wav")
    assert queue is not None and queue.uniqueid == "mainpbx-1706407446.50"
    legs = parse_mixmonitor_name("rg-600-1001-20220719-081945-1658233178.154-in.wav")
    assert legs is not None and legs.leg is Leg.CALLER and legs.uniqueid == "1658233178.154"
    assert parse_mixmonitor_name("9e4c1b7a-3d52-4f08-8c6e-51a2f7d9e444.wav") is None
    assert parse_mixmonitor_name("exten-1-2-20221399-000000-1.2.wav") is None  # no such date


@pytest.mark.skipif(not MONITOR_NAMES.exists(), reason="../shared/realcdr not present")
def test_every_real_issabelpbx_name_joins_by_uniqueid_and_dated_directory() -> None:
    lines = [line for line in MONITOR_NAMES.read_text().splitlines() if line.strip()]
    assert len(lines) == 21
    for line in lines:
        path = PurePosixPath(line)
        parsed = parse_mixmonitor_name(path.name)
        assert parsed is not None, line
        assert leg_of(path.name, parsed.uniqueid) is Leg.MIXED
        # The dated directory it sits in is the one the name's date gives.
        assert path.parent.parts[-3:] == tuple(f"{parsed.day:%Y/%m/%d}".split("/"))
        # An absolute MixMonitor path maps to its place below recordings_dir.
        absolute = PurePosixPath("/var") / path
        tails = candidate_paths(absolute, parsed.day, PurePosixPath("/var/spool/asterisk/monitor"))
        assert tails[0] == PurePosixPath(*path.parts[3:])


def test_leg_of_matches_the_whole_uniqueid_only() -> None:
    uid = "1658233024.14"
    assert leg_of("exten-1-2-20220719-081711-1658233024.14.wav", uid) is Leg.MIXED
    assert leg_of("exten-1-2-20220719-081711-1658233024.140.wav", uid) is None
    assert leg_of("x1658233024.14.wav", uid) is None
    assert leg_of("202401281004_8902-211553_1658233024.14.wav", uid) is Leg.MIXED
    assert leg_of("a-1658233024.14-in.wav", uid) is Leg.CALLER
    assert leg_of("a-1658233024.14_out.wav", uid) is Leg.CALLEE
    assert leg_of("a-1658233024.14-t.wav", uid) is Leg.CALLEE
    assert leg_of("1658233024.14", uid) is None  # no extension


def test_references_and_their_refusals() -> None:
    assert parse_reference("uniqueid:1658233024.140") == Lookup("1658233024.140")
    assert parse_reference("2022/07/19/x.wav") == PurePosixPath("2022/07/19/x.wav")
    assert parse_reference("/var/spool/asterisk/monitor/x.wav").is_absolute()  # type: ignore[union-attr]
    for bad in ("../x.wav", "a/../../x.wav", "a\\b.wav", "x\0.wav", "x\n.wav", "uniqueid:", "a/"):
        with pytest.raises(UnsafeRecordingName):
            parse_reference(bad)


def test_candidates_in_order() -> None:
    name = "exten-1001-1002-20220719-235959-1658233178.154.wav"
    plain = candidate_paths(PurePosixPath(name), date(2022, 7, 20))
    assert [str(p) for p in plain] == [
        name,
        f"2022/07/19/{name}",  # the name's own date
        f"2022/07/20/{name}",  # the call's day at the PBX, then either side
        f"2022/07/21/{name}",
    ]
    absolute = candidate_paths(
        PurePosixPath("/var/spool/asterisk/recording/recording-1001-name.wav"),
        DAY,
        PurePosixPath("/srv/copy"),
    )
    assert [str(p) for p in absolute[:3]] == [
        "var/spool/asterisk/recording/recording-1001-name.wav",
        "spool/asterisk/recording/recording-1001-name.wav",
        "asterisk/recording/recording-1001-name.wav",
    ]
    assert PurePosixPath("recording-1001-name.wav") in absolute
    assert all(not p.is_absolute() and ".." not in p.parts for p in absolute)


def test_merged_names() -> None:
    assert merged_name("a/x-in.wav", "a/x-out.wav", "u.wav") == "x.wav"
    assert merged_name("call-a.wav", "call-b.wav", "u.wav") == "call.wav"
    assert merged_name("left.wav", "right.wav", "u.wav") == "u.wav"
    assert partner(Path("d/x-1.5-in.wav")) == Path("d/x-1.5-out.wav")
    assert partner(Path("d/x-1.5_t.wav")) == Path("d/x-1.5_r.wav")
    assert partner(Path("d/x.wav")) is None


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return path


def test_uniqueid_lookup_searches_dated_directories_then_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "monitor"
    dated = _touch(root / "2022/07/19/exten-1001-1002-20220719-081945-1658233178.154.wav")
    _touch(root / "2022/07/19/exten-1001-1002-20220719-081945-1658233178.1541.wav")
    assert find_by_uniqueid(root, "1658233178.154", DAY, WAV).mixed == dated
    # The day after (a zone set wrong) is searched too; a far-away one by the tree walk.
    assert find_by_uniqueid(root, "1658233178.154", date(2022, 7, 20), WAV).mixed == dated
    odd = _touch(root / "archive/old/out-5-1001-20200101-000000-1577836800.1.wav")
    assert find_by_uniqueid(root, "1577836800.1", DAY, WAV).mixed == odd
    assert not find_by_uniqueid(root, "1577836800.1", DAY, WAV, max_entries=3)
    assert not find_by_uniqueid(root, "999.9", DAY, WAV)
    # Files the source does not treat as recordings are not taken.
    _touch(root / "2022/07/19/exten-1-2-20220719-000000-77.7.txt")
    assert not find_by_uniqueid(root, "77.7", DAY, WAV)


def test_a_lookup_finding_split_legs_makes_a_merged_target(tmp_path: Path) -> None:
    root = tmp_path / "monitor"
    stem = "exten-1001-1002-20220719-081945-1658233178.154"
    caller = _touch(root / f"2022/07/19/{stem}-in.wav")
    resolved = recording_target(
        root, "uniqueid:1658233178.154", None, day=DAY, fallback_name="u.wav", pattern=WAV
    )
    target = resolved.target
    assert target is not None and target.merged
    assert resolved.server_name == target.upload_name == f"{stem}.wav"
    assert target.locate() is None  # the callee's leg is awaited beside it
    callee = _touch(root / f"2022/07/19/{stem}-out.wav")
    assert target.locate() == (caller, callee)
    mixed = _touch(root / f"2022/07/19/{stem}.wav")
    again = recording_target(
        root, "uniqueid:1658233178.154", None, day=DAY, fallback_name="u.wav", pattern=WAV
    ).target
    assert again is not None and again.extra == (mixed,) and again.locate() == (caller, callee)
    none = recording_target(root, "uniqueid:1.1", None, day=DAY, fallback_name="u", pattern=WAV)
    assert none.target is None and none.server_name is None


def test_explicit_legs_and_paths(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    a = _touch(root / "2022/07/19/call-a.wav")
    b = _touch(root / "call-b.wav")
    resolved = recording_target(
        root,
        None,
        ("/var/lib/freeswitch/recordings/2022/07/19/call-a.wav", "call-b.wav"),
        day=DAY,
        fallback_name="u.wav",
        pattern=WAV,
    )
    assert resolved.target is not None and resolved.target.upload_name == "call.wav"
    assert resolved.target.locate() == (a, b)
    named = recording_target(
        root,
        "2022/07/19/m.wav",
        ("call-a.wav", "call-b.wav"),
        day=DAY,
        fallback_name="u",
        pattern=WAV,
    )
    assert named.target is not None and named.target.upload_name == "m.wav"
    with pytest.raises(UnsafeRecordingName):
        recording_target(
            root, None, ("uniqueid:1", "b.wav"), day=DAY, fallback_name="u", pattern=WAV
        )


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    root.mkdir()
    secret = _touch(tmp_path / "secret.wav")
    (root / "x-1.1.wav").symlink_to(secret)
    with pytest.raises(UnsafeRecordingName, match="leads out"):
        recording_target(root, "uniqueid:1.1", None, day=DAY, fallback_name="u", pattern=WAV)
    with pytest.raises(UnsafeRecordingName, match="leads out"):
        recording_target(root, "x-1.1.wav", None, day=DAY, fallback_name="u", pattern=WAV)
