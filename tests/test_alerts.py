"""deploy/: alert and recording rules (promtool check + unit tests), scrape config, Grafana dashboard, docs.

These tests need Debian's ``prometheus`` package (``promtool``); ``make test`` installs it with
``scripts/install-prometheus.sh``. Without promtool they fail, saying so: they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fenliu.serving import metrics

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
RULES_TEST = PROM / "alerts_test.yml"
SCRAPE = PROM / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "fenliu-dashboard.json"
DOCS = ROOT / "docs" / "metrics.md"

ALERTS = {
    "FenliuGrassrootsRatioLow",
    "FenliuRedShareJump",
    "FenliuPackReloadRefused",
    "FenliuGrpcErrorRateHigh",
    "FenliuNoPackLoaded",
    "FenliuWorkerRestarted",
    "FenliuRedMatterPastFirstContact",
    "FenliuMatterPastResolution",
    "FenliuGrassrootsResolvedRatioLow",
}
#: Grafana's variables, replaced by something Prometheus accepts when the queries are checked.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$__interval": "1m",
    "$job": ".*",
    "$instance": ".*",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `bash scripts/install-prometheus.sh` (installs Debian's "
            "prometheus package; make test does it first)",
            pytrace=False,
        )
    return path


def run_promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return groups


def fenliu_metric_names() -> set[str]:
    """Sample names fenliu exposes (a histogram ``x`` as ``x_bucket``, ``x_sum``, ``x_count``)."""
    text = metrics.Metrics().exposition().decode()
    names: set[str] = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = m.groups()
        if kind == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


# ----------------------------------------------------------------------------------------------------
# Rules


def test_alert_rules_pass_promtool_check() -> None:
    res = run_promtool("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    res = run_promtool("test", "rules", RULES_TEST.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_unit_tests_that_fire_and_that_do_not() -> None:
    defined = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    assert defined == ALERTS
    fires: set[str] = set()
    quiet: set[str] = set()
    for t in yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))["tests"]:
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
    assert fires == ALERTS, f"no firing case for {ALERTS - fires}"
    assert quiet == ALERTS, f"no not-firing case for {ALERTS - quiet}"


def test_grassroots_recording_rule_is_the_documented_ratio() -> None:
    rec = {r["record"]: r["expr"] for g in rule_groups() for r in g["rules"] if "record" in r}
    expr = " ".join(rec["fenliu:grassroots_ratio:rate1d"].split())
    assert 'rate(fenliu_decisions_total{excluded="false",tier=~"VILLAGE|TOWNSHIP"}[1d])' in expr
    assert expr.endswith('sum by (job) (rate(fenliu_decisions_total{excluded="false"}[1d]))')
    docs = DOCS.read_text(encoding="utf-8")
    assert (
        'sum(rate(fenliu_decisions_total{excluded="false",tier=~"VILLAGE|TOWNSHIP"}[1d])) / '
        'sum(rate(fenliu_decisions_total{excluded="false"}[1d]))'
    ) in docs


def test_outcome_recording_rules_are_the_documented_ratio() -> None:
    rec = {r["record"]: r["expr"] for g in rule_groups() for r in g["rules"] if "record" in r}
    for window in ("7d", "30d"):
        expr = " ".join(rec[f"fenliu:grassroots_resolved_ratio:increase{window}"].split())
        assert f'increase(fenliu_matters_resolved_total{{level=~"VILLAGE|TOWNSHIP"}}[{window}])' in expr
        assert expr.endswith(f"sum by (job) (increase(fenliu_matters_resolved_total[{window}]))")
    docs = DOCS.read_text(encoding="utf-8")
    assert (
        'sum(increase(fenliu_matters_resolved_total{level=~"VILLAGE|TOWNSHIP"}[30d])) / '
        "sum(increase(fenliu_matters_resolved_total[30d]))"
    ) in docs


def test_rules_use_only_metrics_fenliu_exposes() -> None:
    known = fenliu_metric_names()
    text = RULES.read_text(encoding="utf-8")
    used = set(re.findall(r"(?<![:\w])((?:fenliu|grpc_server)_[a-z_]+)\b", text))
    assert used and used <= known, used - known


def test_example_scrape_config_is_valid() -> None:
    res = run_promtool("check", "config", str(SCRAPE))
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------------------------------
# Dashboard


def dashboard() -> dict[str, Any]:
    d: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return d


def dashboard_exprs() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in d["annotations"]["list"] if "expr" in a]
    return exprs


def concrete(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def test_dashboard_is_importable_grafana_json() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= names
    for p in d["panels"]:
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
    titles = " | ".join(p["title"] for p in d["panels"])
    for want in (
        "by category",
        "by colour",
        "by tier",
        "Grassroots ratio",
        "RED share",
        "Calls by method and code",
        "error ratio",
        "p50, p99",
        "Top 10 rules",
        "reloads",
        "Pack revision",
        "Worker restarts",
        "Resolved at the grassroots",
        "Open matters",
        "Overdue matters",
    ):
        assert want.lower() in titles.lower(), want


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": concrete(e)}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    res = run_promtool("check", "rules", str(f), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dashboard_uses_only_metrics_fenliu_exposes() -> None:
    known = fenliu_metric_names()
    used = {
        n for e in dashboard_exprs() for n in re.findall(r"(?<![:\w])((?:fenliu|grpc_server)_[a-z_]+)\b", e)
    }
    assert used <= known, used - known
    # every metric shows up somewhere on the dashboard
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in known}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families == shown, families - shown


# ----------------------------------------------------------------------------------------------------
# Docs


def test_docs_list_every_metric_and_alert() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for name in fenliu_metric_names():
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f"`{family}`" in docs, family
    for alert in ALERTS:
        assert alert in docs, alert
