"""A real browser against ``dagster dev`` (issue 6, item 6): what an operator sees in the UI.

Headless Chromium (Debian's ``chromium`` package, driven by Playwright) against ``dagster dev`` started
here the way ``make ui`` starts it (instance in PostgreSQL, a fresh instance database dropped after):

* the target group's asset graph shows every table, each to the right of the tables it references;
* "Materialize all" clicked in the UI launches a run that succeeds (confirmed through /graphql too);
* every table's checks are green, in the graph and on its Checks tab;
* every table's page shows its schema (columns and types), row count, metadata, upstream assets,
  code version and its column lineage as the ``column_lineage`` table (source column and conversion per
  column); the run's log holds the structured ``dagster/column_lineage`` too, which Dagster OSS 1.13
  does not draw on the asset page (column lineage views are a Dagster+ feature);
* a run started from the command line (``migration-pipeline migrate tweets``) shows in the same UI, and
  the tweet it quarantined is previewed on the tweets page (key, column, value, reason, raw row).

The source is a small app-shaped SQLite database with only valid rows: the generated sample always
carries deliberately broken rows, so its ``quarantine`` check warns by design and nothing would be green.
Screenshots and the ``dagster dev`` log go to ``artifacts/browser/`` (``$ARTIFACTS_DIR/browser/`` when
set) and are kept when the test passes. Without /usr/bin/chromium the test skips, or fails when ``CI``
is set. Skip it with ``-m 'not browser'``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql

from migration_pipeline.catalog import SQLITE_APP_DDL, SQLITE_QUEUE_DDL
from migration_pipeline.connect.instance import instance_env
from migration_pipeline.connect.settings import fan_out_setting

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # a dev dependency: the test says so (skips, or fails in CI)
    expect = sync_playwright = None

CHECKOUT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 2800}  # tall: the graph draws only the nodes inside the viewport
UI_TIMEOUT_MS = 60_000
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 360
FINAL = {"SUCCESS", "FAILURE", "CANCELED"}
STOP_TIMEOUT_S = 30

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@dataclass(frozen=True)
class Expected:
    """What the UI must show for one target table, from the definitions and the migrated database."""

    table: str
    key_path: str  # "postgres/users"
    columns: tuple[tuple[str, str], ...]  # (name, type) from dagster/column_schema
    checks: tuple[str, ...]
    code_version: str
    upstream: tuple[str, ...]  # key paths of the asset's upstream assets


def artifacts_dir() -> Path:
    root = Path(os.environ["ARTIFACTS_DIR"]) if os.environ.get("ARTIFACTS_DIR") else CHECKOUT / "artifacts"
    path = root / "browser"
    shutil.rmtree(path, ignore_errors=True)  # this run's screenshots only
    path.mkdir(parents=True)
    return path


def require(condition: bool, message: str) -> None:
    """Skip locally when the browser is missing; fail in CI, which must never skip this test silently."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the browser test must run)")
    pytest.skip(message)


