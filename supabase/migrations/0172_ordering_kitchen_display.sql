-- The kitchen display feed: each kitchen ticket split per station (the station's items, its prep-time
-- target), bumped and recalled per station, read by kitchen_board(venue_id) and watched through
-- Realtime. Under RLS for the venue's staff; gated by the `ordering` module. Errors in docs/errors.md.

-- section tables

/** A kitchen ticket's part at one station: the items made there, the prep-time target (the slowest
    item's prep_time_minutes), and whether the station bumped it (done there) or recalled it. Written
    with the ticket in the paying transaction; bump_ticket / recall_ticket move it. */
create table public.kitchen_ticket_stations (
  business_id uuid not null,
  venue_id uuid not null,
  ticket_id uuid not null,
  station text not null,
  order_id uuid not null,
  order_number integer not null,
  items jsonb not null,
  target_minutes integer not null,
  bumped_at timestamptz,
  bumped_by uuid,
  recalled_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint kitchen_ticket_stations_pkey primary key (business_id, ticket_id, station),
  constraint kitchen_ticket_stations_ticket_fkey foreign key (business_id, ticket_id)
    references public.kitchen_tickets (business_id, id) on delete cascade
);
alter table public.kitchen_ticket_stations enable row level security;

-- section indexes
create index kitchen_ticket_stations_open_idx on public.kitchen_ticket_stations (business_id, venue_id, station, created_at)
  where bumped_at is null;
create index kitchen_ticket_stations_order_idx on public.kitchen_ticket_stations (business_id, order_id);
create index kitchen_ticket_stations_bumped_idx on public.kitchen_ticket_stations (business_id, venue_id, bumped_at)
  where bumped_at is not null;

-- section triggers

/** A new kitchen ticket gets one part per station its lines are made at. */
create function app.tg_kitchen_tickets_stations() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  insert into public.kitchen_ticket_stations (business_id, venue_id, ticket_id, station, order_id, order_number, items,
                                              target_minutes, created_at)
  select new.business_id, new.venue_id, new.id, l.station, new.order_id, new.order_number,
         jsonb_agg(jsonb_build_object('quantity', l.live_quantity, 'name', l.name, 'variant', l.variant,
                                      'modifiers', l.modifiers, 'notes', l.notes) order by l.line_number),
         max(l.prep_minutes), new.created_at
  from app.ticket_lines(new.business_id, new.order_id) l
  where l.live_quantity > 0
  group by l.station
  on conflict do nothing;
  return null;
end
$$;
revoke all on function app.tg_kitchen_tickets_stations() from public, anon, authenticated, service_role;

/** Lines taken off the order (a line refund) leave the stations' screens; a part left empty goes. */
create function app.tg_order_items_changed_board() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  with live as (
    select l.station, jsonb_agg(jsonb_build_object('quantity', l.live_quantity, 'name', l.name, 'variant', l.variant,
                                                   'modifiers', l.modifiers, 'notes', l.notes) order by l.line_number) as items
    from app.ticket_lines(new.business_id, new.order_id) l where l.live_quantity > 0 group by l.station)
  update public.kitchen_ticket_stations s set items = live.items
  from live where s.business_id = new.business_id and s.order_id = new.order_id and s.station = live.station
    and s.items is distinct from live.items;
  delete from public.kitchen_ticket_stations s
  where s.business_id = new.business_id and s.order_id = new.order_id
    and not exists (select 1 from app.ticket_lines(new.business_id, new.order_id) l where l.station = s.station and l.live_quantity > 0);
  return null;
end
$$;
revoke all on function app.tg_order_items_changed_board() from public, anon, authenticated, service_role;

create trigger order_items_changed_board after update of refunded_quantity on public.order_items
  for each row when (new.refunded_quantity > old.refunded_quantity) execute function app.tg_order_items_changed_board();
create trigger kitchen_tickets_stations after insert on public.kitchen_tickets
  for each row execute function app.tg_kitchen_tickets_stations();
create trigger kitchen_ticket_stations_touch before update on public.kitchen_ticket_stations
  for each row execute function app.tg_touch_updated_at();

-- section policies
create policy "staff read ticket stations of their venues" on public.kitchen_ticket_stations for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

-- section grants
revoke all on public.kitchen_ticket_stations from anon, authenticated;
grant select on public.kitchen_ticket_stations to authenticated;
grant all on public.kitchen_ticket_stations to service_role;

-- section realtime
alter publication supabase_realtime add table public.kitchen_ticket_stations;

-- section rpc

/** What a kitchen screen shows for a venue (RLS: the caller's venues): per station, the open tickets
    (not bumped there, ticket neither done nor void) oldest first, each with its items, allergens,
    notes, age, prep-time target, due time and late flag; the venue's printers (online when they polled
    in the last 30 seconds: CloudPRNT's 2 × 5 s poll + 5 s, doubled) with the jobs waiting for them; and
    the parts bumped in the last recent_minutes, for recall. A venue the caller does not staff shows nothing. */
