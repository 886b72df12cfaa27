"""Helpers for the dashboard tests: a small HTTP client with a cookie, and a handler plugin whose
failures an operator can fix (so a replay from the dashboard can be seen to succeed)."""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass, field
from typing import Any

from conftest import Project, Server

# dash.fixable fails with the error type named in the payload's "fail" until $BURAQ_RECORDS/fixed
# exists; every success is recorded as "<task id> <attempt>" in records/ok.
FIXABLE_PLUGIN = '''
import os
import buraq

ERRORS = {"ValueError": ValueError, "KeyError": KeyError, "TimeoutError": TimeoutError}

def handle(task):
    records = os.environ["BURAQ_RECORDS"]
    kind = task.payload.get("fail")
    if kind and not os.path.exists(os.path.join(records, "fixed")):
        raise ERRORS[kind](f"task {task.payload.get('n')} failed with {kind}")
    with open(os.path.join(records, "ok"), "a") as f:
        f.write(f"{task.id} {task.attempt}\\n")

@buraq.hookimpl
def register_handlers(register):
    register("dash.fixable", handle)
'''

TOKEN = "s3cret-dashboard-token-0123456789"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Web:
    """Real HTTP to one `buraq serve` listener on 127.0.0.1; remembers the session cookie it is given."""

    port: int
    cookie: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes | str | None = None, **headers: str) -> Answer:
        sent = {"Host": f"127.0.0.1:{self.port}", **self.headers}
        if self.cookie:
            sent["Cookie"] = self.cookie
        sent.update({key.replace("_", "-"): value for key, value in headers.items()})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        set_cookie = answer.headers.get("Set-Cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";", 1)[0]
        return answer

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, **headers)

    def get_json(self, path: str) -> Any:
        answer = self.get(path)
        assert answer.status == 200, f"GET {path}: {answer.status} {answer.text}"
        return answer.json()

    def csrf(self) -> str:
        return self.get_json("/api/session")["csrf"]

    def post_json(self, path: str, payload: Any, csrf: str | None = None, **headers: str) -> Answer:
        if csrf is not None:
            headers["X_Buraq_CSRF"] = csrf
        headers.setdefault("Content_Type", "application/json")
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        return self.request("POST", path, body=body, **headers)

    def login(self, token: str) -> Answer:
        return self.request("POST", "/login", body=f"token={token}",
                            Content_Type="application/x-www-form-urlencoded")


def metric(text: str, name: str, pipeline: str) -> float:
    """The sum of one metric's samples for one pipeline (over labels such as reason) in /metrics text."""
    pattern = rf'^{re.escape(name)}\{{(?=[^}}]*pipeline="{re.escape(pipeline)}")[^}}]*\}} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


def overview_of(web: Web, pipeline: str) -> dict[str, Any]:
    [row] = [p for p in web.get_json("/api/overview")["pipelines"] if p["name"] == pipeline]
    return row


def fixable_project(project: Project) -> str:
    """Install the fixable handler and one pipeline that dead-letters on the first failure; its name."""
    project.plugin("fixable.py", FIXABLE_PLUGIN)
    return project.pipeline("orders", "handler: dash.fixable\nretry: {attempts: 1}\n")


def enqueue(project: Project, pipeline: str, payloads: list[dict[str, Any]]) -> list[str]:
    done = project.buraq("enqueue", pipeline, input="".join(json.dumps(p) + "\n" for p in payloads))
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def served(project: Project, *args: str, env: dict[str, str] | None = None) -> tuple[Server, Web]:
    server = project.serve(*args, env=env)
    server.wait_ready()
    return server, Web(server.port)
