"""The verification report."""

from __future__ import annotations

from migration_pipeline.prove import checks, report

from .helpers import migrate, silently


def test_report_lists_every_check_with_its_numbers(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    snapshot = tmp_path / "run-1.snapshot.db"
    text = report.render(report.build(conn, catalog, snapshot), target="embedded", snapshot=str(snapshot))
    assert "verdict: **all blocking checks passed**" in text
    for table in catalog.names:
        assert f"## {table}" in text
    assert "**PASS** `content_parity`" in text and "**WARN** `quarantine`" in text
    assert '"loaded_rows"' in text
    # every check the registry has for a table is listed, the app's queries and refusals too
    tweets = text.split("## tweets")[1].split("\n## ")[0]
    for check in checks.CHECKS:
        if check.applies_to(catalog.table("tweets")):
            assert f"`{check.name}`" in tweets, check.name
    assert "`app_full_text_search`" in tweets and "`refuses_orphan_tweet`" in tweets
    # warnings and blocking failures in their own columns
    assert "| passed | warnings | blocking failures |" in text
    row = next(line for line in text.splitlines() if line.startswith("| tweets |"))
    assert row.endswith("| quarantine | - |")

    silently(conn, "UPDATE tweets SET text = 'tampered' WHERE id = (SELECT min(id) FROM tweets)")
    text = report.render(report.build(conn, catalog, snapshot), target="embedded", snapshot=str(snapshot))
    assert "verdict: **FAILED: tweets**" in text
    assert "**FAIL** `content_parity`" in text and "changed text" in text
