"""Results of a run: a JSON file (config, summary, per-second series), a self-contained HTML page
(inline SVG charts, no external assets) and a summary table on the console."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

LATENCY_COLUMNS = ("p50", "p90", "p99", "p99.9", "max")
_WIDTH, _HEIGHT, _PAD = 720, 260, 48


def result_stem(result: dict[str, Any]) -> str:
    stamp = re.sub(r"[^0-9T]", "", str(result.get("started_at", "")))[:15] or "run"
    return f"loadtest-{result.get('driver', 'run')}-{stamp}"


def write_results(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.html`` into ``out_dir`` (made if missing), never
    overwriting an earlier run's files; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = result_stem(result)
    candidate, n = stem, 1
    while (out_dir / f"{candidate}.json").exists() or (out_dir / f"{candidate}.html").exists():
        n += 1
        candidate = f"{stem}-{n}"
    json_path, html_path = out_dir / f"{candidate}.json", out_dir / f"{candidate}.html"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    html_path.write_text(render_html(result))
    return json_path, html_path


# --- console ------------------------------------------------------------------------------------


def summary_tables(result: dict[str, Any]) -> list[Table]:
    summary = result["summary"]
    counts = Table(title="delivery", title_justify="left")
    names = ("sent", "acked", "delivered", "lost", "duplicated", "misrouted", "unexpected")
    for name in (*names, "errors", "msgs/s"):
        counts.add_column(name, justify="right")
    rate = summary["delivered_per_s"]
    errors = sum(summary["errors"].values())
    counts.add_row(*(str(summary[name]) for name in names), str(errors), "-" if rate is None else f"{rate:,.0f}")

    latency = Table(title="latency (ms)", title_justify="left")
    latency.add_column("")
    for column in ("count", "mean", *LATENCY_COLUMNS):
        latency.add_column(column, justify="right")
    for kind, values in summary["latency_ms"].items():
        latency.add_row(kind, *(_ms(values.get(column)) for column in ("count", "mean", *LATENCY_COLUMNS)))
    tables = [counts, latency]
    if summary["errors"]:
        by_code = Table(title="errors", title_justify="left")
        for column in ("code", "count", "first message"):
            by_code.add_column(column, justify="right" if column == "count" else "left")
        examples = summary.get("error_examples", {})
        for code, n in summary["errors"].items():
            by_code.add_row(code, str(n), examples.get(code, ""))
        tables.append(by_code)
    return tables


def _ms(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_summary(result: dict[str, Any], console: Console) -> None:
    config = result["config"]
    shape = f"rate {config['rate']:g}/s" if config.get("rate") else f"window {config['window']}"
    amount = f"{config['messages']} messages each" if config.get("messages") else f"{config['duration']:g} s"
    console.print(
        f"{result['driver']}: {config['users']} users on {len(config['urls'])} URL(s), {shape}, {amount}; "
        f"setup {result['setup_s']:.1f} s, load {result['summary']['elapsed_s']:.1f} s"
        + ("" if result.get("completed", True) else " [bold red](hard deadline hit)[/]")
    )
    for table in summary_tables(result):
        console.print(table)


# --- HTML ---------------------------------------------------------------------------------------


def render_html(result: dict[str, Any]) -> str:
    summary = result["summary"]
    series = result["series"]
    title = f"chat-loadtest {result.get('driver', '')} {result.get('started_at', '')}"
    latency = summary["latency_ms"]
    bars = bar_chart(
        "latency percentiles (ms)",
        list(LATENCY_COLUMNS),
        {kind: [values.get(column) for column in LATENCY_COLUMNS] for kind, values in latency.items()},
    )
    throughput = line_chart("delivered msgs/s", [(row["t"], row["delivered"]) for row in series])
    p99 = line_chart("end-to-end p99 per second (ms)", [(row["t"], row["p99_ms"]) for row in series])
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(json.dumps(value))}</td></tr>"
        for key, value in {**summary, "config": result["config"]}.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
svg {{ display: block; margin: 1em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>ok: <b>{html.escape(str(result.get("ok")))}</b>, completed: {html.escape(str(result.get("completed")))},
setup {result.get("setup_s")} s</p>
{bars}
{throughput}
{p99}
<table>{rows}</table>
</body></html>
"""


def _scale(maximum: float) -> float:
    return maximum if maximum > 0 else 1.0


def line_chart(title: str, points: Sequence[tuple[float, float | None]]) -> str:
    """An inline SVG polyline of ``(x, y)`` points; ``None`` values are skipped."""
    known = [(x, y) for x, y in points if y is not None]
    top = _scale(max((y for _, y in known), default=0.0))
    right = _scale(max((x for x, _ in known), default=0.0))
    inner_w, inner_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD

    def at(x: float, y: float) -> str:
        return f"{_PAD + x / right * inner_w:.1f},{_HEIGHT - _PAD - y / top * inner_h:.1f}"

    line = " ".join(at(x, y) for x, y in known)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" role="img">'
        f'<title>{html.escape(title)}</title>'
        f'<text x="{_PAD}" y="20" font-weight="bold">{html.escape(title)}</text>'
        f'{_axes(top, f"{right:g} s")}'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{line}"/></svg>'
    )


def bar_chart(title: str, labels: Sequence[str], groups: dict[str, list[float | None]]) -> str:
    """An inline SVG of grouped bars: one group per label, one bar per entry of ``groups``."""
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
    top = _scale(max((v for values in groups.values() for v in values if v is not None), default=0.0))
    inner_w, inner_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD
    slot = inner_w / max(len(labels), 1)
    bar = slot * 0.8 / max(len(groups), 1)
    parts: list[str] = []
    for i, label in enumerate(labels):
        x0 = _PAD + i * slot + slot * 0.1
        parts.append(f'<text x="{x0:.1f}" y="{_HEIGHT - _PAD + 16}">{html.escape(label)}</text>')
        for j, values in enumerate(groups.values()):
            value = values[i] if i < len(values) else None
            if value is None:
                continue
            height = value / top * inner_h
            x, y = x0 + j * bar, _HEIGHT - _PAD - height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.9:.1f}" height="{height:.1f}" '
                f'fill="{colors[j % len(colors)]}"><title>{value:g}</title></rect>'
            )
    legend = "".join(
        f'<text x="{_WIDTH - 160}" y="{20 + 16 * j}" fill="{colors[j % len(colors)]}">{html.escape(name)}</text>'
        for j, name in enumerate(groups)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" role="img">'
        f'<title>{html.escape(title)}</title>'
        f'<text x="{_PAD}" y="20" font-weight="bold">{html.escape(title)}</text>'
        f'{_axes(top, "")}{"".join(parts)}{legend}</svg>'
    )


def _axes(top: float, right_label: str) -> str:
    bottom = _HEIGHT - _PAD
    return (
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{bottom}" stroke="#888"/>'
        f'<line x1="{_PAD}" y1="{bottom}" x2="{_WIDTH - _PAD}" y2="{bottom}" stroke="#888"/>'
        f'<text x="4" y="{_PAD + 4}">{top:,.4g}</text><text x="4" y="{bottom}">0</text>'
        f'<text x="{_WIDTH - _PAD - 30}" y="{bottom + 16}">{html.escape(right_label)}</text>'
    )
