"""Voice rows for the RLS walk: a number per venue, a credit top-up, and one answered, charged call."""

from __future__ import annotations

import random

from tests.db.tenant_rows import TenantRows


def seed(ctx: TenantRows) -> None:
    conn, b = ctx.conn, ctx.tenant.business_id
    conn.execute("select app.set_business_module(%s, 'voice', true)", (b,))
    rnd = random.Random(str(b))
    for venue in ctx.tenant.venues:
        conn.execute("insert into public.voice_numbers (business_id, venue_id, phone_number) values (%s, %s, %s)",
                     (b, venue, "+1555" + "".join(rnd.choice("0123456789") for _ in range(7))))
    conn.execute("select app.grant_voice_credits(%s, 100, 'RLS walk top-up')", (b,))
    for venue in ctx.tenant.venues:
        to = conn.execute("select phone_number from public.voice_numbers where business_id = %s and venue_id = %s", (b, venue)).fetchone()
        sid = "CA" + "".join(rnd.choice("0123456789abcdef") for _ in range(32))
        conn.execute("select app.voice_start_call(%s, '+12125550199', %s)", (sid, to["phone_number"]))  # type: ignore[index]
        conn.execute("select app.voice_end_call(%s, 'completed', 61)", (sid,))
