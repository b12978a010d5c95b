"""FreeSWITCH: the number presented, the extensions beside it, and the call's direction
from evidence, each decision explained (DESIGN §10)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cj.cdr import CdrOptions
from cj.cdr.detect import explain_cdr
from cj.cdr.locality import LocalNumbers
from cj.model import Call, Direction
from tests.cdr.helpers import freeswitch, parse, profile

IN, OUT, INT = Direction.INBOUND, Direction.OUTBOUND, Direction.INTERNAL


def explain(document: dict[str, Any], **options: Any) -> tuple[Call, dict[str, str]]:
    return explain_cdr(json.dumps(document).encode(), CdrOptions(**options))


def leg(
    variables: dict[str, Any],
    *,
    number: str = "1001",
    destination: str = "79161234567",
    context: str = "default",
    username: str = "",
    channel: str = "inbound",
    **caller_profile: Any,
) -> dict[str, Any]:
    entry = profile(number=number, destination=destination)
    entry["caller_profile"].update(context=context, username=username, **caller_profile)
    return freeswitch({"direction": channel, **variables}, callflow=[entry])


@pytest.mark.parametrize(
    ("document", "direction", "decided_by"),
    [
        # FusionPBX says it outright, whatever else the document holds.
        (leg({"call_direction": "local"}, context="public"), INT, "variables.call_direction"),
        (leg({"call_direction": "outbound"}), OUT, "variables.call_direction"),
        # A leg placed through a gateway (originate, or the B-leg of an outbound bridge).
        (leg({"sip_gateway_name": "trunk"}, channel="outbound"), OUT, "sip_gateway_name"),
        # Arrived from outside: the public context, or from a gateway; a trunk call that
        # is forwarded out again through a gateway is still inbound.
        (
            leg(
                {"last_app": "bridge", "last_arg": "sofia/gateway/gw/89161234567"},
                number="74951112233",
                destination="74957001020",
                context="public",
            ),
            IN,
            "callflow[0].caller_profile.context",
        ),
        (leg({"sip_gateway_name": "trunk"}, number="7495"), IN, "variables.sip_gateway_name"),
        # Bridged out through a gateway, even to a number that looks like an extension.
        (
            leg({}, destination="2622")
            | {
                "app_log": {
                    "applications": [
                        {"app_name": "bridge", "app_data": "sofia/gateway/carlos/2622"}
                    ]
                }
            },
            OUT,
            "app_log.applications[0].app_data",
        ),
        # An authenticated user dialling a number that is not local.
        (leg({"sip_authorized": "true"}, number="+74951234567"), OUT, "sip_authorized"),
        (leg({}, number="anna", username="anna"), OUT, "caller_profile.username"),
        (leg({"user_context": "default"}, number="+7495"), OUT, "variables.user_context"),
        # Both ends local: an extension calling an extension or a feature code.
        (leg({"sip_authorized": "true"}, destination="*97"), INT, "sip_authorized"),
        (leg({}, destination="1002", channel="outbound"), INT, "caller_id_number"),
        # An outside caller ringing a local extension (a B-leg to a phone).
        (leg({}, number="74951112233", destination="1001", channel="outbound"), IN, "destination"),
        # Nothing to go on: the channel's own direction.
        (leg({}, number="74951112233", destination="74957001020"), IN, "variables.direction"),
    ],
)
def test_direction_from_evidence(
    document: dict[str, Any], direction: Direction, decided_by: str
) -> None:
    call, explanation = explain(document)
    assert call.direction is direction
    assert decided_by in explanation["direction"].split(":")[0]


def test_local_numbers_are_per_source() -> None:
    # The PBX's own DID is local: a call from outside to it is inbound.
    document = leg({}, number="74951112233", destination="+7 495 700-10-20")
    own = LocalNumbers(numbers=("7495700*",))
    assert explain(document)[1]["direction"].startswith("variables.direction:")  # the channel
    call, explanation = explain(document, local=own)
    assert call.direction is IN
    assert explanation["direction"] == (
        "callflow[0].caller_profile.destination_number: 74951112233 is not local, "
        "+7 495 700-10-20 is local"
    )
    outbound = leg({}, number="+7 495 700-10-20", destination="74951112233")
    assert parse(outbound, local=own).direction is OUT
    # An extension plan of 3-digit numbers only: 1001 is no longer an extension.
    internal = leg({}, number="101", destination="1001")
    assert parse(internal).direction is INT
    assert parse(internal, local=LocalNumbers(extensions=r"[0-9]{3}")).direction is OUT


def test_originated_call_presents_the_origination_caller_id() -> None:
    entry = profile(number="3868158407", name="Outbound Call", destination="3868158407")
    entry["caller_profile"]["ani"] = "9111110001"
    document = freeswitch(
        {"direction": "outbound", "sip_gateway_name": "sipp", "origination_caller_id_name": "Shop"},
        callflow=[entry],
    )
    call = parse(document)
    assert (call.caller.raw, call.caller_name) == ("9111110001", "Outbound Call")
    assert call.direction is OUT and call.caller_extension == ""
    with_number = json.loads(json.dumps(document))
    with_number["variables"]["origination_caller_id_number"] = "%2B74951234567"
    call, explanation = explain(with_number)
    assert (call.caller.raw, call.caller_name) == ("+74951234567", "Shop")
    assert explanation["caller"].startswith("variables.origination_caller_id_number:")


def test_b_leg_with_originator_is_not_an_originated_call() -> None:
    entry = profile(number="1001", destination="1003")
    entry["caller_profile"]["ani"] = "5555"
    document = freeswitch({"direction": "outbound", "originator": "x"}, callflow=[entry])
    assert parse(document).caller.raw == "1001"


def test_effective_caller_id_and_the_login_beside_it() -> None:
    document = leg(
        {"effective_caller_id_number": "%2B4986517174960", "effective_caller_id_name": "Dan%20M"},
        number="dan",
        username="dan",
        destination="+4986517174963",
    )
    call, explanation = explain(document)
    assert (call.caller.raw, call.caller_name, call.caller_extension) == (
        "+4986517174960",
        "Dan M",
        "dan",
    )
    assert call.direction is OUT and call.destination_extension == ""
    assert explanation["caller_extension"] == (
        "callflow[0].caller_profile.username: the SIP user of the calling phone"
    )


def test_a_login_without_digits_is_kept_only_when_nothing_better_exists() -> None:
    call = parse(leg({"sip_auth_username": "dan"}, number="dan", destination="1002"))
    assert (call.caller.raw, call.caller_extension, call.direction) == ("dan", "dan", INT)


def test_callee_extension_sources() -> None:
    dialed = parse(
        leg(
            {"dialed_user": "1002", "dialed_extension": "9"},
            destination="74957001020",
            context="public",
            number="74951112233",
        )
    )
    assert (dialed.direction, dialed.destination_extension, dialed.caller_extension) == (
        IN,
        "1002",
        "",
    )
    entry = profile(number="74951112233", destination="74957001020")
    entry["caller_profile"].update(
        context="public",
        originatee={"originatee_caller_profiles": [{"destination_number": "anna"}]},
    )
    b_leg = parse(freeswitch({}, callflow=[entry]))
    assert b_leg.destination_extension == "anna"


def test_explanation_names_a_field_for_every_value() -> None:
    call, explanation = explain(leg({"sip_authorized": "true"}))
    assert explanation["direction"] == (
        "variables.sip_authorized: an authenticated local user, dialling 79161234567, not local"
    )
    assert explanation["caller"] == "callflow[0].caller_profile.caller_id_number"
    assert explanation["started_at"] == "variables.start_epoch"
    assert call.direction is OUT
