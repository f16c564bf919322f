-- heartbeat --
-- Record that a worker copy is alive, with its counters.
insert into app.workers (id, hostname, pid, handled_count, failed_count)
values (%(id)s, %(hostname)s, %(pid)s, %(handled)s, %(failed)s)
on conflict (id) do update
set last_seen_at = now(), handled_count = excluded.handled_count, failed_count = excluded.failed_count

-- remove_worker --
-- A worker copy stopping cleanly.
delete from app.workers where id = %(id)s

-- list_workers --
-- Worker copies and when they were last seen.
select id, hostname, pid, started_at, last_seen_at, handled_count, failed_count,
       extract(epoch from now() - last_seen_at)::double precision as seconds_since_seen
from app.workers order by started_at

-- claim_run --
-- Claim one run of a scheduled job; true only for the copy that wins.
select app.claim_scheduled_run(%(job)s, %(scheduled_for)s, %(worker_id)s) as won

-- finish_run --
-- Record how a claimed run ended.
update app.scheduled_runs
set finished_at = now(), status = %(status)s, error = %(error)s
where job_name = %(job)s and scheduled_for = %(scheduled_for)s

-- prune_runs --
-- Forget scheduled-run claims older than the retention.
delete from app.scheduled_runs where scheduled_for < now() - make_interval(days => %(days)s)

-- prune_workers --
-- Forget worker copies not seen for an hour.
delete from app.workers where last_seen_at < now() - interval '1 hour'

-- prune_rate_limit_hits --
-- Forget rate-limit hits older than their limit's window.
select app.prune_rate_limit_hits() as pruned
