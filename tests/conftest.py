"""The test harness: one PostgreSQL cluster per run, a template database with compat + migrations
applied once, a fresh copy per test, and callers that run SQL exactly as PostgREST would."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from brigade.auth import Claims
from brigade.localdb import CLUSTER_USER, Cluster
from brigade.migrate import migrate
from brigade.settings import Settings
from tests import clock as test_clock
from tests.clock import Instant, instants, real_now, shifted_clock, venue_zone

TEMPLATE_DB = "brigade_template"
pytest_plugins = ["tests.ordering_fixtures"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """tmp_path on the memory file system too (fast_scratch): the tests that start `brigade up`, workers or
    a cluster of their own write it there. One directory per run, made by the controller (xdist gives each
    worker a folder of it), removed at the end; an explicit --basetemp wins."""
    if config.option.basetemp or hasattr(config, "workerinput"):
        return
    scratch = fast_scratch()
    if scratch:
        config.option.basetemp = tempfile.mkdtemp(prefix="brigade-pytest-", dir=scratch)
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With BRIGADE_TEST_NOW set, every test runs once per instant (see tests/clock.py)."""
    found = instants()
    if found and "pinned_clock" in metafunc.fixturenames:
        metafunc.parametrize("pinned_clock", found, ids=[i.label for i in found], indirect=True, scope="function")


@pytest.fixture(autouse=True)
def pinned_clock(request: pytest.FixtureRequest) -> Iterator[Instant | None]:
    """Starts the test at its instant when the run shifts the clock; the wall clock otherwise."""
    instant: Instant | None = getattr(request, "param", None)
    clock = shifted_clock()
    if instant is None or clock is None:
        yield None
        return
    clock.set_offset((instant.at - real_now()).total_seconds())
    traveller = time_machine.travel(instant.at, tick=True)
    traveller.start()
    test_clock.current = instant
    try:
        yield instant
    finally:
        test_clock.current = None
        traveller.stop()
        clock.set_offset(0.0)


