"""Watch: PostgreSQL's health after the move (samples, thresholds, alerts) and the app's workload generator.
May import: prove, move, connect, catalog; not switch or samples.
"""
