"""The sandbox's own count of distinct recipients (the platform's judge of violations) against a
plain recomputation from every send, with sends mostly in clock order and some out of it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tiergate.adapters.provider.sandbox import _DistinctWindow

SPAN = 100.0

sends = st.lists(st.tuples(st.integers(0, 30), st.floats(0, 400, allow_nan=False), st.booleans()), max_size=200)


@given(sends)
def test_the_count_is_the_recipients_whose_latest_send_is_younger_than_the_span(
        plan: list[tuple[int, float, bool]]) -> None:
    window = _DistinctWindow(SPAN)
    now = 0.0
    latest: dict[str, float] = {}
    for rcpt, step, back in plan:
        at = max(0.0, now - step / 10) if back else now + step / 10  # a clock stepped back now and then
        now = max(now, at)
        window.add(str(rcpt), at)
        latest[str(rcpt)] = max(latest.get(str(rcpt), float("-inf")), at)
        expected = {r for r, t in latest.items() if t + SPAN > now}
        assert window.count(now) == len(expected)
        assert all(window.contains(r, now) == (r in expected) for r in latest)
