-- Trials on the draft invoice: a business in its trial saw a draft invoice at full price (0050). Each
-- invoice line now carries the days of its share that fall in the trial and their amount as a
-- discount; amount_cents is what is charged (the prorated share minus the discount), total_cents
-- their sum, and the invoice its total discount.

-- section tables

alter table public.billing_invoice_lines
  add column trial_days integer not null default 0 constraint billing_invoice_lines_trial_days_nonnegative check (trial_days >= 0),
  add column discount_cents integer not null default 0 constraint billing_invoice_lines_discount_nonnegative check (discount_cents >= 0);
alter table public.billing_invoices add column discount_cents integer not null default 0;

-- section private helpers

/** Rebuilds the draft invoice of the business's current period from its subscription lines:
    each line's days inside the period (dates in the business's time zone, end exclusive) times its
    monthly price over the period's days, rounded half away from zero; the line's days before the
    trial ends (trial_ends_at) are shown as its discount (trial_days, discount_cents) and not charged.
    Returns the invoice id. */
create or replace function app.refresh_draft_invoice(p_business_id uuid) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_sub public.business_subscriptions;
  v_tz text;
  v_start date;
  v_end date;
  v_days integer;
  v_invoice uuid;
  v_status text;
  v_trial_end date;
begin
  select s.* into v_sub from public.business_subscriptions s where s.business_id = p_business_id;
  if v_sub.business_id is null then
    return null;
  end if;
  select b.time_zone into v_tz from public.businesses b where b.id = p_business_id;
  v_start := (v_sub.current_period_start at time zone v_tz)::date;
  v_end := (v_sub.current_period_end at time zone v_tz)::date;
  v_days := greatest(v_end - v_start, 1);
  v_trial_end := (v_sub.trial_ends_at at time zone v_tz)::date;

  insert into public.billing_invoices as i (business_id, period_start, period_end, period_days, currency)
  values (p_business_id, v_sub.current_period_start, v_sub.current_period_end, v_days, v_sub.currency)
  on conflict (business_id, period_start) do update
    set period_end = excluded.period_end, period_days = excluded.period_days, updated_at = now()
    where i.status = 'draft'
  returning i.id, i.status into v_invoice, v_status;
  if v_invoice is null then
    return null;  -- the period's invoice is already final
  end if;

  delete from public.billing_invoice_lines l where l.business_id = p_business_id and l.invoice_id = v_invoice;
  insert into public.billing_invoice_lines (business_id, invoice_id, subscription_line_id, kind, item_key, description,
                                            unit_amount_cents, days, period_days, amount_cents, currency, starts_on, ends_on,
                                            trial_days, discount_cents)
  select p_business_id, v_invoice, y.id, y.kind, y.item_key, y.description, y.unit_amount_cents, y.d, v_days,
         round(y.unit_amount_cents::numeric * y.d / v_days)::integer - round(y.unit_amount_cents::numeric * y.td / v_days)::integer,
         y.currency, y.s, y.e, y.td, round(y.unit_amount_cents::numeric * y.td / v_days)::integer
  from (
    select x.*, greatest(0, least(x.e, coalesce(v_trial_end, x.s)) - x.s) as td
    from (
      select l.*, greatest((l.starts_at at time zone v_tz)::date, v_start) as s,
             least(coalesce((l.ends_at at time zone v_tz)::date, v_end), v_end) as e,
             least(coalesce((l.ends_at at time zone v_tz)::date, v_end), v_end)
               - greatest((l.starts_at at time zone v_tz)::date, v_start) as d
      from public.business_subscription_lines l
      where l.business_id = p_business_id
    ) x
    where x.d > 0
  ) y;

  update public.billing_invoices i
  set total_cents = coalesce((select sum(l.amount_cents) from public.billing_invoice_lines l
                              where l.business_id = p_business_id and l.invoice_id = v_invoice), 0),
      discount_cents = coalesce((select sum(l.discount_cents) from public.billing_invoice_lines l
                                 where l.business_id = p_business_id and l.invoice_id = v_invoice), 0),
      updated_at = now()
  where i.business_id = p_business_id and i.id = v_invoice;
  return v_invoice;
end
$$;
revoke all on function app.refresh_draft_invoice(uuid) from public;
grant execute on function app.refresh_draft_invoice(uuid) to service_role;
