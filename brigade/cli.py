"""The `brigade` command: up, db (start/stop/migrate/reset), serve, worker, events, jwt.

`serve`, `worker` and `up` start the functions app and the worker by import path (as uvicorn is told
what to serve), so the shared package never imports them and the layers stay independent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import signal
import sys
from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row

from brigade import auth, logs, queries
from brigade.auth import Claims
from brigade.localdb import Cluster
from brigade.migrate import migrate
from brigade.settings import Settings, get_settings

APP_FACTORY = "functions.app:create_app"
WORKER_RUN = "worker.main:run"

DEMO_BUSINESS_ID = "00000000-0000-4000-8000-000000000001"
DEMO_USERS = {
    "owner": ("00000000-0000-4000-8000-00000000a001", "owner@demo-cafe.test", None),
    "manager": ("00000000-0000-4000-8000-00000000a002", "manager@demo-cafe.test", None),
    "staff (Downtown only)": ("00000000-0000-4000-8000-00000000a003", "staff@demo-cafe.test", None),
    "driver": ("00000000-0000-4000-8000-00000000a004", "driver@demo-cafe.test", None),
    "platform operator": ("00000000-0000-4000-8000-00000000a0ff", "operator@brigade.test", auth.PLATFORM_ADMIN),
}


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def cluster_for(settings: Settings) -> Cluster:
    return Cluster(settings.data_dir / "pg", settings.db_port)


def ensure_database(settings: Settings, *, seed: bool) -> Cluster | None:
    """Start the embedded cluster (unless DATABASE_URL is set) and migrate; returns the cluster started."""
    cluster = None
    if settings.embedded:
        cluster = cluster_for(settings)
        cluster.start()
    migrate(settings.dsn, compat=settings.embedded, seed=seed, pgmq_version=settings.pgmq_version)
    return cluster


def banner(settings: Settings) -> str:
    secret = settings.jwt_secret
    lines = [
        "",
        "Brigade is running",
        f"  database    {settings.dsn}" + ("  (embedded, data in " + str(settings.data_dir / "pg") + ")" if settings.embedded else ""),
        f"  functions   {settings.functions_url}   (health: {settings.functions_url}/health, docs: {settings.functions_url}/docs)",
        "  worker      consuming brigade_events; sends go to the log providers",
        f"  demo        business {DEMO_BUSINESS_ID} (Demo Café: venues Downtown and Harbour)",
        "",
        "Local JWTs (signed with the local secret; Authorization: Bearer <token>):",
        f"  anon                   {auth.sign(Claims.anon(), secret, expires_in=30 * 86400)}",
        f"  service_role           {auth.sign(Claims.service(), secret, expires_in=30 * 86400)}",
    ]
    for label, (uid, email, app_role) in DEMO_USERS.items():
        token = auth.sign(Claims.user(uid, email=email, app_role=app_role), secret, expires_in=30 * 86400)
        lines.append(f"  {label:<22} {token}")
    lines += [
        "",
        "Try: the whole order flow on the demo business, in another terminal:",
        "  .venv/bin/brigade demo",
        "A delivery offered to the seeded driver, timing out, booked with a courier network:",
        "  .venv/bin/brigade demo dispatch",
        "",
        "Or switch the CRM module off for the demo business, as the operator:",
        f"  curl -X PUT {settings.functions_url}/admin/businesses/{DEMO_BUSINESS_ID}/modules/crm \\",
        "       -H 'Authorization: Bearer <platform operator token>' -H 'content-type: application/json' -d '{\"enabled\": false}'",
        "",
        "Ctrl-C stops everything; the next run reuses the cluster and its data.",
    ]
    return "\n".join(lines)


async def _up(settings: Settings) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # signals are ours: one Ctrl-C stops all parts
            yield

    stop = asyncio.Event()
    config = uvicorn.Config(APP_FACTORY, factory=True, host=settings.functions_host, port=settings.functions_port,
                            log_config=None, lifespan="on")
    server = Server(config)

    def shutdown() -> None:
        stop.set()
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown)
    worker_run = _resolve(WORKER_RUN)
    serve_task = asyncio.create_task(server.serve())
    worker_task = asyncio.create_task(worker_run(settings, stop=stop))
    while not server.started and not serve_task.done():
        await asyncio.sleep(0.05)
    if server.started:
        print(banner(settings), flush=True)
    await asyncio.wait({serve_task, worker_task}, return_when=asyncio.FIRST_COMPLETED)
    shutdown()
    await asyncio.gather(serve_task, worker_task, return_exceptions=True)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    cluster = ensure_database(settings, seed=True)
    try:
        asyncio.run(_up(settings))
    finally:
        if cluster is not None:
            cluster.stop()
            print("stopped the embedded PostgreSQL cluster", file=sys.stderr)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "start":
        if not settings.embedded:
            print("DATABASE_URL is set: there is no embedded cluster to start", file=sys.stderr)
            return 2
        cluster_for(settings).start()
        print(settings.dsn)
    elif args.db_command == "stop":
        cluster_for(settings).stop()
    elif args.db_command == "migrate":
        if settings.embedded:
            cluster_for(settings).start()
        done = migrate(settings.dsn, compat=settings.embedded or args.compat, seed=args.seed,
                       pgmq_version=settings.pgmq_version)
        print(f"applied {len(done)} migration(s): {', '.join(done) or 'none pending'}")
    elif args.db_command == "reset":
        if not settings.embedded:
            print("refusing to reset a database given by DATABASE_URL; use `supabase db reset` for a project",
                  file=sys.stderr)
            return 2
        cluster = cluster_for(settings)
        cluster.destroy()
        cluster.start()
        done = migrate(settings.dsn, compat=True, seed=not args.no_seed, pgmq_version=settings.pgmq_version)
        print(f"reset: applied {len(done)} migration(s)")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    uvicorn.run(APP_FACTORY, factory=True, host=args.host or settings.functions_host,
                port=args.port or settings.functions_port, log_config=None)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    consumer = asyncio.run(_resolve(WORKER_RUN)(settings, drain=args.drain, schedule=not args.no_schedule))
    if args.drain:
        print(json.dumps({"handled": consumer.handled, "failed": consumer.failed}))
    return 0


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    with psycopg.connect(settings.dsn, row_factory=dict_row) as conn:
        conn.execute("select set_config('request.jwt.claims', %s, false)", (json.dumps(Claims.service().as_dict()),))
        if args.events_command == "dead":
            rows = conn.execute(queries.get("list_dead_events"), {"limit": args.limit}).fetchall()
            print(json.dumps(rows, default=str, indent=2))
        elif args.events_command == "replay":
            row = conn.execute(queries.get("replay_dead_event"), {"dead_id": args.dead_id}).fetchone()
            print(json.dumps({"replayed": args.dead_id, "msg_id": row and row["msg_id"]}))
        elif args.events_command == "stats":
            print(json.dumps(conn.execute(queries.get("outbox_stats")).fetchone(), default=str))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "what", "order") == "dispatch":
        from brigade import demo_dispatch

        return demo_dispatch.run(settings)
    from brigade import demo

    if getattr(args, "bookings", False) or getattr(args, "what", "order") == "bookings":
        from brigade import demo_bookings

        return demo_bookings.run(settings)
    return demo.run(settings, locale=getattr(args, "locale", None))


def cmd_voice_demo(args: argparse.Namespace, settings: Settings) -> int:
    from brigade.voice import demo as voice_demo

    return voice_demo.run(settings)


def cmd_operator_demo(args: argparse.Namespace, settings: Settings) -> int:
    from brigade import operator_demo

    return operator_demo.main(settings)


def cmd_jwt(args: argparse.Namespace, settings: Settings) -> int:
    if args.role == "authenticated":
        if not args.sub:
            print("--sub is required for an authenticated token", file=sys.stderr)
            return 2
        claims = Claims.user(args.sub, email=args.email, app_role=args.app_role)
    else:
        claims = Claims(role=args.role)
    print(auth.sign(claims, settings.jwt_secret, expires_in=args.expires_in))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brigade", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run everything locally: database, functions, worker, demo business")

    db = sub.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    db.add_parser("start", help="start the embedded cluster")
    db.add_parser("stop", help="stop the embedded cluster")
    m = db.add_parser("migrate", help="apply pending migrations")
    m.add_argument("--seed", action="store_true", help="also load supabase/seed.sql")
    m.add_argument("--compat", action="store_true", help="apply sql/compat to a plain PostgreSQL given by DATABASE_URL")
    r = db.add_parser("reset", help="delete the embedded cluster and rebuild it")
    r.add_argument("--no-seed", action="store_true")

    s = sub.add_parser("serve", help="run the functions app")
    s.add_argument("--host")
    s.add_argument("--port", type=int)

    w = sub.add_parser("worker", help="run a worker copy")
    w.add_argument("--drain", action="store_true", help="exit when the outbox is empty")
    w.add_argument("--no-schedule", action="store_true", help="do not run scheduled jobs")

    e = sub.add_parser("events", help="the outbox").add_subparsers(dest="events_command", required=True)
    d = e.add_parser("dead", help="list dead events")
    d.add_argument("--limit", type=int, default=100)
    rp = e.add_parser("replay", help="put a dead event back on the outbox")
    rp.add_argument("dead_id", type=int)
    e.add_parser("stats", help="outbox depth")

    d = sub.add_parser("demo", help="drive one order through the running local stack (start it with `brigade up`)")
    d.add_argument("what", nargs="?", choices=["order", "dispatch", "bookings"], default="order",
                   help="order: the pickup order flow and the win-back; dispatch: a delivery offered, timed out, booked with "
                        "a courier network; bookings: one booking of the demo's class")
    d.add_argument("--bookings", action="store_true", help="the same as `demo bookings`")
    d.add_argument("--locale", default=None, help="the demo customers' language (en, fr, bg): their messages come in it")
    sub.add_parser("voice-demo", help="one phone order by voice against the running local stack (signed like Twilio)")
    sub.add_parser("operator-demo", help="a new business from nothing to a live storefront taking a paid order (docs/operator-walkthrough.md)")

    j = sub.add_parser("jwt", help="sign a local JWT")
    j.add_argument("--role", choices=["anon", "authenticated", "service_role"], default="authenticated")
    j.add_argument("--sub")
    j.add_argument("--email")
    j.add_argument("--app-role", dest="app_role")
    j.add_argument("--expires-in", type=int, default=3600)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    logs.configure(settings.log_format)
    handlers = {"up": cmd_up, "db": cmd_db, "serve": cmd_serve, "worker": cmd_worker, "events": cmd_events, "jwt": cmd_jwt,
                "demo": cmd_demo, "voice-demo": cmd_voice_demo, "operator-demo": cmd_operator_demo}
    return handlers[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
