-- The operator console: views for the SQL console and the `admin` function (businesses with plan,
-- modules, MRR, orders and GMV; platform metrics), and the operator's actions (create a business with
-- its owner's invitation, plan and modules; suspend and reinstate; the payment account). Every
-- action is written to audit_log. Codes BR73x (docs/errors.md).

-- section private helpers

/** Who may read the operator views: app.is_operator() (the operator's JWT, the service role, the
    SQL console). */
create function app.operator_can_read() returns boolean
language sql stable
set search_path = ''
as $$
  select app.is_operator()
$$;
revoke all on function app.operator_can_read() from public;
grant execute on function app.operator_can_read() to anon, authenticated, service_role;

-- section views

/** One row per business for the operator: plan, subscription, enabled modules, MRR (active and
    past-due subscriptions), orders and GMV (paid orders) all-time and over 30 days, storefront.
    Empty for anyone but the operator, the service role and the SQL console. */
create view public.operator_businesses as
select b.id, b.name, b.slug, b.status, b.currency, b.created_at,
       s.plan_key, s.status as subscription_status, s.monthly_total_cents,
       case when s.status in ('active', 'past_due') then s.monthly_total_cents else 0 end as mrr_cents,
       s.current_period_end, s.trial_ends_at,
       coalesce((select array_agg(m.key order by m.sort_order) from public.modules m
                 where coalesce((b.modules_json ->> m.key)::boolean, false)), '{}') as modules,
       coalesce(o.orders_total, 0) as orders_total, coalesce(o.orders_30d, 0) as orders_30d,
       coalesce(o.gmv_total_cents, 0) as gmv_total_cents, coalesce(o.gmv_30d_cents, 0) as gmv_30d_cents,
       o.last_order_at,
       sf.subdomain, sf.custom_domain, coalesce(sf.is_published, false) as storefront_published,
       (select array_agg(u.email order by u.email) from public.memberships mb join auth.users u on u.id = mb.user_id
        where mb.business_id = b.id and mb.role = 'owner') as owner_emails
from public.businesses b
left join public.business_subscriptions s on s.business_id = b.id
left join public.storefront_settings sf on sf.business_id = b.id
left join lateral (
  select count(*) filter (where od.paid_at is not null) as orders_total,
         count(*) filter (where od.paid_at >= now() - interval '30 days') as orders_30d,
         sum(od.total_cents) filter (where od.paid_at is not null) as gmv_total_cents,
         sum(od.total_cents) filter (where od.paid_at >= now() - interval '30 days') as gmv_30d_cents,
         max(od.placed_at) as last_order_at
  from public.orders od where od.business_id = b.id
) o on true
where app.operator_can_read();

/** The platform in one row: businesses by state, MRR, churn over 30 days (subscriptions canceled in
    the window over those active at any point in it), paid orders and GMV, messaging and voice cost
    (notification_log; the voice module's credit costs join here once it lands). */
create view public.operator_platform_metrics as
select
  (select count(*) from public.businesses b where b.status = 'active') as active_businesses,
  (select count(*) from public.businesses b where b.status = 'suspended') as suspended_businesses,
  (select count(*) from public.business_subscriptions s where s.status = 'trial') as trialing_businesses,
  (select count(*) from public.storefront_settings sf where sf.is_published) as live_storefronts,
  (select coalesce(sum(s.monthly_total_cents), 0) from public.business_subscriptions s
   where s.status in ('active', 'past_due')) as mrr_cents,
  (select count(*) from public.business_subscriptions s where s.canceled_at >= now() - interval '30 days') as churned_30d,
  (select round(count(*) filter (where s.canceled_at >= now() - interval '30 days')::numeric
                / nullif(count(*) filter (where s.status in ('active', 'past_due') or s.canceled_at >= now() - interval '30 days'), 0), 4)
   from public.business_subscriptions s) as churn_rate_30d,
  (select count(*) from public.orders o where o.paid_at is not null) as orders_total,
  (select count(*) from public.orders o where o.paid_at >= now() - interval '30 days') as orders_30d,
  (select coalesce(sum(o.total_cents), 0) from public.orders o where o.paid_at is not null) as gmv_total_cents,
  (select coalesce(sum(o.total_cents), 0) from public.orders o where o.paid_at >= now() - interval '30 days') as gmv_30d_cents,
  (select coalesce(sum(n.cost_cents), 0) from public.notification_log n
   where n.channel in ('sms', 'email', 'push') and n.created_at >= now() - interval '30 days') as messaging_cost_30d_cents,
  (select coalesce(sum(n.cost_cents), 0) from public.notification_log n
   where n.channel = 'voice' and n.created_at >= now() - interval '30 days') as voice_cost_30d_cents
where app.operator_can_read();

revoke all on public.operator_businesses, public.operator_platform_metrics from anon, authenticated;
grant select on public.operator_businesses, public.operator_platform_metrics to authenticated, service_role;

-- section rpc

/** Operator: creates a business with its plan and modules, an unpublished storefront on its slug,
    and an owner invitation (the token is returned and emailed). Payload: name, slug, plan (default
    starter), modules (object of booleans), owner_email, currency, time_zone. Raises 42501
    (operator only), BR700 (unknown plan), BR730 (slug taken), BR723 (owner email), 22023. */
