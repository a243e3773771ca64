"""One self-contained HTML report of a run, sweep or plan folder (``qfl report DIR``).

The report is built from the files a folder holds (nothing is simulated again) and is one
HTML file that opens without a network: the Plotly library and every chart's data are
inlined. It shows, for a **run folder**: the scenario (name, description, YAML), the run's
key figures, the topology with each link's key rate and channel utilisation, accuracy over
simulated time, the key-pool levels, each client's key rate against its accuracy, and the
bottleneck tables (per round and per link). A **sweep folder** adds the key rate vs
accuracy chart and the table of its points; a **plan folder** adds the plan's answer in a
box at the top, its table and, for a threshold plan, the chart of the evaluated points.
Sweeps and plans embed one representative run (their baseline point, else the first
complete point) for the run sections.

Plotly is a dependency of qfl (installed with it); importing this package without it fails
at once with an :class:`ImportError` that says how to install it.

Examples
--------
>>> from pathlib import Path
>>> folder_kind(Path("/nonexistent"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
qfl.scenario.ScenarioError: /nonexistent: not a folder ...
"""

try:
    import plotly  # noqa: F401  (the charts import its submodules when they draw)
except ImportError as _exc:
    raise ImportError(
        "qfl.report needs plotly, a dependency of qfl that is missing from this environment "
        "(qfl installed without its dependencies?): pip install 'plotly>=5.20,<8', or "
        "reinstall qfl with pip install -e ."
    ) from _exc

from qfl.report.charts import keypool_figure as keypool_figure
from qfl.report.folders import (
    PLAN_KINDS,
    REPORT_KINDS,
    PlanFiles,
    RunFiles,
    SweepFiles,
    folder_kind,
    load_plan,
    load_run,
    load_sweep,
)
from qfl.report.page import render_report, write_report
from qfl.report.topology import topology_figure as topology_figure

__all__ = [
    "PLAN_KINDS",
    "REPORT_KINDS",
    "PlanFiles",
    "RunFiles",
    "SweepFiles",
    "folder_kind",
    "load_plan",
    "load_run",
    "load_sweep",
    "render_report",
    "write_report",
]
