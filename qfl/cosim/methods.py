"""The learning methods a scenario can name, in one registry.

Each :class:`MethodSpec` says which datasets and models the method takes, how many clients
it needs, whether it needs a server, and which learning job runs it (the job knows its
round plan and its learning step). The scenario validates against this registry; the
co-simulation builds jobs from it. Adding a method means adding its job and one entry here.

Examples
--------
>>> spec = get_method("fedavg-multiexit")
>>> spec.needs_server, spec.models_for("fashion-mnist")
(True, ('resnet-me',))
>>> sorted(METHODS)[:3]
['def-fd', 'def-kt', 'fedavg']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from qkd.errors import UnknownNameError

__all__ = ["METHODS", "MethodSpec", "get_method", "load_hook"]


@dataclass(frozen=True)
class MethodSpec:
    """What the scenario and the co-simulation need to know of a learning method.

    Attributes
    ----------
    name : str
        The scenario's ``learning.method``.
    family : {"decentralized", "server"}
        Decentralized rounds (no server) or synchronous server rounds; also the learning
        job that runs it (:data:`qfl.cosim.jobs.JOBS`).
    models : mapping of str to tuple of str
        Dataset -> the ``learning.model`` values it takes (the first is what runs when
        ``model`` is not given).
    min_clients, max_clients : int
        How many client nodes it needs (``max_clients`` None: no limit).
    job : str
        Key of the learning job in :data:`qfl.cosim.jobs.JOBS`.
    partitions : tuple of str
        The ``learning.partition`` values it implements (empty: the clients' data are given,
        e.g. one dataset per client); the scenario may name it, or leave it out.
    check : str, optional
        ``"package.module:attr"`` of ``check(scenario)``, which validates the learning
        section of a method that brings its own data and models (instead of ``dataset`` /
        ``model`` against ``models``), raising a :class:`~qfl.scenario.ScenarioError` on the
        bad field. Named by a string, as a plugin is: the method's package is imported only
        when a scenario names the method (:meth:`validate`).
    own_fields : tuple of str
        ``learning`` fields only this method reads; a scenario of another method that sets
        one is refused (a field is never parsed and then ignored).
    """

    name: str
    family: Literal["decentralized", "server"]
    models: Mapping[str, tuple[str, ...]]
    job: str
    min_clients: int = 1
    max_clients: int | None = None
    partitions: tuple[str, ...] = ()
    check: str | None = None
    own_fields: tuple[str, ...] = ()

    def validate(self, scenario: Any) -> None:
        """Run :attr:`check` on ``scenario`` (nothing when there is none)."""
        if self.check is not None:
            load_hook(self.check)(scenario)

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets it takes."""
        return tuple(self.models)

    @property
    def needs_server(self) -> bool:
        """Whether a node must aggregate (``learning.server`` or a node with role server)."""
        return self.family == "server"

    def models_for(self, dataset: str) -> tuple[str, ...]:
        """The models it takes on ``dataset`` (empty if it does not take the dataset)."""
        return self.models.get(dataset, ())


_FMNIST_CNN = {"fashion-mnist": ("cnn",)}
_MULTIEXIT = {"fashion-mnist": ("resnet-me",), "synthetic-har": ("lstm-me",),
              "unimib-shar": ("lstm-me",)}  # fmt: skip

METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        *(
            MethodSpec(
                m,
                "decentralized",
                _FMNIST_CNN,
                "decentralized",
                min_clients=2,
                partitions=("classes",),
            )
            for m in ("def-fd", "def-kt", "gossip-avg")
        ),
        MethodSpec("fedavg", "server", _MULTIEXIT, "fedavg", partitions=("dirichlet",)),
        MethodSpec("fedavg-multiexit", "server", _MULTIEXIT, "fedavg", partitions=("dirichlet",)),
        MethodSpec(
            "ssl-backbone",
            "server",
            {"flowers102+intel": ("resnet18", "resnet50")},
            "ssl",
            min_clients=2,
            max_clients=2,
        ),
        # A user's Flower Strategy and clients (qfl[flower]); qfl.flower.
        MethodSpec(
            "flower",
            "server",
            {},
            "flower",
            check="qfl.flower.validate:check_scenario",
            own_fields=("strategy", "client_fn", "flower", "round_timeout_s", "seconds_per_sample"),
        ),
    )
}
"""Every method, by name."""


def load_hook(path: str) -> Callable[..., Any]:
    """The object a registry's ``"package.module:attr"`` string names (imported now).

    Examples
    --------
    >>> load_hook("math:sqrt")(4.0)
    2.0
    """
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return cast(Callable[..., Any], obj)


def get_method(name: str) -> MethodSpec:
    """The registry entry of ``name``.

    Raises
    ------
    UnknownNameError
        Listing the known methods.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError("learning.method", name, tuple(METHODS)) from None
