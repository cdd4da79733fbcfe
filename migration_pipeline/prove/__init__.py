"""Prove: the checks as data, one spec type and registry in checks.py (counts, integrity, content, JSON,
conformance, the app's queries, the refusals), the report, provenance.
May import: move (its audit tables, checksums and staging; never the loader, load.py), connect, catalog.
"""
