"""How deeply nested a JSON document a client may send (REST bodies, gRPC `raw_json`).

Real CDRs nest a few levels; a document nested thousands deep only makes parsers,
encoders and PostgreSQL recurse (Python raises RecursionError, PostgreSQL "stack depth
limit exceeded"), so it is refused up front with an error naming the field.
Depth counts containers: `{}` is 1, `{"a": [1]}` is 2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "depth_exceeds", "text_depth_exceeds"]

MAX_JSON_DEPTH = 64

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SAME_BRACKETS = str.maketrans("{}", "[]")


def text_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text `text` nests containers deeper than `limit`.

    Works on the text, before parsing (so a hostile document never reaches the
    recursive parser), at C speed: strings and everything but brackets are removed,
    then each pass of `replace("[]", "")` removes one level of innermost pairs. For
    text that is not JSON the answer means nothing; the parser refuses it next.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_SAME_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace("[]", "")
    return bool(brackets)


def depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the parsed JSON `value` nests containers deeper than `limit`.

    Iterative (no recursion to exhaust), and it stops at the first container too deep.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False
