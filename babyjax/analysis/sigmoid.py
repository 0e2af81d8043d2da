"""Chang et al.'s sigmoid AoA (lm-learning-curves, utils/formula_utils.py: `run_sigmoid_regression`, `get_aoa`,
`compute_aoa_vals`) for many curves at once. Their fit is `scipy.optimize.curve_fit(sigmoid, x, y, p0=[min y, max y,
mean x, 1], maxfev=1e6, ftol=1e-8)`, retried with ftol x 10 while it fails: MINPACK's `lmdif` (Levenberg-Marquardt
with Moré's trust region and column scaling). `fit_sigmoid` is that algorithm, step for step, for every curve at
once (each curve keeps its own trust region, damping and scaling; forward-difference Jacobian as scipy's; the 4x4
subproblem solved through Jacobi eigendecompositions instead of MINPACK's pivoted QR), jitted in float64. Curves
stream through a block of SLOTS slots, a finished curve's slot taken by the next one, and the few curves still
running after TAIL_AFTER iterations finish in blocks of TAIL_SLOTS. XLA's arithmetic depends on array shapes in the
last bits, so which block shape runs a curve's k-th iteration depends on k alone: a curve's numbers never depend on
the other curves, their number or the machine's core count. tests/test_sigmoid.py checks it against curve_fit on
smooth, noisy and bumpy curves."""

from __future__ import annotations

import functools
import os
from concurrent import futures

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

FTOL = 1e-8  # Chang et al.
XTOL = 1.49012e-8  # scipy.optimize.leastsq default
MAXFEV = 1_000_000  # Chang et al.
FACTOR = 100.0  # MINPACK initial step bound
SLOTS, TAIL_SLOTS, TAIL_AFTER = 64, 8, 32  # most curves converge in 6-20 iterations, a few take hundreds
WORKERS = min(4, os.cpu_count() or 1)  # blocks run side by side on this many threads
_EPSMCH = float(np.finfo(np.float64).eps)
_DWARF = float(np.finfo(np.float64).tiny)
_SQRT_EPS = float(np.sqrt(_EPSMCH))


def sigmoid(x: np.ndarray, start: np.ndarray, end: np.ndarray, xmid: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Chang et al.'s sigmoid: start + (end - start) / (1 + exp((xmid - x) / scale))."""
    return start + (end - start) * special.expit((x - xmid) / scale)


def _residuals(x_T, y, p):
    """At parameters p [C, 4] of curves y [C, T]: the residual norm, and J'J [C, 4, 4] and J'f [C, 4] of MINPACK
    `fdjac2`'s forward-difference Jacobian as scipy's leastsq takes it (epsfcn = machine epsilon: step sqrt(eps) *
    |p_k|, sqrt(eps) where p_k = 0), all lmdif needs of J. The residual is Chang et al.'s `start + (end - start) /
    (1 + exp((xmid - x) / scale)) - y`; moving xmid or scale by h rescales exp(...) by exp(h / scale) or
    exp(-w h / (scale + h)) (w = (xmid - x) / scale), a number within 1e-5 of one: one exponential per point."""
    start, end, xmid, scale = (p[:, i : i + 1] for i in range(4))
    h = _SQRT_EPS * jnp.abs(p)
    h = jnp.where(h == 0, _SQRT_EPS, h)
    w = (xmid - x_T) / scale
    e = jnp.exp(w)
    r = 1.0 / (1.0 + e)
    f = start + (end - start) * r - y
    eps = -w * h[:, 3:] / (scale + h[:, 3:])
    moved = [
        (start + h[:, :1]) + (end - (start + h[:, :1])) * r,
        start + ((end + h[:, 1:2]) - start) * r,
        start + (end - start) / (1.0 + e * jnp.exp(h[:, 2:3] / scale)),
        start + (end - start) / (1.0 + e * (1 + eps * (1 + eps / 2 * (1 + eps / 3 * (1 + eps / 4))))),
    ]
    j = [(m - y - f) * (1.0 / h[:, k : k + 1]) for k, m in enumerate(moved)]
    j = [jnp.where(jnp.abs(c) < jnp.inf, c, 0.0) for c in j]  # NaN and infinite entries: 0
    upper = {(a, b): jnp.sum(j[a] * j[b], 1) for a in range(4) for b in range(a, 4)}
    gram = jnp.stack([jnp.stack([upper[min(a, b), max(a, b)] for b in range(4)], 1) for a in range(4)], 1)
    fnorm = jnp.sqrt(jnp.sum(f * f, 1))
    return jnp.where(jnp.isfinite(fnorm), fnorm, jnp.inf), gram, jnp.stack([jnp.sum(c * f, 1) for c in j], 1)


_PAIRS = ((0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2))
JACOBI_SWEEPS = 5  # cyclic sweeps; a 4x4 matrix is diagonal to rounding after 4


def _rotate(a: dict, v: dict, p: int, q: int) -> None:
    """One Jacobi rotation (Golub & Van Loan, sym.schur2) zeroing a[p, q] of every curve's symmetric 4x4 matrix `a`
    (upper triangle, (i, j) -> [C]) and accumulating it into the eigenvectors `v`. Entries below 1e-20 of the
    diagonal are left alone, so that converged sweeps make no denormals."""
    get = lambda i, j: a[min(i, j), max(i, j)]
    apq = get(p, q)
    act = jnp.abs(apq) > 1e-20 * (jnp.abs(get(p, p)) + jnp.abs(get(q, q)))
    tau = (get(q, q) - get(p, p)) / jnp.where(act, 2.0 * apq, 1.0)
    t = jnp.sign(tau) / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau))
    t = jnp.where(act, jnp.where(tau == 0, 1.0, jnp.where(jnp.isfinite(t), t, 0.0)), 0.0)
    c = 1.0 / jnp.sqrt(1.0 + t * t)
    s = t * c
    new = {(p, p): get(p, p) - t * apq, (q, q): get(q, q) + t * apq, (p, q): jnp.where(act, 0.0, apq)}
    for k in {0, 1, 2, 3} - {p, q}:
        new[min(k, p), max(k, p)] = c * get(k, p) - s * get(k, q)
        new[min(k, q), max(k, q)] = s * get(k, p) + c * get(k, q)
    a.update(new)
    for k in range(4):
        v[k, p], v[k, q] = c * v[k, p] - s * v[k, q], s * v[k, p] + c * v[k, q]


