"""The contract in protos/ and the generated code in cj/proto/ agree and follow our rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from cj.proto import calljournal_grpc
from cj.proto import calljournal_pb2 as pb
from tools import gen_proto

from .conftest import ROOT

OPERATIONS = {
    "AddCall": (False, False),
    "AddCalls": (True, False),
    "CheckCalls": (False, False),
    "UploadRecording": (True, False),
    "SearchByPhone": (False, False),
    "SearchByInterval": (False, False),
    "GetCall": (False, False),
    "DownloadRecording": (False, True),
    "SetCallPrivacy": (False, False),
    "SetLegalHold": (False, False),
    "ListLegalHolds": (False, False),
}


@pytest.fixture(scope="module")
def described(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorProto:
    """The proto file's descriptor, with comments (source info)."""
    out = tmp_path_factory.mktemp("descriptor") / "set.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={ROOT / 'protos'}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            gen_proto.PROTO,
        ],
        check=True,
    )
    (proto,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return proto


def test_generated_code_is_up_to_date() -> None:
    stale = gen_proto.stale_files()
    assert not stale, f"cj/proto is stale ({', '.join(stale)}): run `make proto` and commit"


def test_generated_modules_live_in_our_package() -> None:
    assert pb.Call.__module__ == "cj.proto.calljournal_pb2"
    assert calljournal_grpc.calljournal_dot_v1_dot_calljournal__pb2 is pb


def test_service_has_every_operation_with_its_cardinality(
    described: descriptor_pb2.FileDescriptorProto,
) -> None:
    assert described.package == "calljournal.v1"
    (service,) = described.service
    assert service.name == "CallJournal"
    found = {m.name: (m.client_streaming, m.server_streaming) for m in service.method}
    assert found == OPERATIONS
    assert set(calljournal_grpc.CallJournalServicer().service.methods) == set(OPERATIONS)


def test_messages_and_enums_are_top_level_without_proto3_optional(
    described: descriptor_pb2.FileDescriptorProto,
) -> None:
    for message in described.message_type:
        assert not message.nested_type, f"{message.name} nests messages"
        assert not message.enum_type, f"{message.name} nests enums"
        for field in message.field:
            assert not field.proto3_optional, f"{message.name}.{field.name} is optional"


def test_enum_zero_values_are_unspecified_and_prefixed(
    described: descriptor_pb2.FileDescriptorProto,
) -> None:
    for enum in described.enum_type:
        prefix = "".join("_" + c if c.isupper() else c.upper() for c in enum.name).lstrip("_")
        assert enum.value[0].number == 0
        assert enum.value[0].name == f"{prefix}_UNSPECIFIED"
        for value in enum.value:
            assert value.name.startswith(prefix + "_"), value.name


def test_times_are_timestamps(described: descriptor_pb2.FileDescriptorProto) -> None:
    for message in described.message_type:
        for field in message.field:
            if field.name.endswith(("_at", "_time")):
                assert field.type_name == ".google.protobuf.Timestamp", field.name


def test_everything_is_commented(described: descriptor_pb2.FileDescriptorProto) -> None:
    comments = {
        tuple(location.path): location.leading_comments.strip()
        for location in described.source_code_info.location
    }
    # Paths per descriptor.proto: 4 = message_type, 2 = field; 5 = enum_type, 2 = value;
    # 6 = service, 2 = method.
    missing = []
    for i, message in enumerate(described.message_type):
        if not comments.get((4, i)):
            missing.append(message.name)
        missing += [
            f"{message.name}.{f.name}"
            for j, f in enumerate(message.field)
            if not comments.get((4, i, 2, j))
        ]
    for i, enum in enumerate(described.enum_type):
        if not comments.get((5, i)):
            missing.append(enum.name)
        missing += [v.name for j, v in enumerate(enum.value) if not comments.get((5, i, 2, j))]
    for i, service in enumerate(described.service):
        if not comments.get((6, i)):
            missing.append(service.name)
        missing += [m.name for j, m in enumerate(service.method) if not comments.get((6, i, 2, j))]
    assert not missing, f"elements without a comment: {missing}"


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    gen_proto.generate(tmp_path)
    assert gen_proto.stale_files(tmp_path) == []
    (tmp_path / "calljournal_pb2.py").write_text("# edited by hand\n")
    (tmp_path / "calljournal_grpc.pyi").unlink()
    assert sorted(gen_proto.stale_files(tmp_path)) == ["calljournal_grpc.pyi", "calljournal_pb2.py"]
