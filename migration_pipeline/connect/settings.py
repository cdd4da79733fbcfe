"""Configuration from the environment and ``.env.migration`` (the contract's "Configuration").

In:  environment variables ``SQLITE_PATH``, ``PG_DSN``, ``PG_USER``, ``PG_PASSWORD``, ``PG_DATABASE``,
     ``PG_HOST``, ``PG_PORT``, the shrink guard's ``MAX_SHRINK_SHARE`` and ``ALLOW_SHRINK``, the fan-out's
     ``FAN_OUT_TABLES``, ``RANGE_ROWS``, ``SNAPSHOT_DIR`` and ``INDEX_JOBS`` (:func:`fan_out_setting`); the same keys from ``.env.migration`` in the working directory, where the real environment wins.
Out: :class:`Settings`, whose ``repr``/``str`` never show the password; :func:`redact` removes a
     password from any text (DSNs in error messages) before it is logged.
Fails: :class:`ConfigError` with a message naming the bad variable (never its secret value).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ENV_FILE = ".env.migration"
DEFAULT_SQLITE_PATH = "./data/twitter.db"
DEFAULT_DATABASE = "twitter_analysis_db"
DEFAULT_PORT = 5432
# A load may remove at most this share of a non-empty table's rows (and never all of them) unless the
# operator confirms it (see migration_pipeline.move.guard).
DEFAULT_MAX_SHRINK_SHARE = 0.5
ALL_TABLES = "*"


class ConfigError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    sqlite_path: Path
    database: str
    # Connection parameters for an external server; None means "use the embedded PostgreSQL".
    external_conninfo: str | None = field(default=None, repr=False)
    max_shrink_share: float = DEFAULT_MAX_SHRINK_SHARE  # MAX_SHRINK_SHARE
    allow_shrink: frozenset[str] = frozenset()  # ALLOW_SHRINK: tables confirmed to shrink, or {"*"}

    @property
    def embedded(self) -> bool:
        return self.external_conninfo is None

    def describe(self) -> str:
        """A secret-free one-line description for logs and the UI."""
        if self.embedded:
            return f"embedded PostgreSQL, database {self.database}"
        return redact(self.external_conninfo)

    def __repr__(self) -> str:
        return f"Settings(sqlite_path={str(self.sqlite_path)!r}, target={self.describe()!r})"


def read_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, str]:
    """The effective variables: ``.env.migration`` values overlaid by the real environment."""
    environ = os.environ if environ is None else environ
    env_file = (cwd or Path.cwd()) / ENV_FILE
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.exists() else {}
    values.update(environ)
    return values


@dataclass(frozen=True)
class Schedule:
    """When a schedule runs (cron, UTC) and whether it starts running."""

    cron: str
    running: bool


REVERIFY_CRON = "0 3 * * *"  # reverify_daily
COMPACT_CRON = "17 * * * *"  # compact_change_log_hourly


def schedule_setting(name: str, default_cron: str, env: Mapping[str, str] | None = None) -> Schedule:
    """``<name>_CRON`` (default ``default_cron``) and ``<name>_SCHEDULE`` (``off``, ``false``, ``0`` or
    ``stopped`` start it stopped), read like the other settings (``env``: default the environment)."""
    env = read_environment() if env is None else env
    stopped = env.get(f"{name}_SCHEDULE", "").lower() in ("off", "false", "0", "stopped")
    return Schedule(env.get(f"{name}_CRON") or default_cron, not stopped)


# A fanned-out table's load is cut into ranges of this many source rows, each staged by its own step.
DEFAULT_FAN_OUT_TABLES = "tweets"
DEFAULT_RANGE_ROWS = 250_000
# the indexes of a fanned-out table built at once, each on its own connection (and each with the server's
# parallel maintenance workers): up to this many times maintenance_work_mem on the server
DEFAULT_INDEX_JOBS = 2


@dataclass(frozen=True)
class FanOut:
    """``FAN_OUT_TABLES``: the tables loaded in rowid ranges, one Dagster step each (``none`` for none);
    ``RANGE_ROWS``: source rows per range; ``SNAPSHOT_DIR``: where every step finds the snapshot (a
    location all the executor's workers share; default the state directory's ``snapshots``);
    ``INDEX_JOBS``: how many of such a table's indexes its publish step builds at once (1: one by one)."""

    tables: frozenset[str]
    range_rows: int
    snapshot_dir: Path | None
    index_jobs: int = DEFAULT_INDEX_JOBS


