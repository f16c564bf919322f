"""Handlers per topic and scheduled jobs, registered with decorators at import time."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from brigade.events import Event
from brigade.providers import Providers
from brigade.settings import Settings


@dataclass
class Context:
    """What a handler or job gets: the transaction its work commits in, the pool, the settings.

    For a handler, `conn` is inside the transaction that also acknowledges the event: database
    effects and the acknowledgement commit together, or not at all.
    """

    conn: psycopg.AsyncConnection[Any]
    pool: AsyncConnectionPool
    settings: Settings
    log: logging.LoggerAdapter[logging.Logger]
    worker_id: str
    providers: Providers


@dataclass
class Resources:
    """What the consumer and the scheduler of one worker copy share."""

    pool: AsyncConnectionPool
    settings: Settings
    providers: Providers
    worker_id: str

    @classmethod
    def build(cls, pool: AsyncConnectionPool, settings: Settings, worker_id: str) -> "Resources":
        return cls(pool, settings, Providers.from_settings(settings), worker_id)

    def context(self, conn: psycopg.AsyncConnection[Any], log: logging.LoggerAdapter[logging.Logger]) -> Context:
        return Context(conn, self.pool, self.settings, log, self.worker_id, self.providers)


Handler = Callable[[Event, Context], Awaitable[None]]
JobFn = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    """A scheduled job: cron in UTC (5 fields, or 6 with seconds first)."""

    name: str
    cron: str
    fn: JobFn

    @property
    def resolution_seconds(self) -> int:
        return 1 if len(self.cron.split()) == 6 else 60


@dataclass
class Registry:
    handlers: dict[str, Handler] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)

    def on(self, topic: str) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine as the handler of a topic."""

        def decorate(fn: Handler) -> Handler:
            if topic in self.handlers and self.handlers[topic] is not fn:
                raise ValueError(f"topic {topic!r} already has a handler")
            self.handlers[topic] = fn
            return fn

        return decorate

    def scheduled(self, name: str, cron: str) -> Callable[[JobFn], JobFn]:
        """Register the decorated coroutine as a job run once per cron tick across worker copies."""

        def decorate(fn: JobFn) -> JobFn:
            if len(cron.split()) not in (5, 6):
                raise ValueError(f"job {name!r}: cron {cron!r} needs 5 or 6 fields")
            self.jobs[name] = Job(name, cron, fn)
            return fn

        return decorate


registry = Registry()


def load_plugins(modules: list[str]) -> None:
    """Import the built-in handlers and any extra modules that register into `registry`."""
    importlib.import_module("worker.handlers")
    for module in modules:
        importlib.import_module(module)
