"""Reading Prometheus' text format in tests."""

from __future__ import annotations

import re


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (labels given in full, any order)."""
    values = samples(text, name)
    wanted = dict(labels)
    for found, value in values:
        if found == wanted:
            return value
    raise AssertionError(f"{name} {labels} not in /metrics (has {[f for f, _ in values]})")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of `name`: (labels, value)."""
    found = []
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*?)\}})? (\S+)$", re.MULTILINE)
    for match in pattern.finditer(text):
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[1] or ""))
        found.append((labels, float(match[2])))
    return found


def total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        value
        for found, value in samples(text, name)
        if all(found.get(k) == v for k, v in labels.items())
    )
