-- Data retention (issue 14 item 3): one policy table says how long each kind of data is kept and what
-- happens after (deleted, or anonymised where the facts must stay); a business may change the numbers
-- of the policies that allow it, within the policy's legal bounds; app.apply_retention runs nightly
-- (worker job platform.retention). Seed 003: payment records 7 years, call logs 90 days, orders kept
-- for accounting, customer data until deletion is requested. Codes in docs/errors.md (BR8xx).

-- section tables

/** The retention policy, one row per kind of data: days kept by default, the bounds a business may set
    (min_days = max_days: not overridable), and what apply_retention does once the days are up. */
create table app.retention_policies (
  key text primary key,
  description text not null,
  action text not null constraint retention_policies_action_valid check (action in ('delete', 'anonymise', 'redact')),
  default_days integer not null,
  min_days integer not null,
  max_days integer not null,
  per_business boolean not null default false,
  constraint retention_policies_bounds check (min_days between 0 and default_days and default_days <= max_days)
);

insert into app.retention_policies (key, description, action, default_days, min_days, max_days, per_business) values
  ('call_logs', 'Phone calls: the transcript (turns), the caller''s number, the spoken cart, the address and the last reply are '
                'removed; the call''s business facts (venue, times, outcome, duration, credits, order) and the credit ledger stay',
   'redact', 90, 30, 365, true),
  ('driver_locations', 'Drivers'' GPS trail (driver_locations rows) is deleted; the deliveries keep their pickup and drop-off points',
   'delete', 30, 1, 90, true),
  ('payment_records', 'Paid orders and bookings, their payments, refunds and Stripe events are kept for tax and audit (7 years), '
                      'then lose the person: guest name, phone, email, address, notes, and the customer details in Stripe payloads',
   'anonymise', 2557, 2557, 3653, true),
  ('abandoned_carts', 'Orders never paid (a cart left at checkout) lose the guest''s contact details and the checkout link',
   'anonymise', 30, 7, 90, true),
  ('expired_tokens', 'Consent confirmation tokens, order-claim codes and staff invitations, this many days after they expired',
   'delete', 30, 30, 30, false),
  ('outbox_archive', 'Delivered outbox messages archived by pgmq (a_brigade_events, a_brigade_events_dead) and the scheduled-run log',
   'delete', 30, 30, 30, false);

/** A business's own number of days for a policy that allows it, within the policy's bounds (BR850).
    Written through public.set_retention (owners); members read it. */
create table public.business_retention (
  business_id uuid not null references public.businesses (id) on delete cascade,
  policy text not null references app.retention_policies (key),
  days integer not null,
  updated_by uuid default auth.uid(),
  updated_at timestamptz not null default now(),
  constraint business_retention_pkey primary key (business_id, policy)
);
alter table public.business_retention enable row level security;

-- section indexes
create index calls_business_started_idx on public.calls (business_id, started_at);
create index driver_locations_business_recorded_idx on public.driver_locations (business_id, recorded_at);

-- section private helpers

/** The days a business keeps a policy's data: its own setting clamped to the bounds, else the default. */
create function app.retention_days(p_business_id uuid, p_policy text) returns integer
language sql stable
set search_path = ''
as $$
  select case when p.per_business and r.days is not null then greatest(p.min_days, least(p.max_days, r.days)) else p.default_days end
  from app.retention_policies p
  left join public.business_retention r on r.business_id = p_business_id and r.policy = p.key
  where p.key = p_policy
$$;
revoke all on function app.retention_days(uuid, text) from public;

/** Applies every policy as of p_now (the nightly job; tests pass the instant): returns the rows each
    touched. Idempotent: a second run the same night touches nothing. Service only. */
create function app.apply_retention(p_now timestamptz default now()) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_calls integer;
  v_locations integer;
  v_orders integer;
  v_bookings integer;
  v_events integer;
  v_carts integer;
  v_tokens integer := 0;
  v_n integer;
  v_archive integer := 0;
