"""Move: one table from the SQLite snapshot through the value rules, staging and quarantine into PostgreSQL, audited.
May import: connect, catalog.
"""
