"""Privileges walked from the catalog, against allow-lists kept here, and the attacks of issue 20
written the way a client would send them (role + JWT claims, one transaction, as PostgREST runs it).

Three walks, each failing when the schema grows a privilege nobody listed:
- every column of `public` that `anon` or `authenticated` may INSERT or UPDATE (WRITABLE), and no
  platform-set column (fees, balances, counters, ratings, machine statuses) among them;
- every cost or secret column they may SELECT (SENSITIVE_READS), with who reads it: readable by
  customers only where a table's policies give customers rows and the column is meant for them;
- every `security definer` function in `app`, with the API roles that may execute it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.dispatch_kit import add_driver, delivery_of, make_fleet, offers, ready_order
from tests.ordering_kit import build_menu, order_payload, session_completed

Conn = psycopg.Connection[dict[str, Any]]
API_ROLES = ("anon", "authenticated")


def cols(text: str) -> frozenset[str]:
    return frozenset(text.split())


# ---- writable columns -------------------------------------------------------------------------------

# Per table, the columns a member role (through RLS and the table's guards) may write: (insert, update).
# anon writes no table directly (guests go through place_order, hold_booking, …).
WRITABLE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "activities": (cols("business_id cancel_cutoff_hours created_at description duration_minutes hold_minutes id is_published "
                        "max_party min_party name price_tiers updated_at venue_id"),
                   cols("business_id cancel_cutoff_hours created_at description duration_minutes hold_minutes id is_published "
                        "max_party min_party name price_tiers updated_at venue_id")),
    "activity_blackouts": (cols("activity_id business_id created_at ends_on id reason starts_on venue_id"), cols("")),
    "activity_schedules": (cols("activity_id business_id capacity created_at ends_on id is_active start_time starts_on weekday"),
                           cols("activity_id business_id capacity created_at ends_on id is_active start_time starts_on weekday")),
    "activity_sessions": (cols("activity_id business_id capacity ends_at starts_at venue_id"), cols("capacity status")),
    "automations": (cols("body business_id cap_count cap_days cap_scope cart_idle_minutes channel delay_seconds dormant_days is_active "
                         "name product_id push_fallback quiet_end quiet_start segment_id subject translations trigger venue_id"),
                    cols("body cap_count cap_days cap_scope cart_idle_minutes channel delay_seconds dormant_days is_active name product_id "
                         "push_fallback quiet_end quiet_start segment_id subject translations venue_id")),
    "business_roles": (cols("business_id description name permissions"), cols("description name permissions")),
    "booking_promo_codes": (cols("amount_off_cents business_id code expires_at is_active max_redemptions percent_off"),
                            cols("amount_off_cents expires_at is_active max_redemptions percent_off")),
    # insert: the operator only (policy); modules_json, slug, status: the operator only (businesses_guard)
    "businesses": (cols("created_at currency id modules_json name slug status time_zone updated_at"),
                   cols("currency locale modules_json name slug status time_zone")),
    "campaigns": (cols("body business_id channel name product_id push_fallback scheduled_at segment_id subject translations"),
                  cols("body channel name product_id push_fallback scheduled_at segment_id subject translations")),
    "customer_addresses": (cols("business_id city country customer_id delivery_instructions is_default label latitude line1 line2 "
                                "longitude postal_code region"),
                           cols("city country delivery_instructions is_default label latitude line1 line2 longitude postal_code region")),
    "customer_notes": (cols("author_id body business_id customer_id venue_id"), cols("")),
    "customer_payment_methods": (cols(""), cols("is_default")),
    "customer_preferences": (cols("business_id customer_id kind product_id value"), cols("")),
    "customer_tags": (cols("business_id customer_id tag"), cols("")),
    "customers": (cols(""), cols("allergens email full_name locale phone")),
    "driver_availability_windows": (cols("business_id driver_id ends_at id is_active starts_at weekday"),
                                    cols("ends_at is_active starts_at weekday")),
    "driver_business_assignments": (cols("assigned_at business_id driver_business_id driver_id id is_active pool priority venue_id"),
                                    cols("is_active pool priority venue_id")),
    "driver_locations": (cols("accuracy_m business_id driver_id heading latitude longitude recorded_at speed_mps"), cols("")),
    "drivers": (cols("business_id display_name id kind license_number phone user_id vehicle_plate vehicle_type"),
                cols("display_name is_available is_online phone vehicle_plate vehicle_type")),
    "loyalty_programs": (cols("business_id first_order_bonus points_expiry_days points_per_currency_unit points_per_visit updated_at"),
                         cols("points_per_currency_unit")),
    "loyalty_tiers": (cols("business_id min_spend_cents multiplier name"), cols("min_spend_cents multiplier name")),
    "marketing_suppressions": (cols("address business_id channel reason"), cols("")),
    "membership_venues": (cols("business_id membership_id venue_id"), cols("")),
    "memberships": (cols("business_id created_at custom_role_id id role user_id"), cols("custom_role_id role")),
    "modifier_groups": (cols("business_id created_at id max_choices min_choices name"),
                        cols("business_id created_at id max_choices min_choices name")),
    "modifiers": (cols("business_id cost_cents group_id id is_available name price_cents sort_order"),
                  cols("business_id cost_cents group_id id is_available name price_cents sort_order")),
    # status only along the status machine (orders_guard); payment_status is Stripe's
    "orders": (cols(""), cols("cancel_reason status")),
    "printers": (cols(""), cols("category_ids is_active name paper_width_mm stations")),  # registered through register_printer
    "product_categories": (cols("business_id created_at id is_active name parent_id sort_order station"),
                           cols("business_id created_at id is_active name parent_id sort_order station")),
    "product_modifier_groups": (cols("business_id group_id product_id sort_order"), cols("")),
    "product_variants": (cols("business_id cost_adjustment_cents id is_available is_default name price_adjustment_cents product_id sort_order"),
                         cols("business_id cost_adjustment_cents id is_available is_default name price_adjustment_cents product_id sort_order")),
    "products": (cols("allergens business_id category_id cost_cents created_at description id image_urls is_published name "
                      "prep_time_minutes price_cents sku sort_order station updated_at"),
                 cols("allergens business_id category_id cost_cents created_at description id image_urls is_published name "
                      "prep_time_minutes price_cents sku sort_order station updated_at")),
    "recipe_lines": (cols("business_id id modifier_id product_id quantity stock_sku variant_id"),
                     cols("business_id id modifier_id product_id quantity stock_sku variant_id")),
    "rewards": (cols("business_id credit_cents is_active kind name points_cost product_id"), cols("is_active name points_cost")),
    "segments": (cols("business_id criteria key name venue_id"), cols("criteria name")),
    # the operator only (its policies): a business texts from a number the platform provisioned for it
    "sms_senders": (cols("business_id is_active messaging_service_sid phone_number"), cols("is_active messaging_service_sid phone_number")),
    "stock_items": (cols("business_id critical_level name sku unit venue_id"), cols("critical_level name unit")),
    "stock_movements": (cols("business_id delta note reason stock_item_id venue_id"), cols("")),
    "storefront_settings": (cols("banner_url business_id custom_domain logo_url subdomain tagline theme_colors"),
                            cols("banner_url custom_domain is_published logo_url subdomain tagline theme_colors")),
    # the driver pay the venue offers; platform_fee_bps is the operator's (set_dispatch_platform_fee)
    "venue_dispatch_rules": (cols("average_speed_kmh base_fee_cents business_id dispatch_on fallback_providers lead_minutes load_penalty_km "
                                  "max_pickup_km offer_timeout_seconds offers_per_round own_driver_limit_seconds per_km_cents "
                                  "priority_penalty_km require_dropoff_pin surge_multiplier venue_id"),
                             cols("average_speed_kmh base_fee_cents dispatch_on fallback_providers lead_minutes load_penalty_km "
                                  "max_pickup_km offer_timeout_seconds offers_per_round own_driver_limit_seconds per_km_cents "
                                  "priority_penalty_km require_dropoff_pin surge_multiplier")),
    "venue_hours_exceptions": (cols("business_id closes_at is_closed note on_date opens_at venue_id"),
                               cols("business_id closes_at is_closed note on_date opens_at venue_id")),
    "venue_opening_hours": (cols("business_id closes_at id opens_at venue_id weekday"),
                            cols("business_id closes_at id opens_at venue_id weekday")),
    "venue_products": (cols("business_id is_available product_id unavailable_reason updated_at venue_id"),
                       cols("is_available unavailable_reason")),
    # cash_methods / cash_max_order_cents: which cash payments the venue takes (issue 23), its managers' setting
    "venues": (cols("accepts_delivery accepts_dine_in accepts_pickup address business_id cash_max_order_cents cash_methods created_at default_locale delivery_fee_cents "
                    "delivery_radius_km id is_published latitude longitude name phone require_double_opt_in slug tax_rate_bps time_zone updated_at"),
               cols("accepts_delivery accepts_dine_in accepts_pickup address business_id cash_max_order_cents cash_methods created_at default_locale delivery_fee_cents "
                    "delivery_radius_km id is_published latitude longitude name phone require_double_opt_in slug tax_rate_bps time_zone updated_at")),
}

# What the platform sets and no client ever writes, whatever the allow-list says: platform fees,
# balances and counters, ratings, payment and payout states, provider ids, codes and secrets.
PLATFORM_SET = re.compile(r"platform_fee|application_fee|rating|balance|attempts|payment_status|payout|earning|credits"
                          r"|refunded|stripe_|^total_|_verified$|pickup_code|_hash$|secret|token|_count$")
# Merchant settings whose names look like counters.
PLATFORM_SET_EXCEPTIONS = {("automations", "cap_count")}


def writable(conn: Conn, role: str, privilege: str) -> dict[str, set[str]]:
    rows = conn.execute(
        "select c.relname, a.attname from pg_class c join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public' "
        "join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
        "where c.relkind in ('r', 'p', 'v', 'm', 'f') and has_column_privilege(%s, c.oid, a.attnum, %s)",
        (role, privilege)).fetchall()
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["relname"], set()).add(r["attname"])
    return out


def test_anon_writes_no_column(conn: Conn) -> None:
    assert writable(conn, "anon", "INSERT") == {} and writable(conn, "anon", "UPDATE") == {}


@pytest.mark.parametrize("privilege", ["INSERT", "UPDATE"])
def test_every_client_writable_column_is_listed(conn: Conn, privilege: str) -> None:
    """A new writable column fails here until it is listed; a listed one that is no longer writable too."""
    index = 0 if privilege == "INSERT" else 1
    actual = {t: frozenset(c) for t, c in writable(conn, "authenticated", privilege).items()}
    expected = {t: v[index] for t, v in WRITABLE.items() if v[index]}
    unexpected = {t: sorted(c - expected.get(t, frozenset())) for t, c in actual.items() if c - expected.get(t, frozenset())}
    stale = {t: sorted(c - actual.get(t, frozenset())) for t, c in expected.items() if c - actual.get(t, frozenset())}
    assert unexpected == {}, f"authenticated may {privilege} columns nobody listed in WRITABLE: {unexpected}"
    assert stale == {}, f"WRITABLE lists columns authenticated may no longer {privilege}: {stale}"


def test_no_platform_set_column_is_client_writable(conn: Conn) -> None:
    offending = sorted(
        (table, column, privilege)
        for role in API_ROLES for privilege in ("INSERT", "UPDATE")
        for table, columns in writable(conn, role, privilege).items() for column in columns
        if PLATFORM_SET.search(column) and (table, column) not in PLATFORM_SET_EXCEPTIONS)
    assert offending == []


# ---- sensitive reads ----------------------------------------------------------------------------------

SENSITIVE = re.compile(r"cost|margin|secret|token|hash|(^|_)pin($|_)|password|api_key|platform_fee|application_fee|stripe_fee"
                       r"|fee_bps|earning|payout|idempotency")
# Who may read each cost or secret column that an API role can SELECT:
#   "anyone": anon too (published prices);
#   "customers": a table whose policies give signed-in customers their own rows, the column meant for them;
#   "members": no policy gives customers or anon a row (tables: from the catalog; views: they filter
#              themselves, checked by test_member_only_views_show_customers_nothing).
SENSITIVE_READS: dict[tuple[str, str], str] = {
    ("plans", "platform_fee_bps"): "anyone",
    ("plans", "platform_fee_fixed_cents"): "anyone",
    ("rewards", "points_cost"): "anyone",
    ("deliveries", "proof_pin_attempts"): "customers",  # how the driver's tries went, on the customer's own delivery
    ("deliveries", "proof_pin_verified"): "customers",
    ("business_payouts", "delivery_cost_cents"): "members",
    ("business_payouts", "platform_fee_cents"): "members",
    ("business_payouts", "carried_into_payout_id"): "members",  # which later payout took in this one's balance (issue 23)
    ("business_payouts", "idempotency_key"): "members",  # payout:<id>, the key of its Stripe transfer: no secret
    ("connect_payouts", "stripe_payout_id"): "members",  # the owner's own bank payouts from its connected account
    ("businesses", "application_fee_bps"): "members",
    ("businesses", "payout_schedule"): "members",  # when the business is paid out: its own setting to read
    ("businesses", "require_pin_reauth"): "members",  # whether its sensitive actions ask for a PIN: its own setting
    ("credit_transactions", "idempotency_key"): "members",
    ("driver_earnings", "payout_status"): "members",
    ("driver_earnings", "platform_fee_cents"): "members",
    ("driver_earnings", "driver_payout_id"): "members",  # the driver payout an earning was paid in (drivers read their own)
    ("driver_payouts", "earnings_count"): "members",  # drivers read their own payouts; owners and managers their drivers'
    ("driver_payouts", "idempotency_key"): "members",  # driver-payout:<id>, the key of its Stripe transfer: no secret
    ("modifiers", "cost_cents"): "members",
    ("notification_log", "cost_cents"): "members",
    ("payments", "application_fee_cents"): "members",
    ("platform_fees", "fee_bps"): "members",
    ("product_variants", "cost_adjustment_cents"): "members",
    ("products", "cost_cents"): "members",
    ("refunds", "idempotency_key"): "members",
    ("venue_dispatch_rules", "platform_fee_bps"): "members",
    ("venue_dispatch_rules", "require_dropoff_pin"): "members",
    ("campaign_performance", "message_cost_cents"): "members",
    ("delivery_margins", "cost_cents"): "members",
    ("delivery_margins", "margin_cents"): "members",
    ("operator_platform_metrics", "messaging_cost_30d_cents"): "members",
    ("operator_platform_metrics", "voice_cost_30d_cents"): "members",
    ("order_profit", "cost_of_goods_cents"): "members",
    ("order_profit", "margin_cents"): "members",
    ("order_profit", "messaging_cost_cents"): "members",
    ("order_profit", "stripe_fee_cents"): "members",
}
# A policy qualifies as members-only when it goes through one of these (membership, the operator, drivers).
MEMBER_HELPERS = r"app\.(my_business_ids|my_venue_keys|is_member|has_venue_access|is_platform_admin|is_platform_or_service" \
                 r"|operator_can_read|my_driver_keys|served_driver_keys|my_permitted_business_ids|my_permitted_venue_keys)\("


def sensitive_reads(conn: Conn) -> dict[tuple[str, str], str]:
    """(relation, column) → its audience as the catalog shows it ("view" for views: they filter themselves)."""
    rows = conn.execute(
        "with facing as ("
        "  select c.oid, bool_or(coalesce(p.qual, 'true') !~ %(helpers)s) as customers"
        "  from pg_policies p join pg_namespace n on n.nspname = p.schemaname"
        "  join pg_class c on c.relnamespace = n.oid and c.relname = p.tablename"
        "  where p.schemaname = 'public' and p.cmd in ('SELECT', 'ALL') and p.roles && '{anon,authenticated,public}'::name[]"
        "  group by c.oid)"
        "select c.relname, c.relkind, a.attname, has_column_privilege('anon', c.oid, a.attnum, 'SELECT') as anon,"
        "       coalesce(f.customers, false) as customers "
        "from pg_class c join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public' "
        "join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
        "left join facing f on f.oid = c.oid "
        "where c.relkind in ('r', 'p', 'v', 'm') and a.attname ~ %(sensitive)s "
        "  and (has_column_privilege('anon', c.oid, a.attnum, 'SELECT') or has_column_privilege('authenticated', c.oid, a.attnum, 'SELECT'))",
        {"helpers": MEMBER_HELPERS, "sensitive": SENSITIVE.pattern}).fetchall()
    return {(r["relname"], r["attname"]): "anyone" if r["anon"] else "view" if r["relkind"] in ("v", "m")
            else "customers" if r["customers"] else "members" for r in rows}


def test_every_cost_and_secret_column_readable_by_clients_is_listed(conn: Conn) -> None:
    actual = sensitive_reads(conn)
    declared = {k: ("view" if v == "members" and actual.get(k) == "view" else v) for k, v in SENSITIVE_READS.items()}
    wrong = {k: {"catalog": v, "listed": declared.get(k)} for k, v in actual.items() if declared.get(k) != v}
    stale = sorted(k for k in SENSITIVE_READS if k not in actual)
    assert wrong == {}, f"cost or secret columns clients read that SENSITIVE_READS does not say: {wrong}"
    assert stale == [], f"SENSITIVE_READS lists columns no client can read any more: {stale}"


def signed_in_order(api: Api, conn: Conn, factory: Factory) -> tuple[Any, Claims, dict[str, Any]]:
    """A tenant with a menu, and a signed-in customer's paid order (with a costed modifier)."""
    tenant = factory.tenant("Cost Cafe", {"ordering": True, "dispatch": True})
    menu = build_menu(conn, tenant)
    me = factory.user("diner@example.test")
    customer = Claims.user(me, email="diner@example.test")
    payload = order_payload(menu, items=[{"product_id": str(menu.products["latte"]), "modifier_ids": [str(menu.modifiers["oat"])],
                                          "quantity": 1}])
    order = api.run(customer, "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_cost", "pi_cost")),))
    return menu, customer, order