def sqlstate(fn: Any) -> str | None:
    """The SQLSTATE fn raised, or None when it ran through (tests match codes, not text)."""
    try:
        fn()
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_scratch() -> str | None:
    """Where the test clusters live: a memory file system when the machine has one with room
    (BRIGADE_TEST_SCRATCH overrides). On this machine's ext4 disk a template copy cost 0.42 s of CPU,
    mostly the kernel creating and writing its 900 files; on /dev/shm 0.05 s."""
    chosen = os.environ.get("BRIGADE_TEST_SCRATCH")
    if chosen:
        return chosen
    shm = Path("/dev/shm")
    try:
        usage = shutil.disk_usage(shm)
    except OSError:
        return None
    return str(shm) if os.access(shm, os.W_OK) and usage.free > 4 * 2**30 else None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway cluster (fsync off) owned by the unprivileged postgres user when we are root."""
    base = Path(tempfile.mkdtemp(prefix="brigade-test-", dir=fast_scratch()))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(CLUSTER_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    clock = shifted_clock()
    cluster = Cluster(base / "pg", free_port(), {
        "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "300",
        "max_wal_size": "'256MB'", "min_wal_size": "'32MB'",  # the WAL may live in memory (fast_scratch)
    }, env=clock.env(long_lived=True) if clock else {})
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(base, ignore_errors=True)


def _dsn(cluster: Cluster, dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{dbname}"


class DatabaseSupply:
    """Fresh copies of the template: AHEAD of them are always being made in a background thread while tests run,
    and used ones are dropped there too, so a test waits for neither. FILE_COPY clones the template's files
    (PostgreSQL 15's default, WAL_LOG, copies it block by block through the WAL: about twice the time here)."""

    AHEAD = 2

    def __init__(self, cluster: Cluster, template: str) -> None:
        self.admin = _dsn(cluster, "postgres")
        self.template = template
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self.ahead: deque[Future[str]] = deque(self.executor.submit(self._create) for _ in range(self.AHEAD))

    def _create(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(sql.SQL("create database {} template {} strategy = file_copy").format(
                sql.Identifier(name), sql.Identifier(self.template)))
        return name

    def _drop(self, name: str) -> None:
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    def take(self) -> str:
        name = self.ahead.popleft().result()
        self.ahead.append(self.executor.submit(self._create))
        return name

    def give_back(self, name: str) -> None:
        self.executor.submit(self._drop, name)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)  # copies not yet begun are not needed: the cluster goes


@pytest.fixture(scope="session")
def template_db(pg_cluster: Cluster) -> Iterator[str]:
    """The template database: sql/compat, pgmq and every migration, applied once per run (per xdist worker)."""
    with psycopg.connect(_dsn(pg_cluster, "postgres"), autocommit=True) as c:
        c.execute(sql.SQL("create database {}").format(sql.Identifier(TEMPLATE_DB)))
    migrate(_dsn(pg_cluster, TEMPLATE_DB), compat=True, seed=False)
    with psycopg.connect(_dsn(pg_cluster, "postgres"), autocommit=True) as c:
        c.execute("update pg_database set datistemplate = true where datname = %s", (TEMPLATE_DB,))
    yield TEMPLATE_DB


@pytest.fixture(scope="session")
def database_supply(pg_cluster: Cluster, template_db: str) -> Iterator[DatabaseSupply]:
    supply = DatabaseSupply(pg_cluster, template_db)
    yield supply
    supply.close()


@pytest.fixture
def db_dsn(pg_cluster: Cluster, database_supply: DatabaseSupply) -> Iterator[str]:
    """A fresh copy of the template for this test (committed data and NOTIFY behave as in production)."""
    name = database_supply.take()
    yield _dsn(pg_cluster, name)
    database_supply.give_back(name)


@pytest.fixture
def settings(db_dsn: str, tmp_path: Path) -> Settings:
    """Settings pointed at this test's database, with fast worker timings."""
    return Settings(database_url=db_dsn, data_dir=tmp_path, worker_poll_interval=0.5, worker_backoff_base=0.05,
                    worker_backoff_max=1.0, worker_visibility_timeout=5, worker_heartbeat_interval=0.5,
                    functions_port=free_port())


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A superuser connection to this test's database (setup and checks, not what callers see)."""
    with psycopg.connect(db_dsn, row_factory=dict_row, autocommit=True) as c:
        yield c


class Api:
    """Runs SQL the way PostgREST runs a request: one transaction, `role` and `request.jwt.claims`
    set locally first, committed at the end (rolled back on error). Like PostgREST, it keeps its
    connections open between requests (a pool: a nested or concurrent request gets a connection of its
    own), since opening one per request was most of what the table-by-table walks spent."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> ConnectionPool[psycopg.Connection[dict[str, Any]]]:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(self.dsn, min_size=1, max_size=250, open=True, name="test-api",
                                            kwargs={"row_factory": dict_row}, connection_class=psycopg.Connection[dict[str, Any]])
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    @contextmanager
    def session(self, claims: Claims) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self.pool.connection() as c:
            with c.transaction():
                c.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                          (claims.role, json.dumps(claims.as_dict())))
                yield c

    def run(self, claims: Claims, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self.session(claims) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def rowcount(self, claims: Claims, sql: str, params: Any = None) -> int:
        with self.session(claims) as c:
            return c.execute(sql, params).rowcount


@pytest.fixture
def api(db_dsn: str) -> Iterator[Api]:
    caller = Api(db_dsn)
    yield caller
    caller.close()


OPERATOR = Claims.user("00000000-0000-4000-8000-0000000000ff", email="operator@brigade.test", app_role="platform_admin")


@dataclass
class Tenant:
    """A business built by the factory, with a user per role and two venues."""

    business_id: uuid.UUID
    venues: list[uuid.UUID]
    users: dict[str, uuid.UUID]

    def claims(self, role: str) -> Claims:
        return Claims.user(self.users[role], email=f"{role}@{self.business_id}.test")


class Factory:
    """Builds tenant rows as the service (superuser connection), the way onboarding would."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.conn = conn
        conn.execute("select set_config('request.jwt.claims', %s, false)", (json.dumps(Claims.service().as_dict()),))

    def user(self, email: str | None = None, app_role: str | None = None) -> uuid.UUID:
        meta = {"provider": "email", **({"app_role": app_role} if app_role else {})}
        row = self.conn.execute(
            "insert into auth.users (email, raw_app_meta_data) values (%s, %s) returning id",
            (email or f"{uuid.uuid4().hex[:10]}@example.test", json.dumps(meta)),
        ).fetchone()
        assert row is not None
        return row["id"]

    def business(self, name: str = "Test Bistro", modules: dict[str, bool] | None = None) -> uuid.UUID:
        slug = f"b-{uuid.uuid4().hex[:10]}"
        row = self.conn.execute(
            "insert into public.businesses (name, slug, modules_json, time_zone) values (%s, %s, %s, coalesce(%s, 'UTC')) returning id",
            (name, slug, json.dumps(modules if modules is not None else {"ordering": True}), venue_zone()),
        ).fetchone()
        assert row is not None
        return row["id"]

    def venue(self, business_id: uuid.UUID, name: str = "Main", published: bool = True) -> uuid.UUID:
        row = self.conn.execute(
            "insert into public.venues (business_id, name, slug, is_published, time_zone) values (%s, %s, %s, %s, coalesce(%s, 'UTC')) "
            "returning id",
            (business_id, name, f"v-{uuid.uuid4().hex[:8]}", published, venue_zone()),
        ).fetchone()
        assert row is not None
        return row["id"]

    def member(self, business_id: uuid.UUID, user_id: uuid.UUID, role: str, venues: list[uuid.UUID] | None = None) -> uuid.UUID:
        row = self.conn.execute(
            "insert into public.memberships (business_id, user_id, role) values (%s, %s, %s) returning id",
            (business_id, user_id, role),
        ).fetchone()
        assert row is not None
        for venue_id in venues or []:
            self.conn.execute(
                "insert into public.membership_venues (business_id, membership_id, venue_id) values (%s, %s, %s)",
                (business_id, row["id"], venue_id),
            )
        return row["id"]

    def tenant(self, name: str = "Test Bistro", modules: dict[str, bool] | None = None) -> Tenant:
        """A business with venues [published, unpublished] and owner, manager, staff (first venue only), driver."""
        business_id = self.business(name, modules)
        venues = [self.venue(business_id, "Main", True), self.venue(business_id, "Back room", False)]
        users: dict[str, uuid.UUID] = {}
        for role in ("owner", "manager", "staff", "driver"):
            users[role] = self.user(f"{role}-{uuid.uuid4().hex[:6]}@example.test")
            self.member(business_id, users[role], role, venues[:1] if role == "staff" else None)
        return Tenant(business_id, venues, users)


@pytest.fixture
def factory(conn: psycopg.Connection[dict[str, Any]]) -> Factory:
    return Factory(conn)


@pytest.fixture
def operator(conn: psycopg.Connection[dict[str, Any]]) -> Claims:
    """The platform operator: a real auth user whose JWT carries app_metadata.app_role."""
    conn.execute("insert into auth.users (id, email, raw_app_meta_data) values (%s, %s, %s) on conflict do nothing",
                 (OPERATOR.sub, OPERATOR.email, json.dumps(OPERATOR.app_metadata)))
    return OPERATOR


class ServerThread:
    """Serves an ASGI app with uvicorn on a pre-bound 127.0.0.1 socket, in a thread of its own.

    The socket listens before the thread starts, so clients connect at once (the kernel queues them
    until uvicorn accepts) and nothing waits for a start-up signal.
    """

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def functions_server(settings: Settings) -> Iterator[ServerThread]:
    """The real functions app over HTTP on 127.0.0.1, against this test's database."""
    from functions.app import create_app

    with ServerThread(create_app(settings)) as server:
        yield server


@pytest.fixture
def fake_http() -> Iterator[Any]:
    """A programmable fake of an outside HTTP API on 127.0.0.1 (see tests/fakes/http.py)."""
    from tests.fakes.http import FakeServer

    with FakeServer() as server:
        yield server