def _eigh4(m):
    """Eigenvalues [C, 4] and eigenvectors [C, 4, 4] (columns) of symmetric 4x4 matrices m [C, 4, 4] by cyclic
    Jacobi: elementwise over curves, about half of LAPACK's per-matrix cost at this size, as accurate (2e-15
    relative on matrices with condition number 1e14), and exact zero rows stay exactly zero."""

    def sweep(_, av):
        a, v = dict(av[0]), dict(av[1])
        for p, q in _PAIRS:
            _rotate(a, v, p, q)
        return a, v

    a = {(i, j): m[:, i, j] for i in range(4) for j in range(i, 4)}
    v = {(i, j): jnp.full(m.shape[:1], float(i == j), m.dtype) for i in range(4) for j in range(4)}
    a, v = jax.lax.fori_loop(0, JACOBI_SWEEPS, sweep, (a, v))
    return (
        jnp.stack([a[i, i] for i in range(4)], 1),
        jnp.stack([jnp.stack([v[i, j] for j in range(4)], 1) for i in range(4)], 1),
    )


def _lmpar(e, b, delta, par):
    """MINPACK `lmpar` in the eigenbasis of the scaled normal matrix A = (J D^-1)'(J D^-1) = V diag(e) V', b = V'g:
    the damping `par` for which the scaled step x = (A + par I)^-1 b has |x| within 10% of the trust radius `delta`
    (or par = 0 when the Gauss-Newton step fits; J is rank-deficient only where e is exactly 0, as MINPACK's pivoted
    QR has an exact zero). Returns (par, x in the eigenbasis)."""
    nonzero = e > 0
    x = jnp.where(nonzero, b / jnp.where(nonzero, e, 1.0), 0.0)
    dxnorm = jnp.sqrt(jnp.sum(x * x, 1))
    fp = dxnorm - delta
    todo = fp > 0.1 * delta
    gauss_newton = ~todo
    safe = jnp.maximum(dxnorm, _DWARF)
    parl = jnp.where(
        nonzero.all(1), (fp / delta) / jnp.sum(jnp.square(x / safe[:, None]) / jnp.where(nonzero, e, 1.0), 1), 0.0
    )
    parl = jnp.where(jnp.isfinite(parl) & todo, parl, 0.0)
    gnorm = jnp.sqrt(jnp.sum(b * b, 1))
    paru = gnorm / delta
    paru = jnp.where(paru == 0, _DWARF / jnp.minimum(delta, 0.1), paru)
    par = jnp.minimum(jnp.maximum(par, parl), paru)
    par = jnp.where(par == 0, gnorm / safe, par)
    for it in range(1, 11):
        par = jnp.where(todo & (par == 0), jnp.maximum(_DWARF, 0.001 * paru), par)
        x = jnp.where(todo[:, None], b / (e + par[:, None]), x)
        dxnorm = jnp.sqrt(jnp.sum(x * x, 1))
        prev, fp = fp, jnp.where(todo, dxnorm - delta, fp)
        todo = todo & ~((jnp.abs(fp) <= 0.1 * delta) | ((parl == 0) & (fp <= prev) & (prev < 0)) | (it == 10))
        parc = (fp / delta) / jnp.sum(jnp.square(x / jnp.maximum(dxnorm, _DWARF)[:, None]) / (e + par[:, None]), 1)
        parl = jnp.where(todo & (fp > 0), jnp.maximum(parl, par), parl)
        paru = jnp.where(todo & (fp < 0), jnp.minimum(paru, par), paru)
        par = jnp.where(todo, jnp.maximum(parl, par + parc), par)
    return jnp.where(gauss_newton, 0.0, par), x