def clean_source(path: Path, users: int = 40, tweets: int = 400) -> Path:
    """An app-shaped SQLite database (the app's DDL and both of its timestamp habits) with only valid
    rows in every table, so that every check of every table passes."""
    words = ("data", "python", "migration", "postgres", "sqlite", "graph", "query", "index")

    def ts(i: int) -> str:  # SQLite's CURRENT_TIMESTAMP text
        return f"2024-03-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"

    def iso(i: int) -> str:  # the app's toISOString()
        return f"2024-04-{1 + i % 28:02d}T{i % 24:02d}:{(i * 7) % 60:02d}:00.000Z"

    ids = [f"u{i}" for i in range(users)]
    statuses = ["pending", "processing", "completed", "failed"]
    codes = [(f"REF{i}", ids[i], i % 5, ts(i)) for i in range(0, users, 4)]
    db = sqlite3.connect(path)
    try:
        db.executescript(SQLITE_APP_DDL + SQLITE_QUEUE_DDL)
        with db:
            db.executemany(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        u,
                        f"user_{i}",
                        json.dumps({"followers": 3 * i}),
                        f"https://example.com/{u}.png",
                        iso(i),
                        ts(i),
                    )
                    for i, u in enumerate(ids)
                ],
            )
            db.executemany(
                "INSERT INTO tweets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f"t{i}",
                        ids[i % users],
                        " ".join(words[(i + k) % len(words)] for k in range(4)),
                        ts(i),
                        f"https://x.com/i/status/{i}",
                        i % 2,
                        json.dumps({"likes": i}),
                        ts(i),
                    )
                    for i in range(tweets)
                ],
            )
            db.executemany(
                "INSERT INTO personality_analysis VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        f"pa{i}",
                        ids[i],
                        json.dumps({"openness": 0.5}),
                        json.dumps(words[:3]),
                        '{"tone": "casual"}',
                        iso(i),
                    )
                    for i in range(0, users, 3)
                ],
            )
            db.executemany(
                "INSERT INTO funnel_progress VALUES (?, ?, ?, ?, ?)",
                [(ids[i], i % 6, '["start"]', '{"start": "ok"}', ts(i)) for i in range(0, users, 2)],
            )
            db.executemany(
                "INSERT INTO funnel_completion VALUES (?, ?, ?)",
                [(ids[i], iso(i), json.dumps({"score": i})) for i in range(0, users, 5)],
            )
            db.executemany("INSERT INTO referral_codes VALUES (?, ?, ?, ?)", codes)
            db.executemany(
                "INSERT INTO referral_tracking VALUES (?, ?, ?, ?, ?)",
                [(None, c[0], c[1], ids[(n * 7 + 1) % users], iso(n)) for n, c in enumerate(codes)],
            )
            db.executemany(
                "INSERT INTO referral_usage_log VALUES (?, ?, ?, ?)",
                [(None, c[0], ids[(n * 3) % users], ts(n)) for n, c in enumerate(codes)],
            )
            db.executemany(
                "INSERT INTO analysis_queue VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (None, ids[i], statuses[i % 4], i % 3, 2, 0, ts(i), iso(i), None, None)
                    for i in range(0, users, 4)
                ],
            )
            jobs = [row[0] for row in db.execute("SELECT job_id FROM analysis_queue")]
            db.executemany(
                "INSERT INTO analysis_chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (None, j, c, 10, statuses[(j + c) % 4], iso(j), None, '{"ok": true}', None)
                    for j in jobs
                    for c in range(2)
                ],
            )
    finally:
        db.close()
    return path


def expected_assets(catalog) -> list[Expected]:
    """Read from the definitions the UI serves (imported here, as the code server imports them)."""
    from dagster import AssetKey

    from migration_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    expected = []
    for spec in catalog.tables:
        key = AssetKey(["postgres", spec.name])
        assets_def = defs.get_assets_def(key)
        schema = assets_def.specs_by_key[key].metadata["dagster/column_schema"]
        expected.append(
            Expected(
                table=spec.name,
                key_path=f"postgres/{spec.name}",
                columns=tuple((c.name, c.type) for c in schema.columns),
                checks=tuple(sorted(c.name for c in graph.asset_check_keys if c.asset_key == key)),
                code_version=assets_def.code_versions_by_key[key],
                upstream=tuple(sorted("/".join(k.path) for k in graph.get(key).parent_keys)),
            )
        )
    return expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


