"""CdrOptions: validation naming the option, and agreement with the agent configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from cj.cdr import DEFAULT_PRIVACY_VARIABLE, DEFAULT_RECORDING_VARIABLES, CdrError, CdrOptions
from cj.config import AgentSourceConfig, CdrFormat


def test_defaults_match_the_agent_configuration() -> None:
    source = AgentSourceConfig(name="pbx", cdr_dir=Path("/cdr"), recordings_dir=Path("/rec"))
    assert source.recording_variables == DEFAULT_RECORDING_VARIABLES
    assert source.privacy_variable == DEFAULT_PRIVACY_VARIABLE


def test_for_source() -> None:
    source = AgentSourceConfig(
        name="pbx-msk-1",
        cdr_dir=Path("/cdr"),
        recordings_dir=Path("/rec"),
        format=CdrFormat.FREESWITCH,
        timezone="Europe/Moscow",
        recording_variables=("my_rec",),
        privacy_variable="my_tag",
    )
    options = CdrOptions.for_source(source)
    assert options == CdrOptions(
        timezone="Europe/Moscow",
        format=CdrFormat.FREESWITCH,
        recording_variables=("my_rec",),
        privacy_variable="my_tag",
        source="pbx-msk-1",
    )
    assert options.zone.key == "Europe/Moscow"


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "", "Europe", "../etc/passwd", "/etc/localtime", "UTC\x00"]
)
def test_unknown_timezone(zone: str) -> None:
    with pytest.raises(CdrError, match=r"^timezone: unknown time zone"):
        CdrOptions(timezone=zone)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"recording_variables": ("",)}, "recording_variables"),
        ({"recording_variables": ("record_path+",)}, "recording_variables"),
        ({"privacy_variable": ""}, "privacy_variable"),
        ({"timezone": 3}, "timezone"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], field: str) -> None:
    with pytest.raises(CdrError, match=rf"^{field}: "):
        CdrOptions(**options)  # type: ignore[arg-type]


def test_format_given_as_text_and_variables_as_a_list() -> None:
    options = CdrOptions(format="compact", recording_variables=["a", "b"])  # type: ignore[arg-type]
    assert options.format is CdrFormat.COMPACT
    assert options.recording_variables == ("a", "b")
