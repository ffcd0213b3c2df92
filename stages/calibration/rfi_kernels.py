"""numba kernels of the per-baseline RFI pass (see :func:`.rfi.flag_rfi`).

One baseline's (n_time, n_chan × n_pol) amplitude plane is processed at a time, so that
its work arrays stay in cache; the inner loops run over contiguous axes of 2-d arrays
(time passes over (n_time, n_chan·n_pol), frequency passes over a transposed
(n_chan, n_time·n_pol) copy) and vectorise. Pure numpy/numba, no I/O.

The smooth background is a masked Gaussian (weights 0 on flagged samples; "nearest"
edges) computed on a grid decimated in frequency: sums over ``D`` channels, the time
Gaussian and a narrower frequency Gaussian on that grid, linear interpolation back. Box
sum, Gaussian and interpolation together have the variance of the requested Gaussian.
"""

from __future__ import annotations

import math

import numba
import numpy as np

MAD_TO_SIGMA = 1.4826


def decimated_gaussian(sigma_chan: float) -> tuple[int, float]:
    """(decimation D, σ on the decimated grid in coarse channels) equivalent to a Gaussian
    of ``sigma_chan`` channels: D² σc² + (D² - 1)/12 (box) + D²/6 (interpolation) = σ²."""
    d = max(1, int(round(sigma_chan)))
    if d == 1:
        return 1, float(sigma_chan)
    var = sigma_chan ** 2 - (d * d - 1) / 12.0 - d * d / 6.0
    return d, math.sqrt(max(var, 0.0)) / d


@numba.njit(cache=True, nogil=True)
def mad_of(buf, k):  # pragma: no cover
    """MAD of ``buf[:k]`` (destroys it); NaN when k = 0."""
    if k == 0:
        return np.nan
    med = np.median(buf[:k])
    for j in range(k):
        buf[j] = abs(buf[j] - med)
    return np.median(buf[:k])


@numba.njit(cache=True, nogil=True, inline="always")
def _window_exceeds(s, cnt, ex, j, i, si, ci, chi, positive_only):  # pragma: no cover
    """Keeps the sums ``si``/``ci`` of the window of line ``i`` ending at sample ``j`` in
    ``s``/``cnt``; ``ex[j, i]`` and the result are 1 where the window's mean exceeds
    ``chi`` (its absolute value unless ``positive_only``), else 0. Inlined into
    :func:`st_lines`' loops (numba IR), so it costs nothing there."""
    s[i] = si
    cnt[i] = ci
    v = si if positive_only else abs(si)
    e = np.float32(1.0) if v > chi * ci else np.float32(0.0)
    ex[j, i] = e
    return e


@numba.njit(cache=True, nogil=True, fastmath=True)
def st_lines(x, f, windows, chis, positive_only, g, gx, s, cnt, hc, ex, rowex
             ):  # pragma: no cover
    """SumThreshold in place on 2-d ``x`` (float32) / ``f`` (bool) of shape (n, m) along
    axis 0, all m lines at once.

    For each window M (ascending) a run of M samples is flagged when the mean of its
    unflagged samples exceeds chi_M (its absolute value unless ``positive_only``); the
    flags found for one M are in place before the next. Work arrays: ``g``, ``gx``, ``ex``
    (n, m) float32; ``s``, ``cnt``, ``hc`` (m,) float32; ``rowex`` (n,) bool."""
    n, m = x.shape
    for j in range(n):
        for i in range(m):
            v = np.float32(0.0) if f[j, i] else np.float32(1.0)
            g[j, i] = v
            gx[j, i] = v * x[j, i]
    for k in range(windows.shape[0]):
        w = windows[k]
        if w > n:
            break
        chi = chis[k]
        for i in range(m):
            s[i] = 0.0
            cnt[i] = 0.0
        anyex = False
        for j in range(n):
            if j < w - 1:
                for i in range(m):
                    s[i] += gx[j, i]
                    cnt[i] += g[j, i]
                    ex[j, i] = 0.0
                rowex[j] = False
                continue
            rx = np.float32(0.0)
            if j >= w:  # the window slides: the sample M back leaves it
                jo = j - w
                for i in range(m):
                    rx += _window_exceeds(s, cnt, ex, j, i, s[i] + (gx[j, i] - gx[jo, i]),
                                          cnt[i] + (g[j, i] - g[jo, i]), chi, positive_only)
            else:  # the first full window
                for i in range(m):
                    rx += _window_exceeds(s, cnt, ex, j, i, s[i] + gx[j, i], cnt[i] + g[j, i],
                                          chi, positive_only)
            rowex[j] = rx > 0
            anyex = anyex or rx > 0
        if not anyex:
            continue
        # sample q is hit when a window ending at e in [q, q + M - 1] exceeded: hc counts
        # those ends, run backwards; rows far from any exceeding end are skipped
        for i in range(m):
            hc[i] = 0.0
        last = -1
        for j in range(n - 1, -1, -1):
            if rowex[j]:
                for i in range(m):
                    hc[i] += ex[j, i]
                last = j
            jo = j + w
            if jo < n and rowex[jo]:
                for i in range(m):
                    hc[i] -= ex[jo, i]
            if last >= 0 and last < j + w:
                for i in range(m):
                    h = hc[i] > 0.5
                    f[j, i] = f[j, i] | h
                    g[j, i] = np.float32(0.0) if h else g[j, i]
                    gx[j, i] = np.float32(0.0) if h else gx[j, i]