WORKSPACE = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
                                   ... on PythonError { message } } } } } }"""


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextmanager
def dagster_dev(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, str]]:
    """``dagster dev`` as ``make ui`` runs it (from the checkout, its own process group); yields the base
    URL and the repository's path segment (``name@location``) once the code location has loaded."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=CHECKOUT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        repository = None
        while repository is None:
            assert proc.poll() is None, f"dagster dev exited with {proc.returncode}:\n{tail(log_path)}"
            assert time.monotonic() < deadline, (
                f"dagster dev not ready in {START_TIMEOUT_S}s:\n{tail(log_path)}"
            )
            try:
                entries = graphql(base, WORKSPACE)["workspaceOrError"]["locationEntries"]
            except (OSError, urllib.error.URLError):
                entries = []  # not listening yet
            for entry in entries:
                location = entry["locationOrLoadError"] or {}
                assert location.get("__typename") != "PythonError", location.get("message")
                if location.get("repositories"):
                    repository = f"{location['repositories'][0]['name']}@{entry['name']}"
            time.sleep(0.5)
        yield base, repository
    except BaseException:
        print(f"--- dagster dev log ({log_path}), last lines ---\n{tail(log_path)}")
        raise
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGINT to the whole group (dagster dev, its webserver, daemon and code servers), as Ctrl-C does;
    SIGTERM, then SIGKILL, to whatever is left after a timeout."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # the group is gone
        _, family = psutil.wait_procs(family, timeout=wait)
        if not family:
            break
    for leftover in family:  # left the group: psutil makes sure the pid is still the same process
        leftover.kill()
    proc.wait(timeout=10)


# --- the pages -------------------------------------------------------------------------------------------


def shoot(page, path: Path) -> None:
    page.screenshot(path=path, animations="disabled")  # dialogs fade in: show them finished


def labelled(page, label: str):
    """The block holding a label of the overview page ("Row count", "Code version", …) and its value."""
    return page.get_by_text(label, exact=True).locator("xpath=..")


def graph_nodes(page, expected: list[Expected]) -> dict[str, object]:
    """The graph's node of each target table (the group graph names nodes by the last key part)."""
    return {
        e.table: page.locator("foreignObject").filter(has=page.locator(f'[data-tooltip="{e.table}"]'))
        for e in expected
    }


def assert_graph_in_load_order(page, group_url: str, expected: list[Expected], catalog, shot: Path) -> None:
    page.goto(group_url)
    nodes = graph_nodes(page, expected)
    for node in nodes.values():
        expect(node).to_have_count(1)
    boxes = {table: node.bounding_box() for table, node in nodes.items()}
    shoot(page, shot)
    # The graph is laid out left to right: a table referenced by a foreign key (loaded first) must be
    # drawn entirely to the left of every table referencing it.
    for spec in catalog.tables:
        for parent in spec.parents:
            left, right = boxes[parent], boxes[spec.name]
            assert left["x"] + left["width"] <= right["x"], (parent, left, spec.name, right)
    roots = [spec.name for spec in catalog.tables if not spec.parents]
    assert min(boxes, key=lambda t: boxes[t]["x"]) in roots


def launch_materialize_all(page, base: str, shot: Path) -> str:
    """Click "Materialize all" on the global lineage page; follow the toast to the run. Returns its id."""
    page.goto(f"{base}/asset-groups")
    button = page.get_by_role("button", name=re.compile(r"Materialize all"))
    expect(button).to_be_enabled()
    button.click()
    view = page.get_by_role("link", name="View", exact=True)  # on the "Launched run …" toast
    dialog = page.get_by_role("dialog")
    expect(view.or_(dialog).first).to_be_visible()
    if dialog.count() and dialog.first.is_visible():  # a confirmation, should this Dagster ask for one
        dialog.first.get_by_role("button", name=re.compile(r"Launch|Materialize")).click()
        expect(view).to_be_visible()
    shoot(page, shot)
    href = view.get_attribute("href")
    assert href and href.startswith("/runs/"), href
    try:
        view.click(timeout=5_000)
    except Exception:  # the toast went away first: follow its link by hand
        page.goto(base + href)
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    return href.rsplit("/", 1)[-1]


def wait_for_run(base: str, run_id: str) -> str:
    """The run's final status, polled through /graphql (a browser left on the live run page would take a
    core of this 2-core machine from the run's own processes while it redraws the timeline)."""
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (status := graphql(base, query, {"id": run_id})["runOrError"]["status"]) not in FINAL:
        assert time.monotonic() < deadline, f"run {run_id} still {status} after {RUN_TIMEOUT_S}s"
        time.sleep(1)
    return status


