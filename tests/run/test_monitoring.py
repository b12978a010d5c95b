"""The monitoring files stay true: alert rules and dashboard parse, name only metrics the
daemons really export, and the alerts fire as their unit tests say (promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from cj.config import AgentConfig
from cj_agent.metrics import AgentMetrics
from cj_agent.stats import AgentStats
from cj_agent.uploader import ServerLink
from cj_api.metrics import ApiMetrics
from cj_encoder.metrics import EncoderMetrics
from tests.run.compose import ROOT

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "calljournal-alerts.yml"
RULE_TESTS = MONITORING / "prometheus" / "calljournal-alerts.test.yml"
DASHBOARD = MONITORING / "grafana" / "calljournal-dashboard.json"
METRIC = re.compile(r"\b(cj_[a-z0-9_]+)\b")

# What Prometheus requires of a rules file (its rulefmt), as a JSON schema.
RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["groups"],
    "additionalProperties": False,
    "properties": {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "rules"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "interval": {"type": "string"},
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["alert", "expr", "labels", "annotations"],
                            "additionalProperties": False,
                            "properties": {
                                "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                "expr": {"type": "string", "minLength": 1},
                                "for": {"type": "string", "pattern": "^[0-9]+[smhdwy]$"},
                                "labels": {
                                    "type": "object",
                                    "required": ["severity"],
                                    "properties": {
                                        "severity": {"enum": ["critical", "warning", "info"]}
                                    },
                                },
                                "annotations": {
                                    "type": "object",
                                    "required": ["summary", "description"],
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}

DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating"],
    "properties": {
        "schemaVersion": {"type": "integer", "minimum": 30},
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "targets", "datasource"],
                "properties": {
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {"w": {"maximum": 24}, "x": {"maximum": 23}},
                    },
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["refId", "expr"]},
                    },
                },
            },
        },
    },
}


def exported_names() -> set[str]:
    """Every sample name the three daemons' registries can expose."""
    registries: list[CollectorRegistry] = [
        ApiMetrics().registry,
        EncoderMetrics().registry,
        AgentMetrics(AgentConfig(), AgentStats(), ServerLink(_no_connection)).registry,
    ]
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names.update(_sample_names(family))
    return names


def _sample_names(family: Metric) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }[family.type]
    return {family.name + suffix for suffix in suffixes}


def _no_connection() -> Any:
    raise AssertionError("not used")


def rule_expressions() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text())
    return [(r["alert"], r["expr"]) for g in document["groups"] for r in g["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    document = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in document["panels"] for t in p["targets"]]


def test_rules_and_dashboard_match_their_schemas() -> None:
    jsonschema.validate(yaml.safe_load(RULES.read_text()), RULES_SCHEMA)
    dashboard = json.loads(DASHBOARD.read_text())
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.parametrize("where", ["rules", "dashboard"])
def test_every_metric_named_is_exported(where: str) -> None:
    expressions = rule_expressions() if where == "rules" else dashboard_expressions()
    known = exported_names()
    unknown = {
        (name, metric)
        for name, expr in expressions
        for metric in METRIC.findall(expr)
        if metric not in known
    }
    assert not unknown, f"{where} name metrics no daemon exports: {sorted(unknown)}"
    alerts = {name for name, _ in rule_expressions()}
    # What the operations issue asked for: backlog, a silent agent, failing encoders,
    # storage nearly full, the API's error rate.
    assert {
        "CallJournalEncoderBacklogGrowing",
        "CallJournalAgentSilent",
        "CallJournalEncoderFailing",
        "CallJournalStorageNearlyFull",
        "CallJournalApiErrors",
    } <= alerts


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool is not installed (Debian: apt-get install prometheus; `make test` "
            "installs it as root): the schema checks above still ran"
        )
    return promtool


def test_promtool_accepts_the_rules_and_the_configuration() -> None:
    promtool = _promtool()
    for args in (
        ["check", "rules", str(RULES)],
        ["check", "config", str(MONITORING / "prometheus" / "prometheus.yml")],
    ):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_as_their_unit_tests_expect() -> None:
    promtool = _promtool()
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(RULE_TESTS).parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
