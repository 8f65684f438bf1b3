"""``plot`` and ``report`` on a tiny evaluated run: PNG files, one offline HTML page, and one-line errors.

Drawing costs a second or two per figure on a loaded machine, so the two commands run once per
module (``plotted``, ``reported``) and the page's other branches are checked on ``report_html``
with a stand-in figure.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import struct
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from esper.simic import cli
from esper.simic.report import PLOTS_DIR, REPORT_FILE, load_run
from esper.simic.report.figures import RenderedFigure, compared_episodes
from esper.simic.report.page import report_html
from esper.simic.training.evaluation import HEURISTIC, NO_GROWTH

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The smallest valid PNG header a stand-in figure needs (signature and IHDR of a 1×1 image).
STAND_IN_PNG = PNG_SIGNATURE + b"\x00\x00\x00\rIHDR" + struct.pack(">II", 1, 1) + b"\x08\x02\x00\x00\x00"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (asserting the signature first)."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class ResourceCollector(HTMLParser):
    """Every URL-bearing attribute of a page (with its tag) and every tag name seen."""

    URL_ATTRIBUTES = frozenset({"src", "href", "srcset", "data", "poster", "action", "formaction", "background"})

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [(tag, value or "") for name, value in attrs if name in self.URL_ATTRIBUTES]


def collect(page: str) -> ResourceCollector:
    collector = ResourceCollector()
    collector.feed(page)
    collector.close()
    return collector


def image_urls(page: str) -> list[str]:
    return [url for tag, url in collect(page).urls if tag == "img"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def plotted(evaluated_run: Path) -> list[Path]:
    """``esper-train plot RUN --episode 1``: the PNG files in the run's plots folder afterwards."""
    assert cli.main(["plot", str(evaluated_run), "--episode", "1"]) == 0
    return sorted(evaluated_run.glob(f"{PLOTS_DIR}/*.png"))


@pytest.fixture(scope="module")
def reported(evaluated_run: Path) -> str:
    """``esper-train report RUN``: the page it wrote."""
    assert cli.main(["report", str(evaluated_run)]) == 0
    return (evaluated_run / REPORT_FILE).read_text(encoding="utf-8")


@pytest.mark.slow  # trains, evaluates and renders a run: seconds of matplotlib
def test_plot_writes_the_learning_curves_and_the_episode_timelines(evaluated_run: Path, plotted: list[Path]) -> None:
    assert [p.relative_to(evaluated_run).as_posix() for p in plotted] == [
        f"{PLOTS_DIR}/episode_1_timeline.png",
        f"{PLOTS_DIR}/learning_curves.png",
    ]
    for path in plotted:
        data = path.read_bytes()
        width, height = png_size(data)
        assert width >= 600 and height >= 400 and len(data) > 10_000, (path.name, width, height, len(data))


@pytest.mark.slow  # trains, evaluates and renders a run: seconds of matplotlib
def test_report_is_one_page_with_embedded_figures_and_no_external_resource(reported: str) -> None:
    page = collect(reported)
    images = image_urls(reported)
    assert len(images) == 2  # the learning curves and the timelines of episode 0
    for url in images:
        assert url.startswith("data:image/png;base64,")
        width, height = png_size(base64.b64decode(url.removeprefix("data:image/png;base64,"), validate=True))
        assert width >= 600 and height >= 400
    assert all(url.startswith(("data:", "#")) for _, url in page.urls), page.urls
    assert {"script", "link", "iframe", "object", "embed"}.isdisjoint(page.tags)
    assert "url(" not in reported and "@import" not in reported
    text = html.unescape(reported)
    for expected in ("rounds_completed", HEURISTIC, NO_GROWTH, "learned − row", '"num_envs": 2'):
        assert expected in text, expected


@pytest.mark.slow  # trains, evaluates and renders a run: seconds of matplotlib
def test_the_timelines_compare_learned_heuristic_and_no_growth_on_the_same_episode(evaluated_run: Path) -> None:
    run = load_run(evaluated_run)
    assert run.evaluation is not None
    reference = run.evaluation["reference"]
    episodes = compared_episodes(run, 1)
    assert [e.label for e in episodes] == [f"learned: {reference}", HEURISTIC, NO_GROWTH]
    assert {(e.trace.episode, e.trace.seed) for e in episodes} == {(1, run.evaluation["seeds"][1])}
    assert compared_episodes(dataclasses.replace(run, traces={}), 0) == []


@pytest.mark.slow  # trains, evaluates and renders a run: seconds of matplotlib
def test_report_without_an_evaluation_says_how_to_get_one(trained_run: Path) -> None:
    run = load_run(trained_run)
    assert run.evaluation is None and run.traces == {}
    page = report_html(run, [RenderedFigure("learning_curves.png", "curves", STAND_IN_PNG)])
    assert image_urls(page) == ["data:image/png;base64," + base64.b64encode(STAND_IN_PNG).decode()]
    assert "No eval.json in this run directory" in page
    assert f"esper-train eval {trained_run / 'checkpoint_last.pt'}" in page


@pytest.mark.slow  # trains, evaluates and renders a run: seconds of matplotlib
def test_report_escapes_what_it_reads(evaluated_run: Path) -> None:
    run = load_run(evaluated_run)
    assert run.evaluation is not None
    row = {**run.evaluation["rows"][0], "policy": "<img src=http://example.com/x.png>"}
    hostile = dataclasses.replace(run, evaluation={**run.evaluation, "rows": [row]}, config={"note": "</pre><b>"})
    page = report_html(hostile, [RenderedFigure("learning_curves.png", "a <b>caption</b>", STAND_IN_PNG)])
    assert "&lt;img src=http://example.com/x.png&gt;" in page and "&lt;/pre&gt;&lt;b&gt;" in page
    assert "a &lt;b&gt;caption&lt;/b&gt;" in page
    assert all(url.startswith(("data:", "#")) for _, url in collect(page).urls)


@pytest.mark.parametrize("command", ["plot", "report"])
def test_missing_extra_is_one_line_naming_it(
    command: str, evaluated_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run_cli([command, str(evaluated_run)], capsys)
    assert (code, out) == (2, "")
    assert err == f"esper-train: error: {command} needs the optional extra: pip install 'esper-simic[plot]'\n"


@pytest.mark.parametrize(
    ("run_dir", "message"),
    [
        (lambda d: d / "missing", "run directory '{d}/missing' does not exist or is not a directory"),
        (lambda d: d, "'{d}' is not an Esper run directory (no metrics.jsonl)"),
    ],
    ids=["missing", "foreign"],
)
@pytest.mark.parametrize("command", ["plot", "report"])
def test_bad_run_directory_is_one_line(
    command: str,
    run_dir: Callable[[Path], Path],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    code, out, err = run_cli([command, str(run_dir(tmp_path))], capsys)
    assert (code, out) == (2, "")
    assert err == f"esper-train: error: {message.format(d=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow  # trains, evaluates and renders a run: seconds of matplotlib
def test_untraced_episode_is_one_line(evaluated_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["plot", str(evaluated_run), "--episode", "7"], capsys)
    assert code == 2
    assert err == "esper-train: error: evaluation episode 7 was not traced; the traces hold episodes [0, 1]\n"