def test_customers_do_not_read_what_their_order_cost_the_merchant(api: Api, conn: Conn, factory: Factory) -> None:
    menu, customer, order = signed_in_order(api, conn, factory)
    assert conn.execute("select cost_cents from public.orders where id = %s", (order["order_id"],)).fetchone()["cost_cents"] > 0  # type: ignore[index]
    # the customer still reads their order and its lines...
    assert [r["id"] for r in api.run(customer, "select id from public.orders")] == [uuid.UUID(order["order_id"])]
    lines = api.run(customer, "select name, quantity, modifiers from public.order_items")
    assert len(lines) == 1 and lines[0]["modifiers"] and all("name" in m for m in lines[0]["modifiers"])
    # ...never the costs: not the columns, not the modifiers' snapshot, not the profit view
    assert sqlstate(lambda: api.run(customer, "select cost_cents from public.orders")) == "42501"
    assert sqlstate(lambda: api.run(customer, "select unit_cost_cents from public.order_items")) == "42501"
    assert sqlstate(lambda: api.run(customer, "select cost_cents from public.deliveries")) == "42501"
    assert all("cost_cents" not in m for m in lines[0]["modifiers"])
    assert api.run(customer, "select order_id from public.order_profit") == []
    # the merchant reads them through the money view
    owner = api.run(menu.tenant.claims("owner"), "select cost_of_goods_cents from public.order_profit where order_id = %s",
                    (order["order_id"],))
    assert owner and owner[0]["cost_of_goods_cents"] > 0


