"""Prove: the checks as data (counts, integrity, content, JSON, conformance, the app's queries), the report, provenance.
May import: move (its audit tables, checksums and staging; never the loader, load.py), connect, catalog.
"""
