-- receipt --
-- The receipt of a paid order or booking as the caller may see it (app.receipt: PT404 otherwise).
select public.get_receipt(%(kind)s, %(id)s, %(token)s) as receipt

-- apply_retention --
-- The nightly retention run (app.apply_retention): rows touched per policy.
select app.apply_retention(now()) as result

-- record_function_stats --
-- Add a flush of the functions' per-minute request counts.
select app.record_function_stats(%(rows)s::jsonb) as n

-- record_handler_stat --
-- Count one handled event (in the event's transaction).
select app.record_handler_stat(%(topic)s, %(outcome)s, %(ms)s)

-- worker_metrics --
-- The worker's and the outbox's figures for the Prometheus exposition.
select app.worker_metrics() as stats

-- metrics --
-- The essential metrics of a business (or the platform) over a window.
select public.get_metrics(%(business_id)s::uuid, %(from)s::timestamptz, %(to)s::timestamptz) as metrics

-- evaluate_alerts --
-- One evaluation of the alert rules: the notifications to send.
select app.evaluate_alerts(now()) as alerts

-- list_alerts --
-- The operator's alerts (open only, or all).
select app.list_alerts(%(open)s, %(limit)s) as alerts

-- acknowledge_alert --
-- The operator acknowledges an alert.
select app.acknowledge_alert(%(id)s) as alert
