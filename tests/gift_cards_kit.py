"""Gift cards in tests: bought as a guest would (buy_gift_card), issued as the paid Checkout webhook
does, the code read back from the gift_card.issued event (the only place it exists in clear)."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api
from tests.ordering_kit import Menu, order_payload

Conn = psycopg.Connection[dict[str, Any]]


def buy(api: Api, business_id: Any, amount_cents: int, **extra: Any) -> dict[str, Any]:
    request = {"business_id": str(business_id), "amount_cents": amount_cents,
               "purchaser": {"name": "Pat Buyer", "email": "pat@gift.test"},
               "recipient": {"name": "Robin", "email": "robin@gift.test"}, "message": "Enjoy!", **extra}
    return api.run(Claims.anon(), "select public.buy_gift_card(%s) as r", (json.dumps(request),))[0]["r"]


def issued_code(conn: Conn, gift_card_id: str) -> str:
    """The code as the gift_card.issued event carries it to the email sender."""
    row = conn.execute("select message -> 'payload' ->> 'code' as code from pgmq.q_brigade_events "
                       "where message ->> 'topic' = 'gift_card.issued' and message -> 'payload' ->> 'gift_card_id' = %s",
                       (gift_card_id,)).fetchone()
    assert row is not None, "no gift_card.issued event"
    return row["code"]


def issue(conn: Conn, api: Api, business_id: Any, amount_cents: int) -> tuple[dict[str, Any], str]:
    """A card bought and paid (what the Checkout webhook does), with its code."""
    card = buy(api, business_id, amount_cents)
    outcome = conn.execute("select app.issue_gift_card(%s, %s, %s, %s, %s) as o",
                           (business_id, card["gift_card_id"], f"pi_gift_{card['gift_card_id'][:8]}", None, amount_cents)).fetchone()
    assert outcome == {"o": "gift_card_issued"}
    return card, issued_code(conn, card["gift_card_id"])


def place(api: Api, menu: Menu, claims: Claims | None = None, **overrides: Any) -> dict[str, Any]:
    return api.run(claims or Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, **overrides)),))[0]["r"]


def balance(conn: Conn, gift_card_id: str) -> dict[str, Any]:
    """The card's balance column and the sum of its ledger (they must agree)."""
    row = conn.execute("select g.balance_cents, g.status, (select coalesce(sum(l.amount_cents), 0) from public.gift_card_ledger l "
                       "where l.business_id = g.business_id and l.gift_card_id = g.id)::integer as ledger "
                       "from public.gift_cards g where g.id = %s", (gift_card_id,)).fetchone()
    assert row is not None
    return row


def kinds(conn: Conn, gift_card_id: str) -> list[tuple[str, int]]:
    return [(r["kind"], r["amount_cents"]) for r in conn.execute(
        "select kind, amount_cents from public.gift_card_ledger where gift_card_id = %s order by id", (gift_card_id,)).fetchall()]
