"""`buraq echo`: pipelines resolved (defaults, variables) with secrets masked."""

from __future__ import annotations

import json

import pytest
import yaml

from buraq.authoring.echo import looks_secret
from conftest import Project


@pytest.mark.parametrize("name", ["token", "api_key", "apiKey", "API_KEY", "db-password", "DB_PASSWORD",
                                  "client_secret", "HTTPAuth", "aws.credentials", "SENTRY_DSN", "passwd"])
def test_secret_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["path", "keyspace", "monkey", "author", "tokens_per_minute", "HOME", "width"])
def test_names_that_are_not_secret(name: str) -> None:
    assert not looks_secret(name)


def test_echo_fills_defaults_interpolates_and_masks(project: Project) -> None:
    # Given a pipeline with variables, a secret-looking option key, and a secret variable inside a URL
    name = project.pipeline("orders", """\
        handler: builtin.noop
        timeout: 1m
        retry: {attempts: 5}
        options:
          region: ${REGION:eu}
          api_token: plain-in-the-file
          database: "postgres://app:${DB_PASSWORD}@db/orders"
          nested: {password: hunter2, keep: 1}
          list: [{private_key: abc}, visible]
    """)
    env = project.env(DB_PASSWORD="s3cr3t-value", REGION="us")
    # When echoed as YAML and as JSON
    as_yaml = project.buraq("echo", "pipelines", env=env)
    as_json = project.buraq("echo", "pipelines", "--json", env=env)
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert as_json.returncode == 0, as_json.stderr
    # Then both show the same resolved pipeline, and no secret appears anywhere
    [shown] = yaml.safe_load(as_yaml.stdout)
    assert json.loads(as_json.stdout) == [shown]
    for secret in ("s3cr3t-value", "plain-in-the-file", "hunter2", "abc"):
        assert secret not in as_yaml.stdout + as_json.stdout + as_yaml.stderr
    assert shown["name"] == name
    assert shown["stream"] == f"buraq:{{{name}}}:tasks" and shown["dlq"] == f"buraq:{{{name}}}:dlq"
    assert (shown["pool"], shown["timeout"], shown["lease"], shown["executor"]) == (10, 60.0, 15.0, "thread")
    assert shown["retry"] == {"attempts": 5, "backoff": {"initial": 1.0, "multiplier": 2.0, "max": 300.0, "jitter": 0.1}}
    assert shown["options"] == {"region": "us", "api_token": "***", "database": "***",
                                "nested": {"password": "***", "keep": 1}, "list": [{"private_key": "***"}, "visible"]}
    assert shown["source"] == "pipelines/orders.yaml:1"


def test_a_secret_variable_is_masked_outside_options_too(project: Project) -> None:
    project.pipeline("p", "handler: builtin.noop\ndescription: ${SIGNING_SECRET:fallback}\n")
    masked = project.buraq("echo", "pipelines", env=project.env(SIGNING_SECRET="zzz-top"))
    assert "zzz-top" not in masked.stdout
    assert yaml.safe_load(masked.stdout)[0]["description"] == "***"
    # An unset secret variable falls back to its default, which is in the file anyway: shown.
    unset = project.buraq("echo", "pipelines")
    assert yaml.safe_load(unset.stdout)[0]["description"] == "fallback"


def test_echo_reports_invalid_pipelines_like_validate(project: Project) -> None:
    project.pipeline("p", "handler: builtin.noop\npool: 0\n")
    result = project.buraq("echo", "pipelines")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "pipelines/p.yaml:3: pool: 0 is less than the minimum of 1" in result.stderr
