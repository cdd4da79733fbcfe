"""Connect: where the data lives — settings from the environment, the target server (embedded or configured).

May import: the catalog and third-party libraries only; never dagster (the Dagster instance's settings are data).
"""
