"""Jobs operators and scripts call by name (contract "Jobs")."""

from dagster import AssetSelection, define_asset_job

migrate_job = define_asset_job(
    "migrate",
    selection=AssetSelection.all(),
    description="Snapshot the SQLite source, then load every table in foreign-key order, with its checks.",
)

reverify_job = define_asset_job(
    "reverify",
    selection=AssetSelection.all_asset_checks(),
    description="Run the checks of every migrated table; moves no data. Fails when a blocking check fails.",
)
