"""Helpers shared by all perf suites.

- :func:`run_measured`: run a command in a subprocess and measure its wall time and peak
  RSS with its descendants included (psutil samples of the whole process tree, and the
  kernel's own maximum RSS of the child from ``wait4``; the larger is reported).
- :func:`machine_info`: CPU, memory, Python and package versions, date, git commit.
- :func:`make_venv` / :func:`find_python`: throw-away virtual environments under
  ``perf/.venvs/`` for competitor tools.
- :func:`row`, :func:`format_markdown`, :func:`write_results`: the result format of
  the suite contract (see perf/README.md).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata as _md
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsa110_pipeline.atomic import write_text_atomic

PERF_DIR = Path(__file__).resolve().parent
REPO_DIR = PERF_DIR.parent
RESULTS_DIR = PERF_DIR / "results"
VENVS_DIR = PERF_DIR / ".venvs"
GB = 1024.0**3

DEFAULT_PACKAGES = ("dsa110_pipeline", "numpy", "dask", "distributed", "psutil", "pydantic",
                    "pyuvdata", "python-casacore", "ducc0", "h5py", "astropy")


# ------------------------------------------------------------------ measuring
@dataclass
class Measured:
    """Outcome of :func:`run_measured`."""

    cmd: list[str]
    returncode: int | None
    wall_s: float
    peak_rss_bytes: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def peak_rss_gb(self) -> float:
        return self.peak_rss_bytes / GB

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def json(self) -> Any:
        """The last line of stdout that parses as JSON (None if there is none)."""
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith(("{", "[")):
                with contextlib.suppress(ValueError):
                    return json.loads(line)
        return None

    def error_text(self, limit: int = 300) -> str:
        if self.timed_out:
            return f"timed out after {self.wall_s:.0f} s"
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        return (f"exit code {self.returncode}: " + " / ".join(tail))[:limit]


def _tree_rss(proc: Any, kids: list[Any]) -> int:
    import psutil

    total = 0
    for p in [proc, *kids]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_measured(cmd: Sequence[str], *, cwd: str | Path | None = None,
                 env: Mapping[str, str] | None = None, timeout: float | None = None,
                 interval_s: float = 0.02, stdin_text: str | None = None) -> Measured:
    """Run ``cmd`` and measure wall time and peak RSS of its process tree.

    stdout/stderr go to temporary files (no pipe dead-lock). On timeout the whole
    process group is killed and ``timed_out`` is set.
    """
    import psutil

    cmd = [str(c) for c in cmd]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, cwd=cwd, env=dict(env) if env is not None else None,
                                 stdout=out, stderr=err,
                                 stdin=subprocess.PIPE if stdin_text is not None else
                                 subprocess.DEVNULL, start_new_session=True, text=True)
        if stdin_text is not None:
            assert popen.stdin is not None
            popen.stdin.write(stdin_text)
            popen.stdin.close()
        ps = psutil.Process(popen.pid)
        peak = 0
        kids: list[Any] = []
        ticks = 0
        status: int | None = None
        ru_maxrss = 0
        timed_out = False
        while True:
            if ticks % 5 == 0:
                with contextlib.suppress(psutil.Error):
                    kids = ps.children(recursive=True)
            ticks += 1
            peak = max(peak, _tree_rss(ps, kids))
            pid, st, ru = os.wait4(popen.pid, os.WNOHANG)
            if pid == popen.pid:
                status, ru_maxrss = st, ru.ru_maxrss * 1024  # kB on Linux
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, 9)
                _, st, ru = os.wait4(popen.pid, 0)
                status, ru_maxrss = st, ru.ru_maxrss * 1024
                break
            time.sleep(interval_s)
        wall = time.perf_counter() - t0
        popen.returncode = os.waitstatus_to_exitcode(status) if status is not None else None
        out.seek(0)
        err.seek(0)
        return Measured(cmd=cmd, returncode=popen.returncode, wall_s=wall,
                        peak_rss_bytes=max(peak, ru_maxrss), stdout=out.read(),
                        stderr=err.read(), timed_out=timed_out)


def gb(nbytes: float | None) -> float | None:
    return None if nbytes is None else nbytes / GB


# -------------------------------------------------------------- environment
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def package_versions(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in packages:
        try:
            out[p] = _md.version(p)
        except _md.PackageNotFoundError:
            out[p] = None
    return out


def machine_info(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """What the numbers were measured on."""
    import psutil

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "ram_gb": round(psutil.virtual_memory().total / GB, 1),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "git_commit": _git_commit(),
        "versions": {k: v for k, v in package_versions(packages).items() if v is not None},
    }


# ----------------------------------------------------------------- venvs
@dataclass
class Venv:
    """A throw-away virtual environment for a competitor tool."""

    name: str
    path: Path
    python: Path | None
    ok: bool
    versions: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None


def find_python(min_version: tuple[int, int] = (3, 11)) -> str | None:
    """An interpreter of at least ``min_version``: this one, a ``pythonX.Y`` on PATH, or a
    pyenv version."""
    if sys.version_info[:2] >= min_version:
        return sys.executable
    cands: list[str] = []
    for minor in range(min_version[1], 20):
        exe = shutil.which(f"python{min_version[0]}.{minor}")
        if exe:
            cands.append(exe)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        for d in sorted(pyenv.iterdir()):
            try:
                ver = tuple(int(x) for x in d.name.split(".")[:2])
            except ValueError:
                continue
            if ver >= min_version and (d / "bin" / "python3").exists():
                cands.append(str(d / "bin" / "python3"))
    return cands[0] if cands else None


def _venv_version(python: Path, package: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() if r.returncode == 0 else None


def make_venv(name: str, packages: Sequence[str], *, min_python: tuple[int, int] = (3, 11),
              pip_args: Sequence[str] = ("--only-binary=:all:",), root: Path = VENVS_DIR,
              reuse: bool = True, timeout: float = 900) -> Venv:
    """Create (or reuse) ``root/name`` with ``packages`` installed by pip.

    Never raises for a failed install: the returned :class:`Venv` says what went wrong,
    so a suite can report "X would not install" instead of dying.
    """
    path = root / name
    py = path / "bin" / "python"
    if reuse and py.exists() and all(_venv_version(py, p) for p in packages):
        return Venv(name, path, py, True, {p: _venv_version(py, p) for p in packages},
                    note=f"reused, python {_py_version(py)}")
    base = find_python(min_python)
    if base is None:
        return Venv(name, path, None, False,
                    error=f"no Python >= {min_python[0]}.{min_python[1]} found")
    shutil.rmtree(path, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([base, "-m", "venv", str(path)], check=True, capture_output=True,
                       text=True, timeout=300)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            *pip_args, *packages], capture_output=True, text=True,
                           timeout=timeout)
    except (subprocess.SubprocessError, OSError) as exc:
        return Venv(name, path, None, False, error=f"venv/pip failed: {exc}"[:500])
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines()
                 if ln.strip() and not ln.startswith("WARNING: Location")]
        return Venv(name, path, None, False,
                    error="pip install failed: " + " / ".join(lines[-4:])[:600])
    vers = {p: _venv_version(py, p) for p in packages}
    return Venv(name, path, py, True, vers, note=f"python {_py_version(py)}")


def _py_version(python: Path) -> str:
    r = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                       capture_output=True, text=True, timeout=60)
    return r.stdout.strip()


# ----------------------------------------------------------------- results
_CORE = ("scenario", "tool", "wall_s", "peak_rss_gb", "anchor", "goal")


def row(scenario: str, tool: str, wall_s: float | None = None,
        peak_rss_gb: float | None = None, **metrics: Any) -> dict[str, Any]:
    """One result row of the suite contract."""
    return {"scenario": scenario, "tool": tool, "wall_s": wall_s, "peak_rss_gb": peak_rss_gb,
            **metrics}


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 1e-3:
        return f"{v * 1e6:.1f} µs"
    if v < 1.0:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def fmt_gb(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 1.0:
        return f"{v * 1024:.0f} MB"
    return f"{v:.2f} GB"


def _fmt_metric(k: str, v: Any) -> str:
    if isinstance(v, float):
        if k.endswith("_s"):
            return f"{k[:-2]}={fmt_seconds(v)}"
        return f"{k}={v:.0f}" if abs(v) >= 100 else f"{k}={v:.3g}"
    if isinstance(v, (list, dict)):
        v = json.dumps(v)
    return f"{k}={v}"


def _load(m: Mapping[str, Any], key: str) -> str:
    v = m.get(key)
    return f"{v[0]:.1f}" if v else "?"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_markdown(result: Mapping[str, Any]) -> str:
    """Markdown: title, machine line, the table, then the notes."""
    suite = result.get("suite", "?")
    m = result.get("machine", {})
    lines = [f"# perf suite `{suite}`", ""]
    if m:
        vers = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        lines += [f"Measured {m.get('date_utc', '?')} on {m.get('cpu_model', '?')} "
                  f"({m.get('cpus_usable', m.get('cpu_count', '?'))} usable CPUs, "
                  f"{m.get('ram_gb', '?')} GB RAM; 1-min load average "
                  f"{_load(m, 'load_avg_at_start')} at the start, "
                  f"{_load(m, 'load_avg_1_5_15')} at the end), "
                  f"Python {m.get('python', '?')}, "
                  f"git {m.get('git_commit') or 'uncommitted'}"
                  f"{' — quick mode' if result.get('quick') else ''}.", ""]
        if vers:
            lines += [f"Versions: {vers}.", ""]
    lines += ["| scenario | tool | wall | peak RSS | other metrics | anchor / goal |",
              "|---|---|---|---|---|---|"]
    for r in result.get("rows", []):
        other = ", ".join(_fmt_metric(k, v) for k, v in r.items()
                          if k not in _CORE and v is not None)
        ag = " — ".join(str(r[k]) for k in ("anchor", "goal") if r.get(k))
        lines.append(f"| {_cell(r.get('scenario', ''))} | {_cell(r.get('tool', ''))} "
                     f"| {fmt_seconds(r.get('wall_s'))} | {fmt_gb(r.get('peak_rss_gb'))} "
                     f"| {_cell(other)} | {_cell(ag)} |")
    notes = result.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_results(result: Mapping[str, Any], out_dir: str | Path = RESULTS_DIR
                  ) -> tuple[Path, Path]:
    """Write ``SUITE.json`` and ``SUITE.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = result["suite"]
    jp, mp = out / f"{name}.json", out / f"{name}.md"
    write_text_atomic(jp, json.dumps(result, indent=1, default=str) + "\n")
    write_text_atomic(mp, format_markdown(result))
    return jp, mp
