"""The embedded PostgreSQL cluster: the local run's under .data/, and the test run's in a temp dir.

initdb and pg_ctl refuse to run as root, and CI runs as root: when we are root, the cluster's files
belong to the unprivileged `postgres` user and its commands run as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from brigade.errors import BrigadeError

CLUSTER_USER = "postgres"


class ClusterError(BrigadeError):
    code = "cluster"


def pg_bindir() -> Path:
    """Directory holding initdb, pg_ctl and postgres (BRIGADE_PG_BINDIR, pg_config, or Debian's)."""
    explicit = os.environ.get("BRIGADE_PG_BINDIR")
    if explicit:
        return Path(explicit)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for version in ("17", "16", "15"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin")
        if (candidate / "initdb").exists():
            return candidate
    raise ClusterError(
        "PostgreSQL server binaries not found: install postgresql (Debian: apt-get install postgresql-15) "
        "or set BRIGADE_PG_BINDIR"
    )


@dataclass
class Cluster:
    """A PostgreSQL cluster in data_dir listening on 127.0.0.1:port, superuser `postgres`, trust auth."""

    data_dir: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the server (tests: a shifted clock)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(pg_bindir() / args[0]), *args[1:]]
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            kwargs["user"] = CLUSTER_USER
            kwargs["group"] = pwd.getpwnam(CLUSTER_USER).pw_gid
            kwargs["extra_groups"] = []
        if self.env:
            kwargs["env"] = {**os.environ, **self.env}
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
        if check and result.returncode != 0:
            raise ClusterError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
        return result

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster's files (once)."""
        if self.initialized:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(CLUSTER_USER)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "max_connections": "200",
            "shared_buffers": "256MB",
            "timezone": "'UTC'",
            **self.settings,
        }
        with (self.data_dir / "postgresql.auto.conf").open("a") as fh:
            for key, value in conf.items():
                fh.write(f"{key} = {value}\n")

    def running(self) -> bool:
        return self.initialized and self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> None:
        """Start the server on self.port (initialising it first if needed); no-op when it runs."""
        self.init()
        if self.running():
            return
        result = self._run("pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", "60",
                           "-l", str(self.log_file), "-o", f"-p {self.port}", check=False)
        if result.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise ClusterError(f"PostgreSQL did not start on port {self.port}: {result.stderr.strip()}\n{tail}")

    def stop(self) -> None:
        """Stop the server (fast shutdown); no-op when it is not running."""
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
