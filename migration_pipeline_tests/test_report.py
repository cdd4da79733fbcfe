"""The verification report."""

from __future__ import annotations

from migration_pipeline.prove import report

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

    silently(conn, "UPDATE tweets SET text = 'tampered' WHERE id = (SELECT min(id) FROM tweets)")
    text = report.render(report.build(conn, catalog, snapshot), target="embedded", snapshot=str(snapshot))
    assert "verdict: **FAILED: tweets**" in text
    assert "**FAIL** `content_parity`" in text and "changed text" in text
