"""How deeply nested a JSON document a client may send (REST bodies, gRPC `raw_json`).

Real CDRs nest a few levels; a document nested thousands deep only makes parsers,
encoders and PostgreSQL recurse (Python raises RecursionError, PostgreSQL "stack depth
limit exceeded"), so it is refused with an error naming the field. Parse first (Python's
parser gives up with RecursionError at about 1,000 levels, in linear time), then check
the parsed value, iteratively. Depth counts containers: `{}` is 1, `{"a": [1]}` is 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "depth_exceeds"]

MAX_JSON_DEPTH = 64


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
