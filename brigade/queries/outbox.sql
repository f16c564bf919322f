-- read_events --
-- Lease up to %(qty)s ready events for %(vt)s seconds (pgmq: FOR UPDATE SKIP LOCKED).
select msg_id, read_ct, enqueued_at, message
from pgmq.read('brigade_events', %(vt)s, %(qty)s)

-- ack_event --
-- Delete a handled event; false when another copy already did (our lease ran out).
select pgmq.delete('brigade_events', %(msg_id)s::bigint) as deleted

-- retry_event_later --
-- Push a failed event's visibility out by the backoff, rounded up to whole seconds: the seconds form is the only set_vt hosted pgmq (1.4.4, 1.5.1) has.
select msg_id from pgmq.set_vt('brigade_events', %(msg_id)s::bigint, ceil(%(delay)s::double precision)::integer)

-- bury_event --
-- Move an event that exhausted its attempts to the dead-letter queue.
select app.bury_event(%(msg_id)s, %(error)s) as dead_id

-- next_event_in --
-- Seconds until the next event becomes visible; null when the queue is empty (uses the vt index).
select extract(epoch from min(vt) - clock_timestamp())::double precision as seconds
from pgmq.q_brigade_events

-- outbox_stats --
-- Ready, invisible (leased or delayed) and dead events.
select ready, invisible, dead, oldest_ready_age_seconds from app.outbox_stats()

-- emit_event --
-- Emit one event (service side).
select app.emit(%(topic)s, %(business_id)s, %(payload)s, %(delay)s) as msg_id

-- list_dead_events --
-- Dead events, newest first.
select dead_id, topic, business_id, attempts, error, failed_at, event from app.list_dead_events(%(limit)s)

-- replay_dead_event --
-- Put a dead event back on the outbox.
select app.replay_dead_event(%(dead_id)s) as msg_id
