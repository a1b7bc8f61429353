"""A real ``tiergate serve`` in a subprocess (free port, its own SQLite file, a known admin key) for CLI tests."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest


@dataclass
class Served:
    url: str
    key: str
    database_url: str

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(**extra: str) -> dict[str, str]:
    """A clean environment: no TIERGATE_* from the caller's shell, wide enough for rich tables."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "200", "HOME": os.environ.get("HOME", "/tmp")}
    env.update(extra)
    return env


def tiergate(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tiergate.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(**env))


def against(served: Served, *args: str) -> tuple[int, str, str]:
    """``tiergate ARGS`` against ``served`` (its URL and key): exit code, stdout and stderr, cleaned;
    whatever happens, never a traceback."""
    done = tiergate(*args, "--url", served.url, "--api-key", served.key)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, clean(done.stdout), clean(done.stderr)


@contextmanager
def running_serve(tmp: Path) -> Iterator[Served]:
    port = free_port()
    key = "tg_" + secrets.token_urlsafe(24)
    db = str(tmp / "serve.db")
    env = cli_env(TIERGATE_API_KEY=key, TIERGATE_DATABASE_URL=db, TIERGATE_PORT=str(port),
                  TIERGATE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "tiergate.cli", "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"tiergate serve exited with {proc.returncode}: {output}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tiergate serve did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield Served(url, key, db)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def register(served: Served, pnid: str, **fields: Any) -> dict[str, Any]:
    with served.client() as c:
        r = c.post("/v1/senders", json={"phone_number_id": pnid, "display_phone_number": "+15550783881", **fields})
        assert r.status_code == 201, r.text
        data: dict[str, Any] = r.json()
        return data


def clean(text: str) -> str:
    """Output with rich's line wrapping undone, for substring checks."""
    return " ".join(text.split())
