"""QA verdicts: ACCEPT / WARN / REJECT, or NOT_VALIDATED when validation was impossible.

Every verdict carries its reasons, one per metric that was judged (or could not be).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
from scipy import stats

from .config import Thresholds


class Verdict(StrEnum):
    ACCEPT = "ACCEPT"
    WARN = "WARN"
    REJECT = "REJECT"
    NOT_VALIDATED = "NOT_VALIDATED"


_RANK = {Verdict.ACCEPT: 0, Verdict.WARN: 1, Verdict.NOT_VALIDATED: 2, Verdict.REJECT: 3}


@dataclass(frozen=True)
class Reason:
    """One metric's judgement: its level, a sentence an operator can read, value, limits."""

    metric: str
    level: Verdict
    message: str
    value: float | None = None
    warn: float | None = None
    reject: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["level"] = self.level.value
        return d


@dataclass(frozen=True)
class VerdictResult:
    verdict: Verdict
    reasons: tuple[Reason, ...]

    @property
    def failing(self) -> list[Reason]:
        """Reasons at the level of the overall verdict (empty for ACCEPT)."""
        if self.verdict == Verdict.ACCEPT:
            return []
        return [r for r in self.reasons if r.level == self.verdict]

    def to_dict(self) -> dict:
        return {"verdict": self.verdict.value, "reasons": [r.to_dict() for r in self.reasons]}


def not_validated(why: str, metric: str = "input") -> VerdictResult:
    """The explicit outcome when validation could not be done at all."""
    return VerdictResult(Verdict.NOT_VALIDATED, (Reason(metric, Verdict.NOT_VALIDATED, why),))


def _high(metric: str, value: float, warn: float, reject: float, text: str) -> Reason:
    if value > reject:
        return Reason(metric, Verdict.REJECT, f"{text} exceeds the REJECT limit {reject:g}",
                      value, warn, reject)
    if value > warn:
        return Reason(metric, Verdict.WARN, f"{text} exceeds the WARN limit {warn:g}",
                      value, warn, reject)
    return Reason(metric, Verdict.ACCEPT, f"{text} is within limits", value, warn, reject)


def _low(metric: str, value: float, warn: float, reject: float, text: str,
         pct: bool = True) -> Reason:
    fmt = (lambda v: f"{100 * v:g}%") if pct else (lambda v: f"{v:g}")
    if value < reject:
        return Reason(metric, Verdict.REJECT, f"{text} is below the REJECT limit {fmt(reject)}",
                      value, warn, reject)
    if value < warn:
        return Reason(metric, Verdict.WARN, f"{text} is below the WARN limit {fmt(warn)}",
                      value, warn, reject)
    return Reason(metric, Verdict.ACCEPT, f"{text} is within limits", value, warn, reject)


def poisson_lower(n: int) -> float:
    """Gehrels' (1986) approximate 1σ lower confidence limit of a Poisson count ``n``."""
    if n <= 0:
        return 0.0
    return float(n * (1.0 - 1.0 / (9.0 * n) - 1.0 / (3.0 * np.sqrt(n))) ** 3)


def poisson_tail(n: int, mean: float) -> float:
    """P(N ≥ n) for a Poisson count of ``mean``."""
    if n <= 0:
        return 1.0
    return float(stats.poisson.sf(n - 1, mean))


