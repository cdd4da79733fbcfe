"""Samples: an app-shaped SQLite database generator and the app writing its file, for runs, tests and benches.

May import: connect, catalog (the app's SQLite DDL lives in schema/sqlite/); nothing from move onwards.
"""
