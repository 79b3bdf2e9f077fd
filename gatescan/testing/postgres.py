"""A real, throwaway PostgreSQL: what the tests (tests/support/postgres.py, its fixtures) and the
benchmarks (bench/collectors_bench.py) start for themselves.

`running_postgres()`: Debian's server binaries (the `postgresql` package,
/usr/lib/postgresql/<version>/bin, the newest there) run `initdb` into a fresh temporary folder
(in memory: /dev/shm when there is one) and start `postgres` on a unix socket in it: no TCP port
to collide on, no system service. PostgreSQL refuses to run as root, and CI runs as root, so then
the cluster belongs to an unprivileged system user (`gatescan-test`, made with
`useradd --system` when missing) and the server runs as it through `setpriv`. It dies with the
process that started it (`--pdeathsig`) and is stopped when the context ends.
`PostgresServer.create_database()` makes a fresh, empty database from template0, and `url()`
names it as a SQLAlchemy URL (`postgresql+psycopg://gatescan@/test_N?host=...&port=...`).
Login roles that need a password (`create_role`: members of the group `password_login`, which
pg_hba.conf sends to scram-sha-256; every other login is trusted) and databases they own, empty or
copied from another (`create_database(template=, owner=)`), for what must log in as a site does.

The server's time zone is Asia/Ho_Chi_Minh, a site's own: a timestamp that lost its zone on
the way in or out shows up as seven hours off. Durability is off (fsync, synchronous_commit,
full_page_writes): nothing here pulls the plug on it, and a benchmark's figures must say so.

What cannot start (no PostgreSQL installed, initdb or the server failing) raises
`PostgresUnavailable`, whose message says what to do.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed, or its cluster could not be made or started."""


TEST_USER = "gatescan-test"  # the system user the cluster runs as when the tests run as root
SUPERUSER = "gatescan"  # the cluster's own superuser (initdb -U)
# Members of this group log in with a password (scram-sha-256), everyone else is trusted: a
# role of `create_role` is refused without its password, as on a site's server.
PASSWORD_GROUP = "password_login"
SERVER_TIMEZONE = "Asia/Ho_Chi_Minh"
START_TIMEOUT_S = 30.0
MEMORY_FOLDER_FREE_BYTES = 1 << 30  # /dev/shm is used when this much of it is free
_DEBIAN_BINARIES = Path("/usr/lib/postgresql")


def server_binaries() -> Path:
    """The newest PostgreSQL's bin folder: Debian's, else `postgres` on PATH."""
    found = []
    if _DEBIAN_BINARIES.is_dir():
        for folder in _DEBIAN_BINARIES.iterdir():
            if re.fullmatch(r"\d+(\.\d+)?", folder.name) and (folder / "bin" / "postgres").exists():
                found.append((float(folder.name), folder / "bin"))
    if found:
        return max(found)[1]
    on_path = shutil.which("postgres")
    if on_path is not None and shutil.which("initdb") is not None:
        return Path(on_path).parent
    raise PostgresUnavailable(
        "PostgreSQL's server binaries (initdb, postgres) are not installed: run `make bootstrap`"
        " (it installs Debian's postgresql package)"
    )


def _unprivileged_user() -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(TEST_USER)
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(TEST_USER)  # made now, or by another worker at the same moment
    except KeyError:
        raise PostgresUnavailable(
            f"could not make the system user {TEST_USER}: {made.stderr}"
        ) from None


