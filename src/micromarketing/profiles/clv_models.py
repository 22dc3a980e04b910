"""Buy-till-you-die mathematics: BG/NBD, Pareto/NBD and Gamma-Gamma on sufficient statistics.

This module owns the likelihoods, their maximisation and the closed-form expectations (P(alive),
conditional and unconditional expected purchases, expected spend).  It works on numpy arrays of
*unique* ``(frequency, recency, T)`` triples with a customer count per triple, so a million
customers cost no more than the few hundred thousand distinct triples they collapse to.

Why written here rather than taken from a library: ``lifetimes`` is archived, breaks with
current NumPy/pandas (it refuses the CDNOW summary it ships because of a float comparison),
fits one row per customer with a numerical gradient and often raises ``ConvergenceError``;
``pymc-marketing`` is Bayesian (PyMC/PyTensor), compiles a graph per model and is slow at a
million customers even with MAP.  The models are small closed forms (Fader, Hardie & Lee 2005;
Fader & Hardie 2005, 2013), so we evaluate them in log space with SciPy special functions,
with an analytic gradient for BG/NBD and Gamma-Gamma, and test them against published estimates
and against independent implementations (SciPy closed forms, lifetimes where it imports).

Numerical care: every likelihood is evaluated as a log-sum-exp of log terms; the Gauss
hypergeometric functions are Euler-transformed so that their arguments stay bounded for huge
frequencies; P(alive) is a logistic of a log-odds, so nothing overflows for long tenures.
Terms that depend only on the frequency (lgamma, digamma, log-beta) are computed once per
distinct frequency and gathered, which keeps each likelihood evaluation to a few vector passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from micromarketing.errors import ModelError

FloatArray = NDArray[np.float64]
TransactionModel = Literal["bgnbd", "paretonbd"]

PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "paretonbd": ("r", "alpha", "s", "beta"),
    "gamma_gamma": ("p", "q", "gamma"),
}
# Shape/scale pairs whose mixing distribution degenerates when both grow without bound at a fixed
# ratio (e.g. a, b -> inf with a/(a+b) fixed: every customer has the same dropout probability).
# Along that ridge the likelihood is flat, so convergence is judged across it, not along it.
RIDGE_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    "bgnbd": ((0, 1), (2, 3)),
    "paretonbd": ((0, 1), (2, 3)),
    "gamma_gamma": ((1, 2),),
}
RIDGE_THRESHOLD = 1e4


def _wsum(w: FloatArray, v: FloatArray) -> float:
    """Weighted sum without BLAS: a threaded ``ddot`` stalls under CPU contention (measured 50x)."""
    return float(np.add.reduce(w * v))


# ---------------------------------------------------------------------------------------------
# Sufficient statistics
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Triples:
    """Unique ``(x, t_x, T)`` triples with their customer counts, plus factorised columns.

    ``x`` is the number of repeat purchases, ``t_x`` the time of the last purchase measured from
    the first one, ``T`` the time from the first purchase to the end of observation.
    """

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    weight: FloatArray
    ux: FloatArray = field(repr=False)
    ix: NDArray[np.intp] = field(repr=False)
    uT: FloatArray = field(repr=False)
    iT: NDArray[np.intp] = field(repr=False)
    ut: FloatArray = field(repr=False)
    it: NDArray[np.intp] = field(repr=False)

    @classmethod
    def build(
        cls,
        x: ArrayLike,
        t_x: ArrayLike,
        T: ArrayLike,
        weight: ArrayLike | None = None,
        *,
        collapse: bool = True,
    ) -> Triples:
        """Validate the statistics and (optionally) collapse duplicate triples into counts."""
        xa = np.asarray(x, dtype=np.float64).ravel()
        ta = np.asarray(t_x, dtype=np.float64).ravel()
        Ta = np.asarray(T, dtype=np.float64).ravel()
        wa = np.ones_like(xa) if weight is None else np.asarray(weight, dtype=np.float64).ravel()
        if not (len(xa) == len(ta) == len(Ta) == len(wa)):
            raise ModelError("frequency, recency, T and weight must have the same length")
        if len(xa) == 0:
            raise ModelError("no customers to fit the model on")
        if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ta)) and np.all(np.isfinite(Ta))):
            raise ModelError("frequency, recency and T must be finite")
        if np.any(xa < 0) or np.any(xa != np.floor(xa)):
            raise ModelError("frequency must be a non-negative whole number of repeat purchases")
        if np.any(ta < 0) or np.any(ta > Ta * (1 + 1e-12) + 1e-12):
            raise ModelError("recency must lie between 0 and T")
        if np.any((xa == 0) & (ta != 0)):
            raise ModelError("customers without repeat purchases must have recency 0")
        ta = np.minimum(ta, Ta)
        if collapse:
            # Hash-factorise each column, then the combined code: O(n), unlike np.unique(axis=0).
            cx, ux0 = pd.factorize(xa)
            cT, uT0 = pd.factorize(Ta)
            ct, ut0 = pd.factorize(ta)
            key = (cx.astype(np.int64) * len(uT0) + cT) * len(ut0) + ct
            ck, uk = pd.factorize(key)
            wa = np.bincount(ck, weights=wa, minlength=len(uk))
            rx, rem = np.divmod(uk, len(uT0) * len(ut0))
            rT, rt = np.divmod(rem, len(ut0))
            xa, ta, Ta = ux0[rx], ut0[rt], uT0[rT]
        ix, ux = pd.factorize(xa)
        iT, uT = pd.factorize(Ta)
        it, ut = pd.factorize(ta)
        return cls(
            xa,
            ta,
            Ta,
            wa,
            np.asarray(ux, np.float64),
            ix,
            np.asarray(uT, np.float64),
            iT,
            np.asarray(ut, np.float64),
            it,
        )

    @property
    def n_customers(self) -> int:
        return int(round(float(self.weight.sum())))

    def sample(self, k: int, seed: int = 0) -> Triples:
        """``k`` triples drawn uniformly without replacement, weights scaled so sums stay unbiased."""
        idx = np.sort(np.random.default_rng(seed).choice(len(self.x), size=k, replace=False))
        scale = len(self.x) / k
        return Triples.build(
            self.x[idx], self.t_x[idx], self.T[idx], self.weight[idx] * scale, collapse=False
        )


# ---------------------------------------------------------------------------------------------
# BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way")
# ---------------------------------------------------------------------------------------------
def bgnbd_loglik(params: ArrayLike, d: Triples, *, gradient: bool = False) -> tuple[float, FloatArray | None]:
    """Total BG/NBD log-likelihood (and its gradient in ``(r, alpha, a, b)``) over ``d``."""
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    ux = d.ux
    # Per distinct frequency.
    lbeta_ab = special.betaln(a, b)
    A_x = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha)
    t1_x = special.betaln(a, b + ux) - lbeta_ab
    has_repeat = ux > 0
    bx1 = np.where(has_repeat, b + ux - 1.0, 1.0)
    t2_x = np.where(has_repeat, special.betaln(a + 1.0, bx1) - lbeta_ab, -np.inf)
    # Per distinct T and recency.
    log_aT = np.log(alpha + d.uT)
    log_at = np.log(alpha + d.ut)
    rx = r + d.x
    term1 = t1_x[d.ix] - rx * log_aT[d.iT]
    term2 = t2_x[d.ix] - rx * log_at[d.it]
    lse = np.logaddexp(term1, term2)
    ll_i = A_x[d.ix] + lse
    total = float(_wsum(d.weight, ll_i))
    if not gradient:
        return total, None
    w1 = np.exp(term1 - lse)
    w2 = 1.0 - w1
    w = d.weight
    # d/dr
    dA_r = special.digamma(r + ux) - special.digamma(r) + np.log(alpha)
    g_r = _wsum(w, dA_r[d.ix] - w1 * log_aT[d.iT] - w2 * log_at[d.it])
    # d/dalpha
    g_alpha = _wsum(w, r / alpha - w1 * rx / (alpha + d.T) - w2 * rx / (alpha + d.t_x))
    # d/da, d/db
    psi_ab = special.digamma(a + b)
    psi_abx = special.digamma(a + b + ux)
    psi_b = special.digamma(b)
    d1a_x = psi_ab - psi_abx
    d2a_x = 1.0 / a + psi_ab - psi_abx
    d1b_x = special.digamma(b + ux) - psi_abx - psi_b + psi_ab
    d2b_x = np.where(has_repeat, special.digamma(bx1) - psi_abx - psi_b + psi_ab, 0.0)
    g_a = _wsum(w, w1 * d1a_x[d.ix] + w2 * d2a_x[d.ix])
    g_b = _wsum(w, w1 * d1b_x[d.ix] + w2 * d2b_x[d.ix])
    return total, np.array([g_r, g_alpha, g_a, g_b])


def bgnbd_log_odds_dead(params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """log[P(dead)/P(alive)] under BG/NBD (minus infinity for customers without repeats)."""
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.log(a) - np.log(b + x - 1.0) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(x > 0, lo, -np.inf)


def bgnbd_p_alive(params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(alive | x, t_x, T) under BG/NBD (Fader, Hardie & Lee 2008 note, eq. 2)."""
    return special.expit(-bgnbd_log_odds_dead(params, x, t_x, T))


