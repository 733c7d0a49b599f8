"""bench/RESULTS.md from the figures of one run (bench/results.json): short tables, then the
targets with where the time goes for each missed one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench import exports, fleet, keepalive, nodes, two_sources, zones


def find(
    records: list[dict[str, Any]], size: str, setup: str, measure: str, days: int | str
) -> dict[str, Any] | None:
    key = (size, setup, measure, days)
    return next((r for r in records if (r["size"], r["setup"], r["measure"], r["days"]) == key), None)


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value}x"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value}"


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def headline_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Backend time per measure, SLS-like set-up (ms)",
        "",
        "`workflow_execution` with only the plain b-tree indexes `(tenant_id, app_id, triggered_from, "
        "__time__)` and `(id, log_version)`, as SLS effectively offers: every other column comes from "
        "the table's rows. Busiest app, `app-run`, ranges ending at the data's now, UTC.",
        "",
        "| size | measure | days | ours | our windowed | Dify windowed | Dify actual | scan "
        "| Dify windowed/ours | Dify actual/ours | ours/scan |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["records"]:
        if r["setup"] == "sls_like":
            lines.append(
                f"| {r['size']} | {r['measure']} | {r['days']} | {r['ours_ms']} | {r['windowed_ms']} "
                f"| {r['dify_windowed_ms']} | {_ms(r['dify_actual_ms'])} | {r['scan_ms']} "
                f"| {_x(r['dify_windowed_over_ours'])} | {_x(r['dify_actual_over_ours'])} "
                f"| {_x(r['ours_over_scan'])} |"
            )
    lines += [
        "",
        "Dify windowed: the latest version of every run by ROW_NUMBER() over the app's whole history, "
        "then the measure by created day: what an exact reader of the LogStore needs; the targets are "
        "ratios against it. Dify actual: the SQL Dify sends (finished versions by write day), fast but "
        "not exact (next table); for counts by status it reads the app's whole history whatever the "
        "range, since Dify does not apply the range there. `run_page_*` time the plan's page query over "
        "the app's whole history (the service first tries the last day, then 8 days: see "
        "`run_list_first_page` under Two sources); Dify actual has no deep page (it does not implement "
        "the cursor).",
    ]
    return lines


def error_lines(results: dict[str, Any]) -> list[str]:
    size = results["largest"]
    lines = [
        f"## How far Dify actual is from the truth ({size})",
        "",
        "Truth: our answer (property-tested exact), by created day in UTC. Per measure and range: the "
        "days (for counts: statuses) whose value differs, the absolute error summed over them divided "
        "by the true total, and the worst one.",
        "",
        "| measure | days | differing | abs error / true total | worst: Dify vs truth |",
        "|---|---|---|---|---|",
    ]
    for e in results["dify_actual_errors"]:
        if e["size"] != size:
            continue
        share = "—" if e["abs_error_share"] is None else f"{e['abs_error_share'] * 100:.1f} %"
        worst = (
            f"{e['worst_key']}: {_count(e['worst_dify'])} vs {_count(e['worst_truth'])}"
            if e["differing"]
            else "—"
        )
        lines.append(
            f"| {e['measure']} | {e['days']} | {e['differing']} of {e['keys']} | {share} | {worst} |"
        )
    lines += [
        "",
        "Dify actual buckets finished *versions* by *write* day: a retried run's two finished versions "
        "both count (tokens twice), unfinished runs are missing, a run finishing after midnight lands "
        "on the next day, runs created before the range but finished in it are counted; its `running` "
        "count is every run that ever had a running version.",
    ]
    return lines


def covering_lines(results: dict[str, Any]) -> list[str]:
    size = results["largest"]
    lines = [
        f"## Covering-index set-up, the project's own ({size}, ms)",
        "",
        "`queries/schema.sql`: the statistics index carries every column the statistics read "
        "(index-only scans), plus `(id, log_version)`.",
        "",
        "| measure | days | ours | our windowed | Dify windowed | Dify actual | scan "
        "| Dify windowed/ours | SLS-like ours / covering ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["records"]:
        if r["setup"] != "covering" or r["size"] != size:
            continue
        sls = find(results["records"], size, "sls_like", r["measure"], r["days"])
        gain = round(sls["ours_ms"] / r["ours_ms"], 2) if sls else None
        lines.append(
            f"| {r['measure']} | {r['days']} | {r['ours_ms']} | {r['windowed_ms']} | {r['dify_windowed_ms']} "
            f"| {_ms(r['dify_actual_ms'])} | {r['scan_ms']} | {_x(r['dify_windowed_over_ours'])} "
            f"| {_x(gain)} |"
        )
    return lines


def refresh_lines(results: dict[str, Any]) -> list[str]:
    every = list(results["refresh"].values())
    first = every[0]
    offset = first["wall_clock_offset_s"]
    clock = f"{offset // 3600} h {offset % 3600 // 60} min {offset % 60} s"
    lines = [
        f"## Dashboard refresh through the service ({results['largest']}, SLS-like)",
        "",
        f"Grafana-style: one measure, UTC, range `now-Nd..now` with the wall clock at the data's now + "
        f"{clock} (neither edge at midnight). The first request fills the day rollups (cold); each "
        f"refresh then moves the clock on by the live cache TTL ({first['step_s']:g} s) and asks the "
        f"range again with the new now: a real refresh (outcome `partial`), never an answer-cache hit. "
        f"Median of {first['refreshes']} refreshes.",
        "",
        "| measure | range | cold ms | refresh ms | statements / refresh | rows back / refresh |",
        "|---|---|---|---|---|---|",
    ]
    for refresh in every:
        for r in refresh["ranges"]:
            lines.append(
                f"| {refresh['measure']} | now-{r['days']}d..now | {r['cold_ms']} | {r['refresh_ms']} "
                f"| {r['statements']:g} | {r['rows_back']:g} |"
            )
    lines.append("")
    for refresh in every:
        lines.append(
            f"- {refresh['measure']}: 90-day refresh / 7-day refresh **{refresh['long_over_short']}** "
            f"(target <= 1.5); Dify windowed 90-day ({refresh['dify_windowed_90d_ms']} ms) / 90-day "
            f"refresh **{refresh['dify_over_refresh_90d']}x** (target >= 100x)."
        )
    return lines


def _range_text(statement: dict[str, Any]) -> str:
    low, high = statement["range_us"]
    if low is None or high is None:
        return "no created range"
    start = datetime.fromtimestamp(low / 1e6, UTC).strftime("%Y-%m-%d %H:%M")
    return f"created {start} + {(high - low) / 3.6e9:.1f} h"


def statement_text(statement: dict[str, Any]) -> str:
    """One statement: time, its scans of workflow_execution, rows read vs needed."""
    parts = []
    if "service_ms" in statement:
        rows = statement["rows_back"]
        parts.append(
            f"{statement['service_ms']} ms in the service, {rows} row{'' if rows == 1 else 's'} back"
        )
    executed = statement["execution_ms"]
    parts.append(f"{executed} ms under EXPLAIN ANALYZE ({_range_text(statement)})")

    def share(ms: float) -> str:
        return f"{ms} ms ({ms / executed * 100:.0f} %)" if executed else f"{ms} ms"

    for scan in statement["scans"]:
        index = f" on {scan['index']}" if scan["index"] else ""
        parts.append(f"{scan['node']}{index} {share(scan['ms'])}, {scan['blocks']:,} blocks")
    parts.append(f"above the scans (grouping, parsing) {share(statement['above_scans_ms'])}")
    read, needed = statement["rows_read"], statement["rows_needed"]
    if needed:
        parts.append(f"rows read {read:,} vs needed {needed:,} ({read / needed:.1f}x)")
    else:
        parts.append(f"rows read {read:,}")
    return "; ".join(parts)


def target_lines(results: dict[str, Any]) -> list[str]:
    lines = [f"## Targets at {results['largest']} runs (SLS-like set-up)", ""]
    for target in results["targets"]:
        lines.append(f"- {target['target']}: {_verdict(target['met'])}")
        for item in target["items"]:
            if "short_ms" in item:
                detail = f"{item['ours_ms']} ms vs {item['short_ms']} ms"
            else:
                detail = f"ours {item['ours_ms']} ms vs Dify windowed {item['dify_windowed_ms']} ms"
            ceiling = (
                f"; a bare scan of its rows allows at most {item['ceiling']}x here"
                if "ceiling" in item
                else ""
            )
            lines.append(f"  - {item['what']}: {item['value']}x ({detail}{ceiling}): {_verdict(item['met'])}")
        for explained in target["where_time_goes"]:
            lines.append(f"  - where the time goes, {explained['what']}:")
            for number, statement in enumerate(explained["statements"], 1):
                lines.append(f"    {number}. {statement_text(statement)}")
    lines += ["", "Also measured:", ""]
    overhead, throughput = results["overhead"], results["throughput"]
    lines.append(
        "- Uncached service time vs the same SQL run directly (7-day daily runs): "
        f"{overhead['service_ms']} ms vs {overhead['direct_sql_ms']} ms = "
        f"{overhead['overhead'] * 100:.1f} % overhead "
        f"(at most 20 %: {_verdict(overhead['overhead'] <= 0.2)})."
    )
    lines.append(
        f"- Cached throughput vs a bare litestar route: {throughput['cached_rps']:.0f} vs "
        f"{throughput['bare_rps']:.0f} requests/s = {throughput['cached_over_bare']} (16 httpx clients on "
        f"loopback, 5 s each; at least half: {_verdict(throughput['cached_over_bare'] >= 0.5)})."
    )
    floor = [
        f"{r['measure']} {r['days']} d {r['ours_over_scan']}x"
        for r in results["records"]
        if r["size"] == results["largest"] and r["setup"] == "sls_like" and r["days"] in (7, 30)
    ]
    lines.append(f"- Ours over the scan floor at 7 and 30 days: {', '.join(floor)}.")
    loads = ", ".join(
        f"{size} {seconds} s" if seconds else f"{size} reused from bench/data"
        for size, seconds in results["load_seconds"].items()
    )
    lines.append(f"- Loading (COPY, generation and VACUUM included): {loads}.")
    return lines


def markdown(results: dict[str, Any]) -> str:
    took = f", {results['bench_seconds'] / 60:.0f} min in all" if "bench_seconds" in results else ""
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['when']} on {results['machine']}{took}. Medians; ratios from one run.",
        "",
        *headline_lines(results),
        "",
        *error_lines(results),
        "",
        *covering_lines(results),
        "",
        *refresh_lines(results),
        "",
        *target_lines(results),
        "",
        *two_sources.markdown_lines(results["two_sources"]),
        *(["", *fleet.markdown_lines(results["fleet"])] if "fleet" in results else []),
        *(["", *nodes.markdown_lines(results["node_executions"])] if "node_executions" in results else []),
    ]
    if "keep_alive" in results:
        lines += ["", *keepalive.markdown_lines(results["keep_alive"])]
    if "first_request_per_zone" in results:
        lines += ["", *zones.markdown_lines(results["first_request_per_zone"])]
    if "exports" in results:
        lines += ["", *exports.markdown_lines(results["exports"])]
    return "\n".join(lines) + "\n"
