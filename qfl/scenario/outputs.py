"""The ``outputs`` section: where and what a run writes."""

from __future__ import annotations

from pydantic import Field

from qfl.scenario.base import _Frozen

__all__ = ["OutputSpec"]


class OutputSpec(_Frozen):
    """Where and what to write."""

    dir: str = Field("runs", description="Parent folder of run folders (relative to cwd).")
    plots: bool = Field(True, description="Draw the PNG plots.")
