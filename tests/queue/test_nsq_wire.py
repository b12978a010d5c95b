"""The NSQ client's sans-IO parts: framing, commands, names, lookupd answers, policies."""

from __future__ import annotations

import json
import random
import struct

import pytest

from cj.queue.nsq import lookupd, policy, wire
from cj.queue.nsq.errors import NsqConfigError, NsqError, NsqProtocolError


def _frame(frame_type: int, data: bytes) -> bytes:
    return struct.pack(">ll", len(data) + 4, frame_type) + data


def _message(message_id: bytes, attempts: int, body: bytes, timestamp: int = 123) -> bytes:
    return _frame(2, struct.pack(">qH", timestamp, attempts) + message_id + body)


# --- frames ------------------------------------------------------------------------------


def test_decoder_splits_frames_fed_byte_by_byte() -> None:
    stream = (
        _frame(0, b"OK")
        + _frame(1, b'E_BAD_TOPIC PUB topic name "x y" is not valid')
        + _message(b"0123456789abcdef", 3, b'{"job": 1}', timestamp=1_700_000_000_000_000_000)
        + _frame(0, b"_heartbeat_")
    )
    decoder = wire.FrameDecoder()
    frames: list[wire.Frame] = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        frames.extend(decoder.frames())
    assert frames == [
        wire.ResponseFrame(b"OK"),
        wire.ErrorFrame("E_BAD_TOPIC", 'PUB topic name "x y" is not valid'),
        wire.MessageFrame(
            id=b"0123456789abcdef",
            attempts=3,
            timestamp_ns=1_700_000_000_000_000_000,
            body=b'{"job": 1}',
        ),
        wire.ResponseFrame(b"_heartbeat_"),
    ]


def test_decoder_returns_nothing_until_a_frame_is_complete() -> None:
    decoder = wire.FrameDecoder()
    whole = _frame(0, b"CLOSE_WAIT")
    decoder.feed(whole[:-1])
    assert decoder.next_frame() is None
    decoder.feed(whole[-1:])
    assert decoder.next_frame() == wire.ResponseFrame(b"CLOSE_WAIT")
    assert decoder.next_frame() is None


def test_attempts_are_unsigned_16_bit() -> None:
    decoder = wire.FrameDecoder()
    decoder.feed(_message(b"0123456789abcdef", 40000, b"x"))
    frame = decoder.next_frame()
    assert isinstance(frame, wire.MessageFrame)
    assert frame.attempts == 40000  # pynsq alone would say -25536


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (struct.pack(">l", 2) + b"xx", "invalid NSQ frame size 2"),
        (struct.pack(">l", -1), "invalid NSQ frame size -1"),
        (_frame(7, b"??"), "unknown NSQ frame type 7"),
        (_frame(2, b"short"), "message frame too short"),
    ],
)
def test_garbage_is_a_protocol_error(raw: bytes, problem: str) -> None:
    decoder = wire.FrameDecoder()
    decoder.feed(raw)
    with pytest.raises(NsqProtocolError, match=problem):
        decoder.next_frame()


def test_oversized_frame_is_refused_before_buffering_it() -> None:
    decoder = wire.FrameDecoder(max_frame_bytes=1024)
    decoder.feed(struct.pack(">l", 1025))
    with pytest.raises(NsqProtocolError, match="1025"):
        decoder.next_frame()


def test_error_frame_becomes_nsq_error_with_code() -> None:
    error = wire.parse_error(b"E_INVALID cannot SUB in current state").to_exception("h:1")
    assert isinstance(error, NsqError)
    assert (error.code, error.description, error.address) == (
        "E_INVALID",
        "cannot SUB in current state",
        "h:1",
    )
    assert "E_INVALID" in str(error) and "h:1" in str(error)


# --- commands ----------------------------------------------------------------------------


def test_command_encodings_follow_the_spec() -> None:
    message_id = b"0123456789abcdef"
    assert wire.subscribe("jobs", "workers") == b"SUB jobs workers\n"
    assert wire.ready(8) == b"RDY 8\n"
    assert wire.finish(message_id) == b"FIN 0123456789abcdef\n"
    assert wire.requeue(message_id, 2.5) == b"REQ 0123456789abcdef 2500\n"
    assert wire.touch(message_id) == b"TOUCH 0123456789abcdef\n"
    assert wire.NOP == b"NOP\n"
    assert wire.CLS == b"CLS\n"
    assert wire.pub("jobs", b"abc") == b"PUB jobs\n" + struct.pack(">l", 3) + b"abc"
    body = struct.pack(">l", 2) + struct.pack(">l", 1) + b"a" + struct.pack(">l", 2) + b"bc"
    assert wire.mpub("jobs", [b"a", b"bc"]) == b"MPUB jobs\n" + struct.pack(">l", len(body)) + body


