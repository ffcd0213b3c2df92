"""The moving drift-scan beam in the major cycles: kernels, and CLEAN against a truth that moves."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.coordinates import hadec_to_enu
from dsa110_pipeline.instrument import SIDEREAL_RATE, SITE_LATITUDE_DEG
from dsa110_pipeline.simulate.geometry import beam_power
from stages.imaging.drift_beam import (
    DriftBeamModel,
    SkySources,
    beam_ratio,
    component_beams,
    sources_about,
)
from stages.imaging.gridding import pixel_lm
from stages.imaging.imager import ImagingParams, make_images
from stages.imaging.primary_beam import drift_pointings
from stages.imaging.tests._params import plain_clean, plain_options
from stages.imaging.vis_chunk import VisChunk

from ._sim import point_source_vis, t_layout, uvw_tracks

DEC = np.radians(16.15)
LAT = np.radians(SITE_LATITUDE_DEG)


def test_pointing_moves_east_and_is_symmetric_about_mid_time():
    pts = drift_pointings(-150.0, 150.0, DEC, n=3)
    assert pts[1] == pytest.approx([0.0, 0.0])
    assert pts[2, 0] > 0 > pts[0, 0]  # later: the meridian lies east of the phase centre
    assert pts[2, 0] == pytest.approx(np.cos(DEC) * np.sin(SIDEREAL_RATE * 150.0))
    assert pts[0, 1] == pytest.approx(pts[2, 1])


def test_component_beam_equals_the_exact_enu_beam():
    """The flat-sky beam at a pixel equals the beam from ENU geometry (the simulator's)."""
    times = np.linspace(-150, 150, 7)
    freqs = np.array([1.32e9, 1.49e9])
    dra = np.radians(1.5)  # source 1.5 deg east of the phase centre, on its declination
    l_src = np.cos(DEC) * np.sin(dra)
    m_src = np.sin(DEC) * np.cos(DEC) - np.cos(DEC) * np.sin(DEC) * np.cos(dra)
    ours = component_beams(np.array([l_src]), np.array([m_src]), SIDEREAL_RATE * times, DEC,
                           freqs)[:, 0, :]
    enu = hadec_to_enu(SIDEREAL_RATE * times - dra, DEC, LAT)
    exact = beam_power(enu, hadec_to_enu(0.0, DEC, LAT), freqs)
    np.testing.assert_allclose(ours, exact, rtol=1e-9, atol=1e-12)
    assert exact[-1, 0] > 2 * exact[0, 0]  # it really moves: the source nears the beam centre


def test_ratio_has_weighted_mean_one_and_bad_weights_are_refused():
    rng = np.random.default_rng(0)
    beams = rng.uniform(0.1, 1.0, (5, 3, 4))
    w = rng.uniform(0.0, 2.0, (5, 4))
    r = beam_ratio(beams, w)
    np.testing.assert_allclose(np.einsum("tcf,tf->c", r, w) / w.sum(), 1.0)
    with pytest.raises(ValueError, match="weights shape"):
        beam_ratio(beams, w[:, :3])
    with pytest.raises(ValueError, match="sum to zero"):
        beam_ratio(beams, np.zeros_like(w))


def test_correction_picks_the_component_that_varies_most():
    times = np.linspace(-150, 150, 24)
    freqs = np.linspace(1.31e9, 1.5e9, 8)
    model = np.zeros((256, 256), np.float32)
    model[128, 128] = 1.0  # at the phase centre: brighter but nearly constant
    model[128, 20] = 0.5  # far east: fainter but its beam changes a lot
    model[200, 128] = 1e-6  # negligible
    dm = DriftBeamModel(times=times, t_mid=0.0, dec=DEC, freqs=freqs,
                        weights=np.ones((24, 8)), max_components=1, floor_jy=1e-5)
    lmn, delta = dm.correction(model, np.radians(40 / 3600))
    l_east = pixel_lm(256, 256, np.radians(40 / 3600))[0][0, 20]
    assert lmn.shape == (24, 1, 3) and lmn[0, 0, 0] == pytest.approx(l_east)
    assert delta.shape == (24, 1, 8)
    assert np.abs(delta).max() > 0.1  # tens of per cent of 0.5 Jy
    np.testing.assert_allclose(delta.sum(axis=(0, 2)), 0.0, atol=1e-9)  # mean beam kept
    with pytest.raises(ValueError, match="weights shape"):
        DriftBeamModel(times=times, t_mid=0.0, dec=DEC, freqs=freqs, weights=np.ones((8, 24)))


@pytest.fixture(scope="module")
def drift_group():
    """A 309 s drift scan with a 2 Jy source 1.1 deg east of the phase centre whose beam
    response changes by a factor of ~2.5 during the scan, plus a faint one near the centre."""
    enu = 0.25 * t_layout(n_ew=20, n_ns=12, n_out=4, seed=3)  # a compact array: ~1' beam
    nt, freqs = 24, np.linspace(1.3113e9, 1.4985e9, 16)
    times = (np.arange(nt) - (nt - 1) / 2) * 12.884902
    uvw = uvw_tracks(enu, DEC, SIDEREAL_RATE * times)
    nbl = uvw.shape[0] // nt
    cell, npix = np.radians(20 / 3600), 512
    # (flux, pixels east, pixels north) of the phase centre: pixel-centred sources
    sources = [(2.0, 198, -60), (0.05, 12, 8)]
    vis = np.zeros((uvw.shape[0], freqs.size), np.complex128)
    truth = []
    for flux, east, north in sources:
        l_s, m_s = east * cell, north * cell
        dec_s = np.arcsin(m_s * np.cos(DEC) + np.sqrt(1 - l_s**2 - m_s**2) * np.sin(DEC))
        dra = np.arcsin(l_s / np.cos(dec_s))
        enu_s = hadec_to_enu(SIDEREAL_RATE * times - dra, dec_s, LAT)
        beam = beam_power(enu_s, hadec_to_enu(0.0, DEC, LAT), freqs)  # (nt, nf)
        one = point_source_vis(uvw, freqs, [(1.0, l_s, m_s)])
        vis += one * np.repeat(flux * beam, nbl, axis=0)
        truth.append((flux * beam.mean(), l_s, m_s))
    rng = np.random.default_rng(1)
    sigma = 1e-3  # per real and imaginary part
    vis += sigma * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    chunk = VisChunk(uvw=uvw, freq=freqs, vis=vis.astype(np.complex64),
                     weight=np.full(vis.shape, 0.5 / sigma**2, np.float32),
                     time=np.repeat(times, nbl))
    return chunk, truth, cell, npix


def _image(drift_group, track: bool):
    chunk, truth, cell, npix = drift_group
    p = ImagingParams(npix_x=npix, npix_y=npix, cell=cell,
                      drift_track=(0.0, DEC) if track else None, opts=plain_options(
                          weighting="natural",
                          clean=plain_clean(niter=3000, gain=0.1, auto_threshold=2.0)))
    c = VisChunk(chunk.uvw, chunk.freq, chunk.vis.copy(), chunk.weight.copy(), None, chunk.time)
    return make_images([c], p), truth


def test_moving_beam_prediction_removes_the_residual_stripes(drift_group):
    static, truth = _image(drift_group, track=False)
    moving, _ = _image(drift_group, track=True)
    rms_static = float(np.std(static.residual))
    rms_moving = float(np.std(moving.residual))
    # the thermal noise of the image: the static residual is many times above it
    assert rms_static > 5 * static.expected_rms
    assert rms_moving < 2 * moving.expected_rms
    assert rms_moving < 0.2 * rms_static
    # the model holds the source's time- and frequency-averaged apparent flux
    _, cell, npix = drift_group[1], drift_group[2], drift_group[3]
    flux, l_s, m_s = truth[0]
    col, row = int(round(npix // 2 - l_s / cell)), int(round(npix // 2 + m_s / cell))
    got = float(moving.model[row - 2:row + 3, col - 2:col + 3].sum())
    assert got == pytest.approx(flux, rel=0.01)


def test_catalog_source_outside_the_image_is_subtracted(drift_group):
    """The bright source lies outside a 256^2 image: CLEAN cannot reach it; with the field
    catalog it is predicted with its moving beam and subtracted in every pass."""
    chunk, truth, cell, _ = drift_group
    _, l_s, m_s = truth[0]
    sky = SkySources(l=np.array([l_s, 0.3 * l_s]), m=np.array([m_s, m_s]),
                     flux=np.array([2.0, 1e-6]), alpha=np.zeros(2), ref_freq=np.full(2, 1.4e9))

    def image(with_sky: bool):
        p = ImagingParams(npix_x=256, npix_y=256, cell=cell,
                          drift_track=(0.0, DEC), sky=sky if with_sky else None,
                          opts=plain_options(weighting="natural", clean=plain_clean(
                              niter=500, gain=0.1, auto_threshold=2.0)))
        c = VisChunk(chunk.uvw, chunk.freq, chunk.vis.copy(), chunk.weight.copy(), None,
                     chunk.time)
        return make_images([c], p)

    plain, subtracted = image(False), image(True)
    assert np.std(plain.residual) > 5 * plain.expected_rms
    assert np.std(subtracted.residual) < 2 * subtracted.expected_rms


def test_sources_about_projects_and_cuts():
    ra0, dec0 = 1.0, DEC
    sky = sources_about(np.array([ra0, ra0 + 0.01, ra0 + 0.5]), np.array([dec0, dec0, dec0]),
                        np.ones(3), np.full(3, -0.7), np.full(3, 1.4e9), ra0, dec0,
                        np.radians(10))
    assert len(sky.l) == 2  # the third is 27 deg away
    assert sky.l[0] == pytest.approx(0.0) and sky.m[0] == pytest.approx(0.0)
    assert sky.l[1] == pytest.approx(np.cos(dec0) * np.sin(0.01))  # east is +l
    np.testing.assert_allclose(sky.spectrum(np.array([1]), np.array([1.4e9, 2.8e9])),
                               [[1.0, 2 ** -0.7]])


@pytest.mark.parametrize("consume", [False, True])
def test_outlier_with_survey_errors_is_refined_from_the_visibilities(drift_group, consume):
    """The outside source as a survey gives it (6 % low, 5" off, the default spectral index
    -0.7 where the truth is flat): subtracted as catalogued it leaves stripes; refined from
    the visibilities (``catalogs.refine``) it reaches the noise, whether the visibilities are
    the caller's (predicted every pass) or consumed (subtracted once, corrected once)."""
    chunk, truth, cell, _ = drift_group
    (_, l_s, m_s), (_, l_f, m_f) = truth
    off = np.radians(5 / 3600)
    # the survey also lists the faint source inside the image (the fit's nuisance)
    sky = SkySources(l=np.array([l_s + off, l_f]), m=np.array([m_s - 0.5 * off, m_f]),
                     flux=np.array([0.94 * 2.0, 0.052]), alpha=np.array([-0.7, -0.7]),
                     ref_freq=np.full(2, 1.4e9))

    def image(snr: float):
        p = ImagingParams(npix_x=256, npix_y=256, cell=cell, drift_track=(0.0, DEC), sky=sky,
                          opts=plain_options(weighting="natural", outlier_fit_snr=snr,
                                             clean=plain_clean(niter=500, gain=0.1,
                                                               auto_threshold=2.0)))
        c = VisChunk(chunk.uvw, chunk.freq, chunk.vis.copy(), chunk.weight.copy(), None,
                     chunk.time)
        return make_images([c], p, consume=consume)

    as_catalogued, refined = image(0.0), image(20.0)
    assert np.std(as_catalogued.residual) > 3 * as_catalogued.expected_rms
    assert refined.spectral["outlier_fitted"] == 1
    assert np.std(refined.residual) < 1.3 * refined.expected_rms
