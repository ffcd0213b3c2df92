"""Flux-density standards: Perley & Butler (2017, ApJS 230, 7) polynomial spectra.

log10 S[Jy] = a0 + a1 x + a2 x^2 + ...,   x = log10(ν / 1 GHz)
"""

from __future__ import annotations

import re

import numpy as np

#: Perley & Butler 2017, Table 6: coefficients a0..an and validity range (GHz).
PB2017: dict[str, tuple[tuple[float, ...], tuple[float, float]]] = {
    "3C48": ((1.3253, -0.7553, -0.1914, 0.0498), (0.05, 50.0)),
    "3C138": ((1.0088, -0.4981, -0.155, -0.010, 0.022), (0.2, 50.0)),
    "3C147": ((1.4516, -0.6961, -0.201, 0.064, -0.046, 0.029), (0.05, 50.0)),
    "3C286": ((1.2481, -0.4507, -0.1798, 0.0357), (0.05, 50.0)),
}

#: Other names of the standards (J2000 IAU names as used by the VLA list).
_ALIASES = {
    "J0137+3309": "3C48", "0137+331": "3C48",
    "J0521+1638": "3C138", "0521+166": "3C138",
    "J0542+4951": "3C147", "0542+498": "3C147",
    "J1331+3030": "3C286", "1331+305": "3C286",
}


def standard_name(name: str) -> str:
    """The flux-standard key ("3C286", …) for a name or alias; KeyError if not a standard."""
    n = re.sub(r"\s", "", name).upper()
    n = _ALIASES.get(n, n)
    if n not in PB2017:
        raise KeyError(f"{name!r} is not a Perley-Butler 2017 flux standard "
                       f"(known: {', '.join(sorted(PB2017))})")
    return n


def is_flux_standard(name: str) -> bool:
    """Whether ``name`` (or an alias) has a Perley-Butler 2017 spectrum here."""
    try:
        standard_name(name)
    except KeyError:
        return False
    return True


def flux_density(name: str, freq_hz: float | np.ndarray) -> float | np.ndarray:
    """Stokes I flux density (Jy) of a flux standard at ``freq_hz`` (Hz, scalar or array).

    Raises KeyError for an unknown source and ValueError outside the fit's frequency range.
    """
    coeffs, (fmin, fmax) = PB2017[standard_name(name)]
    nu_ghz = np.asarray(freq_hz, dtype=float) / 1e9
    if np.any(~np.isfinite(nu_ghz)) or np.any(nu_ghz < fmin) or np.any(nu_ghz > fmax):
        raise ValueError(f"frequency outside the Perley-Butler 2017 range {fmin}-{fmax} GHz "
                         f"for {name}")
    x = np.log10(nu_ghz)
    logs = np.polynomial.polynomial.polyval(x, coeffs)
    out = 10.0 ** logs
    return float(out) if out.ndim == 0 else out


def spectral_index(name: str, freq_hz: float) -> float:
    """Local spectral index d log S / d log ν of a flux standard at ``freq_hz``."""
    coeffs, _ = PB2017[standard_name(name)]
    x = np.log10(freq_hz / 1e9)
    deriv = np.polynomial.polynomial.polyder(np.asarray(coeffs))
    return float(np.polynomial.polynomial.polyval(x, deriv))


__all__ = ["PB2017", "flux_density", "spectral_index", "is_flux_standard", "standard_name"]
