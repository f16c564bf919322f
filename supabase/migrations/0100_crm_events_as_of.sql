-- CRM events as of an instant: the nightly birthday / dormancy pass takes the time it runs for, and
-- customers born on 29 February are celebrated on 28 February in years without one.

-- section private helpers

/** Whether p_born's birthday falls on p_day: the same month and day, or 28 February in a year without a
    29th for someone born on the 29th. */
create function app.is_birthday(p_born date, p_day date) returns boolean
language sql immutable
set search_path = ''
as $$
  select extract(month from p_born) = extract(month from p_day)
     and (extract(day from p_born) = extract(day from p_day)
          or (extract(month from p_born) = 2 and extract(day from p_born) = 29 and extract(day from p_day) = 28
              and extract(day from (make_date(extract(year from p_day)::integer, 3, 1) - 1)) = 28))
$$;
revoke all on function app.is_birthday(date, date) from public;
grant execute on function app.is_birthday(date, date) to service_role;

/** customer.birthday (once a year, on the day in the business's time zone at p_as_of) and customer.dormant
    (once per dormancy, p_dormant_days after the last order at a venue). Returns how many were emitted. */
create function app.emit_crm_events_at(p_dormant_days integer, p_as_of timestamptz) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_row record;
  v_count integer := 0;
begin
  if p_as_of is null or p_dormant_days is null or p_dormant_days < 1 then
    perform app.fail('22023', 'invalid_arguments', 'an instant and a positive number of dormant days are needed');
  end if;
  for v_row in
    select c.business_id, c.id as customer_id, (p_as_of at time zone b.time_zone)::date as today
    from public.customers c join public.businesses b on b.id = c.business_id
    where c.date_of_birth is not null and c.anonymised_at is null
      and extract(month from c.date_of_birth) = extract(month from p_as_of at time zone b.time_zone)
      and extract(day from c.date_of_birth) in (extract(day from p_as_of at time zone b.time_zone), 29)
      and app.is_birthday(c.date_of_birth, (p_as_of at time zone b.time_zone)::date)
  loop
    insert into app.crm_event_marks (business_id, customer_id, kind, period)
    values (v_row.business_id, v_row.customer_id, 'birthday', extract(year from v_row.today)::text)
    on conflict do nothing;
    if found then
      perform app.emit('customer.birthday', v_row.business_id, jsonb_build_object('customer_id', v_row.customer_id));
      v_count := v_count + 1;
    end if;
  end loop;
  for v_row in
    select s.business_id, s.customer_id, s.venue_id, s.last_order_at, s.segment
    from public.customer_venue_stats s join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
    where s.last_order_at <= p_as_of - make_interval(days => p_dormant_days) and s.total_orders > 0 and c.anonymised_at is null
  loop
    insert into app.crm_event_marks (business_id, customer_id, kind, period)
    values (v_row.business_id, v_row.customer_id, 'dormant', v_row.venue_id || ':' || v_row.last_order_at)
    on conflict do nothing;
    if found then
      perform app.emit('customer.dormant', v_row.business_id, jsonb_build_object('customer_id', v_row.customer_id,
        'venue_id', v_row.venue_id, 'last_order_at', v_row.last_order_at, 'segment', v_row.segment));
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end
$$;
revoke all on function app.emit_crm_events_at(integer, timestamptz) from public;
grant execute on function app.emit_crm_events_at(integer, timestamptz) to service_role;

/** The nightly pass as of now (what app.crm_nightly calls). */
create or replace function app.emit_crm_events(p_dormant_days integer default 30) returns integer
language sql volatile security definer
set search_path = ''
as $$
  select app.emit_crm_events_at(p_dormant_days, now())
$$;
revoke all on function app.emit_crm_events(integer) from public;
grant execute on function app.emit_crm_events(integer) to service_role;
