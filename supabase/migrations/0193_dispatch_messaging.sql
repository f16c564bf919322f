-- Messaging (issue 16, item 3): a conversation per delivery (customer <-> driver, open from the
-- driver's assignment until 1 hour after delivery, then read-only) and support conversations per
-- business (customer <-> venue staff, open / assigned / closed, about an order or not). Messages are
-- append-only, in the Realtime publication, readable only by the parties (staff of the venue for
-- support, never another tenant), written only through send_message / send_order_message (which
-- check the party, the window, the rate limit and the attachment URL), and nudge an offline recipient
-- by push or SMS (`message.sent`). Nobody's phone number is in a conversation. Codes BR19x.

-- section tables

/** A conversation: kind delivery (one per delivery; the customer is the order's signed-in user, or
    the guest holding the order's access token, and the delivery's driver) or support (a signed-in
    customer and the venue's staff). closes_at ends a delivery conversation (delivered + 1 hour);
    status closes a support one. The *_seen_at columns say when each side last read it. */
create table public.conversations (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  kind text not null constraint conversations_kind_valid check (kind in ('delivery', 'support')),
  venue_id uuid not null,
  order_id uuid,
  delivery_id uuid,
  customer_user_id uuid references auth.users (id) on delete set null,
  driver_business_id uuid,
  driver_id uuid,
  status text not null default 'open' constraint conversations_status_valid check (status in ('open', 'assigned', 'closed')),
  assigned_to uuid references auth.users (id) on delete set null,
  subject text constraint conversations_subject_length check (length(subject) <= 200),
  closes_at timestamptz,
  customer_seen_at timestamptz,
  driver_seen_at timestamptz,
  staff_seen_at timestamptz,
  last_message_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint conversations_pkey primary key (business_id, id),
  constraint conversations_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade,
  constraint conversations_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint conversations_delivery_fkey foreign key (business_id, delivery_id) references public.deliveries (business_id, id) on delete cascade,
  constraint conversations_delivery_shape check (kind <> 'delivery' or (delivery_id is not null and order_id is not null and driver_id is not null)),
  constraint conversations_support_shape check (kind <> 'support' or customer_user_id is not null)
);
alter table public.conversations enable row level security;

/** One message, append-only. sender_role says which side wrote it; the sender's identity is their
    user id (a guest's: the order). attachment_url is an https image or PDF link, checked on the way in. */
create table public.conversation_messages (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  conversation_id uuid not null,
  sender_role text not null constraint conversation_messages_role_valid check (sender_role in ('customer', 'driver', 'staff')),
  sender_user_id uuid,
  body text not null constraint conversation_messages_body_length check (length(body) between 1 and 2000),
  attachment_url text,
  created_at timestamptz not null default clock_timestamp(),
  constraint conversation_messages_pkey primary key (business_id, id),
  constraint conversation_messages_conversation_fkey foreign key (business_id, conversation_id)
    references public.conversations (business_id, id) on delete cascade
);
alter table public.conversation_messages enable row level security;

-- section indexes
create unique index conversations_delivery_key on public.conversations (business_id, delivery_id) where kind = 'delivery';
create index conversations_venue_idx on public.conversations (business_id, venue_id, status, last_message_at desc);
create index conversations_customer_idx on public.conversations (customer_user_id) where customer_user_id is not null;
create index conversations_driver_idx on public.conversations (driver_business_id, driver_id) where driver_id is not null;
create index conversations_order_idx on public.conversations (business_id, order_id);
create index conversations_assigned_idx on public.conversations (assigned_to) where assigned_to is not null;
create index conversation_messages_conversation_idx on public.conversation_messages (business_id, conversation_id, created_at);
create index conversation_messages_sender_idx on public.conversation_messages (business_id, sender_role, sender_user_id, created_at);

-- section private helpers

/** Is this an attachment link we accept: https, no credentials, at most 1000 characters, an image or
    a PDF by its path? (Uploads go to storage first; the message carries only the link.) */
create function app.valid_attachment_url(p_url text) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_url is not null and length(p_url) <= 1000
     and p_url ~* '^https://[a-z0-9.-]+(:[0-9]+)?/[^\s?#@]*\.(png|jpe?g|webp|gif|pdf)([?#][^\s]*)?$'
$$;
revoke all on function app.valid_attachment_url(text) from public;
grant execute on function app.valid_attachment_url(text) to anon, authenticated, service_role;

/** Which side of a conversation the caller is on (customer, driver, staff), or null: not a party. */
create function app.conversation_role(p_conversation public.conversations) returns text
language sql stable security definer
set search_path = ''
as $$
  select case
    when p_conversation.kind = 'delivery' and exists (
      select 1 from public.drivers d where d.business_id = p_conversation.driver_business_id and d.id = p_conversation.driver_id
        and d.user_id = (select auth.uid())) then 'driver'
    when p_conversation.customer_user_id = (select auth.uid()) then 'customer'
    when p_conversation.kind = 'support' and app.has_venue_access(p_conversation.business_id, p_conversation.venue_id, '{owner,manager,staff}')
      then 'staff'
  end
$$;
revoke all on function app.conversation_role(public.conversations) from public;
grant execute on function app.conversation_role(public.conversations) to authenticated, service_role;

/** Conversation ids the caller is a party of (the policies' helper). */
create function app.my_conversation_keys() returns table (business_id uuid, conversation_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select c.business_id, c.id from public.conversations c
  where c.customer_user_id = (select auth.uid())
  union
  select c.business_id, c.id from public.conversations c
  join public.drivers d on d.business_id = c.driver_business_id and d.id = c.driver_id
  where c.kind = 'delivery' and d.user_id = (select auth.uid())
  union
  select c.business_id, c.id from public.conversations c
  join app.my_venue_keys('{owner,manager,staff}') k on k.business_id = c.business_id and k.venue_id = c.venue_id
  where c.kind = 'support'
$$;
revoke all on function app.my_conversation_keys() from public;
grant execute on function app.my_conversation_keys() to authenticated, service_role;

/** Writes a message after every check: the conversation is open (BR195 conversation_closed), at most
    10 messages a minute and 100 an hour per sender (PT429 rate_limited), the attachment is a valid
    link (22023 invalid_attachment). Emits message.sent for the nudge. */
create function app.post_message(p_conversation public.conversations, p_role text, p_sender uuid, p_body text, p_attachment text)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_recent integer;
  v_hour integer;
  v_message public.conversation_messages;
begin
  if p_conversation.status = 'closed' or (p_conversation.closes_at is not null and p_conversation.closes_at <= now()) then
    perform app.fail('BR195', 'conversation_closed', 'this conversation is closed: it can be read, not written to');
  end if;
  if nullif(trim(p_body), '') is null or length(p_body) > 2000 then
    perform app.fail('22023', 'invalid_body', 'a message is 1 to 2000 characters');
  end if;
  if p_attachment is not null and not app.valid_attachment_url(p_attachment) then
    perform app.fail('22023', 'invalid_attachment', 'an attachment is an https link to an image (png, jpg, webp, gif) or a PDF');
  end if;
  select count(*) filter (where m.created_at > now() - interval '1 minute'), count(*) into v_recent, v_hour
  from public.conversation_messages m
  where m.business_id = p_conversation.business_id and m.sender_role = p_role
    and m.sender_user_id is not distinct from p_sender and m.created_at > now() - interval '1 hour'
    and (p_sender is not null or m.conversation_id = p_conversation.id);
  if v_recent >= 10 or v_hour >= 100 then
    perform app.fail('PT429', 'rate_limited', 'too many messages: wait a minute');
  end if;
  insert into public.conversation_messages (business_id, conversation_id, sender_role, sender_user_id, body, attachment_url)
  values (p_conversation.business_id, p_conversation.id, p_role, p_sender, trim(p_body), p_attachment)
  returning * into v_message;
  update public.conversations set last_message_at = v_message.created_at, updated_at = now(),
    customer_seen_at = case when p_role = 'customer' then v_message.created_at else customer_seen_at end,
    driver_seen_at = case when p_role = 'driver' then v_message.created_at else driver_seen_at end,
    staff_seen_at = case when p_role = 'staff' then v_message.created_at else staff_seen_at end
  where business_id = p_conversation.business_id and id = p_conversation.id;
  perform app.emit('message.sent', p_conversation.business_id, jsonb_build_object('message_id', v_message.id,
                                                                                  'conversation_id', p_conversation.id));
  return jsonb_build_object('id', v_message.id, 'conversation_id', v_message.conversation_id, 'sender_role', v_message.sender_role,
                            'body', v_message.body, 'attachment_url', v_message.attachment_url, 'created_at', v_message.created_at);
end
$$;
revoke all on function app.post_message(public.conversations, text, uuid, text, text) from public;
grant execute on function app.post_message(public.conversations, text, uuid, text, text) to service_role;

-- section triggers

/** A driver assigned to a delivery opens its conversation; delivered closes it an hour later;
    cancelled or failed closes it now. */
create function app.tg_deliveries_conversation() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.driver_id is not null and new.status in ('assigned', 'picked_up') then
    insert into public.conversations (business_id, kind, venue_id, order_id, delivery_id, customer_user_id, driver_business_id, driver_id)
    select new.business_id, 'delivery', new.venue_id, new.order_id, new.id, o.user_id, new.driver_business_id, new.driver_id
    from public.orders o where o.business_id = new.business_id and o.id = new.order_id
    on conflict (business_id, delivery_id) where kind = 'delivery'
    do update set driver_business_id = excluded.driver_business_id, driver_id = excluded.driver_id, updated_at = now();
  elsif new.status = 'delivered' then
    update public.conversations set closes_at = coalesce(new.delivered_at, now()) + interval '1 hour', updated_at = now()
    where business_id = new.business_id and kind = 'delivery' and delivery_id = new.id;
  elsif new.status in ('cancelled', 'failed') then
    update public.conversations set closes_at = now(), updated_at = now()
    where business_id = new.business_id and kind = 'delivery' and delivery_id = new.id and closes_at is null;
  end if;
  return null;
end
$$;
create trigger deliveries_conversation after insert or update of status, driver_id on public.deliveries
  for each row execute function app.tg_deliveries_conversation();
create trigger conversation_messages_append_only before update or delete on public.conversation_messages
  for each row execute function app.tg_append_only();
revoke all on function app.tg_deliveries_conversation() from public, anon, authenticated, service_role;

-- section policies
create policy "parties read their conversations" on public.conversations for select to authenticated
  using ((business_id, id) in (select k.business_id, k.conversation_id from app.my_conversation_keys() k));
create policy "parties read the messages of their conversations" on public.conversation_messages for select to authenticated
  using ((business_id, conversation_id) in (select k.business_id, k.conversation_id from app.my_conversation_keys() k));

-- section grants
revoke all on public.conversations, public.conversation_messages from anon, authenticated;
grant select (business_id, id, kind, venue_id, order_id, delivery_id, status, assigned_to, subject, closes_at, customer_seen_at,
              driver_seen_at, staff_seen_at, last_message_at, created_at, updated_at) on public.conversations to authenticated;
grant select on public.conversation_messages to authenticated;
grant all on public.conversations, public.conversation_messages to service_role;

-- section realtime
alter publication supabase_realtime add table public.conversations, public.conversation_messages;

-- section rpc

/** Sends a message in a conversation the signed-in caller is a party of. Raises PT404 (not yours),
    BR195, PT429, 22023 (see app.post_message). */
create function app.send_message(p_conversation_id uuid, p_body text, p_attachment_url text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_conversation public.conversations;
  v_role text;
begin
  select c.* into v_conversation from public.conversations c where c.id = p_conversation_id for update;
  v_role := case when v_conversation.id is not null then app.conversation_role(v_conversation) end;
  if v_role is null then
    perform app.fail('PT404', 'conversation_not_found', 'no such conversation of yours');
  end if;
  return app.post_message(v_conversation, v_role, auth.uid(), p_body, p_attachment_url);
end
$$;
revoke all on function app.send_message(uuid, text, text) from public;
grant execute on function app.send_message(uuid, text, text) to authenticated, service_role;

/** A guest (the order's access token) writes to their delivery's driver. */
create function app.send_order_message(p_order_id uuid, p_access_token uuid, p_body text, p_attachment_url text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_conversation public.conversations;
begin
  select c.* into v_conversation from public.conversations c
  join public.orders o on o.business_id = c.business_id and o.id = c.order_id
  where c.kind = 'delivery' and c.order_id = p_order_id and o.access_token = p_access_token
  for update of c;
  if v_conversation.id is null then
    perform app.fail('PT404', 'conversation_not_found', 'no delivery conversation for that order and token');
  end if;
  return app.post_message(v_conversation, 'customer', null, p_body, p_attachment_url);
end
$$;
revoke all on function app.send_order_message(uuid, uuid, text, text) from public;
grant execute on function app.send_order_message(uuid, uuid, text, text) to anon, authenticated, service_role;

/** The guest's view of their delivery conversation: its messages (no one's phone) and whether it is
    still open. Marks it read by the customer. */
create function app.order_messages(p_order_id uuid, p_access_token uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_conversation public.conversations;
begin
  select c.* into v_conversation from public.conversations c
  join public.orders o on o.business_id = c.business_id and o.id = c.order_id
  where c.kind = 'delivery' and c.order_id = p_order_id and o.access_token = p_access_token;
  if v_conversation.id is null then
    perform app.fail('PT404', 'conversation_not_found', 'no delivery conversation for that order and token');
  end if;
  update public.conversations set customer_seen_at = now() where business_id = v_conversation.business_id and id = v_conversation.id;
  return jsonb_build_object('conversation_id', v_conversation.id,
    'open', v_conversation.closes_at is null or v_conversation.closes_at > now(), 'closes_at', v_conversation.closes_at,
    'messages', (select coalesce(jsonb_agg(jsonb_build_object('id', m.id, 'sender_role', m.sender_role, 'body', m.body,
                                                              'attachment_url', m.attachment_url, 'created_at', m.created_at)
                                           order by m.created_at, m.id), '[]'::jsonb)
                 from public.conversation_messages m where m.business_id = v_conversation.business_id and m.conversation_id = v_conversation.id));
end
$$;
revoke all on function app.order_messages(uuid, uuid) from public;
grant execute on function app.order_messages(uuid, uuid) to anon, authenticated, service_role;

/** A signed-in customer opens a support conversation with a venue (optionally about one of their
    orders) with a first message. Raises PT404 (venue, or an order not theirs), PT403 module_disabled. */
create function app.open_support_conversation(p_venue_id uuid, p_body text, p_order_id uuid default null, p_subject text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_venue public.venues;
  v_conversation public.conversations;
begin
  if auth.uid() is null then
    perform app.fail('42501', 'sign_in_required', 'sign in to write to the venue');
  end if;
  select v.* into v_venue from public.venues v where v.id = p_venue_id and v.is_published;
  if v_venue.id is null then
    perform app.fail('PT404', 'venue_not_found', 'no published venue with that id');
  end if;
  perform app.require_module(v_venue.business_id, 'ordering');
  if p_order_id is not null and not exists (select 1 from public.orders o where o.business_id = v_venue.business_id
                                            and o.id = p_order_id and o.user_id = auth.uid()) then
    perform app.fail('PT404', 'order_not_found', 'no such order of yours');
  end if;
  insert into public.conversations (business_id, kind, venue_id, order_id, customer_user_id, subject)
  values (v_venue.business_id, 'support', v_venue.id, p_order_id, auth.uid(), left(p_subject, 200))
  returning * into v_conversation;
  return jsonb_build_object('conversation_id', v_conversation.id,
                            'message', app.post_message(v_conversation, 'customer', auth.uid(), p_body, null));
end
$$;
revoke all on function app.open_support_conversation(uuid, text, uuid, text) from public;
grant execute on function app.open_support_conversation(uuid, text, uuid, text) to authenticated, service_role;

/** Staff of the venue move a support conversation: assigned (to themselves or a colleague), open
    again, or closed (then read-only). Raises PT404, 22023. */
create function app.set_conversation_status(p_conversation_id uuid, p_status text, p_assign_to uuid default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_conversation public.conversations;
begin
  select c.* into v_conversation from public.conversations c where c.id = p_conversation_id and c.kind = 'support' for update;
  if v_conversation.id is null or app.conversation_role(v_conversation) is distinct from 'staff' then
    perform app.fail('PT404', 'conversation_not_found', 'no such support conversation at your venues');
  end if;
  if p_status is null or p_status not in ('open', 'assigned', 'closed') then
    perform app.fail('22023', 'invalid_status', 'status is open, assigned or closed');
  end if;
  if p_status = 'assigned' and not exists (
      select 1 from public.memberships m where m.business_id = v_conversation.business_id
        and m.user_id = coalesce(p_assign_to, auth.uid()) and m.role in ('owner', 'manager', 'staff')) then
    perform app.fail('22023', 'invalid_assignee', 'assign to a member of the business');
  end if;
  update public.conversations set status = p_status, updated_at = now(),
    assigned_to = case when p_status = 'assigned' then coalesce(p_assign_to, auth.uid()) when p_status = 'open' then null else assigned_to end
  where business_id = v_conversation.business_id and id = v_conversation.id
  returning * into v_conversation;
  return jsonb_build_object('conversation_id', v_conversation.id, 'status', v_conversation.status, 'assigned_to', v_conversation.assigned_to);
end
$$;
revoke all on function app.set_conversation_status(uuid, text, uuid) from public;
grant execute on function app.set_conversation_status(uuid, text, uuid) to authenticated, service_role;

/** The caller read the conversation now (their side's seen time: the nudge skips readers). */
create function app.mark_conversation_read(p_conversation_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_conversation public.conversations;
  v_role text;
begin
  select c.* into v_conversation from public.conversations c where c.id = p_conversation_id;
  v_role := case when v_conversation.id is not null then app.conversation_role(v_conversation) end;
  if v_role is null then
    perform app.fail('PT404', 'conversation_not_found', 'no such conversation of yours');
  end if;
  update public.conversations set
    customer_seen_at = case when v_role = 'customer' then now() else customer_seen_at end,
    driver_seen_at = case when v_role = 'driver' then now() else driver_seen_at end,
    staff_seen_at = case when v_role = 'staff' then now() else staff_seen_at end
  where business_id = v_conversation.business_id and id = v_conversation.id;
end
$$;
revoke all on function app.mark_conversation_read(uuid) from public;
grant execute on function app.mark_conversation_read(uuid) to authenticated, service_role;

create function public.send_message(conversation_id uuid, body text, attachment_url text default null) returns jsonb
language sql volatile set search_path = '' as $$ select app.send_message(conversation_id, body, attachment_url) $$;
create function public.send_order_message(order_id uuid, access_token uuid, body text, attachment_url text default null) returns jsonb
language sql volatile set search_path = '' as $$ select app.send_order_message(order_id, access_token, body, attachment_url) $$;
create function public.order_messages(order_id uuid, access_token uuid) returns jsonb
language sql volatile set search_path = '' as $$ select app.order_messages(order_id, access_token) $$;
create function public.open_support_conversation(venue_id uuid, body text, order_id uuid default null, subject text default null) returns jsonb
language sql volatile set search_path = '' as $$ select app.open_support_conversation(venue_id, body, order_id, subject) $$;
create function public.set_conversation_status(conversation_id uuid, status text, assign_to uuid default null) returns jsonb
language sql volatile set search_path = '' as $$ select app.set_conversation_status(conversation_id, status, assign_to) $$;
create function public.mark_conversation_read(conversation_id uuid) returns void
language sql volatile set search_path = '' as $$ select app.mark_conversation_read(conversation_id) $$;
revoke all on function public.send_message(uuid, text, text), public.send_order_message(uuid, uuid, text, text),
  public.order_messages(uuid, uuid), public.open_support_conversation(uuid, text, uuid, text),
  public.set_conversation_status(uuid, text, uuid), public.mark_conversation_read(uuid) from public, anon;
grant execute on function public.send_order_message(uuid, uuid, text, text), public.order_messages(uuid, uuid) to anon;
grant execute on function public.send_message(uuid, text, text), public.send_order_message(uuid, uuid, text, text),
  public.order_messages(uuid, uuid), public.open_support_conversation(uuid, text, uuid, text),
  public.set_conversation_status(uuid, text, uuid), public.mark_conversation_read(uuid) to authenticated, service_role;