def _new_jacobian(st: dict, mask) -> dict:
    """lmdif's outer iteration for the curves in `mask`: scaling (column norms of J; the first time, the initial trust
    radius), the gradient test (gtol = 0: only an exactly zero gradient, info 4) and the scaled eigenbasis."""
    gram, jtf, fnorm, first = st["gram"], st["jtf"], st["fnorm"], mask & st["first"]
    acnorm = jnp.sqrt(jnp.diagonal(gram, axis1=1, axis2=2))
    diag = jnp.where(first[:, None], jnp.where(acnorm == 0, 1.0, acnorm), st["diag"])
    xnorm0 = jnp.sqrt(jnp.sum((diag * st["p"]) ** 2, 1))
    cos = jnp.where((acnorm != 0) & (fnorm[:, None] != 0), jnp.abs(jtf) / (acnorm * fnorm[:, None]), 0.0)
    info = jnp.where(mask & (cos.max(1) <= 0.0) & (st["info"] == 0), 4, st["info"])
    diag = jnp.where(mask[:, None], jnp.maximum(diag, acnorm), diag)
    e, v = _eigh4(gram / (diag[:, :, None] * diag[:, None, :]))
    m2 = mask[:, None]
    return {
        **st,
        "diag": diag,
        "info": info,
        "xnorm": jnp.where(first, xnorm0, st["xnorm"]),
        "delta": jnp.where(first, jnp.where(xnorm0 == 0, FACTOR, FACTOR * xnorm0), st["delta"]),
        "e": jnp.where(m2, jnp.maximum(e, 0.0), st["e"]),
        "v": jnp.where(m2[:, :, None], v, st["v"]),
        "b": jnp.where(m2, jnp.sum(v * (jtf / diag)[:, :, None], 1), st["b"]),
    }


def _initial(p0, fnorm, gram, jtf) -> dict:
    """lmdif's state of curves about to start at p0, with the residual norm and J'J, J'f there."""
    n = p0.shape[0]
    return {
        "p": p0,
        "fnorm": fnorm,
        "gram": gram,
        "jtf": jtf,
        "nfev": jnp.full(n, 5),
        "first": jnp.ones(n, bool),
        "diag": jnp.zeros((n, 4)),
        "delta": jnp.zeros(n),
        "xnorm": jnp.zeros(n),
        "par": jnp.zeros(n),
        "info": jnp.zeros(n, jnp.int32),
        "e": jnp.zeros((n, 4)),
        "v": jnp.zeros((n, 4, 4)),
        "b": jnp.zeros((n, 4)),
        "fresh": jnp.zeros(n, bool),
        "iters": jnp.zeros(n, jnp.int32),
    }


