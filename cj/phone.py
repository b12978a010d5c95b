"""Phone numbers as PBXs write them, and the digit keys we search them by.

A PBX writes `+7 (926) 000-11-22`, `89260001122` or `1004`; we keep that text and
its digits. Search matches by suffix of digits, so a query need not know the country
or trunk prefix. A query longer than the significant length (10 digits: a national
number in Russia and the NANP) is cut to its last 10 digits first, which is what makes
`89260001122` find `+7 (926) 000-11-22`: the leading `8` and `7` are trunk/country
prefixes of the same subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass

SIGNIFICANT_DIGITS = 10
MAX_NUMBER_LENGTH = 128


def digits_of(text: str) -> str:
    """The ASCII digits of `text`, in order."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def search_key(query: str, *, exact: bool = False) -> str:
    """The digit string a phone query matches against (by suffix unless `exact`).

    Raises ValueError when the query holds no digit.
    """
    digits = digits_of(query)
    if not digits:
        raise ValueError("phone must contain at least one digit")
    if not exact and len(digits) > SIGNIFICANT_DIGITS:
        digits = digits[-SIGNIFICANT_DIGITS:]
    return digits


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A number as the PBX wrote it (`raw`) and its digits."""

    raw: str

    def __post_init__(self) -> None:
        if len(self.raw) > MAX_NUMBER_LENGTH:
            raise ValueError(f"longer than {MAX_NUMBER_LENGTH} characters")
        if "\x00" in self.raw:
            raise ValueError("contains a NUL character")

    @property
    def digits(self) -> str:
        return digits_of(self.raw)

    @property
    def reversed_digits(self) -> str:
        """The index key: suffix search becomes a prefix `LIKE` on this."""
        return self.digits[::-1]

    def __str__(self) -> str:
        return self.raw
