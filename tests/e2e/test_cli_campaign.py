"""``tiergate campaign send`` against a real ``tiergate serve``: progress until done or waiting, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.cli_server import Served, clean, register, tiergate


def csv_file(tmp_path: Path, n: int, base: int = 0, extra: str = "") -> Path:
    path = tmp_path / "recipients.csv"
    path.write_text("to,param1\n" + "".join(f"+55119{base + i:08d},Ana\n" for i in range(n)) + extra)
    return path


def send(served: Served, *args: str) -> tuple[int, str, str]:
    done = tiergate("campaign", "send", *args, "--url", served.url, "--api-key", served.key, "--interval", "0.2")
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, clean(done.stdout), clean(done.stderr)


def test_send_follows_until_the_rest_waits_for_capacity(served: Served, tmp_path: Path) -> None:
    register(served, "300000000000001", tier="TIER_250", throughput_mps=1000)
    rc, out, err = send(served, str(csv_file(tmp_path, 300, extra="12,bad\n")), "--sender", "300000000000001",
                        "--template", "promo", "--name", "launch")
    assert rc == 0, err
    assert "created: 300 recipients" in out and "skipped row 301" in out
    assert "250/300" in out  # the progress bar stopped at the tier
    assert "50 messages wait: messaging limit reached (250/250 distinct recipients in 24 h)" in out
    assert "the next send:" in out and "(in 2" in out  # about 24 h from now
    campaign_id = out.split("campaign ")[1].split(" ")[0]
    with served.client() as c:
        campaign = c.get(f"/v1/campaigns/{campaign_id}").json()
    assert campaign["done"] == 250 and campaign["counts"]["queued"] == 50

    status = tiergate("campaign", "status", campaign_id, "--url", served.url, "--api-key", served.key)
    assert status.returncode == 0 and "250 of 300 done" in clean(status.stdout)


def test_send_follows_until_done(served: Served, tmp_path: Path) -> None:
    register(served, "300000000000002", tier="TIER_1K", throughput_mps=1000)
    rc, out, err = send(served, str(csv_file(tmp_path, 40, base=1_000)), "--sender", "300000000000002",
                        "--template", "promo", "--category", "utility")
    assert rc == 0, err
    assert "created: 40 recipients" in out and "done: 40 sent" in out


def test_detach_and_json(served: Served, tmp_path: Path) -> None:
    register(served, "300000000000003", tier="TIER_1K")
    rc, out, _ = send(served, str(csv_file(tmp_path, 5, base=2_000)), "--sender", "300000000000003",
                      "--template", "promo", "--detach")
    assert rc == 0 and "created: 5 recipients" in out and "--follow" in out


@pytest.mark.parametrize(("args", "message"), [
    (["missing.csv", "--sender", "x", "--template", "t"], "no such file"),
    (["{csv}", "--sender", "nope", "--template", "t"], "the campaign was not created: unknown sender 'nope'"),
    (["{csv}", "--sender", "x", "--template", "t", "--category", "promo"], "--category must be MARKETING"),
    (["{bad}", "--sender", "300000000000001", "--template", "t"], "needs a header row with a 'to' column"),
    (["{csv}", "--sender", "x", "--template", "t", "--pacing", "spread"], "--spread-days go together"),
    (["{csv}", "--sender", "x", "--template", "t", "--pacing", "slow"], "--pacing must be fastest or spread"),
    (["{csv}", "--sender", "300000000000001", "--template", "t", "--start-at", "soon"],
     "not created: start_at: 'soon' is neither epoch seconds nor an ISO 8601"),
    (["{csv}", "--sender", "300000000000001", "--template", "t", "--quiet-hours", "late"],
     "not created: quiet_hours: 'late' is not two hours like 21-8"),
    (["{csv}", "--sender", "300000000000001", "--template", "t", "--quiet-hours", "25-8"],
     "not created: quiet_hours: two hours 0-23"),
])
def test_user_mistakes_give_one_clear_error(served: Served, tmp_path: Path, args: list[str], message: str) -> None:
    good = csv_file(tmp_path, 2)
    bad = tmp_path / "bad.csv"
    bad.write_text("phone_number_wrong\n+5511900000001\n")
    args = [a.format(csv=good, bad=bad) for a in args]
    if args[0] == "missing.csv":
        args[0] = str(tmp_path / "missing.csv")
    rc, _, err = send(served, *args)
    assert rc != 0 and err.startswith("error:") and message in err, err


def test_server_problems_give_one_clear_error(served: Served, tmp_path: Path) -> None:
    good = str(csv_file(tmp_path, 2))
    nowhere = tiergate("campaign", "send", good, "--sender", "x", "--template", "t", "--url", "http://127.0.0.1:9",
                       "--api-key", "k")
    assert nowhere.returncode == 1 and "cannot reach tiergate at http://127.0.0.1:9" in clean(nowhere.stderr)
    refused = tiergate("campaign", "send", good, "--sender", "x", "--template", "t", "--url", served.url,
                       "--api-key", "tg_wrong")
    assert refused.returncode == 2 and "the API key was refused" in clean(refused.stderr)
    keyless = tiergate("campaign", "send", good, "--sender", "x", "--template", "t", "--url", served.url)
    assert keyless.returncode == 2 and "no API key" in clean(keyless.stderr)
    from_env = tiergate("campaign", "status", "cmp_nope", TIERGATE_URL=served.url, TIERGATE_API_KEY=served.key)
    assert from_env.returncode == 2 and "campaign 'cmp_nope' not found" in clean(from_env.stderr)
    for done in (nowhere, refused, keyless, from_env):
        assert "Traceback" not in done.stdout + done.stderr
        assert done.stderr.strip().startswith("error:")


def test_pacing_start_and_quiet_hours_reach_the_campaign(served: Served, tmp_path: Path) -> None:
    register(served, "300000000000004", tier="TIER_1K")
    rc, out, err = send(served, str(csv_file(tmp_path, 40, base=4_000)), "--sender", "300000000000004",
                        "--template", "promo", "--pacing", "spread", "--spread-days", "4", "--quiet-hours", "21-8",
                        "--start-at", "2030-01-01T09:00:00-03:00", "--deadline", "2030-02-01T00:00:00Z", "--detach")
    assert rc == 0, err
    assert "created: 40 recipients, planned over 4 day(s)" in out
    campaign_id = out.split("campaign ")[1].split(" ")[0]
    with served.client() as c:
        campaign = c.get(f"/v1/campaigns/{campaign_id}").json()
        waiting = c.get("/v1/messages", params={"campaign_id": campaign_id, "limit": 100}).json()
    assert campaign["pacing"] == "spread" and [d["send"] for d in campaign["plan"]] == [10, 10, 10, 10]
    assert campaign["start_at"] == 1_893_499_200.0 and campaign["deadline"] == 1_896_134_400.0
    starts = sorted({m["next_attempt_at"] for m in waiting})
    assert len(starts) == 4 and starts[1] - starts[0] == 86_400  # a quarter a day, from the start
    assert all(m["expires_at"] == 1_896_134_400.0 for m in waiting)


def waiting_campaign(served: Served, tmp_path: Path, sender: str, n: int, base: int) -> tuple[str, tuple[str, ...]]:
    """A campaign of ``n`` that starts in 2030 (so it stays queued), and the options to reach the server."""
    register(served, sender, tier="TIER_1K")
    rc, out, err = send(served, str(csv_file(tmp_path, n, base=base)), "--sender", sender,
                        "--template", "promo", "--start-at", "2030-01-01T00:00:00Z", "--detach")
    assert rc == 0, err
    return out.split("campaign ")[1].split(" ")[0], ("--url", served.url, "--api-key", served.key)


def test_pause_resume_cancel_and_list(served: Served, tmp_path: Path) -> None:
    campaign_id, common = waiting_campaign(served, tmp_path, "300000000000005", 10, 5_000)

    def act(*args: str) -> tuple[int, str, str]:
        done = tiergate("campaign", *args, *common)
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done.returncode, clean(done.stdout), clean(done.stderr)

    assert act("pause", campaign_id)[:2] == (0, "recipients is paused: 0 of 10 done; 0 sent, 10 held")
    assert act("resume", campaign_id)[:2] == (0, "recipients is running: 0 of 10 done; 0 sent, 10 queued")
    assert act("cancel", campaign_id)[:2] == (0, "recipients is canceled: 10 of 10 done; 0 sent, 10 canceled")
    rc, _, err = act("resume", campaign_id)
    assert rc == 2 and "cannot be resumed" in err
    rc, _, err = act("pause", "cmp_nope")
    assert rc == 2 and "campaign 'cmp_nope' not found" in err and "campaign list" in err
    rc, out, _ = act("list")
    assert rc == 0 and f"{campaign_id} recipients canceled 10/10 done" in out
    rc, out, _ = act("list", "--sender", "999999", "--state", "running")
    assert rc == 0 and out == "no campaigns match"
    rc, out, _ = act("list", "--state", "canceled", "--limit", "1")
    assert rc == 0 and campaign_id in out and "(the newest 1; --limit for more)" in out
    rc, _, err = act("list", "--state", "finished")
    assert rc == 2 and "state: one of running, paused, canceled" in err


def test_export_writes_the_campaigns_messages_to_a_csv_file(served: Served, tmp_path: Path) -> None:
    campaign_id, common = waiting_campaign(served, tmp_path, "300000000000006", 12, 6_000)

    def export(*args: str) -> tuple[int, str, str]:
        done = tiergate("campaign", "export", campaign_id, *args, *common)
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done.returncode, clean(done.stdout), clean(done.stderr)

    target = tmp_path / "out.csv"
    rc, out, err = export("--output", str(target))
    assert rc == 0, err
    assert out == f"wrote 12 messages to {target}"
    lines = target.read_text().splitlines()
    assert lines[0].startswith("id,to,state,") and len(lines) == 13 and all(",queued," in x for x in lines[1:])
    rc, _, err = export("--output", str(target))  # never overwritten unasked
    assert rc == 2 and "exists" in err and "--force" in err
    rc, out, _ = export("--output", str(target), "--state", "sent", "--force")
    assert rc == 0 and out == f"wrote 0 messages to {target}" and len(target.read_text().splitlines()) == 1
    rc, _, err = export("--output", str(tmp_path / "bad.csv"), "--state", "gone")
    assert rc == 2 and "state: one of" in err
    assert not (tmp_path / "bad.csv").exists() and not list(tmp_path.glob(".*.partial"))
    done = tiergate("campaign", "export", "cmp_nope", "--output", str(tmp_path / "x.csv"), *common)
    assert done.returncode == 2 and "not found" in clean(done.stderr)