def _iterate(x_T, y, tol, st: dict) -> dict:
    """One inner iteration of lmdif for the running curves (info 0): a trial step, the trust-region update, the
    convergence (info 1-3) and failure (5-7) tests; curves whose step succeeded get a new Jacobian. Curves marked
    `fresh` (just put in their slot, at p0) are evaluated at p0 instead and start lmdif there."""
    ftol, xtol, maxfev = tol
    fresh = st["fresh"]
    run = (st["info"] == 0) & ~fresh
    par, x_eig = _lmpar(st["e"], st["b"], st["delta"], st["par"])
    step = jnp.where(fresh[:, None], 0.0, -jnp.sum(st["v"] * x_eig[:, None, :], 2) / st["diag"])
    pnorm = jnp.sqrt(jnp.sum((st["diag"] * step) ** 2, 1))
    delta = jnp.where(st["first"], jnp.minimum(st["delta"], pnorm), st["delta"])
    fnorm1, gram1, jtf1 = _residuals(x_T, y, st["p"] + step)
    fnorm = st["fnorm"]
    actred = jnp.where(0.1 * fnorm1 < fnorm, 1 - jnp.square(fnorm1 / fnorm), -1.0)
    temp1 = jnp.sqrt(jnp.maximum(jnp.sum(jnp.sum(st["gram"] * step[:, None, :], 2) * step, 1), 0)) / fnorm  # |J step|
    temp2 = jnp.sqrt(par) * pnorm / fnorm
    prered, dirder = temp1**2 + temp2**2 / 0.5, -(temp1**2 + temp2**2)
    ratio = jnp.where(prered != 0, actred / prered, 0.0)
    shrink = jnp.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
    shrink = jnp.where((0.1 * fnorm1 >= fnorm) | (shrink < 0.1) | ~jnp.isfinite(shrink), 0.1, shrink)
    low, grow = ratio <= 0.25, (ratio > 0.25) & ((par == 0) | (ratio >= 0.75))
    delta = jnp.where(low, shrink * jnp.minimum(delta, pnorm / 0.1), jnp.where(grow, pnorm / 0.5, delta))
    ok = run & (ratio >= 1e-4)
    nfev = st["nfev"] + run  # this trial; the next Jacobian's 4 are counted after the tests, as lmdif does
    xnorm = jnp.where(ok, jnp.sqrt(jnp.sum((st["diag"] * (st["p"] + step)) ** 2, 1)), st["xnorm"])
    small = (jnp.abs(actred) <= ftol) & (prered <= ftol) & (0.5 * ratio <= 1)
    tight = delta <= xtol * xnorm
    info = jnp.where(small & tight, 3, jnp.where(tight, 2, jnp.where(small, 1, 0)))
    fail = jnp.where(
        delta <= _EPSMCH * xnorm,
        7,
        jnp.where(
            (jnp.abs(actred) <= _EPSMCH) & (prered <= _EPSMCH) & (0.5 * ratio <= 1), 6, jnp.where(nfev >= maxfev, 5, 0)
        ),
    )
    info = jnp.where(run, jnp.where(info == 0, fail, info), st["info"])
    nfev = nfev + 4 * ok
    st = {
        **st,
        "p": jnp.where(ok[:, None], st["p"] + step, st["p"]),
        "fnorm": jnp.where(ok, fnorm1, fnorm),
        "gram": jnp.where(ok[:, None, None], gram1, st["gram"]),
        "jtf": jnp.where(ok[:, None], jtf1, st["jtf"]),
        "xnorm": xnorm,
        "nfev": nfev,
        "info": info,
        "first": st["first"] & ~ok,
        "iters": st["iters"] + run,
        "delta": jnp.where(run, delta, st["delta"]),
        "par": jnp.where(run, jnp.where(low, par / shrink, jnp.where(grow, 0.5 * par, par)), st["par"]),
    }
    init = _initial(st["p"], fnorm1, gram1, jtf1)
    st = {k: jnp.where(fresh.reshape((-1,) + (1,) * (v.ndim - 1)), init[k], v) for k, v in st.items()}
    return _new_jacobian(st, (ok & (info == 0)) | fresh)


def _refill(st: dict, idx, y_B, ptr, y_QxT, p0_Qx4, n_valid, base, most: int):
    """Put the next curves of the queue (local rows ptr.. of n_valid; global index base + row) into free slots
    (idx -1), at most `most` of them."""
    size = idx.shape[0]
    slot = jnp.nonzero(idx < 0, size=most, fill_value=size)[0]
    new = ptr + jnp.arange(slot.shape[0], dtype=ptr.dtype)
    take = (slot < size) & (new < n_valid)
    slot, new = jnp.where(take, slot, size), jnp.minimum(new, y_QxT.shape[0] - 1)  # slot `size`: dropped
    put = lambda a, v: a.at[slot].set(v, mode="drop")
    st = {**st, "p": put(st["p"], p0_Qx4[new]), "info": put(st["info"], 0), "fresh": put(st["fresh"], True)}
    return st, put(idx, base + new), put(y_B, y_QxT[new]), ptr + take.sum(dtype=ptr.dtype)