def test_identify_body_negotiates_features() -> None:
    command = wire.identify(
        client_id="enc-1",
        hostname="host.example",
        user_agent="ua/1",
        heartbeat_interval_ms=30000,
        msg_timeout_ms=300000,
    )
    assert command.startswith(b"IDENTIFY\n")
    (size,) = struct.unpack(">l", command[9:13])
    body = json.loads(command[13:])
    assert size == len(command) - 13
    assert body == {
        "client_id": "enc-1",
        "hostname": "host.example",
        "user_agent": "ua/1",
        "feature_negotiation": True,
        "heartbeat_interval": 30000,
        "msg_timeout": 300000,
    }


@pytest.mark.parametrize(
    ("delay_s", "ms"),
    [(0, 0), (-3, 0), (float("nan"), 0), (0.0004, 0), (1.2345, 1234), (7200, 3_600_000)],
)
def test_requeue_delay_is_whole_ms_within_nsqd_range(delay_s: float, ms: int) -> None:
    assert wire.requeue_delay_ms(delay_s) == ms


def test_empty_bodies_and_bad_ids_are_refused_before_the_wire() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        wire.pub("jobs", b"")
    with pytest.raises(ValueError, match="must not be empty"):
        wire.mpub("jobs", [b"a", b""])
    with pytest.raises(ValueError, match="at least one"):
        wire.mpub("jobs", [])
    with pytest.raises(ValueError, match="16 bytes"):
        wire.finish(b"short")
    with pytest.raises(ValueError, match="negative"):
        wire.ready(-1)


def test_mpub_batches_respect_the_body_limit() -> None:
    bodies = [b"x" * 10] * 10  # each costs 14 bytes in an MPUB body
    batches = list(wire.mpub_batches(bodies, max_body_bytes=4 + 14 * 3))
    assert [len(batch) for batch in batches] == [3, 3, 3, 1]
    assert [body for batch in batches for body in batch] == bodies


# --- names and addresses -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["cj-encode", "a", "x" * 64, "jobs#ephemeral", "a.b_c-d"])
def test_valid_names(name: str) -> None:
    assert wire.validate_topic(name) == name
    assert wire.validate_channel(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "slash/no", "ümlaut", "x#other"])
def test_invalid_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(NsqConfigError, match=r"invalid NSQ topic name .*\[\.a-zA-Z0-9_-\]"):
        wire.validate_topic(name)
    with pytest.raises(NsqConfigError, match="invalid NSQ channel name"):
        wire.validate_channel(name)


def test_addresses() -> None:
    assert wire.parse_address("127.0.0.1:4150", setting="s") == ("127.0.0.1", 4150)
    assert wire.parse_address("[::1]:4150", setting="s") == ("::1", 4150)
    assert wire.format_address("::1", 4150) == "[::1]:4150"
    for bad in ("nsqd", "nsqd:", ":4150", "nsqd:0", "nsqd:70000", "nsqd:http"):
        with pytest.raises(NsqConfigError, match=f"queue.nsqd_tcp_addresses: '{bad}'"):
            wire.parse_address(bad, setting="queue.nsqd_tcp_addresses")


# --- IDENTIFY response ---------------------------------------------------------------------


def test_identify_ok_means_no_negotiation() -> None:
    assert wire.parse_identify_response(b"OK") == wire.Negotiated()


def test_identify_json_is_read() -> None:
    answer = json.dumps(
        {
            "max_rdy_count": 100,
            "version": "1.3.0",
            "max_msg_timeout": 900000,
            "msg_timeout": 60000,
            "tls_v1": False,
            "deflate": False,
            "snappy": False,
            "auth_required": False,
        }
    ).encode()
    assert wire.parse_identify_response(answer) == wire.Negotiated(
        max_rdy_count=100, msg_timeout_ms=60000, max_msg_timeout_ms=900000, version="1.3.0"
    )


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"not json", "neither OK nor JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"snappy": true}', "snappy"),
        (b'{"max_rdy_count": "many"}', "max_rdy_count"),
    ],
)
def test_identify_answers_we_cannot_follow(answer: bytes, problem: str) -> None:
    with pytest.raises(NsqProtocolError, match=problem):
        wire.parse_identify_response(answer)


# --- lookupd ---------------------------------------------------------------------------------

_PRODUCERS = [
    {"broadcast_address": "nsqd-1", "tcp_port": 4150, "http_port": 4151, "version": "1.3.0"},
    {"broadcast_address": "fd00::2", "tcp_port": 4250, "http_port": 4251, "version": "1.3.0"},
]


def test_lookup_answer_current_shape() -> None:
    body = json.dumps({"channels": ["c"], "producers": _PRODUCERS}).encode()
    assert lookupd.parse_lookup_response(200, body) == {"nsqd-1:4150", "[fd00::2]:4250"}


