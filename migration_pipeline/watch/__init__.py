"""Watch: PostgreSQL's health after the move (samples, thresholds, alerts) and the app's workload generator.

May import: connect, catalog (and prove/move when a measurement needs them); never switch or samples.
"""