@numba.njit(cache=True, nogil=True)
def st_work(n, m):  # pragma: no cover
    """Work arrays of :func:`st_lines` for (n, m) planes."""
    return (np.empty((n, m), np.float32), np.empty((n, m), np.float32),
            np.zeros(m, np.float32), np.zeros(m, np.float32), np.zeros(m, np.float32),
            np.zeros((n, m), np.float32), np.zeros(n, np.bool_))


@numba.njit(cache=True, nogil=True, fastmath=True)
def smooth_plane(amp, w, npol, dec, ktime, taps, cn, cd, tn, td, bg):  # pragma: no cover
    """Masked smooth background ``bg`` of one (n_time, n_chan·n_pol) plane ``amp`` with
    weights ``w`` (see the module docstring): sums over ``dec`` channels, the time matrix
    ``ktime`` (n_time, n_time) and the frequency ``taps`` on the decimated grid ("nearest"
    edges), linear interpolation of numerator and denominator back; 0 where no weight is
    near. ``cn``/``cd`` are (n_time, n_coarse·n_pol), ``tn``/``td`` (n_time,
    (n_coarse + 2r)·n_pol) work arrays (r: the taps' half-width)."""
    nt, m = amp.shape
    nc = m // npol
    ncc = cn.shape[1] // npol
    mc = ncc * npol
    r = (taps.size - 1) // 2
    for t in range(nt):
        at = amp[t]
        wt = w[t]
        cnt_ = cn[t]
        cdt = cd[t]
        for i in range(mc):
            cnt_[i] = 0.0
            cdt[i] = 0.0
        for c in range(nc):
            cc = c // dec
            for p in range(npol):
                wv = wt[c * npol + p]
                cnt_[cc * npol + p] += wv * at[c * npol + p]
                cdt[cc * npol + p] += wv
    # time: ktime @ (cn, cd) into the middle of the padded rows of tn/td
    o = r * npol
    for t in range(nt):
        tnt = tn[t, o:o + mc]
        tdt = td[t, o:o + mc]
        for i in range(mc):
            tnt[i] = 0.0
            tdt[i] = 0.0
        for k in range(nt):
            kk = ktime[t, k]
            if kk == 0.0:
                continue
            cnk = cn[k]
            cdk = cd[k]
            for i in range(mc):
                tnt[i] += kk * cnk[i]
                tdt[i] += kk * cdk[i]
        for j in range(r):                              # "nearest" edges
            for p in range(npol):
                tn[t, j * npol + p] = tn[t, o + p]
                td[t, j * npol + p] = td[t, o + p]
                tn[t, o + mc + j * npol + p] = tn[t, o + mc - npol + p]
                td[t, o + mc + j * npol + p] = td[t, o + mc - npol + p]
    # frequency on the coarse grid: back into cn/cd
    for t in range(nt):
        cnt_ = cn[t]
        cdt = cd[t]
        for i in range(mc):
            cnt_[i] = 0.0
            cdt[i] = 0.0
        for k in range(taps.size):
            tk = taps[k]
            tnk = tn[t, k * npol:k * npol + mc]
            tdk = td[t, k * npol:k * npol + mc]
            for i in range(mc):
                cnt_[i] += tk * tnk[i]
                cdt[i] += tk * tdk[i]
    # back to the channels: coarse bin k is centred on channel k·D + (D - 1)/2
    k0a = np.empty(nc, np.int64)
    k1a = np.empty(nc, np.int64)
    fra = np.empty(nc, np.float32)
    for c in range(nc):
        u = (c - 0.5 * (dec - 1)) / dec
        k0 = int(math.floor(u))
        fr = u - k0
        if k0 < 0:
            k0 = 0
            fr = 0.0
        if k0 >= ncc - 1:
            k0 = ncc - 1
            fr = 0.0
        k0a[c] = k0 * npol
        k1a[c] = min(k0 + 1, ncc - 1) * npol
        fra[c] = fr
    for t in range(nt):
        cnt_ = cn[t]
        cdt = cd[t]
        bgt = bg[t]
        for c in range(nc):
            i0 = k0a[c]
            i1 = k1a[c]
            fr = fra[c]
            for p in range(npol):
                nn = (1 - fr) * cnt_[i0 + p] + fr * cnt_[i1 + p]
                dd = (1 - fr) * cdt[i0 + p] + fr * cdt[i1 + p]
                bgt[c * npol + p] = nn / dd if dd > 1e-6 else np.float32(0.0)


