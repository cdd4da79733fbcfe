"""Watch: PostgreSQL's health after the move (samples, thresholds, alerts), the app's workload generator, and
the app's operations timed on SQLite and on PostgreSQL side by side (app_ops, app_postgres, app_workload, app_performance,
app_report).
May import: prove, move, connect, catalog; not switch or samples.
"""