VIEWS = {"campaign_performance", "delivery_margins", "operator_platform_metrics", "order_profit"}


@pytest.mark.parametrize("view", sorted({rel for (rel, _), who in SENSITIVE_READS.items() if who == "members"} & VIEWS))
def test_member_only_views_show_customers_nothing(api: Api, conn: Conn, factory: Factory, view: str) -> None:
    menu, customer, order = signed_in_order(api, conn, factory)
    if view == "order_profit":  # the view has the order's row, for its owner
        assert [r["order_id"] for r in api.run(menu.tenant.claims("owner"), "select order_id from public.order_profit")] == \
            [uuid.UUID(order["order_id"])]
    rival = factory.tenant("Rival", {"ordering": True, "dispatch": True, "campaigns": True}).claims("owner")
    for caller in (customer, Claims.anon(), rival):
        try:
            rows = api.run(caller, f"select * from public.{view}")
        except psycopg.errors.InsufficientPrivilege:
            continue
        assert rows == [], (view, caller.role, caller.sub)


def test_views_are_known(conn: Conn) -> None:
    views = {r["relname"] for r in conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public' "
        "where c.relkind in ('v', 'm')").fetchall()}
    with_sensitive = {rel for (rel, _), audience in sensitive_reads(conn).items() if audience == "view"}
    assert with_sensitive == VIEWS & views, "a view showing costs must be listed in VIEWS (and so walked above)"


