"""Configuration of a simulated DSA-110 observation; checks itself on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError
from ..instrument import (
    FILENAME_JITTER,
    KNOWN_RFI_FREQUENCIES,
    N_ACTIVE_ANTENNAS,
    N_CHANNELS_PER_SUBBAND,
    N_INTEGRATIONS,
    N_STATIONS,
    N_SUBBANDS,
    SEFD,
    SITE_LATITUDE_DEG,
)

#: Lowest transit elevation (deg) at which a pointing makes sense.
MIN_TRANSIT_ELEVATION_DEG = 5.0


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Defaults: one full-scale DSA-110 group (96 antennas, 16 subbands of
    48 channels, 24 integrations) of a random 200-source sky with every corruption on.

    ``start`` is the UTC start of the first group (ISO 8601); with ``calibrator`` the start is
    moved (by less than half a sidereal day) so that the calibrator transits in the middle of
    group ``calibrator_group``. ``missing_subband`` / ``truncate_subband`` affect the first
    group only.
    """

    out_dir: Path
    start: str = "2026-01-25T22:00:00"
    n_groups: int = 1
    dec_deg: float = 16.15
    n_antennas: int = N_ACTIVE_ANTENNAS
    n_subbands: int = N_SUBBANDS
    n_channels: int = N_CHANNELS_PER_SUBBAND
    n_integrations: int = N_INTEGRATIONS
    n_sources: int = 200
    catalog: Path | None = None
    calibrator: str | None = None
    calibrator_group: int = 0
    seed: int = 0
    noise: bool = True
    rfi: bool = True
    gains: bool = True
    bandpass: bool = True
    beam: bool = True
    sefd_jy: float = SEFD
    jitter_s: float = FILENAME_JITTER
    station_csv: Path | None = None
    dead_antennas: int = 2
    missing_subband: int | None = None
    truncate_subband: int | None = None
    #: Random sources are drawn within this radius (deg) of the pointing track.
    field_radius_deg: float = 4.0
    #: Catalog sources farther than this (deg) from the pointing at all times are left out.
    max_source_distance_deg: float = 10.0
    rfi_frequencies_hz: tuple[float, ...] = field(default=KNOWN_RFI_FREQUENCIES)
    #: Variable sources injected (flares, dips and steps in turn), chosen among the field
    #: sources of at least ``variable_min_flux_jy``; their per-group flux factor is in the
    #: truth (``source_variability``). 0: a steady sky.
    n_variables: int = 0
    #: Fractional amplitudes the variables cycle through (a dip of 0.5 halves the flux).
    variable_amplitudes: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8)
    #: Groups a flare or a dip lasts.
    variable_duration_groups: int = 3
    variable_min_flux_jy: float = 0.02
    #: The variables are chosen among the sources that transit during the night within
    #: this many degrees of the pointing declination (inside the primary beam, where the
    #: groups around the transit measure them) and, within a night (``variable_nights``
    #: 0), each change starts the group after the source's transit, so that the epochs
    #: that see the source see it change (a source is in a group's image for only ~3
    #: groups: at a random group most changes fell where nothing measured them). None: any
    #: source, any group.
    variable_max_offset_deg: float | None = 1.5
    #: Variability between nights instead of groups: with ``variable_nights`` > 0 the
    #: flares, dips and steps run over that many nights (their durations in nights) and
    #: every group of this simulation takes night ``variable_night``'s factors. Simulate
    #: the nights with the same seed and sky, a sidereal day apart.
    variable_nights: int = 0
    variable_night: int = 0
    #: Field sources (of at least ``unsurveyed_min_flux_jy``, never a variable or the
    #: calibrator) left out of the survey catalog: new sources the mosaics should find.
    #: The truth marks them (``source_in_survey`` False).
    n_unsurveyed: int = 0
    unsurveyed_min_flux_jy: float = 0.01
    #: Threads for the numba kernels (None: all cores).
    nthreads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.catalog is not None:
            object.__setattr__(self, "catalog", Path(self.catalog))
        if self.station_csv is not None:
            object.__setattr__(self, "station_csv", Path(self.station_csv))
        object.__setattr__(self, "rfi_frequencies_hz",
                           tuple(float(f) for f in self.rfi_frequencies_hz))
        errs = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                errs.append(msg)

        try:
            datetime.fromisoformat(self.start)
        except (TypeError, ValueError):
            errs.append(f"start {self.start!r} is not an ISO time like 2026-01-25T22:00:00")
        min_dec = SITE_LATITUDE_DEG - 90.0 + MIN_TRANSIT_ELEVATION_DEG
        need(isinstance(self.dec_deg, int | float) and min_dec <= self.dec_deg < 90.0,
             f"dec_deg {self.dec_deg} is impossible for a meridian drift scan at latitude "
             f"{SITE_LATITUDE_DEG}°: must be in [{min_dec:.2f}, 90) so that it transits at "
             f"least {MIN_TRANSIT_ELEVATION_DEG}° above the horizon")
        need(self.n_groups >= 1, f"n_groups must be >= 1, got {self.n_groups}")
        need(2 <= self.n_antennas <= N_STATIONS,
             f"n_antennas must be in 2..{N_STATIONS}, got {self.n_antennas}")
        need(1 <= self.n_subbands <= N_SUBBANDS,
             f"n_subbands must be in 1..{N_SUBBANDS}, got {self.n_subbands}")
        need(self.n_channels >= 1, f"n_channels must be >= 1, got {self.n_channels}")
        need(self.n_integrations >= 1, f"n_integrations must be >= 1, got {self.n_integrations}")
        need(self.n_sources >= 0, f"n_sources must be >= 0, got {self.n_sources}")
        need(0 <= self.calibrator_group < max(self.n_groups, 1),
             f"calibrator_group must be in 0..{self.n_groups - 1}, got {self.calibrator_group}")
        need(self.sefd_jy > 0, f"sefd_jy must be positive, got {self.sefd_jy}")
        need(self.jitter_s >= 0, f"jitter_s must be >= 0, got {self.jitter_s}")
        need(0 <= self.dead_antennas <= self.n_antennas - 2,
             f"dead_antennas must be in 0..{self.n_antennas - 2}, got {self.dead_antennas}")
        for name in ("missing_subband", "truncate_subband"):
            v = getattr(self, name)
            need(v is None or 0 <= v < self.n_subbands,
                 f"{name} must be in 0..{self.n_subbands - 1}, got {v}")
        need(self.missing_subband is None or self.missing_subband != self.truncate_subband,
             "missing_subband and truncate_subband must differ")
        need(self.field_radius_deg > 0, "field_radius_deg must be positive")
        need(self.max_source_distance_deg > 0, "max_source_distance_deg must be positive")
        need(self.nthreads is None or self.nthreads >= 1, "nthreads must be >= 1")
        if self.catalog is not None and not self.catalog.is_file():
            errs.append(f"catalog file {self.catalog} does not exist")
        if self.station_csv is not None and not self.station_csv.is_file():
            errs.append(f"station CSV {self.station_csv} does not exist")
        if errs:
            raise ConfigError("invalid simulation config: " + "; ".join(errs))

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d