def fan_out_setting(env: Mapping[str, str] | None = None) -> FanOut:
    env = read_environment() if env is None else env
    text = env.get("FAN_OUT_TABLES", DEFAULT_FAN_OUT_TABLES)
    tables = frozenset() if text.strip().lower() in ("", "none") else parse_table_list(text)
    rows = env.get("RANGE_ROWS") or str(DEFAULT_RANGE_ROWS)
    if not rows.isdigit() or int(rows) < 1:
        raise ConfigError(f"RANGE_ROWS must be a positive number of rows, got {rows!r}")
    jobs = env.get("INDEX_JOBS") or str(DEFAULT_INDEX_JOBS)
    if not jobs.isdigit() or int(jobs) < 1:
        raise ConfigError(f"INDEX_JOBS must be a positive number of index builds at once, got {jobs!r}")
    where = env.get("SNAPSHOT_DIR")
    return FanOut(tables, int(rows), Path(where) if where else None, int(jobs))


def quarantine_quiet_share(env: Mapping[str, str] | None = None) -> float:
    """QUARANTINE_QUIET_SHARE: the share of a table's source rows that may be quarantined anew without the
    quarantine check warning (default 0: any new row warns)."""
    return _share(env if env is not None else read_environment(), "QUARANTINE_QUIET_SHARE", 0.0, "0.01 = 1%")


def _share(env: Mapping[str, str], name: str, default: float, example: str) -> float:
    """The variable ``name`` as a share between 0 and 1 (``default`` when unset); ConfigError otherwise."""
    text = env.get(name) or str(default)
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{name} must be a share between 0 and 1 ({example}), got {text!r}")
    return share


def parse_table_list(text: str | None) -> frozenset[str]:
    """``ALLOW_SHRINK``'s value: comma-separated table names, or ``*`` / ``all`` for every table."""
    names = frozenset(n.strip() for n in (text or "").split(",") if n.strip())
    return frozenset({ALL_TABLES}) if names & {ALL_TABLES, "all"} else names


def _shrink(env: Mapping[str, str]) -> dict:
    max_share = _share(env, "MAX_SHRINK_SHARE", DEFAULT_MAX_SHRINK_SHARE, "0.5 = half")
    return {"max_shrink_share": max_share, "allow_shrink": parse_table_list(env.get("ALLOW_SHRINK"))}


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    env = read_environment(environ, cwd)
    sqlite_path = Path(env.get("SQLITE_PATH") or DEFAULT_SQLITE_PATH)
    shrink = _shrink(env)
    if env.get("PG_DSN"):
        try:
            parts = conninfo_to_dict(env["PG_DSN"])
        except Exception:  # psycopg's message may quote the DSN: never pass it on
            raise ConfigError("PG_DSN is not a valid PostgreSQL connection string") from None
        database = str(parts.get("dbname") or env.get("PG_DATABASE") or DEFAULT_DATABASE)
        parts["dbname"] = database
        return Settings(sqlite_path, database, make_conninfo(**parts), **shrink)
    database = env.get("PG_DATABASE") or DEFAULT_DATABASE
    if not env.get("PG_HOST"):
        return Settings(sqlite_path, database, None, **shrink)
    port = env.get("PG_PORT") or str(DEFAULT_PORT)
    if not port.isdigit():
        raise ConfigError(f"PG_PORT must be a port number, got {port!r}")
    parts = {"host": env["PG_HOST"], "port": port, "dbname": database}
    if env.get("PG_USER"):
        parts["user"] = env["PG_USER"]
    if env.get("PG_PASSWORD"):
        parts["password"] = env["PG_PASSWORD"]
    return Settings(sqlite_path, database, make_conninfo(**parts), **shrink)


_PASSWORD_PATTERNS = (
    re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE),
    re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)"),
)


def redact(text: str | None) -> str:
    """``text`` with any password (conninfo ``password=...`` or URI ``user:pw@``) replaced by ``***``."""
    if not text:
        return ""
    text = _PASSWORD_PATTERNS[0].sub(r"\1***", text)
    return _PASSWORD_PATTERNS[1].sub(r"\1***\3", text)
