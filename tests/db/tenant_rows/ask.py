"""Conversational admin rows for the RLS walk: a logged question of the owner's and one of the manager's."""

from __future__ import annotations

from tests.db.tenant_rows import TenantRows


def seed(ctx: TenantRows) -> None:
    for role in ("owner", "manager"):
        ctx.conn.execute("insert into public.admin_questions (business_id, asked_by, question, backend, tool_calls, answer) "
                         "values (%s, %s, 'Who are my top 5 customers?', 'rules', "
                         "'[{\"tool\": \"top_customers\", \"arguments\": {\"n\": 5}, \"status\": \"ok\", \"rows\": 1}]', 'Top 1 customers')",
                         (ctx.tenant.business_id, ctx.tenant.users[role]))
