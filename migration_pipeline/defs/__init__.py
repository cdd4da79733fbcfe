"""Defs: the Dagster wiring only (assets, checks, jobs, sensors, schedules, the resource), one module per stage.
May import: every stage, and dagster (with definitions.py, the only code that does).
"""
