"""The import rules of ARCHITECTURE.md hold: `lint-imports` keeps the contracts of pyproject.toml (stages
import one way, no circle between siblings, dagster only in defs/, no check importing the loader), and
those contracts do break on a circle, on a stage importing upwards, on dagster imported by domain code and
on a check importing the loader."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
PACKAGE = CHECKOUT / "migration_pipeline"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the package under ``root`` with ``root``'s pyproject.toml."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def contracts() -> dict[str, dict]:
    config = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_the_import_contracts_hold():
    done = lint_imports(CHECKOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(contracts())} kept, 0 broken" in done.stdout, done.stdout


def test_every_domain_module_is_forbidden_dagster():
    """The forbidden contract names every top-level module but the Dagster wiring (the layers contract is
    exhaustive, so a new stage must be placed there; this keeps the dagster rule in step with it)."""
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    top |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    sources = {
        m.removeprefix("migration_pipeline.") for m in contracts()["dagster-only-in-defs"]["source_modules"]
    }
    assert sources == top - {"defs", "definitions", "cli"}


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("move/stage.py", "from . import load", {"no-circles", "checks-not-the-loader"}),  # a circle in move/
        ("move/checksums.py", "from ..prove import content", {"stages", "no-circles"}),  # move -> prove
        (
            "connect/settings.py",
            "from ..defs import connect",
            {"stages", "no-circles", "dagster-only-in-defs"},
        ),
        ("move/convert.py", "import dagster", {"dagster-only-in-defs"}),
        ("prove/report.py", "from dagster import MetadataValue", {"dagster-only-in-defs"}),
        ("prove/content.py", "from ..move.load import plan_columns", {"checks-not-the-loader"}),
    ],
)
def test_the_contracts_break_on_a_stray_import(tmp_path, module, line, broken):
    shutil.copytree(PACKAGE, tmp_path / "migration_pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CHECKOUT / "pyproject.toml", tmp_path)
    target = tmp_path / "migration_pipeline" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    report = " ".join(done.stdout.split())  # lint-imports wraps long contract names
    verdicts = {
        id_: "BROKEN" if f"{c['name']} BROKEN" in report else "KEPT" for id_, c in contracts().items()
    }
    assert {id_ for id_, v in verdicts.items() if v == "BROKEN"} == broken, done.stdout
