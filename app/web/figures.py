"""Plotly figures built in Python from the same data the JSON twins return. Pages embed the
figure JSON in a data attribute; static/charts.js draws it with the plotly.js that ships in the
installed plotly package (no CDN). Builders are plain functions, run off the event loop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
from markupsafe import Markup

from app.datasets import DatasetStats
from app.domain import per_gpu, user_rate_at
from app.probe.stats import itl_gaps_ms
from app.probe.types import Sample
from app.schemas import ChangePointRead, CostSeries, LatencyPoint, TrendMarker, TrendPoint
from app.summary import Histogram, StepSummary

PALETTE = ["#15803d", "#2563eb", "#b45309", "#7c3aed", "#db2777", "#0891b2"]
LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "height": 320,
    "paper_bgcolor": "#ffffff",
    "plot_bgcolor": "#ffffff",
    "font": {"family": "system-ui, sans-serif", "size": 12},
    "legend": {"orientation": "h", "y": -0.25},
    "xaxis": {"gridcolor": "#e2e8f0"},
    "yaxis": {"gridcolor": "#e2e8f0", "rangemode": "tozero"},
}


def _json(fig: go.Figure) -> str:
    return str(fig.to_json())


def _layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    layout = {**LAYOUT, "title": {"text": title, "x": 0, "font": {"size": 14}}}
    layout["xaxis"] = {**LAYOUT["xaxis"], "title": {"text": x}}
    layout["yaxis"] = {**LAYOUT["yaxis"], "title": {"text": y}}
    layout.update(extra)
    return layout


def _change_shapes(changes: Sequence[ChangePointRead]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A dotted line and a label at each change point (red where it made things worse)."""
    shapes, notes = [], []
    for c in changes:
        color = "#b91c1c" if c.direction == "worse" else "#15803d"
        at = c.at.isoformat()
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": at, "x1": at, "y0": 0, "y1": 1,
                       "line": {"color": color, "dash": "dot", "width": 1.5}})  # fmt: skip
        notes.append({"x": at, "y": 0.92, "yref": "paper", "showarrow": False, "xanchor": "left",
                      "text": f"{c.label.split(' ')[0]} {c.change_pct:+.0f} %", "font": {"size": 10, "color": color},
                      "hovertext": f"change point: {c.label} {c.before:.4g} -> {c.after:.4g} "
                                   f"({c.change_pct:+.1f} %, p = {c.p_value:.2g})"})  # fmt: skip
    return shapes, notes


