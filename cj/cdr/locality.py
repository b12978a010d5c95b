"""Which numbers belong to the PBX itself: the per-source notion of "local" (DESIGN §10).

Direction is the call's, not the channel's: an extension dialling a number that is not
local is outbound, a call from outside to a local number is inbound, both ends local is
internal. What is local is configuration of each source (`AgentSourceConfig`):

- `local_extensions`: a regular expression an extension or SIP login matches in full
  (default: 1 to 5 digits, the extension plans of almost every PBX; a SIP login such as
  `dan` is local by being an authenticated user, not by this pattern);
- `local_numbers`: the PBX's own DIDs, as digits, or digit prefixes ending in `*`
  (`74951234567`, `7495123*`): a number whose digits match is the PBX's, so a call to
  it from outside is inbound and a call between two of them is internal.

Pure and cheap: built once per source, asked per call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cj.cdr.errors import CdrError

DEFAULT_LOCAL_EXTENSIONS = r"[0-9]{1,5}"
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class LocalNumbers:
    """Tells local extensions and the PBX's own numbers from the outside world."""

    extensions: str = DEFAULT_LOCAL_EXTENSIONS
    numbers: tuple[str, ...] = ()
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            pattern = re.compile(self.extensions)
        except (re.error, TypeError) as exc:
            raise CdrError("local_extensions", f"not a regular expression: {exc}") from None
        exact: set[str] = set()
        prefixes: list[str] = []
        for entry in self.numbers:
            digits = entry[:-1] if entry.endswith("*") else entry
            if not _DIGITS.fullmatch(digits):
                raise CdrError(
                    "local_numbers",
                    f"{entry!r} is not digits, or digits followed by '*' for a prefix",
                )
            if entry.endswith("*"):
                prefixes.append(digits)
            else:
                exact.add(digits)
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_exact", frozenset(exact))
        object.__setattr__(self, "_prefixes", tuple(prefixes))

    def is_extension(self, number: str) -> bool:
        """Whether `number` (as written) is a local extension by the pattern."""
        return bool(number) and self._pattern.fullmatch(number.strip()) is not None

    def is_own_number(self, number: str) -> bool:
        """Whether the digits of `number` are one of the PBX's own DIDs or prefixes."""
        digits = "".join(_DIGITS.findall(number))
        if not digits:
            return False
        return digits in self._exact or any(digits.startswith(p) for p in self._prefixes)

    def is_local(self, number: str) -> bool:
        """An extension or one of the PBX's own numbers."""
        return self.is_extension(number) or self.is_own_number(number)


DEFAULT_LOCAL_NUMBERS = LocalNumbers()
