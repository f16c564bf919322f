-- Kitchen and receipt printers that poll Brigade (Star CloudPRNT, Epson Server Direct Print), and
-- print_jobs: an outbox of documents per printer, written in the transaction that creates the kitchen
-- ticket (the paying one), handed out in order, confirmed by the printer, never lost while it is
-- offline. Gated by the `ordering` module. Error codes in docs/errors.md (BR8xx).

-- section stations
alter table public.product_categories
  add column station text constraint product_categories_station_format check (station ~ '^[a-z0-9_-]{1,32}$');
alter table public.products
  add column station text constraint products_station_format check (station ~ '^[a-z0-9_-]{1,32}$');

-- section tables

/** A network printer at a venue. It polls Brigade (no inbound connection to the venue) and
    authenticates with its device token, of which only the SHA-256 is kept. A kitchen printer prints
    the items of its stations (or categories; neither = everything), a receipt printer the paid order. */
create table public.printers (
  business_id uuid not null,
  venue_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint printers_name_length check (length(name) between 1 and 80),
  kind text not null constraint printers_kind_valid check (kind in ('kitchen', 'receipt')),
  protocol text not null constraint printers_protocol_valid check (protocol in ('star_cloudprnt', 'epson_sdp')),
  stations text[] not null default '{}'
    constraint printers_stations_format check (array_to_string(stations, ',') ~ '^([a-z0-9_-]{1,32}(,[a-z0-9_-]{1,32})*)?$'),
  category_ids uuid[] not null default '{}',
  paper_width_mm integer not null default 80 constraint printers_paper_width_valid check (paper_width_mm in (58, 80)),
  is_active boolean not null default true,
  device_token_hash text not null,
  last_seen_at timestamptz,
  last_status text,
  device_address text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint printers_pkey primary key (business_id, id),
  constraint printers_device_token_key unique (business_id, device_token_hash),
  constraint printers_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade
);
alter table public.printers enable row level security;

/** One document for one printer: a kitchen ticket (the printer's stations only), a void slip, a
    change slip (lines taken off a printed ticket), a reprint or a receipt. queued → sent (the printer fetched it) → printed (it confirmed), or back to
    queued when the printer reports a printer error, or failed when it cannot handle the data; staff
    reprint. Printers take their jobs in seq order. */
create table public.print_jobs (
  business_id uuid not null,
  venue_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  seq bigint generated always as identity,
  printer_id uuid not null,
  order_id uuid,
  ticket_id uuid,
  kind text not null constraint print_jobs_kind_valid check (kind in ('ticket', 'void', 'change', 'reprint', 'receipt')),
  status text not null default 'queued'
    constraint print_jobs_status_valid check (status in ('queued', 'sent', 'printed', 'failed', 'cancelled')),
  document jsonb not null,
  fetch_count integer not null default 0,
  last_code text,
  requested_by uuid,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  printed_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint print_jobs_pkey primary key (business_id, id),
  constraint print_jobs_printer_fkey foreign key (business_id, printer_id) references public.printers (business_id, id) on delete cascade,
  constraint print_jobs_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint print_jobs_ticket_fkey foreign key (business_id, ticket_id) references public.kitchen_tickets (business_id, id) on delete cascade
);
alter table public.print_jobs enable row level security;

/** Append-only: every status change of a print job, with the printer's code. */
create table public.print_job_events (
  business_id uuid not null,
  id bigint generated always as identity,
  venue_id uuid not null,
  job_id uuid not null,
  printer_id uuid not null,
  from_status text,
  to_status text not null,
  code text,
  actor_user_id uuid,
  created_at timestamptz not null default now(),
  constraint print_job_events_pkey primary key (business_id, id),
  constraint print_job_events_job_fkey foreign key (business_id, job_id) references public.print_jobs (business_id, id) on delete cascade
);
alter table public.print_job_events enable row level security;

