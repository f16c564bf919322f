-- Unsubscribe links were signed with the pickup-code pepper (0008), so one secret served two
-- purposes and could not be rotated without breaking every link already emailed. Signing keys are
-- now per purpose and versioned: a token names its key version ("v2.<hex>"), app.rotate_signing_key
-- starts a new version and gives the old ones a grace period during which their tokens stay valid
-- (docs/campaigns.md). Version 1 of 'unsubscribe' is the pepper, retired at once with 90 days' grace,
-- so the links sent before this migration (unversioned) keep working that long.

-- section tables

/** Versioned HMAC keys, one series per purpose ('unsubscribe', …). The current key of a purpose is
    its highest version with no valid_until; a retired key verifies tokens until valid_until. No API
    role can read them. */
create table app.signing_keys (
  purpose text not null,
  version integer not null constraint signing_keys_version_positive check (version > 0),
  value bytea not null constraint signing_keys_value_length check (length(value) >= 32),
  created_at timestamptz not null default now(),
  valid_until timestamptz,
  constraint signing_keys_pkey primary key (purpose, version)
);
insert into app.signing_keys (purpose, version, value, valid_until)
select 'unsubscribe', 1, s.value, now() + interval '90 days' from app.secrets s where s.name = 'pickup_code_pepper';
insert into app.signing_keys (purpose, version, value) values ('unsubscribe', 2, extensions.gen_random_bytes(32));

-- section private helpers

/** Starts a new key version for a purpose; the keys in use until now verify for p_grace more.
    Returns the new version. Service only (run it from SQL or a deploy script). */
create function app.rotate_signing_key(p_purpose text, p_grace interval default interval '90 days') returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_version integer;
begin
  if p_grace is null or p_grace < interval '0' then
    perform app.fail('22023', 'invalid_input', 'the grace period cannot be negative');
  end if;
  perform 1 from app.signing_keys k where k.purpose = p_purpose for update;
  update app.signing_keys k set valid_until = now() + p_grace where k.purpose = p_purpose and k.valid_until is null;
  select coalesce(max(k.version), 0) + 1 into v_version from app.signing_keys k where k.purpose = p_purpose;
  insert into app.signing_keys (purpose, version, value) values (p_purpose, v_version, extensions.gen_random_bytes(32));
  return v_version;
end
$$;
revoke all on function app.rotate_signing_key(text, interval) from public;
grant execute on function app.rotate_signing_key(text, interval) to service_role;

/** HMAC-SHA256 (hex) of a message under one key version of a purpose; null if no such key. */
create function app.sign_with(p_purpose text, p_version integer, p_message text) returns text
language sql stable security definer
set search_path = ''
as $$
  select encode(extensions.hmac(convert_to(p_message, 'UTF8'), k.value, 'sha256'), 'hex')
  from app.signing_keys k where k.purpose = p_purpose and k.version = p_version
$$;
revoke all on function app.sign_with(text, integer, text) from public;

/** A stateless unsubscribe token: "v<version>.<HMAC of business:customer:channel>" with the current
    unsubscribe key. */
create or replace function app.unsubscribe_token(p_business_id uuid, p_customer_id uuid, p_channel text) returns text
language sql stable security definer
set search_path = ''
as $$
  select 'v' || k.version || '.' || app.sign_with('unsubscribe', k.version, p_business_id || ':' || p_customer_id || ':' || p_channel)
  from app.signing_keys k where k.purpose = 'unsubscribe' and k.valid_until is null
  order by k.version desc limit 1
$$;

/** Whether an unsubscribe token is genuine: signed by a key of the purpose that is current or within
    its grace. An unversioned token is version 1 (links sent before 0077). */
create function app.unsubscribe_token_valid(p_business_id uuid, p_customer_id uuid, p_channel text, p_token text) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_version integer := 1;
  v_mac text := p_token;
begin
  if p_token is null then
    return false;
  end if;
  if p_token ~ '^v[0-9]{1,9}\.[0-9a-f]+$' then
    v_version := substring(p_token from '^v([0-9]+)\.')::integer;
    v_mac := substring(p_token from '\.([0-9a-f]+)$');
  end if;
  return exists (select 1 from app.signing_keys k where k.purpose = 'unsubscribe' and k.version = v_version
                 and (k.valid_until is null or k.valid_until > now()))
     and app.sign_with('unsubscribe', v_version, p_business_id || ':' || p_customer_id || ':' || p_channel) = v_mac;
end
$$;
revoke all on function app.unsubscribe_token_valid(uuid, uuid, text, text) from public;
grant execute on function app.unsubscribe_token_valid(uuid, uuid, text, text) to service_role;

/** The unsubscribe link: REVOKED with source unsubscribe_link when the token is valid (BR210 otherwise). */
create or replace function app.unsubscribe(p_business_id uuid, p_customer_id uuid, p_channel text, p_token text, p_ip inet,
                                           p_user_agent text)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not app.unsubscribe_token_valid(p_business_id, p_customer_id, p_channel, p_token) then
    perform app.fail('BR210', 'invalid_token', 'this unsubscribe link is not valid');
  end if;
  perform app.record_consent(p_business_id, p_customer_id, p_channel, false, 'unsubscribe_link', null, p_ip, p_user_agent);
  return jsonb_build_object('unsubscribed', true, 'channel', p_channel);
end
$$;

-- section grants
revoke all on app.signing_keys from public, anon, authenticated;
