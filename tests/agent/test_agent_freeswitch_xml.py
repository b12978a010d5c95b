"""The agent imports FreeSWITCH mod_xml_cdr files and quarantines what it cannot read,
naming the format the document resembles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import trio

from tests.cdr.helpers import XML
from tests.cdr.helpers import XML_UUID as UUID
from tests.fixtures.api import RunningApi

from .helpers import Spool, agent_settings, running_agent


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "pbx").make()


async def test_xml_cdrs_import_and_foreign_documents_are_quarantined(
    running_api: RunningApi, spool: Spool
) -> None:
    good = XML.replace(f"<record_name>{UUID}.wav</record_name>", "")
    (spool.cdr / f"{UUID}.cdr.xml").write_text(good)
    broken = good.replace("</cdr>", "")
    (spool.cdr / "broken.cdr.xml").write_text(broken)
    asterisk = {"src": "5300", "dst": "5301", "clid": "x", "disposition": "ANSWERED"}
    (spool.cdr / "asterisk.json").write_text(json.dumps(asterisk))
    settings = agent_settings(spool, running_api.endpoints.grpc_address)
    source = dataclasses.replace(settings.agent.sources[0], cdr_patterns=("*.xml", "*.json"))
    settings = dataclasses.replace(
        settings, agent=dataclasses.replace(settings.agent, sources=(source,))
    )
    with trio.fail_after(30):
        async with running_agent(settings) as agent:
            await agent.stats.wait_until(lambda s: s.quarantined >= 2 and s.calls_uploaded >= 1)
    rows = running_api.query(
        "SELECT caller_number, caller_extension, destination_extension, direction FROM calls"
    )
    assert rows == [
        {
            "caller_number": "+74951234567",
            "caller_extension": "1004",
            "destination_extension": "",
            "direction": "outbound",
        }
    ]
    reasons = {
        name: (spool.failed / f"{name}.error").read_text()
        for name in ("broken.cdr.xml", "asterisk.json")
    }
    assert "not well-formed XML" in reasons["broken.cdr.xml"]
    assert "an Asterisk CDR object" in reasons["asterisk.json"]
    assert (spool.failed / "broken.cdr.xml").read_text() == broken  # kept, never deleted