-- section indexes
create index printers_venue_idx on public.printers (business_id, venue_id);
-- a printer does not know its business: its token (24 random bytes) is looked up across them
create index printers_device_token_idx on public.printers (device_token_hash);
create index print_jobs_pending_idx on public.print_jobs (printer_id, seq) where status in ('queued', 'sent');
create index print_jobs_venue_idx on public.print_jobs (business_id, venue_id, created_at desc);
create index print_jobs_ticket_idx on public.print_jobs (business_id, ticket_id);
create index print_jobs_order_idx on public.print_jobs (business_id, order_id);
create unique index print_jobs_once_per_ticket_key on public.print_jobs (business_id, printer_id, ticket_id, kind)
  where kind in ('ticket', 'void');
create index print_job_events_job_idx on public.print_job_events (business_id, job_id, id);

-- section private helpers

/** SHA-256 hex of a device token: what printers.device_token_hash holds. */
create function app.device_token_hash(p_token text) returns text
language sql immutable
set search_path = ''
as $$
  select encode(extensions.digest(convert_to(coalesce(p_token, ''), 'UTF8'), 'sha256'), 'hex')
$$;
revoke all on function app.device_token_hash(text) from public;

/** A new device token: 32 bytes from the CSPRNG, URL-safe. */
create function app.new_device_token() returns text
language sql volatile
set search_path = ''
as $$
  select 'prt_' || translate(encode(extensions.gen_random_bytes(24), 'base64'), '+/=', '-_')
$$;
revoke all on function app.new_device_token() from public;

/** The station an item is cooked at: the product's, else its category's, else 'kitchen'. */
create function app.item_station(p_business_id uuid, p_product_id uuid) returns text
language sql stable security definer
set search_path = ''
as $$
  select coalesce((select coalesce(p.station, c.station)
                   from public.products p
                   left join public.product_categories c on c.business_id = p.business_id and c.id = p.category_id
                   where p.business_id = p_business_id and p.id = p_product_id), 'kitchen')
$$;
revoke all on function app.item_station(uuid, uuid) from public;

/** The lines of a ticket's order with station, category, prep time and price: what every document
    and the kitchen board are cut from. */
create function app.ticket_lines(p_business_id uuid, p_order_id uuid)
returns table (line_number integer, order_item_id uuid, product_id uuid, category_id uuid, station text, prep_minutes integer,
               quantity integer, live_quantity integer, name text, variant text, modifiers jsonb, notes text,
               line_total_cents integer)
language sql stable security definer
set search_path = ''
as $$
  select i.line_number, i.id, i.product_id, p.category_id, coalesce(p.station, c.station, 'kitchen'),
         coalesce(p.prep_time_minutes, 10), i.quantity, i.quantity - i.refunded_quantity, i.name, i.variant_name,
         (select coalesce(jsonb_agg(m ->> 'name'), '[]'::jsonb) from jsonb_array_elements(i.modifiers) m), i.notes,
         i.line_total_cents
  from public.order_items i
  left join public.products p on p.business_id = i.business_id and p.id = i.product_id
  left join public.product_categories c on c.business_id = p.business_id and c.id = p.category_id
  where i.business_id = p_business_id and i.order_id = p_order_id
  order by i.line_number
$$;
revoke all on function app.ticket_lines(uuid, uuid) from public;

/** The document a printer prints for a ticket: its order's header (number, fulfilment, pickup time in
    the venue's zone, table or QR reference, allergens, notes) and the lines this printer takes. Null
    when none of the lines are this printer's. p_kind: ticket, void, reprint, receipt. */
create function app.print_document(p_ticket public.kitchen_tickets, p_printer public.printers, p_kind text, p_reason text)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_venue public.venues;
  v_items jsonb;
  v_zone text;
