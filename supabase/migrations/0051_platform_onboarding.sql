-- Onboarding, storefront settings and the team: recorded onboarding steps (a storefront goes live
-- only when the required ones are done), storefront settings with a subdomain and a custom domain
-- unique across the platform, theme, logo and banner (opening hours per venue with exceptions are
-- the catalog's venue_opening_hours / venue_hours_exceptions), staff invitations by email with
-- expiry, and an audit of every membership change. Codes BR71x–BR72x (docs/errors.md).

-- section tables

/** The storefront of a business. subdomain and custom_domain are unique across the platform
    (claimed in app.storefront_hostnames). anon reads published storefronts of active businesses. */
create table public.storefront_settings (
  business_id uuid not null references public.businesses (id) on delete cascade,
  subdomain text not null,
  custom_domain text,
  theme_colors jsonb not null default '{}'::jsonb,
  logo_url text,
  banner_url text,
  tagline text not null default '' constraint storefront_settings_tagline_length check (length(tagline) <= 200),
  is_published boolean not null default false,
  published_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint storefront_settings_pkey primary key (business_id)
);
alter table public.storefront_settings enable row level security;

/** Platform-wide claims on host names (a reference table, not tenant data): one row per subdomain
    or custom domain in use, so uniqueness holds across businesses. Service only. */
create table app.storefront_hostnames (
  hostname text primary key,
  business_id uuid not null references public.businesses (id) on delete cascade,
  kind text not null check (kind in ('subdomain', 'custom_domain'))
);
create unique index storefront_hostnames_business_kind_key on app.storefront_hostnames (business_id, kind);

/** Steps of onboarding as they were first completed (who, when). The live state is
    app.onboarding_status; a step is recorded the first time its condition holds. */
create table public.onboarding_steps (
  business_id uuid not null references public.businesses (id) on delete cascade,
  step text not null constraint onboarding_steps_step_valid check (step in (
    'details', 'plan', 'owner', 'venue', 'opening_hours', 'delivery_radius', 'payment_account',
    'first_categories', 'storefront_theme')),
  completed_at timestamptz not null default now(),
  completed_by uuid,
  details jsonb not null default '{}'::jsonb,
  constraint onboarding_steps_pkey primary key (business_id, step)
);
alter table public.onboarding_steps enable row level security;

/** An invitation to join a business's team by email, with a role (and optional venue limits),
    valid until expires_at. Only the token's hash is stored; the token goes out by email. */
create table public.staff_invitations (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  email text not null constraint staff_invitations_email_format check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  role public.membership_role not null,
  venue_ids uuid[] not null default '{}',
  token_hash text not null,
  invited_by uuid,
  expires_at timestamptz not null default now() + interval '7 days',
  accepted_at timestamptz,
  accepted_by uuid,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  constraint staff_invitations_pkey primary key (business_id, id)
);
alter table public.staff_invitations enable row level security;

-- section indexes
create index storefront_settings_published_idx on public.storefront_settings (business_id) where is_published;
create index staff_invitations_id_idx on public.staff_invitations (id);
create index staff_invitations_business_email_idx on public.staff_invitations (business_id, lower(email))
  where accepted_at is null and revoked_at is null;

-- section private helpers

/** True for an active (not suspended) business. */
create function app.business_active(p_business_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select coalesce((select b.status = 'active' from public.businesses b where b.id = p_business_id), false)
$$;
revoke all on function app.business_active(uuid) from public;
grant execute on function app.business_active(uuid) to anon, authenticated, service_role;

/** Onboarding steps with their live condition, whether each is required for going live, and when
    it was first completed. Records newly satisfied steps (and emits business.onboarding_step). */
create function app.onboarding_status(p_business_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_steps jsonb;
  v_missing text[];
begin
  with live (step, sort, required, done) as (
    values
      ('details', 1, true, exists (select 1 from public.businesses b where b.id = p_business_id and length(b.name) > 0)),
      ('plan', 2, true, exists (select 1 from public.business_subscriptions s where s.business_id = p_business_id and s.status <> 'canceled')),
      ('owner', 3, true, exists (select 1 from public.memberships m where m.business_id = p_business_id and m.role = 'owner')),
      ('venue', 4, true, exists (select 1 from public.venues v where v.business_id = p_business_id)),
      ('opening_hours', 5, true, exists (select 1 from public.venue_opening_hours h where h.business_id = p_business_id)),
      ('delivery_radius', 6, false, exists (select 1 from public.venues v where v.business_id = p_business_id and v.accepts_delivery
                                               and v.delivery_radius_km > 0 and v.latitude is not null and v.longitude is not null)),
      ('payment_account', 7, true, exists (select 1 from public.businesses b where b.id = p_business_id and b.stripe_account_id is not null)),
      ('first_categories', 8, true, exists (select 1 from public.product_categories c where c.business_id = p_business_id)),
      ('storefront_theme', 9, true, exists (select 1 from public.storefront_settings s where s.business_id = p_business_id
                                              and s.theme_colors ? 'primary'))
  ), recorded as (
    insert into public.onboarding_steps (business_id, step, completed_by)
    select p_business_id, l.step, auth.uid() from live l where l.done
    on conflict (business_id, step) do nothing
    returning step
  )
  select jsonb_agg(jsonb_build_object('step', l.step, 'required', l.required, 'done', l.done,
           'completed_at', coalesce(o.completed_at, case when l.step in (select step from recorded) then now() end)) order by l.sort),
         array_agg(l.step order by l.sort) filter (where l.required and not l.done)
  into v_steps, v_missing
  from live l left join public.onboarding_steps o on o.business_id = p_business_id and o.step = l.step;

  return jsonb_build_object('business_id', p_business_id, 'steps', v_steps,
                            'missing', to_jsonb(coalesce(v_missing, '{}')), 'ready', coalesce(cardinality(v_missing), 0) = 0,
                            'published', coalesce((select s.is_published from public.storefront_settings s
                                                   where s.business_id = p_business_id), false));
end
$$;
revoke all on function app.onboarding_status(uuid) from public;
grant execute on function app.onboarding_status(uuid) to service_role;

/** sha256 of an invitation secret. */
create function app.invitation_hash(p_secret text) returns text
language sql immutable
set search_path = ''
as $$
  select encode(extensions.digest(p_secret, 'sha256'), 'hex')
$$;
revoke all on function app.invitation_hash(text) from public;
grant execute on function app.invitation_hash(text) to service_role;

-- section triggers

/** Validates and normalises a storefront (BR710 subdomain, BR711 custom domain, BR713 theme / URLs,
    BR716 custom domain not in the plan), claims its host names (BR712 when taken), and lets it be
    published only when onboarding's required steps are done and the business is active (BR714). */
create function app.tg_storefront_settings_guard() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_key text;
  v_value jsonb;
  v_status jsonb;
begin
  new.subdomain := lower(trim(new.subdomain));
  new.custom_domain := nullif(lower(trim(trailing '.' from trim(new.custom_domain))), '');
  if new.subdomain !~ '^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$' or new.subdomain like '%--%' then
    perform app.fail('BR710', 'invalid_subdomain', 'a subdomain is 3–63 letters, digits or single hyphens, not at either end');
  end if;
  if new.subdomain in ('www', 'api', 'app', 'admin', 'mail', 'static', 'cdn', 'help', 'support', 'status', 'dashboard',
                       'auth', 'functions', 'billing', 'brigade', 'platform', 'storefront', 'assets') then
    perform app.fail('BR710', 'reserved_subdomain', format('the subdomain %L is reserved', new.subdomain));
  end if;
  if new.custom_domain is not null then
    if new.custom_domain !~ '^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$' or length(new.custom_domain) > 253 then
      perform app.fail('BR711', 'invalid_custom_domain', 'the custom domain is not a valid host name (e.g. order.example.com)');
    end if;
    if (tg_op = 'INSERT' or new.custom_domain is distinct from old.custom_domain)
       and not coalesce((app.business_plan(new.business_id)).features ? 'custom_domain', false) then
      perform app.fail('BR716', 'feature_not_in_plan', 'custom domains need the Growth plan or above');
    end if;
  end if;
  if jsonb_typeof(new.theme_colors) <> 'object' then
    perform app.fail('BR713', 'invalid_theme', 'theme_colors must be an object of colour names to #rrggbb');
  end if;
  for v_key, v_value in select * from jsonb_each(new.theme_colors) loop
    if v_key not in ('primary', 'secondary', 'accent', 'background', 'text')
       or jsonb_typeof(v_value) <> 'string' or (v_value #>> '{}') !~ '^#[0-9a-fA-F]{6}$' then
      perform app.fail('BR713', 'invalid_theme', format('theme colour %s must be one of primary, secondary, accent, background, text as #rrggbb', v_key));
    end if;
  end loop;
  if coalesce(new.logo_url, 'https://x') !~ '^https://[^\s]+$' or coalesce(new.banner_url, 'https://x') !~ '^https://[^\s]+$' then
    perform app.fail('BR713', 'invalid_url', 'logo and banner must be https URLs');
  end if;

  -- host names: platform-wide claims
  delete from app.storefront_hostnames h where h.business_id = new.business_id
    and ((h.kind = 'subdomain' and h.hostname <> new.subdomain)
         or (h.kind = 'custom_domain' and h.hostname is distinct from new.custom_domain));
  begin
    insert into app.storefront_hostnames (hostname, business_id, kind) values (new.subdomain, new.business_id, 'subdomain')
    on conflict (hostname) do nothing;
    if not exists (select 1 from app.storefront_hostnames h where h.hostname = new.subdomain and h.business_id = new.business_id) then
      perform app.fail('BR712', 'domain_taken', format('the subdomain %L is taken', new.subdomain));
    end if;
    if new.custom_domain is not null then
      insert into app.storefront_hostnames (hostname, business_id, kind) values (new.custom_domain, new.business_id, 'custom_domain')
      on conflict (hostname) do nothing;
      if not exists (select 1 from app.storefront_hostnames h where h.hostname = new.custom_domain and h.business_id = new.business_id) then
        perform app.fail('BR712', 'domain_taken', format('the domain %L is taken', new.custom_domain));
      end if;
    end if;
  end;

  if new.is_published and (tg_op = 'INSERT' or not old.is_published) then
    v_status := app.onboarding_status(new.business_id);
    if not (v_status ->> 'ready')::boolean then
      perform app.fail('BR714', 'onboarding_incomplete',
        format('the storefront goes live once these steps are done: %s',
               (select string_agg(x, ', ') from jsonb_array_elements_text(v_status -> 'missing') x)));
    end if;
    if not app.business_active(new.business_id) then
      perform app.fail('BR714', 'business_suspended', 'a suspended business cannot publish its storefront');
    end if;
    new.published_at := now();
  end if;
  if tg_op = 'UPDATE' then
    new.updated_at := now();
  end if;
  return new;
end
$$;

/** Every membership change a person makes (owner, manager, operator, the invited person accepting)
    lands in the audit log, whichever path made it. Provisioning by the service role or a session
    without claims (seed, support scripts) is not a person's action and is left out. */
create function app.tg_memberships_audit() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if coalesce(auth.role(), '') in ('', 'service_role') and not app.is_platform_admin() then
    return null;
  end if;
  if tg_op = 'INSERT' then
    perform app.audit(new.business_id, 'member.added', jsonb_build_object('user_id', new.user_id, 'role', new.role));
  elsif tg_op = 'UPDATE' then
    perform app.audit(new.business_id, 'member.role_changed',
      jsonb_build_object('user_id', new.user_id, 'before', old.role, 'after', new.role));
  elsif exists (select 1 from public.businesses b where b.id = old.business_id) then
    perform app.audit(old.business_id, 'member.removed', jsonb_build_object('user_id', old.user_id, 'role', old.role));
  end if;
  return null;
end
$$;

/** A new business gets an unpublished storefront on its slug when that name is free and valid
    (otherwise the owner picks a subdomain later). */
create function app.tg_businesses_storefront() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  begin
    insert into public.storefront_settings (business_id, subdomain) values (new.id, new.slug);
  exception when sqlstate 'BR710' or sqlstate 'BR712' then
    null;
  end;
  return null;
end
$$;

create trigger storefront_settings_guard before insert or update on public.storefront_settings
  for each row execute function app.tg_storefront_settings_guard();
create trigger memberships_audit after insert or delete or update of role on public.memberships
  for each row execute function app.tg_memberships_audit();
create trigger businesses_storefront after insert on public.businesses
  for each row execute function app.tg_businesses_storefront();

-- section policies
create policy "anyone reads published storefronts" on public.storefront_settings for select to anon, authenticated
  using (is_published and app.business_active(business_id));
create policy "members read their storefront" on public.storefront_settings for select to authenticated
  using (business_id in (select app.my_business_ids()));
create policy "operator reads every storefront" on public.storefront_settings for select to authenticated
  using ((select app.is_platform_admin()));
create policy "owners create their storefront" on public.storefront_settings for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners and managers edit their storefront" on public.storefront_settings for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "owners and managers read onboarding" on public.onboarding_steps for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "operator reads all onboarding" on public.onboarding_steps for select to authenticated
  using ((select app.is_platform_admin()));

create policy "owners and managers read invitations" on public.staff_invitations for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "operator reads every invitation" on public.staff_invitations for select to authenticated
  using ((select app.is_platform_admin()));

-- section grants
revoke all on public.storefront_settings, public.onboarding_steps, public.staff_invitations from anon, authenticated;
revoke all on app.storefront_hostnames from public, anon, authenticated;
grant select (business_id, subdomain, custom_domain, theme_colors, logo_url, banner_url, tagline, is_published, published_at)
  on public.storefront_settings to anon;
grant select, insert (business_id, subdomain, custom_domain, theme_colors, logo_url, banner_url, tagline),
      update (subdomain, custom_domain, theme_colors, logo_url, banner_url, tagline, is_published)
  on public.storefront_settings to authenticated;
grant select on public.onboarding_steps to authenticated;
grant select (business_id, id, email, role, venue_ids, invited_by, expires_at, accepted_at, accepted_by, revoked_at, created_at)
  on public.staff_invitations to authenticated;
grant all on public.storefront_settings, public.onboarding_steps, public.staff_invitations, app.storefront_hostnames to service_role;

-- section rpc

/** Onboarding progress of a business (records steps that became done). Owners, managers and the
    operator; raises 42501 otherwise. */
create function app.get_onboarding_status(p_business_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not (app.is_member(p_business_id, '{owner,manager}') or app.is_operator()) then
    perform app.fail('42501', 'not_member', 'not an owner or manager of this business');
  end if;
  return app.onboarding_status(p_business_id);
end
$$;
revoke all on function app.get_onboarding_status(uuid) from public;
grant execute on function app.get_onboarding_status(uuid) to authenticated, service_role;

create function public.onboarding_status(business_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.get_onboarding_status(business_id)
$$;
revoke all on function public.onboarding_status(uuid) from public, anon;
grant execute on function public.onboarding_status(uuid) to authenticated, service_role;

/** Invites someone by email. Owners invite any role; managers invite staff and drivers; the
    operator invites anyone (the first owner). Counts pending invitations against the plan's team
    limit (BR702). Replaces a pending invitation to the same email. Returns the token once (it is
    also emailed: event staff.invited). Raises 42501, BR723 (invalid email), BR724 (already a member). */
create function app.invite_member(p_business_id uuid, p_email text, p_role public.membership_role,
                                  p_venue_ids uuid[] default '{}', p_valid_for interval default interval '7 days') returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_email text := lower(trim(p_email));
  v_secret text := encode(extensions.gen_random_bytes(24), 'hex');
  v_id uuid := extensions.gen_random_uuid();
  v_expires timestamptz := now() + coalesce(p_valid_for, interval '7 days');
  v_business public.businesses;
begin
  if not (app.is_operator() or app.is_member(p_business_id, '{owner}')
          or (app.is_member(p_business_id, '{manager}') and p_role in ('staff', 'driver'))) then
    perform app.fail('42501', 'not_member', 'owners invite any role, managers invite staff and drivers');
  end if;
  select b.* into v_business from public.businesses b where b.id = p_business_id;
  if v_business.id is null then
    perform app.fail('PT404', 'not_found', 'business not found');
  end if;
  if v_email is null or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    perform app.fail('BR723', 'invalid_email', 'the email address is not valid');
  end if;
  if p_valid_for <= interval '0' or p_valid_for > interval '30 days' then
    perform app.fail('22023', 'invalid_input', 'an invitation is valid for up to 30 days');
  end if;
  if p_role = 'owner' and cardinality(p_venue_ids) > 0 then
    perform app.fail('BR005', 'owner_all_venues', 'an owner cannot be limited to some venues');
  end if;
  if exists (select 1 from unnest(p_venue_ids) x(v)
             where not exists (select 1 from public.venues v where v.business_id = p_business_id and v.id = x.v)) then
    perform app.fail('22023', 'invalid_input', 'a venue that is not this business''s');
  end if;
  if exists (select 1 from public.memberships m join auth.users u on u.id = m.user_id
             where m.business_id = p_business_id and lower(u.email) = v_email) then
    perform app.fail('BR724', 'already_member', 'that person is already on the team');
  end if;

  perform 1 from public.business_subscriptions s where s.business_id = p_business_id for update;
  update public.staff_invitations set revoked_at = now()
  where business_id = p_business_id and lower(email) = v_email and accepted_at is null and revoked_at is null;
  if p_role <> 'driver' then
    perform app.check_plan_limit(p_business_id, 'staff',
      (select count(*) from public.memberships m where m.business_id = p_business_id and m.role <> 'driver')
      + (select count(*) from public.staff_invitations i where i.business_id = p_business_id and i.role <> 'driver'
         and i.accepted_at is null and i.revoked_at is null and i.expires_at > now()));
  end if;

  insert into public.staff_invitations (business_id, id, email, role, venue_ids, token_hash, invited_by, expires_at)
  values (p_business_id, v_id, v_email, p_role, coalesce(p_venue_ids, '{}'), app.invitation_hash(v_secret), auth.uid(), v_expires);
  perform app.audit(p_business_id, 'member.invited', jsonb_build_object('invitation_id', v_id, 'email', v_email, 'role', p_role));
  perform app.emit('staff.invited', p_business_id, jsonb_build_object(
    'invitation_id', v_id, 'email', v_email, 'role', p_role, 'business_name', v_business.name,
    'token', v_id::text || '.' || v_secret, 'expires_at', v_expires));
  return jsonb_build_object('invitation_id', v_id, 'token', v_id::text || '.' || v_secret, 'expires_at', v_expires,
                            'email', v_email, 'role', p_role);
end
$$;
revoke all on function app.invite_member(uuid, text, public.membership_role, uuid[], interval) from public;
grant execute on function app.invite_member(uuid, text, public.membership_role, uuid[], interval) to authenticated, service_role;

create function public.invite_member(business_id uuid, email text, role public.membership_role, venue_ids uuid[] default '{}')
returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.invite_member(business_id, email, role, venue_ids)
$$;
revoke all on function public.invite_member(uuid, text, public.membership_role, uuid[]) from public, anon;
grant execute on function public.invite_member(uuid, text, public.membership_role, uuid[]) to authenticated, service_role;

/** The invited person, signed in with the invited email, joins the team. Raises PT404 (unknown or
    forged token), BR720 (expired), BR721 (used or revoked), BR722 (signed in with another email),
    BR702 (the team is full). */
create function app.accept_invitation(p_token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_inv public.staff_invitations;
  v_id uuid;
  v_member uuid;
begin
  if auth.uid() is null then
    perform app.fail('42501', 'sign_in_required', 'sign in with the invited email first');
  end if;
  begin
    v_id := split_part(p_token, '.', 1)::uuid;
  exception when invalid_text_representation then
    perform app.fail('PT404', 'invitation_not_found', 'no such invitation');
  end;
  select i.* into v_inv from public.staff_invitations i where i.id = v_id for update;
  if v_inv.id is null or v_inv.token_hash <> app.invitation_hash(split_part(p_token, '.', 2)) then
    perform app.fail('PT404', 'invitation_not_found', 'no such invitation');
  end if;
  if v_inv.accepted_at is not null then
    if v_inv.accepted_by = auth.uid() then
      return jsonb_build_object('business_id', v_inv.business_id, 'role', v_inv.role, 'already_accepted', true);
    end if;
    perform app.fail('BR721', 'invitation_used', 'this invitation has been used');
  end if;
  if v_inv.revoked_at is not null then
    perform app.fail('BR721', 'invitation_revoked', 'this invitation was withdrawn');
  end if;
  if v_inv.expires_at <= now() then
    perform app.fail('BR720', 'invitation_expired', 'this invitation has expired; ask for a new one');
  end if;
  if lower(coalesce(auth.email(), '')) <> v_inv.email then
    perform app.fail('BR722', 'invitation_email_mismatch', 'sign in with the email address the invitation was sent to');
  end if;

  insert into public.memberships (business_id, user_id, role) values (v_inv.business_id, auth.uid(), v_inv.role)
  on conflict (business_id, user_id) do update set role = excluded.role
  returning id into v_member;
  insert into public.membership_venues (business_id, membership_id, venue_id)
  select v_inv.business_id, v_member, v from unnest(v_inv.venue_ids) v
  on conflict do nothing;
  update public.staff_invitations set accepted_at = now(), accepted_by = auth.uid()
  where business_id = v_inv.business_id and id = v_inv.id;
  perform app.onboarding_status(v_inv.business_id);
  return jsonb_build_object('business_id', v_inv.business_id, 'role', v_inv.role, 'membership_id', v_member,
                            'already_accepted', false);
end
$$;
revoke all on function app.accept_invitation(text) from public;
grant execute on function app.accept_invitation(text) to authenticated, service_role;

create function public.accept_invitation(token text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.accept_invitation(token)
$$;
revoke all on function public.accept_invitation(text) from public, anon;
grant execute on function public.accept_invitation(text) to authenticated, service_role;

/** Withdraws a pending invitation (the same people who could send it). */
create function app.revoke_invitation(p_invitation_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_inv public.staff_invitations;
begin
  select i.* into v_inv from public.staff_invitations i where i.id = p_invitation_id for update;
  if v_inv.id is null or not (app.is_operator() or app.is_member(v_inv.business_id, '{owner}')
                              or (app.is_member(v_inv.business_id, '{manager}') and v_inv.role in ('staff', 'driver'))) then
    perform app.fail('PT404', 'invitation_not_found', 'no such invitation');
  end if;
  update public.staff_invitations set revoked_at = now()
  where business_id = v_inv.business_id and id = v_inv.id and accepted_at is null and revoked_at is null;
  if found then
    perform app.audit(v_inv.business_id, 'member.invitation_revoked', jsonb_build_object('invitation_id', v_inv.id, 'email', v_inv.email));
  end if;
  return found;
end
$$;
revoke all on function app.revoke_invitation(uuid) from public;
grant execute on function app.revoke_invitation(uuid) to authenticated, service_role;

create function public.revoke_invitation(invitation_id uuid) returns boolean
language sql volatile
set search_path = ''
as $$
  select app.revoke_invitation(invitation_id)
$$;
revoke all on function public.revoke_invitation(uuid) from public, anon;
grant execute on function public.revoke_invitation(uuid) to authenticated, service_role;

/** The public storefront for a host name (subdomain or custom domain): settings, business and its
    published venues with weekly hours and the next 60 days' exceptions. anon; PT404 when the host
    is unknown, unpublished or suspended. */
create function app.get_storefront(p_host text) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_host text := lower(trim(trailing '.' from trim(p_host)));
  v_business uuid;
  v_out jsonb;
begin
  select h.business_id into v_business from app.storefront_hostnames h where h.hostname = v_host;
  select jsonb_build_object(
    'business', jsonb_build_object('id', b.id, 'name', b.name, 'slug', b.slug, 'currency', b.currency, 'time_zone', b.time_zone),
    'storefront', jsonb_build_object('subdomain', s.subdomain, 'custom_domain', s.custom_domain, 'theme_colors', s.theme_colors,
                                     'logo_url', s.logo_url, 'banner_url', s.banner_url, 'tagline', s.tagline),
    'venues', coalesce((
      select jsonb_agg(jsonb_build_object(
        'id', v.id, 'name', v.name, 'slug', v.slug, 'time_zone', v.time_zone, 'address', v.address,
        'accepts_pickup', v.accepts_pickup, 'accepts_delivery', v.accepts_delivery, 'accepts_dine_in', v.accepts_dine_in,
        'delivery_radius_km', v.delivery_radius_km,
        'hours', coalesce((select jsonb_agg(jsonb_build_object('weekday', h.weekday, 'opens_at', h.opens_at, 'closes_at', h.closes_at)
                                            order by h.weekday, h.opens_at)
                           from public.venue_opening_hours h where h.business_id = v.business_id and h.venue_id = v.id), '[]'),
        'exceptions', coalesce((select jsonb_agg(jsonb_build_object('on_date', e.on_date, 'is_closed', e.is_closed,
                                                                   'opens_at', e.opens_at, 'closes_at', e.closes_at, 'note', e.note)
                                                 order by e.on_date)
                                from public.venue_hours_exceptions e where e.business_id = v.business_id and e.venue_id = v.id
                                  and e.on_date between current_date - 1 and current_date + 60), '[]'),
        'is_open_now', app.venue_is_open(v.business_id, v.id, now())) order by v.name)
      from public.venues v where v.business_id = b.id and v.is_published), '[]'))
  into v_out
  from public.businesses b join public.storefront_settings s on s.business_id = b.id
  where b.id = v_business and s.is_published and b.status = 'active';
  if v_out is null then
    perform app.fail('PT404', 'storefront_not_found', 'no published storefront at that address');
  end if;
  return v_out;
end
$$;
revoke all on function app.get_storefront(text) from public;
grant execute on function app.get_storefront(text) to anon, authenticated, service_role;

create function public.get_storefront(host text) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.get_storefront(host)
$$;
revoke all on function public.get_storefront(text) from public;
grant execute on function public.get_storefront(text) to anon, authenticated, service_role;

-- section backfill: every existing business gets a storefront on its slug (unpublished)
insert into public.storefront_settings (business_id, subdomain)
select b.id, b.slug from public.businesses b
where length(b.slug) >= 3 and b.slug !~ '--'
  and b.slug not in ('www', 'api', 'app', 'admin', 'mail', 'static', 'cdn', 'help', 'support', 'status', 'dashboard',
                     'auth', 'functions', 'billing', 'brigade', 'platform', 'storefront', 'assets')
on conflict do nothing;
