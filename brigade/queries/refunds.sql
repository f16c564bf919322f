-- refund_stripe_account --
-- The connected Stripe account an order's business takes payments on (null for platform charges).
select b.stripe_account_id from public.businesses b where b.id = %(business_id)s

-- order_automatic_refund --
-- The refund a cancelled order holding money is owed (created once); null when there is nothing to send.
select app.request_automatic_refund(%(business_id)s, %(order_id)s) as r

-- order_record_refund --
-- What Stripe answered about an order refund (applies it when it succeeded).
select app.record_refund(%(business_id)s, %(order_id)s, %(refund_id)s, %(provider_refund_id)s, %(status)s,
                         %(amount_cents)s, %(failure)s) as id