begin
  select o.* into v_order from public.orders o where o.business_id = p_ticket.business_id and o.id = p_ticket.order_id;
  select v.* into v_venue from public.venues v where v.business_id = p_ticket.business_id and v.id = p_ticket.venue_id;
  v_zone := coalesce(v_venue.time_zone, 'UTC');
  select jsonb_agg(jsonb_build_object('quantity', case when p_kind in ('ticket', 'reprint') then l.live_quantity else l.quantity end,
                                      'name', l.name, 'variant', l.variant, 'modifiers', l.modifiers,
                                      'notes', l.notes, 'station', l.station, 'line_total_cents', l.line_total_cents)
                   order by l.line_number)
  into v_items
  from app.ticket_lines(p_ticket.business_id, p_ticket.order_id) l
  where (p_kind not in ('ticket', 'reprint') or l.live_quantity > 0)
    and (p_printer.kind = 'receipt'
     or (cardinality(p_printer.stations) = 0 and cardinality(p_printer.category_ids) = 0)
     or l.station = any (p_printer.stations) or l.category_id = any (p_printer.category_ids));
  if v_items is null then
    return null;
  end if;
  return jsonb_build_object(
    'kind', p_kind, 'printer', p_printer.name, 'printer_kind', p_printer.kind,
    'stations', to_jsonb(p_printer.stations), 'paper_width_mm', p_printer.paper_width_mm,
    'venue', v_venue.name, 'order_number', p_ticket.order_number, 'fulfilment', p_ticket.fulfilment,
    'channel', v_order.channel, 'table_ref', p_ticket.table_ref,
    'customer', split_part(coalesce(v_order.guest_name, ''), ' ', 1),
    'placed_at', to_char(coalesce(v_order.paid_at, v_order.placed_at) at time zone v_zone, 'YYYY-MM-DD HH24:MI'),
    'pickup_at', case when p_ticket.scheduled_for is not null
                      then to_char(p_ticket.scheduled_for at time zone v_zone, 'YYYY-MM-DD HH24:MI') end,
    'allergens', to_jsonb(p_ticket.allergens), 'notes', p_ticket.notes, 'reason', p_reason,
    'printed_at', to_char(now() at time zone v_zone, 'YYYY-MM-DD HH24:MI'),
    'currency', v_order.currency, 'total_cents', case when p_kind = 'receipt' then v_order.total_cents end,
    'tax_cents', case when p_kind = 'receipt' then v_order.tax_cents end,
    'tip_cents', case when p_kind = 'receipt' then v_order.tip_cents end,
    'items', v_items);
end
$$;
revoke all on function app.print_document(public.kitchen_tickets, public.printers, text, text) from public;

/** Queue the ticket (or void slip) of a kitchen ticket on every active printer of its venue that takes
    one of its lines; receipts on receipt printers with the first ticket. Once per printer and kind. */
