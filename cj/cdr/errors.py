"""The one error family of the CDR parsers: every failure names the field at fault.

A daemon that reads CDRs catches `CdrError` and quarantines the file with `str(exc)`
as the reason; nothing else escapes `parse_cdr`.
"""

from __future__ import annotations


class CdrError(ValueError):
    """A CDR cannot be turned into a call. `field` names what is wrong, `reason` says why.

    `str(exc)` is `"<field>: <reason>"`, e.g. `"variables.start_epoch: must be an integer"`.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[CdrError], tuple[str, str]]:
        # Keep the two-argument constructor picklable (exceptions cross thread and
        # process boundaries in the daemons).
        return (type(self), (self.field, self.reason))


class CdrDocumentError(CdrError):
    """The input is not a usable JSON document: unreadable, too large, not UTF-8, not JSON,
    nested too deeply, or holding text that cannot be stored (NUL, lone surrogates)."""


class CdrFormatError(CdrError):
    """The document is JSON but in neither known CDR format."""


class CdrFieldError(CdrError):
    """A field is missing, of the wrong type, or out of range."""


class CdrUnexpectedError(CdrError):
    """Safety net: a parser bug met an input it did not foresee.

    Raised instead of letting a stray exception kill a daemon; the original exception is
    chained as `__cause__`. Tests treat any occurrence as a bug.
    """
