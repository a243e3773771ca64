"""The public API: load or build a scenario, run it, sweep it, register methods, models and
datasets. Everything here is re-exported by :mod:`qfl`; torch is imported only when a run
starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfl.registry import DATASETS, MODELS, register_dataset, register_model

if TYPE_CHECKING:
    from qfl.cosim.methods import MethodSpec
    from qfl.cosim.run import RunResult
    from qfl.scenario import Scenario

__all__ = [
    "build_scenario",
    "load_scenario",
    "register_dataset",
    "register_method",
    "register_model",
    "run",
    "sweep",
]


def load_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file, with optional field overrides.

    Parameters
    ----------
    path : str or Path
        The YAML file (a ``topology.file`` in it is resolved against its folder).
    overrides : mapping, optional
        Dotted field paths and their values, as ``qfl simulate --set`` takes them:
        ``{"learning.rounds": 5, "qkd.rate_scale": 0.3}``.

    Returns
    -------
    Scenario
        The frozen, validated scenario.

    Raises
    ------
    ScenarioError
        Naming the first bad field, its value and what is allowed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.yaml"
    >>> _ = path.write_text('''
    ... name: tiny
    ... topology:
    ...   nodes: [{name: a}, {name: b}]
    ...   links: [{a: a, b: b, length_km: 10}]
    ... learning: {method: def-fd, dataset: fashion-mnist}
    ... ''')
    >>> load_scenario(path, {"learning.rounds": 2}).learning.rounds
    2
    """
    from qfl.scenario import apply_overrides
    from qfl.scenario import load_scenario as _load

    sc = _load(path)
    return apply_overrides(sc, overrides) if overrides else sc


