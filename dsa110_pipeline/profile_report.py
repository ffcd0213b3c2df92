"""A run's profile: per-stage records (:class:`StageProfile`) and the report of them
(:class:`ProfileReport`: JSON, markdown and a PNG of memory over time)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .memory import _MB

# ---------------------------------------------------------------------------- data

@dataclass(slots=True)
class StageProfile:
    """What one stage cost. JSON-able through :meth:`to_dict`."""

    name: str
    started: float = 0.0
    finished: float = 0.0
    wall_s: float = 0.0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    peak_rss_mb: float | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    read_chars: int | None = None
    write_chars: int | None = None
    cache_hit: bool = False
    scope: str = "thread"
    memory_profile_text: str | None = None
    cprofile_text: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageProfile:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ProfileReport:
    """The profile of one run: stage profiles, the RSS time series and a summary."""

    stages: list[StageProfile]
    #: ``(unix_time, rss_mb, peak_mb)`` samples: RSS at the sample, and the highest RSS
    #: since the previous sample (kernel high-water mark where available).
    rss_series: list[tuple[float, float, float]]
    started: float
    finished: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_rss_mb(self) -> float | None:
        vals = [p for _, _, p in self.rss_series]
        vals += [s.peak_rss_mb for s in self.stages if s.peak_rss_mb is not None]
        return max(vals) if vals else None

    def summary(self) -> dict[str, Any]:
        return {
            "wall_s": max(0.0, self.finished - self.started),
            "n_stages": len(self.stages),
            "n_cache_hits": sum(1 for s in self.stages if s.cache_hit),
            "n_errors": sum(1 for s in self.stages if s.error),
            "stage_wall_s": sum(s.wall_s for s in self.stages),
            "cpu_user_s": sum(s.cpu_user_s for s in self.stages),
            "cpu_sys_s": sum(s.cpu_sys_s for s in self.stages),
            "peak_rss_mb": self.peak_rss_mb,
            "read_bytes": sum(s.read_bytes or 0 for s in self.stages),
            "write_bytes": sum(s.write_bytes or 0 for s in self.stages),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "started": self.started,
            "finished": self.finished,
            "summary": self.summary(),
            "stages": [s.to_dict() for s in self.stages],
            "rss_series": {
                "t_s": [round(t - self.started, 4) for t, _, _ in self.rss_series],
                "rss_mb": [round(r, 2) for _, r, _ in self.rss_series],
                "peak_mb": [round(p, 2) for _, _, p in self.rss_series],
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileReport:
        t0 = d["started"]
        s = d["rss_series"]
        series = [(t0 + t, r, p) for t, r, p in zip(s["t_s"], s["rss_mb"], s["peak_mb"])]
        return cls(stages=[StageProfile.from_dict(x) for x in d["stages"]],
                   rss_series=series, started=t0, finished=d["finished"],
                   meta=d.get("meta", {}))

    def to_markdown(self) -> str:
        """A markdown table, one row per stage, followed by the summary and the
        optional cProfile / memory_profiler texts."""
        head = ("| stage | scope | start s | wall s | CPU user s | CPU sys s | peak RSS MB "
                "| read MB | written MB | cache hit | error |")
        lines = [head, _md_rule(head)]
        for s in self.stages:
            lines.append(
                f"| {s.name} | {s.scope} | {s.started - self.started:.3f} | {s.wall_s:.4f} "
                f"| {s.cpu_user_s:.3f} | {s.cpu_sys_s:.3f} | {_fmt(s.peak_rss_mb, '.1f')} "
                f"| {_fmt_mb(s.read_bytes)} | {_fmt_mb(s.write_bytes)} "
                f"| {'yes' if s.cache_hit else ''} | {_md_escape(s.error or '')} |")
        sm = self.summary()
        lines += ["", f"Run wall {sm['wall_s']:.3f} s; {sm['n_stages']} stage(s), "
                  f"{sm['n_cache_hits']} cache hit(s), {sm['n_errors']} error(s); "
                  f"peak RSS {_fmt(sm['peak_rss_mb'], '.1f')} MB (process and children)."]
        for s in self.stages:
            if s.cprofile_text:
                lines += ["", f"### cProfile: {s.name}", "", "```", s.cprofile_text.rstrip(),
                          "```"]
            if s.memory_profile_text:
                lines += ["", f"### Line-by-line memory: {s.name}", "", "```",
                          s.memory_profile_text.rstrip(), "```"]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path, *, max_stages: int = 60) -> Path:
        """RSS over time (top) and a stage timeline (bottom); stage starts and ends are
        marked on the RSS plot. With more than ``max_stages`` stages only the longest
        are drawn (the title says so)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        path = Path(path)
        fig = Figure(figsize=(11, 6.5), layout="constrained")
        ax, axg = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        t0 = self.started
        if self.rss_series:
            ts = [t - t0 for t, _, _ in self.rss_series]
            ax.plot(ts, [r for _, r, _ in self.rss_series], lw=1.2, label="RSS (sampled)")
            ax.plot(ts, [p for _, _, p in self.rss_series], lw=0.8, alpha=0.7,
                    label="peak since previous sample")
        shown = sorted(self.stages, key=lambda s: s.wall_s, reverse=True)[:max_stages]
        shown.sort(key=lambda s: s.started)
        cmap = matplotlib.colormaps["tab10"]
        for i, s in enumerate(shown):
            c = cmap(i % 10)
            a, b = s.started - t0, s.finished - t0
            ax.axvline(a, color=c, lw=0.8, ls="-")
            ax.axvline(b, color=c, lw=0.8, ls="--")
            hatch = "//" if s.cache_hit else None
            axg.broken_barh([(a, max(b - a, 1e-6))], (i - 0.4, 0.8), facecolors=c,
                            hatch=hatch, edgecolor="k" if s.error else c)
        axg.set_yticks(range(len(shown)))
        axg.set_yticklabels([s.name for s in shown], fontsize=7 if len(shown) > 20 else 9)
        axg.invert_yaxis()
        axg.set_xlabel("time since run start (s)")
        ax.set_ylabel("RSS, process + children (MB)")
        title = f"RSS and stage boundaries (start —, end - -); {len(self.stages)} stage(s)"
        if len(shown) < len(self.stages):
            title += f", the {len(shown)} longest shown"
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        fig.savefig(path, dpi=110)
        return path

    def write(self, out_dir: str | Path, stem: str = "profile") -> dict[str, Path]:
        """Write ``stem.json``, ``stem.md`` and ``stem.png`` into ``out_dir`` (each written
        under a temporary name, then renamed). Returns the paths by suffix."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md",
                 "png": out / f"{stem}.png"}
        from .atomic import atomic_path, write_text_atomic

        write_text_atomic(paths["json"], json.dumps(self.to_dict(), indent=1))
        write_text_atomic(paths["md"], self.to_markdown())
        with atomic_path(paths["png"]) as tmp:
            self.plot(tmp.with_name(tmp.name + ".png"))  # matplotlib picks the format by suffix
            tmp.with_name(tmp.name + ".png").rename(tmp)
        return paths


# ------------------------------------------------------------------- /proc readers

def _downsample(series: list[tuple[float, float, float]], n: int
                ) -> list[tuple[float, float, float]]:
    if len(series) <= n or n <= 0:
        return series
    step = -(-len(series) // n)
    out = []
    for i in range(0, len(series), step):
        chunk = series[i:i + step]
        out.append((chunk[-1][0], max(c[1] for c in chunk), max(c[2] for c in chunk)))
    return out


def _md_rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")[:200]


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _fmt_mb(v: int | None) -> str:
    return "" if v is None else f"{v / _MB:.2f}"


