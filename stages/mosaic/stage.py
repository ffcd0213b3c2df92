"""The mosaic window stage: an hour's group images in one linear mosaic.

Window scope (an hour by default). Requires each group's ``images`` (image and pb) and
``validation`` (its verdict and noise); groups whose verdict is in ``leave_out`` are left
out and named. Each image is reprojected (``reproject.reproject_interp``, onto the part of
the grid its footprint covers) and combined by :mod:`.combine`. Produces ``mosaic``: FITS
image (primary-beam corrected, Jy/beam), weight (sum PB^2/sigma^2) and noise maps, with
the grid's WCS and provenance: the groups held, their verdicts and calibration tables.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from dsa110_pipeline.atomic import atomic_path
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.stage import Resources, StageConfig
from dsa110_pipeline.thumbnail import thumbnail_png
from dsa110_pipeline.window import WindowStage

from .combine import accumulate, finish
from .grid import footprint_box, mosaic_header


class MosaicConfig(StageConfig):
    """Typed config of the mosaic stage (the ``mosaic`` branch)."""

    #: Pixels where a group's primary beam is below this take nothing from it.
    pb_cut: float = Field(0.2, gt=0, le=1)
    leave_out: tuple[str, ...] = ("REJECT",)
    projection: Literal["SIN", "CAR"] = "SIN"
    output_dir: str | None = None


class MosaicStage(WindowStage):
    name = "mosaic"
    version = "1"
    Config = MosaicConfig
    requires = ("images", "validation")
    produces = ("mosaic",)
    resources = Resources(cpu=1, memory_gb=2.0)
    window_s = 3600.0

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        from astropy.io import fits
        from astropy.wcs import WCS

        cfg: MosaicConfig = self.config  # type: ignore[assignment]
        info = self.window(ctx)
        images = self.group_products(ctx, "images")
        val = self.group_products(ctx, "validation")
        used, left_out, planes = [], {}, []
        for gid in info.groups:
            v = val[gid][0] if isinstance(val[gid], list) else val[gid]
            verdict = v.meta.get("verdict")
            if verdict in cfg.leave_out:
                left_out[gid] = f"verdict {verdict}"
                continue
            roles = {r.meta.get("role"): r for r in (images[gid] if isinstance(
                images[gid], list) else [images[gid]])}
            if "image" not in roles or "pb" not in roles:
                left_out[gid] = "no image or pb image"
                continue
            img, hdr = _read(roles["image"].path)
            pb, _ = _read(roles["pb"].path)
            sigma = ((v.meta.get("metrics") or {}).get("noise") or {}).get("image_rms_jy")
            if not sigma or not np.isfinite(sigma):
                raise InputError(f"group {gid}'s validation holds no image rms",
                                 stage=self.name, files=[v.path])
            planes.append((gid, img, pb, hdr, float(sigma), verdict))
            used.append(gid)
        if not planes:
            raise InputError(f"window {info.window_id}: every group left out "
                             f"({left_out})", stage=self.name)
        wcs_in = [WCS(p[3]).celestial for p in planes]
        centres, corners = [], []
        for w, (_, img, *_rest) in zip(wcs_in, planes, strict=True):
            ny, nx = img.shape
            centres.append(w.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
            corners.append(_edge_world(w, nx, ny))
        cell = min(abs(float(p[3]["CDELT1"])) for p in planes)
        out_hdr = mosaic_header(np.array(centres), np.vstack(corners), cell, cfg.projection)
        out_wcs = WCS(fits.Header(out_hdr))
        shape = (int(out_hdr["NAXIS2"]), int(out_hdr["NAXIS1"]))
        num, den = np.zeros(shape), np.zeros(shape)
        for w, (_, img, pb, _hdr, sigma, _v) in zip(wcs_in, planes, strict=True):
            x0, x1, y0, y1 = footprint_box(np.column_stack(out_wcs.world_to_pixel_values(
                *_edge_world(w, img.shape[1], img.shape[0]).T)), shape)
            sub = out_wcs[y0:y1, x0:x1]
            r_img, r_pb = _reproject([img, pb], w, sub, (y1 - y0, x1 - x0))
            accumulate(num[y0:y1, x0:x1], den[y0:y1, x0:x1], r_img, r_pb, sigma, cfg.pb_cut)
        mosaic, noise = finish(num, den)
        out_dir = self.products_dir(ctx, "mosaics")
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = info.window_id.replace(":", "").replace("@", "_")
        first_hdr = planes[0][3]
        common = _provenance(first_hdr, planes, left_out, info.window_id)
        refs = []
        for role, data, unit in (("image", mosaic, "JY/BEAM"), ("weight", den, "1/(JY/BEAM)2"),
                                 ("noise", noise, "JY/BEAM")):
            hdr = fits.Header(out_hdr)
            hdr.update(common)
            hdr["BUNIT"] = unit
            hdr["MOSROLE"] = (role, "mosaic plane")
            path = out_dir / f"{stem}-{role}.fits"
            with atomic_path(path) as tmp:
                fits.writeto(tmp, data.astype(np.float32), hdr)
            refs.append(ProductRef.for_path("fits", path, role=role, groups=used,
                                            left_out=left_out))
        thumb = thumbnail_png(mosaic, out_dir / f"{stem}-thumb.png", max_px=800)
        refs.append(ProductRef.for_path("png", thumb, role="thumbnail"))
        good = noise[np.isfinite(noise)]
        return (ctx.with_output("mosaic", refs)
                .with_metrics(self.name, groups=len(used), left_out=len(left_out),
                              npix_x=shape[1], npix_y=shape[0],
                              median_noise_jy=float(np.median(good)) if good.size else None))


def _read(path: str) -> tuple[np.ndarray, Any]:
    from astropy.io import fits

    try:
        with fits.open(path) as h:
            hdr = h[0].header.copy()
            data = np.asarray(h[0].data, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read FITS image ({exc})", files=[path]) from exc
    data = data.reshape(data.shape[-2], data.shape[-1])
    # a 2-D header for the 2-D plane
    for k in ("NAXIS3", "NAXIS4"):
        hdr.pop(k, None)
    hdr["NAXIS"] = 2
    return data, hdr


def _edge_world(w: Any, nx: int, ny: int, n: int = 16) -> np.ndarray:
    """World coordinates (deg) of points along the image's edges: its footprint."""
    t = np.linspace(0, 1, n)
    xs = np.r_[t * (nx - 1), np.full(n, nx - 1), t * (nx - 1), np.zeros(n)]
    ys = np.r_[np.zeros(n), t * (ny - 1), np.full(n, ny - 1), t * (ny - 1)]
    ra, dec = w.pixel_to_world_values(xs, ys)
    return np.column_stack([ra, dec])