def cost_trend(
    series: Sequence[CostSeries],
    title: str = "Cost per million tokens at the SLO operating point",
    markers: Sequence[TrendMarker] = (),
    changes: Sequence[ChangePointRead] = (),
) -> str:
    """One line per endpoint (its synthetic history dotted and paler), a p10-p90 band under
    bucketed medians, hollow markers on degraded runs, and a dashed line where prices or the
    serving stack changed. With at most one point per series a line says nothing: a bar each."""
    drawn = [s for s in series if any(p.cost_per_million_tokens is not None for p in s.points)]
    if drawn and all(len(s.points) <= 1 for s in drawn):
        return _cost_bars(drawn, title)
    fig = go.Figure(layout=_layout(title, "", "$ per million tokens"))
    colors: dict[int, str] = {}
    for s in drawn:
        color = colors.setdefault(s.endpoint_id, PALETTE[len(colors) % len(PALETTE)])
        points = [p for p in s.points if p.cost_per_million_tokens is not None]
        x = [p.at.isoformat() for p in points]
        name = f"{s.endpoint}{' · synthetic' if s.synthetic else ''}"
        banded = [p for p in points if p.cost_p10 is not None and p.cost_p90 is not None and p.runs > 1]
        if banded:
            fig.add_trace(
                go.Scatter(
                    x=[p.at.isoformat() for p in banded] + [p.at.isoformat() for p in reversed(banded)],
                    y=[p.cost_p90 for p in banded] + [p.cost_p10 for p in reversed(banded)],
                    fill="toself", fillcolor=color, opacity=0.12 if s.synthetic else 0.2,
                    line={"width": 0}, hoverinfo="skip", showlegend=False, name=f"{name} p10-p90",
                )
            )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[p.cost_per_million_tokens for p in points],
                mode="lines+markers",
                name=name,
                opacity=0.65 if s.synthetic else 1.0,
                line={"color": color, "dash": "dot" if s.synthetic else "solid"},
                # A run whose scorecard rests on a degraded measurement: hollow marker, said on hover.
                # Imported from another tool: a diamond (its run page says which tool and how converted).
                marker={"symbol": [("diamond" if p.imported else "circle") + ("-open" if p.degraded else "")
                                   for p in points],
                        "size": 5 if s.synthetic else 7},
                customdata=[[_what(p), (" (degraded measurement)" if p.degraded else "")
                             + (f" · {p.imported} imported" if p.imported else "")] for p in points],
                hovertemplate="$%{y:.3f} per M tokens<br>%{customdata[0]}%{customdata[1]}"
                "<extra>%{fullData.name}</extra>",
            )
        )  # fmt: skip
    # One layout update for all markers: plotly validates the whole layout on each add_vline.
    shapes, notes = _change_shapes([c for c in changes if c.metric == "cost_per_million_tokens_at_slo"])
    fig.update_layout(
        shapes=[
            {"type": "line", "xref": "x", "yref": "paper", "x0": m.at.isoformat(), "x1": m.at.isoformat(),
             "y0": 0, "y1": 1, "line": {"color": "#64748b", "dash": "dash", "width": 1}}
            for m in markers
        ] + shapes,
        annotations=[
            {"x": m.at.isoformat(), "y": 1, "yref": "paper", "showarrow": False, "yanchor": "bottom",
             "text": ("price" if m.kind == "price" else "stack") + " change", "font": {"size": 10},
             "hovertext": f"{m.endpoint}: {m.label}"}
            for m in markers
        ] + notes,
    )  # fmt: skip
    _time_axis(fig, [p.at for s in drawn for p in s.points])
    return _json(fig)


def _what(point: TrendPoint) -> str:
    kind = "synthetic " if point.synthetic else ""
    if point.run_id is not None and point.runs == 1:
        return f"{kind}run {point.run_id}"
    band = (
        f", p10-p90 ${point.cost_p10:.3f}-${point.cost_p90:.3f}"
        if point.cost_p10 is not None and point.cost_p90 is not None
        else ""
    )
    return f"median of {point.runs} {kind}runs{band}"


def _cost_bars(series: Sequence[CostSeries], title: str) -> str:
    fig = go.Figure(layout=_layout(title + " (one run each so far)", "", "$ per million tokens"))
    points = [(s, s.points[0]) for s in series]
    fig.add_trace(
        go.Bar(
            x=[f"{s.endpoint}{' (synthetic)' if s.synthetic else ''}" for s, _ in points],
            y=[p.cost_per_million_tokens for _, p in points],
            marker={"color": [PALETTE[i % len(PALETTE)] for i in range(len(points))],
                    "pattern": {"shape": ["/" if p.degraded or s.synthetic else "" for s, p in points]}},
            text=[f"${p.cost_per_million_tokens:.3f}" for _, p in points],
            textposition="outside",
            customdata=[[_what(p), p.at.strftime("%Y-%m-%d %H:%M UTC")] for _, p in points],
            hovertemplate="%{customdata[0]} at %{customdata[1]}<extra></extra>",
            name="cost",
        )
    )  # fmt: skip
    return _json(fig)


def _time_axis(fig: go.Figure, times: Sequence[datetime]) -> None:
    """Readable ticks whatever the span: never sub-second labels for runs minutes apart."""
    if not times:
        return
    span = (max(times) - min(times)).total_seconds()
    fmt = "%H:%M" if span < 86_400 else ("%b %d" if span < 200 * 86_400 else "%b %Y")
    fig.update_xaxes(type="date", tickformat=fmt)


