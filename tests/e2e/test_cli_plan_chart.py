"""``tiergate plan --chart``: the plan drawn as SVG (by hand) or PNG (matplotlib), as a user runs it."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tests.e2e.test_cli_plan_simulate import tiergate

SVG = "{http://www.w3.org/2000/svg}"


def test_svg_draws_one_bar_per_day_and_the_tier_steps(tmp_path: Path) -> None:
    chart = tmp_path / "plan.svg"
    done = tiergate("plan", "--audience", "50000", "--start-tier", "TIER_1K", "--chart", str(chart), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # the chart note goes to stderr: stdout stays JSON
    assert f"chart: {chart}" in done.stderr
    root = ET.parse(chart).getroot()
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "send"]
    assert len(bars) == doc["total_days"] == 5
    titles = [b.find(f"{SVG}title").text for b in bars]  # type: ignore[union-attr]
    assert titles[0] == "day 1: 1,000 at TIER_1K" and titles[-1] == "day 5: 28,000 at TIER_100K"
    heights = [float(b.get("height", "0")) for b in bars]
    assert heights[0] < heights[2] < heights[4]  # the bars grow with the sends
    tiers = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tier"]
    assert tiers == ["TIER_1K", "TIER_10K", "TIER_100K ↑"]  # one label per step; 100K is above the scale
    assert "50,000 recipients, classic policy, from TIER_1K: 5 day(s), then TIER_100K" in chart.read_text()


def test_a_long_plan_is_an_area_not_thousands_of_bars(tmp_path: Path) -> None:
    chart = tmp_path / "long.svg"
    done = tiergate("plan", "--audience", "1000000", "--start-tier", "TIER_250", "--chart", str(chart))
    assert done.returncode == 0, done.stderr
    assert chart.stat().st_size < 100_000
    root = ET.parse(chart).getroot()
    assert not [r for r in root.iter(f"{SVG}rect") if r.get("class") == "send"]
    assert [p for p in root.iter(f"{SVG}path") if p.get("class") == "sends"]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="the charts extra is not installed")
def test_png_through_matplotlib(tmp_path: Path) -> None:
    chart = tmp_path / "plan.png"
    done = tiergate("plan", "--audience", "3000", "--policy", "portfolio", "--start-tier", "TIER_250",
                    "--chart", str(chart))
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


@pytest.mark.parametrize(("name", "message"), [
    ("plan.gif", "use a file name ending in .svg or .png"),
    ("missing/plan.svg", "does not exist"),
])
def test_bad_chart_paths_give_one_clear_error(tmp_path: Path, name: str, message: str) -> None:
    done = tiergate("plan", "--audience", "100", "--chart", str(tmp_path / name))
    assert done.returncode != 0
    assert done.stderr.strip().startswith("error:") and message in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr + done.stdout
