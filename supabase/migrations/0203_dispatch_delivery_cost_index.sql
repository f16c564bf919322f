-- The payout computation (app.compute_payout, 0053) asks app.order_delivery_cost(order_id) once per
-- delivery order of the period, and that function filters deliveries by order_id alone: with only the
-- (business_id, order_id) key each call scanned every delivery of the platform, so a month of payouts
-- grew with the square of the platform's deliveries (bench/payouts.py, issue 23). An index on order_id
-- makes each call one probe.

-- section indexes
create index deliveries_order_idx on public.deliveries (order_id);