def latency_trend(history: Sequence[LatencyPoint], pct: str, changes: Sequence[ChangePointRead] = ()) -> str:
    """Latency at each run's operating step over time; with one run so far, a bar per metric."""
    title = f"Latency at the operating step ({pct})"
    labels = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"))
    if len(history) == 1:
        only = history[0]
        fig = go.Figure(layout=_layout(title + " · one run so far", "", "ms"))
        values = [getattr(only, key) for key, _ in labels]
        fig.add_trace(
            go.Bar(x=[f"{label} {pct}" for _, label in labels], y=values, marker={"color": PALETTE[:3]},
                   text=[_ms(v) for v in values], textposition="outside", name="latency")
        )  # fmt: skip
        return _json(fig)
    fig = go.Figure(layout=_layout(title, "", "ms"))
    for synthetic in (False, True):
        part = [h for h in history if h.synthetic == synthetic]
        if not part:
            continue
        x = [h.at.isoformat() for h in part]
        for i, (key, label) in enumerate(labels):
            fig.add_trace(
                go.Scatter(x=x, y=[getattr(h, key) for h in part], mode="lines+markers",
                           name=f"{label} {pct}{' · synthetic' if synthetic else ''}",
                           opacity=0.65 if synthetic else 1.0, marker={"size": 4 if synthetic else 6},
                           line={"color": PALETTE[i], "dash": "dot" if synthetic else "solid"})
            )  # fmt: skip
    shapes, notes = _change_shapes([c for c in changes if c.metric in ("ttft_ms", "tpot_ms")])
    if shapes:
        fig.update_layout(shapes=shapes, annotations=notes)
    _time_axis(fig, [h.at for h in history])
    return _json(fig)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def distributions(samples: Sequence[Sample]) -> dict[str, str]:
    ok = [s for s in samples if s.ok]
    ttft = [v for s in ok if (v := s.ttft_ms) is not None]
    e2e = [v for s in ok if (v := s.e2e_ms) is not None]
    itl: list[float] = []
    for s in ok:
        itl.extend(itl_gaps_ms(s)[0])
    if len(itl) > 50_000:  # enough for the shape, light for the browser
        itl = list(np.random.default_rng(0).choice(np.asarray(itl), 50_000, replace=False))
    out = {}
    for key, values, color in (
        ("ttft", ttft, PALETTE[0]),
        ("itl", itl, PALETTE[1]),
        ("e2e", e2e, PALETTE[2]),
    ):
        fig = go.Figure(
            layout=_layout(f"{key.upper()} distribution", "ms", "requests" if key != "itl" else "tokens")
        )
        fig.add_trace(go.Histogram(x=values, nbinsx=60, marker={"color": color}, name=key.upper()))
        out[key] = _json(fig)
    return out


def timeline(samples: Sequence[Sample], steps: Sequence[StepSummary], load_label: str) -> str | None:
    """Each request's TTFT against when it was sent (seconds from its step's first send), one
    colour a step, with each step's steady-state window shaded: what the step's figures
    describe (the rest is ramp-up and drain, kept in `whole_step`)."""
    measured = [s for s in samples if s.ok and not s.warmup and s.ttft_ms is not None]
    if not measured or not steps:
        return None
    if len(measured) > 6000:  # enough for the shape, light for the browser
        keep = np.random.default_rng(0).choice(len(measured), 6000, replace=False)
        measured = [measured[int(i)] for i in sorted(keep)]
    fig = go.Figure(
        layout=_layout("TTFT over each step, steady window shaded", "s from the step's first send", "ms")
    )
    by_step: dict[int, list[Sample]] = {}
    for sample in measured:
        by_step.setdefault(sample.step_index, []).append(sample)
    for index, step in enumerate(steps):
        color = PALETTE[index % len(PALETTE)]
        group = by_step.get(index, [])
        if group:
            first = min(s.sent_ns for s in group)
            fig.add_trace(
                go.Scattergl(
                    x=[(s.sent_ns - first) / 1e9 for s in group], y=[s.ttft_ms for s in group], mode="markers",
                    marker={"size": 3, "color": color, "opacity": 0.6}, name=f"{load_label} {step.load:g}",
                )
            )  # fmt: skip
        window = step.steady
        if window is not None and not window.whole_step:
            fig.add_vrect(x0=window.start_s, x1=window.end_s, fillcolor=color, opacity=0.08, line_width=0)
    return _json(fig)