@numba.njit(cache=True, nogil=True, fastmath=True)
def load_plane(vis, cur, fin, b, amp, w, f, gf, a1, a2):  # pragma: no cover
    """Baseline ``b`` of the cube: amplitudes, weights (0 where ``cur``), input flags.
    Returns whether ``fin`` and ``cur`` flag all of it (then nothing is loaded). When
    ``gf`` (n_time, n_ant, n_chan, n_pol) is not empty, the amplitudes are divided by the
    antenna-based model: multiplied by ``gf[t, a1[b]] * gf[t, a2[b]]``."""
    nt, _, nc, npol = vis.shape
    all_flagged = True
    for t in range(nt):
        for c in range(nc):
            for p in range(npol):
                all_flagged = all_flagged and fin[t, b, c, p] and cur[t, b, c, p]
        if not all_flagged:
            break
    if all_flagged:
        return True
    for t in range(nt):
        for c in range(nc):
            for p in range(npol):
                i = c * npol + p
                v = vis[t, b, c, p]
                amp[t, i] = np.sqrt(np.float32(v.real) * np.float32(v.real)
                                    + np.float32(v.imag) * np.float32(v.imag))
                if gf.shape[0] > 0:
                    amp[t, i] *= gf[t, a1[b], c, p] * gf[t, a2[b], c, p]
                w[t, i] = np.float32(0.0) if cur[t, b, c, p] else np.float32(1.0)
                f[t, i] = fin[t, b, c, p]
    return False


