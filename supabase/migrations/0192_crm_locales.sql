-- Languages (issue 16, item 4): the customer's locale, the venue's default, and per-locale versions
-- of a rule's or campaign's own text. The fixed texts (receipts, pickup codes, push, STOP and
-- unsubscribe footers) are gettext catalogs in brigade/locales/; the worker picks the customer's
-- locale, else the venue's default, else English, and formats money and times with Babel in the
-- venue's time zone.

-- section private helpers (the table checks below use it)

/** True when a translations document is {locale: {body (1-5000 chars), subject? (<= 200)}}. */
create function app.valid_translations(p_doc jsonb) returns boolean
language sql immutable
set search_path = ''
as $$
  select jsonb_typeof(p_doc) = 'object' and not exists (
    select 1 from jsonb_each(p_doc) t
    where t.key !~ '^[a-z]{2,3}(-[A-Z]{2})?$' or jsonb_typeof(t.value) <> 'object'
       or jsonb_typeof(t.value -> 'body') is distinct from 'string' or length(t.value ->> 'body') not between 1 and 5000
       or (t.value ? 'subject' and (jsonb_typeof(t.value -> 'subject') <> 'string' or length(t.value ->> 'subject') > 200))
       or exists (select 1 from jsonb_object_keys(t.value) k where k not in ('subject', 'body')))
$$;
revoke all on function app.valid_translations(jsonb) from public;
grant execute on function app.valid_translations(jsonb) to anon, authenticated, service_role;

-- section tables
alter table public.customers add column locale text
  constraint customers_locale_format check (locale ~ '^[a-z]{2,3}(-[A-Z]{2})?$');
-- null: English. (businesses.locale, issue 14, stays what it is: how receipts write money and dates.)
alter table public.venues add column default_locale text
  constraint venues_default_locale_format check (default_locale ~ '^[a-z]{2,3}(-[A-Z]{2})?$');
alter table public.automations add column translations jsonb not null default '{}'::jsonb
  constraint automations_translations_valid check (app.valid_translations(translations));
alter table public.campaigns add column translations jsonb not null default '{}'::jsonb
  constraint campaigns_translations_valid check (app.valid_translations(translations));

-- section grants
grant update (locale) on public.customers to authenticated;
grant insert (translations), update (translations) on public.automations, public.campaigns to authenticated;

-- section rpc

/** The signed-in customer chooses the language of their messages at a business (null: the venue's
    default). Raises 42501 sign_in_required, PT404 (no customer record of theirs there), 22023. */
create function app.set_my_locale(p_business_id uuid, p_locale text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if auth.uid() is null then
    perform app.fail('42501', 'sign_in_required', 'sign in to choose a language');
  end if;
  if p_locale is not null and p_locale !~ '^[a-z]{2,3}(-[A-Z]{2})?$' then
    perform app.fail('22023', 'invalid_locale', 'a locale is a language code, optionally with a region: fr, bg, en-GB');
  end if;
  update public.customers set locale = p_locale, updated_at = now()
  where business_id = p_business_id and user_id = auth.uid() and merged_into is null;
  if not found then
    perform app.fail('PT404', 'customer_not_found', 'you have no customer record at this business');
  end if;
  return p_locale;
end
$$;
revoke all on function app.set_my_locale(uuid, text) from public;
grant execute on function app.set_my_locale(uuid, text) to authenticated, service_role;

create function public.set_my_locale(business_id uuid, locale text) returns text
language sql volatile
set search_path = ''
as $$
  select app.set_my_locale(business_id, locale)
$$;
revoke all on function public.set_my_locale(uuid, text) from public, anon;
grant execute on function public.set_my_locale(uuid, text) to authenticated, service_role;