# ---- security definer functions ---------------------------------------------------------------------------

# Callable by anon (and signed-in callers): the storefront, guest orders and bookings by access token,
# and helpers the anon-facing policies call.
ANON_CALLABLE = {
    "activity_is_public(uuid,uuid,boolean)", "add_to_cart(text,jsonb)", "apply_cart_voucher(text,text)", "available_sessions(uuid,timestamp with time zone,timestamp with time zone)",
    "booking_checkout_context(uuid,uuid)", "business_active(uuid)", "cancel_my_booking(uuid,uuid)", "checkout_cart(text)", "checkout_context(uuid,uuid)",
    "get_booking(uuid,uuid)", "get_cart(text)", "get_menu(text,text)", "get_order(uuid,uuid)", "get_storefront(text)", "hold_booking(jsonb)",
    "module_enabled(uuid,text)", "order_messages(uuid,uuid)", "place_order(jsonb)", "rate_delivery(uuid,uuid,integer)", "remove_from_cart(text,uuid)", "send_order_message(uuid,uuid,text,text)",
    "set_cart_details(text,jsonb)", "start_cart(uuid)", "submit_review(uuid,uuid,jsonb)",
    "track_delivery(uuid,uuid)", "transaction_flag(text,uuid)", "update_cart_item(text,uuid,jsonb)",
    # issue 23 gift cards: guests buy one, check a code's balance (rate-limited) and pay their order with it (token)
    "buy_gift_card(jsonb)", "check_gift_card_balance(uuid,text)", "apply_gift_card(uuid,uuid,text)",
    "apply_gift_card_to_booking(uuid,uuid,text)",
    "receipt(text,uuid,uuid)",  # the token holder, the order's customer, venue staff, the platform; PT404 otherwise
}
# Callable by signed-in users only: each checks membership, ownership or the operator inside.
AUTHENTICATED_CALLABLE = {
    "accept_invitation(text)", "admin_create_business(jsonb)", "admin_set_business_status(uuid,text,text)",
    "assign_delivery(uuid,uuid)", "billing_overview(uuid)", "campaign_preview(uuid,text,uuid)", "cancel_booking(uuid,text,integer)",
    "cancel_campaign(uuid)", "cancel_delivery(uuid,text)", "claim_cart(text)", "cancel_my_deletion()", "change_plan(uuid,text)", "compile_segment(jsonb)", "conversation_role(conversations)",
    "driver_delivery_update(uuid,delivery_status,jsonb)", "export_customer(uuid)", "force_delete_customer(uuid,uuid)",
    "generate_payouts(timestamp with time zone,timestamp with time zone,uuid)", "get_onboarding_status(uuid)",
    "grant_voice_credits(uuid,integer,text,text)", "has_permission(uuid,text)", "has_venue_access(uuid,uuid,membership_role[])",
    "invite_member(uuid,text,membership_role,uuid[],interval)", "is_member(uuid,membership_role[])", "list_dead_events(integer)",
    "manager_generate_sessions(uuid,integer)", "mark_conversation_read(uuid)", "manager_recompute_segment(uuid)", "mark_payout_paid(uuid,uuid)",
    "merge_customers(uuid,uuid)", "open_support_conversation(uuid,text,uuid,text)", "moderate_review(text,uuid,text,text,text)", "my_business_ids(membership_role[])",
    "my_conversation_keys()", "my_customer_keys()", "my_driver_keys()", "my_permitted_business_ids(text)", "my_permitted_venue_keys(text)",
    "my_venue_keys(membership_role[])", "permission_refused(text,text)", "redeem_reward(uuid,uuid)", "refund_booking(uuid,integer,text)", "reorder(uuid)",
    "register_printer(uuid,text,text,text,text[],uuid[],integer)", "reprint_ticket(uuid,uuid)", "rotate_printer_token(uuid)",
    "void_ticket(uuid,text)", "bump_ticket(uuid,text,boolean)",
    # issue 23: owners/managers of the driver's business (or the operator) mark a manual driver payout paid;
    # the operator sets a driver's Connect Express account
    "mark_driver_payout_paid(uuid,uuid)", "set_driver_payout_account(uuid,uuid,text)",
    "set_gift_card_expiry(uuid,integer)",  # issue 23: the owner (or the operator) sets the local-law expiry
    # PINs: each acts on the caller's own PIN or checks owner/manager inside; require_fresh_pin only refuses or
    # audits the caller's own grant (the triggers of sensitive actions call it as the caller)
    "verify_pin(uuid,text,text)", "set_my_pin(uuid,text)", "my_pin_status(uuid)", "reset_staff_pin(uuid)",
    "set_pin_reauth(uuid,boolean)", "require_fresh_pin(uuid,text,boolean)",
    "replay_dead_event(bigint)", "request_my_deletion()", "request_order_claim(uuid,text,text)",
    "request_refund(uuid,integer,jsonb,text,boolean)", "reschedule_booking(uuid,uuid)", "respond_offer(uuid,boolean,text)",
    "revoke_invitation(uuid)", "save_push_subscription(uuid,jsonb,text,boolean,text)", "schedule_campaign(uuid,timestamp with time zone)", "served_driver_keys()",
    "send_message(uuid,text,text)", "set_booking_status(uuid,booking_status)", "set_conversation_status(uuid,text,uuid)", "set_business_module(uuid,text,boolean)",
    "set_customer_status(uuid,text,text)", "set_my_locale(uuid,text)", "set_dispatch_platform_fee(uuid,uuid,integer)",
    "set_payment_account(uuid,text)", "set_payout_schedule(uuid,text)", "set_subscription_status(uuid,text)", "staff_set_consent(uuid,text,boolean,uuid,text)",
    "upsert_my_profile(uuid,text,text,text)", "verify_order_claim(uuid,text)", "verify_pickup_code(uuid,text)",
    # issue 14: exports leave out pending erasures and venue-limited members see their venues' customers;
    # the financial report checks owner/manager/operator inside
    "customer_erasure_pending(uuid,uuid)", "venue_limited(uuid)", "financial_report(uuid,date)",
    "set_retention(uuid,text,integer)",  # owners (or the operator), within the policy's bounds
    "metrics(uuid,timestamp with time zone,timestamp with time zone)",  # owners/managers, the operator for the platform
    "list_alerts(boolean,integer)", "acknowledge_alert(bigint)",  # the operator only (checked inside)
    # issue 23 cash: the order's own-fleet driver or a member with collect_cash (PT404/42501 otherwise);
    # hand-overs need reconcile_cash at the venue
    "record_cash_collection(uuid,integer,integer,timestamp with time zone,text)", "record_cash_refused(uuid,text)",
    "record_cash_handover(uuid,uuid,bigint,text)", "cash_collector(orders)",
}


