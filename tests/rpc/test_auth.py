"""Bearer tokens → principals; role checks; messages that never echo a token."""

from __future__ import annotations

import pytest

from cj.auth import Authenticator, Principal, require
from cj.config import AuthConfig, Role
from cj.errors import ErrorCode, ServiceError
from tests.fixtures.api import TEST_SOURCES

from .conftest import AGENT_TOKEN, BOTH_TOKEN, READER_TOKEN, make_authenticator


def _unauthenticated(authenticator: Authenticator, header: str | None) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        authenticator.authenticate(header)
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    return caught.value


def test_each_token_resolves_to_its_principal() -> None:
    authenticator = make_authenticator()
    assert authenticator.authenticate(f"Bearer {AGENT_TOKEN}") == Principal(
        "pbx-1", frozenset({Role.AGENT}), ("pbx-1", *TEST_SOURCES)
    )
    reader = authenticator.authenticate(f"Bearer {READER_TOKEN}")
    assert reader.name == "ops"
    assert reader.sources == ("ops",)  # no sources configured: its own name
    assert authenticator.authenticate(f"Bearer {BOTH_TOKEN}").roles == frozenset(Role)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive_and_spaces_are_tolerated(scheme: str) -> None:
    principal = make_authenticator().authenticate(f"  {scheme}   {AGENT_TOKEN}  ")
    assert principal.name == "pbx-1"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_credentials(header: str | None) -> None:
    error = _unauthenticated(make_authenticator(), header)
    assert "missing" in error.message


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer   ", f"Basic {AGENT_TOKEN}", AGENT_TOKEN, f"Token {AGENT_TOKEN}"]
)
def test_malformed_header(header: str) -> None:
    error = _unauthenticated(make_authenticator(), header)
    assert "malformed" in error.message
    assert AGENT_TOKEN not in str(error)


def test_unknown_token_is_invalid_and_not_echoed() -> None:
    wrong = "not-a-configured-token-at-all"
    error = _unauthenticated(make_authenticator(), f"Bearer {wrong}")
    assert error.message == "invalid token"
    assert wrong not in str(error)


def test_token_prefix_or_extension_does_not_match() -> None:
    authenticator = make_authenticator()
    for candidate in (AGENT_TOKEN[:-1], AGENT_TOKEN + "x", AGENT_TOKEN.upper()):
        _unauthenticated(authenticator, f"Bearer {candidate}")


def test_no_configured_tokens_refuses_everyone() -> None:
    _unauthenticated(Authenticator(AuthConfig()), f"Bearer {AGENT_TOKEN}")


def test_require_passes_with_the_role_and_names_the_missing_one() -> None:
    agent = Principal("pbx-1", frozenset({Role.AGENT}))
    require(agent, Role.AGENT)
    with pytest.raises(ServiceError) as caught:
        require(agent, Role.READER)
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    assert "'reader'" in caught.value.message
    assert "pbx-1" in caught.value.message
