"""A real Mockup Studio site for end-to-end tests: web, CPU worker and GPU worker as processes.

Each site gets its own PostgreSQL database (or SQLite file), its own Redis namespaces and its
own data folder, so sites never see each other's jobs, and it is torn down at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Site:
    """Processes of one site; ``env`` is what each of them runs with."""

    data_dir: Path
    env: dict[str, str]
    port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    database: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
        # Its own process group, so a kill reaches the worker processes a Dramatiq parent forks.
        process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def start_web(self) -> None:
        self.start(
            "web", PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "mockups.asgi:application"
        )
        wait_until(self._web_answers, timeout=120, what="the web process")

    def start_worker(self, name: str, *queues: str, threads: int = 1) -> subprocess.Popen[bytes]:
        return self.start(
            name, PYTHON, "-m", "dramatiq", "mockups.worker", "-p", "1", "-t", str(threads), "-Q", *queues
        )

    def kill(self, name: str) -> None:
        """SIGKILL the process and every process it started, like a machine losing power."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _web_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()


def site_create(tmp_path: Path, *, extra_env: dict[str, str] | None = None) -> Site:
    """A migrated site with a merchant; uses PostgreSQL and Redis when the suite runs on them."""
    tag = uuid.uuid4().hex[:10]
    data_dir = tmp_path / f"site-{tag}"
    data_dir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "mockups.settings",
            "DATA_DIR": str(data_dir),
            "TINY_MODELS_DIR": os.environ.get(
                "TEST_TINY_MODELS_DIR", str(ROOT / "var" / "test-models" / "tiny")
            ),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "QUEUE_NAMESPACE": f"mockups-e2e-{tag}",
            "CHANNEL_PREFIX": f"mockups-e2e-{tag}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
    )
    database = ""
    base_url = os.environ.get("DATABASE_URL", "")
    if base_url.startswith("postgres"):
        database = f"mockups_e2e_{tag}"
        _postgres_admin(base_url, f'CREATE DATABASE "{database}"')
        env["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + database
    else:
        env["DATABASE_URL"] = f"sqlite:///{data_dir / 'site.sqlite3'}"
    env.update(extra_env or {})
    site = Site(data_dir=data_dir, env=env, port=free_port(), database=database)
    site.manage("migrate", "--no-input", "-v", "0")
    return site


def site_destroy(site: Site) -> None:
    site.stop()
    if site.database:
        _postgres_admin(os.environ["DATABASE_URL"], f'DROP DATABASE IF EXISTS "{site.database}" WITH (FORCE)')


def _postgres_admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


class Browser:
    """A logged-in HTTP session against a site (cookies and CSRF like the page script)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.jar if c.name == name), "")

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.site.base_url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def login(self, username: str, password: str) -> None:
        self.request("GET", "/login/")
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": self.cookie("csrftoken")}
        ).encode()
        status, _ = self.request(
            "POST",
            "/login/",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": self.site.base_url + "/login/",
            },
        )
        assert self.cookie("sessionid"), f"login failed ({status})"

    def upload(
        self, image: bytes, *, styles: list[str], count: int | None = None, product_name: str = "mug"
    ) -> tuple[int, dict[str, Any]]:
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []

        def field_part(name: str, value: str) -> None:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )

        for style in styles:
            field_part("styles", style)
        if count is not None:
            field_part("count", str(count))
        field_part("product_name", product_name)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="product.png"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
            + image
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        status, body = self.request(
            "POST",
            "/jobs/",
            body=b"".join(parts),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "X-CSRFToken": self.cookie("csrftoken"),
                "Referer": self.site.base_url + "/",
            },
        )
        return status, json.loads(body or b"{}")

    def job(self, job_id: str) -> dict[str, Any]:
        status, body = self.request("GET", f"/jobs/{job_id}.json")
        assert status == 200, body
        return dict(json.loads(body))


import urllib.parse  # noqa: E402  (used by Browser.login)
