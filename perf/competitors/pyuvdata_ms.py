"""The usual way to a Measurement Set: pyuvdata read + phase + ``write_ms`` (a perf anchor).

Run as ``python -m perf.competitors.pyuvdata_ms '<json>'`` with ``files``, ``out``,
``ra_deg``, ``dec_deg`` and optionally ``warm`` (files whose first is read and phased
first, untimed: imports and IERS tables) and ``telescope`` (a name written into
OBSERVATION, e.g. OVRO_MMA for CASA). Prints ``{"wall_s", "cpu_s"}`` of the timed
conversion as its last line.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence


def write_ms(files: Sequence[str], out: str, ra_deg: float, dec_deg: float) -> None:
    """Read ``files`` with pyuvdata, join them in frequency, phase to (ra, dec), write."""
    import numpy as np

    uvs = _read(files)
    uv = uvs[0].fast_concat(uvs[1:], axis="freq", run_check=False) if len(uvs) > 1 else uvs[0]
    del uvs
    uv.reorder_freqs(channel_order="freq")
    uv.phase(lon=np.deg2rad(ra_deg), lat=np.deg2rad(dec_deg), cat_name="ref")
    uv.write_ms(out, run_check=False)


def _read(files: Sequence[str]) -> list:
    import numpy as np
    from pyuvdata import UVData

    from dsa110_pipeline.simulate import PYUVDATA_READ_KWARGS

    uvs = [UVData.from_file(f, **PYUVDATA_READ_KWARGS) for f in files]
    for u in uvs:
        u.uvw_array = u.uvw_array.astype(np.float64)
    return uvs


def main(args: dict) -> dict:
    import numpy as np

    if args.get("warm"):
        w = _read(args["warm"][:1])[0]
        w.phase(lon=np.deg2rad(args["ra_deg"]), lat=np.deg2rad(args["dec_deg"]), cat_name="w")
        del w
    t0, c0 = time.perf_counter(), time.process_time()
    write_ms(args["files"], args["out"], args["ra_deg"], args["dec_deg"])
    res = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    if args.get("telescope"):
        from casacore import tables

        with tables.table(args["out"] + "/OBSERVATION", readonly=False, ack=False) as t:
            t.putcol("TELESCOPE_NAME", np.array([args["telescope"]] * t.nrows()))
    return res


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