def _reproject(planes: list[np.ndarray], w_in: Any, w_out: Any, shape: tuple[int, int]
               ) -> list[np.ndarray]:
    from reproject import reproject_interp

    return [reproject_interp((p, w_in), w_out, shape_out=shape, return_footprint=False)
            for p in planes]


def _provenance(first: Any, planes: list[tuple], left_out: dict[str, str],
                window_id: str) -> dict[str, Any]:
    beams = np.array([[p[3].get("BMAJ", np.nan), p[3].get("BMIN", np.nan),
                       p[3].get("BPA", 0.0)] for p in planes], dtype=float)
    cards: dict[str, Any] = {
        "TELESCOP": first.get("TELESCOP", ""), "OBJECT": window_id,
        "BMAJ": (float(np.nanmean(beams[:, 0])), "mean of the groups' restoring beams (deg)"),
        "BMIN": (float(np.nanmean(beams[:, 1])), "mean of the groups' restoring beams (deg)"),
        "BPA": (float(np.nanmean(beams[:, 2])), "mean of the groups' beam PAs (deg)"),
        "NGROUPS": (len(planes), "groups in the mosaic"),
        "NLEFTOUT": (len(left_out), "groups of the window left out"),
        "PIPEVER": first.get("PIPEVER", ""), "MOSWIN": window_id,
    }
    for i, p in enumerate(planes, start=1):
        cards[f"GRP{i:03d}"] = (p[0], f"verdict {p[5]}, rms {p[4]:.3g} Jy/beam")
        if p[3].get("CALTAB1"):
            cards[f"GCAL{i:03d}"] = str(p[3]["CALTAB1"])[-68:]
    for i, (g, why) in enumerate(sorted(left_out.items()), start=1):
        cards[f"OUT{i:03d}"] = (g, why[:40])
    return cards
