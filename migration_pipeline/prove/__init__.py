"""Prove: the checks as data (counts, integrity, content, JSON, conformance, the app's queries), the report and provenance.

May import: move (its audit tables, checksums, staging), connect, catalog; never the loader's decisions.
"""
