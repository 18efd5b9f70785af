"""A private PostgreSQL cluster in a local folder, for `autimit-csms dev` and the tests.

Owns: finding server binaries (system PostgreSQL >= 15 first, else the ones the
`pgserver` wheel ships), initdb, start on 127.0.0.1, stop. It never touches a
server someone else started. Blocking by design: called before Trio starts or
from test fixtures.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MIN_MAJOR: Final = 15
_PASSWORD_FILE: Final = "autimit-password"


class PostgresNotFound(RuntimeError):
    pass


def find_bindir() -> Path:
    """The bin directory of a PostgreSQL >= 15 server.

    Order: $AUTIMIT_PG_BINDIR, Debian's /usr/lib/postgresql/N/bin (newest),
    `pg_config --bindir` on PATH, then the binaries of the `pgserver` wheel.
    """
    for bindir in _candidate_bindirs():
        if (bindir / "postgres").exists() and (bindir / "initdb").exists():
            if server_major(bindir) >= MIN_MAJOR:
                return bindir
    raise PostgresNotFound(
        "no PostgreSQL >= 15 server binaries found. Install them (Debian/Ubuntu: "
        "`apt-get install postgresql-15`, Fedora: `dnf install postgresql-server`, macOS: "
        "`brew install postgresql@15`), or `pip install pgserver` for bundled ones, or set "
        "AUTIMIT_PG_BINDIR to the folder holding `postgres` and `initdb`."
    )


def _candidate_bindirs() -> Iterator[Path]:
    if env := os.environ.get("AUTIMIT_PG_BINDIR"):
        yield Path(env)
    yield from sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            yield Path(out.stdout.strip())
    try:
        import pgserver  # type: ignore[import-untyped]
    except ImportError:
        return
    yield Path(pgserver.__file__).parent / "pginstall" / "bin"


def server_major(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True)
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(match.group(1)) if match else 0


def sharedir(bindir: Path) -> Path | None:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return None
    out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def has_timescaledb(bindir: Path) -> bool:
    share = sharedir(bindir)
    return bool(share and (share / "extension" / "timescaledb.control").exists())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalPostgres:
    """One cluster in `datadir`, served on 127.0.0.1:`port` with password auth."""

    datadir: Path
    port: int
    bindir: Path
    preload_timescaledb: bool = False

    @property
    def password(self) -> str:
        return (self.datadir / _PASSWORD_FILE).read_text().strip()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://autimit:{self.password}@127.0.0.1:{self.port}/{dbname}"

    # PostgreSQL refuses to run as root; when we are root (CI, containers) the
    # cluster runs as the `postgres` user, or `nobody` on a machine without one.
    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        raise PostgresNotFound("running as root and no unprivileged user to run PostgreSQL")

    def _chown(self, path: Path) -> None:
        run_as = self._run_as()
        if run_as:
            os.chown(path, run_as["user"], run_as["group"])  # type: ignore[arg-type]

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._chown(self.datadir)
        self.datadir.chmod(0o700)
        password = secrets.token_urlsafe(24)
        with tempfile.TemporaryDirectory(prefix="autimit-pw-") as tmp:
            pwfile = Path(tmp) / "pw"
            pwfile.write_text(password)
            self._chown(Path(tmp))
            self._chown(pwfile)
            self._pg(
                "initdb", "-D", str(self.datadir), "-U", "autimit", "--auth-local=trust",
                "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                "--locale=C", "--no-sync",
            )
        pw = self.datadir / _PASSWORD_FILE
        pw.write_text(password + "\n")
        pw.chmod(0o600)

    def start(self, *, fsync: bool = True) -> None:
        if not self.initialized():
            self.init()
        options = [
            f"-c port={self.port}",
            "-c listen_addresses=127.0.0.1",
            "-c unix_socket_directories=''",
            "-c max_connections=300",
        ]
        if not fsync:  # tests only: durability is the server's job, speed is ours
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        if self.preload_timescaledb:
            options += ["-c shared_preload_libraries=timescaledb",
                        "-c timescaledb.telemetry_level=off"]
        self._pg(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.datadir / "server.log"),
            "-o", " ".join(options), "-w", "-t", "60", "start",
        )

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def _pg(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            cwd="/",
            **self._run_as(),  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            log = self.datadir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            hint = ""
            if self._run_as():
                hint = (f"\n(running as root: PostgreSQL runs as an unprivileged user, who must "
                        f"be able to reach {self.datadir}; choose a folder outside /root)")
            raise RuntimeError(f"{tool} failed: {result.stderr.strip()}{hint}\n{tail}")