begin
  -- call logs: the person and the conversation go, the facts the credit ledger points at stay
  update public.calls c
  set from_number = 'expired', turns = '[]'::jsonb, cart = '[]'::jsonb, delivery_address = null, last_reply = null
  where c.started_at < p_now - make_interval(days => app.retention_days(c.business_id, 'call_logs'))
    and c.status = 'completed'
    and (c.from_number <> 'expired' or c.turns <> '[]'::jsonb or c.cart <> '[]'::jsonb or c.delivery_address is not null
         or c.last_reply is not null);
  get diagnostics v_calls = row_count;

  delete from public.driver_locations l
  where l.recorded_at < p_now - make_interval(days => app.retention_days(l.business_id, 'driver_locations'));
  get diagnostics v_locations = row_count;

  -- payment records past their years: the money stays, the person goes
  update public.orders o
  set guest_name = null, guest_phone = null, guest_email = null, notes = '',
      delivery_address = case when o.delivery_address is null then null else '{}'::jsonb end
  where o.placed_at < p_now - make_interval(days => app.retention_days(o.business_id, 'payment_records'))
    and o.payment_status <> 'unpaid'
    and (o.guest_name is not null or o.guest_phone is not null or o.guest_email is not null or o.notes <> ''
         or coalesce(o.delivery_address <> '{}'::jsonb, false));
  get diagnostics v_orders = row_count;

  update public.bookings k
  set guest_name = null, guest_phone = null, guest_email = null, special_requests = ''
  where k.created_at < p_now - make_interval(days => app.retention_days(k.business_id, 'payment_records'))
    and (k.guest_name is not null or k.guest_phone is not null or k.guest_email is not null or k.special_requests <> '');
  get diagnostics v_bookings = row_count;

  update public.stripe_events e
  set payload = jsonb_set(e.payload, '{data,object}',
                          (e.payload -> 'data' -> 'object') - '{customer_details,billing_details,receipt_email,shipping,customer_email}'::text[])
                || '{"anonymised": true}'::jsonb
  where e.received_at < p_now - make_interval(days => coalesce(app.retention_days(e.business_id, 'payment_records'),
                                                                 app.retention_days(null, 'payment_records')))
    and not e.payload ? 'anonymised';
  get diagnostics v_events = row_count;

  -- carts nobody paid for
  update public.orders o
  set guest_name = null, guest_phone = null, guest_email = null, notes = '', checkout_url = null,
      delivery_address = case when o.delivery_address is null then null else '{}'::jsonb end
  where o.placed_at < p_now - make_interval(days => app.retention_days(o.business_id, 'abandoned_carts'))
    and o.payment_status = 'unpaid'
    and (o.guest_name is not null or o.guest_phone is not null or o.guest_email is not null or o.notes <> ''
         or o.checkout_url is not null or coalesce(o.delivery_address <> '{}'::jsonb, false));
  get diagnostics v_carts = row_count;

  -- expired tokens
  delete from public.consent_tokens t
  where t.expires_at < p_now - make_interval(days => app.retention_days(t.business_id, 'expired_tokens'));
  get diagnostics v_n = row_count;
  v_tokens := v_tokens + v_n;
  delete from app.customer_claim_codes t
  where t.expires_at < p_now - make_interval(days => app.retention_days(null, 'expired_tokens'));
  get diagnostics v_n = row_count;
  v_tokens := v_tokens + v_n;
  delete from public.staff_invitations i
  where i.accepted_at is null and i.expires_at < p_now - make_interval(days => app.retention_days(i.business_id, 'expired_tokens'));
  get diagnostics v_n = row_count;
  v_tokens := v_tokens + v_n;

  -- the outbox's archives and the scheduler's log
  delete from pgmq.a_brigade_events a where a.archived_at < p_now - make_interval(days => app.retention_days(null, 'outbox_archive'));
  get diagnostics v_n = row_count;
  v_archive := v_archive + v_n;
  delete from pgmq.a_brigade_events_dead a where a.archived_at < p_now - make_interval(days => app.retention_days(null, 'outbox_archive'));
  get diagnostics v_n = row_count;
  v_archive := v_archive + v_n;
  delete from app.scheduled_runs r where r.scheduled_for < p_now - make_interval(days => app.retention_days(null, 'outbox_archive'));
  get diagnostics v_n = row_count;
  v_archive := v_archive + v_n;

  return jsonb_build_object('call_logs', v_calls, 'driver_locations', v_locations, 'payment_records',
                            v_orders + v_bookings + v_events, 'abandoned_carts', v_carts, 'expired_tokens', v_tokens,
                            'outbox_archive', v_archive);
end
$$;
revoke all on function app.apply_retention(timestamptz) from public;
grant execute on function app.apply_retention(timestamptz) to service_role;

-- section policies
create policy "members read their retention" on public.business_retention for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "operator reads every retention" on public.business_retention for select to authenticated
  using ((select app.is_platform_admin()));

-- section views

/** The retention policy as it applies to each business the caller manages: default, bounds, its own days. */
create view public.retention_policy with (security_invoker = true) as
select b.id as business_id, p.key as policy, p.description, p.action, p.default_days, p.min_days, p.max_days, p.per_business,
       app.retention_days(b.id, p.key) as days
from public.businesses b cross join app.retention_policies p;

-- section grants
revoke all on public.business_retention from anon, authenticated;
grant select on public.business_retention to authenticated;
grant select on app.retention_policies to authenticated, service_role;
revoke all on public.retention_policy from anon, authenticated;
grant select on public.retention_policy to authenticated;
grant execute on function app.retention_days(uuid, text) to authenticated, service_role;

-- section rpc

/** Sets how many days the business keeps one policy's data (owners, or the operator). Raises BR851 for a
    policy that does not exist or is not set per business, BR850 for days outside its bounds, 42501 for
    anyone else. */
create function app.set_retention(p_business_id uuid, p_policy text, p_days integer) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_policy app.retention_policies;
begin
  if not (app.is_member(p_business_id, '{owner}') or app.is_platform_admin()) then
    perform app.fail('42501', 'not_member', 'only the business''s owners set its retention');
  end if;
  select p.* into v_policy from app.retention_policies p where p.key = p_policy;
  if v_policy.key is null or not v_policy.per_business then
    perform app.fail('BR851', 'retention_not_settable', format('no retention policy %s a business may set', p_policy));
  end if;
  if p_days is null or p_days not between v_policy.min_days and v_policy.max_days then
    perform app.fail('BR850', 'retention_out_of_bounds',
                     format('%s keeps data between %s and %s days', p_policy, v_policy.min_days, v_policy.max_days));
  end if;
  insert into public.business_retention (business_id, policy, days) values (p_business_id, p_policy, p_days)
  on conflict (business_id, policy) do update set days = excluded.days, updated_by = auth.uid(), updated_at = now();
  return jsonb_build_object('business_id', p_business_id, 'policy', p_policy, 'days', p_days);
end
$$;
revoke all on function app.set_retention(uuid, text, integer) from public;
grant execute on function app.set_retention(uuid, text, integer) to authenticated, service_role;

create function public.set_retention(business_id uuid, policy text, days integer) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_retention(business_id, policy, days)
$$;
revoke all on function public.set_retention(uuid, text, integer) from public;
grant execute on function public.set_retention(uuid, text, integer) to authenticated, service_role;
