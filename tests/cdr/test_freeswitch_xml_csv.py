"""FreeSWITCH mod_xml_cdr documents and mod_cdr_csv lines, read by the mod_json_cdr rules;
and refusals that name the format a document resembles."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cj.cdr import CdrDocumentError, CdrFieldError, CdrFormat, CdrFormatError, CdrOptions, parse_cdr
from cj.cdr.cli import cdr
from cj.cdr.detect import explain_cdr
from cj.cdr.freeswitch_csv import CsvTemplate, parse_freeswitch_csv_line
from cj.model import Direction
from tests.cdr.helpers import XML
from tests.cdr.helpers import XML_UUID as UUID


def test_xml_document_reads_like_json() -> None:
    call, explanation = explain_cdr(XML.encode(), CdrOptions())
    assert call.uuid == uuid.UUID(UUID)
    assert (call.caller.raw, call.caller_name, call.caller_extension) == (
        "+74951234567",
        "Anna K",
        "1004",
    )
    assert call.destination.raw == "89161234567" and call.destination_extension == ""
    assert call.direction is Direction.OUTBOUND
    assert explanation["direction"].startswith("app_log.applications[1].app_data: bridge")
    assert call.started_at == datetime(2026, 3, 3, 11, 2, 11, tzinfo=UTC)
    assert (call.duration_s, call.billsec, call.recording_name) == (102, 96, f"{UUID}.wav")
    assert call.raw["variables"]["sip_full_from"] == "%3Csip%3A1004%40pbx%3E%3Btag%3Dx"
    assert "document" not in explanation
    forced = parse_cdr(XML.encode(), CdrOptions(format=CdrFormat.FREESWITCH_XML))
    assert forced == call


def test_unencoded_values_are_recovered_and_reported() -> None:
    broken = XML.replace("%3Csip%3A1004%40pbx%3E%3Btag%3Dx", "<sip:1004@pbx>;tag=x&y").replace(
        "Anna%20K", 'Anna "K" & Co'
    )
    call, explanation = explain_cdr(broken.encode(), CdrOptions())
    assert call.raw["variables"]["sip_full_from"] == "<sip:1004@pbx>;tag=x&y"
    assert call.caller_name == 'Anna "K" & Co'
    assert explanation["document"] == (
        "recovered: values not URL-encoded, escaped on line(s) 11, 19"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Still broken after escaping: a value spanning lines, an unclosed element.
        (
            XML.replace("<billsec>96</billsec>", "<billsec>9<6\n</billsec>").replace(
                "%3Csip%3A1004%40pbx%3E%3Btag%3Dx", "<sip:1004@pbx>"
            ),
            r"^document: not well-formed XML: .* at line 17 column 16; still not after "
            r"escaping unencoded values: .* at line 17 column 16",
        ),
        (XML.replace("</cdr>", ""), r"^document: not well-formed XML: no element found"),
        ("<!DOCTYPE cdr [<!ENTITY x 'y'>]><cdr>&x;</cdr>", "refused XML construct"),
        ("<call><uuid>x</uuid></call>", r"root is <call>, not mod_xml_cdr's <cdr>"),
    ],
)
def test_xml_that_cannot_be_read_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises((CdrDocumentError, CdrFormatError), match=message):
        parse_cdr(text.encode(), CdrOptions())
    with pytest.raises(CdrDocumentError, match=r"^document: not valid UTF-8 \(at byte 5\)"):
        parse_cdr(b"<cdr>\xff</cdr>", CdrOptions())


# --- mod_cdr_csv ------------------------------------------------------------------------

LINE = (
    f'"Anna","1004","89161234567","default","2026-03-03 14:02:11","2026-03-03 14:02:17",'
    f'"2026-03-03 14:03:53","102","96","NORMAL_CLEARING","{UUID}","","1004","PCMA","PCMA"'
).encode()


def test_example_template_line_in_the_pbx_zone() -> None:
    call = parse_freeswitch_csv_line(LINE, "example", CdrOptions(timezone="Europe/Moscow"))
    assert call.uuid == uuid.UUID(UUID)
    assert call.started_at == datetime(2026, 3, 3, 11, 2, 11, tzinfo=UTC)
    assert (call.duration_s, call.billsec, call.hangup_cause) == (102, 96, "NORMAL_CLEARING")
    assert (call.caller.raw, call.caller_extension, call.direction) == (
        "1004",
        "1004",
        Direction.OUTBOUND,
    )
    assert call.raw["template"] == "example" and call.raw["line"] == LINE.decode()


def test_sql_template_and_custom_templates() -> None:
    values = LINE.decode().rsplit(',"PCMA","PCMA"', 1)[0].replace('"1004","PCMA"', '"1004"')
    sql = f"INSERT INTO cdr VALUES ({values});".encode()
    assert parse_freeswitch_csv_line(sql, "sql", CdrOptions()).uuid == uuid.UUID(UUID)
    columns = ["uuid", "caller_id_number", "destination_number", "start_stamp", "sip_gateway_name"]
    custom = f'"{UUID}","74951112233","1001","2026-03-03 14:02:11","trunk"'.encode()
    call = parse_freeswitch_csv_line(custom, columns, CdrOptions())
    assert (call.direction, call.destination_extension) == (Direction.INBOUND, "1001")
    text = '"${uuid}","${caller_id_number}","${destination_number}","${start_stamp}"'
    assert parse_freeswitch_csv_line(custom.rsplit(b",", 1)[0], text, CdrOptions()).uuid


def test_csv_bytes_that_are_not_utf8_are_read_as_latin1_and_kept() -> None:
    line = LINE.replace(b'"Anna"', b'"Ann\xa5"')
    call = parse_freeswitch_csv_line(line, "example", CdrOptions())
    assert call.caller_name == "Ann¥" and call.raw["encoding"] == "latin-1"


@pytest.mark.parametrize(
    ("line", "template", "error", "message"),
    [
        (b'"a","b"', "example", CdrDocumentError, "^line: has 2 columns, the example template 15"),
        (b"", "example", CdrDocumentError, "^line: is empty"),
        (LINE.replace(UUID.encode(), b"nope"), "example", CdrFieldError, "variables.uuid"),
        (LINE, "nosuch", CdrFieldError, "^template: 'nosuch' is neither a stock template"),
        (LINE, ["caller_id_number"], CdrFieldError, r"^template: has no \$\{uuid\} column"),
    ],
)
def test_bad_csv_lines_name_what_is_wrong(
    line: bytes, template: str | list[str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_freeswitch_csv_line(line, template, CdrOptions())


def test_stock_templates_all_have_a_uuid_column() -> None:
    for name in ("sql", "example", "snom", "linksys", "asterisk", "opencdrrate"):
        assert "uuid" in CsvTemplate(name).columns


def test_cdr_show_reads_a_csv_line_and_explains(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(LINE + b"\n" + b'"broken"\n')
    runner = CliRunner()
    fs = ["--format", "freeswitch_csv"]  # a .csv file is read as Asterisk's Master.csv else
    one = runner.invoke(cdr, ["show", str(path), *fs, "--line", "1", "--explain"])
    assert one.exit_code == 0, one.output
    shown = json.loads(one.stdout)
    assert shown["caller_extension"] == "1004"
    assert shown["explain"]["started_at"] == "variables.start_stamp"
    every = json.loads(runner.invoke(cdr, ["show", str(path), *fs]).stdout)
    assert [entry["line"] for entry in every] == [1, 2]
    assert every[1]["error"].startswith("line: has 1 columns")
    past = runner.invoke(cdr, ["show", str(path), *fs, "--line", "3"])
    assert past.exit_code == 1 and "past the end" in past.stderr


# --- foreign documents ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"call_id": "x@y", "custom_channel_vars": {}, "pvt_type": "cdr"},
            r"^document: a Kazoo CDR \(call_id, custom_channel_vars, pvt_type\)",
        ),
        ({"Event-Name": "CHANNEL_HANGUP_COMPLETE"}, "^document: a FreeSWITCH event"),
        ({"hello": 1}, r"^document: an unknown format \(fields: hello\)"),
    ],
)
def test_foreign_documents_say_what_they_resemble(
    document: dict[str, object], message: str
) -> None:
    with pytest.raises(CdrFormatError, match=message) as info:
        parse_cdr(json.dumps(document).encode(), CdrOptions())
    assert "compact" in str(info.value)


def test_mod_cdr_csv_is_a_tailed_line_format_with_the_sources_template() -> None:
    from cj.cdr.lines import is_line_format, parse_lines

    assert is_line_format(CdrFormat.FREESWITCH_CSV)
    calls, refused = parse_lines(
        [LINE, LINE, b'"broken"'], CdrOptions(csv_template="example"), CdrFormat.FREESWITCH_CSV
    )
    assert len(calls) == 1 and calls[0].caller_extension == "1004"  # one uuid, one call
    assert [index for index, _ in refused] == [2]


def test_a_bad_csv_template_is_refused_at_configuration() -> None:
    from cj.config import AgentSourceConfig

    with pytest.raises(ValueError, match="csv_template"):
        AgentSourceConfig(
            name="fs",
            cdr_dir=Path("/tmp/x"),
            recordings_dir=Path("/tmp/x"),
            format=CdrFormat.FREESWITCH_CSV,
            csv_template="no variables here",
        )