def test_lookup_answer_legacy_shape() -> None:
    body = json.dumps(
        {"status_code": 200, "status_txt": "OK", "data": {"producers": _PRODUCERS[:1]}}
    ).encode()
    assert lookupd.parse_lookup_response(200, body) == {"nsqd-1:4150"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, b'{"message":"TOPIC_NOT_FOUND"}'),
        (500, b'{"status_code":500,"status_txt":"TOPIC_NOT_FOUND","data":null}'),
    ],
)
def test_unknown_topic_has_no_producers(status: int, body: bytes) -> None:
    assert lookupd.parse_lookup_response(status, body) == set()


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (500, b'{"message":"INTERNAL_ERROR"}', "answered 500"),
        (200, b"<html>", "non-JSON"),
        (200, b'{"channels": []}', "no producers list"),
        (200, b'{"producers": [{"tcp_port": 1}]}', "unreadable producer"),
        (200, b'{"status_code": 503, "data": {}}', "status_code 503"),
    ],
)
def test_unreadable_lookup_answers(status: int, body: bytes, problem: str) -> None:
    with pytest.raises(lookupd.LookupdError, match=problem):
        lookupd.parse_lookup_response(status, body)


def test_lookup_urls() -> None:
    assert lookupd.lookup_url("10.0.0.1:4161") == "http://10.0.0.1:4161/lookup"
    assert lookupd.lookup_url("https://lookupd.example/") == "https://lookupd.example/lookup"
    with pytest.raises(NsqConfigError, match=r"queue\.lookupd_http_addresses"):
        lookupd.lookup_url("lookupd")


# --- policies ---------------------------------------------------------------------------------


def test_backoff_grows_to_the_cap_with_jitter_below() -> None:
    backoff = policy.Backoff(max_s=30, initial_s=1, jitter=0.2, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling * 0.8 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_backoff_immediate_first_retry() -> None:
    backoff = policy.Backoff(max_s=10, initial_s=1, jitter=0, immediate_first=True)
    assert [backoff.next_delay() for _ in range(4)] == [0, 1, 2, 4]
    backoff.reset()
    assert backoff.next_delay() == 0


def test_backoff_survives_thousands_of_failures() -> None:
    backoff = policy.Backoff(max_s=5, jitter=0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 5


@pytest.mark.parametrize(
    ("total", "connections", "counts"),
    [
        (8, 1, [8]),
        (8, 3, [3, 3, 2]),
        (2, 5, [1, 1, 1, 1, 1]),
        (8, 0, []),
    ],
)
def test_rdy_distribution(total: int, connections: int, counts: list[int]) -> None:
    assert policy.distribute_rdy(total, connections) == counts


def test_rdy_distribution_respects_nsqd_limit() -> None:
    assert policy.distribute_rdy(10_000, 2, limit=2500) == [2500, 2500]


def test_jitter_stays_within_fraction() -> None:
    rng = random.Random(3)
    values = [policy.jittered(60, 0.1, rng) for _ in range(1000)]
    assert min(values) >= 54 and max(values) <= 66
    assert max(values) - min(values) > 6  # it does vary


def test_our_hot_path_encoders_send_pynsqs_bytes() -> None:
    import nsq.protocol as pynsq

    message_id = b"0123456789abcdef"
    bodies = [b"a", b"bc" * 40, b"{}"]
    assert wire.finish(message_id) == bytes(pynsq.finish(message_id))
    assert wire.touch(message_id) == bytes(pynsq.touch(message_id))
    assert wire.requeue(message_id, 1.5) == bytes(pynsq.requeue(message_id, 1500))
    assert wire.pub("cj-encode", b"job") == bytes(pynsq.pub("cj-encode", b"job"))
    assert wire.mpub("cj-encode", bodies) == bytes(pynsq.mpub("cj-encode", bodies))
    assert wire.auth("s3cret") == bytes(pynsq.auth(b"s3cret"))


def test_identify_asks_for_tls_and_the_output_buffer_timeout() -> None:
    body = wire.identify_body(
        client_id="c",
        hostname="h",
        user_agent="u",
        heartbeat_interval_ms=30_000,
        msg_timeout_ms=None,
        output_buffer_timeout_ms=25,
        tls=True,
    )
    assert body["tls_v1"] is True and body["output_buffer_timeout"] == 25
    assert "msg_timeout" not in body and "snappy" not in body and "deflate" not in body
    negotiated = wire.parse_identify_response(
        b'{"tls_v1": true, "auth_required": true, "output_buffer_timeout": 25}',
        tls_requested=True,
    )
    assert negotiated.tls_v1 and negotiated.auth_required
    assert negotiated.output_buffer_timeout_ms == 25
    with pytest.raises(NsqProtocolError, match="tls_v1, which was not requested"):
        wire.parse_identify_response(b'{"tls_v1": true}')
