"""Looking at a run: its figures as PNGs (``esper-train plot``) and one offline page (``esper-train report``).

Reads what a run directory holds (``metrics.jsonl``; ``eval.json`` and ``traces.jsonl`` once
``esper-train eval`` ran on its checkpoint) and draws it with matplotlib, the optional extra
``esper-simic[plot]``. Importing this package does not import matplotlib::

    from esper.simic.report import write_plots, write_report
    write_plots("runs/demo")   # runs/demo/plots/*.png
    write_report("runs/demo")  # runs/demo/report.html
"""

from esper.simic.report.outputs import PLOTS_DIR, REPORT_FILE, write_plots, write_report
from esper.simic.report.run_files import RunFiles, RunFilesError, load_run

__all__ = [
    "PLOTS_DIR",
    "REPORT_FILE",
    "RunFiles",
    "RunFilesError",
    "load_run",
    "write_plots",
    "write_report",
]
