"""How fast webhook bodies become events, against the cost of merely decoding their JSON.

Cases: one status per body (the platform's usual delivery), 50 statuses per body (a busy batch),
one inbound text, and a mixed batch (tier, quality, account, preference, template changes). For
each: decode-only baseline (orjson.loads), parse (decode + events + change ids), and verify + parse
(the HMAC check the endpoint does first). Ratio = parse time / decode time, measured in the same run.

    python bench/webhook_parse.py [--seconds 1.0] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import orjson

from tiergate.core.signature import sign, verify_signature
from tiergate.core.webhooks import parse_webhook_bytes

SECRET = "bench-secret"
META = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}


def _envelope(*changes: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": list(changes)}]}


def _status(i: int) -> dict[str, Any]:
    return {
        "id": f"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI{i:010d}",
        "status": "delivered",
        "timestamp": str(1_760_000_000 + i),
        "recipient_id": f"1555{i:07d}",
        "conversation": {"id": f"c{i}", "origin": {"type": "marketing"}},
        "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"},
    }


def _statuses(count: int) -> dict[str, Any]:
    value = {"messaging_product": "whatsapp", "metadata": META, "statuses": [_status(i) for i in range(count)]}
    return _envelope({"field": "messages", "value": value})


def _inbound() -> dict[str, Any]:
    message = {"from": "15551230001", "id": "wamid.in", "timestamp": "1760000000", "type": "text",
               "text": {"body": "STOP"}}  # fmt: skip
    value = {"messaging_product": "whatsapp", "metadata": META, "messages": [message],
             "contacts": [{"profile": {"name": "Ana"}, "wa_id": "15551230001"}]}  # fmt: skip
    return _envelope({"field": "messages", "value": value})


def _mixed() -> dict[str, Any]:
    return _envelope(
        {"field": "phone_number_quality_update",
         "value": {"display_phone_number": "15550783881", "event": "UPGRADE", "current_limit": "TIER_10K",
                   "old_limit": "TIER_1K"}},
        {"field": "business_capability_update", "value": {"max_daily_conversations_per_business": 2000}},
        {"field": "phone_number_quality_update", "value": {"display_phone_number": "1", "event": "FLAGGED"}},
        {"field": "account_update",
         "value": {"event": "ACCOUNT_RESTRICTION",
                   "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING",
                                         "expiration": 1760086400}]}},
        {"field": "user_preferences",
         "value": {"metadata": META, "user_preferences": [{"wa_id": "1555", "value": "stop", "timestamp": 1}]}},
        {"field": "message_template_status_update", "value": {"event": "APPROVED", "message_template_id": 1}},
    )  # fmt: skip


def _rate(func: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``func`` over about ``seconds`` (best of three runs)."""
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(20):
                func()
            count += 20
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    args = parser.parse_args()

    cases = {
        "1 status/body": _statuses(1),
        "50 statuses/body": _statuses(50),
        "1 inbound text": _inbound(),
        "mixed 6 changes": _mixed(),
    }
    rows = []
    for name, body in cases.items():
        raw = orjson.dumps(body)
        header = sign(SECRET, raw)
        events = len(parse_webhook_bytes(raw))
        decode = _rate(lambda raw=raw: orjson.loads(raw), args.seconds)
        parse = _rate(lambda raw=raw: parse_webhook_bytes(raw), args.seconds)

        def verified(raw: bytes = raw, header: str = header) -> object:
            return verify_signature(SECRET, raw, header) and parse_webhook_bytes(raw)

        full = _rate(verified, args.seconds)
        rows.append(
            {
                "case": name,
                "bytes": len(raw),
                "events_per_body": events,
                "decode_bodies_per_s": round(decode),
                "parse_bodies_per_s": round(parse),
                "parse_events_per_s": round(parse * events),
                "verify_parse_events_per_s": round(full * events),
                "us_per_event": round(1e6 / (parse * events), 2),
                "parse_over_decode": round(decode / parse, 2),
            }
        )

    header_line = f"{'case':<18} {'bytes':>7} {'ev/body':>7} {'decode/s':>10} {'parse/s':>9} {'events/s':>10} " \
                  f"{'verify+parse ev/s':>17} {'us/event':>8} {'x decode':>8}"  # fmt: skip
    print(header_line)
    for row in rows:
        print(
            f"{row['case']:<18} {row['bytes']:>7} {row['events_per_body']:>7} {row['decode_bodies_per_s']:>10} "
            f"{row['parse_bodies_per_s']:>9} {row['parse_events_per_s']:>10} {row['verify_parse_events_per_s']:>17} "
            f"{row['us_per_event']:>8} {row['parse_over_decode']:>8}"
        )
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump({"benchmark": "webhook_parse", "baseline": "orjson.loads of the same body", "rows": rows},
                      out, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