def definers(conn: Conn) -> list[dict[str, Any]]:
    return conn.execute(
        "select replace(p.oid::regprocedure::text, 'app.', '') as fn, p.prorettype = 'trigger'::regtype as is_trigger, "
        "       has_function_privilege('anon', p.oid, 'execute') as anon, "
        "       has_function_privilege('authenticated', p.oid, 'execute') as authenticated, "
        "       exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a where a.grantee = 0) as public, "
        "       coalesce(array_to_string(p.proconfig, ','), '') as config "
        "from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'app' and p.prosecdef").fetchall()


def test_every_app_definer_is_executable_only_by_the_roles_listed(conn: Conn) -> None:
    rows = definers(conn)
    assert len(rows) > 100
    assert sorted(r["fn"] for r in rows if r["public"]) == [], "no definer is executable by PUBLIC"
    assert sorted(r["fn"] for r in rows if r["anon"]) == sorted(ANON_CALLABLE)
    assert sorted(r["fn"] for r in rows if r["authenticated"]) == sorted(ANON_CALLABLE | AUTHENTICATED_CALLABLE)
    assert [r["fn"] for r in rows if r["is_trigger"] and (r["anon"] or r["authenticated"])] == []
    assert sorted(r["fn"] for r in rows if "search_path=" not in r["config"]) == [], "every definer pins its search_path"


