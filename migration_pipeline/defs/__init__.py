"""Defs: the Dagster wiring only — assets, checks, jobs, sensors, schedules and the resource, one module per stage.

May import: every stage and dagster; the only package (with definitions.py) that imports dagster.
"""