@functools.partial(jax.jit, static_argnames="tol")
def _stream(x_T, y_QxT, p0_Qx4, n_valid, base, slots: dict, exit_below, evict_after, tol):
    """lmdif on a queue of curves (the first n_valid rows of y [Q, T], global indices base..) through a block of B
    slots: every iteration advances all slots' curves; a curve that finished, or has run `evict_after` iterations,
    goes to the log with its state, and the next curve of the queue takes its slot (evaluated at p0 on its first
    iteration). Stops when the queue is empty and under `exit_below` curves still run. Returns (log: the slots'
    state [Q + B] with idx -1 where unused; slots)."""
    n_log = y_QxT.shape[0] + slots["idx"].shape[0]
    split = lambda sl: ({k: v for k, v in sl.items() if k not in ("y", "idx")}, sl["idx"], sl["y"])
    log = {k: jnp.zeros((n_log,) + v.shape[1:], v.dtype) for k, v in slots.items() if k != "y"}
    log["idx"] = log["idx"] - 1

    def running(c):
        return (c[2] < n_valid) | (jnp.sum((c[0]["idx"] >= 0) & (c[0]["info"] == 0)) >= exit_below)

    def body(c):
        sl, log, ptr, n_out = c
        st, idx, y_B = split(sl)
        st = _iterate(x_T, y_B, tol, st)
        out = (idx >= 0) & ((st["info"] != 0) | (st["iters"] >= evict_after))
        at = jnp.where(out, n_out + jnp.cumsum(out) - 1, n_log)
        log = {k: v.at[at].set(idx if k == "idx" else st[k], mode="drop") for k, v in log.items()}
        st["info"] = jnp.where(out, -1, st["info"])  # a free slot is frozen until refilled
        st, idx, y_B, ptr = _refill(
            st, jnp.where(out, -1, idx), y_B, ptr, y_QxT, p0_Qx4, n_valid, base, min(64, len(out))
        )
        return {**st, "idx": idx, "y": y_B}, log, ptr, n_out + out.sum(dtype=n_out.dtype)

    zero = jnp.zeros((), jnp.int32)
    st, idx, y_B, ptr = _refill(*split(slots), zero, y_QxT, p0_Qx4, n_valid, base, slots["idx"].shape[0])
    slots, log, _, _ = jax.lax.while_loop(running, body, ({**st, "idx": idx, "y": y_B}, log, ptr, zero))
    return log, slots


def _empty_slots(size: int, n_points: int) -> dict:
    """`size` free slots: lmdif's state, the curve held (`idx`, -1: none) and its values `y`."""
    st = jax.eval_shape(_initial, np.zeros((size, 4)), np.zeros(size), np.zeros((size, 4, 4)), np.zeros((size, 4)))
    st = {k: np.zeros(v.shape, v.dtype) for k, v in st.items()}
    return {**st, "info": np.full(size, -1, np.int32), "idx": np.full(size, -1), "y": np.zeros((size, n_points))}


def _fit_group(x_T, y_NxT, p0_Nx4, tol) -> tuple[np.ndarray, np.ndarray]:
    """lmdif on every curve of a group: streamed through SLOTS slots from queues of 8 x SLOTS curves (fixed shapes:
    one compilation per number of points) for up to TAIL_AFTER iterations; the curves still running then finish
    TAIL_SLOTS at a time. Returns (params [N, 4], info [N])."""
    n, n_points, queue = len(y_NxT), len(x_T), 8 * SLOTS
    params, info, tail = np.zeros((n, 4)), np.zeros(n, np.int32), []

    def run(q0, slots, exit_below, evict_after):
        rows = np.arange(q0, min(n, q0 + queue))
        pad = np.r_[rows, np.zeros(queue - len(rows), np.int64)]
        log, slots = jax.device_get(
            _stream(x_T, y_NxT[pad], p0_Nx4[pad], len(rows), q0, slots, exit_below, evict_after, tol)
        )
        done = (log["idx"] >= 0) & (log["info"] != 0)
        params[log["idx"][done]], info[log["idx"][done]] = log["p"][done], log["info"][done]
        tail.extend({k: v[i] for k, v in log.items()} for i in np.flatnonzero((log["idx"] >= 0) & (log["info"] == 0)))
        return slots

    with jax.enable_x64(True):
        slots = _empty_slots(SLOTS, n_points)
        for q0 in range(0, n, queue):
            slots = run(q0, slots, 1 if q0 + queue >= n else SLOTS + 1, TAIL_AFTER)
        todo, tail = tail, []
        for b0 in range(0, len(todo), TAIL_SLOTS):
            block = _empty_slots(TAIL_SLOTS, n_points)
            for i, row in enumerate(todo[b0 : b0 + TAIL_SLOTS]):
                for k, v in row.items():
                    block[k][i] = v
                block["y"][i] = y_NxT[row["idx"]]
            run(n, block, 1, np.iinfo(np.int32).max)
    return params, info