def sweep(steps: Sequence[StepSummary], load_label: str) -> dict[str, str]:
    loads = [s.load for s in steps]
    tput = go.Figure(layout=_layout("Throughput across the sweep", load_label, "tokens/s"))
    tput.add_trace(
        go.Scatter(
            x=loads,
            y=[s.output_tokens_per_s for s in steps],
            mode="lines+markers",
            name="output tokens/s",
            line={"color": PALETTE[0]},
        )
    )
    tput.add_trace(
        go.Scatter(
            x=loads,
            y=[s.total_tokens_per_s for s in steps],
            mode="lines+markers",
            name="total tokens/s",
            line={"color": PALETTE[1]},
        )
    )
    lat = go.Figure(layout=_layout("Latency across the sweep", load_label, "ms"))
    for i, (metric, stat) in enumerate(
        (("ttft_ms", "p50"), ("ttft_ms", "p99"), ("tpot_ms", "p50"), ("e2e_ms", "p50"))
    ):
        lat.add_trace(
            go.Scatter(x=loads, y=[getattr(getattr(s, metric), stat) for s in steps], mode="lines+markers",
                       name=f"{metric[:-3].upper()} {stat}", line={"color": PALETTE[i]})
        )  # fmt: skip
    return {"throughput": _json(tput), "latency": _json(lat)}