def decide(*, flux_ratio: float | None, n_flux: int, astrometric_rms_arcsec: float | None,
           n_astrometry: int, completeness: float | None, n_completeness: int,
           noise_ratio: float | None, thresholds: Thresholds,
           reliability: float | None = None, n_peaks: int = 0,
           n_neg_peaks: int = 0, artefact_ratio: float | None = None,
           noise_peaks: float | None = None, survey_reliability: float | None = None,
           n_survey: int = 0, n_unlisted: int = 0) -> VerdictResult:
    """Judge each metric against ``thresholds`` and combine: any REJECT → REJECT; else a
    metric that could not be judged → NOT_VALIDATED; else any WARN → WARN; else ACCEPT.

    ``noise_peaks``: how many negative peaks above 5σ Gaussian noise alone gives this image
    on average (``metrics.noise_peaks``); a negative count that noise explains is no sign of
    artefacts, whatever the reliability estimate says.

    ``survey_reliability``: the fraction of the ``n_survey`` detections above 5σ bright
    enough for the survey to list that it does list (``n_unlisted`` it does not): the
    check that sees positive-only artefacts (uncleaned flux, an outlier subtracted too
    faintly), which leave the negative image clean."""
    t = thresholds
    reasons: list[Reason] = []
    # flux scale
    if flux_ratio is None or not np.isfinite(flux_ratio) or n_flux < t.min_matches:
        reasons.append(Reason("flux_scale", Verdict.NOT_VALIDATED,
                              f"flux scale not measured: {n_flux} usable matches "
                              f"(need {t.min_matches})"))
    else:
        off = abs(flux_ratio - 1.0)
        reasons.append(_high("flux_scale", off, t.flux_scale_warn, t.flux_scale_reject,
                             f"flux scale off by {100 * off:.1f}% (median ratio "
                             f"{flux_ratio:.3f}, {n_flux} sources)"))
    # astrometry
    if (astrometric_rms_arcsec is None or not np.isfinite(astrometric_rms_arcsec)
            or n_astrometry < t.min_matches):
        reasons.append(Reason("astrometry", Verdict.NOT_VALIDATED,
                              f"astrometry not measured: {n_astrometry} usable matches "
                              f"(need {t.min_matches})"))
    else:
        reasons.append(_high("astrometry", astrometric_rms_arcsec, t.astrometry_warn_arcsec,
                             t.astrometry_reject_arcsec,
                             f"astrometric rms {astrometric_rms_arcsec:.2f}″ "
                             f"({n_astrometry} sources)"))
    # completeness (low is bad)
    if completeness is None or not np.isfinite(completeness) or n_completeness == 0:
        reasons.append(Reason("completeness", Verdict.NOT_VALIDATED,
                              "completeness not measured: no reference source is expected "
                              "above the threshold in this image"))
    else:
        c = completeness
        reasons.append(_low("completeness", c, t.completeness_warn, t.completeness_reject,
                            f"completeness {100 * c:.1f}% of {n_completeness} reference "
                            "sources"))
    # reliability, from the negative image
    if reliability is None or n_peaks < t.reliability_min_peaks:
        reasons.append(Reason("reliability", Verdict.ACCEPT,
                              f"reliability not judged: {n_peaks} peaks above 5σ (need "
                              f"{t.reliability_min_peaks})", reliability,
                              t.reliability_warn, t.reliability_reject))
    else:
        reasons.append(_reliability("reliability", reliability, n_peaks, n_neg_peaks,
                                    noise_peaks, t,
                                    f"estimated reliability {100 * reliability:.0f}% "
                                    f"({n_neg_peaks} negative against {n_peaks} positive "
                                    "peaks above 5σ", "negative"))
    # reliability, against the survey
    if survey_reliability is not None and n_survey >= t.reliability_min_peaks:
        reasons.append(_reliability("survey_reliability", survey_reliability, n_survey,
                                    n_unlisted, noise_peaks, t,
                                    f"{100 * survey_reliability:.0f}% of the {n_survey} "
                                    "sources above 5σ bright enough for the survey are in "
                                    f"it ({n_unlisted} are not", "positive"))
    # noise
    if noise_ratio is None or not np.isfinite(noise_ratio):
        reasons.append(Reason("noise", Verdict.NOT_VALIDATED,
                              "noise not judged: no theoretical noise available"))
    else:
        reasons.append(_high("noise", noise_ratio, t.noise_warn, t.noise_reject,
                             f"image rms is {noise_ratio:.2f}× the theoretical noise"))
    # artefacts around the brightest sources
    if artefact_ratio is not None and np.isfinite(artefact_ratio):
        reasons.append(_high("artefacts", artefact_ratio, t.artefact_warn, t.artefact_reject,
                             f"rms around the brightest sources is {artefact_ratio:.2f}× the "
                             "rms far from them"))
    levels = [r.level for r in reasons]
    if Verdict.REJECT in levels:
        v = Verdict.REJECT
    elif Verdict.NOT_VALIDATED in levels:
        v = Verdict.NOT_VALIDATED
    elif Verdict.WARN in levels:
        v = Verdict.WARN
    else:
        v = Verdict.ACCEPT
    return VerdictResult(v, tuple(reasons))


def _reliability(metric: str, value: float, n: int, n_bad: int, noise_peaks: float | None,
                 t: Thresholds, text: str, kind: str) -> Reason:
    """A reliability ``value`` = 1 - ``n_bad`` / ``n`` judged against the limits. ``text``
    opens the sentence (an open parenthesis this closes). A handful of peaks is a count:
    REJECT only where even the count's 1σ-optimistic reliability (Gehrels' lower limit on
    ``n_bad``) is below the REJECT limit; and ACCEPT where Gaussian noise alone gives as
    many peaks above 5σ often enough (``reliability_noise_p``)."""
    best = 1.0 - poisson_lower(n_bad) / n
    text = f"{text}; {100 * best:.0f}% allowing for the counts' noise)"
    r = _low(metric, value, t.reliability_warn, t.reliability_reject, text)
    p_noise = poisson_tail(n_bad, noise_peaks) if noise_peaks is not None else 0.0
    if r.level != Verdict.ACCEPT and t.reliability_noise_p > 0 \
            and p_noise >= t.reliability_noise_p:
        # as many as the noise gives: the shortfall is the few sources' share of the noise
        # peaks, not artefacts
        return Reason(metric, Verdict.ACCEPT,
                      f"{text} is what Gaussian noise leaves: it gives {noise_peaks:.1f} "
                      f"{kind} peaks above 5σ on average (P = {p_noise:.2f})",
                      value, t.reliability_warn, t.reliability_reject)
    if r.level == Verdict.REJECT and best >= t.reliability_reject:
        return Reason(metric, Verdict.WARN,
                      f"{text} is below the WARN limit {100 * t.reliability_warn:g}%",
                      value, t.reliability_warn, t.reliability_reject)
    return r


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe of several verdicts (REJECT > NOT_VALIDATED > WARN > ACCEPT)."""
    return max(verdicts, key=lambda v: _RANK[v]) if verdicts else Verdict.NOT_VALIDATED


__all__ = ["Verdict", "Reason", "VerdictResult", "decide", "not_validated", "poisson_lower",
           "poisson_tail",
           "worst"]
