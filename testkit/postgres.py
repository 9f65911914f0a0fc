"""A throwaway PostgreSQL server for tests, and an empty database per test cloned from a template.

``PostgresServer`` runs ``initdb`` and ``pg_ctl`` (found on PATH or under
/usr/lib/postgresql/*/bin) in a fresh temp dir on a free loopback port, with durability off
(``fsync``, ``synchronous_commit``, ``full_page_writes``): a test server need not survive a power
cut. As root (``initdb`` refuses it) the server runs as the ``postgres`` user through ``runuser``.
With ``TEST_POSTGRES_URL`` set (``postgresql://postgres@127.0.0.1:5432/postgres``), that server
is used instead and nothing is started or stopped.

SQL goes through psycopg when it is installed, else through the ``psql`` CLI: this module adds no
dependency of its own. A server left over by a crashed run blocks nothing (its own temp dir and
port) and is stopped by the next run that starts one (see ``reap_leftovers``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "TEST_POSTGRES_URL"
REQUIRE_ENV = "REQUIRE_POSTGRES"
TEMP_PREFIX = "animate-pg-"
OWNER_FILE = "owner.pid"  # the pid of the process that started the server in this temp dir
SERVER_USER = "postgres"  # the OS user (and the superuser role) when this runs as root
TIMEOUT = 30.0  # seconds for any one command
DIR_ENV = "TEST_POSTGRES_TMPDIR"  # where the server's temp dir goes, if not the default below
# RAM, when there is room: CREATE DATABASE copies the template in ~10 ms there, ~200 ms on ext4
# (measured with fsync=off on this project's two-core CI machine).
SHM = Path("/dev/shm")
SHM_MIN_FREE = 1 << 30
# Durability off: a test server's data is thrown away anyway, and every commit is faster.
SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "listen_addresses=127.0.0.1")


class PostgresError(RuntimeError):
    """A command or a statement failed (its stderr, or libpq's message, says why)."""


class PostgresUnavailable(PostgresError):
    """No PostgreSQL to test against: the binaries are missing, or the server would not start."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then the newest Debian one."""
    on_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if on_path[0] and on_path[1]:
        initdb = Path(on_path[0]).resolve()  # /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
        return Path(on_path[0]).parent
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]
    candidates = [d for d in candidates if (d / "initdb").exists()]
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL not found: no initdb/pg_ctl on PATH nor under /usr/lib/postgresql/*/bin"
        )
    return max(candidates, key=lambda d: _version_key(d.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], what: str, error: type[PostgresError] = PostgresUnavailable) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise error(f"{what}: {e}") from e
    if done.returncode != 0:
        raise error(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _psycopg() -> Any:
    """psycopg if installed (the PostgreSQL engine's driver), else None: then psql is used."""
    return importlib.import_module("psycopg") if importlib.util.find_spec("psycopg") else None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def run_sql(url: str, sql: str) -> str:
    """Run ``sql`` (one statement, outside any transaction) on ``url``; the rows as ``psql -At``
    prints them: columns joined by ``|``, rows by newlines, NULL empty, booleans ``t``/``f``.
    Raises ``PostgresError`` with the server's message."""
    psycopg = _psycopg()
    if psycopg is None:
        psql = shutil.which("psql")
        with contextlib.suppress(PostgresUnavailable):
            bundled = find_bindir() / "psql"
            psql = psql or (str(bundled) if bundled.exists() else None)
        if psql is None:
            raise PostgresUnavailable("neither psycopg nor the psql CLI is installed")
        argv = [psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]
        return _run(argv, "psql", PostgresError).rstrip("\n")
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=int(TIMEOUT)) as conn:
            cursor = conn.execute(sql)
            rows = cursor.fetchall() if cursor.description else []
    except psycopg.Error as e:
        raise PostgresError(f"psycopg: {e}") from e
    return "\n".join("|".join(_as_text(v) for v in row) for row in rows)


def with_dbname(url: str, dbname: str) -> str:
    """``url`` naming another database on the same server (user, password and query kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def dbname_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PostgresServer:
    """A throwaway PostgreSQL server (or the one ``TEST_POSTGRES_URL`` names): ``start``/``stop``
    or ``with``; ``url(dbname)`` for a libpq URL to one of its databases."""

    def __init__(self, external_url: str | None = None) -> None:
        self.external_url = external_url
        self.port = 0
        self.dir: Path | None = None
        self.started_in = 0.0  # seconds the start took (initdb and pg_ctl, or the first query)
        self._bindir: Path | None = None
        self._as_root = os.geteuid() == 0

    @classmethod
    def from_env(cls) -> PostgresServer:
        return cls(os.environ.get(URL_ENV) or None)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        began = time.perf_counter()
        if self.external_url is not None:
            try:
                run_sql(self.external_url, "select 1")
            except PostgresError as e:
                raise PostgresUnavailable(f"{URL_ENV}={self.external_url}: {e}") from e
        else:
            reap_leftovers()
            self._start_own()
        self.started_in = time.perf_counter() - began
        return self

    def _start_own(self) -> None:
        self._bindir = find_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=base_dir()))
        (self.dir / OWNER_FILE).write_text(str(os.getpid()))
        atexit.register(self.stop)  # a session that ends without its finalizers still stops it
        if self._as_root:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError as e:
                self.stop()
                raise PostgresUnavailable(f"running as root, and no {SERVER_USER!r} user for initdb") from e
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        try:
            self._server_cmd(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", SERVER_USER, "-E", "UTF8", "--no-sync"
            )
            for attempt in range(3):  # another process may take the free port before the server
                self.port = free_port()
                try:
                    self._pg_ctl_start()
                    return
                except PostgresUnavailable:
                    if attempt == 2 or "already in use" not in self.log():
                        raise
        except PostgresUnavailable as e:
            log = self.log()
            self.stop()
            raise PostgresUnavailable(f"{e}\n{log[-2000:]}") from e

    def _pg_ctl_start(self) -> None:
        options = " ".join([f"-p {self.port}", f"-k {self.dir}", *(f"-c {s}" for s in SETTINGS)])
        self._server_cmd(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w", "-t", "30", "start"
        )

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``: its data is thrown away) and delete its dir.
        Safe to call twice; an external server is left alone."""
        if self.dir is None:
            return
        atexit.unregister(self.stop)
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                self._server_cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its data dir and port, for :meth:`resume` (a restart under a
        running bot). ``fast`` ends the sessions and shuts down cleanly; ``immediate`` is a crash."""
        assert self.external_url is None, "an external server is not ours to stop"
        self._server_cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def resume(self) -> None:
        """Start a :meth:`halt`-ed server again, on the same port and data dir."""
        self._pg_ctl_start()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- use -------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        if self.external_url is not None:
            return with_dbname(self.external_url, dbname)
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def admin_url(self) -> str:
        """Where CREATE/DROP DATABASE run: the external URL as given, or our ``postgres``."""
        return self.external_url if self.external_url is not None else self.url()

    def create_database(self, name: str, template: str = "template0") -> str:
        run_sql(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        run_sql(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @property
    def data(self) -> Path:
        assert self.dir is not None, "the server is not started"
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None, "the server is not started"
        return self.dir / "server.log"

    def log(self) -> str:
        if self.dir is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _server_cmd(self, program: str, *args: str) -> None:
        assert self._bindir is not None
        argv = [str(self._bindir / program), *args]
        if self._as_root:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        _run(argv, program)


def base_dir() -> Path:
    """Where servers' temp dirs go: ``TEST_POSTGRES_TMPDIR``, else /dev/shm when it is a tmpfs
    with a GiB free (Docker's default 64 MB is too small), else the usual temp dir."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    with contextlib.suppress(OSError):
        if os.access(SHM, os.W_OK) and shutil.disk_usage(SHM).free >= SHM_MIN_FREE:
            return SHM
    return Path(tempfile.gettempdir())


def unique_name(prefix: str) -> str:
    """A database name no other test or session (on a shared external server) will pick."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


def fresh_database(server: PostgresServer, template: str) -> str:
    """A new database cloned from ``template`` (a file copy: tens of milliseconds); its URL.
    Nobody may be connected to ``template`` meanwhile (PostgreSQL refuses the copy then)."""
    return server.create_database(unique_name("test"), template)


def reap_leftovers(where: Path | None = None) -> list[Path]:
    """Stop the servers (and delete the temp dirs) that runs which have since died left behind,
    e.g. after ``kill -9`` of pytest: they block nothing, but hold memory and disk. A dir whose
    owner is still running (another session, maybe another checkout) is left alone."""
    reaped = []
    bases = [where] if where else sorted({base_dir(), SHM, Path(tempfile.gettempdir())})
    for d in (d for base in bases for d in base.glob(TEMP_PREFIX + "*")):
        try:
            owner = int((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        leftover = PostgresServer()
        leftover.dir = d
        if (leftover.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                leftover._bindir = find_bindir()
        if leftover._bindir is None:
            shutil.rmtree(d, ignore_errors=True)
        else:
            leftover.stop()
        reaped.append(d)
    return reaped