def bgnbd_expected(params: ArrayLike, t: ArrayLike) -> FloatArray:
    """Unconditional E[X(t)]: expected repeat purchases in (0, t] of a customer acquired at 0."""
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    t = np.asarray(t, dtype=np.float64)
    h = _bgnbd_h(r, alpha, a, b, np.zeros_like(t), np.zeros_like(t), t)
    return (a + b - 1.0) / (a - 1.0) * (1.0 - h)


def _bgnbd_h(
    r: float, alpha: float, a: float, b: float, x: FloatArray, T: FloatArray, t: FloatArray
) -> FloatArray:
    """((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) with z = t/(alpha+T+t).

    Euler's transformation, (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), is the accurate form for
    the usual small a and b.  When the dropout mixing distribution is nearly degenerate (a and b
    in the hundreds of thousands, which the MLE reaches on data with homogeneous dropout),
    (1-z)^(a-1) underflows while the 2F1 overflows; there the untransformed series, whose
    parameters stay balanced, is evaluated instead.
    """
    with np.errstate(all="ignore"):
        z = t / (alpha + T + t)
        h = np.exp((a - 1.0) * np.log1p(-z)) * special.hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
        direct = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * special.hyp2f1(
            r + x, b + x, a + b + x - 1.0, z
        )
    return np.where(np.isfinite(h), h, direct)


