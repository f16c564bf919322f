-- Per-business SMS senders. Brigade texted everything from one platform number, so a STOP sent to it
-- (0010's app.sms_opt) revoked SMS consent at every business the person was a customer of. A business
-- may now have its own sender — a phone number or a Twilio Messaging Service — and STOP / START apply
-- per sender: to that number, only its business; to the platform number (the default, still used by
-- businesses without a sender), only the businesses that text from it.

-- section tables

/** The number (or Messaging Service) one business texts from. None: the platform number. The
    operator sets it; owners and managers read it. */
create table public.sms_senders (
  business_id uuid not null references public.businesses (id) on delete cascade,
  phone_number text constraint sms_senders_phone_valid check (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
  messaging_service_sid text constraint sms_senders_service_valid check (messaging_service_sid ~ '^MG[0-9a-f]{32}$'),
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  constraint sms_senders_pkey primary key (business_id),
  constraint sms_senders_one_kind check (num_nonnulls(phone_number, messaging_service_sid) >= 1)
);
alter table public.sms_senders enable row level security;

-- section indexes
create unique index sms_senders_phone_key on public.sms_senders (phone_number) where phone_number is not null;
create unique index sms_senders_service_key on public.sms_senders (messaging_service_sid) where messaging_service_sid is not null;

-- section private helpers

/** Who a business texts as: {phone_number, messaging_service_sid} of its active sender, or null for
    the platform number. */
create function app.sms_sender(p_business_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object('phone_number', s.phone_number, 'messaging_service_sid', s.messaging_service_sid)
  from public.sms_senders s where s.business_id = p_business_id and s.is_active
$$;
revoke all on function app.sms_sender(uuid) from public;
grant execute on function app.sms_sender(uuid) to service_role;

/** Inbound STOP / START from a phone, to the number (or Messaging Service) it was sent to: the
    customers with that phone at the business owning that sender get SMS_MARKETING revoked (or
    granted) and the number suppressed (or released). Sent to any other number (the platform's),
    it applies to every business without an active sender of its own. Returns the customers touched. */
create function app.sms_opt(p_phone text, p_opt_in boolean, p_to text, p_messaging_service_sid text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_owner uuid;
  v_customer record;
  v_count integer := 0;
begin
  if p_phone is null or p_phone !~ '^\+?[0-9]{7,15}$' then
    perform app.fail('22023', 'invalid_phone', 'not a phone number');
  end if;
  select s.business_id into v_owner from public.sms_senders s
  where s.is_active and ((p_to is not null and s.phone_number = p_to)
                         or (p_messaging_service_sid is not null and s.messaging_service_sid = p_messaging_service_sid))
  limit 1;
  for v_customer in
    select c.business_id, c.id from public.customers c
    where c.phone = p_phone and c.anonymised_at is null
      and case when v_owner is not null then c.business_id = v_owner
               else not exists (select 1 from public.sms_senders s where s.business_id = c.business_id and s.is_active) end
    order by c.business_id, c.id
  loop
    perform app.record_consent(v_customer.business_id, v_customer.id, 'SMS_MARKETING', p_opt_in,
                               case when p_opt_in then 'sms_start' else 'sms_stop' end, null, null, 'twilio-sms');
    if p_opt_in then
      delete from public.marketing_suppressions s
      where s.business_id = v_customer.business_id and s.channel = 'sms' and s.address = p_phone and s.reason = 'sms_stop';
    else
      insert into public.marketing_suppressions (business_id, channel, address, reason)
      values (v_customer.business_id, 'sms', p_phone, 'sms_stop') on conflict do nothing;
    end if;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function app.sms_opt(text, boolean, text, text) from public;
grant execute on function app.sms_opt(text, boolean, text, text) to service_role;

/** 0010's two-argument form: a keyword to the platform number. */
create or replace function app.sms_opt(p_phone text, p_opt_in boolean) returns integer
language sql volatile security definer
set search_path = ''
as $$
  select app.sms_opt(p_phone, p_opt_in, null, null)
$$;

-- section policies
create policy "owners and managers read their sms sender" on public.sms_senders for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "operator reads every sms sender" on public.sms_senders for select to authenticated
  using ((select app.is_platform_admin()));
create policy "operator adds sms senders" on public.sms_senders for insert to authenticated
  with check ((select app.is_platform_admin()));
create policy "operator changes sms senders" on public.sms_senders for update to authenticated
  using ((select app.is_platform_admin())) with check ((select app.is_platform_admin()));
create policy "operator removes sms senders" on public.sms_senders for delete to authenticated
  using ((select app.is_platform_admin()));

-- section grants
revoke all on public.sms_senders from anon, authenticated;
grant select, insert, update, delete on public.sms_senders to authenticated;
grant all on public.sms_senders to service_role;