create function app.queue_ticket_prints(p_business_id uuid, p_ticket_id uuid, p_kind text, p_reason text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_ticket public.kitchen_tickets;
  v_printer public.printers;
  v_doc jsonb;
  v_n integer := 0;
  v_rows integer;
begin
  select t.* into v_ticket from public.kitchen_tickets t where t.business_id = p_business_id and t.id = p_ticket_id;
  if v_ticket.id is null then
    return 0;
  end if;
  for v_printer in
    select p.* from public.printers p
    where p.business_id = v_ticket.business_id and p.venue_id = v_ticket.venue_id and p.is_active
      and (p.kind = 'kitchen' or p_kind = 'ticket')
    order by p.created_at, p.id
  loop
    if p_kind = 'void' then
      -- a slip nobody has printed yet is withdrawn instead: the kitchen never saw it
      update public.print_jobs j set status = 'cancelled', last_code = 'voided_before_print'
      where j.business_id = v_ticket.business_id and j.printer_id = v_printer.id and j.ticket_id = v_ticket.id
        and j.kind in ('ticket', 'reprint') and j.status = 'queued';
      if not exists (select 1 from public.print_jobs j
                     where j.business_id = v_ticket.business_id and j.printer_id = v_printer.id and j.ticket_id = v_ticket.id
                       and j.kind in ('ticket', 'reprint') and j.status in ('sent', 'printed', 'failed')) then
        continue;
      end if;
    end if;
    v_doc := app.print_document(v_ticket, v_printer,
                                case when v_printer.kind = 'receipt' then 'receipt' else p_kind end, p_reason);
    continue when v_doc is null;
    insert into public.print_jobs (business_id, venue_id, printer_id, order_id, ticket_id, kind, document, requested_by)
    values (v_ticket.business_id, v_ticket.venue_id, v_printer.id, v_ticket.order_id, v_ticket.id,
            case when v_printer.kind = 'receipt' then 'receipt' else p_kind end, v_doc, auth.uid())
    on conflict (business_id, printer_id, ticket_id, kind) where kind in ('ticket', 'void') do nothing;
    get diagnostics v_rows = row_count;
    v_n := v_n + v_rows;
  end loop;
  return v_n;
end
$$;
revoke all on function app.queue_ticket_prints(uuid, uuid, text, text) from public;
grant execute on function app.queue_ticket_prints(uuid, uuid, text, text) to service_role;

/** The printer a device token belongs to (active, its business's ordering module on), marked seen
    with what it reported; raises PT401 otherwise, so an unknown token learns nothing. */
create function app.printer_checkin(p_token text, p_status text, p_address text) returns public.printers
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_printer public.printers;
begin
  update public.printers p set last_seen_at = now(), last_status = coalesce(left(p_status, 200), p.last_status),
    device_address = coalesce(left(p_address, 64), p.device_address)
  where p.device_token_hash = app.device_token_hash(p_token) and p.is_active
    and app.module_enabled(p.business_id, 'ordering')
  returning p.* into v_printer;
  if v_printer.id is null then
    perform app.fail('PT401', 'unknown_device', 'unknown or disabled printer token');
  end if;
  return v_printer;
end
$$;
revoke all on function app.printer_checkin(text, text, text) from public;

-- section triggers

/** A printed or cancelled job is final (a reprint is a new job). */
create function app.tg_print_jobs_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  if new.status is distinct from old.status and old.status in ('printed', 'cancelled') then
    perform app.fail('BR801', 'print_job_final', format('a %s print job does not change any more', old.status));
  end if;
  return new;
end
$$;

/** Every status change of a print job lands in print_job_events (and so on the Realtime feed). */
create function app.tg_print_jobs_history() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and new.status = old.status then
    return null;
  end if;
  insert into public.print_job_events (business_id, venue_id, job_id, printer_id, from_status, to_status, code, actor_user_id)
  values (new.business_id, new.venue_id, new.id, new.printer_id, case when tg_op = 'UPDATE' then old.status end, new.status,
          new.last_code, auth.uid());
  return null;
end
$$;

/** A new kitchen ticket (the paying transaction) queues its print jobs; a cancelled one its void slips. */
create function app.tg_kitchen_tickets_print() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform app.queue_ticket_prints(new.business_id, new.id, 'ticket', null);
  elsif new.status = 'cancelled' and old.status <> 'cancelled' then
    perform app.queue_ticket_prints(new.business_id, new.id, 'void',
      coalesce(nullif(current_setting('brigade.void_reason', true), ''),
               (select o.cancel_reason from public.orders o where o.business_id = new.business_id and o.id = new.order_id),
               'cancelled'));
  end if;
  return null;
end
$$;

/** Lines taken off a paid order (a line refund) change its ticket: a ticket still waiting to print is
    rewritten (withdrawn when nothing is left), and each printer that already printed the line's
    station gets a change slip with what to stop making. */
create function app.tg_order_items_changed_print() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_ticket public.kitchen_tickets;
  v_printer public.printers;
  v_job public.print_jobs;
  v_doc jsonb;
  v_line record;
begin
  select t.* into v_ticket from public.kitchen_tickets t
  where t.business_id = new.business_id and t.order_id = new.order_id and t.status not in ('done', 'cancelled');
  if v_ticket.id is null then
    return null;
  end if;
  select l.* into v_line from app.ticket_lines(new.business_id, new.order_id) l where l.order_item_id = new.id;
  for v_job in
    select j.* from public.print_jobs j
    where j.business_id = v_ticket.business_id and j.ticket_id = v_ticket.id and j.kind in ('ticket', 'reprint') and j.status = 'queued'
    for update
  loop
    select p.* into v_printer from public.printers p where p.business_id = v_job.business_id and p.id = v_job.printer_id;
    v_doc := app.print_document(v_ticket, v_printer, v_job.kind, null);
    update public.print_jobs set document = coalesce(v_doc || jsonb_build_object('copy', v_job.document -> 'copy'), document),
      status = case when v_doc is null then 'cancelled' else status end,
      last_code = case when v_doc is null then 'nothing_left_to_print' else last_code end
    where business_id = v_job.business_id and id = v_job.id;
  end loop;
  for v_printer in
    select p.* from public.printers p
    where p.business_id = v_ticket.business_id and p.venue_id = v_ticket.venue_id and p.is_active and p.kind = 'kitchen'
      and ((cardinality(p.stations) = 0 and cardinality(p.category_ids) = 0)
           or v_line.station = any (p.stations) or v_line.category_id = any (p.category_ids))
      and exists (select 1 from public.print_jobs j where j.business_id = p.business_id and j.printer_id = p.id
                    and j.ticket_id = v_ticket.id and j.kind in ('ticket', 'reprint') and j.status in ('sent', 'printed', 'failed'))
    order by p.created_at, p.id
  loop
    v_doc := app.print_document(v_ticket, v_printer, 'change', 'lines refunded');
    continue when v_doc is null;
    insert into public.print_jobs (business_id, venue_id, printer_id, order_id, ticket_id, kind, document, requested_by)
    values (v_ticket.business_id, v_ticket.venue_id, v_printer.id, v_ticket.order_id, v_ticket.id, 'change',
            v_doc || jsonb_build_object('items', jsonb_build_array(jsonb_build_object(
              'quantity', new.refunded_quantity - old.refunded_quantity, 'name', v_line.name, 'variant', v_line.variant,
              'modifiers', v_line.modifiers, 'notes', v_line.notes, 'station', v_line.station))),
            auth.uid());
  end loop;
  return null;
end
$$;

/** A void is final: later order moves do not bring a cancelled ticket back to the kitchen. */
create function app.tg_kitchen_tickets_void_final() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status = 'cancelled' then
    new.status := 'cancelled';
  end if;
  return new;
end
$$;

create trigger print_jobs_guard before update on public.print_jobs
  for each row execute function app.tg_print_jobs_guard();
create trigger print_jobs_history after insert or update of status on public.print_jobs
  for each row execute function app.tg_print_jobs_history();
create trigger print_job_events_append_only before update or delete on public.print_job_events
  for each row execute function app.tg_append_only();
create trigger printers_touch before update on public.printers
  for each row execute function app.tg_touch_updated_at();
create trigger kitchen_tickets_print after insert or update of status on public.kitchen_tickets
  for each row execute function app.tg_kitchen_tickets_print();
create trigger order_items_changed_print after update of refunded_quantity on public.order_items
  for each row when (new.refunded_quantity > old.refunded_quantity) execute function app.tg_order_items_changed_print();
create trigger kitchen_tickets_void_final before update of status on public.kitchen_tickets
  for each row execute function app.tg_kitchen_tickets_void_final();

-- section policies

create policy "staff read printers of their venues" on public.printers for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers change printers of their venues" on public.printers for update to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers remove printers of their venues" on public.printers for delete to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "staff read print jobs of their venues" on public.print_jobs for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "staff read print job history of their venues" on public.print_job_events for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

-- section grants
revoke all on public.printers, public.print_jobs, public.print_job_events from anon, authenticated;
grant select (business_id, venue_id, id, name, kind, protocol, stations, category_ids, paper_width_mm, is_active, last_seen_at,
              last_status, device_address, created_at, updated_at),
      update (name, stations, category_ids, paper_width_mm, is_active), delete
  on public.printers to authenticated;
grant select on public.print_jobs, public.print_job_events to authenticated;
grant all on public.printers, public.print_jobs, public.print_job_events to service_role;
grant insert (station), update (station) on public.products to authenticated;
-- triggers fire without EXECUTE: no API role calls the trigger definers (as 0102)
revoke all on function app.tg_print_jobs_history() from public, anon, authenticated, service_role;
revoke all on function app.tg_kitchen_tickets_print() from public, anon, authenticated, service_role;
revoke all on function app.tg_order_items_changed_print() from public, anon, authenticated, service_role;

-- section realtime
alter publication supabase_realtime add table public.print_jobs, public.printers;

-- section rpc

/** Register a printer at a venue (owners and managers of it). Returns the printer id and its device
    token, shown this once (only its hash is kept). Raises PT404 (venue), PT403 (ordering off),
    23514 (kind, protocol, stations, paper width out of range). */
create function app.register_printer(p_venue_id uuid, p_name text, p_kind text, p_protocol text, p_stations text[],
                                     p_category_ids uuid[], p_paper_width_mm integer) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_venue public.venues;
  v_token text := app.new_device_token();
  v_id uuid;
begin
  select v.* into v_venue from public.venues v where v.id = p_venue_id;
  if v_venue.id is null or not app.has_venue_access(v_venue.business_id, v_venue.id, '{owner,manager}') then
    perform app.fail('PT404', 'venue_not_found', 'no such venue among those you manage');
  end if;
  perform app.require_module(v_venue.business_id, 'ordering');
  insert into public.printers (business_id, venue_id, name, kind, protocol, stations, category_ids, paper_width_mm, device_token_hash)
  values (v_venue.business_id, v_venue.id, p_name, p_kind, p_protocol, coalesce(p_stations, '{}'), coalesce(p_category_ids, '{}'),
          coalesce(p_paper_width_mm, 80), app.device_token_hash(v_token))
  returning id into v_id;
  perform app.audit(v_venue.business_id, 'printer.registered', jsonb_build_object('printer_id', v_id, 'venue_id', v_venue.id,
                                                                                  'kind', p_kind, 'protocol', p_protocol));
  return jsonb_build_object('printer_id', v_id, 'device_token', v_token, 'protocol', p_protocol);
end
$$;
revoke all on function app.register_printer(uuid, text, text, text, text[], uuid[], integer) from public;
grant execute on function app.register_printer(uuid, text, text, text, text[], uuid[], integer) to authenticated, service_role;

create function public.register_printer(venue_id uuid, name text, kind text, protocol text, stations text[] default '{}',
                                        category_ids uuid[] default '{}', paper_width_mm integer default 80) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.register_printer(venue_id, name, kind, protocol, stations, category_ids, paper_width_mm)
$$;
revoke all on function public.register_printer(uuid, text, text, text, text[], uuid[], integer) from public;
grant execute on function public.register_printer(uuid, text, text, text, text[], uuid[], integer) to authenticated, service_role;

/** A new device token for a printer (the old one stops working at once). Owners and managers. PT404. */
create function app.rotate_printer_token(p_printer_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_printer public.printers;
  v_token text := app.new_device_token();
begin
  select p.* into v_printer from public.printers p where p.id = p_printer_id for update;
  if v_printer.id is null or not app.has_venue_access(v_printer.business_id, v_printer.venue_id, '{owner,manager}') then
    perform app.fail('PT404', 'printer_not_found', 'no such printer among those you manage');
  end if;
  update public.printers set device_token_hash = app.device_token_hash(v_token)
  where business_id = v_printer.business_id and id = v_printer.id;
  perform app.audit(v_printer.business_id, 'printer.token_rotated', jsonb_build_object('printer_id', v_printer.id));
  return jsonb_build_object('printer_id', v_printer.id, 'device_token', v_token);
end
$$;
revoke all on function app.rotate_printer_token(uuid) from public;
grant execute on function app.rotate_printer_token(uuid) to authenticated, service_role;

create function public.rotate_printer_token(printer_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.rotate_printer_token(printer_id)
$$;
revoke all on function public.rotate_printer_token(uuid) from public;
grant execute on function public.rotate_printer_token(uuid) to authenticated, service_role;

/** Staff print a ticket again: on one printer, or on every printer that took it. Each reprint is a new
    job of kind reprint, with who asked, in the job history and the audit log. Returns the jobs made.
    Raises PT404 (ticket or printer not at your venues), BR802 (nothing to reprint there). */
create function app.reprint_ticket(p_ticket_id uuid, p_printer_id uuid) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_ticket public.kitchen_tickets;
  v_printer public.printers;
  v_doc jsonb;
  v_n integer := 0;
begin
  select t.* into v_ticket from public.kitchen_tickets t where t.id = p_ticket_id;
  if v_ticket.id is null or not app.has_venue_access(v_ticket.business_id, v_ticket.venue_id, '{owner,manager,staff}') then
    perform app.fail('PT404', 'ticket_not_found', 'no such ticket at your venues');
  end if;
  perform app.require_module(v_ticket.business_id, 'ordering');
  for v_printer in
    select p.* from public.printers p
    where p.business_id = v_ticket.business_id and p.venue_id = v_ticket.venue_id and p.is_active
      and (p.id = p_printer_id or (p_printer_id is null and exists (
             select 1 from public.print_jobs j where j.business_id = p.business_id and j.printer_id = p.id
               and j.ticket_id = v_ticket.id and j.kind in ('ticket', 'receipt'))))
    order by p.created_at, p.id
  loop
    v_doc := app.print_document(v_ticket, v_printer, case when v_printer.kind = 'receipt' then 'receipt' else 'reprint' end, null);
    continue when v_doc is null;
    insert into public.print_jobs (business_id, venue_id, printer_id, order_id, ticket_id, kind, document, requested_by)
    values (v_ticket.business_id, v_ticket.venue_id, v_printer.id, v_ticket.order_id, v_ticket.id,
            case when v_printer.kind = 'receipt' then 'receipt' else 'reprint' end, v_doc || '{"copy": true}', auth.uid());
    v_n := v_n + 1;
  end loop;
  if v_n = 0 then
    if p_printer_id is not null and not exists (select 1 from public.printers p where p.business_id = v_ticket.business_id
                                                  and p.venue_id = v_ticket.venue_id and p.id = p_printer_id) then
      perform app.fail('PT404', 'printer_not_found', 'no such printer at this venue');
    end if;
    perform app.fail('BR802', 'nothing_to_reprint', 'no active printer at this venue takes any line of this ticket');
  end if;
  perform app.audit(v_ticket.business_id, 'ticket.reprinted', jsonb_build_object('ticket_id', v_ticket.id, 'order_id', v_ticket.order_id,
                                                                                 'printer_id', p_printer_id, 'jobs', v_n));
  return v_n;
end
$$;
revoke all on function app.reprint_ticket(uuid, uuid) from public;
grant execute on function app.reprint_ticket(uuid, uuid) to authenticated, service_role;

create function public.reprint_ticket(ticket_id uuid, printer_id uuid default null) returns integer
language sql volatile
set search_path = ''
as $$
  select app.reprint_ticket(ticket_id, printer_id)
$$;
revoke all on function public.reprint_ticket(uuid, uuid) from public;
grant execute on function public.reprint_ticket(uuid, uuid) to authenticated, service_role;

/** Staff void a kitchen ticket (the order stays as it is, e.g. to be refunded): the ticket leaves
    the kitchen and every printer that printed it prints a void slip. Raises PT404, BR803 (already
    void or done), BR123 (reason required), BR820/BR821 (no fresh PIN where the business requires one). */
create function app.void_ticket(p_ticket_id uuid, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_ticket public.kitchen_tickets;
  v_slips integer;
begin
  select t.* into v_ticket from public.kitchen_tickets t where t.id = p_ticket_id for update;
  if v_ticket.id is null or not app.has_venue_access(v_ticket.business_id, v_ticket.venue_id, '{owner,manager,staff}') then
    perform app.fail('PT404', 'ticket_not_found', 'no such ticket at your venues');
  end if;
  perform app.require_module(v_ticket.business_id, 'ordering');
  if nullif(trim(coalesce(p_reason, '')), '') is null then
    perform app.fail('BR123', 'void_reason_required', 'voiding a ticket needs a reason');
  end if;
  if v_ticket.status in ('cancelled', 'done') then
    perform app.fail('BR803', 'ticket_closed', format('the ticket is %s', v_ticket.status));
  end if;
  perform app.require_fresh_pin(v_ticket.business_id, 'void_ticket');
  perform set_config('brigade.void_reason', left(p_reason, 200), true);
  update public.kitchen_tickets set status = 'cancelled' where business_id = v_ticket.business_id and id = v_ticket.id;
  perform set_config('brigade.void_reason', '', true);
  select count(*) into v_slips from public.print_jobs j
  where j.business_id = v_ticket.business_id and j.ticket_id = v_ticket.id and j.kind = 'void';
  perform app.audit(v_ticket.business_id, 'ticket.voided', jsonb_build_object('ticket_id', v_ticket.id, 'order_id', v_ticket.order_id,
                                                                              'reason', left(p_reason, 200)));
  return jsonb_build_object('ticket_id', v_ticket.id, 'status', 'cancelled', 'void_slips', v_slips);
end
$$;
revoke all on function app.void_ticket(uuid, text) from public;
grant execute on function app.void_ticket(uuid, text) to authenticated, service_role;

create function public.void_ticket(ticket_id uuid, reason text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.void_ticket(ticket_id, reason)
$$;
revoke all on function public.void_ticket(uuid, text) from public;
grant execute on function public.void_ticket(uuid, text) to authenticated, service_role;

/** A printer polls (service only: the cloudprnt / epson-sdp functions authenticate the device with
    its token here). Returns the printer and the job it should print next (oldest first; a job it
    fetched and never confirmed is offered again), or job = null. Raises PT401 for a bad token. */
create function app.printer_poll(p_token text, p_status text, p_address text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_printer public.printers := app.printer_checkin(p_token, p_status, p_address);
  v_job public.print_jobs;
begin
  select j.* into v_job from public.print_jobs j
  where j.printer_id = v_printer.id and j.business_id = v_printer.business_id and j.status in ('queued', 'sent')
  order by j.seq limit 1;
  return jsonb_build_object('printer_id', v_printer.id, 'business_id', v_printer.business_id, 'protocol', v_printer.protocol,
    'paper_width_mm', v_printer.paper_width_mm,
    'job', case when v_job.id is not null then jsonb_build_object('job_id', v_job.id, 'seq', v_job.seq, 'kind', v_job.kind,
                                                                  'document', v_job.document) end);
end
$$;
revoke all on function app.printer_poll(text, text, text) from public;
grant execute on function app.printer_poll(text, text, text) to service_role;

/** The printer downloads a job: the given one (it must be this printer's and not finished) or its
    next. Marks it sent. Returns null when there is nothing to print. Raises PT401. */
create function app.printer_take_job(p_token text, p_job_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_printer public.printers := app.printer_checkin(p_token, null, null);
  v_job public.print_jobs;
begin
  select j.* into v_job from public.print_jobs j
  where j.printer_id = v_printer.id and j.business_id = v_printer.business_id and j.status in ('queued', 'sent')
    and (p_job_id is null or j.id = p_job_id)
  order by j.seq limit 1
  for update;
  if v_job.id is null then
    return null;
  end if;
  update public.print_jobs set status = 'sent', sent_at = now(), fetch_count = fetch_count + 1, last_code = null
  where business_id = v_job.business_id and id = v_job.id;
  return jsonb_build_object('job_id', v_job.id, 'seq', v_job.seq, 'kind', v_job.kind, 'document', v_job.document,
                            'paper_width_mm', v_printer.paper_width_mm);
end
$$;
revoke all on function app.printer_take_job(text, uuid) from public;
grant execute on function app.printer_take_job(text, uuid) to service_role;

/** The printer reports how a job went: p_outcome printed, retry (a printer problem: it prints it
    when it is back) or failed (it cannot handle the data: staff reprint). The job given, or the one
    it has in hand. A confirmation repeated, or for a job already finished, changes nothing and
    answers false. Raises PT401. */
create function app.printer_finish_job(p_token text, p_job_id uuid, p_outcome text, p_code text) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_printer public.printers := app.printer_checkin(p_token, null, null);
  v_job public.print_jobs;
begin
  if p_outcome not in ('printed', 'retry', 'failed') then
    perform app.fail('22023', 'invalid_outcome', 'outcome is printed, retry or failed');
  end if;
  select j.* into v_job from public.print_jobs j
  where j.printer_id = v_printer.id and j.business_id = v_printer.business_id
    and (j.id = p_job_id or (p_job_id is null and j.status = 'sent'))
  order by j.seq limit 1
  for update;
  if v_job.id is null or v_job.status not in ('queued', 'sent') then
    return false;
  end if;
  update public.print_jobs set
    status = case p_outcome when 'printed' then 'printed' when 'retry' then 'queued' else 'failed' end,
    printed_at = case when p_outcome = 'printed' then now() end,
    last_code = left(p_code, 100)
  where business_id = v_job.business_id and id = v_job.id;
  return true;
end
$$;
revoke all on function app.printer_finish_job(text, uuid, text, text) from public;
grant execute on function app.printer_finish_job(text, uuid, text, text) to service_role;