create function app.admin_create_business(p_business jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_plan text := coalesce(p_business ->> 'plan', 'starter');
  v_modules jsonb := coalesce(p_business -> 'modules', '{"ordering": true}'::jsonb);
  v_invitation jsonb;
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator may create businesses');
  end if;
  if nullif(trim(p_business ->> 'name'), '') is null or nullif(trim(p_business ->> 'slug'), '') is null then
    perform app.fail('22023', 'invalid_input', 'name and slug are required');
  end if;
  if jsonb_typeof(v_modules) <> 'object' then
    perform app.fail('BR003', 'invalid_modules_json', 'modules must be an object of booleans');
  end if;
  if not exists (select 1 from public.plans p where p.key = v_plan) then
    perform app.fail('BR700', 'unknown_plan', format('unknown plan %L', v_plan));
  end if;
  if exists (select 1 from public.businesses b where b.slug = lower(trim(p_business ->> 'slug'))) then
    perform app.fail('BR730', 'slug_taken', 'another business has that slug');
  end if;

  insert into public.businesses (name, slug, currency, time_zone, modules_json)
  values (trim(p_business ->> 'name'), lower(trim(p_business ->> 'slug')), coalesce(p_business ->> 'currency', 'USD'),
          coalesce(p_business ->> 'time_zone', 'UTC'), v_modules)
  returning id into v_id;
  if v_plan <> 'starter' then
    update public.business_subscriptions set plan_key = v_plan, updated_at = now() where business_id = v_id;
  end if;
  perform app.audit(v_id, 'business.created', jsonb_build_object(
    'name', p_business ->> 'name', 'slug', p_business ->> 'slug', 'plan', v_plan, 'modules', v_modules,
    'owner_email', p_business ->> 'owner_email'));
  if p_business ->> 'owner_email' is not null then
    v_invitation := app.invite_member(v_id, p_business ->> 'owner_email', 'owner');
  end if;
  perform app.onboarding_status(v_id);
  return jsonb_build_object('business_id', v_id, 'plan', v_plan, 'modules', v_modules, 'owner_invitation', v_invitation,
    'subdomain', (select s.subdomain from public.storefront_settings s where s.business_id = v_id));
end
$$;
revoke all on function app.admin_create_business(jsonb) from public;
grant execute on function app.admin_create_business(jsonb) to authenticated, service_role;

create function public.admin_create_business(business jsonb) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.admin_create_business(business)
$$;
revoke all on function public.admin_create_business(jsonb) from public, anon;
grant execute on function public.admin_create_business(jsonb) to authenticated, service_role;

/** Operator: suspend (every module gate closes, the storefront disappears) or reinstate a business,
    with a reason. Audited; emits business.status_changed. Raises 42501, PT404, 22023. */
create function app.admin_set_business_status(p_business_id uuid, p_status text, p_reason text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_old text;
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator may suspend or reinstate a business');
  end if;
  if p_status not in ('active', 'suspended') then
    perform app.fail('22023', 'invalid_input', 'status is active or suspended');
  end if;
  select b.status into v_old from public.businesses b where b.id = p_business_id for update;
  if v_old is null then
    perform app.fail('PT404', 'not_found', 'business not found');
  end if;
  if v_old <> p_status then
    update public.businesses set status = p_status where id = p_business_id;
    perform app.audit(p_business_id, case p_status when 'suspended' then 'business.suspended' else 'business.reinstated' end,
                      jsonb_build_object('reason', p_reason, 'before', v_old));
    perform app.emit('business.status_changed', p_business_id, jsonb_build_object('status', p_status, 'reason', p_reason));
  end if;
  return jsonb_build_object('business_id', p_business_id, 'status', p_status, 'changed', v_old <> p_status);
end
$$;
revoke all on function app.admin_set_business_status(uuid, text, text) from public;
grant execute on function app.admin_set_business_status(uuid, text, text) to authenticated, service_role;

create function public.admin_set_business_status(business_id uuid, status text, reason text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.admin_set_business_status(business_id, status, reason)
$$;
revoke all on function public.admin_set_business_status(uuid, text, text) from public, anon;
grant execute on function public.admin_set_business_status(uuid, text, text) to authenticated, service_role;

/** Operator (or the Stripe Connect onboarding, as service): the business's connected account that
    receives its order payments. Audited. Raises 42501, PT404, BR731 (not an acct_ id). */
create function app.set_payment_account(p_business_id uuid, p_account_id text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_old text;
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator may set the payment account');
  end if;
  if p_account_id !~ '^acct_[A-Za-z0-9]{6,64}$' then
    perform app.fail('BR731', 'invalid_payment_account', 'a Stripe connected account id looks like acct_…');
  end if;
  select b.stripe_account_id into v_old from public.businesses b where b.id = p_business_id for update;
  if not found then
    perform app.fail('PT404', 'not_found', 'business not found');
  end if;
  update public.businesses set stripe_account_id = p_account_id where id = p_business_id;
  perform app.audit(p_business_id, 'business.payment_account_set', jsonb_build_object('before', v_old, 'after', p_account_id));
  perform app.onboarding_status(p_business_id);
  return jsonb_build_object('business_id', p_business_id, 'stripe_account_id', p_account_id);
end
$$;
revoke all on function app.set_payment_account(uuid, text) from public;
grant execute on function app.set_payment_account(uuid, text) to authenticated, service_role;

create function public.set_payment_account(business_id uuid, stripe_account_id text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_payment_account(business_id, stripe_account_id)
$$;
revoke all on function public.set_payment_account(uuid, text) from public, anon;
grant execute on function public.set_payment_account(uuid, text) to authenticated, service_role;
