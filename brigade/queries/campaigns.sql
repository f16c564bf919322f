-- claim_marketing_send --
-- The send-time decision for one marketing send (locks the row; see app.claim_marketing_send).
select app.claim_marketing_send(%(business_id)s, %(send_id)s) as claim

-- complete_marketing_send --
-- Records a claimed send's outcome and opens its attribution window.
select app.complete_marketing_send(%(business_id)s, %(send_id)s, %(recipient)s, %(template)s, %(provider)s, %(message_id)s,
                                   %(cost)s, %(error)s)

-- launch_campaign --
-- A scheduled campaign's segment becomes sends.
select app.launch_campaign(%(business_id)s, %(campaign_id)s) as recipients

-- evaluate_dormant_automations --
-- Every active dormant-N-days automation, set-based.
select app.evaluate_dormant_automations(null) as sends

-- sms_opt --
-- An inbound STOP (false) or START (true) from a phone number.
select app.sms_opt(%(phone)s, %(opt_in)s) as customers

-- record_delivery_status --
-- A provider's delivery report for a message it sent.
select app.record_delivery_status(%(provider)s, %(message_id)s, %(status)s) as updated