def test_anon_and_members_cannot_emit_events(api: Api, conn: Conn, factory: Factory) -> None:
    tenant = factory.tenant("Emitter", {"ordering": True})
    forged = "select app.emit('order.paid', %s, %s)"
    payload = json.dumps({"order_id": str(uuid.uuid4())})
    assert sqlstate(lambda: api.run(Claims.anon(), forged, (tenant.business_id, payload))) == "42501"
    assert sqlstate(lambda: api.run(tenant.claims("owner"), forged, (tenant.business_id, payload))) == "42501"
    assert conn.execute("select count(*) as n from pgmq.q_brigade_events where message ->> 'topic' = 'order.paid'").fetchone() == {"n": 0}
    assert api.run(Claims.service(), "select app.emit('test.ping', null, '{}') is not null as ok") == [{"ok": True}]


# ---- the attacks of issue 20 ------------------------------------------------------------------------------


def test_a_manager_cannot_set_the_platform_fee_on_driver_pay(api: Api, conn: Conn, factory: Factory, operator: Claims) -> None:
    fleet = make_fleet(conn, factory)
    b, venue = fleet.tenant.business_id, fleet.menu.venue_id
    manager = fleet.tenant.claims("manager")
    q = "update public.venue_dispatch_rules set platform_fee_bps = %s where business_id = %s"
    assert sqlstate(lambda: api.run(manager, q, (0, b))) == "42501"
    assert sqlstate(lambda: api.run(manager, q, (10000, b))) == "42501"
    other = factory.venue(b, "Annex")
    assert sqlstate(lambda: api.run(manager, "insert into public.venue_dispatch_rules (business_id, venue_id, platform_fee_bps) "
                                             "values (%s, %s, 0)", (b, other))) == "42501"
    # the venue's own settings stay the manager's, and a new venue's rules start at the platform's fee
    assert api.rowcount(manager, "insert into public.venue_dispatch_rules (business_id, venue_id, base_fee_cents) values (%s, %s, 350)",
                        (b, other)) == 1
    assert conn.execute("select platform_fee_bps from public.venue_dispatch_rules where venue_id = %s", (other,)).fetchone() == \
        {"platform_fee_bps": 1000}
    assert sqlstate(lambda: api.run(manager, "select public.set_dispatch_platform_fee(%s, %s, 0)", (b, venue))) == "42501"
    assert api.run(operator, "select public.set_dispatch_platform_fee(%s, %s, 1500) ->> 'platform_fee_bps' as bps", (b, venue)) == \
        [{"bps": "1500"}]
    assert conn.execute("select platform_fee_bps from public.venue_dispatch_rules where venue_id = %s", (venue,)).fetchone() == \
        {"platform_fee_bps": 1500}
    assert sqlstate(lambda: api.run(operator, "select public.set_dispatch_platform_fee(%s, %s, 10001)", (b, venue))) == "23514"


