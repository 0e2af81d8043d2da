"""Token-level learning-curve measures of Chang, Tu & Bergen (2023), vectorised over all curves of a run
(definitions: docs/science.md, "Token learning curves"). The smoother is pygam's `LinearGAM(n_splines=25).gridsearch(X,
y, lam=np.logspace(-3, 3, 11))` rebuilt exactly: pygam's basis plus an intercept, penalty lam * D'D (second differences)
plus pygam's sqrt(eps) ridge, solved in one PIRLS step (normal/identity), the first lambda minimising GCV `n * RSS /
(n - 1.4 * edof)**2` kept. The B-splines sum to one, so the intercept folds into the spline coefficients (penalty
lam * D'D + eps * (I - 11'/26)); every curve of a run shares x, so each lambda is one linear map, GCV closed form."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from babyjax.analysis.sigmoid import sigmoid, sigmoid_aoa  # noqa: F401 - part of this module's interface
from babyjax.errors import InputError

N_SPLINES = 25
SPLINE_ORDER = 3
LAMS = np.logspace(-3, 3, 11)
GCV_GAMMA = 1.4  # pygam `_estimate_GCV_UBRE` default
PYGAM_EPS = np.sqrt(np.finfo(np.float64).eps)  # pygam `_pirls`: S = sqrt(EPS) * I
LAST_N = 11  # Chang et al.: final surprisal and within-run variability over the last 11 checkpoints
AOA_GRID = 1000  # Chang et al.: AoA on a 1,000-point grid over the log-step range
MIN_SIGMOID_POINTS = 5  # a 4-parameter sigmoid needs more points than parameters


def pygam_bspline_basis(
    x: np.ndarray, edge_knots: Sequence[float], n_splines: int = N_SPLINES, spline_order: int = SPLINE_ORDER
) -> np.ndarray:
    """B-spline basis [len(x), n_splines], a port of pygam.utils.b_spline_basis (non-periodic, with linear
    extrapolation beyond the edge knots; equally spaced knots over the edges plus `spline_order` beyond each, the last
    nudged by 1e-9), so that knots, edge handling and values are pygam's."""
    lo, hi = float(min(edge_knots)), float(max(edge_knots))
    scale = (hi - lo) or 1.0
    boundary_knots = np.linspace(0, 1, 1 + n_splines - spline_order)
    diff = boundary_knots[1] - boundary_knots[0]
    xs = np.r_[(np.ravel(x).astype(np.float64) - lo) / scale, 0.0, 1.0]  # 0 and 1 give extrapolation slopes
    left_out, right_out = xs < 0, xs > 1
    xs = xs[:, None]
    aug = np.arange(1, spline_order + 1) * diff
    knots = np.r_[-aug[::-1], boundary_knots, 1 + aug]
    knots[-1] += 1e-9  # last knot inclusive
    bases = ((xs >= knots[:-1]) & (xs < knots[1:])).astype(np.float64)
    bases[-1] = bases[-2][::-1]  # symmetric bases at 0 and 1
    maxi = len(knots) - 1
    prev = bases[-2:]
    for m in range(2, spline_order + 2):
        maxi -= 1
        left = (xs - knots[:maxi]) * bases[:, :maxi] / (knots[m - 1 : maxi + m - 1] - knots[:maxi])
        right = (knots[m : maxi + m] - xs) * bases[:, 1 : maxi + 1] / (knots[m : maxi + m] - knots[1 : maxi + 1])
        prev = bases[-2:]
        bases = left + right
    if left_out.any() or right_out.any():
        bases[left_out | right_out] = 0.0
        grads = spline_order * (
            prev[:, :-1] / (knots[spline_order:-1] - knots[: -spline_order - 1])
            - prev[:, 1:] / (knots[spline_order + 1 :] - knots[1:-spline_order])
        )
        bases[left_out] = grads[0] * xs[left_out] + bases[-2]
        bases[right_out] = grads[1] * (xs[right_out] - 1) + bases[-1]
    return bases[:-2]


