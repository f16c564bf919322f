-- The event outbox (pgmq queue brigade_events and its dead-letter queue), emit(), worker heartbeats
-- and the claims that make each scheduled job run once across worker copies.

-- section extensions
-- Hosted Supabase has the pgmq extension; on plain PostgreSQL `brigade db migrate` installs the SQL
-- bundled in the pgmq Python package before the migrations, so the schema already exists here.
do $$
begin
  if not exists (select 1 from pg_namespace where nspname = 'pgmq') then
    create extension if not exists pgmq;
  end if;
end
$$;

select pgmq.create('brigade_events')
where not exists (select 1 from pgmq.meta where queue_name = 'brigade_events');
select pgmq.create('brigade_events_dead')
where not exists (select 1 from pgmq.meta where queue_name = 'brigade_events_dead');

-- section tables

/** Worker copies alive: each heartbeats here; the operator reads it to see who is consuming. */
create table app.workers (
  id text primary key,
  hostname text not null,
  pid integer not null,
  started_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  handled_count bigint not null default 0,
  failed_count bigint not null default 0
);

/** One row per (job, scheduled time): the first worker copy to insert it runs the job. */
create table app.scheduled_runs (
  job_name text not null,
  scheduled_for timestamptz not null,
  worker_id text not null,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  status text not null default 'running'
    constraint scheduled_runs_status_valid check (status in ('running', 'succeeded', 'failed')),
  error text,
  constraint scheduled_runs_pkey primary key (job_name, scheduled_for)
);

-- section indexes
create index scheduled_runs_started_idx on app.scheduled_runs (started_at desc);

-- section private helpers

/** Sends an event to the outbox in the caller's transaction (so it exists only if the change
    commits) and wakes the workers. Topics are noun.verb. A delay in seconds defers delivery. */
create function app.emit(
  p_topic text,
  p_business_id uuid,
  p_payload jsonb default '{}'::jsonb,
  p_delay_seconds integer default 0
) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_msg_id bigint;
begin
  if p_topic is null or p_topic !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' then
    raise exception using errcode = '22023', message = format('invalid event topic %L (noun.verb)', p_topic),
      hint = 'invalid_topic';
  end if;
  if coalesce(p_delay_seconds, 0) < 0 then
    raise exception using errcode = '22023', message = 'event delay must not be negative', hint = 'invalid_delay';
  end if;
  select pgmq.send(
    'brigade_events',
    jsonb_build_object(
      'topic', p_topic,
      'business_id', p_business_id,
      'payload', coalesce(p_payload, '{}'::jsonb),
      'emitted_at', clock_timestamp()
    ),
    coalesce(p_delay_seconds, 0)
  ) into v_msg_id;
  -- One constant payload, so a transaction that emits many events sends one wake-up (PostgreSQL folds
  -- identical notifications). Not pgmq.enable_notify_insert: its throttle row is updated by every
  -- insert and would serialise all emitting transactions until they commit.
  perform pg_notify('brigade_events', '');
  return v_msg_id;
end
$$;
revoke all on function app.emit(text, uuid, jsonb, integer) from public;
grant execute on function app.emit(text, uuid, jsonb, integer) to anon, authenticated, service_role;

/** Moves a message that exhausted its attempts to brigade_events_dead, with the last error. */
create function app.bury_event(p_msg_id bigint, p_error text) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_msg record;
  v_dead_id bigint;
begin
  select q.msg_id, q.read_ct, q.enqueued_at, q.message into v_msg
  from pgmq.q_brigade_events q where q.msg_id = p_msg_id for update;
  if not found then
    return null;  -- already handled or buried by another copy
  end if;
  select pgmq.send('brigade_events_dead', jsonb_build_object(
    'event', v_msg.message,
    'original_msg_id', v_msg.msg_id,
    'attempts', v_msg.read_ct,
    'first_enqueued_at', v_msg.enqueued_at,
    'failed_at', clock_timestamp(),
    'error', left(coalesce(p_error, ''), 4000)
  )) into v_dead_id;
  perform pgmq.delete('brigade_events', p_msg_id);
  return v_dead_id;
end
$$;
revoke all on function app.bury_event(bigint, text) from public;
grant execute on function app.bury_event(bigint, text) to service_role;