def build_scenario(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Validate a scenario given as a mapping (the YAML document as Python objects).

    Parameters
    ----------
    data : mapping
        The scenario's sections (``name``, ``topology``, ``learning``...).
    overrides : mapping, optional
        Dotted field paths and their values (see :func:`load_scenario`).

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        Naming the first bad field.

    Examples
    --------
    >>> sc = build_scenario({
    ...     "name": "tiny",
    ...     "topology": {"nodes": [{"name": "s", "role": "server"}, {"name": "a"},
    ...                            {"name": "b"}],
    ...                  "links": [{"a": "s", "b": "a", "length_km": 10},
    ...                            {"a": "s", "b": "b", "length_km": 20}]},
    ...     "learning": {"method": "fedavg", "dataset": "fashion-mnist"},
    ... }, {"learning.rounds": 2})
    >>> sc.learning.method, sc.learning.rounds
    ('fedavg', 2)
    """
    from qfl.scenario import _from_mapping, apply_overrides

    sc = _from_mapping(dict(data))
    return apply_overrides(sc, overrides) if overrides else sc


def run(
    scenario: Scenario,
    folder: str | Path | None = None,
    *,
    plots: bool | None = None,
    threads: int | None = None,
    on_eval: Callable[[int, float, list[Any]], None] | None = None,
) -> RunResult:
    """Run a scenario: its QKD network's timeline, then the learning it allows.

    Parameters
    ----------
    scenario : Scenario
        From :func:`load_scenario` or :func:`build_scenario`.
    folder : str or Path, optional
        The run folder to write (created; it must not hold a run already); None keeps the
        run in memory.
    plots : bool, optional
        Draw the PNGs (default: the scenario's ``outputs.plots``).
    threads : int, optional
        Torch threads while it runs (default: ``$QFL_THREADS``, else the usable cores).
    on_eval : callable, optional
        ``on_eval(round, sim_time_s, rows)`` after each evaluation.

    Returns
    -------
    RunResult
        ``summary`` (what ``summary.json`` holds: accuracies, times, key, the engine a model
        of your own trained on...), ``rows`` (every evaluation), ``folder``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from qfl.data import TensorDataset
    >>> def blobs(seed):
    ...     g = torch.Generator().manual_seed(seed)
    ...     y = torch.arange(300) % 3
    ...     x = 3 * torch.eye(3)[y] + torch.randn(300, 3, generator=g)
    ...     return TensorDataset(x, y, ("a", "b", "c"), "blobs")
    >>> def mlp(input_shape, num_classes):
    ...     return nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(),
    ...                          nn.Linear(16, num_classes))
    >>> _ = register_dataset("doc-blobs", blobs, replace=True)
    >>> _ = register_model("doc-mlp", mlp, replace=True)
    >>> sc = build_scenario({
    ...     "name": "own",
    ...     "topology": {"nodes": [{"name": "s", "role": "server"}, {"name": "a"},
    ...                            {"name": "b"}],
    ...                  "links": [{"a": "s", "b": "a", "length_km": 10},
    ...                            {"a": "s", "b": "b", "length_km": 20}]},
    ...     "learning": {"method": "fedavg", "dataset": "doc-blobs", "model": "doc-mlp",
    ...                  "rounds": 3, "lr": 0.1},
    ... })
    >>> res = run(sc, threads=1)
    >>> res.summary["status"], res.summary["final_global_acc"] > 0.8
    ('complete', True)
    >>> res.summary["engine"]["engine"] in ("batched", "sequential")
    True
    """
    from qfl.cosim.outputs import claim_folder
    from qfl.cosim.run import run_scenario
    from qfl.threads import resolve_threads, using_threads

    n_threads, _ = resolve_threads(threads)
    out = None if folder is None else claim_folder(Path(folder), what="folder")
    with using_threads(n_threads):
        return run_scenario(scenario, out, plots=plots, on_eval=on_eval)


def _in_process(scenario: Scenario, grid: Mapping[str, Sequence[Any]]) -> bool:
    """Whether the scenario (or the grid) names a model or dataset registered as a Python
    object in this process only."""
    refs = [(MODELS, scenario.learning.model), (DATASETS, scenario.learning.dataset)]
    refs += [(MODELS, v) for v in grid.get("learning.model", ())]
    refs += [(DATASETS, v) for v in grid.get("learning.dataset", ())]
    return any(isinstance(v, str) and reg.in_process(v) for reg, v in refs)


def sweep(
    scenario: Scenario,
    grid: Mapping[str, Sequence[Any]],
    folder: str | Path,
    *,
    x: str = "mean_skr_bps",
    series: str | None = None,
    executor: str | None = None,
    jobs: int | None = None,
    plots: bool = True,
) -> list[dict[str, Any]]:
    """Run ``scenario`` at every point of ``grid``, sharing learning between points whose
    learning inputs are equal (as ``qfl sweep`` does).

    Parameters
    ----------
    scenario : Scenario
        The base scenario.
    grid : mapping of str to sequence
        Dotted field path -> values; the points are their Cartesian product.
    folder : str or Path
        The sweep folder (``sweep.csv``, ``points/<slug>/``, the key-rate plot).
    x, series : str
        The plot's x axis and the grid field whose values become lines.
    executor : {"local", "ray", "inline"}, optional
        Where learning runs; default ``local`` processes, or ``inline`` (this process)
        when a model or dataset is registered here as a Python object, which a fresh
        process would not know (register it by ``"package.module:attr"`` to use workers).
    jobs : int, optional
        Local worker processes.
    plots : bool
        Draw the plots.

    Returns
    -------
    list of dict
        A row per point (``sweep.csv``'s).

    Examples
    --------
    >>> rows = sweep(sc, {"qkd.rate_scale": [0.1, 1.0]}, "out/sweep")  # doctest: +SKIP
    >>> [r["status"] for r in rows]  # doctest: +SKIP
    ['complete', 'complete']
    """
    from qfl.cosim.sweep import SweepSpec, run_sweep

    if executor is None:
        executor = "inline" if _in_process(scenario, grid) else "local"
    spec = SweepSpec(
        base=scenario,
        grid={k: list(v) for k, v in grid.items()},
        x=x,
        series=series,
        name=scenario.name,
    )
    return run_sweep(spec, Path(folder), executor=executor, jobs=jobs, plots=plots)


def register_method(
    spec: MethodSpec, job: Callable[..., Any] | str | None = None, *, replace: bool = False
) -> MethodSpec:
    """Make ``spec.name`` a value of ``learning.method``.

    Parameters
    ----------
    spec : qfl.cosim.methods.MethodSpec
        What the scenario and the co-simulation need to know of the method.
    job : callable or str, optional
        Its learning job factory (a :class:`qfl.cosim.jobs.Job`), or the
        ``"package.module:attr"`` of one; None: ``spec.job`` names a job already known.
    replace : bool
        Replace an entry of the same name.

    Returns
    -------
    MethodSpec

    Raises
    ------
    ParameterError
        A name already taken, or a job key with no job.

    Examples
    --------
    >>> from qfl.cosim.methods import METHODS, MethodSpec
    >>> spec = MethodSpec("fedavg-mine", "server", {"fashion-mnist": ("resnet-me",)}, "fedavg",
    ...                   partitions=("dirichlet",), own_models=True)
    >>> register_method(spec).name in METHODS
    True
    >>> del METHODS["fedavg-mine"]
    """
    from qfl.cosim.jobs import JOBS
    from qfl.cosim.methods import METHODS, MethodSpec
    from qkd.errors import ParameterError

    if not isinstance(spec, MethodSpec):
        raise ParameterError("spec", type(spec).__name__, "a qfl.cosim.methods.MethodSpec")
    if spec.name in METHODS and not replace:
        raise ParameterError("spec.name", spec.name, "a name not registered yet (or replace=True)")
    if job is not None:
        if spec.job in JOBS and JOBS[spec.job] is not job and not replace:
            raise ParameterError("spec.job", spec.job, "a job key not taken (or replace=True)")
        JOBS[spec.job] = job
    elif spec.job not in JOBS:
        raise ParameterError("spec.job", spec.job, f"one of {', '.join(JOBS)} (or pass job=)")
    METHODS[spec.name] = spec
    return spec
