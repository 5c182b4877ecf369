"""The report as one self-contained HTML page: the tables of ``report.json`` and plotly
figures (treated against control over time with the interval, uplift per outcome and per
action, acceptance per action, actions and escalations, latency), with plotly's JavaScript
inlined once, so the file opens with no network.

Numbers are shown with :func:`number` (four significant digits), the same in every table.
"""

from __future__ import annotations

import html
import itertools

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

TREATED, CONTROL = "#1f77b4", "#ff7f0e"


def number(value) -> str:
    """A report number as the page shows it: four significant digits, ``–`` for none."""
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.4g}"


def render(report: dict) -> str:
    """The HTML page of a report (:func:`serving.report.summary.summarise`)."""
    figures = [
        _over_time(report),
        _uplift_bars(report),
        _acceptance(report),
        _actions(report),
        _latency(report),
    ]
    parts = [
        pio.to_html(
            figure,
            include_plotlyjs=(i == 0),  # inlined once: no network needed
            full_html=False,
            config={"displaylogo": False, "responsive": True},
            div_id=f"figure-{i}",
        )
        for i, figure in enumerate(f for f in figures if f is not None)
    ]
    p, h = report["period"], report["holdout"]
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report["warnings"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>nextbest uplift report {html.escape(p["since"])} to {html.escape(p["until"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3rem .8rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.warnings {{ background: #fff4e5; border-left: 4px solid #ff9800; padding: .5rem 1rem; }}
.note {{ color: #555; font-size: .9rem; }}
</style></head><body>
<h1>What the suggestions brought</h1>
<p>From <b>{html.escape(p["since"])}</b> to <b>{html.escape(p["until"])}</b>; global control group
<b>{number(h["share"])}</b> of customers (period <b>{html.escape(h["period"])}</b>):
<b id="treated">{number(report["customers"]["treated"])}</b> treated,
<b id="control">{number(report["customers"]["control"])}</b> in control.</p>
<p class="note">{html.escape(report["estimator"])}.</p>
{f'<ul class="warnings">{warnings}</ul>' if warnings else ""}
<h2>Uplift per customer</h2>
{_uplift_table(report["uplift"], "uplift")}
{_per_action_tables(report)}
{parts[0] if parts else ""}
{"".join(parts[1:])}
<h2>The service in the period</h2>
{_service_table(report["service"])}
{_acceptance_table(report["service"]["acceptance"])}
</body></html>
"""


def _uplift_table(rows: list[dict], table_id: str) -> str:
    head = (
        "<tr><th>outcome</th><th>treated mean</th><th>control mean</th><th>uplift</th>"
        "<th>95% interval</th><th>relative</th><th>relative 95% interval</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(u['outcome'])}</td><td>{number(u['treated_mean'])}</td>"
        f"<td>{number(u['control_mean'])}</td><td>{number(u['difference'])}</td>"
        f"<td>{number(u['low'])} to {number(u['high'])}</td><td>{number(u['relative'])}</td>"
        f"<td>{number(u['relative_low'])} to {number(u['relative_high'])}</td></tr>"
        for u in rows
    )
    return f'<table id="{table_id}">{head}{body}</table>'


def _per_action_tables(report: dict) -> str:
    if not report["per_action"]:
        return (
            '<p class="note">No uplift per action: the audit log holds too few answers that'
            " showed, or would have shown, a marketing action in each group.</p>"
        )
    out = [
        "<h2>Uplift per action</h2><p class='note'>Customers shown the action against control"
        " customers who would have been shown it, from their first such answer on. An answer"
        " may hold several actions: what one brought counts for each action shown with it.</p>"
    ]
    for action, rows in report["per_action"].items():
        counts = f"{number(rows[0]['treated_customers'])} / {number(rows[0]['control_customers'])}"
        out.append(f"<h3>{html.escape(action)} ({counts} customers)</h3>")
        out.append(_uplift_table(rows, f"uplift-{action}"))
    return "".join(out)


def _service_table(s: dict) -> str:
    rows = [
        ("answers", s["answers"]),
        ("customers answered", s["answered_customers"]),
        ("escalations to a human", s["escalations"]),
        ("marketing withheld: no consent", s["withheld_for_consent"]),
        ("marketing withheld: control group", s["withheld_for_holdout"]),
        ("latency p50 (ms)", s["latency_ms"]["p50"]),
        ("latency p99 (ms)", s["latency_ms"]["p99"]),
        ("order lines accepted online", s["online_order_lines"]),
    ] + [(f"shown: {k}", v) for k, v in s["actions"].items()]
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{number(v)}</td></tr>" for k, v in rows)
    return f'<table id="service">{body}</table>'


def _acceptance_table(rows: list[dict]) -> str:
    if not rows:
        return '<p class="note">No feedback in the period.</p>'
    head = (
        "<tr><th>action</th><th>shown</th><th>accepted</th><th>converted</th>"
        "<th>acceptance rate</th><th>conversion rate</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(r['action'])}</td><td>{number(r['shown'])}</td>"
        f"<td>{number(r['accepted'])}</td><td>{number(r['converted'])}</td>"
        f"<td>{number(r['acceptance_rate'])}</td><td>{number(r['conversion_rate'])}</td></tr>"
        for r in rows
    )
    return f'<table id="acceptance">{head}{body}</table>'


def _over_time(report: dict) -> go.Figure:
    points = report["over_time"]
    x = [p["until"] for p in points]
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=("orders per customer since the start", "uplift with its 95% interval"),
    )  # fmt: skip
    for name, color in (("treated", TREATED), ("control", CONTROL)):
        y = [p[f"{name}_mean"] for p in points]
        figure.add_trace(go.Scatter(x=x, y=y, name=name, line={"color": color}), row=1, col=1)
    band = go.Scatter(
        x=x + x[::-1],
        y=[p["high"] for p in points] + [p["low"] for p in points][::-1],
        fill="toself",
        mode="lines",
        fillcolor="rgba(31,119,180,0.2)",
        line={"width": 0},
        name="95% interval",
        hoverinfo="skip",
    )
    figure.add_trace(band, row=2, col=1)
    line = go.Scatter(
        x=x, y=[p["difference"] for p in points], name="uplift", line={"color": "#333"}
    )
    figure.add_trace(line, row=2, col=1)
    figure.add_hline(y=0, line_dash="dot", row=2, col=1)
    figure.update_layout(title="Treated against control over the period", height=560)
    return figure


def _uplift_bars(report: dict) -> go.Figure:
    groups = {"all customers": report["uplift"], **report["per_action"]}
    figure = go.Figure()
    for name, rows in groups.items():
        kept = [u for u in rows if u["relative"] is not None]
        figure.add_trace(
            go.Bar(
                name=name,
                x=[u["outcome"] for u in kept],
                y=[u["relative"] for u in kept],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [u["relative_high"] - u["relative"] for u in kept],
                    "arrayminus": [u["relative"] - u["relative_low"] for u in kept],
                },
            )
        )
    figure.update_layout(
        title="Relative uplift (treated over control, minus one) with 95% intervals",
        barmode="group",
        yaxis_tickformat=".0%",
    )
    return figure


def _acceptance(report: dict) -> go.Figure | None:
    rows = report["service"]["acceptance"]
    if not rows:
        return None
    figure = go.Figure()
    for measure in ("acceptance_rate", "conversion_rate"):
        figure.add_trace(
            go.Bar(name=measure.replace("_", " "), x=[r["action"] for r in rows],
                   y=[r[measure] for r in rows])
        )  # fmt: skip
    figure.update_layout(title="Acceptance and conversion per action", barmode="group")
    return figure


def _actions(report: dict) -> go.Figure:
    s = report["service"]
    labels = [*s["actions"], "withheld: no consent", "withheld: control group"]
    values = [*s["actions"].values(), s["withheld_for_consent"], s["withheld_for_holdout"]]
    figure = go.Figure(go.Bar(x=labels, y=values, marker_color=TREATED))
    figure.update_layout(
        title=f"Actions shown ({s['escalations']:,} escalations to a human) and withheld"
    )
    return figure


def _latency(report: dict) -> go.Figure | None:
    histogram = report["service"]["latency_ms"].get("histogram")
    if not histogram or not histogram["counts"]:
        return None
    edges = histogram["edges"]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    figure = go.Figure(go.Bar(x=mids, y=histogram["counts"], marker_color=TREATED))
    figure.update_layout(title="Answer latency (ms)", xaxis_title="ms", yaxis_title="answers")
    return figure
