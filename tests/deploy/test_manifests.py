"""The Dockerfile, compose stack, nginx.conf, Kubernetes manifests and dashboard agree with pbxws."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from .conftest import DEPLOY

K8S = DEPLOY / "k8s"


def _k8s() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object of deploy/k8s by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc:
                objects[doc["kind"]] = doc
    return objects


def _grace_seconds(env: dict[str, str]) -> float:
    return int(env["SOKETI_SHUTDOWN_GRACE_PERIOD"]) / 1000


# ------------------------------------------------------------------ Dockerfile
def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_runs_pbxws_as_pid_1_as_a_non_root_user() -> None:
    """Slim base, non-root USER, exec-form ENTRYPOINT and STOPSIGNAL SIGTERM."""
    steps = _instructions()
    final_from = [arg for op, arg in steps if op == "FROM"][-1]
    assert "slim" in final_from
    (user,) = [arg for op, arg in steps if op == "USER"]
    assert not user.startswith(("0", "root"))
    (entrypoint,) = [arg for op, arg in steps if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["pbxws"]  # exec form: no shell swallows SIGTERM
    assert [arg for op, arg in steps if op == "STOPSIGNAL"] == ["SIGTERM"]


def test_dockerfile_healthcheck_asks_the_metrics_port_for_health() -> None:
    """The HEALTHCHECK fetches /health on the metrics port."""
    (check,) = [arg for op, arg in _instructions() if op == "HEALTHCHECK"]
    assert "CMD" in check
    assert "/health" in check
    assert "9601" in check


# ------------------------------------------------------------------ compose
def test_compose_runs_two_redis_nodes_behind_nginx() -> None:
    """Redis, two pbxws nodes on the redis adapter, nginx publishing 6001."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "pbxws-1", "pbxws-2", "nginx", "prometheus", "grafana"} <= set(
        services
    )
    for name in ("pbxws-1", "pbxws-2"):
        node = services[name]
        env = node["environment"]
        assert env["SOKETI_ADAPTER_DRIVER"] == "redis"
        assert env["SOKETI_DB_REDIS_HOST"] == "redis"
        assert node["build"]["dockerfile"] == "deploy/Dockerfile"
        stop = float(node["stop_grace_period"].removesuffix("s"))
        assert stop > _grace_seconds(env), "compose would SIGKILL a draining node"
        assert float(env["PBXWS_SERVER_DRAIN_WINDOW"]) < _grace_seconds(env)
    assert "6001:6001" in services["nginx"]["ports"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    # The compose file validates like any pbxws config would.
    env = {k: str(v) for k, v in services["pbxws-1"]["environment"].items()}
    from pbxws.config import load_config_with_warnings

    config, warnings = load_config_with_warnings(None, env)
    assert warnings == []
    assert config.adapter.driver == "redis"
    assert config.apps[0].key == "pbxappkey"


def test_nginx_conf_is_accepted_by_nginx(nginx: Path, tmp_path: Path) -> None:
    """`nginx -t` accepts nginx.conf (upstream host names pointed at localhost)."""
    text = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_http_version 1.1;" in text
    local = re.sub(r"server pbxws-\d:6001", "server 127.0.0.1:6001", text)
    local = local.replace("pid /tmp/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};")
    conf = tmp_path / "nginx.conf"
    conf.write_text(local)
    done = subprocess.run(
        [str(nginx), "-t", "-q", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ Kubernetes
def test_k8s_probes_use_the_metrics_port() -> None:
    """Readiness asks /ready and liveness /health, both on the metrics port."""
    deployment = _k8s()["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"ws": 6001, "metrics": 9601}
    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]
    assert (ready["path"], ports[ready["port"]]) == ("/ready", 9601)
    assert (live["path"], ports[live["port"]]) == ("/health", 9601)


def test_k8s_termination_outlasts_prestop_plus_the_drain() -> None:
    """terminationGracePeriodSeconds > preStop + shutdown grace > drain window."""
    objects = _k8s()
    env = objects["ConfigMap"]["data"]
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    waited = float(pre_stop[1]) + _grace_seconds(env)
    assert spec["terminationGracePeriodSeconds"] > waited
    assert float(env["PBXWS_SERVER_DRAIN_WINDOW"]) < _grace_seconds(env)
    assert objects["Deployment"]["spec"]["strategy"]["rollingUpdate"] == {
        "maxUnavailable": 0,
        "maxSurge": 1,
    }


def test_k8s_selectors_and_references_match() -> None:
    """The Service and PDB select the pods; envFrom names objects that exist."""
    objects = _k8s()
    pod = objects["Deployment"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    assert objects["Service"]["spec"]["selector"] == labels
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    (container,) = pod["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in objects["Service"]["spec"]["ports"]} <= port_names
    sources = container["envFrom"]
    assert (
        sources[0]["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    )
    assert sources[1]["secretRef"]["name"] == objects["Secret"]["metadata"]["name"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9601"


def test_k8s_environment_is_a_valid_pbxws_config() -> None:
    """The ConfigMap and Secret variables load without problem or warning."""
    from pbxws.config import load_config_with_warnings

    objects = _k8s()
    env = {**objects["ConfigMap"]["data"], **objects["Secret"]["stringData"]}
    config, warnings = load_config_with_warnings(None, env)
    assert warnings == []
    assert config.server.shutdown_grace_period == _grace_seconds(env)
    assert config.metrics.port == 9601


# ------------------------------------------------------------------ names
_METRIC = re.compile(r"\b(soketi_[a-z_]+)")
_SUFFIXES = ("_bucket", "_sum", "_count")


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _dashboard_names() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "pbxws-dashboard.json").read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    assert exprs
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def _alert_names() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in _METRIC.findall(expr)}


async def test_dashboard_and_alerts_use_only_series_pbxws_exports(
    pbxws_server: Any,
) -> None:
    """Every soketi_* name in the dashboard and the alerts is on a live /metrics."""
    server = await pbxws_server()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.metrics_port}/metrics") as resp,
    ):
        text = await resp.text()
    exported = {
        line.split("{")[0].split()[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    } | {
        shlex.split(line)[2] for line in text.splitlines() if line.startswith("# TYPE")
    }
    exported |= {_base(name) for name in exported}
    wanted = _dashboard_names() | _alert_names()
    assert wanted - exported == set()
    # The dashboard shows every Soketi series, so existing users lose nothing.
    soketi = {
        "soketi_connected",
        "soketi_new_connections_total",
        "soketi_new_disconnections_total",
        "soketi_socket_received_bytes",
        "soketi_socket_transmitted_bytes",
        "soketi_ws_messages_received_total",
        "soketi_ws_messages_sent_total",
        "soketi_http_received_bytes",
        "soketi_http_transmitted_bytes",
        "soketi_http_calls_received_total",
    }
    assert soketi <= _dashboard_names()
