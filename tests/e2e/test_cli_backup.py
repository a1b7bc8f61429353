"""``tiergate backup`` against a running ``tiergate serve``: a checked copy while it keeps sending,
and every bad start refused in one line with nothing left at the destination."""

from __future__ import annotations

import concurrent.futures
import sqlite3
from pathlib import Path

from tests.e2e.cli_server import Served, clean, tiergate

from tiergate.adapters.store.sql import migrations


def _queue(served: Served, n: int) -> None:
    with served.client() as http:
        sender = http.post("/v1/senders", json={"phone_number_id": "4455", "display_phone_number": "+15550004455",
                                                "tier": "TIER_UNLIMITED"})
        assert sender.status_code in (201, 409), sender.text
        r = http.post("/v1/messages/batch", json={"messages": [
            {"sender": "4455", "to": f"+5511990{i:06d}", "template": {"name": "receipt", "language": "en_US"},
             "category": "UTILITY"} for i in range(n)]})
        assert r.status_code == 202, r.text


def test_a_backup_while_serve_writes_is_a_checked_copy(served: Served, tmp_path: Path) -> None:
    _queue(served, 200)
    out = tmp_path / "b.db"
    with concurrent.futures.ThreadPoolExecutor() as pool:  # the server keeps taking and sending messages
        more = pool.submit(_queue, served, 300)
        done = tiergate("backup", str(out), "--database-url", served.database_url)
        more.result()
    assert done.returncode == 0, done.stderr
    said = clean(done.stdout)
    latest = migrations("sqlite")[-1][0]
    assert said.startswith(f"backup written: {out} (") and f"schema {latest}" in said and "restore:" in said
    with sqlite3.connect(f"file:{out}?mode=ro", uri=True) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (messages,) = copy.execute("SELECT COUNT(*) FROM messages").fetchone()
    assert messages >= 200 and f"{messages:,} messages" in said
    assert not list(tmp_path.glob(".*partial")) and not Path(f"{out}-wal").exists()


def test_bad_backups_are_one_line_and_leave_nothing(served: Served, tmp_path: Path) -> None:
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    cases = [
        ((str(taken), "--database-url", served.database_url), f"error: {taken} exists"),
        ((str(tmp_path / "no" / "b.db"), "--database-url", served.database_url), "error: no folder"),
        ((str(tmp_path / "b.db"), "--database-url", str(tmp_path / "missing.db")), "error: no database file at"),
        ((str(tmp_path / "b.db"), "--database-url", "postgresql://u@127.0.0.1/x"), "is PostgreSQL"),
        ((str(tmp_path / "b.db"), "--database-url", str(taken)), "error: backup failed:"),  # not a database
    ]
    for args, said in cases:
        done = tiergate("backup", *args, timeout=60)
        err = clean(done.stderr)
        assert done.returncode == 2 and said in err, (args, err)
        assert "Traceback" not in done.stdout + done.stderr
    assert taken.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.db"]
    assert not (tmp_path / "missing.db").exists()
    # --force replaces; the database itself is never the destination
    ok = tiergate("backup", str(taken), "--force", "--database-url", served.database_url, timeout=60)
    assert ok.returncode == 0 and taken.read_bytes()[:16] == b"SQLite format 3\x00", ok.stderr
    same = tiergate("backup", served.database_url, "--force", "--database-url", served.database_url, timeout=60)
    assert same.returncode == 2 and "the destination is the database itself" in clean(same.stderr)