def test_no_client_inserts_a_business_with_a_fee_or_payment_account(api: Api, conn: Conn, factory: Factory,
                                                                    operator: Claims) -> None:
    q = "insert into public.businesses (name, slug, application_fee_bps) values ('Zero Fee', %s, 0)"
    assert sqlstate(lambda: api.run(operator, q, (f"z-{uuid.uuid4().hex[:8]}",))) == "42501"
    assert sqlstate(lambda: api.run(operator, "insert into public.businesses (name, slug, stripe_account_id) "
                                              "values ('Theirs', %s, 'acct_someoneelse')", (f"t-{uuid.uuid4().hex[:8]}",))) == "42501"


def test_products_cannot_be_inserted_with_forged_ratings(api: Api, conn: Conn, factory: Factory) -> None:
    tenant = factory.tenant("Rated", {"ordering": True})
    manager = tenant.claims("manager")
    forged = "insert into public.products (business_id, name, price_cents, rating_count, rating_average) values (%s, 'Fake', 500, 9999, 5.0)"
    assert sqlstate(lambda: api.run(manager, forged, (tenant.business_id,))) == "42501"
    assert sqlstate(lambda: api.run(manager, "update public.products set rating_count = 9999")) == "42501"
    made = api.run(manager, "insert into public.products (business_id, name, price_cents) values (%s, 'Real', 500) returning id",
                   (tenant.business_id,))
    assert conn.execute("select rating_count, rating_average from public.products where id = %s", (made[0]["id"],)).fetchone() == \
        {"rating_count": 0, "rating_average": None}


def test_the_rating_guard_holds_on_insert_even_with_a_wider_grant(conn: Conn, factory: Factory, api: Api) -> None:
    """Defence in depth: were the column granted again, the trigger still starts ratings at zero."""
    tenant = factory.tenant("Rated", {"ordering": True})
    conn.execute("grant insert (rating_count, rating_average) on public.products to authenticated")
    row = api.run(tenant.claims("manager"), "insert into public.products (business_id, name, price_cents, rating_count, rating_average) "
                                            "values (%s, 'Fake', 500, 9999, 5.0) returning rating_count, rating_average",
                  (tenant.business_id,))
    assert row == [{"rating_count": 0, "rating_average": None}]


def ready_pickup(api: Api, conn: Conn, factory: Factory) -> tuple[Any, str]:
    tenant = factory.tenant("Pickup Place", {"ordering": True})
    menu = build_menu(conn, tenant)
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_pk", "pi_pk")),))
    for status in ("accepted", "ready"):
        api.run(tenant.claims("staff"), "select public.set_order_status(%s, %s)", (order["order_id"], status))
    return tenant, order["order_id"]


