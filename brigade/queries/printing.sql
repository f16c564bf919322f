-- printer_poll --
-- A printer checks in with its device token: the printer and the job it should print next (or none).
select app.printer_poll(%(token)s, %(status)s, %(address)s) as r

-- printer_take_job --
-- The printer downloads a job (the given one or its next) and it becomes sent; null when none.
select app.printer_take_job(%(token)s, %(job_id)s) as r

-- printer_finish_job --
-- The printer's verdict on a job: printed, retry (printer problem) or failed (data problem).
select app.printer_finish_job(%(token)s, %(job_id)s, %(outcome)s, %(code)s) as changed
