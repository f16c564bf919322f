-- Exports and the monthly financial report (issue 14 item 2). The `export` function streams CSV with
-- COPY (query) TO STDOUT under the caller's role and claims, so row-level security decides what each
-- member sees; these helpers give the export queries what RLS hides from staff (pending erasures)
-- and the report its figures. Codes in docs/errors.md.

-- section indexes
create index orders_business_placed_idx on public.orders (business_id, placed_at);

-- section private helpers

/** Is the customer's erasure requested and not cancelled (pending or executed)? Exports leave such
    customers out whoever runs them, though staff cannot read the delete requests themselves. */
create function app.customer_erasure_pending(p_business_id uuid, p_customer_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (select 1 from public.customer_delete_requests r
                 where r.business_id = p_business_id and r.customer_id = p_customer_id and r.status in ('pending', 'executed'))
$$;
revoke all on function app.customer_erasure_pending(uuid, uuid) from public;
grant execute on function app.customer_erasure_pending(uuid, uuid) to authenticated, service_role;

/** Is the caller's membership of the business limited to some of its venues (membership_venues)? */
create function app.venue_limited(p_business_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (select 1 from public.memberships m
                 join public.membership_venues mv on mv.business_id = m.business_id and mv.membership_id = m.id
                 where m.business_id = p_business_id and m.user_id = (select auth.uid()))
$$;
revoke all on function app.venue_limited(uuid) from public;
grant execute on function app.venue_limited(uuid) to authenticated, service_role;

/** The financial report of one business for the calendar month holding p_month, in the business's
    time zone: orders and bookings paid, gross (payments received), refunds succeeded, tax and tips,
    Stripe's processing fees, the platform's fees, payouts of periods starting in the month, figures
    per venue, and the ten products with the most revenue. Owners and managers of the business and the
    platform; PT404 for anyone else. */
create function app.financial_report(p_business_id uuid, p_month date) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_business public.businesses;
  v_from timestamptz;
  v_to timestamptz;
begin
  select b.* into v_business from public.businesses b where b.id = p_business_id;
  if v_business.id is null or not (app.is_member(p_business_id, '{owner,manager}') or app.is_operator()) then
    perform app.fail('PT404', 'business_not_found', 'no such business among those you manage');
  end if;
  if p_month is null then
    perform app.fail('22023', 'invalid_month', 'month is required (YYYY-MM)');
  end if;
  v_from := date_trunc('month', p_month)::timestamp at time zone v_business.time_zone;
  v_to := (date_trunc('month', p_month) + interval '1 month')::timestamp at time zone v_business.time_zone;

  return jsonb_build_object(
    'business', jsonb_build_object('id', v_business.id, 'name', v_business.name, 'currency', v_business.currency,
                                   'locale', v_business.locale, 'time_zone', v_business.time_zone),
    'month', to_char(p_month, 'YYYY-MM'), 'from', v_from, 'to', v_to,
    'totals', (
      select jsonb_build_object(
        'orders', (select count(distinct p.order_id) from public.payments p
                   where p.business_id = p_business_id and p.created_at >= v_from and p.created_at < v_to and p.order_id is not null),
        'bookings', (select count(distinct p.booking_id) from public.payments p
                     where p.business_id = p_business_id and p.created_at >= v_from and p.created_at < v_to and p.booking_id is not null),
        'gross_cents', coalesce((select sum(p.amount_cents) from public.payments p
                                 where p.business_id = p_business_id and p.created_at >= v_from and p.created_at < v_to), 0),
        'processing_fees_cents', coalesce((select sum(p.fee_cents) from public.payments p
                                           where p.business_id = p_business_id and p.created_at >= v_from and p.created_at < v_to), 0),
        'refunds_cents', coalesce((select sum(f.amount_cents) from public.refunds f
                                   where f.business_id = p_business_id and f.status = 'succeeded'
                                     and coalesce(f.applied_at, f.created_at) >= v_from and coalesce(f.applied_at, f.created_at) < v_to), 0),
        'tax_cents', coalesce((select sum(o.tax_cents) from public.orders o
                               where o.business_id = p_business_id and o.paid_at >= v_from and o.paid_at < v_to), 0),
        'tip_cents', coalesce((select sum(o.tip_cents) from public.orders o
                               where o.business_id = p_business_id and o.paid_at >= v_from and o.paid_at < v_to), 0),
        'platform_fees_cents', coalesce((select sum(f.fee_cents) from public.platform_fees f
                                         where f.business_id = p_business_id and f.created_at >= v_from and f.created_at < v_to), 0),
        'payouts_cents', coalesce((select sum(p.net_cents) from public.business_payouts p
                                   where p.business_id = p_business_id and p.period_start >= v_from and p.period_start < v_to), 0))),
    'venues', coalesce((
      select jsonb_agg(jsonb_build_object('name', v.name, 'orders', x.orders, 'gross_cents', x.gross, 'refunds_cents', x.refunds)
                       order by x.gross desc, v.name)
      from (select p.venue_id, count(distinct p.order_id) as orders, sum(p.amount_cents) as gross,
                   coalesce((select sum(f.amount_cents) from public.refunds f
                             where f.business_id = p_business_id and f.venue_id = p.venue_id and f.status = 'succeeded'
                               and coalesce(f.applied_at, f.created_at) >= v_from and coalesce(f.applied_at, f.created_at) < v_to), 0) as refunds
            from public.payments p
            where p.business_id = p_business_id and p.created_at >= v_from and p.created_at < v_to
            group by p.venue_id) x
      join public.venues v on v.business_id = p_business_id and v.id = x.venue_id), '[]'::jsonb),
    'top_products', coalesce((
      select jsonb_agg(jsonb_build_object('name', t.name, 'quantity', t.quantity, 'revenue_cents', t.revenue) order by t.revenue desc, t.name)
      from (select i.name, sum(i.quantity - i.refunded_quantity) as quantity,
                   sum(i.line_total_cents - i.refunded_quantity * i.unit_price_cents) as revenue
            from public.orders o
            join public.order_items i on i.business_id = o.business_id and i.order_id = o.id
            where o.business_id = p_business_id and o.paid_at >= v_from and o.paid_at < v_to
            group by i.name
            order by 3 desc, 1
            limit 10) t), '[]'::jsonb),
    'payouts', coalesce((
      select jsonb_agg(jsonb_build_object('period_start', to_char(p.period_start at time zone v_business.time_zone, 'YYYY-MM-DD'),
                                          'period_end', to_char(p.period_end at time zone v_business.time_zone, 'YYYY-MM-DD'),
                                          'status', p.status, 'net_cents', p.net_cents) order by p.period_start)
      from public.business_payouts p
      where p.business_id = p_business_id and p.period_start >= v_from and p.period_start < v_to), '[]'::jsonb));
end
$$;
revoke all on function app.financial_report(uuid, date) from public;
grant execute on function app.financial_report(uuid, date) to authenticated, service_role;