@numba.njit(cache=True, nogil=True)
def noise_sigma(amp, bg, w, npol, mad_max, buf, sig):  # pragma: no cover
    """Robust (MAD) σ per polarisation of the residual ``amp - bg`` (n_time,
    n_chan·n_pol) over weighted samples, from those on a regular lattice of at most
    ``mad_max`` positions; inf when undefined."""
    nt, m = amp.shape
    nc = m // npol
    n = nt * nc
    step = max(1, (n + mad_max - 1) // mad_max)
    for p in range(npol):
        k = 0
        for j in range(0, n, step):
            t = j // nc
            i = (j - t * nc) * npol + p
            v = amp[t, i] - bg[t, i]
            if w[t, i] > 0 and np.isfinite(v):
                buf[k] = v
                k += 1
        sg = MAD_TO_SIGMA * mad_of(buf, k)
        sig[p] = sg if np.isfinite(sg) and sg > 0 else np.inf


@numba.njit(cache=True, nogil=True)
def normalise(amp, bg, sig, npol, inv, x, tol=0.0):  # pragma: no cover
    """x = (amp - bg) / σ_pol, 0 where not finite; ``inv`` is an (n_chan·n_pol,) work
    array. With ``tol`` > 0 the σ of each sample is sqrt(σ_pol² + (tol·bg)²): a bright
    source's gain and bandpass structure finer than the background's smoothing (a fraction
    of its amplitude) is not taken for RFI."""
    nt, m = amp.shape
    for i in range(m):
        inv[i] = 1.0 / sig[i % npol]
    if tol > 0:
        for t in range(nt):
            for i in range(m):
                s2 = sig[i % npol] * sig[i % npol] + (tol * bg[t, i]) * (tol * bg[t, i])
                v = (amp[t, i] - bg[t, i]) / np.sqrt(s2)
                x[t, i] = v if np.isfinite(v) else np.float32(0.0)
        return
    for t in range(nt):
        for i in range(m):
            v = (amp[t, i] - bg[t, i]) * inv[i]
            x[t, i] = v if np.isfinite(v) else np.float32(0.0)


@numba.njit(cache=True, nogil=True)
def to_chan_major(x, npol, xt):  # pragma: no cover
    """(n_time, n_chan·n_pol) -> (n_chan, n_time·n_pol)."""
    nt, m = x.shape
    nc = m // npol
    for c in range(nc):
        for t in range(nt):
            for p in range(npol):
                xt[c, t * npol + p] = x[t, c * npol + p]


@numba.njit(cache=True, nogil=True)
def store_plane(ft, fin, x, b, want_x, cur, xsum, xcnt):  # pragma: no cover
    """Flags of baseline ``b`` (polarisations together, plus ``fin``) into ``cur``; with
    ``want_x`` the unflagged residuals into ``xsum``/``xcnt``."""
    nt, _, nc, npol = cur.shape
    for t in range(nt):
        for c in range(nc):
            hit = False
            for p in range(npol):
                hit = hit or ft[c, t * npol + p]
            for p in range(npol):
                flag = hit or fin[t, b, c, p]
                cur[t, b, c, p] = flag
                if want_x and not flag:
                    xsum[t, c, p] += x[t, c * npol + p]
                    xcnt[t, c, p] += 1.0


@numba.njit(cache=True, nogil=True)
def rfi_block(vis, fin, cur, b0, b1, dec, ktime, taps, mad_max, windows, chis,
              windows2, chis2, cand, want_x, xsum, xcnt, tol, gf, a1, a2):  # pragma: no cover
    """One SumThreshold pass over baselines b0:b1 of the cube ``vis`` (n_time, n_bl,
    n_chan, n_pol): background weights from ``cur`` (the previous flags), detection
    against ``fin`` (the input flags); ``cur`` gets the new flags (``fin`` plus the
    detections, polarisations together).

    With a second threshold set (``windows2`` not empty) the same residual is also
    searched with it, into ``cand``: the next pass's result wherever that pass finds the
    same weights. With ``want_x`` the normalised residual of the samples left unflagged
    by the last set is summed into ``xsum``/``xcnt`` (n_time, n_chan, n_pol). ``tol``: see
    :func:`normalise`. ``gf``, ``a1``, ``a2``: see :func:`load_plane`."""
    nt, _, nc, npol = vis.shape
    m = nc * npol
    ncc = (nc + dec - 1) // dec
    amp = np.empty((nt, m), np.float32)
    w = np.empty((nt, m), np.float32)
    bg = np.empty((nt, m), np.float32)
    r = (taps.size - 1) // 2
    cn = np.empty((nt, ncc * npol), np.float32)
    cd = np.empty((nt, ncc * npol), np.float32)
    tn = np.empty((nt, (ncc + 2 * r) * npol), np.float32)
    td = np.empty((nt, (ncc + 2 * r) * npol), np.float32)
    inv = np.empty(m, np.float32)
    x = np.empty((nt, m), np.float32)
    f0 = np.empty((nt, m), np.bool_)
    f = np.empty((nt, m), np.bool_)
    xt = np.empty((nc, nt * npol), np.float32)
    ft = np.empty((nc, nt * npol), np.bool_)
    buf = np.empty(min(mad_max, nt * nc) + 1, np.float32)
    sig = np.empty(npol, np.float32)
    g1, gx1, s1, c1, h1, e1, r1 = st_work(nt, m)
    g2, gx2, s2, c2, h2, e2, r2 = st_work(nc, nt * npol)
    n_sets = 2 if windows2.size > 0 else 1
    for b in range(b0, b1):
        if load_plane(vis, cur, fin, b, amp, w, f0, gf, a1, a2):
            if n_sets == 2:  # all flagged (autocorrelations, dead antennas)
                for t in range(nt):
                    for c in range(nc):
                        for p in range(npol):
                            cand[t, b, c, p] = True
            continue
        smooth_plane(amp, w, npol, dec, ktime, taps, cn, cd, tn, td, bg)
        noise_sigma(amp, bg, w, npol, mad_max, buf, sig)
        normalise(amp, bg, sig, npol, inv, x, tol)
        to_chan_major(x, npol, xt)
        for k in range(n_sets):
            wk = windows if k == 0 else windows2
            ck = chis if k == 0 else chis2
            for t in range(nt):
                for i in range(m):
                    f[t, i] = f0[t, i]
            st_lines(x, f, wk, ck, False, g1, gx1, s1, c1, h1, e1, r1)       # along time
            to_chan_major(f, npol, ft)                                       # frequency
            st_lines(xt, ft, wk, ck, False, g2, gx2, s2, c2, h2, e2, r2)
            store_plane(ft, fin, x, b, want_x and k == n_sets - 1, cur if k == 0 else cand,
                        xsum, xcnt)


@numba.njit(cache=True, nogil=True, parallel=True)
def changed_baselines(a, b):  # pragma: no cover
    """Per baseline, whether the flag cubes ``a`` and ``b`` differ."""
    nt, nb, nc, npol = a.shape
    out = np.zeros(nb, np.bool_)
    for j in numba.prange(nb):
        for t in range(nt):
            for c in range(nc):
                for p in range(npol):
                    if a[t, j, c, p] != b[t, j, c, p]:
                        out[j] = True
                        break
                if out[j]:
                    break
            if out[j]:
                break
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def take_baselines(dst, src, which):  # pragma: no cover
    """dst[:, b] = src[:, b] for the baselines with ``which``."""
    nt, nb, nc, npol = dst.shape
    for t in numba.prange(nt):
        for b in range(nb):
            if which[b]:
                for c in range(nc):
                    for p in range(npol):
                        dst[t, b, c, p] = src[t, b, c, p]
