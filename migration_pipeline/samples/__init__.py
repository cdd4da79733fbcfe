"""Samples: the app-shaped SQLite generator (the default source of a fresh machine) and the app writing its file.
May import: prove, move, connect, catalog; not switch or watch. The app's SQLite DDL is schema/sqlite/.
"""
