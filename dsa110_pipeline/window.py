"""Stages over a window of groups: an hour's mosaic, a night's light curves.

A window stage subclasses :class:`WindowStage`. Its ``requires`` name products of each
group (``image``, ``validation``) and its ``produces`` the window's own products. The
orchestrator cuts the night into windows of ``window_s`` seconds aligned to UTC (config
``pipeline.windows``), one per window that holds groups of the roles that list the
stage, and runs the stage once per window as soon as every group of the window has
finished: on the groups that succeeded, with the others named as gaps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from .context import PipelineContext, Product
from .errors import ContractError, InputError
from .mapped import MappedStage, key
from .stage import PipelineStage

#: Window lengths the config may name instead of seconds.
NAMED_WINDOWS = {"hour": 3600.0, "night": 86400.0}
_MJD0 = datetime(1858, 11, 17)
#: The metadata key under which a window stage's context carries its :class:`WindowInfo`.
WINDOW_META = "window"


@dataclass(frozen=True)
class WindowInfo:
    """One window as its stage sees it: which groups it holds and which are missing."""

    window_id: str
    stage: str
    start_mjd: float | None
    end_mjd: float | None
    #: groups whose products the stage gets, in time order
    groups: tuple[str, ...]
    #: group -> why its products are missing (failed tonight, quarantined, ...)
    gaps: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"window_id": self.window_id, "stage": self.stage, "start_mjd": self.start_mjd,
                "end_mjd": self.end_mjd, "groups": list(self.groups), "gaps": dict(self.gaps)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowInfo:
        return cls(d["window_id"], d["stage"], d["start_mjd"], d["end_mjd"],
                   tuple(d["groups"]), dict(d["gaps"]))


@dataclass(frozen=True)
class WindowPlan:
    """A window of the night: its id, bounds and member groups (in time order)."""

    window_id: str
    stage: str
    start_mjd: float | None
    end_mjd: float | None
    members: tuple[str, ...]


def window_length(value: float | str) -> float:
    """Seconds of a configured window length: a number or ``hour``/``night``."""
    if isinstance(value, str):
        if value not in NAMED_WINDOWS:
            raise ValueError(f"window length {value!r} is neither seconds nor one of "
                             f"{', '.join(NAMED_WINDOWS)}")
        return NAMED_WINDOWS[value]
    if not value > 0:
        raise ValueError(f"window length {value!r} s is not positive")
    return float(value)


def _iso(mjd: float) -> str:
    t = _MJD0 + timedelta(days=mjd)
    return (t + timedelta(microseconds=500_000)).replace(microsecond=0).isoformat()


def plan_windows(members: Iterable[tuple[str, float | None, PipelineStage]]
                 ) -> list[tuple[WindowPlan, PipelineStage]]:
    """Cut groups into windows: ``members`` holds (group id, start MJD, window stage run
    for it). A window is ``window_s`` long and starts at a whole multiple of it since the
    MJD epoch (an hour window starts on the UTC hour, a night window at 0h UTC, which is
    16h local time at OVRO). Groups without a start time share one ``undated`` window."""
    windows: dict[tuple[str, int | None], tuple[PipelineStage, list[tuple[float, str]]]] = {}
    for gid, start, stage in members:
        length = float(stage.window_s)  # type: ignore[attr-defined]
        idx = None if start is None else math.floor(start * 86400.0 / length + 1e-9)
        entry = windows.setdefault((stage.name, idx), (stage, []))
        if gid not in {g for _, g in entry[1]}:
            entry[1].append((start if start is not None else math.inf, gid))
    out = []
    for (name, idx), (stage, groups) in sorted(windows.items(),
                                               key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        length = float(stage.window_s)  # type: ignore[attr-defined]
        lo = None if idx is None else idx * length / 86400.0
        hi = None if lo is None else lo + length / 86400.0
        wid = f"{name}@{'undated' if lo is None else _iso(lo)}"
        out.append((WindowPlan(wid, name, lo, hi, tuple(g for _, g in sorted(groups))), stage))
    return out


class WindowStage(PipelineStage):
    """Base of a stage run once per window of groups (see the module docstring).

    In :meth:`execute`, :meth:`window` says which groups the window holds and which are
    missing, and :meth:`group_products` gives each group's product of a required key.
    """

    scope: ClassVar[str] = "window"  # type: ignore[misc]
    #: The window's length in seconds; config ``pipeline.windows.<stage>`` overrides it.
    window_s: float = 3600.0

    @staticmethod
    def window(ctx: PipelineContext) -> WindowInfo:
        if WINDOW_META not in ctx.metadata:
            raise ContractError("a window stage ran outside a window (no window metadata)")
        return WindowInfo.from_dict(ctx.metadata[WINDOW_META])

    def group_products(self, ctx: PipelineContext, name: str) -> dict[str, Product]:
        """Group id -> its product ``name`` (one of ``requires``), for the window's groups."""
        return {g: ctx.get(key(g, name)) for g in self.window(ctx).groups}

    def validate(self, ctx: PipelineContext) -> None:
        info = self.window(ctx)
        if not info.groups:
            raise ContractError(f"window {info.window_id} holds no group with products",
                                stage=self.name)
        for gid in info.groups:
            for name in self.requires:
                outer = key(gid, name)
                if not ctx.has(outer):
                    raise ContractError(f"group {gid} lacks required input '{name}'",
                                        stage=self.name)
                refs = ctx.get(outer)
                for ref in refs if isinstance(refs, list) else [refs]:
                    if not ref.exists():
                        raise InputError(f"group {gid}'s '{name}' points at a missing file",
                                         stage=self.name, files=[ref.path])


