"""`brigade up` (what `make run` runs) from nothing: embedded cluster, migrations, seed, functions and
worker; Ctrl-C stops all of it; a second run reuses the cluster and its data."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brigade.localdb import CLUSTER_USER, Cluster
from brigade.settings import PROJECT_ROOT
from tests.clock import clock_env
from tests.conftest import free_port

DEMO = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="brigade-up-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(CLUSTER_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def local_env(data_dir: Path, db_port: int, fn_port: int) -> dict[str, str]:
    env = {**os.environ, "BRIGADE_DATA_DIR": str(data_dir), "BRIGADE_DB_PORT": str(db_port),
           "BRIGADE_FUNCTIONS_PORT": str(fn_port), "PYTHONPATH": str(PROJECT_ROOT), **clock_env()}
    env.pop("DATABASE_URL", None)
    env.pop("BRIGADE_DATABASE_URL", None)
    return env


class Up:
    def __init__(self, data_dir: Path, db_port: int, fn_port: int) -> None:
        env = local_env(data_dir, db_port, fn_port)
        self.proc = subprocess.Popen([sys.executable, "-m", "brigade", "up"], cwd=PROJECT_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.banner: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # blocks until the banner is printed (or the process dies)
            self.banner.append(line)
            if line.startswith("Ctrl-C stops everything"):
                break
        assert self.banner and self.banner[-1].startswith("Ctrl-C"), "".join(self.banner)

    def token(self, label: str) -> str:
        for line in self.banner:
            match = re.match(rf"\s+{re.escape(label)}\s+(\S+\.\S+\.\S+)$", line)
            if match:
                return match.group(1)
        raise AssertionError(f"no {label} token in the banner")

    def stop(self) -> int:
        """Ctrl-C, and the exit code; a process that does not stop in time is killed (and fails)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return -9
        finally:
            assert self.proc.stdout is not None
            self.proc.stdout.close()


def test_up_runs_everything_and_a_second_run_reuses_the_data(data_dir: Path) -> None:
    db_port, fn_port = free_port(), free_port()
    base = f"http://127.0.0.1:{fn_port}/functions/v1"
    cluster = Cluster(data_dir / "pg", db_port)
    try:
        first = Up(data_dir, db_port, fn_port)
        try:
            assert any(DEMO in line for line in first.banner)
            assert httpx.get(f"{base}/health").json()["database"] == "up"
            operator = {"authorization": f"Bearer {first.token('platform operator')}"}
            r = httpx.put(f"{base}/admin/businesses/{DEMO}/modules/voice", json={"enabled": False}, headers=operator)
            assert r.status_code == 200 and r.json()["modules"]["voice"] is False
            demo = subprocess.run([sys.executable, "-m", "brigade", "demo"], cwd=PROJECT_ROOT, env=local_env(data_dir, db_port, fn_port),
                                  capture_output=True, text=True, timeout=120)
            assert demo.returncode == 0, demo.stdout + demo.stderr
            assert "first delivery: 200 paid" in demo.stdout and "Stripe retries it: 200 duplicate" in demo.stdout
            assert re.search(r"order #1 is completed", demo.stdout), demo.stdout
            # the kitchen ticket as each station's printer prints it (seeded Star bar, Epson kitchen)
            bar = demo.stdout.split("print job for Bar (Star) (star_cloudprnt)")[1].split("print job for")[0]
            assert "KITCHEN / BAR" in bar and "1 x Latte (Large)" in bar and "Croissant" not in bar, demo.stdout
            assert "2 x Croissant" in demo.stdout.split("print job for Kitchen (Epson) (epson_sdp)")[1], demo.stdout
            receipt = re.search(r"receipt PDF of order #1: (\S+\.pdf)", demo.stdout)
            assert receipt and Path(receipt.group(1)).read_bytes().startswith(b"%PDF"), demo.stdout
            # the win-back: a lapsed regular texted through the log provider, her return credited to the rule
            assert re.search(r"Dana's phone shows: Hi Dana, we miss you at Downtown!", demo.stdout), demo.stdout
            revenue = re.search(r"'Win-back after 30 days': 1 sent, 1 orders, revenue recovered (\d+\.\d\d) USD", demo.stdout)
            assert revenue and float(revenue.group(1)) > 0, demo.stdout
            # the same demo for customers whose locale is fr: every message they get is French
            french = subprocess.run([sys.executable, "-m", "brigade", "demo", "--locale", "fr"], cwd=PROJECT_ROOT,
                                    env=local_env(data_dir, db_port, fn_port), capture_output=True, text=True, timeout=120)
            assert french.returncode == 0, french.stdout + french.stderr
            assert re.search(r"the guest's phone shows: Demo Café : commande n°\d+ est payée \(.+\)\. Votre code de retrait est \d{6} ; "
                             r"présentez-le à Downtown dans les 60 minutes\.", french.stdout), french.stdout
            assert re.search(r"the guest's inbox shows: Votre reçu — Demo Café : commande n°\d+ \| Code de retrait : \d{6} \(valable 60 minutes\)",
                             french.stdout), french.stdout
            assert "Dana's phone shows: Bonjour Dana, vous nous manquez à Downtown !" in french.stdout, french.stdout
            assert "Répondez STOP pour vous désabonner." in french.stdout and "we miss you" not in french.stdout
        finally:
            assert first.stop() == 0
        assert not cluster.running(), "Ctrl-C stops the embedded cluster too"

        second = Up(data_dir, db_port, fn_port)
        try:
            operator = {"authorization": f"Bearer {second.token('platform operator')}"}
            modules = httpx.get(f"{base}/admin/businesses/{DEMO}/modules", headers=operator).json()["modules"]
            assert modules["voice"] is False and modules["crm"] is True, "the second run kept the first run's data"
        finally:
            assert second.stop() == 0
    finally:
        cluster.destroy()