def telemetry(steps: Sequence[StepSummary], load_label: str) -> dict[str, str]:
    """What the server said under each load (steps with telemetry only): KV-cache use and queue
    depth, and its own TTFT and time per token next to the client's."""
    measured = [(s, s.telemetry) for s in steps if s.telemetry is not None]
    if not measured:
        return {}
    loads = [s.load for s, _ in measured]
    tel = [t for _, t in measured]
    server = go.Figure(layout=_layout("Server state across the sweep (its own metrics)", load_label, "requests",
                                      yaxis2={"title": "KV-cache use (%)", "overlaying": "y", "side": "right",
                                              "rangemode": "tozero"}))  # fmt: skip
    for i, (key, name) in enumerate((("running_mean", "running (mean)"), ("waiting_mean", "waiting (mean)"),
                                     ("waiting_max", "waiting (max)"))):  # fmt: skip
        server.add_trace(go.Scatter(x=loads, y=[getattr(t, key) for t in tel], mode="lines+markers", name=name,
                                    line={"color": PALETTE[i]}))  # fmt: skip
    for i, (key, name) in enumerate(
        (("kv_usage_mean", "KV-cache (mean)"), ("kv_usage_max", "KV-cache (max)"))
    ):
        server.add_trace(go.Scatter(x=loads, y=[None if (v := getattr(t, key)) is None else 100 * v for t in tel],
                                    mode="lines+markers", name=name, yaxis="y2",
                                    line={"color": PALETTE[3 + i], "dash": "dot"}))  # fmt: skip
    lat = go.Figure(layout=_layout("Server's latency next to the client's", load_label, "ms"))
    for i, (label, values) in enumerate((
        ("TTFT, client (mean)", [s.ttft_ms.mean for s, _ in measured]),
        ("TTFT, server (mean)", [t.server_ttft_ms for t in tel]),
        ("ITL, client (mean)", [s.itl_ms.mean for s, _ in measured]),
        ("ITL, server (mean)", [t.server_itl_ms for t in tel]),
    )):  # fmt: skip
        lat.add_trace(go.Scatter(x=loads, y=values, mode="lines+markers", name=label,
                                 line={"color": PALETTE[i // 2], "dash": "dot" if i % 2 else "solid"}))  # fmt: skip
    return {"server_state": _json(server), "server_latency": _json(lat)}


def histogram(shape: Histogram, title: str, unit: str, color: str) -> str:
    """Bars from stored bin counts (a step's or a dataset's lengths)."""
    fig = go.Figure(layout=_layout(title, unit, "requests"))
    if shape.counts:
        centres = [(a + b) / 2 for a, b in zip(shape.edges, shape.edges[1:], strict=False)]
        widths = [b - a for a, b in zip(shape.edges, shape.edges[1:], strict=False)]
        fig.add_trace(go.Bar(x=centres, y=shape.counts, width=widths, marker={"color": color}, name=title))
    return _json(fig)


def dataset_lengths(stats: DatasetStats) -> dict[str, str]:
    """A dataset's prompt and answer lengths (its page, and the pages of profiles that use it)."""
    return {
        "input_lengths": histogram(stats.input.histogram, "Prompt lengths", stats.unit, PALETTE[1]),
        "output_lengths": histogram(stats.output.histogram, "Answer lengths", stats.unit, PALETTE[2]),
    }


def workload(steps: Sequence[StepSummary], load_label: str) -> dict[str, str]:
    """The traffic as measured: the busiest step's prompt and output lengths, prefix-cache hit
    rates per step (usage, expected, the server's counters), TTFT by turn, and, for a long
    context run, TTFT and cost against the prompt length."""
    worked = [(s, s.workload) for s in steps if s.workload is not None]
    if not worked:
        return {}
    out: dict[str, str] = {}
    _, stats = max(worked, key=lambda pair: pair[0].requests.completed)
    out["input_lengths"] = histogram(
        stats.input_histogram, "Prompt lengths (busiest step)", "tokens", PALETTE[1]
    )
    out["output_lengths"] = histogram(
        stats.output_histogram, "Output lengths (busiest step)", "tokens", PALETTE[2]
    )
    if any(w.cache_hit_rate or w.expected_hit_rate or s.server_hit_rate for s, w in worked):
        labels = [s.load_label if w.context_tokens is None else f"{w.context_tokens} tok" for s, w in worked]
        cache = go.Figure(
            layout=_layout("Prefix-cache hit rate", load_label, "% of prompt tokens", barmode="group")
        )
        for i, (name, values) in enumerate((
            ("usage (cached_tokens)", [w.cache_hit_rate for _, w in worked]),
            ("expected by the workload", [w.expected_hit_rate for _, w in worked]),
            ("server's counters", [s.server_hit_rate for s, _ in worked]),
        )):  # fmt: skip
            cache.add_trace(go.Bar(x=labels, y=[None if v is None else 100 * v for v in values], name=name,
                                   marker={"color": PALETTE[i]}))  # fmt: skip
        out["cache"] = _json(cache)
    if any(w.by_turn for _, w in worked):
        turns = go.Figure(layout=_layout("TTFT by turn", "turn", "ms"))
        for i, (step, w) in enumerate((s, w) for s, w in worked if w.by_turn):
            turns.add_trace(go.Scatter(x=[t.turn for t in w.by_turn], y=[t.ttft_ms.p50 for t in w.by_turn],
                                       mode="lines+markers", name=f"{step.load_label} p50",
                                       line={"color": PALETTE[i % len(PALETTE)]}))  # fmt: skip
        out["turns"] = _json(turns)
    contexts = [(s, w.context_tokens) for s, w in worked if w.context_tokens is not None]
    if contexts:
        ctx = go.Figure(layout=_layout("TTFT and cost against context", "prompt tokens", "ms",
                                       yaxis2={"title": "$ per million tokens", "overlaying": "y", "side": "right",
                                               "rangemode": "tozero"}))  # fmt: skip
        x = [c for _, c in contexts]
        ctx.add_trace(
            go.Scatter(x=x, y=[s.ttft_ms.p50 for s, _ in contexts], mode="lines+markers", name="TTFT p50")
        )
        ctx.add_trace(
            go.Scatter(x=x, y=[s.ttft_ms.p99 for s, _ in contexts], mode="lines+markers", name="TTFT p99")
        )
        ctx.add_trace(go.Scatter(x=x, y=[s.cost_per_million_tokens for s, _ in contexts], mode="lines+markers",
                                 name="$ / M tokens", yaxis="y2", line={"dash": "dot"}))  # fmt: skip
        out["context"] = _json(ctx)
    return out


def tradeoff(
    curves: Sequence[tuple[str, Sequence[StepSummary], int | None]], slo_tpot_ms: float | None
) -> str:
    """Throughput per GPU against tokens/s per user (InferenceX's view), SLO-meeting side shaded."""
    fig = go.Figure(
        layout=_layout(
            "Throughput per GPU vs interactivity", "tokens/s per user (p50)", "output tokens/s per GPU"
        )
    )
    top = 0.0
    for i, (name, steps, gpus) in enumerate(curves):
        xs = [s.tokens_per_s_per_user.p50 for s in steps]
        ys = [per_gpu(s.output_tokens_per_s, gpus) for s in steps]
        top = max([top, *ys])
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines+markers", name=name + ("" if gpus else " (per endpoint)"),
                       line={"color": PALETTE[i % len(PALETTE)]},
                       text=[s.load_label for s in steps],
                       hovertemplate="%{text}: %{y:.0f} tok/s/GPU at %{x:.1f} tok/s/user<extra>%{fullData.name}</extra>")
        )  # fmt: skip
    xs_all = [x for _, steps, _ in curves for s in steps if (x := s.tokens_per_s_per_user.p50)]
    lo = min(xs_all, default=1.0) * 0.7
    hi = max(xs_all, default=100.0) * 1.5
    if slo_tpot_ms:
        threshold = user_rate_at(slo_tpot_ms)
        lo, hi = min(lo, threshold * 0.7), max(hi, threshold * 1.5)
        fig.add_vrect(x0=threshold, x1=hi, fillcolor="#dcfce7", opacity=0.5, line_width=0, layer="below")
        fig.add_vline(x=threshold, line={"color": "#15803d", "dash": "dash"})
        fig.add_annotation(
            x=math.log10(threshold), y=top or 1, text=f"meets TPOT ≤ {slo_tpot_ms:g} ms", showarrow=False,
            xanchor="left", yanchor="bottom",
        )  # fmt: skip
    fig.update_xaxes(type="log", range=[math.log10(max(lo, 1e-3)), math.log10(max(hi, 1e-2))])
    return _json(fig)


def sparkline(points: Sequence[TrendPoint], width: int = 120, height: int = 28) -> Markup:
    """A tiny inline SVG of cost over time (numbers only, so safe to mark up): measured runs a
    solid green line, synthetic history a dotted purple one, on one scale."""
    priced = [p for p in points if p.cost_per_million_tokens is not None]
    if len(priced) < 2:
        return Markup('<span class="muted">—</span>')
    values = [float(p.cost_per_million_tokens or 0.0) for p in priced]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = (width - 4) / (len(values) - 1)

    def coords(indices: list[int]) -> str:
        return " ".join(
            f"{2 + i * step:.1f},{height - 2 - (values[i] - lo) / span * (height - 4):.1f}" for i in indices
        )

    lines = []
    for synthetic, color, dash in ((True, "#9333ea", ' stroke-dasharray="2 2"'), (False, "#15803d", "")):
        indices = [i for i, p in enumerate(priced) if p.synthetic == synthetic]
        if len(indices) == 1:
            x, y = coords(indices).split(",")
            lines.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{color}"/>')
        elif indices:
            lines.append(
                f'<polyline class="{"synthetic" if synthetic else "measured"}" points="{coords(indices)}" '
                f'fill="none" stroke="{color}" stroke-width="1.5"{dash}/>'
            )
    kinds = " (synthetic history dotted)" if any(p.synthetic for p in priced) else ""
    return Markup(  # noqa: S704 - only numbers are interpolated
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="cost trend from {values[0]:.3f} to {values[-1]:.3f}{kinds}">{"".join(lines)}</svg>'
    )
