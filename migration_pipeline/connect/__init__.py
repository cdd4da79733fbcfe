"""Connect: where the data lives — settings, the target server (embedded or configured), the Dagster instance's database.
May import: catalog only (and third-party libraries); never dagster, like every stage but defs/.
"""
