"""
Real servers for the scale-out tests, started and removed by the tests themselves: a throw-away PostgreSQL cluster
on a free loopback port, a network namespace joined to this one by a veth pair (a second "host"), and a local Dask
scheduler with one-thread workers.

Outside CI a test that needs a server which cannot be started here is skipped with the reason; with ``CI=true`` it
fails instead (:func:`need`), so that CI cannot pass without them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip the test when ``condition`` is false, with ``reason``; under ``CI=true`` fail instead."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true, and the test cannot run: {reason}")
        pytest.skip(reason)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.2)


# --- PostgreSQL -----------------------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """Folder of PostgreSQL's server programs (initdb, pg_ctl): Debian's /usr/lib/postgresql/N/bin, or the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def postgres_missing() -> str | None:
    """Why a PostgreSQL test cannot run here, or None."""
    if postgres_bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install -y postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (3) is not installed: pip install -e '.[distributed]'"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


@dataclass
class Postgres:
    """A running throw-away cluster: ``url(host)`` is an SQLAlchemy URL of its database ``optuna``."""

    port: int
    data_dir: Path
    hosts: tuple[str, ...]
    database: str = "optuna"
    password: str | None = None
    pg_ctl: tuple[str, ...] = ()
    start_options: str = ""
    log: Path | None = None

    def stop(self) -> None:
        """Stop the server as an administrator would (``pg_ctl stop -m fast``: connections closed, nothing lost)."""
        subprocess.run(
            _as_postgres_user([*self.pg_ctl, "-m", "fast", "-w", "stop"]), check=True, capture_output=True, timeout=60
        )

    def start(self) -> None:
        """Start it again, on the same port."""
        command = [*self.pg_ctl, "-l", str(self.log), "-w", "-o", self.start_options, "start"]
        subprocess.run(_as_postgres_user(command), check=True, capture_output=True, timeout=60)

    def url(self, host: str = "127.0.0.1", with_password: bool = True) -> str:
        user = f"postgres:{self.password}" if self.password and with_password else "postgres"
        return f"postgresql://{user}@{host}:{self.port}/{self.database}"


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres_cluster(
    hosts: tuple[str, ...] = ("127.0.0.1",), trusted_subnets: tuple[str, ...] = (), password: str | None = None
) -> Iterator[Postgres]:
    """
    ``initdb`` into a temporary folder, ``pg_ctl start`` on a free port listening on ``hosts`` only, ``createdb optuna``;
    on exit stop it (``-m immediate``) and delete the folder.

    :param hosts: The addresses to listen on (loopback by default).
    :param trusted_subnets: Other subnets allowed in without a password (``pg_hba.conf``), e.g. a veth pair's.
    :param password: The ``postgres`` user's password, and every connection must give it (scram-sha-256); ``None``:
        no password (trust).
    """
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None, postgres_missing()
    root = Path(tempfile.mkdtemp(prefix="sb3-reinforce-pg-"))
    data_dir, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data_dir)]
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    started = False
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", "postgres"]
        if password is not None:
            (root / "password").write_text(password)
            if os.geteuid() == 0:
                shutil.chown(root / "password", "postgres", "postgres")
            initdb[4:5] = ["scram-sha-256", f"--pwfile={root / 'password'}"]
        subprocess.run(_as_postgres_user(initdb), **run)
        if trusted_subnets:
            with open(data_dir / "pg_hba.conf", "a") as hba:
                hba.writelines(f"host all all {subnet} trust\n" for subnet in trusted_subnets)
        options = f"-p {port} -k {root} -c listen_addresses={','.join(hosts)}"
        started = True  # from here on, stop it whatever happens (stopping a server that is not running is harmless)
        subprocess.run(_as_postgres_user([*pg_ctl, "-l", str(log), "-w", "-o", options, "start"]), **run)
        createdb = [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "optuna"]
        if password is not None:  # runuser keeps the environment: PGPASSWORD reaches createdb
            createdb = ["env", f"PGPASSWORD={password}", *createdb]
        subprocess.run(_as_postgres_user(createdb), **run)
        yield Postgres(port, data_dir, hosts, password=password, pg_ctl=tuple(pg_ctl), start_options=options, log=log)
    except subprocess.CalledProcessError as error:
        server_log = log.read_text()[-2000:] if log.is_file() else ""
        raise RuntimeError(f"{error.cmd} failed: {error.stderr}\n{server_log}") from error
    finally:
        if started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(_as_postgres_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# --- A second host: a network namespace and a veth pair ---------------------------------------------------------------


@dataclass
class Namespace:
    """A network namespace ``name`` joined to this one by a veth pair: this side ``host_ip``, the other ``ns_ip``."""

    name: str
    host_ip: str
    ns_ip: str
    subnet: str

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def network_namespace() -> Iterator[Namespace]:
    """
    Make a network namespace and a veth pair (10.231.X.1 here, 10.231.X.2 there, X from the pid), bring them up, and
    remove both on exit. Raises ``OSError`` with the reason when namespaces cannot be made (no root, no ``ip``, no
    CAP_NET_ADMIN, ...).
    """
    if shutil.which("ip") is None:
        raise OSError("the ip command (iproute2) is not installed")
    octet = 16 + os.getpid() % 200
    name, host_link, ns_link = f"sb3r-{os.getpid()}", f"sb3r{os.getpid()}a", f"sb3r{os.getpid()}b"
    namespace = Namespace(name, f"10.231.{octet}.1", f"10.231.{octet}.2", f"10.231.{octet}.0/30")
    made: list[str] = []
    try:
        try:
            _ip("netns", "add", name)
            made.append("netns")
            _ip("link", "add", host_link, "type", "veth", "peer", "name", ns_link)
            made.append("link")
            _ip("link", "set", ns_link, "netns", name)
            _ip("addr", "add", f"{namespace.host_ip}/30", "dev", host_link)
            _ip("link", "set", host_link, "up")
            _ip("netns", "exec", name, "ip", "addr", "add", f"{namespace.ns_ip}/30", "dev", ns_link)
            _ip("netns", "exec", name, "ip", "link", "set", ns_link, "up")
            _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        except subprocess.CalledProcessError as error:
            raise OSError(f"cannot make a network namespace here: {' '.join(error.cmd)}: {error.stderr.strip()}") from error
        yield namespace
    finally:
        if "link" in made:
            subprocess.run(["ip", "link", "del", host_link], capture_output=True, timeout=30)
        if "netns" in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


# --- Dask -----------------------------------------------------------------------------------------------------------


def dask_missing() -> str | None:
    """Why a Dask test cannot run here, or None."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return "dask.distributed is not installed: pip install -e '.[distributed]'"
    return None


@dataclass
class DaskCluster:
    """A local scheduler and its workers, each worker in its own process group (so that a test can kill one whole)."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def kill_worker(self, index: int) -> None:
        """SIGKILL the process of worker ``index`` (only it: what it started must die with it by itself)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait(timeout=30)


def _dask(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop ``process`` (SIGTERM, then SIGKILL) and whatever is left in its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


@contextlib.contextmanager
def dask_cluster(n_workers: int, log_dir: Path) -> Iterator[DaskCluster]:
    """``dask scheduler`` on a free loopback port and ``n_workers`` workers of one process and one thread each."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    cluster = DaskCluster(address, _dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                                         log=log_dir / "scheduler.log"))  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port)
        for i in range(n_workers):
            options = ["--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--no-nanny", "--name", f"worker-{i}"]
            cluster.workers.append(_dask("worker", address, *options, log=log_dir / f"worker-{i}.log"))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(n_workers, timeout=60)
        yield cluster
    finally:
        for process in [*cluster.workers, cluster.scheduler]:
            stop_process_group(process)
