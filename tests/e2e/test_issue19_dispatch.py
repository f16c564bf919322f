"""Issue 19's dispatch seams over HTTP against fake courier networks: each test is named after its item."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from tests.conftest import Factory
from tests.dispatch_kit import DOORDASH_AUTH, VENUE, doordash_event
from tests.e2e.test_dispatch_flow import Conn, Outside, book_with, outside  # noqa: F401  (the courier fakes' fixture)


async def test_item_9_doordash_webhooks_are_deduplicated_on_a_hash_of_the_whole_body(api: Any, conn: Conn, factory: Factory,
                                                                                    outside: Outside) -> None:  # noqa: F811
    _, order, delivery = await book_with(api, conn, factory, outside, "doordash")
    at = datetime(2030, 5, 4, 12, 0, tzinfo=timezone.utc)
    first = doordash_event(delivery, "DASHER_CONFIRMED", at, dasher=(VENUE[0], VENUE[1]))
    # the first dasher dropped it and another confirmed in the same second: same name, delivery and time
    second = dict(first, dasher_name="Eli E.", dasher_location={"lat": VENUE[0] + 0.001, "lng": VENUE[1]})
    headers = {"authorization": DOORDASH_AUTH, "content-type": "application/json"}

    def post(body: bytes) -> str:
        r = outside.post("delivery-webhook/doordash", body, headers)
        assert r.status_code == 200, r.text
        return r.json()["outcome"]

    assert post(json.dumps(first).encode()) == "applied"
    assert post(json.dumps(second).encode()) != "duplicate"
    # a redelivery of the first, serialised with its keys in another order and other whitespace
    assert post(json.dumps(dict(reversed(list(first.items()))), indent=2).encode()) == "duplicate"
    assert post(json.dumps(second, separators=(",", ":")).encode()) == "duplicate"
    rows = conn.execute("select kind, payload ->> 'dasher_name' as dasher from public.delivery_events "
                        "where delivery_id = %s and source = 'doordash' order by id", (delivery["id"],)).fetchall()
    assert rows == [{"kind": "DASHER_CONFIRMED", "dasher": "Dana D."}, {"kind": "DASHER_CONFIRMED", "dasher": "Eli E."}]