@dataclasses.dataclass(frozen=True)
class GamSmoother:
    """pygam LinearGAM(n_splines=25) + gridsearch over `lams`, as fixed linear maps for one shared x (log10 step).
    Coefficients a [K, C] are the intercept-folded spline coefficients; `predict(a, x)` evaluates the curve."""

    x_T: np.ndarray
    lams: np.ndarray
    edge_knots: tuple[float, float]
    q_TxK: np.ndarray  # orthonormal basis of the spline columns at x
    smooth_LxKxK: np.ndarray  # fitted values in q coordinates, per lambda
    coef_LxKxK: np.ndarray  # spline coefficients from q coordinates, per lambda
    edof_L: np.ndarray
    n_splines: int

    @classmethod
    def build(cls, x_T: np.ndarray, n_splines: int = N_SPLINES, lams: np.ndarray = LAMS) -> GamSmoother:
        x_T = np.asarray(x_T, np.float64)
        if x_T.ndim != 1 or not np.isfinite(x_T).all():
            raise InputError("x must be a finite 1-D array of log10 steps (drop step 0 first)")
        if len(x_T) < n_splines + 1:
            raise InputError(
                f"the GAM smoother ({n_splines} splines) needs at least {n_splines + 1} checkpoints "
                f"after step 0; found {len(x_T)}"
            )
        edges = (float(x_T.min()), float(x_T.max()))
        b_TxK = pygam_bspline_basis(x_T, edges, n_splines)
        q_TxK, r_KxK = np.linalg.qr(b_TxK)
        fold = np.eye(n_splines) - 1 / (n_splines + 1)  # I - 11'/(K+1): eps on [c_s, c_0], c_0 profiled out
        d = np.diff(np.eye(n_splines), 2, axis=0)  # second-order differences (pygam `penalties.derivative`)
        p0 = d.T @ d
        smooth, coef, edof = [], [], []
        for lam in np.asarray(lams, np.float64):
            k_KxK = np.linalg.inv(r_KxK.T @ r_KxK + lam * p0 + PYGAM_EPS * fold)
            a_KxK = k_KxK @ r_KxK.T  # q coordinates -> coefficients
            s_KxK = r_KxK @ a_KxK  # q coordinates -> fitted values (q coordinates)
            smooth.append(s_KxK), coef.append(a_KxK), edof.append(np.trace(s_KxK))
        return cls(
            x_T, np.asarray(lams, np.float64), edges, q_TxK, np.stack(smooth), np.stack(coef), np.array(edof), n_splines
        )

    def fit(self, y_TxC: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smooth finite curves (columns). Returns (coef [K, C], chosen lambda index [C], GCV [L, C])."""
        y_TxC = np.asarray(y_TxC, np.float64)
        n = y_TxC.shape[0]
        u_KxC = self.q_TxK.T @ y_TxC
        rss_perp_C = np.square(y_TxC - self.q_TxK @ u_KxC).sum(0)  # part of RSS no lambda can remove
        gcv_LxC = np.empty((len(self.lams), y_TxC.shape[1]))
        for i, s_KxK in enumerate(self.smooth_LxKxK):
            rss_C = rss_perp_C + np.square(u_KxC - s_KxK @ u_KxC).sum(0)
            gcv_LxC[i] = n * rss_C / (n - GCV_GAMMA * self.edof_L[i]) ** 2
        best_C = np.argmin(gcv_LxC, axis=0)  # first minimum, as gridsearch keeps the first strictly best
        coef_KxC = np.empty_like(u_KxC)
        for i in np.unique(best_C):
            cols = best_C == i
            coef_KxC[:, cols] = self.coef_LxKxK[i] @ u_KxC[:, cols]
        return coef_KxC, best_C, gcv_LxC

    def predict(self, coef_KxC: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """Smoothed curves [len(x), C] at x (default: the fitted x)."""
        return pygam_bspline_basis(self.x_T if x is None else x, self.edge_knots, self.n_splines) @ coef_KxC


def chance_surprisal(vocab_size: int) -> float:
    """Surprisal (bits) of a uniform guess over the vocabulary: log2(V) (Chang et al.)."""
    return float(np.log2(vocab_size))


def gam_aoa(grid_GxC: np.ndarray, grid_x_G: np.ndarray, chance: float) -> tuple[np.ndarray, np.ndarray]:
    """Chang et al. AoA from smoothed curves on a grid: threshold = halfway between chance and the curve minimum;
    AoA = first grid x at or below it; max x if never, or if the threshold is at or above chance."""
    threshold_C = 0.5 * (chance + grid_GxC.min(0))
    first_C = _first_at_or_below(grid_GxC, threshold_C)
    ok = (first_C < len(grid_x_G)) & (threshold_C < chance)
    return np.where(ok, grid_x_G[np.minimum(first_C, len(grid_x_G) - 1)], grid_x_G[-1]), threshold_C


def _first_at_or_below(grid_GxC: np.ndarray, threshold_C: np.ndarray, block: int = 64) -> np.ndarray:
    """Index of each column's first row at or below its threshold (G where none), reading the grid a block of rows
    at a time and only the columns not yet found (faster than numpy's argmax down a column)."""
    first_C, todo = np.full(grid_GxC.shape[1], len(grid_GxC)), np.arange(grid_GxC.shape[1])
    for g0 in range(0, len(grid_GxC), block):
        below = grid_GxC[g0 : g0 + block, todo] <= threshold_C[todo]
        hit = below.any(0)
        first_C[todo[hit]] = g0 + below[:, hit].argmax(0)
        todo = todo[~hit]
        if not todo.size:
            break
    return first_C


MEASURES = (
    "final_surprisal",
    "within_run_var",
    "gam_lambda",
    "aoa_gam",
    "aoa_threshold",
    "forgettability",
    "aoa_sigmoid",
    "gam_min",
    "unlearned",
)
UNLEARNED_PERCENTILE = 95.0  # Chang et al.'s get_unlearned_mask(surprisal_percentile=95.0)


@dataclasses.dataclass
class CurveResults:
    """Per-token measures for each run (arrays [n_tokens]), cross-run variability, and notes on what was skipped."""

    measures: dict[str, dict[str, np.ndarray]]
    cross_run_var: np.ndarray
    steps: dict[str, np.ndarray]
    notes: list[str]


def _note(notes: list[str], msg: str) -> None:
    if msg not in notes:
        notes.append(msg)
        warnings.warn(msg, stacklevel=3)


@dataclasses.dataclass
class _RunCurves:
    """One run's scored checkpoints (`rows` of its matrix, at `steps`), those after step 0 (`pos`, x = log10 step),
    and its GAM smoother (None when the run is too short for it)."""

    name: str
    rows: np.ndarray
    steps: np.ndarray
    pos: np.ndarray
    x: np.ndarray
    smoother: GamSmoother | None

    @classmethod
    def set_up(cls, run: str, s: np.ndarray, steps: np.ndarray, sigmoid_fit: bool, notes: list[str]) -> _RunCurves:
        """Find the scored checkpoints and build the smoother, with a note for each measure they are too few for."""
        if len(steps) != s.shape[0]:
            raise InputError(f"run {run}: {s.shape[0]} surprisal rows but {len(steps)} checkpoint steps")
        scored = np.zeros(len(steps), bool)
        for c0 in range(0, s.shape[1], 65536):
            scored |= np.isfinite(np.asarray(s[:, c0 : c0 + 65536])).any(1)
        if (~scored).any():
            _note(notes, f"run {run}: {int((~scored).sum())} checkpoint(s) not scored yet (all NaN): left out")
        rows = np.flatnonzero(scored)
        pos = rows[steps[rows] > 0]  # log10 axis: step 0 dropped
        x = np.log10(steps[pos].astype(np.float64))
        if len(rows) < LAST_N:
            _note(
                notes,
                f"run {run}: final surprisal and within-run variability need the last {LAST_N} "
                f"checkpoints; only {len(rows)} scored: skipped",
            )
        smoother = None
        try:
            smoother = GamSmoother.build(x)
        except ValueError as err:
            _note(
                notes,
                f"run {run}: {err}: smoothed-curve measures (GAM AoA, forgettability, cross-run variability) skipped",
            )
        if sigmoid_fit and len(pos) < MIN_SIGMOID_POINTS:
            _note(
                notes,
                f"run {run}: sigmoid AoA needs {MIN_SIGMOID_POINTS} checkpoints after step 0; "
                f"found {len(pos)}: skipped",
            )
        return cls(run, rows, steps[rows], pos, x, smoother)

    def measure(
        self,
        s: np.ndarray,
        c0: int,
        out: dict[str, np.ndarray],
        chance: float,
        common: np.ndarray | None,
        sigmoid_fit: bool,
        notes: list[str],
    ) -> np.ndarray | None:
        """Fill the measures `out` of tokens c0.. from the run's surprisal chunk s [checkpoints, chunk]; returns the
        smoothed curves at the `common` log steps (NaN for curves not finite), or None."""
        s = np.asarray(s, np.float64)[self.rows]
        finite_C = np.isfinite(s).all(0)
        if (~finite_C).any():
            _note(notes, f"run {self.name}: tokens with NaN/inf surprisal at scored checkpoints get NaN measures")
        if len(self.rows) >= LAST_N:
            out["final_surprisal"][c0 : c0 + s.shape[1]] = s[-LAST_N:].mean(0)
            out["within_run_var"][c0 : c0 + s.shape[1]] = s[-LAST_N:].std(0)
        y = s[np.searchsorted(self.rows, self.pos)][:, finite_C]
        cols = c0 + np.flatnonzero(finite_C)
        smoothed = None
        if self.smoother is not None and y.shape[1]:
            coef = _gam_measures(self.smoother, y, out, cols, chance)
            if common is not None:
                smoothed = np.full((len(common), s.shape[1]), np.nan)
                smoothed[:, finite_C] = self.smoother.predict(coef, common)
        if sigmoid_fit and len(self.pos) >= MIN_SIGMOID_POINTS and y.shape[1]:
            out["aoa_sigmoid"][cols] = sigmoid_aoa(self.x, y, chance)[0]
        return smoothed


def _gam_measures(
    sm: GamSmoother, y_TxC: np.ndarray, out: dict[str, np.ndarray], cols: np.ndarray, chance: float
) -> np.ndarray:
    """Smooth finite curves y and fill their GAM measures (tokens `cols` of `out`); returns the coefficients."""
    coef_KxC, best_C, _ = sm.fit(y_TxC)
    out["gam_lambda"][cols] = sm.lams[best_C]
    fitted_TxC = sm.predict(coef_KxC)  # at the checkpoints, as Chang's get_gam_curves
    out["forgettability"][cols] = np.clip(np.diff(fitted_TxC, axis=0), 0, None).sum(0)
    out["gam_min"][cols] = fitted_TxC.min(0)
    grid_x = np.linspace(sm.x_T[0], sm.x_T[-1], AOA_GRID)
    out["aoa_gam"][cols], out["aoa_threshold"][cols] = gam_aoa(sm.predict(coef_KxC, grid_x), grid_x, chance)
    return coef_KxC


def unlearned_mask(gam_min: np.ndarray, percentile: float = UNLEARNED_PERCENTILE) -> np.ndarray:
    """Chang et al.'s `get_unlearned_mask`: 1.0 for tokens whose smoothed curve never gets below the `percentile`-th
    percentile of all tokens' smoothed minima (never learned: AoA is ill-defined), 0.0 otherwise, NaN without a
    GAM."""
    ok = np.isfinite(gam_min)
    if not ok.any():
        return np.full(gam_min.shape, np.nan)
    return np.where(ok, (gam_min > np.percentile(gam_min[ok], percentile)).astype(np.float64), np.nan)


def _common_log_steps(by_run: Mapping[str, _RunCurves], notes: list[str]) -> np.ndarray | None:
    """log10 of the steps after 0 that every run with a smoother scored (cross-run variability compares the runs'
    smoothed curves there); None, with a note when it is for lack of runs, unless 2+ runs have a smoother."""
    runs, smoothed = list(by_run), [r for r, c in by_run.items() if c.smoother is not None]
    if len(runs) < 2:
        _note(notes, f"cross-run variability needs at least 2 runs; found 1 ({runs[0]}): skipped")
    if len(smoothed) < 2:
        return None
    steps = set.intersection(*(set(by_run[r].steps[by_run[r].steps > 0].tolist()) for r in smoothed))
    common = np.log10(np.array(sorted(steps), np.float64))
    if len(smoothed) < len(runs) or any(len(common) != len(by_run[r].x) for r in smoothed):
        _note(notes, f"cross-run variability over runs {smoothed} at their {len(common)} common checkpoints")
    return common


def compute_curve_measures(
    surprisal_by_run: Mapping[str, np.ndarray],
    steps_by_run: Mapping[str, np.ndarray],
    vocab_size: int,
    *,
    chunk_size: int = 8192,
    sigmoid_fit: bool = True,
    progress: bool = False,
    unlearned_percentile: float = UNLEARNED_PERCENTILE,
) -> CurveResults:
    """All Chang et al. token measures (docs/science.md) of every run, in chunks of `chunk_size` tokens (1M x 221 fits
    in memory). surprisal_by_run[run]: [n_checkpoints, n_tokens] bits (memory-mapped is fine), NaN = not scored.
    Measures that need more checkpoints or runs than given are skipped with a note (and a warning)."""
    from tqdm.auto import tqdm

    runs = list(surprisal_by_run)
    if not runs:
        raise InputError("no runs given: pass at least one surprisal matrix")
    n_tokens = {np.shape(surprisal_by_run[r])[1] for r in runs}
    if len(n_tokens) != 1:
        raise InputError(f"runs have different numbers of tokens {sorted(n_tokens)}: score the same evaluation set")
    n_tokens = n_tokens.pop()
    notes: list[str] = []
    by_run = {
        r: _RunCurves.set_up(r, surprisal_by_run[r], np.asarray(steps_by_run[r], np.int64), sigmoid_fit, notes)
        for r in runs
    }  # steps: lists are fine too
    common = _common_log_steps(by_run, notes)
    chance = chance_surprisal(vocab_size)
    measures = {r: {m: np.full(n_tokens, np.nan) for m in MEASURES} for r in runs}
    cross = np.full(n_tokens, np.nan)
    bar = tqdm(total=n_tokens, desc="curves", unit="tok", disable=not progress)
    for c0 in range(0, n_tokens, chunk_size):
        c1 = min(c0 + chunk_size, n_tokens)
        smoothed = {
            r: by_run[r].measure(surprisal_by_run[r][:, c0:c1], c0, measures[r], chance, common, sigmoid_fit, notes)
            for r in runs
        }
        at_common = [v for v in smoothed.values() if v is not None]
        if len(at_common) >= 2:
            cross[c0:c1] = np.mean([np.mean(np.square(a - b), 0) for a, b in itertools.combinations(at_common, 2)], 0)
        bar.update(c1 - c0)
    bar.close()
    for m in measures.values():
        m["unlearned"] = unlearned_mask(m["gam_min"], unlearned_percentile)
    return CurveResults(measures, cross, {r: c.steps for r, c in by_run.items()}, notes)


def partner_ranks(a_TxN: np.ndarray, b_TxN: np.ndarray, block: int = 2048) -> np.ndarray:
    """Chang et al.'s cross-run partner similarity (analysis/run_crossrun_similarity.py, raw curves): for each token
    of run a, how many of run b's curves are closer to it (mean squared difference over the checkpoints) than its own
    curve in run b. 0: its partner is the nearest; (N - 1) / 2: no better than chance. Tokens with a non-finite value
    get -1. [N] int64."""
    a, b = np.asarray(a_TxN, np.float64).T, np.asarray(b_TxN, np.float64).T
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    a, b = a[ok], b[ok]
    bb = np.square(b).sum(1)
    ranks = np.empty(len(a), np.int64)
    for i0 in range(0, len(a), block):
        ai = a[i0 : i0 + block]
        d = np.square(ai).sum(1)[:, None] + bb[None, :] - 2 * ai @ b.T  # squared distances, up to the 1/T factor
        own = d[np.arange(len(ai)), np.arange(i0, i0 + len(ai))]
        ranks[i0 : i0 + block] = (d < own[:, None] - 1e-9 * np.abs(own[:, None])).sum(1)
    out = np.full(len(ok), -1, np.int64)
    out[ok] = ranks
    return out
