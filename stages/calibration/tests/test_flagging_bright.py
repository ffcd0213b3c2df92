"""Issue 20, item 3: flagging on high-SNR data. A simulated calibrator group (the project
simulator, a bright catalog source beside 3C454.3) at 50, 200 and 1000 Jy: without RFI
at most 1 % is flagged; with the simulator's RFI its truth mask is caught. SumThreshold
on the raw amplitudes with a noise floor of 3 % of the amplitude flagged ~8 % at 200 and
1000 Jy and caught a tenth of the RFI at 1000 Jy."""

from pathlib import Path

import numpy as np
import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef
from stages.calibration import flagging as F
from stages.calibration import msio
from stages.calibration.rfi import RFIParams
from stages.calibration.rfi_antenna_model import source_snr

pytestmark = pytest.mark.slow


def _simulate(root: Path, flux: float, rfi: bool):
    from dsa110_pipeline.simulate.config import SimulationConfig
    from dsa110_pipeline.simulate.observation import simulate_observation
    from stages.conversion.stage import ConversionStage

    root.mkdir(parents=True, exist_ok=True)
    cat = root / "bright.csv"  # 2' from 3C454.3, which the simulator puts at transit
    cat.write_text("source_name,ra_deg,dec_deg,catalog_flux_jy\n"
                   f"BRIGHT,343.4906,16.1821,{flux:g}\n")
    cfg = SimulationConfig(out_dir=root / "raw", n_antennas=10, n_subbands=2, n_channels=32,
                           catalog=cat, calibrator="3C454.3", seed=5, jitter_s=0,
                           nthreads=2, dead_antennas=0, rfi=rfi)
    g = simulate_observation(cfg).groups[0]
    ctx = PipelineContext(inputs={"subband_files": [ProductRef.for_path("uvh5", f)
                                                    for f in g.files]})
    ms = ConversionStage({"output_dir": str(root / "ms"), "scratch_dir": str(root / "scr"),
                          "expected_subbands": [0, 1]}).execute(ctx).outputs["ms"]
    meta = msio.read_ms_meta(ms.path)
    truth = np.load(g.truth_npz)
    order = np.argsort(truth["freq_array"].ravel())
    return meta, msio.read_cube(meta), truth["rfi_mask"][:, order]


def _flag(meta, cube, **params):
    flags, _ = F.flag_all(cube.vis, cube.flags.copy(), cube.ant1, cube.ant2, meta.n_ant,
                          freqs=meta.freqs, rfi=RFIParams(**params))
    cross = cube.ant1 != cube.ant2
    return flags[:, cross]


@pytest.mark.parametrize("flux", [50.0, 200.0, 1000.0])
def test_bright_simulated_calibrator_false_flags_and_rfi(flux, tmp_path):
    meta, cube, _ = _simulate(tmp_path / "clean", flux, rfi=False)
    assert np.median(np.abs(cube.vis[:, cube.ant1 != cube.ant2])) > 0.9 * flux
    assert source_snr(cube.vis, cube.flags, cube.ant1, cube.ant2) > 10
    assert _flag(meta, cube).mean() <= 0.01
    if flux >= 200:  # what it replaces: the 3 % floor on the raw amplitudes
        assert _flag(meta, cube, antenna_model_snr=0).mean() > 0.02

    meta, cube, mask = _simulate(tmp_path / "rfi", flux, rfi=True)
    assert mask.any()
    got = _flag(meta, cube)
    m = np.broadcast_to(mask[:, None, :, None], got.shape)
    assert got[m].mean() >= 0.95
    assert got[~m].mean() <= 0.01
