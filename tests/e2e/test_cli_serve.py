"""``tiergate serve`` refuses a bad start in one line and exit 2, before it touches the store."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.e2e.cli_server import clean, tiergate


def test_a_port_in_use_is_one_error_and_the_store_is_not_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "t.db"
        done = tiergate("serve", "--port", str(port), "--database-url", str(db), timeout=60)
    err = clean(done.stderr)
    assert done.returncode == 2 and err.startswith(f"error: cannot listen on 127.0.0.1:{port}:"), err
    assert "--port" in err and "Traceback" not in done.stdout + done.stderr
    assert not db.exists() and "admin API key" not in done.stdout


def test_a_bad_host_or_port_is_one_error(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    for args, said in ((["--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid"),
                       (["--port", "99999"], "port (TIERGATE_PORT) must be 1 to 65535")):
        done = tiergate("serve", *args, "--database-url", db, timeout=60)
        assert done.returncode == 2 and said in clean(done.stderr), done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    done = tiergate("serve", "--database-url", db, timeout=60, TIERGATE_BATCH_SIZE="0")
    assert done.returncode == 2 and "batch_size (TIERGATE_BATCH_SIZE) must be 1" in clean(done.stderr)
    done = tiergate("serve", "--database-url", db, "--message-retention-days", "10", timeout=60)
    assert done.returncode == 2 and "must be 0 (keep every message) or at least 31" in clean(done.stderr)
    assert not Path(db).exists()
