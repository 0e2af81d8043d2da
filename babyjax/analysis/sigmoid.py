"""Chang et al.'s sigmoid AoA (lm-learning-curves, utils/formula_utils.py: `run_sigmoid_regression`, `get_aoa`,
`compute_aoa_vals`) for many curves at once. Their fit is `scipy.optimize.curve_fit(sigmoid, x, y, p0=[min y, max y,
mean x, 1], maxfev=1e6, ftol=1e-8)`, retried with ftol x 10 while it fails: MINPACK's `lmdif` (Levenberg-Marquardt
with Moré's trust region and column scaling). `fit_sigmoid` is that algorithm, step for step, vectorised over curves
(each curve keeps its own trust region, damping and scaling; forward-difference Jacobian as scipy's; the 4x4
subproblem solved through an eigendecomposition instead of MINPACK's pivoted QR), so that it stops where
scipy stops; tests/test_sigmoid.py checks it against curve_fit on smooth, noisy and bumpy curves."""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import special

FTOL = 1e-8  # Chang et al.
XTOL = 1.49012e-8  # scipy.optimize.leastsq default
MAXFEV = 1_000_000  # Chang et al.
FACTOR = 100.0  # MINPACK initial step bound
BLOCK = 1024  # curves per kernel call: more spill out of the cache
_EPSMCH = np.finfo(np.float64).eps
_DWARF = np.finfo(np.float64).tiny
_SQRT_EPS = float(np.sqrt(_EPSMCH))