def test_staff_cannot_complete_a_pickup_by_setting_the_verified_flag(api: Api, conn: Conn, factory: Factory) -> None:
    tenant, order_id = ready_pickup(api, conn, factory)
    staff = tenant.claims("staff")
    with pytest.raises(psycopg.Error) as forged:
        with api.session(staff) as c:
            c.execute("select set_config('brigade.pickup_verified', %s, true)", (str(order_id),))
            c.execute("update public.orders set status = 'completed' where id = %s", (order_id,))
    assert forged.value.sqlstate == "BR122"
    # nor by writing the flag the guard now trusts
    assert sqlstate(lambda: api.run(staff, "insert into app.transaction_flags (flag, subject) values ('pickup_verified', %s)",
                                    (order_id,))) == "42501"
    assert conn.execute("select status from public.orders where id = %s", (order_id,)).fetchone() == {"status": "ready"}
    # the real path still completes it, and leaves no flag behind
    code = conn.execute("select message -> 'payload' ->> 'pickup_code' as c from pgmq.q_brigade_events "
                        "where message ->> 'topic' = 'order.paid'").fetchone()["c"]  # type: ignore[index]
    assert api.run(staff, "select public.verify_pickup_code(%s, %s) ->> 'verified' as v", (order_id, code)) == [{"v": "true"}]
    assert conn.execute("select status from public.orders where id = %s", (order_id,)).fetchone() == {"status": "completed"}
    assert conn.execute("select count(*) as n from app.transaction_flags").fetchone() == {"n": 0}


def assigned_delivery(api: Api, conn: Conn, factory: Factory, *, require_pin: bool = False) -> tuple[Any, Claims, dict[str, Any]]:
    """An own-driver delivery, accepted and picked up by driver `dan`."""
    fleet = make_fleet(conn, factory)
    if require_pin:
        api.run(fleet.tenant.claims("manager"), "update public.venue_dispatch_rules set require_dropoff_pin = true where business_id = %s",
                (fleet.tenant.business_id,))
    add_driver(conn, factory, fleet, "dan", km_north=0.3)
    order = ready_order(api, conn, fleet)
    conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))
    delivery = delivery_of(conn, order)
    [offer] = offers(conn, delivery["id"])
    dan = fleet.claims("dan")
    api.run(dan, "select public.respond_offer(%s, true)", (offer["id"],))
    api.run(dan, "select public.update_delivery_status(%s, 'picked_up')", (delivery["id"],))
    return order, dan, delivery_of(conn, order)


def complete(api: Api, driver: Claims, delivery: dict[str, Any], proof: dict[str, Any]) -> dict[str, Any]:
    return api.run(driver, "select public.complete_delivery(%s, %s) as r", (delivery["id"], json.dumps(proof)))[0]["r"]


def test_dropoff_pin_guesses_are_counted_and_limited(api: Api, conn: Conn, factory: Factory) -> None:
    _, dan, delivery = assigned_delivery(api, conn, factory)
    pin = delivery["dropoff_pin"]
    wrong = [p for p in (f"{n:04d}" for n in range(10000)) if p != pin]
    answers = [complete(api, dan, delivery, {"pin": wrong[i]}) for i in range(5)]
    assert [(a["delivered"], a["reason"], a["attempts_left"]) for a in answers] == [(False, "wrong_pin", n) for n in (4, 3, 2, 1, 0)]
    assert delivery_of(conn, {"order_id": delivery["order_id"]})["proof_pin_attempts"] == 5
    # the sixth try is refused even with the right PIN, and a wrong PIN never rides on a photo
    assert complete(api, dan, delivery, {"pin": pin})["reason"] == "too_many_attempts"
    assert complete(api, dan, delivery, {"pin": wrong[0], "photo_url": "https://img.test/door.jpg"})["delivered"] is False
    assert delivery_of(conn, {"order_id": delivery["order_id"]})["status"] == "picked_up"


def test_a_right_pin_delivers_and_a_wrong_one_with_a_photo_does_not(api: Api, conn: Conn, factory: Factory) -> None:
    _, dan, delivery = assigned_delivery(api, conn, factory)
    pin = delivery["dropoff_pin"]
    other = "0000" if pin != "0000" else "0001"
    assert complete(api, dan, delivery, {"pin": other, "photo_url": "https://img.test/door.jpg"})["reason"] == "wrong_pin"
    done = complete(api, dan, delivery, {"pin": pin})
    assert (done["status"], done["delivered"]) == ("delivered", True)
    row = delivery_of(conn, {"order_id": delivery["order_id"]})
    assert (row["status"], row["proof_pin_verified"], row["proof_pin_attempts"]) == ("delivered", True, 2)


def test_a_venue_can_require_the_dropoff_pin(api: Api, conn: Conn, factory: Factory) -> None:
    _, dan, delivery = assigned_delivery(api, conn, factory, require_pin=True)
    assert sqlstate(lambda: complete(api, dan, delivery, {"photo_url": "https://img.test/door.jpg"})) == "BR509"
    assert delivery_of(conn, {"order_id": delivery["order_id"]})["status"] == "picked_up"
    done = complete(api, dan, delivery, {"pin": delivery["dropoff_pin"], "photo_url": "https://img.test/door.jpg"})
    assert done["delivered"] is True