def _memory_folder() -> str | None:
    """Linux's shared-memory tmpfs if there is one: a database made and dropped per test costs
    7 ms there against 0.2-0.3 s on a disk (the checkpoint CREATE DATABASE makes writes every
    dirty page, and a dropped database's files are discarded), fsync off or not."""
    shm = "/dev/shm"
    if not (os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)):
        return None
    free = os.statvfs(shm)
    # A container's is often 64 MiB: a cluster takes about 40 MiB, each database 7.5 MiB more.
    return shm if free.f_bavail * free.f_frsize >= MEMORY_FOLDER_FREE_BYTES else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A running cluster: its socket folder and port, its postmaster's process id (its backends
    are that process's children), and fresh databases on demand."""

    socket_dir: Path
    port: int
    pid: int
    _admin: psycopg.Connection[tuple[object, ...]]
    _names: Iterator[int]
    _used: list[str] = field(default_factory=list)

    def url(self, database: str, user: str = SUPERUSER, password: str | None = None) -> URL:
        query = {"host": str(self.socket_dir), "port": str(self.port)}
        return URL.create("postgresql+psycopg", user, password, database=database, query=query)

    def create_role(self, password: str) -> str:
        """A new login role, no superuser, that must give `password` (pg_hba: scram-sha-256)."""
        name = f"role_{next(self._names)}"
        self._admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(name), sql.Literal(password), sql.Identifier(PASSWORD_GROUP)
            )
        )
        return name

    def create_database(self, template: str = "template0", owner: str = SUPERUSER) -> str:
        """A new database: empty (template0), or a copy of another (which nobody is connected
        to), owned by `owner` (a role of `create_role`)."""
        self._drop_used()
        name = f"test_{next(self._names)}"
        # FILE_COPY: the template's files copied whole, three times quicker here than writing
        # each of its pages through the WAL (PostgreSQL 15's default).
        self._admin.execute(
            f'CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY OWNER "{owner}"'
        )
        return name

    def create_template(self, name: str, fill: Callable[[URL], None]) -> str:
        """A database made empty, filled by `fill` (which must close its connections: a
        template with a session open cannot be copied), then marked a template: databases
        copied from it (`create_database(template=name)`) start with what `fill` made, for what
        a fresh database costs."""
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        fill(self.url(name))
        self._admin.execute(f"ALTER DATABASE {name} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
        return name

    def done_with(self, name: str) -> None:
        """Drop the database when the next one is made: by then the test's sessions have ended
        (a DROP right away waits out each closing session in 0.1 s steps)."""
        self._used.append(name)

    def _drop_used(self) -> None:
        while self._used:
            self._admin.execute(f"DROP DATABASE IF EXISTS {self._used.pop()} WITH (FORCE)")


def _connect(socket_dir: Path, port: int) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=str(socket_dir), port=port, user=SUPERUSER, dbname="postgres", autocommit=True
    )


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb, start, yield, stop; the folder removed after."""
    binaries = server_binaries()
    folder = Path(tempfile.mkdtemp(prefix="gatescan-pg-", dir=_memory_folder()))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = _unprivileged_user()
        os.chown(folder, user.pw_uid, user.pw_gid)
        group = grp.getgrgid(user.pw_gid).gr_name
        as_user = ["--reuid", user.pw_name, "--regid", group, "--clear-groups"]
    run_as = ["setpriv", *as_user, "--pdeathsig", "SIGTERM", "--"]
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust"]
    initdb += ["--encoding=UTF8", "--no-locale", "--no-sync"]
    made = subprocess.run([*run_as, *initdb], capture_output=True, text=True, env=env, cwd=folder)
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed:\n{made.stdout}\n{made.stderr}")
    hba = data / "pg_hba.conf"  # the first line that matches decides: the group's first
    hba.write_text(
        f"local all +{PASSWORD_GROUP} scram-sha-256\n" + hba.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    port = _free_port()
    settings = {
        "listen_addresses": "",  # the socket only
        "unix_socket_directories": str(folder),
        "port": str(port),
        "timezone": SERVER_TIMEZONE,
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "max_connections": "200",
        "shared_buffers": "32MB",
    }
    command = [str(binaries / "postgres"), "-D", str(data)]
    for name, value in settings.items():
        command += ["-c", f"{name}={value}"]
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*run_as, *command], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder
        )
    try:
        admin = _wait_for_server(server, folder, port, log_path)
        admin.execute(f"CREATE ROLE {PASSWORD_GROUP} NOLOGIN")
        try:
            yield PostgresServer(folder, port, server.pid, admin, itertools.count(1))
        finally:
            admin.close()
    finally:
        server.send_signal(signal.SIGINT)  # a fast shutdown: sessions ended, no checkpoint wait
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_server(
    server: subprocess.Popen[bytes], folder: Path, port: int, log_path: Path
) -> psycopg.Connection[tuple[object, ...]]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise PostgresUnavailable(f"postgres exited at start:\n{log_path.read_text()}")
        try:
            return _connect(folder, port)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(
                    f"postgres did not answer:\n{log_path.read_text()}"
                ) from None
            time.sleep(0.05)  # the server's socket appears when it is ready: nothing to wait on