def bgnbd_conditional_expected(
    params: ArrayLike, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` (FHL 2005, eq. 10)."""
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    h = _bgnbd_h(r, alpha, a, b, x, T, t)
    numer = (a + b + x - 1.0) / (a - 1.0) * (1.0 - h)
    return numer * bgnbd_p_alive(params, x, t_x, T)


# ---------------------------------------------------------------------------------------------
# Pareto/NBD (Fader & Hardie 2005, "A note on deriving the Pareto/NBD model and related expressions")
# ---------------------------------------------------------------------------------------------
def _pnbd_log_F(r: float, alpha: float, s: float, beta: float, x: FloatArray, t: FloatArray) -> FloatArray:
    """log of 2F1(...)/(max(alpha,beta)+t)^(r+s+x), the antiderivative in the Pareto/NBD A0 term.

    Euler's transformation 2F1(a, b; a+1; z) = (1-z)^(1-b) 2F1(1, a+1-b; a+1; z) keeps the
    hypergeometric factor between 1 and a modest bound however large the frequency is.
    """
    k = r + s + x
    if alpha >= beta:
        m, bb = alpha, s + 1.0
        z = (alpha - beta) / (alpha + t)
    else:
        m, bb = beta, r + x
        z = (beta - alpha) / (beta + t)
    log_1mz = np.log1p(-z)
    return (1.0 - bb) * log_1mz + np.log(special.hyp2f1(1.0, k + 1.0 - bb, k + 1.0, z)) - k * np.log(m + t)


def _pnbd_terms(
    params: ArrayLike, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The two log terms of the Pareto/NBD likelihood (without the common factor)."""
    r, alpha, s, beta = (float(v) for v in np.asarray(params, dtype=np.float64))
    term1 = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    lf_tx = _pnbd_log_F(r, alpha, s, beta, x, t_x)
    lf_T = _pnbd_log_F(r, alpha, s, beta, x, T)
    with np.errstate(divide="ignore"):
        # F is decreasing in t, so F(t_x) >= F(T); log(F(t_x) - F(T)) without cancellation overflow.
        log_a0 = lf_tx + np.log(-np.expm1(np.minimum(lf_T - lf_tx, 0.0)))
    term2 = np.log(s) - np.log(r + s + x) + log_a0
    return term1, term2


def paretonbd_loglik(
    params: ArrayLike, d: Triples, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Total Pareto/NBD log-likelihood over ``d`` (gradient by central differences if asked)."""
    p = np.asarray(params, dtype=np.float64)
    r, alpha, s, beta = (float(v) for v in p)
    A_x = special.gammaln(r + d.ux) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    term1, term2 = _pnbd_terms(p, d.x, d.t_x, d.T)
    total = float(_wsum(d.weight, A_x[d.ix] + np.logaddexp(term1, term2)))
    if not gradient:
        return total, None
    g = np.empty(4)
    for i in range(4):
        h = 1e-6 * max(abs(p[i]), 1e-3)
        up, dn = p.copy(), p.copy()
        up[i] += h
        dn[i] -= h
        g[i] = (paretonbd_loglik(up, d)[0] - paretonbd_loglik(dn, d)[0]) / (2 * h)
    return total, g


def paretonbd_p_alive(params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(alive | x, t_x, T) under Pareto/NBD (Fader & Hardie 2005 note, eq. 18)."""
    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    term1, term2 = _pnbd_terms(params, x, t_x, T)
    return special.expit(term1 - term2)


def paretonbd_expected(params: ArrayLike, t: ArrayLike) -> FloatArray:
    """Unconditional E[X(t)] under Pareto/NBD."""
    r, alpha, s, beta = (float(v) for v in np.asarray(params, dtype=np.float64))
    t = np.asarray(t, dtype=np.float64)
    return r * beta / alpha * _one_minus_pow_over(beta / (beta + t), s - 1.0)


def paretonbd_conditional_expected(
    params: ArrayLike, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T] under Pareto/NBD (Fader & Hardie 2005 note, eq. 21)."""
    r, alpha, s, beta = (float(v) for v in np.asarray(params, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    scale = (r + x) * (beta + T) / (alpha + T)
    return (
        scale
        * _one_minus_pow_over((beta + T) / (beta + T + t), s - 1.0)
        * paretonbd_p_alive(params, x, t_x, T)
    )


def _one_minus_pow_over(q: FloatArray, e: float) -> FloatArray:
    """(1 - q**e) / e, continuous at e = 0 where it equals -log q."""
    lq = np.log(q)
    if abs(e) < 1e-10:
        return -lq
    return -np.expm1(e * lq) / e


# ---------------------------------------------------------------------------------------------
# Gamma-Gamma spend model (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value")
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpendData:
    """Repeat-purchase counts ``x`` (> 0) and mean repeat spend ``m`` (> 0) with weights."""

    x: FloatArray
    m: FloatArray
    weight: FloatArray

    @classmethod
    def build(cls, x: ArrayLike, m: ArrayLike, weight: ArrayLike | None = None) -> SpendData:
        xa = np.asarray(x, dtype=np.float64).ravel()
        ma = np.asarray(m, dtype=np.float64).ravel()
        wa = np.ones_like(xa) if weight is None else np.asarray(weight, dtype=np.float64).ravel()
        keep = (xa > 0) & np.isfinite(ma) & (ma > 0)
        if not np.any(keep):
            raise ModelError("no customer with a repeat purchase of positive value to fit the spend model on")
        return cls(xa[keep], ma[keep], wa[keep])


def gamma_gamma_loglik(
    params: ArrayLike, d: SpendData, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Total Gamma-Gamma log-likelihood of the mean repeat spends (and gradient in p, q, gamma)."""
    p, q, g = (float(v) for v in np.asarray(params, dtype=np.float64))
    x, m, w = d.x, d.m, d.weight
    px = p * x
    log_gxm = np.log(g + x * m)
    ll_i = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(g)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_gxm
    )
    total = float(_wsum(w, ll_i))
    if not gradient:
        return total, None
    psi_pxq = special.digamma(px + q)
    g_p = _wsum(w, x * (psi_pxq - special.digamma(px) + np.log(m) + np.log(x) - log_gxm))
    g_q = _wsum(w, psi_pxq - special.digamma(q) + np.log(g) - log_gxm)
    g_g = _wsum(w, q / g - (px + q) / (g + x * m))
    return total, np.array([g_p, g_q, g_g])


def gamma_gamma_expected_spend(params: ArrayLike, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """E[M | x, m]: expected mean spend per purchase; the population mean where x = 0."""
    p, q, g = (float(v) for v in np.asarray(params, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    m = np.nan_to_num(np.asarray(m, dtype=np.float64), nan=0.0)
    return p * (g + x * m) / (p * x + q - 1.0)


# ---------------------------------------------------------------------------------------------
# Maximum likelihood
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitResult:
    """Maximum-likelihood estimates with standard errors and the optimiser's verdict."""

    model: str
    params: dict[str, float]
    std_errors: dict[str, float]
    loglik: float
    converged: bool
    iterations: int
    message: str
    n_customers: int

    @property
    def vector(self) -> FloatArray:
        return np.array([self.params[k] for k in PARAM_NAMES[self.model]])


LogLik = Callable[..., tuple[float, FloatArray | None]]


def _across_ridges(model: str, params: FloatArray, grad: FloatArray) -> FloatArray:
    """The log-parameter gradient with each degenerate pair reduced to its across-ridge component.

    For a pair (i, j) with both parameters above :data:`RIDGE_THRESHOLD`, moving both log-values
    together leaves the likelihood (almost) unchanged, so only ``(g_i - g_j) / sqrt(2)`` counts.
    """
    grad = np.asarray(grad, dtype=np.float64).copy()
    for i, j in RIDGE_PAIRS.get(model, ()):
        if params[i] > RIDGE_THRESHOLD and params[j] > RIDGE_THRESHOLD:
            grad[i], grad[j] = (grad[i] - grad[j]) / np.sqrt(2.0), 0.0
    return grad


def _maximise(
    model: str,
    loglik: LogLik,
    data: object,
    start: FloatArray,
    n_customers: int,
    weight_total: float,
    *,
    analytic_gradient: bool = True,
    warm_start: object | None = None,
) -> FitResult:
    """Maximise ``loglik`` over log-parameters with L-BFGS-B; never raises on non-convergence.

    ``warm_start`` (a subsample of ``data``) is fitted first, so the full data only see the last
    few iterations.  Convergence means a scaled gradient below 1e-5 at the returned point.
    """

    def make_objective(d: object, total: float) -> Callable[[FloatArray], tuple[float, FloatArray]]:
        scale = 1.0 / max(total, 1.0)

        def objective(theta: FloatArray) -> tuple[float, FloatArray]:
            p = np.exp(theta)
            with np.errstate(all="ignore"):
                ll, g = loglik(p, d, gradient=True)
            if not np.isfinite(ll) or g is None or not np.all(np.isfinite(g)):
                return 1e300, np.zeros_like(theta)
            return -ll * scale, -g * p * scale

        return objective

    bounds = [(-18.0, 18.0)] * len(start)
    opts = {"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-8, "maxcor": 20}
    theta0 = np.log(start)
    iterations = 0
    objective = make_objective(data, weight_total)
    theta: FloatArray | None = None
    message = ""
    if warm_start is not None:
        warm_obj = make_objective(warm_start, weight_total)
        pre = optimize.minimize(
            warm_obj, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options={**opts, "gtol": 1e-9}
        )
        if np.isfinite(pre.fun) and pre.fun < 1e299:
            theta0, iterations = pre.x, int(pre.nit)
            if analytic_gradient:
                # Newton steps on the full data with the subsample's curvature: a few gradient passes.
                H = _hessian_from_gradient(warm_obj, pre.x, warm_obj(pre.x)[1])
                theta, steps = _newton(objective, pre.x, H)
                iterations += steps
    if theta is None:
        res = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        iterations += int(res.nit)
        theta, message = res.x, str(res.message)
    final_f, final_g = objective(theta)
    if not (np.isfinite(final_f) and float(np.max(np.abs(final_g))) < 1e-6):
        # Polish with BFGS (fixes early line-search stops near the optimum).
        res2 = optimize.minimize(
            objective, theta, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 200}
        )
        if np.isfinite(res2.fun) and res2.fun <= final_f:
            theta, iterations = res2.x, iterations + int(res2.nit)
            final_f, final_g = objective(theta)
            message = str(res2.message)
    params = np.exp(theta)
    grad_norm = float(np.max(np.abs(_across_ridges(model, params, final_g))))
    converged = bool(np.isfinite(final_f) and final_f < 1e299 and grad_norm < 1e-5)
    ll = -final_f * max(weight_total, 1.0)
    if analytic_gradient:
        se = _standard_errors_from_gradient(objective, theta, final_g, weight_total)
    else:
        se = _standard_errors(loglik, data, theta)
    names = PARAM_NAMES[model]
    return FitResult(
        model=model,
        params={k: float(v) for k, v in zip(names, params, strict=True)},
        std_errors={k: float(v) for k, v in zip(names, se, strict=True)},
        loglik=float(ll),
        converged=converged,
        iterations=iterations,
        message="converged" if converged else (message or "gradient not small at the optimum"),
        n_customers=n_customers,
    )


def _hessian_from_gradient(
    objective: Callable[[FloatArray], tuple[float, FloatArray]], theta: FloatArray, g0: FloatArray
) -> FloatArray:
    """Forward-difference Hessian of a (scaled) objective from its analytic gradient, symmetrised."""
    k = len(theta)
    H = np.empty((k, k))
    for i in range(k):
        h = 1e-5 * max(1.0, abs(theta[i]))
        th = theta.copy()
        th[i] += h
        H[i] = (objective(th)[1] - g0) / h
    return 0.5 * (H + H.T)


def _newton(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    theta: FloatArray,
    H: FloatArray,
    max_steps: int = 12,
) -> tuple[FloatArray | None, int]:
    """Quasi-Newton iterations with a fixed Hessian and step halving; None if they do not converge."""
    try:
        H_inv = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None, 0
    if not np.all(np.linalg.eigvalsh(H) > 0):
        return None, 0
    f, g = objective(theta)
    for step in range(1, max_steps + 1):
        direction = -H_inv @ g
        t = 1.0
        while t > 1e-4:
            cand = theta + t * direction
            f_new, g_new = objective(cand)
            if np.isfinite(f_new) and f_new <= f + 1e-4 * t * float(g @ direction):
                break
            t *= 0.5
        else:
            return None, step
        theta, f, g = cand, f_new, g_new
        if float(np.max(np.abs(g))) < 1e-9:
            return theta, step
    return None, max_steps


def _standard_errors_from_gradient(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    theta: FloatArray,
    g0: FloatArray,
    total: float,
) -> FloatArray:
    """Standard errors from a forward-difference Hessian of the analytic gradient (log space)."""
    H = _hessian_from_gradient(objective, theta, g0) * max(total, 1.0)
    return _se_from_information(H, theta)


def _se_from_information(info: FloatArray, theta: FloatArray) -> FloatArray:
    try:
        var_log = np.diag(np.linalg.inv(info))
    except np.linalg.LinAlgError:
        return np.full(len(theta), np.nan)
    with np.errstate(invalid="ignore"):
        return np.exp(theta) * np.sqrt(np.where(var_log > 0, var_log, np.nan))  # delta method


def _standard_errors(loglik: LogLik, data: object, theta: FloatArray) -> FloatArray:
    """Standard errors from the observed information (Hessian of the value by central differences)."""
    k = len(theta)
    h = 1e-4

    def f(th: FloatArray) -> float:
        with np.errstate(all="ignore"):
            return float(loglik(np.exp(th), data)[0])

    f0 = f(theta)
    H = np.empty((k, k))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h
        H[i, i] = (f(theta + ei) - 2 * f0 + f(theta - ei)) / h**2
        for j in range(i + 1, k):
            ej = np.zeros(k)
            ej[j] = h
            H[i, j] = H[j, i] = (
                f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)
            ) / (4 * h * h)
    return _se_from_information(-H, theta)


WARM_START_TRIPLES = 40_000


def fit_transactions(model: TransactionModel, d: Triples) -> FitResult:
    """Fit BG/NBD or Pareto/NBD to the triples by maximum likelihood."""
    mean_T = float(np.average(d.T, weights=d.weight)) or 1.0
    mean_x = float(np.average(d.x, weights=d.weight))
    if mean_x <= 0:
        raise ModelError("no customer has a repeat purchase: the transaction model cannot be fitted")
    if model == "bgnbd":
        start = np.array([1.0, max(mean_T / max(mean_x, 1e-3), 1e-3), 1.0, 1.0])
        warm = d.sample(WARM_START_TRIPLES // 2) if len(d.x) > WARM_START_TRIPLES else None
        return _maximise(model, bgnbd_loglik, d, start, d.n_customers, float(d.weight.sum()), warm_start=warm)
    if model == "paretonbd":
        rate_start = max(mean_T / max(mean_x, 1e-3), 1e-3)
        start = np.array([1.0, rate_start, 1.0, max(mean_T, 1e-3)])
        warm = d.sample(WARM_START_TRIPLES // 4) if len(d.x) > WARM_START_TRIPLES // 2 else None
        return _maximise(
            model,
            paretonbd_loglik,
            d,
            start,
            d.n_customers,
            float(d.weight.sum()),
            analytic_gradient=False,
            warm_start=warm,
        )
    raise ModelError(f"unknown transaction model {model!r} (use 'bgnbd' or 'paretonbd')")


def fit_gamma_gamma(d: SpendData) -> FitResult:
    """Fit the Gamma-Gamma spend model to repeat customers' mean spends."""
    mean_m = float(np.average(d.m, weights=d.weight))
    start = np.array([1.0, 2.0, max(mean_m, 1e-3)])
    n = int(round(float(d.weight.sum())))
    return _maximise("gamma_gamma", gamma_gamma_loglik, d, start, n, float(d.weight.sum()))


def p_alive(model: str, params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(alive) for either transaction model."""
    if model == "bgnbd":
        return bgnbd_p_alive(params, x, t_x, T)
    return paretonbd_p_alive(params, x, t_x, T)


def conditional_expected(
    model: str, params: ArrayLike, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T] for either transaction model."""
    if model == "bgnbd":
        return bgnbd_conditional_expected(params, t, x, t_x, T)
    return paretonbd_conditional_expected(params, t, x, t_x, T)


def unconditional_expected(model: str, params: ArrayLike, t: ArrayLike) -> FloatArray:
    """E[X(t)] for either transaction model."""
    if model == "bgnbd":
        return bgnbd_expected(params, t)
    return paretonbd_expected(params, t)


def discounted_expected_purchases(
    model: str,
    params: ArrayLike,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    months: int,
    unit_days: float,
    annual_discount_rate: float,
) -> FloatArray:
    """Σ over months i of E[purchases in month i] / (1 + d_month)^i, the CLV purchase stream."""
    x = np.asarray(x, dtype=np.float64)
    month_units = 365.25 / 12.0 / unit_days
    monthly = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    total = np.zeros_like(x)
    prev = np.zeros_like(x)
    for i in range(1, months + 1):
        cum = conditional_expected(model, params, i * month_units, x, t_x, T)
        total += (cum - prev) / (1.0 + monthly) ** i
        prev = cum
    return total
