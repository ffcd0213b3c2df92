"""The simulated night behind ``python -m dsa110_pipeline.run --demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..catalogs import SURVEY_CATALOG
from ..config import config_digest
from .config import SimulationConfig
from .observation import simulate_observation

MARKER = "demo_simulation.json"
def simulate_demo_night(incoming: str | Path, cfg: Any) -> Path:
    """Write the demo night (``cfg.demo``) into ``incoming``; reuse it when already there."""
    incoming = Path(incoming)
    demo = cfg.demo.model_dump(mode="json")
    digest = config_digest(demo)
    marker = incoming / MARKER
    if marker.exists():
        try:
            if (json.loads(marker.read_text()).get("digest") == digest
                    and (incoming / SURVEY_CATALOG).is_file()):
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
    res = simulate_observation(sim)  # writes survey_catalog.csv, the night's NVSS
    marker.write_text(json.dumps({"digest": digest, "demo": demo,
                                  "groups": [g.start_iso for g in res.groups]}, indent=2))
    return incoming
