"""``report.html`` in a real browser: headless Chromium draws it (not blank) and loads every figure.

Needs Debian's ``chromium`` (``.ci/run`` installs it where missing). The probe is a copy of the
page with one inline script appended that, once the page has loaded, marks each ``<img>`` with
whether it decoded and its natural size; ``--dump-dom`` then prints the marked DOM.
"""

from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from matplotlib.image import imread

from esper.simic.report import write_report

#: Headless, no GPU, and no sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio")
#: Seconds one Chromium call may take before the test fails instead of hanging.
CHROMIUM_TIMEOUT_S = 120
PROBE = """<script>
window.addEventListener("load", () => {
  for (const image of document.images) {
    const loaded = image.complete && image.naturalWidth > 0;
    image.setAttribute("data-probe", loaded ? `${image.naturalWidth}x${image.naturalHeight}` : "broken");
  }
});
</script>"""


def chromium(*args: str) -> str:
    """Run Chromium with ``args`` (bounded by a timeout); its stdout."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("needs Chromium: apt-get install -y --no-install-recommends chromium (.ci/run installs it)")
    result = subprocess.run(
        [executable, *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def embedded_png_sizes(page: str) -> list[str]:
    """``WIDTHxHEIGHT`` of each embedded PNG, read from its IHDR chunk, in page order."""
    sizes = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        header = base64.b64decode(data[:64])
        width, height = struct.unpack(">II", header[16:24])
        sizes.append(f"{width}x{height}")
    return sizes


@pytest.mark.slow
def test_report_renders_in_headless_chromium(evaluated_run: Path, tmp_path: Path) -> None:
    report = write_report(evaluated_run)
    page = report.read_text(encoding="utf-8")

    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1200,2000", report.as_uri())
    pixels = imread(screenshot)[..., :3]
    inked = float((pixels.min(axis=2) < 0.9).mean())  # share of pixels that are not (near) white
    assert pixels.std() > 0.05 and inked > 0.03, (float(pixels.std()), inked)

    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    dom = chromium("--dump-dom", "--virtual-time-budget=10000", probe.as_uri())
    expected = embedded_png_sizes(page)
    assert len(expected) == 2
    assert re.findall(r'data-probe="([^"]+)"', dom) == expected