def sigmoid(x: np.ndarray, start: np.ndarray, end: np.ndarray, xmid: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Chang et al.'s sigmoid: start + (end - start) / (1 + exp((xmid - x) / scale))."""
    return start + (end - start) * special.expit((x - xmid) / scale)


@functools.lru_cache(maxsize=None)
def _kernel() -> Callable:
    """The costly part of an lmdif iteration, jitted in float64 (one exponential per point): at parameters p of curves
    idx, the residual norm, and J'J [C, 4, 4] and J'f [C, 4] of MINPACK `fdjac2`'s forward-difference Jacobian as
    scipy's leastsq takes it (epsfcn = machine epsilon: step sqrt(eps) * |p_k|, sqrt(eps) where p_k = 0). The residual
    is Chang et al.'s `start + (end - start) / (1 + exp((xmid - x) / scale)) - y`; moving xmid or scale by h rescales
    exp(...) by exp(h / scale) or exp(-w h / (scale + h)) (w = (xmid - x) / scale), a number within 1e-5 of one."""
    import jax
    import jax.numpy as jnp

    def kernel(x_T, y, p):
        start, end, xmid, scale = (p[:, i:i + 1] for i in range(4))
        h = _SQRT_EPS * jnp.abs(p)
        h = jnp.where(h == 0, _SQRT_EPS, h)
        w = (xmid - x_T) / scale
        e = jnp.exp(w)
        r = 1.0 / (1.0 + e)
        f = start + (end - start) * r - y
        eps = -w * h[:, 3:] / (scale + h[:, 3:])
        moved = [(start + h[:, :1]) + (end - (start + h[:, :1])) * r,
                 start + ((end + h[:, 1:2]) - start) * r,
                 start + (end - start) / (1.0 + e * jnp.exp(h[:, 2:3] / scale)),
                 start + (end - start) / (1.0 + e * (1 + eps * (1 + eps / 2 * (1 + eps / 3 * (1 + eps / 4)))))]
        j = [(m - y - f) * (1.0 / h[:, k:k + 1]) for k, m in enumerate(moved)]
        j = [jnp.where(jnp.isfinite(c), c, 0.0) for c in j]
        upper = {(a, b): jnp.sum(j[a] * j[b], 1) for a in range(4) for b in range(a, 4)}
        gram = jnp.stack([jnp.stack([upper[min(a, b), max(a, b)] for b in range(4)], 1) for a in range(4)], 1)
        return jnp.sqrt(jnp.sum(f * f, 1)), gram, jnp.stack([jnp.sum(c * f, 1) for c in j], 1)

    return jax.jit(kernel)


def _evaluate(x_T: np.ndarray, y_CxT: np.ndarray, idx: np.ndarray, p_Cx4: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run the kernel on curves idx in blocks of at most BLOCK (cache-sized), the last padded to a power of four:
    few shapes to compile, and each curve's numbers independent of the others'. Returns (fnorm [C], J'J [C, 4, 4],
    J'f [C, 4])."""
    import jax

    parts = []
    for b0 in range(0, len(idx), BLOCK):
        i, p = idx[b0:b0 + BLOCK], p_Cx4[b0:b0 + BLOCK]
        n = len(i)
        pad = max(64, 1 << 2 * ((n - 1).bit_length() + 1 >> 1)) - n  # 64, 256, 1024
        with jax.enable_x64(True), np.errstate(all="ignore"):
            out = _kernel()(x_T, y_CxT[np.r_[i, np.full(pad, i[0])]], np.r_[p, np.repeat(p[:1], pad, 0)])
        parts.append([np.asarray(a)[:n] for a in out])
    fnorm, gram, jtf = (np.concatenate(a) for a in zip(*parts))
    return np.where(np.isfinite(fnorm), fnorm, np.inf), gram, jtf


def _lmpar(e: np.ndarray, b: np.ndarray, delta: np.ndarray, par: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MINPACK `lmpar` in the eigenbasis of the scaled normal matrix A = (J D^-1)'(J D^-1) = V diag(e) V', b = V'g:
    the damping `par` for which the scaled step x = (A + par I)^-1 b has |x| within 10% of the trust radius `delta`
    (or par = 0 when the Gauss-Newton step fits). Returns (par, x in the eigenbasis)."""
    nonzero = e > 0  # MINPACK: J is rank-deficient only where its pivoted QR has an exact zero
    full = nonzero.all(1)
    x = np.where(nonzero, b / np.where(nonzero, e, 1.0), 0.0)
    dxnorm = np.linalg.norm(x, axis=1)
    fp = dxnorm - delta
    todo = fp > 0.1 * delta
    gauss_newton = ~todo  # MINPACK returns par = 0 with this step
    if not todo.any():
        return np.zeros_like(par), x
    safe = np.maximum(dxnorm, _DWARF)
    with np.errstate(divide="ignore", invalid="ignore"):
        parl = np.where(full, (fp / delta) / np.sum(np.square(x / safe[:, None]) / np.where(nonzero, e, 1.0), 1), 0.0)
    parl = np.where(np.isfinite(parl) & todo, parl, 0.0)
    gnorm = np.linalg.norm(b, axis=1)
    paru = gnorm / delta
    paru = np.where(paru == 0, _DWARF / np.minimum(delta, 0.1), paru)
    par = np.minimum(np.maximum(par, parl), paru)
    par = np.where(par == 0, gnorm / safe, par)
    for it in range(1, 11):
        par = np.where(todo & (par == 0), np.maximum(_DWARF, 0.001 * paru), par)
        x_new = b / (e + par[:, None])
        x = np.where(todo[:, None], x_new, x)
        dxnorm = np.linalg.norm(x, axis=1)
        prev, fp = fp, np.where(todo, dxnorm - delta, fp)
        stop = (np.abs(fp) <= 0.1 * delta) | ((parl == 0) & (fp <= prev) & (prev < 0)) | (it == 10)
        todo &= ~stop
        if not todo.any():
            break
        q = x / np.maximum(dxnorm, _DWARF)[:, None]
        parc = (fp / delta) / np.sum(np.square(q) / (e + par[:, None]), 1)
        parl = np.where(todo & (fp > 0), np.maximum(parl, par), parl)
        paru = np.where(todo & (fp < 0), np.minimum(paru, par), paru)
        par = np.where(todo, np.maximum(parl, par + parc), par)
    return np.where(gauss_newton, 0.0, par), x


class _Fit:
    """The state of MINPACK `lmdif` for every curve: parameters, residuals, Jacobian, scaling, trust radius,
    damping, and `info` (0 while running; MINPACK's codes when done: 1-4 converged, 5-8 failed)."""

    def __init__(self, x_T: np.ndarray, y_CxT: np.ndarray, p_Cx4: np.ndarray, ftol: float, xtol: float, maxfev: int):
        self.x, self.y, self.ftol, self.xtol, self.maxfev = x_T, y_CxT, ftol, xtol, maxfev
        n = len(y_CxT)
        self.p = p_Cx4.copy()
        self.fnorm, self.gram, self.jtf = _evaluate(x_T, self.y, np.arange(n), self.p)  # J'J, J'f: all lmdif needs
        self.nfev = np.full(n, 5, np.int64)
        self.first = np.ones(n, bool)  # MINPACK iter == 1: no successful step yet
        self.diag = np.zeros((n, 4))
        self.delta, self.xnorm, self.par = np.zeros(n), np.zeros(n), np.zeros(n)
        self.info = np.zeros(n, np.int64)
        self.eig: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros((n, 4)), np.zeros((n, 4, 4)), np.zeros((n, 4)))
        self._new_jacobian(np.arange(n))

    def _new_jacobian(self, idx: np.ndarray) -> None:
        """MINPACK's outer iteration for curves `idx`: scaling, initial trust radius, gradient test, eigenbasis."""
        gram, jtf, fnorm = self.gram[idx], self.jtf[idx], self.fnorm[idx]
        acnorm = np.sqrt(np.diagonal(gram, axis1=1, axis2=2))
        first = self.first[idx]
        self.diag[idx] = np.where(first[:, None], np.where(acnorm == 0, 1.0, acnorm), self.diag[idx])
        xnorm = np.linalg.norm(self.diag[idx] * self.p[idx], axis=1)
        self.xnorm[idx] = np.where(first, xnorm, self.xnorm[idx])
        self.delta[idx] = np.where(first, np.where(xnorm == 0, FACTOR, FACTOR * xnorm), self.delta[idx])
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.abs(jtf) / (acnorm * fnorm[:, None])
        gnorm = np.where((acnorm != 0) & (fnorm[:, None] != 0), cos, 0.0).max(1)
        self.info[idx[gnorm <= 0.0]] = 4  # gtol = 0 (scipy's default): only an exactly zero gradient
        diag = self.diag[idx] = np.maximum(self.diag[idx], acnorm)
        e, v = np.linalg.eigh(gram / (diag[:, :, None] * diag[:, None, :]))
        e0, v0, b0 = self.eig
        e0[idx], v0[idx], b0[idx] = np.maximum(e, 0.0), v, (v * (jtf / diag)[:, :, None]).sum(1)

    def iterate(self, idx: np.ndarray) -> None:
        """One inner iteration of `lmdif` for the running curves `idx`: a trial step, the trust-region update, and the
        convergence tests; curves whose step succeeded get a new Jacobian."""
        e, v, b = (a[idx] for a in self.eig)
        delta, fnorm = self.delta[idx], self.fnorm[idx]
        par, x_eig = _lmpar(e, b, delta, self.par[idx])
        step = -(v * x_eig[:, None, :]).sum(2) / self.diag[idx]  # no einsum: its rounding varies with C
        pnorm = np.linalg.norm(self.diag[idx] * step, axis=1)
        delta = np.where(self.first[idx], np.minimum(delta, pnorm), delta)
        p_new = self.p[idx] + step
        fnorm1, gram1, jtf1 = _evaluate(self.x, self.y, idx, p_new)
        self.nfev[idx] += 1
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            actred = np.where(0.1 * fnorm1 < fnorm, 1 - np.square(fnorm1 / fnorm), -1.0)
            jstep2 = ((self.gram[idx] * step[:, None, :]).sum(2) * step).sum(1)  # |J step|^2 = step' J'J step
            temp1 = np.sqrt(np.maximum(jstep2, 0)) / fnorm
            temp2 = np.sqrt(par) * pnorm / fnorm
            prered = np.square(temp1) + np.square(temp2) / 0.5
            dirder = -(np.square(temp1) + np.square(temp2))
            ratio = np.where(prered != 0, actred / prered, 0.0)
            shrink = np.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
        shrink = np.where((0.1 * fnorm1 >= fnorm) | (shrink < 0.1) | ~np.isfinite(shrink), 0.1, shrink)
        low, grow = ratio <= 0.25, (ratio > 0.25) & ((par == 0) | (ratio >= 0.75))
        self.delta[idx] = np.where(low, shrink * np.minimum(delta, pnorm / 0.1), np.where(grow, pnorm / 0.5, delta))
        self.par[idx] = np.where(low, par / shrink, np.where(grow, 0.5 * par, par))
        self._accept(idx, ratio >= 1e-4, p_new, fnorm1, gram1, jtf1)
        self._test(idx, actred, prered, ratio)
        ok = idx[(ratio >= 1e-4) & (self.info[idx] == 0)]
        if ok.size:
            self._new_jacobian(ok)

    def _accept(self, idx, ok, p_new, fnorm1, gram1, jtf1) -> None:
        acc = idx[ok]
        self.p[acc], self.fnorm[acc], self.gram[acc], self.jtf[acc] = p_new[ok], fnorm1[ok], gram1[ok], jtf1[ok]
        self.nfev[acc] += 4
        self.xnorm[acc] = np.linalg.norm(self.diag[acc] * p_new[ok], axis=1)
        self.first[acc] = False

    def _test(self, idx, actred, prered, ratio) -> None:
        """lmdif's convergence (1-3) and failure (5-8) tests, in its order."""
        small = (np.abs(actred) <= self.ftol) & (prered <= self.ftol) & (0.5 * ratio <= 1)
        tight = self.delta[idx] <= self.xtol * self.xnorm[idx]
        info = np.where(small & tight, 3, np.where(tight, 2, np.where(small, 1, 0)))
        fail = np.where(self.nfev[idx] >= self.maxfev, 5, 0)
        fail = np.where((np.abs(actred) <= _EPSMCH) & (prered <= _EPSMCH) & (0.5 * ratio <= 1), 6, fail)
        fail = np.where(self.delta[idx] <= _EPSMCH * self.xnorm[idx], 7, fail)
        info = np.where(info == 0, fail, info)
        self.info[idx] = np.where(self.info[idx] == 0, info, self.info[idx])


def fit_sigmoid(x_T: np.ndarray, y_TxC: np.ndarray, ftol: float = FTOL, xtol: float = XTOL,
                maxfev: int = MAXFEV) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares sigmoid fits of every column of y against x, as Chang et al.'s `run_sigmoid_regression`: from
    p0 = [min y, max y, mean x, 1], MINPACK `lmdif`; curves that fail (MINPACK info 5-8, where curve_fit raises) are
    fitted again from p0 with ftol x 10, until they converge. Returns (params [C, 4] = start, end, xmid, scale;
    the ftol each curve converged with [C])."""
    x_T = np.asarray(x_T, np.float64)
    y_CxT = np.asarray(y_TxC, np.float64).T
    n = len(y_CxT)
    p0 = np.stack([y_CxT.min(1), y_CxT.max(1), np.full(n, x_T.mean()), np.ones(n)], 1)
    params, used = p0.copy(), np.full(n, np.nan)
    todo, tol = np.arange(n), ftol
    while todo.size and tol < 1e3:
        fit = _Fit(x_T, y_CxT[todo], p0[todo], tol, xtol, maxfev)
        while (running := np.flatnonzero(fit.info == 0)).size:
            fit.iterate(running)
        ok = (fit.info >= 1) & (fit.info <= 4)
        params[todo[ok]], used[todo[ok]] = fit.p[ok], tol
        todo, tol = todo[~ok], tol * 10
    return params, used


def crossing(params_Cx4: np.ndarray, ymin: float, ymax_C: np.ndarray, xmin: float, xmax: float,
             proportion: float = 0.5) -> np.ndarray:
    """Chang et al.'s `get_aoa`: where the fitted (increasing) sigmoid passes `proportion` of the way from ymin to
    ymax, clipped to [xmin, xmax]; xmax when the threshold is above the whole curve, ymin >= ymax, or the sigmoid
    decreases; xmin when the threshold is below the whole curve."""
    start, end, xmid, scale = params_Cx4.T
    thr = ymin * (1 - proportion) + ymax_C * proportion
    to_max = ((thr >= start) & (thr >= end)) | (ymin >= ymax_C) | ((end < start) & (scale > 0)) | \
             ((end > start) & (scale < 0))
    to_min = ~to_max & (thr <= start) & (thr <= end)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = xmid - scale * np.log((end - start) / (thr - start) - 1.0)
    aoa = np.where(to_max, xmax, np.where(to_min, xmin, cross))
    return np.clip(np.where(np.isfinite(aoa), aoa, xmax), xmin, xmax)


def sigmoid_aoa(x_T: np.ndarray, surprisal_TxC: np.ndarray, chance: float,
                proportion: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chang et al.'s `compute_aoa_vals` for every column: fit the sigmoid to the negated raw curve and take where it
    crosses halfway between chance and the raw curve's minimum surprisal. Returns (aoa [C], threshold [C] in bits,
    params [C, 4] in surprisal units: start, end, xmid, scale)."""
    x_T = np.asarray(x_T, np.float64)
    neg_TxC = -np.asarray(surprisal_TxC, np.float64)
    params, _ = fit_sigmoid(x_T, neg_TxC)
    ymax = neg_TxC.max(0)
    aoa = crossing(params, -chance, ymax, float(x_T.min()), float(x_T.max()), proportion)
    threshold = -((-chance) * (1 - proportion) + ymax * proportion)
    return aoa, threshold, np.stack([-params[:, 0], -params[:, 1], params[:, 2], params[:, 3]], 1)
