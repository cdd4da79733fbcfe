"""The verdict of an app_performance run, for the app's owner: a Markdown table and a chart.

In:  the run's measurements (app_performance.py) and the PostgreSQL statements' plans.
Out: :func:`throughput` the whole workload's operations per second on each backend and their ratio;
     :func:`compare` pairs each operation and concurrency across backends (PostgreSQL's p95 as a ratio
     to SQLite's); :func:`markdown` the verdict: which operations are equal or better
     on PostgreSQL, which are slower and by how much, with what an owner could change (an index, a query
     form: recommendations only, ``schema/`` stays the seed's), the errors, each plan; :func:`chart` a PNG
     of p95 latency per operation and backend at each concurrency (matplotlib, no display needed).
Fails: never on missing numbers (an operation that did not run shows as such).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

# "equal" allows this much: two runs of the same backend differ by about as much on this machine
TOLERANCE = 1.10
FEW = 20  # fewer measured operations than this: its percentiles say little

ADVICE = {
    "tweets_in_range": "Served by idx_tweets_user_created (SQLite has no index but the key: it scans every tweet).",
    "non_reply_tweets": "Served by idx_tweets_user_created; a partial index ON tweets (user_id) WHERE NOT is_reply "
    "would skip the replies (an app-side change, not in schema/).",
    "search_tweets": "PostgreSQL also walks the primary key and stops at the 20th match (see the plan), but "
    "computes to_tsvector for every tweet it passes, where LIKE compares bytes: the GIN index "
    "cannot give id order. Ask for date or relevance order (the GIN index then finds the "
    "matches; SQLite would scan every tweet), or keep the tsvector in a column (an app-side "
    "change, not in schema/).",
    "tweets_with_hashtag": "metadata @> tests every tweet it passes (schema/ has no index on metadata): a GIN index ON tweets "
    "USING gin (metadata jsonb_path_ops) serves @> (an app-side change, not in schema/).",
    "popular_users": "Scans every profile: an expression index on ((profile_data->>'followers')::numeric) would "
    "serve it, if the app asks this often.",
    "completion_stats": "Counts every row: a counter maintained by the app, or an estimate, if it matters.",
    "referrer_stats": "Two index lookups (idx_referral_tracking_referrer, idx_referral_codes_owner): the time is "
    "the round trip.",
    "save_tweets": "A network round trip and a commit where SQLite writes in-process: larger batches (or "
    "several in one transaction) amortise both.",
    "save_profile": "A round trip and a commit per profile: batch the scraper's profiles in one statement if it"
    " matters.",
    "update_funnel": "One atomic jsonb || statement (no read-modify-write, no lost update): a round trip and a "
    "commit.",
    "track_referral": "One statement with data-modifying CTEs: one round trip, one commit.",
    "enqueue_job": "A round trip and a commit per job: enqueue a user's jobs in one statement if it matters.",
    "claim_job": "A round trip and a commit per claim (SKIP LOCKED: workers never wait for each other); "
    "claim several jobs at once if it matters.",
    "job_progress": "A round trip and a commit per chunk: report progress every few chunks if it matters.",
}


@dataclass(frozen=True)
class Pair:
    operation: str
    concurrency: int
    sqlite: object | None  # Measurement
    postgresql: object | None

    @property
    def p95_ratio(self) -> float | None:
        """PostgreSQL's p95 over SQLite's (below 1: faster on PostgreSQL)."""
        a, b = self.sqlite, self.postgresql
        if not a or not b or not a.p95_ms or b.p95_ms is None:
            return None
        return b.p95_ms / a.p95_ms

    @property
    def equal_or_better(self) -> bool:
        ratio = self.p95_ratio
        return ratio is not None and ratio <= TOLERANCE and (self.postgresql.errors == 0)


def compare(rows: Sequence) -> list[Pair]:
    by = {(m.backend, m.operation, m.concurrency): m for m in rows}
    keys = sorted({(m.concurrency, m.operation) for m in rows})
    return [Pair(op, c, by.get(("sqlite", op, c)), by.get(("postgresql", op, c))) for c, op in keys]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def throughput(rows: Sequence) -> list[str]:
    """Per concurrency: the whole workload's operations per second on each backend, and the ratio."""
    lines = [
        "| concurrency | SQLite ops/s | PostgreSQL ops/s | PostgreSQL / SQLite | errors SQLite / PostgreSQL |",
        "|---:|---:|---:|---:|---|",
    ]
    for level in sorted({m.concurrency for m in rows}):
        rate = {
            b: sum(m.ops / m.seconds for m in rows if m.backend == b and m.concurrency == level)
            for b in ("sqlite", "postgresql")
        }
        errors = {b: sum(m.errors for m in rows if m.backend == b and m.concurrency == level) for b in rate}
        ratio = rate["postgresql"] / rate["sqlite"] if rate["sqlite"] else None
        lines.append(
            f"| {level} | {rate['sqlite']:,.1f} | {rate['postgresql']:,.1f} | {_x(ratio)} | "
            f"{errors['sqlite']} / {errors['postgresql']} |"
        )
    return lines


