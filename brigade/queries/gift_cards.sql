-- gift_card_business --
-- The business of a gift card being bought (for the checkout rate limits' staff allow-list), or nothing.
select business_id from public.gift_cards where id = %(gift_card_id)s

-- gift_card_context --
-- What the checkout function needs to sell a pending gift card (the caller's access token checked).
select app.gift_card_checkout_context(%(gift_card_id)s, %(access_token)s) as ctx

-- attach_gift_card_session --
-- Records the Checkout Session created for a pending gift card.
select app.attach_gift_card_checkout_session(%(gift_card_id)s, %(session_id)s, %(url)s, %(expires_at)s)

-- apply_gift_card --
-- Pays (part of) an order with a gift card code, as the caller (the placer's token or venue staff).
select public.apply_gift_card(%(order_id)s, %(access_token)s, %(code)s) as r

-- apply_gift_card_to_booking --
-- Pays (part of) a held booking's deposit with a gift card code, as the caller (the booker's token or venue staff).
select public.apply_gift_card_to_booking(%(booking_id)s, %(access_token)s, %(code)s) as r

-- gift_card_pending_email --
-- The gift card's email still to send (its notification_log row), with what the message says.
select n.id, n.recipient, g.initial_cents, g.currency, g.expires_at, g.recipient_name, g.purchaser_name, g.message, b.name as business_name
from public.notification_log n
join public.gift_cards g on g.business_id = n.business_id and g.id = %(gift_card_id)s
join public.businesses b on b.id = n.business_id
where n.business_id = %(business_id)s and n.event_key = 'gift_card.issued:' || %(gift_card_id)s and n.status = 'pending'

-- expire_gift_cards --
-- The nightly gift-card pass: expire what is past its date, give back holds of orders left unpaid.
select app.expire_gift_cards() as r