create function public.kitchen_board(venue_id uuid, recent_minutes integer default 15) returns jsonb
language sql stable
set search_path = ''
as $$
  with parts as (
    select s.*, t.status as ticket_status, t.fulfilment, t.table_ref, t.scheduled_for, t.allergens, t.notes, t.created_at as placed_at,
           coalesce(t.scheduled_for, t.created_at + make_interval(mins => s.target_minutes)) as due_at
    from public.kitchen_ticket_stations s
    join public.kitchen_tickets t on t.business_id = s.business_id and t.id = s.ticket_id
    where s.venue_id = kitchen_board.venue_id
  ), open as (
    select p.* from parts p where p.bumped_at is null and p.ticket_status not in ('done', 'cancelled')
  )
  select jsonb_build_object(
    'venue_id', kitchen_board.venue_id,
    'generated_at', now(),
    'stations', coalesce((
      select jsonb_agg(jsonb_build_object('station', st.station, 'open', st.open, 'late', st.late, 'tickets', st.tickets)
                       order by st.station)
      from (
        select o.station, count(*) as open, count(*) filter (where now() > o.due_at) as late,
               jsonb_agg(jsonb_build_object(
                 'ticket_id', o.ticket_id, 'order_id', o.order_id, 'order_number', o.order_number, 'status', o.ticket_status,
                 'fulfilment', o.fulfilment, 'table_ref', o.table_ref, 'scheduled_for', o.scheduled_for,
                 'items', o.items, 'allergens', to_jsonb(o.allergens), 'notes', o.notes,
                 'created_at', o.placed_at, 'age_seconds', floor(extract(epoch from now() - o.placed_at))::integer,
                 'target_minutes', o.target_minutes, 'due_at', o.due_at, 'late', now() > o.due_at,
                 'recalled', o.recalled_at is not null)
                 order by o.placed_at, o.order_number) as tickets
        from open o group by o.station
      ) st), '[]'::jsonb),
    'printers', coalesce((
      select jsonb_agg(jsonb_build_object('printer_id', p.id, 'name', p.name, 'protocol', p.protocol, 'last_seen_at', p.last_seen_at,
                                          'last_status', p.last_status, 'online', coalesce(p.last_seen_at > now() - interval '30 seconds', false),
                                          'waiting_jobs', (select count(*) from public.print_jobs j where j.printer_id = p.id
                                                             and j.business_id = p.business_id and j.status in ('queued', 'sent')))
                       order by p.name)
      from public.printers p where p.venue_id = kitchen_board.venue_id and p.is_active), '[]'::jsonb),
    'recently_bumped', coalesce((
      select jsonb_agg(jsonb_build_object('ticket_id', p.ticket_id, 'station', p.station, 'order_number', p.order_number,
                                          'bumped_at', p.bumped_at) order by p.bumped_at desc)
      from parts p
      where p.bumped_at > now() - make_interval(mins => greatest(coalesce(recent_minutes, 15), 0))
        and p.ticket_status not in ('done', 'cancelled')), '[]'::jsonb))
$$;
revoke all on function public.kitchen_board(uuid, integer) from public;
grant execute on function public.kitchen_board(uuid, integer) to authenticated, service_role;

/** Staff bump a ticket at a station (or at every station, p_station null): it leaves that station's
    screen. Bumping again is a no-op. Returns the stations bumped now and how many are still open.
    Raises PT404 (not at your venues / no such station on the ticket), BR803 (ticket void or done). */
create function app.bump_ticket(p_ticket_id uuid, p_station text, p_recall boolean) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_ticket public.kitchen_tickets;
  v_changed text[];
  v_open integer;
begin
  select t.* into v_ticket from public.kitchen_tickets t where t.id = p_ticket_id for update;
  if v_ticket.id is null or not app.has_venue_access(v_ticket.business_id, v_ticket.venue_id, '{owner,manager,staff}') then
    perform app.fail('PT404', 'ticket_not_found', 'no such ticket at your venues');
  end if;
  perform app.require_module(v_ticket.business_id, 'ordering');
  if v_ticket.status in ('done', 'cancelled') then
    perform app.fail('BR803', 'ticket_closed', format('the ticket is %s', v_ticket.status));
  end if;
  if p_station is not null and not exists (select 1 from public.kitchen_ticket_stations s where s.business_id = v_ticket.business_id
                                             and s.ticket_id = v_ticket.id and s.station = p_station) then
    perform app.fail('PT404', 'station_not_found', format('the ticket has nothing for station %s', p_station));
  end if;
  with changed as (
    update public.kitchen_ticket_stations s set
      bumped_at = case when p_recall then null else now() end,
      bumped_by = case when p_recall then null else auth.uid() end,
      recalled_at = case when p_recall then now() else s.recalled_at end
    where s.business_id = v_ticket.business_id and s.ticket_id = v_ticket.id and (p_station is null or s.station = p_station)
      and (s.bumped_at is null) <> p_recall
    returning s.station)
  select coalesce(array_agg(c.station order by c.station), '{}') into v_changed from changed c;
  select count(*) into v_open from public.kitchen_ticket_stations s
  where s.business_id = v_ticket.business_id and s.ticket_id = v_ticket.id and s.bumped_at is null;
  return jsonb_build_object('ticket_id', v_ticket.id, 'order_number', v_ticket.order_number,
                            case when p_recall then 'recalled' else 'bumped' end, to_jsonb(v_changed), 'open_stations', v_open);
end
$$;
revoke all on function app.bump_ticket(uuid, text, boolean) from public;
grant execute on function app.bump_ticket(uuid, text, boolean) to authenticated, service_role;

create function public.bump_ticket(ticket_id uuid, station text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.bump_ticket(ticket_id, station, false)
$$;
revoke all on function public.bump_ticket(uuid, text) from public;
grant execute on function public.bump_ticket(uuid, text) to authenticated, service_role;

/** Staff bring a bumped ticket back to a station's screen (or every station's). Same errors as bump_ticket. */
create function public.recall_ticket(ticket_id uuid, station text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.bump_ticket(ticket_id, station, true)
$$;
revoke all on function public.recall_ticket(uuid, text) from public;
grant execute on function public.recall_ticket(uuid, text) to authenticated, service_role;