def assert_run_succeeds(page, base: str, run_id: str, started: Path, finished: Path) -> None:
    status_tag = re.compile(r"^(Queued|Not started|Starting|Started|Success|Failure|Canceling|Canceled)$")
    expect(page.get_by_text(status_tag).first).to_be_visible()  # the run's page has loaded
    shoot(page, started)
    page.goto("about:blank")
    status = wait_for_run(base, run_id)
    page.goto(f"{base}/runs/{run_id}")
    shown = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(shown).to_be_visible()
    shoot(page, finished)
    expect(shown).to_have_text("Success")
    expect(page.get_by_text("Errored (0)", exact=True)).to_be_visible()
    assert status == "SUCCESS"


def assert_checks_green_in_graph(page, group_url: str, expected: list[Expected], shot: Path) -> None:
    page.goto(group_url)
    nodes = graph_nodes(page, expected)
    for e in expected:
        n = len(e.checks)
        expect(nodes[e.table]).to_contain_text(f"{n} / {n} Passed")
    shoot(page, shot)


def assert_checks_tab(page, base: str, e: Expected, shot: Path) -> None:
    page.goto(f"{base}/assets/{e.key_path}?view=checks")
    expect(page.get_by_text(f"Checks ({len(e.checks)})", exact=True)).to_be_visible()
    for name in e.checks:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(e.checks))
    expect(page.get_by_text(re.compile(r"^(Failed|Warning|Error|Skipped)$"))).to_have_count(0)
    shoot(page, shot)


def assert_overview(page, base: str, e: Expected, rows: int, shot: Path) -> None:
    """Schema, row count, metadata, upstream assets and code version on the asset's Overview tab."""
    page.goto(f"{base}/assets/{e.key_path}")
    expect(labelled(page, "Row count")).to_have_text(re.compile(rf"^Row count\s*{re.escape(f'{rows:,}')}$"))

    columns = page.get_by_role("table").filter(has=page.get_by_role("cell", name="Column name", exact=True))
    for name, type_ in e.columns:
        row = columns.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))
        expect(row).to_have_count(1)
        expect(row.get_by_role("cell").nth(1)).to_contain_text(type_)
    expect(columns.get_by_role("row")).to_have_count(len(e.columns) + 1)  # and the header

    loaded = page.get_by_role("row").filter(has=page.get_by_role("cell", name="loaded_rows", exact=True))
    expect(loaded.get_by_role("cell").last).to_have_text(str(rows))

    lineage = page.get_by_role("row").filter(has=page.get_by_role("cell", name="column_lineage", exact=True))
    expect(lineage.first).to_contain_text("column_lineage")
    # the column lineage table: drawn in the row, or (Dagster's choice for long Markdown) behind a button
    button = lineage.first.get_by_text("[Show Markdown]")
    if button.count():
        button.click()
    scope = page.get_by_role("dialog") if button.count() else lineage.first
    expect(scope).to_contain_text("comes from")
    for name, _ in e.columns:
        expect(scope).to_contain_text(f"sqlite/{e.table}.{name}")
    shoot(page, shot.with_name(shot.stem + "-column-lineage-table.png"))
    if button.count():
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_have_count(0)

    upstream = labelled(page, "Upstream assets")
    for key_path in e.upstream:
        expect(upstream.locator(f'a[href="/assets/{key_path}"]')).to_have_count(1)

    compute = page.get_by_role("button", name=re.compile(r"Compute details"))
    expect(compute).to_be_visible()
    if compute.get_attribute("aria-expanded") != "true":  # collapsed by default
        compute.click()
    expect(labelled(page, "Code version")).to_contain_text(e.code_version)
    shoot(page, shot)