def table(pairs: Sequence[Pair]) -> list[str]:
    lines = [
        "| concurrency | operation | SQLite ops/s | PostgreSQL ops/s | SQLite p50 / p95 / p99 ms | "
        "PostgreSQL p50 / p95 / p99 ms | p95 PG/SQLite | errors SQLite / PG |",
        "|---:|---|---:|---:|---|---|---:|---|",
    ]
    for p in pairs:
        a, b = p.sqlite, p.postgresql
        rate = lambda m: "-" if m is None else f"{m.ops / m.seconds:,.1f}"  # noqa: E731
        pct = lambda m: "-" if m is None else f"{_ms(m.p50_ms)} / {_ms(m.p95_ms)} / {_ms(m.p99_ms)}"  # noqa: E731
        errors = f"{a.errors if a else '-'} / {b.errors if b else '-'}"
        few = " (few samples)" if min(a.ops if a else 0, b.ops if b else 0) < FEW else ""
        lines.append(
            f"| {p.concurrency} | {p.operation} | {rate(a)} | {rate(b)} | {pct(a)} | {pct(b)} | {_x(p.p95_ratio)}{few} | {errors} |"
        )
    return lines


def markdown(rows: Sequence, explained: dict[str, str], chart_uri: str | None = None) -> str:
    pairs = compare(rows)
    better = [p for p in pairs if p.equal_or_better]
    slower = sorted((p for p in pairs if not p.equal_or_better), key=lambda p: -(p.p95_ratio or 0))
    pg_errors = sum(m.errors for m in rows if m.backend == "postgresql")
    sqlite_errors = sum(m.errors for m in rows if m.backend == "sqlite")
    lines = [
        "# The app on SQLite and on PostgreSQL",
        "",
        "The whole workload, in the app's proportions (each worker waits for its operation, as the app does):",
        "",
        *throughput(rows),
        "",
        f"Per operation, **{len(better)} of {len(pairs)}** operation × concurrency pairs are equal or better on PostgreSQL "
        f"(p95 latency at most {TOLERANCE:.2f}× SQLite's, no error); PostgreSQL errors: {pg_errors}, "
        f"SQLite errors: {sqlite_errors}.",
        "",
    ]
    if slower:
        lines += [
            "Slower on PostgreSQL (p95, PostgreSQL / SQLite), and what the app's owner could change:",
            "",
        ]
        lines += [
            f"- {p.operation} at concurrency {p.concurrency}: {_x(p.p95_ratio)}"
            + (f" ({p.postgresql.errors} errors)" if p.postgresql and p.postgresql.errors else "")
            + (f" (only {p.sqlite.ops} on SQLite)" if p.sqlite and p.sqlite.ops < FEW else "")
            + f". {ADVICE.get(p.operation, '')}"
            for p in slower
        ]
        lines.append("")
    if chart_uri:
        lines += [f"![p95 latency per operation]({chart_uri})", ""]
    lines += table(pairs)
    errors = {(m.backend, m.operation, m.concurrency): m.error_kinds for m in rows if m.error_kinds}
    if errors:
        lines += ["", "Errors:", ""]
        lines += [f"- {b} {op} at {c}: {kinds}" for (b, op, c), kinds in sorted(errors.items())]
    lines += ["", "## PostgreSQL plans of the statements", ""]
    for name, plan in explained.items():
        lines += [f"### {name}", "", "```", plan, "```", ""]
    return "\n".join(lines)


def chart(rows: Sequence) -> bytes:
    """A PNG: per concurrency, p95 latency (ms, log scale) of each operation on both backends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = compare(rows)
    levels = sorted({p.concurrency for p in pairs})
    operations = sorted({p.operation for p in pairs})
    fig, axes = plt.subplots(
        1, len(levels), figsize=(5 * len(levels), 0.45 * len(operations) + 1.5), sharey=True
    )
    axes = axes if len(levels) > 1 else [axes]
    for ax, level in zip(axes, levels, strict=True):
        by = {p.operation: p for p in pairs if p.concurrency == level}
        ys = range(len(operations))
        for offset, backend, color in ((-0.2, "sqlite", "#888888"), (0.2, "postgresql", "#336791")):
            values = [getattr(by.get(op), backend, None) for op in operations]
            ax.barh([y + offset for y in ys], [(m.p95_ms or 0) if m else 0 for m in values], height=0.4,
                    color=color, label=backend)  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(f"concurrency {level}")
        ax.set_xlabel("p95 latency, ms (log)")
        ax.set_yticks(list(ys), operations)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return out.getvalue()