def _lmdif(x_T: np.ndarray, y_CxT: np.ndarray, p0: np.ndarray, tol: tuple[float, float, int]) -> tuple[np.ndarray, ...]:
    """MINPACK lmdif on every curve, in WORKERS groups side by side: (params [C, 4], info [C])."""
    groups = [g for g in np.array_split(np.arange(len(y_CxT)), WORKERS) if len(g)]
    params, info = np.zeros((len(y_CxT), 4)), np.zeros(len(y_CxT), np.int32)
    with futures.ThreadPoolExecutor(len(groups)) as pool:
        for g, (p, i) in zip(groups, pool.map(lambda g: _fit_group(x_T, y_CxT[g], p0[g], tol), groups)):
            params[g], info[g] = p, i
    return params, info


def fit_sigmoid(
    x_T: np.ndarray, y_TxC: np.ndarray, ftol: float = FTOL, xtol: float = XTOL, maxfev: int = MAXFEV
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares sigmoid fits of every column of y against x, as Chang et al.'s `run_sigmoid_regression`: from
    p0 = [min y, max y, mean x, 1], MINPACK `lmdif`; curves that fail (MINPACK info 5-8, where curve_fit raises) are
    fitted again from p0 with ftol x 10, until they converge (Chang's loop has no end; this one stops past ftol 100
    and leaves p0 with ftol NaN). Returns (params [C, 4] = start, end, xmid, scale; the ftol each curve converged
    with [C])."""
    with jax.enable_x64(True), np.errstate(all="ignore"):
        x_T = np.asarray(x_T, np.float64)
        y_CxT = np.asarray(y_TxC, np.float64).T
        n = len(y_CxT)
        p0 = np.stack([y_CxT.min(1), y_CxT.max(1), np.full(n, x_T.mean()), np.ones(n)], 1)
        params, used = p0.copy(), np.full(n, np.nan)
        todo, tol = np.arange(n), ftol
        while todo.size and tol < 1e3:
            p, info = _lmdif(x_T, y_CxT[todo], p0[todo], (tol, xtol, maxfev))
            ok = (info >= 1) & (info <= 4)
            params[todo[ok]], used[todo[ok]] = p[ok], tol
            todo, tol = todo[~ok], tol * 10
        return params, used


def crossing(
    params_Cx4: np.ndarray, ymin: float, ymax_C: np.ndarray, xmin: float, xmax: float, proportion: float = 0.5
) -> np.ndarray:
    """Chang et al.'s `get_aoa`: where the fitted (increasing) sigmoid passes `proportion` of the way from ymin to
    ymax, clipped to [xmin, xmax]; xmax when the threshold is above the whole curve, ymin >= ymax, or the sigmoid
    decreases; xmin when the threshold is below the whole curve."""
    start, end, xmid, scale = params_Cx4.T
    thr = ymin * (1 - proportion) + ymax_C * proportion
    to_max = (
        ((thr >= start) & (thr >= end))
        | (ymin >= ymax_C)
        | ((end < start) & (scale > 0))
        | ((end > start) & (scale < 0))
    )
    to_min = ~to_max & (thr <= start) & (thr <= end)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = xmid - scale * np.log((end - start) / (thr - start) - 1.0)
    aoa = np.where(to_max, xmax, np.where(to_min, xmin, cross))
    return np.clip(np.where(np.isfinite(aoa), aoa, xmax), xmin, xmax)


def sigmoid_aoa(
    x_T: np.ndarray, surprisal_TxC: np.ndarray, chance: float, proportion: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
