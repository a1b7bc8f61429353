"""Hostile input through the real HTTP stack: schemathesis against ``/openapi.json``, every operation.

A ``tiergate serve`` process (SQLite, sandbox) with some real data (a sender, a campaign, a
message, a second tenant) is fuzzed by the schemathesis CLI: valid and invalid bodies, paths,
queries and headers, from the schema, with real ids mixed in (dictionaries) so the operations are
reached past their 404s. Checks: no 5xx, every status code and content type documented, every
response body valid against its schema. The server's log must hold no traceback afterwards.

``python -m tests.e2e.test_schemathesis --examples 100`` is the long version (thousands of cases).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.test_crash import REPO, free_port

ADMIN_KEY = "tg_schemathesis_admin_key_0123456789abcdef"
SENDER = "106540352277001"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@dataclass
class FuzzReport:
    operations: int = 0
    generated: int = 0
    passed: int = 0
    failures: int = 0
    server_errors_logged: int = 0
    returncode: int = 0
    wall_seconds: float = 0.0
    output_tail: str = ""

    def figures(self) -> dict[str, Any]:
        return {"operations": self.operations, "cases_generated": self.generated, "cases_passed": self.passed,
                "failures": self.failures, "server_tracebacks": self.server_errors_logged,
                "wall_seconds": round(self.wall_seconds, 1)}


def _serve(tmp: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), TIERGATE_DATABASE_URL=str(tmp / "fuzz.db"), TIERGATE_PORT=str(port),
               TIERGATE_API_KEY=ADMIN_KEY, TIERGATE_APP_SECRET="fuzz-app-secret", TIERGATE_VERIFY_TOKEN="fuzz-verify",
               TIERGATE_RATE_LIMIT_PER_MINUTE="100000000", TIERGATE_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "tiergate.cli", "serve"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _seed(url: str) -> dict[str, list[str]]:
    """Real records for the dictionaries: ids schemathesis can hit instead of always getting 404."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as c:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if c.get("/healthz").status_code == 200:
                    break
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        r = c.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                        "tier": "TIER_1K"})
        assert r.status_code == 201, r.text
        r = c.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "fuzz"},
                                          "recipients": ["+5511911110001", "+5511911110002"]})
        assert r.status_code == 201, r.text
        campaign = r.json()["id"]
        r = c.post("/v1/messages", json={"sender": SENDER, "to": "+5511911110003", "template": {"name": "fuzz"}})
        assert r.status_code == 202, r.text
        message = r.json()["id"]
        other = c.post("/v1/tenants", json={"name": "fuzz-other"}).json()["id"]
    return {"senders": [SENDER, "nope"], "campaigns": [campaign], "messages": [message], "tenants": [other],
            "phones": ["+5511911110001", "5511911110004", "+15550783881", "12", "+999123"]}


def _config(tmp: Path, data: dict[str, list[str]]) -> Path:
    lines = []
    for name, values in data.items():
        lines += [f"[dictionaries.{name}]", "values = " + json.dumps(values), ""]
    bindings = {"path.sender_id": "senders", "path.phone_number_id": "senders", "path.campaign_id": "campaigns",
                "path.message_id": "messages", "path.to": "phones", "body.sender": "senders", "body.to": "phones",
                "body.tenant_id": "tenants", "query.campaign_id": "campaigns"}
    lines.append("[parameters]")
    lines += [f'"{key}" = {{ dictionary = "{name}", probability = 0.6 }}' for key, name in bindings.items()]
    path = tmp / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_fuzz(tmp: Path, examples: int, seed: int = 1) -> FuzzReport:
    started = time.perf_counter()
    report = FuzzReport()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        proc = _serve(tmp, port, log)
        try:
            config = _config(tmp, _seed(url))
            st = Path(sys.executable).with_name("st")
            cmd = [str(st), "--config-file", str(config), "--no-color", "run", f"{url}/openapi.json",
                   "-H", f"Authorization: Bearer {ADMIN_KEY}", "--checks", CHECKS, "--max-examples", str(examples),
                   "--seed", str(seed), "--workers", "1", "--request-timeout", "30", "--no-shrink",
                   "--suppress-health-check", "all"]
            done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=3600)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out = done.stdout + done.stderr
    report.returncode = done.returncode
    report.output_tail = out[-6000:]
    if m := re.search(r"(\d+) generated, (?:(\d+) found \d+ unique failures?|(\d+) passed)", out):
        report.generated = int(m.group(1))
        report.passed = int(m.group(3) or 0)
    if m := re.search(r"Tested: (\d+)", out):
        report.operations = int(m.group(1))
    report.failures = len(re.findall(r"^\d+\. Test Case ID", out, flags=re.M))
    server_log = log_path.read_text(errors="replace")
    report.server_errors_logged = server_log.count("Traceback")
    report.wall_seconds = time.perf_counter() - started
    return report


def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path: Path) -> None:
    report = run_fuzz(tmp_path, examples=15)
    assert report.returncode == 0, report.output_tail
    assert report.server_errors_logged == 0
    assert report.operations >= 30, report.figures()  # every operation of the schema
    assert report.generated >= 500 and report.passed == report.generated, report.figures()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="schemathesis against tiergate serve; prints figures as JSON.")
    parser.add_argument("--examples", type=int, default=100, help="examples per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tiergate-fuzz-") as tmp:
        report = run_fuzz(Path(tmp), args.examples, args.seed)
    print(json.dumps(report.figures(), indent=2))
    if report.returncode:
        print(report.output_tail, file=sys.stderr)
    return 1 if report.returncode or report.server_errors_logged else 0


if __name__ == "__main__":
    sys.exit(main())
