"""``report.html``: one self-contained page of a run, for any browser, offline.

Figures are embedded as base64 PNG ``data:`` URIs and the style sheet is inline, so the page
references no other file and no network resource: it can be mailed, archived or opened from a
machine with no access to the run. Every text taken from the run's files is escaped with
:func:`html.escape` (a policy name or a config value is data, never markup).
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from esper.simic.report.run_files import EVAL_FILE, RunFiles
from esper.simic.training.run_dir import CONFIG_FILE, SUMMARY_FILE
from esper.simic.training.traces import TRACES_FILE

if TYPE_CHECKING:  # figures.py imports matplotlib; the page itself is plain text and needs none
    from esper.simic.report.figures import RenderedFigure

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #1f2937; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #e5e7eb; padding-bottom: 0.2rem; margin-top: 2.2rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #e5e7eb; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f9fafb; }
tr.reference td { font-weight: 600; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; }
figcaption, .note { color: #4b5563; font-size: 0.92rem; }
pre { background: #f9fafb; border: 1px solid #e5e7eb; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
code { font-size: 0.92em; }
summary { cursor: pointer; }
"""

EVAL_COLUMNS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("objective (± std)", lambda row: f"{row['mean_objective']:.2f} ± {row['std_objective']:.2f}"),
    ("final acc %", lambda row: f"{row['mean_final_accuracy']:.2f}"),
    ("params added", lambda row: f"{row['mean_params_added']:,.0f}"),
    ("extra compute", lambda row: f"{row['mean_extra_compute']:.2f}"),
    ("discounted return", lambda row: f"{row['mean_discounted_return']:+.3f}"),
    ("learned − row", lambda row: _signed(row.get("learned_minus_row_objective"))),
)
"""The eval table's columns after the policy: header and cell of an ``eval.json`` row (as ``EvalReport.table``)."""


def report_html(run: RunFiles, figures: Sequence[RenderedFigure]) -> str:
    """The whole page of ``run``; ``figures`` are the learning curves first, then the episode timelines."""
    title = f"Esper run report: {run.name}"
    curves, timelines = figures[:1], figures[1:]
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">run directory <code>{escape(str(run.path))}</code></p>',
        '<nav><a href="#summary">Summary</a><a href="#training">Training</a>'
        '<a href="#evaluation">Evaluation</a><a href="#config">Configuration</a></nav>',
        '<section id="summary"><h2>Summary</h2>',
        _summary(run.summary),
        '</section><section id="training"><h2>Training</h2>',
        *(_figure(f) for f in curves),
        '</section><section id="evaluation"><h2>Evaluation</h2>',
        _evaluation(run, timelines),
        '</section><section id="config"><h2>Configuration</h2>',
        _config(run.config),
        "</section>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _figure(figure: RenderedFigure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    caption = escape(figure.caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
    )


def _summary(summary: Mapping[str, Any] | None) -> str:
    if summary is None:
        return f'<p class="note">No {SUMMARY_FILE}: no invocation of the run has finished (running or interrupted).</p>'
    return _table(("field", "value"), ((key, _value(value)) for key, value in summary.items()))


def _evaluation(run: RunFiles, timelines: Sequence[RenderedFigure]) -> str:
    if run.evaluation is None:
        return (
            f'<p class="note">No {EVAL_FILE} in this run directory: compare the policy with the baselines with '
            f"<code>esper-train eval {escape(shlex.quote(str(run.path / 'checkpoint_last.pt')))}</code>, then write "
            "this report again.</p>"
        )
    evaluation = run.evaluation
    rows = evaluation.get("rows") or []
    reference = evaluation.get("reference")
    parts = [
        f'<p class="note">checkpoint <code>{escape(str(evaluation.get("checkpoint")))}</code>, '
        f"{len(evaluation.get('seeds') or [])} episode(s) per policy, every policy on the same reset seeds; "
        "objective: final accuracy net of the parameter and compute prices; learned − row: paired mean difference "
        "of the objective (positive: the learned policy did better).</p>",
        _eval_table(rows, reference),
    ]
    if timelines:
        parts += [_figure(f) for f in timelines]
    else:
        parts.append(f'<p class="note">No {TRACES_FILE} beside {EVAL_FILE}: no episode timeline to draw.</p>')
    return "\n".join(parts)


def _eval_table(rows: Sequence[Mapping[str, Any]], reference: str | None) -> str:
    header = ("policy", *(name for name, _ in EVAL_COLUMNS))
    lines = [f"<tr>{''.join(f'<th>{escape(h)}</th>' for h in header)}</tr>"]
    for row in rows:
        cells = [str(row.get("policy")), *(cell(row) for _, cell in EVAL_COLUMNS)]
        marked = ' class="reference"' if row.get("policy") == reference else ""
        lines.append(f"<tr{marked}>{''.join(f'<td>{escape(c)}</td>' for c in cells)}</tr>")
    return f"<table>{''.join(lines)}</table>"


def _config(config: Mapping[str, Any] | None) -> str:
    if config is None:
        return f'<p class="note">No {CONFIG_FILE} in this run directory.</p>'
    return (
        f"<details><summary>{CONFIG_FILE}: the resolved training config (every option, defaults included)</summary>"
        f"<pre>{escape(json.dumps(config, indent=2))}</pre></details>"
    )


def _table(header: Sequence[str], rows: Iterable[tuple[str, str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(f'<td>{escape(c)}</td>' for c in row)}</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _value(value: Any) -> str:
    """A summary value as text: floats to 6 significant digits, null as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def _signed(value: Any) -> str:
    return "–" if value is None else f"{value:+.2f}"
