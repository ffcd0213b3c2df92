"""The simulated night behind ``python -m dsa110_pipeline.run --demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import config_digest
from .config import SimulationConfig
from .observation import simulate_observation

MARKER = "demo_simulation.json"
#: The demo sky as a point-source catalog: it plays the part of the survey catalog (NVSS)
#: a real night's calibration field model comes from.
SKY_CATALOG = "demo_sky.csv"


def write_sky_catalog(truth_jsons: list[Path], path: Path) -> Path:
    """Write the sources of the groups' truth files (once each) as a CSV catalog."""
    import csv

    rows: dict[str, list[Any]] = {}
    for tj in truth_jsons:
        for src in json.loads(Path(tj).read_text())["sources"]:
            rows.setdefault(src["name"], [src["name"], src["ra_deg"], src["dec_deg"],
                                          src["flux_jy_ref"], src["spectral_index"],
                                          src["ref_freq_hz"]])
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "ra_deg", "dec_deg", "flux_jy", "spectral_index", "ref_freq_hz"])
        w.writerows(rows.values())
    tmp.replace(path)
    return path


def simulate_demo_night(incoming: str | Path, cfg: Any) -> Path:
    """Write the demo night (``cfg.demo``) into ``incoming``; reuse it when already there."""
    incoming = Path(incoming)
    demo = cfg.demo.model_dump(mode="json")
    digest = config_digest(demo)
    marker = incoming / MARKER
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("digest") == digest:
                if not (incoming / SKY_CATALOG).exists():
                    write_sky_catalog(sorted(incoming.glob("*_truth.json")),
                                      incoming / SKY_CATALOG)
                return incoming
        except ValueError:
            pass
    incoming.mkdir(parents=True, exist_ok=True)
    sim = SimulationConfig(
        out_dir=incoming, start=demo["start"], n_groups=demo["n_groups"],
        dec_deg=demo["dec_deg"], n_antennas=demo["n_antennas"],
        n_subbands=demo["n_subbands"], n_channels=demo["n_channels"],
        n_integrations=demo["n_integrations"], n_sources=demo["n_sources"],
        catalog=Path(demo["catalog"]) if demo["catalog"] else None,
        calibrator=demo["calibrator"], calibrator_group=0, seed=demo["seed"],
        noise=demo["noise"], rfi=demo["rfi"])
    res = simulate_observation(sim)
    write_sky_catalog([g.truth_json for g in res.groups], incoming / SKY_CATALOG)
    marker.write_text(json.dumps({"digest": digest, "demo": demo,
                                  "groups": [g.start_iso for g in res.groups]}, indent=2))
    return incoming
