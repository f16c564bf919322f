"""Issue 22's tables for the two-tenant RLS walk: a custom role (written by the owner through RLS,
carried by the staff member) and the platform's permission catalogue."""

from __future__ import annotations

from tests.db.tenant_rows import TenantRows

CATALOGUE = {"permissions", "role_permissions"}
ANON_READABLE = {"permissions": "true", "role_permissions": "true"}


def seed(ctx: TenantRows) -> None:
    t = ctx.tenant
    owner = t.claims("owner")
    [role] = ctx.api.run(owner, "insert into public.business_roles (business_id, name, permissions) values (%s, 'Shift lead', "
                                "'{refund,edit_stock}') returning id", (t.business_id,))
    ctx.api.run(owner, "update public.memberships set custom_role_id = %s where business_id = %s and user_id = %s",
                (role["id"], t.business_id, t.users["staff"]))
