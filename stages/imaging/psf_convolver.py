"""Exact linear convolution of a model image with the PSF by FFT (the image-domain major
cycles and the sub-minor loops' full-image subtraction)."""

from __future__ import annotations

import numpy as np
import scipy.fft


class PsfConvolver:
    """Exact (linear) convolution of an image-size model with a PSF peaked at its centre.

    With a double-size PSF (2ny, 2nx) peaked at (ny, nx) (the default ``image_shape``), every
    pixel offset lies inside the PSF and the circular FFT convolution of size (2ny, 2nx) is
    exact. With a smaller PSF (py, px) peaked at (py//2, px//2), offsets beyond it count as
    zero and the FFT size is the linear-convolution size (ny + py - 1, nx + px - 1).
    """

    def __init__(self, psf: np.ndarray, nthreads: int = 1,
                 image_shape: tuple[int, int] | None = None) -> None:
        if psf.ndim != 2 or psf.shape[0] % 2 or psf.shape[1] % 2:
            raise ValueError(f"PSF must be 2-D with even sides, got {psf.shape}")
        py, px = psf.shape
        self.shape = (py // 2, px // 2) if image_shape is None else tuple(image_shape)
        self.nthreads = nthreads
        ny, nx = self.shape
        psf = np.asarray(psf, np.float32)
        if (py, px) == (2 * ny, 2 * nx):
            self._fft_shape = (py, px)
            self._offset = (0, 0)
            self._kft = scipy.fft.rfft2(np.fft.ifftshift(psf), workers=nthreads)
        else:
            self._fft_shape = (scipy.fft.next_fast_len(ny + py - 1, real=True),
                               scipy.fft.next_fast_len(nx + px - 1, real=True))
            self._offset = (py // 2, px // 2)
            self._kft = scipy.fft.rfft2(psf, s=self._fft_shape, workers=nthreads)

    def __call__(self, model: np.ndarray) -> np.ndarray:
        if model.shape != self.shape:
            raise ValueError(f"model {model.shape} does not match the PSF ({self.shape})")
        ny, nx = self.shape
        ft = scipy.fft.rfft2(np.asarray(model, np.float32), s=self._fft_shape,
                             workers=self.nthreads)
        ft *= self._kft
        out = scipy.fft.irfft2(ft, s=self._fft_shape, workers=self.nthreads)
        oy, ox = self._offset
        return out[oy:oy + ny, ox:ox + nx]