class MappedWindowStage(MappedStage):
    """A window stage seen from the night: it requires its member groups' products under
    their night keys (``<group>/<key>``) and runs on those that exist once their producers
    have finished (:attr:`PipelineStage.partial_inputs`)."""

    partial_inputs = True

    def __init__(self, inner: PipelineStage, plan: WindowPlan,
                 inputs: dict[str, dict[str, str]], gaps: dict[str, str]) -> None:
        super().__init__(inner, name=key(plan.window_id, inner.name),
                         inputs={k: k for k in inner.requires},
                         outputs={k: key(plan.window_id, k) for k in inner.produces},
                         group_id=plan.window_id)
        self.plan = plan
        #: group -> {inner key: night key}, for members whose products may exist
        self.group_inputs = inputs
        #: members known to be missing before the run (failed or quarantined earlier)
        self.gaps = dict(gaps)
        self.in_map = {}
        self.requires = tuple(o for m in inputs.values() for o in m.values())

    def info(self, ctx: PipelineContext) -> WindowInfo:
        """The window as this run finds it: members whose products all exist, and gaps."""
        present, gaps = [], dict(self.gaps)
        for gid in self.plan.members:
            if gid in gaps:
                continue
            outer = self.group_inputs.get(gid, {})
            if outer and all(ctx.has(o) for o in outer.values()):
                present.append(gid)
            else:
                gaps[gid] = "a stage of the group failed in this run"
        return WindowInfo(self.plan.window_id, self.plan.stage, self.plan.start_mjd,
                          self.plan.end_mjd, tuple(present), gaps)

    def _inner_ctx(self, ctx: PipelineContext) -> PipelineContext:
        info = self.info(ctx)
        outputs = {key(g, k): ctx.get(o) for g in info.groups
                   for k, o in self.group_inputs[g].items()}
        return ctx._derive(outputs=outputs, inputs={}, group_id=self.plan.window_id,
                           metadata={**ctx.metadata, WINDOW_META: info.to_dict()})

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        out = super().execute(ctx)
        return out.with_metadata(**{key(self.plan.window_id, WINDOW_META):
                                    self.info(ctx).to_dict()})


__all__ = ["WindowStage", "WindowInfo", "WindowPlan", "MappedWindowStage", "plan_windows",
           "window_length", "NAMED_WINDOWS", "WINDOW_META"]
