"""What counts as local to a PBX: extensions by pattern, its own DIDs and prefixes."""

from __future__ import annotations

import pytest

from cj.cdr.errors import CdrError
from cj.cdr.locality import LocalNumbers


def test_default_extensions_are_one_to_five_digits() -> None:
    local = LocalNumbers()
    assert local.is_local("1001")
    assert local.is_local("7")
    assert not local.is_local("+4986517174963")
    assert not local.is_local("dan")
    assert not local.is_local("")


def test_own_numbers_match_by_digits_and_prefix() -> None:
    local = LocalNumbers(numbers=("74951234567", "7812555*"))
    assert local.is_own_number("+7 (495) 123-45-67")
    assert local.is_own_number("78125550000")
    assert not local.is_own_number("74951234568")
    assert not local.is_own_number("")


def test_custom_extension_pattern() -> None:
    local = LocalNumbers(extensions=r"2[0-9]{3}")
    assert local.is_extension("2001")
    assert not local.is_extension("101")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"extensions": "("}, "local_extensions"), ({"numbers": ("12a",)}, "local_numbers")],
)
def test_bad_settings_name_the_key(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(CdrError, match=field):
        LocalNumbers(**kwargs)  # type: ignore[arg-type]