def assert_column_lineage(page, base: str, run_id: str, e: Expected, source_columns: list[str], shot: Path):
    """The materialization's dagster/column_lineage, as the run's log shows it: every migrated column
    comes from the column of the same name of the app's SQLite table."""
    step = f"postgres__{e.table}"
    if e.table in fan_out_setting().tables:  # loaded by several steps: the last one materializes it
        step += f".{e.table}__publish"
    page.goto(f"{base}/runs/{run_id}?logs=step%3A{step}")
    label = page.get_by_role("cell", name="dagster/column_lineage", exact=True)
    expect(label.first).to_be_visible()
    row = page.get_by_role("row").filter(has=label).last  # the ASSET_MATERIALIZATION event
    row.get_by_text("[Show JSON]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("columnDeps")
    shoot(page, shot)
    text = dialog.inner_text()
    lineage = json.loads(text[text.index("[") : text.rindex("]") + 1])
    shown = {
        entry["columnName"]: [("/".join(d["assetKey"]["path"]), d["columnName"]) for d in entry["columnDeps"]]
        for entry in lineage
    }
    migrated = [name for name, _ in e.columns if name in source_columns]
    assert shown == {c: [(f"sqlite/{e.table}", c)] for c in migrated}
    page.keyboard.press("Escape")


NODE_BOXES = """() => [...document.querySelectorAll('foreignObject')].flatMap(box => {
    const name = box.querySelector('[data-tooltip]');
    const r = box.getBoundingClientRect();
    return name ? [[name.getAttribute('data-tooltip'), r.x, r.y, r.x + r.width, r.y + r.height]] : [];
})"""


def assert_upstream_lineage(page, base: str, e: Expected, shot: Path) -> None:
    """The Lineage tab, two levels upstream: the app's SQLite table and the snapshot (group "source")
    feed this table, after the tables it references (group "target")."""
    page.goto(f"{base}/assets/{e.key_path}?view=lineage&lineageScope=upstream&lineageDepth=2")
    expect(page.locator('foreignObject [data-tooltip="snapshot"]')).to_have_count(1)
    expect(page.locator(f'foreignObject [data-tooltip="{e.table}"]')).to_have_count(2)
    shoot(page, shot)
    boxes: dict[str, list[tuple[float, ...]]] = {}
    for name, *box in page.evaluate(NODE_BOXES):
        boxes.setdefault(name, []).append(tuple(box))
    groups = {g: max(boxes[g], key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) for g in ("source", "target")}

    def in_group(name: str, group: str) -> bool:
        g = groups[group]
        return any(
            g[0] <= b[0] and g[1] <= b[1] and b[2] <= g[2] and b[3] <= g[3] for b in boxes.get(name, [])
        )

    assert in_group(e.table, "source"), f"sqlite/{e.table} not drawn upstream: {boxes}"
    assert in_group("snapshot", "source"), boxes
    assert in_group(e.table, "target"), boxes
    for key_path in e.upstream:
        group = {"sqlite": "source", "postgres": "target"}[key_path.split("/")[0]]
        assert in_group(key_path.rsplit("/", 1)[-1], group), (key_path, boxes)


# --- the test --------------------------------------------------------------------------------------------


def assert_cli_run_and_quarantine_preview(page, base: str, env: dict[str, str], source: Path, shot: Path):
    """A run started from the command line shows in the UI (same instance), and a tweet the value rules
    refuse is previewed on the tweets page: its key, column, value and reason."""
    with sqlite3.connect(source) as db:
        user = db.execute("SELECT id FROM users ORDER BY rowid LIMIT 1").fetchone()[0]
        db.execute(
            "INSERT INTO tweets (id, user_id, text, created_at) VALUES ('bad-ui-1', ?, 'x', 'someday')",
            (user,),
        )
    db.close()
    cli = Path(sys.executable).with_name("migration-pipeline")
    done = subprocess.run(
        [str(cli), "migrate", "tweets"], env=env, cwd=CHECKOUT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    run_id = next(line for line in done.stdout.splitlines() if "succeeded (run" in line).split("(run ")[1][
        :-1
    ]
    page.goto(f"{base}/runs/{run_id}")
    expect(page.get_by_text("Success").first).to_be_visible()
    shoot(page, shot.with_name(shot.stem + "-cli-run.png"))
    page.goto(f"{base}/assets/postgres/tweets")
    preview = page.get_by_role("row").filter(
        has=page.get_by_role("cell", name="quarantine_preview", exact=True)
    )
    button = preview.first.get_by_text("[Show Markdown]")
    if button.count():
        button.click()
    scope = page.get_by_role("dialog") if button.count() else preview.first
    expect(scope).to_contain_text("1 quarantined rows")
    expect(scope).to_contain_text("bad-ui-1")
    expect(scope).to_contain_text("someday")
    shoot(page, shot)


@pytest.mark.timeout(600)  # about 225 s alone on 2 cores: two migrations, dagster dev, Chromium
def test_operator_migrates_and_inspects_the_proof_in_the_ui(server, database, settings, catalog):
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    require(sync_playwright is not None, "playwright is not installed: pip install -e '.[dev]'")
    artifacts = artifacts_dir()
    expected = expected_assets(catalog)
    source = clean_source(settings.sqlite_path)
    with sqlite3.connect(source) as db:
        source_columns = {
            e.table: [row[1] for row in db.execute(f"PRAGMA table_info({e.table})")] for e in expected
        }

    instance_db = f"test_ui_instance_{uuid.uuid4().hex[:8]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG_", "SQLITE_", "DAGSTER_", "MONITOR_", "REVERIFY_"))
    }
    env.update(
        {
            "SQLITE_PATH": str(source),
            "PG_DATABASE": database,
            # Empty values win over a developer's .env.migration: the target stays the embedded server.
            **dict.fromkeys(("PG_DSN", "PG_HOST", "PG_PORT", "PG_USER", "PG_PASSWORD"), ""),
            "REVERIFY_SCHEDULE": "off",  # no scheduled run during the test
        }
    )
    expect.set_options(timeout=UI_TIMEOUT_MS)
    try:
        env.update(instance_env(settings, instance_db))  # DAGSTER_HOME=dagster_home/, DAGSTER_PG_*
        with (
            dagster_dev(env, artifacts / "dagster-dev.log") as (base, repository),
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                group_url = f"{base}/locations/{repository}/asset-groups/target/lineage"
                assert_graph_in_load_order(
                    page, group_url, expected, catalog, artifacts / "01-asset-graph.png"
                )
                run_id = launch_materialize_all(page, base, artifacts / "02-materialize-all-launched.png")
                assert_run_succeeds(
                    page, base, run_id, artifacts / "03-run-started.png", artifacts / "04-run-succeeded.png"
                )
                assert_checks_green_in_graph(page, group_url, expected, artifacts / "05-checks-green.png")
                with psycopg.connect(**{**server, "dbname": database}) as conn:
                    rows = {
                        e.table: conn.execute(
                            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(e.table))
                        ).fetchone()[0]
                        for e in expected
                    }
                assert all(rows.values()), rows
                for e in expected:
                    assert_overview(page, base, e, rows[e.table], artifacts / f"{e.table}-1-overview.png")
                    assert_checks_tab(page, base, e, artifacts / f"{e.table}-2-checks.png")
                    assert_column_lineage(
                        page,
                        base,
                        run_id,
                        e,
                        source_columns[e.table],
                        artifacts / f"{e.table}-3-column-lineage.png",
                    )
                tweets = next(e for e in expected if e.table == "tweets")
                assert_upstream_lineage(page, base, tweets, artifacts / "tweets-4-lineage.png")
                assert_cli_run_and_quarantine_preview(
                    page, base, env, source, artifacts / "tweets-5-quarantine-preview.png"
                )
            except BaseException:
                with suppress(Exception):
                    shoot(page, artifacts / "failure.png")
                raise
            finally:
                browser.close()
    finally:
        expect.set_options(timeout=5_000)
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(instance_db))
            )
