"""Move: one table from the SQLite snapshot through the value rules, staging and quarantine into PostgreSQL.

May import: connect, catalog; records what it did in the audit tables, the change log and the phase.
"""
