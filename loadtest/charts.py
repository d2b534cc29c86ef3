"""Charts of a run, drawn with matplotlib (the ``loadtest`` extra): throughput, p99 and
connections/errors over time, the HdrHistogram-style percentile distribution, and the servers'
RSS, CPU and open files over time. Each figure is rendered to PNG (a file beside the HTML) and to
SVG (inlined in the HTML page, which stays self-contained).

matplotlib is imported lazily: without it (:func:`available` is False) the report has tables only.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Fewer time-series rows than this and the run is too short to chart over time.
MIN_CHART_ROWS = 5
_PERCENTILE_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999)


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def per_bucket_label(width: float) -> tuple[str, float]:
    """How a count per bucket is shown: per second for buckets of a second or more, else per
    bucket as counted (a sub-second count scaled to a second would be an extrapolation)."""
    if width >= 1.0:
        return "per second", 1.0 / width
    return f"per {width * 1000:.0f} ms", 1.0


def _figure(height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(11, height), layout="constrained")


def run_figure(result: dict[str, Any]) -> Figure:
    """The run at a glance: over time (when long enough) and the latency distribution."""
    series: list[dict[str, Any]] = result.get("series", [])
    charted = len(series) >= MIN_CHART_ROWS
    figure = _figure(7.5 if charted else 3.8)
    axes = figure.subplots(2 if charted else 1, 2, squeeze=False)
    if charted:
        _throughput(axes[0][0], series, float(result.get("series_bucket_s", 1.0)))
        _p99(axes[0][1], series)
        _connections(axes[1][0], series)
        _distribution(axes[1][1], result.get("distribution", []))
    else:
        axis = axes[0][0]
        axis.axis("off")
        axis.text(0.02, 0.5, f"The run was too short to chart over time\n({len(series)} time bucket(s) of "
                  f"{float(result.get('series_bucket_s', 0)) * 1000:.0f} ms).", va="center")  # fmt: skip
        _distribution(axes[0][1], result.get("distribution", []))
    figure.suptitle(f"chat-loadtest, {result.get('driver', '')}, {result.get('started_at', '')}")
    return figure


def _times(series: Sequence[dict[str, Any]]) -> list[float]:
    return [float(row["t"]) for row in series]


def _throughput(axis: Axes, series: Sequence[dict[str, Any]], width: float) -> None:
    label, scale = per_bucket_label(width)
    t = _times(series)
    axis.plot(t, [row["sent"] * scale for row in series], label="sent", linewidth=1)
    axis.plot(t, [row["delivered"] * scale for row in series], label="delivered", linewidth=1)
    axis.set_title(f"messages {label}")
    axis.set_xlabel("time since load started (s)")
    axis.set_ylabel(f"messages {label}")
    axis.legend(loc="lower right")
    axis.grid(alpha=0.3)


def _p99(axis: Axes, series: Sequence[dict[str, Any]]) -> None:
    points = [(float(row["t"]), float(row["p99_ms"])) for row in series if row.get("p99_ms") is not None]
    axis.plot([p[0] for p in points], [p[1] for p in points], color="tab:red", linewidth=1)
    axis.set_title("end-to-end latency, p99 of each time bucket")
    axis.set_xlabel("time since load started (s)")
    axis.set_ylabel("latency (ms)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)


def _connections(axis: Axes, series: Sequence[dict[str, Any]]) -> None:
    t = _times(series)
    axis.step(t, [row.get("connections") or 0 for row in series], where="post", label="open connections")
    axis.set_title("open connections and errors")
    axis.set_xlabel("time since load started (s)")
    axis.set_ylabel("open connections")
    axis.set_ylim(bottom=0)
    errors = axis.twinx()
    errors.bar(t, [row["errors"] for row in series], width=(t[1] - t[0]) if len(t) > 1 else 1.0,
               color="tab:red", alpha=0.6, align="edge", label="errors")  # fmt: skip
    errors.set_ylabel("errors per time bucket", color="tab:red")
    errors.set_ylim(bottom=0, top=max(1, *(row["errors"] for row in series)) * 1.2)
    axis.grid(alpha=0.3)


def _distribution(axis: Axes, points: Sequence[dict[str, float]]) -> None:
    """Latency against percentile, x = 1/(1-p) on a log scale, as HdrHistogram's plotter does."""
    axis.set_title("end-to-end latency by percentile")
    if not points:
        axis.text(0.5, 0.5, "no message was delivered", ha="center", transform=axis.transAxes)
        return
    top = max(point["percentile"] for point in points if point["percentile"] < 100.0)
    xs = [1.0 / (1.0 - min(point["percentile"], top) / 100.0) for point in points]
    axis.plot(xs, [point["ms"] for point in points], color="tab:blue", marker=".")
    axis.set_xscale("log")
    ticks = [p for p in _PERCENTILE_TICKS if p <= top + 1e-9] or [0.0]
    axis.set_xticks([1.0 / (1.0 - p / 100.0) for p in ticks], [f"{p:g}%" for p in ticks])
    axis.minorticks_off()
    axis.set_xlabel("percentile")
    axis.set_ylabel("latency (ms)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)


def servers_figure(servers: dict[str, Any]) -> Figure:
    """Each server process's RSS, CPU and open files over time, the services on the left and the
    data stores (whose scale would flatten them) on the right; warm-up shaded."""
    from loadtest.servers import DATA_STORES

    processes = servers.get("processes", [])
    columns = [
        ("services", [p for p in processes if p["name"] not in DATA_STORES]),
        ("data stores (not judged)", [p for p in processes if p["name"] in DATA_STORES]),
    ]
    columns = [column for column in columns if column[1]]
    figure = _figure(9.0)
    axes = figure.subplots(3, len(columns), sharex=True, squeeze=False)
    warmup = float(servers.get("warmup_s", 0.0))
    rows = (("rss_bytes", "resident memory (MiB)", 1 / 2**20), ("cpu_percent", "CPU (% of one core)", 1.0),
            ("fds", "open file descriptors", 1.0))  # fmt: skip
    for col, (title, group) in enumerate(columns):
        for row, (key, label, scale) in enumerate(rows):
            axis = axes[row][col]
            for process in group:
                samples = process["samples"]
                axis.plot([s["t"] for s in samples], [s[key] * scale for s in samples], label=process["name"],
                          linewidth=1)  # fmt: skip
            axis.set_ylabel(label)
            axis.grid(alpha=0.3)
            axis.set_ylim(bottom=0)
            if warmup > 0:
                axis.axvspan(0, warmup, color="0.9", zorder=0)
        axes[0][col].set_title(title)
        axes[0][col].legend(loc="lower right", fontsize="small", ncols=2)
        axes[-1][col].set_xlabel("time since sampling started (s)")
    figure.suptitle("server processes over time" + (" (grey: warm-up, not judged for leaks)" if warmup else ""))
    return figure


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    # Inline in HTML: drop the XML prolog and DOCTYPE, keep the <svg> element.
    return text[text.index("<svg"):]