/** Dead events for the operator: what failed, how often, and why. */
create function app.list_dead_events(p_limit integer default 100)
returns table (dead_id bigint, topic text, business_id uuid, attempts integer, error text,
               failed_at timestamptz, event jsonb)
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if not app.is_platform_or_service() then
    raise exception using errcode = '42501', message = 'only the platform operator may list dead events',
      hint = 'operator_only';
  end if;
  return query
  select d.msg_id, d.message -> 'event' ->> 'topic', (d.message -> 'event' ->> 'business_id')::uuid,
         (d.message ->> 'attempts')::integer, d.message ->> 'error',
         (d.message ->> 'failed_at')::timestamptz, d.message -> 'event'
  from pgmq.q_brigade_events_dead d
  order by d.msg_id desc
  limit least(greatest(coalesce(p_limit, 100), 1), 1000);
end
$$;
revoke all on function app.list_dead_events(integer) from public;
grant execute on function app.list_dead_events(integer) to authenticated, service_role;

/** Puts a dead event back on the outbox with fresh attempts; returns its new message id.
    Raises 42501 (not the operator) and PT404 (no such dead event). */
create function app.replay_dead_event(p_dead_id bigint) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_event jsonb;
  v_msg_id bigint;
begin
  if not app.is_platform_or_service() then
    raise exception using errcode = '42501', message = 'only the platform operator may replay events',
      hint = 'operator_only';
  end if;
  select d.message -> 'event' into v_event from pgmq.q_brigade_events_dead d
  where d.msg_id = p_dead_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('dead event %s not found', p_dead_id),
      hint = 'not_found';
  end if;
  select pgmq.send('brigade_events', v_event || jsonb_build_object('replayed_from', p_dead_id))
    into v_msg_id;
  perform pgmq.delete('brigade_events_dead', p_dead_id);
  if v_event ->> 'business_id' is not null then
    perform app.audit((v_event ->> 'business_id')::uuid, 'event.replayed',
      jsonb_build_object('dead_id', p_dead_id, 'msg_id', v_msg_id, 'topic', v_event ->> 'topic'));
  end if;
  perform pg_notify('brigade_events', '');
  return v_msg_id;
end
$$;
revoke all on function app.replay_dead_event(bigint) from public;
grant execute on function app.replay_dead_event(bigint) to authenticated, service_role;

/** A worker copy claims one run of a scheduled job; true only for the copy that wins. */
create function app.claim_scheduled_run(p_job_name text, p_scheduled_for timestamptz, p_worker_id text)
returns boolean
language sql volatile security definer
set search_path = ''
as $$
  with claimed as (
    insert into app.scheduled_runs (job_name, scheduled_for, worker_id)
    values (p_job_name, p_scheduled_for, p_worker_id)
    on conflict on constraint scheduled_runs_pkey do nothing
    returning 1
  )
  select exists (select 1 from claimed)
$$;
revoke all on function app.claim_scheduled_run(text, timestamptz, text) from public;
grant execute on function app.claim_scheduled_run(text, timestamptz, text) to service_role;

/** Outbox depth for health checks and the operator: ready, delayed or leased, dead. */
create function app.outbox_stats()
returns table (ready bigint, invisible bigint, dead bigint, oldest_ready_age_seconds double precision)
language sql stable security definer
set search_path = ''
as $$
  select
    (select count(*) from pgmq.q_brigade_events where vt <= clock_timestamp()),
    (select count(*) from pgmq.q_brigade_events where vt > clock_timestamp()),
    (select count(*) from pgmq.q_brigade_events_dead),
    (select extract(epoch from clock_timestamp() - min(enqueued_at))
     from pgmq.q_brigade_events where vt <= clock_timestamp())
$$;
revoke all on function app.outbox_stats() from public;
grant execute on function app.outbox_stats() to service_role;

-- section grants
revoke all on app.workers, app.scheduled_runs from public, anon, authenticated;
grant all on app.workers, app.scheduled_runs to service_role;
grant usage on schema pgmq to service_role;
grant select, insert, update, delete on all tables in schema pgmq to service_role;
grant usage, select on all sequences in schema pgmq to service_role;
grant execute on all functions in schema pgmq to service_role;
