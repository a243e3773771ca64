"""The ``faults`` section: scheduled link cuts, node outages and eavesdroppers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from qfl.scenario.base import NonNegative, _Frozen

__all__ = ["FaultSpec"]


class FaultSpec(_Frozen):
    """A scheduled fault."""

    kind: Literal["link-cut", "node-down", "eavesdropper"] = Field(
        description="link-cut, node-down or eavesdropper.",
    )
    at_s: NonNegative = Field(description="Simulated time the fault starts, s.")
    until_s: NonNegative | None = Field(None, description="Repair time; None = permanent.")
    link: tuple[str, str] | None = Field(
        None,
        description="link-cut and eavesdropper: the link's two ends.",
    )
    node: str | None = Field(None, description="node-down: the node.")
    qber: Annotated[float, Field(gt=0, le=0.5)] = Field(
        0.25,
        description="eavesdropper: the QBER it causes; above the abort threshold (11 %) the link "
        "makes no"
        " key.",
    )
    wipe_pool: bool = Field(
        False,
        description="Also empty the link's key store when the fault starts.",
    )

    @model_validator(mode="after")
    def _target(self) -> FaultSpec:
        if self.kind in ("link-cut", "eavesdropper") and self.link is None:
            raise ValueError(f"a {self.kind} fault needs `link: [a, b]`")
        if self.kind == "node-down" and self.node is None:
            raise ValueError("a node-down fault needs `node`")
        if self.until_s is not None and self.until_s < self.at_s:
            raise ValueError(f"until_s ({self.until_s}) must be >= at_s ({self.at_s})")
        return self
