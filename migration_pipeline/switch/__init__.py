"""Switch: the delta sync, the cutover runbook, finalizing the soak period, the rollback export to SQLite.
May import: prove, move, connect, catalog; not watch or samples.
"""
