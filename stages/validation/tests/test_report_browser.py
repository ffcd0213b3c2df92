"""The HTML report renders in a real browser (headless Chromium): a screenshot is taken,
every section is present and every embedded image is a PNG the browser decodes."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stages.validation import ValidationConfig, validate_group, write_night_summary
from stages.validation.report import SECTIONS

from ._synth import make_image, write_fits

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium is not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(8)
    n = 25
    ra = 200.0 + rng.uniform(-0.35, 0.35, n) / np.cos(np.radians(45.0))
    dec = 45.0 + rng.uniform(-0.35, 0.35, n)
    flux = 1e-3 * np.geomspace(15, 400, n)
    s = make_image(ra, dec, flux, centre=(200.0, 45.0), npix=384, noise_rms=1e-3, seed=3)
    img = write_fits(d / "image.fits", s.data, s)
    pb = write_fits(d / "pb.fits", s.pb, s, beam=False)
    cat = d / "ref.csv"
    cat.write_text("name,ra_deg,dec_deg,flux_jy,spectral_index,ref_freq_hz\n" + "".join(
        f"S{i},{a:.8f},{b:.8f},{f:.8g},0,{s.freq}\n" for i, (a, b, f) in
        enumerate(zip(ra, dec, flux))))
    out = validate_group(img, d / "out", group="2026-01-25T03:04:05", cfg=ValidationConfig(
        finder="islands"), reference_path=cat, theoretical_rms=0.9e-3, pb_path=str(pb),
        timing=[{"stage": "imaging", "wall_s": 120.0, "peak_rss_mb": 2048.0}])
    assert out.verdict.verdict.value == "ACCEPT", out.verdict.reasons
    return out.report


def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1200,3000",
                     report.resolve().as_uri()], tmp_path / "profile1")
    assert shot.is_file(), f"no screenshot; chromium said: {res.stderr[-2000:]}"
    with Image.open(shot) as im:
        im.load()
        assert im.format == "PNG" and im.size == (1200, 3000)
        # the page is not blank: some pixels are dark (text, plots)
        grey = np.asarray(im.convert("L"))
        assert (grey < 100).mean() > 0.005

    res = _chromium(["--virtual-time-budget=5000", "--dump-dom", report.resolve().as_uri()],
                    tmp_path / "profile2")
    dom = res.stdout
    assert "<body" in dom, res.stderr[-2000:]
    for sec in SECTIONS:
        assert re.search(rf'<section id="{sec}"', dom), f"section '{sec}' missing"
    assert "ACCEPT" in dom and "imaging" in dom  # verdict and the timing table
    # every <img> is a base64 PNG data URI that decodes
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', dom)
    assert len(srcs) == 5
    for src in srcs:
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64"
        raw = base64.b64decode(data, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 100
    # and the browser itself decoded all of them (set by the page's load handler)
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images-total="5"' in body and 'data-images-decoded="5"' in body


def test_night_summary_renders_with_links(report, tmp_path):
    summary = write_night_summary(report.parent / "night.html",
                                  [("2026-01-25T03:04:05", "ACCEPT", report)])
    res = _chromium(["--dump-dom", summary.resolve().as_uri()], tmp_path / "profile3")
    dom = res.stdout
    assert '<section id="groups"' in dom, res.stderr[-2000:]
    href = re.search(r'<a href="([^"]+)">report</a>', dom).group(1)
    assert (summary.parent / href).resolve() == report.resolve()
    assert "ACCEPT" in dom
