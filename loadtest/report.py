"""Results of a run: a JSON file (config, summary, time series, distribution), a self-contained
HTML page for people (a verdict, tables with units, charts inlined as SVG), the same charts as
PNG files beside it (to paste into a README or keep as a CI artifact), and a summary on the
console."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest import charts

LATENCY_COLUMNS = ("p50", "p90", "p99", "p99.9", "max")
_LATENCY_LABELS = {"end_to_end": "end to end (send to partner's receipt)", "ack": "ack (send to the server's reply)"}
_COUNT_LABELS = {
    "sent": "messages sent",
    "acked": "acknowledged by the server",
    "delivered": "delivered to the partner",
    "lost": "lost (acknowledged, never delivered)",
    "duplicated": "delivered more than once (extra copies)",
    "misrouted": "delivered to the wrong user",
    "unexpected": "received but never sent in this run",
}


def result_stem(result: dict[str, Any]) -> str:
    stamp = re.sub(r"[^0-9T]", "", str(result.get("started_at", "")))[:15] or "run"
    return f"loadtest-{result.get('driver', 'run')}-{stamp}"


def write_results(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<stem>.json``, ``<stem>.html`` and, with matplotlib, ``<stem>.png`` (and
    ``<stem>-servers.png`` when servers were sampled) into ``out_dir`` (made if missing), never
    overwriting an earlier run's files; returns the JSON and HTML paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = result_stem(result)
    candidate, n = stem, 1
    while any(out_dir.glob(f"{candidate}.*")):
        n += 1
        candidate = f"{stem}-{n}"
    json_path, html_path = out_dir / f"{candidate}.json", out_dir / f"{candidate}.html"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    figures = _figures(result)
    for suffix, figure in figures:
        (out_dir / f"{candidate}{suffix}.png").write_bytes(charts.png(figure))
    html_path.write_text(render_html(result, [charts.svg(figure) for _, figure in figures]))
    return json_path, html_path


def _figures(result: dict[str, Any]) -> list[tuple[str, Any]]:
    if not charts.available():
        return []
    figures: list[tuple[str, Any]] = [("", charts.run_figure(result))]
    if result.get("servers", {}).get("processes"):
        figures.append(("-servers", charts.servers_figure(result["servers"])))
    return figures


# --- words --------------------------------------------------------------------------------------


def problems(result: dict[str, Any]) -> list[str]:
    """What went wrong, in words; empty when the run passed."""
    summary = result["summary"]
    found = [f"{summary[key]:,} {_COUNT_LABELS[key].split(' (')[0]}" for key in
             ("lost", "duplicated", "misrouted", "unexpected") if summary.get(key)]  # fmt: skip
    errors = sum(summary["errors"].values())
    if errors:
        found.append(f"{errors:,} failed request(s)")
    if not result.get("completed", True):
        found.append("the hard deadline (--timeout) stopped the run")
    leaks = result.get("servers", {}).get("leaks", [])
    found += [f"{leak} keeps growing" for leak in leaks]
    return found


def verdict(result: dict[str, Any]) -> str:
    found = problems(result)
    if not found:
        return "Passed: every acknowledged message was delivered exactly once, no request failed."
    return "FAILED: " + "; ".join(found) + "."


def describe_shape(result: dict[str, Any]) -> str:
    config = result["config"]
    if config.get("mode") == "crowd":
        return (f"{config['connected']:,} connected users on {len(config['urls'])} gateway URL(s), "
                f"{config['users']:,} of them talking in pairs (one message every {config['talk_every']:g} s each on "
                f"average); idle users ramped in {config['stages']} stage(s) held {config['stage_hold']:g} s each; "
                f"drain {duration(config['drain'])}.")  # fmt: skip
    pace = (f"{config['rate']:g} messages/s in total (open loop)" if config.get("rate")
            else f"up to {config['window']} un-acknowledged messages per user (closed loop)")  # fmt: skip
    amount = (f"{config['messages']:,} messages per user" if config.get("messages")
              else f"for {duration(config['duration'])}")  # fmt: skip
    return (f"{config['users']:,} users in {config['users'] // 2:,} pairs on {len(config['urls'])} gateway URL(s), "
            f"{pace}, {amount}; drain {duration(config['drain'])}, hard deadline {duration(config['timeout'])}.")


def duration(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def rate_text(summary: dict[str, Any]) -> str:
    rate = summary.get("delivered_per_s")
    if rate is None:
        return summary.get("rate_note") or "-"
    return f"{rate:,.0f} messages/s over the whole {duration(summary['elapsed_s'])} measured"


def mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def _ms(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


# --- console ------------------------------------------------------------------------------------


def summary_tables(result: dict[str, Any]) -> list[Table]:
    summary = result["summary"]
    counts = Table(title="delivery", title_justify="left")
    names = ("sent", "acked", "delivered", "lost", "duplicated", "misrouted", "unexpected")
    for name in (*names, "errors"):
        counts.add_column(name, justify="right")
    errors = sum(summary["errors"].values())
    counts.add_row(*(f"{summary[name]:,}" for name in names), f"{errors:,}")

    latency = Table(title="latency (ms)", title_justify="left")
    latency.add_column("")
    for column in ("count", "mean", *LATENCY_COLUMNS):
        latency.add_column(column, justify="right")
    for kind, values in summary["latency_ms"].items():
        latency.add_row(kind.replace("_", " "), *(_ms(values.get(column)) for column in ("count", "mean",
                                                                                        *LATENCY_COLUMNS)))
    tables = [counts, latency]
    if summary["errors"]:
        by_code = Table(title="errors", title_justify="left")
        for column in ("code", "count", "first message"):
            by_code.add_column(column, justify="right" if column == "count" else "left")
        examples = summary.get("error_examples", {})
        for code, n in summary["errors"].items():
            by_code.add_row(code, f"{n:,}", examples.get(code, ""))
        tables.append(by_code)
    for title, header, rows in _extra_tables(result):
        table = Table(title=title, title_justify="left")
        for index, column in enumerate(header):
            table.add_column(column, justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def print_summary(result: dict[str, Any], console: Console) -> None:
    console.print(f"{result['driver']}: {describe_shape(result)}", highlight=False)
    console.print(f"setup {duration(result['setup_s'])}, load {duration(result['summary']['elapsed_s'])}; "
                  f"{rate_text(result['summary'])}", highlight=False)  # fmt: skip
    for table in summary_tables(result):
        console.print(table)
    for note in _notes(result):
        console.print(note, highlight=False)
    style = "bold green" if not problems(result) else "bold red"
    console.print(f"[{style}]{html.escape(verdict(result), quote=False)}[/]")


def _notes(result: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    servers = result.get("servers")
    if servers:
        notes.append(servers.get("note", ""))
    crowd = result.get("crowd")
    if crowd:
        notes.append(crowd.get("note", ""))
    return [note for note in notes if note]


# --- tables shared by console and HTML ------------------------------------------------------------


def _extra_tables(result: dict[str, Any]) -> Iterable[tuple[str, Sequence[str], list[list[str]]]]:
    crowd = result.get("crowd")
    if crowd:
        header: tuple[str, ...] = (
            "stage", "connected", "talking", "ramp", "e2e p50", "e2e p99", "delivered", "server RSS", "server CPU",
            "RSS per idle user added", "CPU per connected user",
        )  # fmt: skip
        rows = []
        for stage in crowd["stages"]:
            latency = stage["latency_ms"]
            rows.append([
                str(stage["stage"]), f"{stage['connected']:,}", f"{stage['talking']:,}", duration(stage["ramp_s"]),
                f"{_ms(latency['p50'])} ms", f"{_ms(latency['p99'])} ms", f"{stage['delivered']:,}",
                mib(stage["servers_rss_bytes"]), f"{stage['servers_cpu_percent']:.0f} %",
                f"{stage['rss_per_user_bytes'] / 1024:.1f} KiB", f"{stage['cpu_per_user_us_per_s']:.1f} µs/s",
            ])  # fmt: skip
        yield "crowd stages", header, rows
    servers = result.get("servers")
    if servers and servers.get("processes"):
        header = ("process", "pid", "RSS first", "RSS last", "RSS trend", "open files trend", "CPU mean", "verdict")
        rows = []
        for process in servers["processes"]:
            samples, trend = process["samples"], process["trend"]
            judged = trend["verdict"] != "not judged"
            rows.append([
                process["name"], str(process["pid"]), mib(samples[0]["rss_bytes"]), mib(samples[-1]["rss_bytes"]),
                _per_hour(trend.get("rss_bytes_per_h") if judged else None, mib),
                _per_hour(trend.get("fds_per_h") if judged else None, lambda v: f"{v:+.1f}"),
                f"{process['cpu_mean_percent']:.1f} %", trend["verdict"],
            ])  # fmt: skip
        yield "server processes (trend after warm-up, Theil-Sen slope per hour)", header, rows


def _per_hour(value: float | None, fmt: Any) -> str:
    if value is None:
        return "-"
    text = fmt(value)
    return f"{'+' if value >= 0 and not text.startswith(('+', '-')) else ''}{text}/h"


# --- HTML ---------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(result: dict[str, Any], figures_svg: Sequence[str] = ()) -> str:
    summary = result["summary"]
    title = f"chat-loadtest {result.get('driver', '')} {result.get('started_at', '')}"
    passed = not problems(result)
    counts = _table(("", "messages"), ([label, f"{summary[key]:,}"] for key, label in _COUNT_LABELS.items()))
    latency = _table(
        ("latency (ms)", "count", "mean", *LATENCY_COLUMNS),
        ([_LATENCY_LABELS.get(kind, kind), *(_ms(values.get(c)) for c in ("count", "mean", *LATENCY_COLUMNS))]
         for kind, values in summary["latency_ms"].items()),
    )  # fmt: skip
    errors = ""
    if summary["errors"]:
        examples = summary.get("error_examples", {})
        errors = "<h2>Errors</h2>" + _table(
            ("code", "count", "first message"),
            ([code, f"{n:,}", examples.get(code, "")] for code, n in summary["errors"].items()),
        )
    extra = "".join(f"<h2>{html.escape(t[:1].upper() + t[1:])}</h2>{_table(h, r)}" for t, h, r in _extra_tables(result))
    notes = "".join(f"<p>{html.escape(note)}</p>" for note in _notes(result))
    figures = "\n".join(figures_svg) or (
        "<p>No charts: matplotlib is not installed (<code>pip install -e '.[local]'</code>).</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; max-width: 1150px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }}
th:first-child, td:first-child {{ text-align: left; }}
.verdict {{ font-weight: bold; color: {"#176617" if passed else "#b00020"}; }}
svg {{ display: block; margin: 1em 0; max-width: 100%; height: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="verdict">{html.escape(verdict(result))}</p>
<p>{html.escape(describe_shape(result))}</p>
<p>Setup took {html.escape(duration(result.get("setup_s")))}; the load ran
{html.escape(duration(summary["elapsed_s"]))} (from the first send to the last delivery or ack).
Throughput: {html.escape(rate_text(summary))}.</p>
<h2>Delivery</h2>
{counts}
<h2>Latency</h2>
{latency}
{errors}
{extra}
{notes}
<h2>Charts</h2>
{figures}
<p>Gateway URLs: {html.escape(", ".join(result["config"]["urls"]))}.</p>
</body></html>
"""
