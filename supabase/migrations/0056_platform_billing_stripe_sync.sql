-- Stripe Billing, outbound: when a business billed through Stripe (billing_provider = 'stripe') opens
-- or closes a subscription line, the worker brings the Stripe subscription's items in line (one item
-- per open line, priced by plans/modules.stripe_price_id, Stripe prorating). The tables stay the
-- source of truth; app.apply_stripe_billing_event (0050) is the inbound half.

-- section tables
alter table public.plans add column stripe_price_id text;
alter table public.modules add column stripe_price_id text;
alter table public.business_subscription_lines
  add column stripe_item_id text,
  add column stripe_item_removed_at timestamptz;

-- section private helpers

/** What the Stripe subscription of a business should change: items to delete (closed lines still on
    Stripe) and prices to add (open lines not on Stripe yet). Empty when in sync or not on Stripe. */
create function app.stripe_billing_diff(p_business_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'subscription_id', s.stripe_subscription_id,
    'delete', coalesce((select jsonb_agg(jsonb_build_object('line_id', l.id, 'stripe_item_id', l.stripe_item_id) order by l.id)
                        from public.business_subscription_lines l
                        where l.business_id = s.business_id and l.ends_at is not null and l.stripe_item_id is not null
                          and l.stripe_item_removed_at is null), '[]'),
    'add', coalesce((select jsonb_agg(jsonb_build_object('line_id', l.id, 'price', coalesce(p.stripe_price_id, m.stripe_price_id))
                                      order by l.kind desc, l.item_key)
                     from public.business_subscription_lines l
                     left join public.plans p on l.kind = 'plan' and p.key = l.item_key
                     left join public.modules m on l.kind = 'module' and m.key = l.item_key
                     where l.business_id = s.business_id and l.ends_at is null and l.stripe_item_id is null
                       and coalesce(p.stripe_price_id, m.stripe_price_id) is not null), '[]'))
  from public.business_subscriptions s
  where s.business_id = p_business_id and s.billing_provider = 'stripe' and s.stripe_subscription_id is not null
$$;
revoke all on function app.stripe_billing_diff(uuid) from public;
grant execute on function app.stripe_billing_diff(uuid) to service_role;

/** Records what Stripe answered: item ids of the added lines (by price), removal of deleted ones. */
create function app.record_stripe_billing_sync(p_business_id uuid, p_diff jsonb, p_items jsonb) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_add jsonb;
begin
  update public.business_subscription_lines l set stripe_item_removed_at = now()
  where l.business_id = p_business_id
    and l.id in (select (d ->> 'line_id')::uuid from jsonb_array_elements(p_diff -> 'delete') d);
  for v_add in select * from jsonb_array_elements(p_diff -> 'add') loop
    update public.business_subscription_lines l
    set stripe_item_id = (select i ->> 'id' from jsonb_array_elements(p_items) i
                          where i -> 'price' ->> 'id' = v_add ->> 'price' limit 1)
    where l.business_id = p_business_id and l.id = (v_add ->> 'line_id')::uuid;
  end loop;
end
$$;
revoke all on function app.record_stripe_billing_sync(uuid, jsonb, jsonb) from public;
grant execute on function app.record_stripe_billing_sync(uuid, jsonb, jsonb) to service_role;

-- section triggers

/** A line opened or closed on a Stripe-billed subscription asks the worker to sync Stripe. */
create function app.tg_business_subscription_lines_stripe() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if exists (select 1 from public.business_subscriptions s where s.business_id = new.business_id
             and s.billing_provider = 'stripe' and s.stripe_subscription_id is not null) then
    perform app.emit('billing.sync_requested', new.business_id, jsonb_build_object('line_id', new.id));
  end if;
  return null;
end
$$;

create trigger business_subscription_lines_stripe after insert or update of ends_at on public.business_subscription_lines
  for each row execute function app.tg_business_subscription_lines_stripe();
