"""Configuration from the environment and .env.migration; secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_pipeline.connect.settings import ConfigError, load_settings, redact


def test_defaults_use_embedded(tmp_path):
    s = load_settings({}, cwd=tmp_path)
    assert s.embedded and s.database == "twitter_analysis_db" and s.sqlite_path == Path("./data/twitter.db")


def test_env_file_and_real_environment_wins(tmp_path):
    (tmp_path / ".env.migration").write_text(
        "SQLITE_PATH=./from_file.db\nPG_HOST=db.internal\nPG_USER=app\nPG_PASSWORD=s3cret-file\nPG_DATABASE=filedb\n"
    )
    s = load_settings({"PG_DATABASE": "envdb"}, cwd=tmp_path)
    assert not s.embedded
    assert s.sqlite_path == Path("./from_file.db")
    assert s.database == "envdb"
    assert "host=db.internal" in s.external_conninfo and "port=5432" in s.external_conninfo
    assert "s3cret-file" not in repr(s) and "s3cret-file" not in s.describe() and "s3cret-file" not in str(s)


def test_dsn_overrides_parts(tmp_path):
    s = load_settings(
        {"PG_DSN": "postgresql://u:topsecret@h:6543/dsndb", "PG_HOST": "ignored", "PG_DATABASE": "x"},
        cwd=tmp_path,
    )
    assert s.database == "dsndb"
    assert "h" in s.external_conninfo and "6543" in s.external_conninfo
    assert "topsecret" not in repr(s) and "topsecret" not in s.describe()


def test_bad_values_explained_without_secrets(tmp_path):
    with pytest.raises(ConfigError, match="PG_PORT"):
        load_settings({"PG_HOST": "h", "PG_PORT": "five"}, cwd=tmp_path)
    with pytest.raises(ConfigError) as err:
        load_settings({"PG_DSN": "postgresql://u:hunter2@h:notaport/db?bad"}, cwd=tmp_path)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "host=h password=hunter2 dbname=d",
        "host=h password='hun ter2' dbname=d",
        "postgresql://user:hunter2@host:5432/db",
        'connection to server failed: password authentication failed for "postgres" password=hunter2',
    ],
)
def test_redact(text):
    assert "hunter2" not in redact(text) and "hun ter2" not in redact(text)


def test_the_fan_out_settings_and_their_mistakes():
    from migration_pipeline.connect.settings import fan_out_setting

    fan_out = fan_out_setting({"FAN_OUT_TABLES": "tweets", "RANGE_ROWS": "1000", "INDEX_JOBS": "4"})
    assert (fan_out.tables, fan_out.range_rows, fan_out.index_jobs) == (frozenset({"tweets"}), 1000, 4)
    assert fan_out_setting({}).index_jobs == 2
    for name, value in (("RANGE_ROWS", "0"), ("INDEX_JOBS", "0"), ("INDEX_JOBS", "two")):
        with pytest.raises(ConfigError, match=name):
            fan_out_setting({name: value})
