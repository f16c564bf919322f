"""Scheduled jobs: APScheduler fires them in every worker copy; a claim in the database picks one.

APScheduler 3 cannot share a job store between processes, so each run is claimed by inserting
(job, scheduled time) into app.scheduled_runs; only the copy whose insert wins runs the job.
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from brigade import queries
from worker.registry import Job, Registry, Resources

log = logging.getLogger("brigade.worker.scheduler")


def trigger_for(job: Job) -> CronTrigger:
    fields = job.cron.split()
    if len(fields) == 6:
        second, minute, hour, day, month, dow = fields
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=timezone.utc)
    return CronTrigger.from_crontab(job.cron, timezone=timezone.utc)


def tick_of(job: Job, now: datetime) -> datetime:
    """The scheduled time a firing belongs to: now floored to the job's resolution (APScheduler never
    fires early, so every copy floors to the same tick)."""
    step = job.resolution_seconds
    return datetime.fromtimestamp(int(now.timestamp()) // step * step, timezone.utc)


class Scheduler:
    def __init__(self, resources: Resources, registry: Registry) -> None:
        self.resources = resources
        self.pool = resources.pool
        self.registry = registry
        self.worker_id = resources.worker_id
        self.log = logging.LoggerAdapter(log, {"worker_id": resources.worker_id})
        self._aps = AsyncIOScheduler(timezone=timezone.utc)

    async def run_claimed(self, job: Job, scheduled_for: datetime) -> bool:
        """Run the job for this tick if this copy wins the claim; True when it ran here."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(queries.get("claim_run"), {
                "job": job.name, "scheduled_for": scheduled_for, "worker_id": self.worker_id})).fetchone()
            await conn.commit()
        if not row or not row["won"]:
            return False
        status, error = "succeeded", None
        try:
            async with self.pool.connection() as conn:
                async with conn.transaction():
                    await job.fn(self.resources.context(conn, self.log))
        except Exception as exc:  # the job's failure is recorded, the scheduler goes on
            status, error = "failed", "".join(traceback.format_exception_only(exc)).strip()
            self.log.error("scheduled job failed", extra={"action": "job_failed", "job": job.name, "error": error})
        async with self.pool.connection() as conn:
            await conn.execute(queries.get("finish_run"), {
                "job": job.name, "scheduled_for": scheduled_for, "status": status, "error": error})
            await conn.commit()
        self.log.info("scheduled job ran", extra={"action": "job_ran", "job": job.name, "status": status,
                                                  "scheduled_for": scheduled_for.isoformat()})
        return True

    async def _fire(self, job: Job) -> None:
        await self.run_claimed(job, tick_of(job, datetime.now(timezone.utc)))

    def start(self) -> None:
        for job in self.registry.jobs.values():
            self._aps.add_job(self._fire, trigger_for(job), args=[job], id=job.name, coalesce=True,
                              misfire_grace_time=max(1, job.resolution_seconds // 2), max_instances=1)
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
