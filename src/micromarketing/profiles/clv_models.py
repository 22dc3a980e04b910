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
with analytic gradients, and test them against published estimates
and against independent implementations (SciPy closed forms, lifetimes where it imports).

Fits that give the same answer on every CPU
-------------------------------------------
* BG/NBD is fitted in its mean/concentration form: ``phi = a/(a+b)`` (mean dropout probability)
  and ``eps = 1/(a+b)`` (inverse concentration), so the ridge ``a, b -> inf`` of homogeneous
  dropout is the ordinary boundary ``eps = 0`` instead of a direction without end.  The Beta
  ratios are products of ``(b+k)/(a+b+k) = 1 - phi/(1+k*eps)`` summed as ``log1p`` terms, exact
  at any concentration (``betaln`` differences lose ~3e-7 at a+b = 7e7).
* The limit model (``eps = 0``: one dropout probability ``p_dropout`` for everybody, see
  :data:`BGNBD_HOMOGENEOUS`) is fitted explicitly and reported as such when the optimum lies on
  that boundary; a limit parameter has no standard error because it is not estimated.
* Pareto/NBD likewise: ``mu_bar = s/beta`` and ``eps = 1/s``; its limit is one exponential
  dropout rate ``dropout_rate`` for everybody.  Its dropout integral is Gauss-Legendre
  quadrature (see the Pareto/NBD section), which costs the same at every parameter value.
* Gamma-Gamma: ``scale = p*gamma`` and ``eps = 1/p``; its limit (:data:`CONSTANT_SPEND`) has
  every customer's transactions worth that customer's mean, the means inverse-gamma with shape
  ``q`` and scale ``scale``.  Its ``lgamma`` differences use Stirling's series at large ``p x``.
  Its other ridge, ``q, gamma -> inf`` with ``nu = q/gamma`` fixed (customers do not differ in
  expected spend, :data:`HOMOGENEOUS_SPEND`: ``p, mean_spend = p/nu``), is the boundary
  ``delta = 1/q = 0`` of a second parametrisation, searched beside the first (whose form loses
  the likelihood's last digits at large q, where the second stays exact).
* All three go through one procedure, :func:`_fit_with_limit`.
* A global search (bounded L-BFGS-B from several starts) only brings the parameters near the
  optimum; the answer is the end point of Newton iterations in plain numpy and Python floats
  (Hessian by central differences of the gradient, linear solves written out), so no BLAS kernel
  decides where the fit ends.  Convergence is the projected gradient and the last change of the
  log-likelihood being small, never the optimiser's message.  Sums are ``np.add.reduce``
  (pairwise, no BLAS): a threaded ``ddot`` also stalls under CPU contention (measured 50x).

Numerical care: every likelihood is evaluated as a log-sum-exp of log terms; the Gauss
hypergeometric functions are Euler-transformed so that their arguments stay bounded for huge
frequencies; P(alive) is a logistic of a log-odds, so nothing overflows for long tenures.
Terms that depend only on the frequency (lgamma, digamma, the Beta ratios) are computed once
per distinct frequency and gathered, which keeps each likelihood evaluation to a few vector passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from micromarketing.errors import ModelError

FloatArray = NDArray[np.float64]
TransactionModelName = Literal["bgnbd", "paretonbd"]
TRANSACTION_MODEL_NAMES: tuple[str, ...] = ("bgnbd", "paretonbd")

PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "paretonbd": ("r", "alpha", "s", "beta"),
    "gamma_gamma": ("p", "q", "gamma"),
}
HOMOGENEOUS_DROPOUT = "homogeneous_dropout"
"""The ``limit`` of a BG/NBD fit whose dropout heterogeneity vanished (a, b -> inf)."""

# Convergence: the gradient of the mean log-likelihood per customer (in the fitting coordinates)
# and the relative change of the log-likelihood over the last Newton step.
GRADIENT_TOLERANCE = 1e-6
LOGLIK_CHANGE_TOLERANCE = 1e-10


def _wsum(w: FloatArray, v: FloatArray) -> float:
    """Weighted sum without BLAS (pairwise summation, the same on every CPU)."""
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
    # Distinct (x, t_x) and (x, T) pairs: the Pareto/NBD hypergeometric terms depend on one each.
    pair_xt: tuple[NDArray[np.intp], FloatArray, FloatArray] = field(repr=False, default=None)  # type: ignore[assignment]
    pair_xT: tuple[NDArray[np.intp], FloatArray, FloatArray] = field(repr=False, default=None)  # type: ignore[assignment]

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

        def pairs(
            other: NDArray[np.intp], values: FloatArray
        ) -> tuple[NDArray[np.intp], FloatArray, FloatArray]:
            key = ix.astype(np.int64) * len(values) + other
            _, where, codes = np.unique(key, return_index=True, return_inverse=True)
            return codes.ravel(), xa[where], values[other[where]]

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
            pairs(it, np.asarray(ut, np.float64)),
            pairs(iT, np.asarray(uT, np.float64)),
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
def _beta_ratio_logs(
    phi: float, eps: float, n_max: int, *, gradient: bool
) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """Cumulative ``S(n) = log B(a, b+n)/B(a, b)`` for n = 0..n_max, exactly, with dS/dphi, dS/deps.

    ``B(a, b+n)/B(a, b) = prod_{k<n} (b+k)/(a+b+k)`` and each factor is ``1 - u_k`` with
    ``u_k = phi / (1 + k*eps)``, so S is a sum of ``log1p(-u_k)``: no cancellation at any a+b.
    """
    k = np.arange(n_max, dtype=np.float64)
    denom = 1.0 + k * eps
    u = phi / denom
    terms = np.log1p(-u)
    S = np.concatenate([[0.0], np.cumsum(terms)])
    if not gradient:
        return S, None, None
    inv = 1.0 / (1.0 - u)
    dphi = np.concatenate([[0.0], np.cumsum(-inv / denom)])
    deps = np.concatenate([[0.0], np.cumsum(inv * u * k / denom)])
    return S, dphi, deps


def bgnbd_loglik_mean_form(
    r: float, alpha: float, phi: float, eps: float, d: Triples, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """BG/NBD log-likelihood in ``(r, alpha, phi, eps)``; ``eps = 0`` is the homogeneous-dropout limit.

    The gradient is with respect to ``(r, alpha, phi, eps)``.
    """
    ux = d.ux
    n_max = int(ux.max())
    S, dS_phi, dS_eps = _beta_ratio_logs(phi, eps, n_max, gradient=gradient)
    xi = ux.astype(np.int64)
    has_repeat = ux > 0
    xm1 = np.maximum(xi - 1, 0)
    # log B(a, b+x)/B(a, b) and log B(a+1, b+x-1)/B(a, b) = log(a/(a+b+x-1)) + S(x-1).
    t1_x = S[xi]
    lead = 1.0 + xm1 * eps
    t2_x = np.where(has_repeat, np.log(phi) - np.log(lead) + S[xm1], -np.inf)
    A_x = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha)
    log_aT = np.log(alpha + d.uT)
    log_at = np.log(alpha + d.ut)
    rx = r + d.x
    term1 = t1_x[d.ix] - rx * log_aT[d.iT]
    term2 = t2_x[d.ix] - rx * log_at[d.it]
    lse = np.logaddexp(term1, term2)
    total = _wsum(d.weight, A_x[d.ix] + lse)
    if not gradient:
        return total, None
    assert dS_phi is not None and dS_eps is not None
    w1 = np.exp(term1 - lse)
    w2 = 1.0 - w1
    w = d.weight
    dA_r = special.digamma(r + ux) - special.digamma(r) + np.log(alpha)
    g_r = _wsum(w, dA_r[d.ix] - w1 * log_aT[d.iT] - w2 * log_at[d.it])
    g_alpha = _wsum(w, r / alpha - w1 * rx / (alpha + d.T) - w2 * rx / (alpha + d.t_x))
    d1_phi, d1_eps = dS_phi[xi], dS_eps[xi]
    d2_phi = np.where(has_repeat, 1.0 / phi + dS_phi[xm1], 0.0)
    d2_eps = np.where(has_repeat, -xm1 / lead + dS_eps[xm1], 0.0)
    g_phi = _wsum(w, w1 * d1_phi[d.ix] + w2 * d2_phi[d.ix])
    g_eps = _wsum(w, w1 * d1_eps[d.ix] + w2 * d2_eps[d.ix])
    return total, np.array([g_r, g_alpha, g_phi, g_eps])


def _bgnbd_mean_form(params: ArrayLike) -> tuple[float, float, float, float]:
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    return r, alpha, a / (a + b), 1.0 / (a + b)


def bgnbd_loglik(params: ArrayLike, d: Triples, *, gradient: bool = False) -> tuple[float, FloatArray | None]:
    """Total BG/NBD log-likelihood (and its gradient in ``(r, alpha, a, b)``) over ``d``."""
    r, alpha, phi, eps = _bgnbd_mean_form(params)
    total, g = bgnbd_loglik_mean_form(r, alpha, phi, eps, d, gradient=gradient)
    if g is None:
        return total, None
    kappa2 = 1.0 / (eps * eps)  # (a+b)^2
    a, b = phi / eps, (1.0 - phi) / eps
    g_a = (g[2] * b - g[3]) / kappa2
    g_b = (-g[2] * a - g[3]) / kappa2
    return total, np.array([g[0], g[1], g_a, g_b])


def bgnbd_homogeneous_loglik(
    params: ArrayLike, d: Triples, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Log-likelihood of the limit model ``(r, alpha, p_dropout)`` (gradient in those three)."""
    r, alpha, p = (float(v) for v in np.asarray(params, dtype=np.float64))
    total, g = bgnbd_loglik_mean_form(r, alpha, p, 0.0, d, gradient=gradient)
    return total, None if g is None else g[:3]


def bgnbd_log_odds_dead(params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """log[P(dead)/P(alive)] under BG/NBD (minus infinity for customers without repeats)."""
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    return _log_odds_dead(r, alpha, np.log(a) - np.log(b + np.asarray(x, np.float64) - 1.0), x, t_x, T)


def _log_odds_dead(
    r: float, alpha: float, log_ratio: FloatArray | float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """``log_ratio + (r+x) log((alpha+T)/(alpha+t_x))`` for repeaters, minus infinity otherwise."""
    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = log_ratio + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
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
    in the hundreds of thousands), (1-z)^(a-1) underflows while the 2F1 overflows; there the
    untransformed series, whose parameters stay balanced, is evaluated instead.
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


# The homogeneous-dropout limit: every customer drops out with probability p after each repeat
# purchase.  An alive customer with rate lambda makes (1 - exp(-lambda p t)) / p purchases in the
# next t (FHL 2005, eq. 7), and lambda | alive, x, T ~ Gamma(r + x, alpha + T).
def bgnbd_homogeneous_p_alive(params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(alive | x, t_x, T) when every customer has the dropout probability ``p_dropout``."""
    r, alpha, p = (float(v) for v in np.asarray(params, dtype=np.float64))
    return special.expit(-_log_odds_dead(r, alpha, math.log(p) - math.log1p(-p), x, t_x, T))


def bgnbd_homogeneous_expected(params: ArrayLike, t: ArrayLike) -> FloatArray:
    """Unconditional E[X(t)] of the limit model: (1 - (alpha/(alpha + p t))^r) / p."""
    r, alpha, p = (float(v) for v in np.asarray(params, dtype=np.float64))
    t = np.asarray(t, dtype=np.float64)
    return -np.expm1(-r * np.log1p(p * t / alpha)) / p


def bgnbd_homogeneous_conditional_expected(
    params: ArrayLike, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T] of the limit model."""
    r, alpha, p = (float(v) for v in np.asarray(params, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    alive_mean = -np.expm1(-(r + x) * np.log1p(p * t / (alpha + T))) / p
    return alive_mean * bgnbd_homogeneous_p_alive(params, x, t_x, T)


# ---------------------------------------------------------------------------------------------
# Pareto/NBD (Fader & Hardie 2005, "A note on deriving the Pareto/NBD model and related expressions")
# ---------------------------------------------------------------------------------------------
# The dropout rate mu ~ gamma(s, beta) is written by its mean and inverse concentration,
# mu_bar = s / beta and eps = 1 / s, so the ridge s, beta -> inf (one dropout rate for everybody)
# is the boundary eps = 0.  The likelihood's integral over the dropout time,
#     int_{t_x}^{T} (alpha + tau)^-(r+x) mu_bar (1 + mu_bar eps tau)^-(1/eps + 1) d tau,
# is evaluated by Gauss-Legendre quadrature in v = log(min(alpha, beta) + tau), where the
# integrand is analytic with its nearest singularity pi off the real axis: 16 nodes reach
# rounding level, on a window that ends where the integrand has fallen by e^-50.  Unlike the
# hypergeometric closed form it costs the same at every parameter value (scipy's hyp2f1 took
# seconds per call near the ridge) and has a cheap analytic gradient.  Tested per customer
# against the closed form with scipy's hyp2f1, on both sides of alpha = beta.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_GL_LOG_WEIGHTS = np.log(_GL_WEIGHTS)
_QUADRATURE_DROP = 50.0
_PNBD_CHUNK = 20_000  # triples per quadrature block (16 nodes each), to bound memory


def _log1p_over_eps(
    y: FloatArray, eps: float, mu_t: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray | float]:
    """``log1p(y)/eps`` with ``y = mu eps t``, its eps-derivative, and ``log1p(y)`` (``mu t``, ... at 0)."""
    if eps == 0.0:
        return mu_t, -0.5 * mu_t * mu_t, 0.0
    l1y = np.log1p(y)
    return l1y / eps, -(_log1p_minus_identity(y, l1y) + y * y / (1.0 + y)) / (eps * eps), l1y


def _pnbd_log_terms(
    r: float, alpha: float, mu: float, eps: float, x: FloatArray, t_x: FloatArray, T: FloatArray,
    *, gradient: bool,
) -> tuple[FloatArray, FloatArray, FloatArray | None, FloatArray | None]:  # fmt: skip
    """log of the "alive at T" and "dropped out in (t_x, T]" terms, and their gradients (4 x n).

    Both leave out the common factor Gamma(r+x) alpha^r / Gamma(r); gradients are with respect
    to ``(r, alpha, mu_bar, eps)``.
    """
    k = r + x
    log_aT = np.log(alpha + T)
    drop_T, drop_T_eps, _ = _log1p_over_eps(mu * eps * T, eps, mu * T)
    term1 = -k * log_aT - drop_T
    # Quadrature in v = log(c + tau) with c = min(alpha, beta): the integrand's singularities
    # (tau = -alpha, tau = -beta) then sit at v = -inf and pi off the real axis.  The window runs
    # from t_x to T or to where the integrand fell by e^-50: the log-integrand falls at the rate
    # k (c+tau)/(alpha+tau) + (1+eps) mu (c+tau)/(1 + mu eps tau) - 1, increasing in tau, so at
    # least at its rate D at t_x.
    c = alpha if mu * eps * alpha <= 1.0 else 1.0 / (mu * eps)
    base = c + t_x
    span = np.log(c + T) - np.log(base)
    D = k * base / (alpha + t_x) + (1.0 + eps) * mu * base / (1.0 + mu * eps * t_x) - 1.0
    with np.errstate(divide="ignore"):
        span = np.where(D > 0, np.minimum(span, _QUADRATURE_DROP / np.where(D > 0, D, 1.0)), span)
    s = span[:, None] * (0.5 * (_GL_NODES + 1.0))[None, :]
    tau = t_x[:, None] + base[:, None] * np.expm1(s)
    log_a_tau = np.log(alpha + tau)
    mu_tau = mu * tau
    y = eps * mu_tau
    drop, drop_eps, l1y = _log1p_over_eps(y, eps, mu_tau)
    with np.errstate(divide="ignore"):
        log_width = math.log(mu) + np.log(0.5 * span * base)
        log_g = s - k[:, None] * log_a_tau - (drop + l1y) + log_width[:, None] + _GL_LOG_WEIGHTS
    term2 = special.logsumexp(log_g, axis=1)
    if not gradient:
        return term1, term2, None, None
    d1 = np.stack([-log_aT, -k / (alpha + T), -T / (1.0 + mu * eps * T), -drop_T_eps])
    with np.errstate(invalid="ignore"):
        pi = np.exp(log_g - term2[:, None])
    pi = np.where(np.isfinite(pi), pi, 0.0)
    one_y = 1.0 + y
    d_mu = 1.0 / mu - (1.0 + eps) * tau / one_y
    d_eps = -drop_eps - mu_tau / one_y
    d2 = np.stack(
        [
            np.add.reduce(pi * -log_a_tau, axis=1),
            np.add.reduce(pi * (-k[:, None] / (alpha + tau)), axis=1),
            np.add.reduce(pi * d_mu, axis=1),
            np.add.reduce(pi * d_eps, axis=1),
        ]
    )
    return term1, term2, d1, d2


def paretonbd_loglik_mean_form(
    r: float, alpha: float, mu: float, eps: float, d: Triples, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Pareto/NBD log-likelihood in ``(r, alpha, mu_bar = s/beta, eps = 1/s)``; ``eps = 0`` is the limit."""
    A_x = special.gammaln(r + d.ux) - special.gammaln(r) + r * math.log(alpha)
    total = 0.0
    grad = np.zeros(4)
    dA_r = special.digamma(r + d.ux) - special.digamma(r) + math.log(alpha) if gradient else None
    for lo in range(0, len(d.x), _PNBD_CHUNK):
        sl = slice(lo, lo + _PNBD_CHUNK)
        w, ix = d.weight[sl], d.ix[sl]
        t1, t2, d1, d2 = _pnbd_log_terms(r, alpha, mu, eps, d.x[sl], d.t_x[sl], d.T[sl], gradient=gradient)
        lse = np.logaddexp(t1, t2)
        total += _wsum(w, A_x[ix] + lse)
        if gradient:
            assert d1 is not None and d2 is not None and dA_r is not None
            p1 = np.exp(t1 - lse)
            mix = p1 * d1 + (1.0 - p1) * d2
            grad += np.array(
                [
                    _wsum(w, dA_r[ix] + mix[0]),
                    _wsum(w, r / alpha + mix[1]),
                    _wsum(w, mix[2]),
                    _wsum(w, mix[3]),
                ]
            )
    return total, grad if gradient else None


def _paretonbd_mean_form(params: ArrayLike) -> tuple[float, float, float, float]:
    r, alpha, s, beta = (float(v) for v in np.asarray(params, dtype=np.float64))
    return r, alpha, s / beta, 1.0 / s


def paretonbd_loglik(
    params: ArrayLike, d: Triples, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Total Pareto/NBD log-likelihood over ``d`` (and its gradient in ``(r, alpha, s, beta)``)."""
    r, alpha, mu, eps = _paretonbd_mean_form(params)
    total, g = paretonbd_loglik_mean_form(r, alpha, mu, eps, d, gradient=gradient)
    if g is None:
        return total, None
    s, beta = 1.0 / eps, 1.0 / (mu * eps)
    # mu = s / beta, eps = 1 / s
    g_s = g[2] / beta - g[3] / (s * s)
    g_beta = -g[2] * s / (beta * beta)
    return total, np.array([g[0], g[1], g_s, g_beta])


def paretonbd_homogeneous_loglik(
    params: ArrayLike, d: Triples, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Log-likelihood of the limit model ``(r, alpha, dropout_rate)`` (gradient in those three)."""
    r, alpha, mu = (float(v) for v in np.asarray(params, dtype=np.float64))
    total, g = paretonbd_loglik_mean_form(r, alpha, mu, 0.0, d, gradient=gradient)
    return total, None if g is None else g[:3]


def _pnbd_p_alive(
    r: float, alpha: float, mu: float, eps: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    x, t_x, T = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x, t_x, T))
    x, t_x, T = np.broadcast_arrays(x, t_x, T)
    term1, term2, _, _ = _pnbd_log_terms(r, alpha, mu, eps, x.ravel(), t_x.ravel(), T.ravel(), gradient=False)
    return special.expit(term1 - term2).reshape(x.shape)


def paretonbd_p_alive(params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(alive | x, t_x, T) under Pareto/NBD (Fader & Hardie 2005 note, eq. 18)."""
    return _pnbd_p_alive(*_paretonbd_mean_form(params), x, t_x, T)


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


# The homogeneous-dropout limit: every customer's lifetime is exponential with the same rate
# mu (s, beta -> inf with s/beta = mu).  An alive customer with rate lambda makes
# lambda (1 - exp(-mu t)) / mu purchases in the next t, and lambda | alive ~ Gamma(r + x, alpha + T).
def paretonbd_homogeneous_p_alive(
    params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """P(alive | x, t_x, T) when every customer drops out at the rate ``dropout_rate``."""
    r, alpha, mu = (float(v) for v in np.asarray(params, dtype=np.float64))
    return _pnbd_p_alive(r, alpha, mu, 0.0, x, t_x, T)


def paretonbd_homogeneous_expected(params: ArrayLike, t: ArrayLike) -> FloatArray:
    """Unconditional E[X(t)] of the limit model: r/alpha (1 - exp(-mu t)) / mu."""
    r, alpha, mu = (float(v) for v in np.asarray(params, dtype=np.float64))
    return r / alpha * -np.expm1(-mu * np.asarray(t, dtype=np.float64)) / mu


def paretonbd_homogeneous_conditional_expected(
    params: ArrayLike, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T] of the limit model."""
    r, alpha, mu = (float(v) for v in np.asarray(params, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    alive_mean = (r + x) / (alpha + T) * -np.expm1(-mu * t) / mu
    return alive_mean * paretonbd_homogeneous_p_alive(params, x, t_x, T)


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


CONSTANT_SPEND = "constant_customer_spend"
"""The ``limit`` of a Gamma-Gamma fit whose within-customer spread vanished (p -> inf, p*gamma fixed).

Every transaction of a customer is then worth the customer's mean ``theta``, and the means
follow an inverse gamma distribution with shape ``q`` and scale ``scale`` (the limit of p*gamma).
"""
HOMOGENEOUS_SPEND = "homogeneous_customer_spend"
"""The ``limit`` of a Gamma-Gamma fit whose spread between customers vanished (q -> inf, q/gamma fixed).

Every customer then has the same expected spend per transaction ``mean_spend = p / nu``: each
transaction is gamma(p, rate nu), the same for everybody, so a customer's own mean says nothing
about the next purchase and the expected spend is ``mean_spend`` for all.
"""
SPEND_PARAM_NAMES: dict[str | None, tuple[str, ...]] = {
    None: PARAM_NAMES["gamma_gamma"],
    CONSTANT_SPEND: ("q", "scale"),
    HOMOGENEOUS_SPEND: ("p", "mean_spend"),
}
_STIRLING_FROM = 32.0  # n >= this: lgamma differences by Stirling's series (error < 1e-19)


def _log1p_minus_identity(y: FloatArray, log1p_y: FloatArray | None = None) -> FloatArray:
    """``log1p(y) - y`` without cancellation for small ``y`` (Taylor series below 0.01)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = np.asarray((np.log1p(y) if log1p_y is None else log1p_y) - y, dtype=np.float64)
    small = np.abs(y) < 0.01
    if np.any(small):
        ys = y[small]
        series = np.zeros_like(ys)
        for k in range(10, 1, -1):  # Horner: y^2 * sum_{k=2}^{10} (-1)^(k+1) y^(k-2) / k
            series = series * ys + (-1.0) ** (k + 1) / k
        out[small] = ys * ys * series
    return out


def _stirling_tail(z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``lgamma(z) - [(z - 1/2) log z - z + log(2 pi)/2]`` and its derivative, for z >= 32."""
    iz = 1.0 / z
    iz2 = iz * iz
    s = iz * (1 / 12 - iz2 * (1 / 360 - iz2 * (1 / 1260 - iz2 * (1 / 1680 - iz2 / 1188))))
    ds = -iz2 * (1 / 12 - iz2 * (1 / 120 - iz2 * (1 / 252 - iz2 * (1 / 240 - iz2 / 132))))
    return s, ds


def _lgamma_excess(n: FloatArray, q: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``D = lgamma(n+q) - lgamma(n) - q log n`` with dD/dq and dD/dn, accurate for huge ``n``.

    For large n, D is O(q^2/n) while each lgamma is O(n log n); Stirling's series written in
    ``log1p(q/n)`` keeps D exact to rounding where the plain difference loses ~1e-16 * n log n.
    """
    big = n >= _STIRLING_FROM
    nb = np.where(big, n, _STIRLING_FROM)
    y = q / nb
    s_nq, ds_nq = _stirling_tail(nb + q)
    s_n, ds_n = _stirling_tail(nb)
    l1y = np.log1p(y)
    D_big = nb * _log1p_minus_identity(y) + (q - 0.5) * l1y + s_nq - s_n
    Dq_big = l1y - 0.5 / (nb + q) + ds_nq
    Dn_big = _log1p_minus_identity(y) + y * y / (1.0 + y) - (q - 0.5) * y / (nb * (1.0 + y)) + ds_nq - ds_n
    ns = np.where(big, 1.0, n)
    D_small = special.gammaln(ns + q) - special.gammaln(ns) - q * np.log(ns)
    Dq_small = special.digamma(ns + q) - np.log(ns)
    Dn_small = special.digamma(ns + q) - special.digamma(ns) - q / ns
    return np.where(big, D_big, D_small), np.where(big, Dq_big, Dq_small), np.where(big, Dn_big, Dn_small)


def gamma_gamma_loglik_mean_form(
    q: float, scale: float, eps: float, d: SpendData, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Gamma-Gamma log-likelihood in ``(q, scale = p*gamma, eps = 1/p)``; ``eps = 0`` is the limit.

    Per customer it is the limit model's inverse-gamma log density of the mean spend ``m``,
    ``q log scale - lgamma(q) - (q+1) log m - scale/m``, plus a correction ``R`` that vanishes
    as ``eps -> 0`` (written with ``n = p x`` so that no term grows with p).  The gradient is
    with respect to ``(q, scale, eps)``; at ``eps = 0`` its last entry is the one-sided
    derivative ``sum w ((q - scale/m)^2 - q) / (2x)`` (the limit's Karush-Kuhn-Tucker check).
    """
    x, m, w = d.x, d.m, d.weight
    u = scale / m
    log_m = np.log(m)
    base = q * math.log(scale) - special.gammaln(q) - (q + 1.0) * log_m - u
    if eps == 0.0:
        total = _wsum(w, base)
        if not gradient:
            return total, None
        g_q = _wsum(w, math.log(scale) - special.digamma(q) - log_m)
        g_c = _wsum(w, q / scale - 1.0 / m)
        g_e = _wsum(w, ((q - u) ** 2 - q) / (2.0 * x))
        return total, np.array([g_q, g_c, g_e])
    n = x / eps
    v = u / n
    D, Dq, Dn = _lgamma_excess(n, q)
    lm_v = _log1p_minus_identity(v)
    l1v = np.log1p(v)
    total = _wsum(w, base + D - n * lm_v - q * l1v)
    if not gradient:
        return total, None
    g_q = _wsum(w, math.log(scale) - special.digamma(q) - log_m + Dq - l1v)
    g_c = _wsum(w, q / scale - 1.0 / m + (u - q) / (m * (n + u)))
    R_n = Dn - lm_v - v * v / (1.0 + v) + q * v / (n * (1.0 + v))
    g_e = _wsum(w, -R_n * n * n / x)
    return total, np.array([g_q, g_c, g_e])


def gamma_gamma_mean_form(
    params: Sequence[float], limit: str | None = None
) -> tuple[float, float, float, float]:
    """``(q, scale, eps, w)`` of a fitted spend model, what the one spend formula takes.

    From ``(p, q, gamma)``: ``scale = p*gamma``, ``eps = 1/p`` and ``w = 1``; the constant-spend
    limit ``(q, scale)`` has ``eps = 0``; the homogeneous limit ``(p, mean_spend)`` has ``w = 0``
    (the customer's own mean gets no weight) with ``q = 2, scale = mean_spend, eps = 1``, whose
    population mean ``scale / (q - 1)`` is ``mean_spend``.
    """
    if limit == CONSTANT_SPEND:
        q, scale = (float(v) for v in params)
        return q, scale, 0.0, 1.0
    if limit == HOMOGENEOUS_SPEND:
        _, mean_spend = (float(v) for v in params)
        return 2.0, mean_spend, 1.0, 0.0
    if limit is not None:
        raise ModelError(
            f"unknown Gamma-Gamma limit {limit!r}: the limit models are {CONSTANT_SPEND!r} and "
            f"{HOMOGENEOUS_SPEND!r}"
        )
    p, q, g = (float(v) for v in params)
    return q, p * g, 1.0 / p, 1.0


def gamma_gamma_homogeneous_form_loglik(
    p: float, nu: float, delta: float, d: SpendData, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Gamma-Gamma log-likelihood in ``(p, nu = q/gamma, delta = 1/q)``; ``delta = 0`` is the limit.

    The same density of the mean spend ``m`` as :func:`gamma_gamma_loglik_mean_form`, written
    around the other boundary: with ``n = p x`` and ``z = x m`` (the customer's total repeat
    spend) the limit is ``z ~ gamma(n, rate nu)``, i.e. ``n log nu - lgamma(n) + (n-1) log z -
    nu z + log x``, plus a correction ``R = E - n log1p(nu z delta) - (log1p(nu z delta)/delta -
    nu z)`` with ``E = lgamma(q+n) - lgamma(q) - n log q``, which vanishes as ``delta -> 0``.  The
    gradient is with respect to ``(p, nu, delta)``; at ``delta = 0`` its last entry is the
    one-sided derivative ``sum w ((nu z - n)^2 - n) / 2`` (the limit's Karush-Kuhn-Tucker check).
    """
    x, m, w = d.x, d.m, d.weight
    n = p * x
    z = x * m
    y = nu * z
    log_z = np.log(z)
    base = n * math.log(nu) - special.gammaln(n) + (n - 1.0) * log_z - y + np.log(x)
    d_n_base = math.log(nu) - special.digamma(n) + log_z
    d_nu_base = n / nu - z
    if delta == 0.0:
        total = _wsum(w, base)
        if not gradient:
            return total, None
        g_d = _wsum(w, ((y - n) ** 2 - n) / 2.0)
        return total, np.array([_wsum(w, d_n_base * x), _wsum(w, d_nu_base), g_d])
    q = 1.0 / delta
    E, E_n, E_q = _lgamma_excess(np.full_like(n, q), n)
    L_over, L_over_d, L = _log1p_over_eps(y * delta, delta, y)
    total = _wsum(w, base + E - n * L - (L_over - y))
    if not gradient:
        return total, None
    g_p = _wsum(w, (d_n_base + E_n - L) * x)
    g_nu = _wsum(w, d_nu_base + z * (y - n) * delta / (1.0 + y * delta))
    g_d = _wsum(w, -E_q * q * q - n * y / (1.0 + y * delta) - L_over_d)
    return total, np.array([g_p, g_nu, g_d])


def gamma_gamma_homogeneous_loglik(
    params: ArrayLike, d: SpendData, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Log-likelihood of the homogeneous limit model ``(p, mean_spend)`` (gradient in those two)."""
    p, mean_spend = (float(v) for v in np.asarray(params, dtype=np.float64))
    total, grad = gamma_gamma_homogeneous_form_loglik(p, p / mean_spend, 0.0, d, gradient=gradient)
    if grad is None:
        return total, None
    g_p, g_nu, _ = grad
    return total, np.array([g_p + g_nu / mean_spend, -g_nu * p / (mean_spend * mean_spend)])


def gamma_gamma_loglik(
    params: ArrayLike, d: SpendData, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Total Gamma-Gamma log-likelihood of the mean repeat spends (and gradient in p, q, gamma)."""
    p, q, g = (float(v) for v in np.asarray(params, dtype=np.float64))
    total, grad = gamma_gamma_loglik_mean_form(q, p * g, 1.0 / p, d, gradient=gradient)
    if grad is None:
        return total, None
    g_q, g_c, g_e = grad
    return total, np.array([g_c * g - g_e / (p * p), g_q, g_c * p])


def gamma_gamma_constant_spend_loglik(
    params: ArrayLike, d: SpendData, *, gradient: bool = False
) -> tuple[float, FloatArray | None]:
    """Log-likelihood of the limit model ``(q, scale)`` (gradient in those two)."""
    q, scale = (float(v) for v in np.asarray(params, dtype=np.float64))
    total, grad = gamma_gamma_loglik_mean_form(q, scale, 0.0, d, gradient=gradient)
    return total, None if grad is None else grad[:2]


def gamma_gamma_conditional_spend(mean_form: Sequence[Any], x: Any, m: Any) -> Any:
    """E[M | x, m] = p (gamma + x m) / (p x + q - 1) (Fader & Hardie 2013, eq. 5), in mean form.

    With ``(q, scale, eps, w)`` from :func:`gamma_gamma_mean_form` it reads
    ``(scale eps + w x m) / (w x + (q - 1) eps)``, which at ``eps = 0`` (the constant-spend
    limit) is the customer's own mean ``m`` and at ``w = 0`` (the homogeneous limit) the common
    ``mean_spend``: the one spend formula for all three models (``w = 1`` leaves the full model's
    arithmetic exact).  Plain arithmetic, so the parameters, ``x`` and ``m`` may be numbers, numpy
    arrays or Ibis columns (scoring evaluates it in SQL).
    """
    q, scale, eps, w = mean_form
    return (scale * eps + w * x * m) / (w * x + (q - 1.0) * eps)


def gamma_gamma_population_spend(
    params: Sequence[float], d: SpendData, limit: str | None = None
) -> tuple[float, str]:
    """Expected spend per purchase of a customer with no repeat purchase yet, and where it comes from.

    With ``q > 1`` it is the model's population mean ``p gamma / (q - 1) = scale / (q - 1)``
    (``"model_mean"``).  With ``q <= 1`` that mean is infinite, so the weighted mean of the
    repeaters' mean spends is used instead (``"repeaters_mean"``): finite, and never zero, which
    would put every non-repeater at the bottom of the value tiers.
    """
    q, scale, _, _ = gamma_gamma_mean_form(params, limit)
    if q > 1.0:
        return scale / (q - 1.0), "model_mean"
    return float(np.average(d.m, weights=d.weight)), "repeaters_mean"


# ---------------------------------------------------------------------------------------------
# Model objects: what scoring needs to know about a fitted transaction model
# ---------------------------------------------------------------------------------------------
LogLik = Callable[..., tuple[float, FloatArray | None]]


@dataclass(frozen=True)
class TransactionModel:
    """A transaction model's parameters and closed forms; ``family`` is what ``--model`` names."""

    family: str
    limit: str | None
    param_names: tuple[str, ...]
    loglik: LogLik
    p_alive: Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], FloatArray]
    conditional_expected: Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike, ArrayLike], FloatArray]
    expected: Callable[[ArrayLike, ArrayLike], FloatArray]


BGNBD = TransactionModel(
    "bgnbd",
    None,
    PARAM_NAMES["bgnbd"],
    bgnbd_loglik,
    bgnbd_p_alive,
    bgnbd_conditional_expected,
    bgnbd_expected,
)
BGNBD_HOMOGENEOUS = TransactionModel(
    "bgnbd",
    HOMOGENEOUS_DROPOUT,
    ("r", "alpha", "p_dropout"),
    bgnbd_homogeneous_loglik,
    bgnbd_homogeneous_p_alive,
    bgnbd_homogeneous_conditional_expected,
    bgnbd_homogeneous_expected,
)
PARETONBD = TransactionModel(
    "paretonbd",
    None,
    PARAM_NAMES["paretonbd"],
    paretonbd_loglik,
    paretonbd_p_alive,
    paretonbd_conditional_expected,
    paretonbd_expected,
)
PARETONBD_HOMOGENEOUS = TransactionModel(
    "paretonbd",
    HOMOGENEOUS_DROPOUT,
    ("r", "alpha", "dropout_rate"),
    paretonbd_homogeneous_loglik,
    paretonbd_homogeneous_p_alive,
    paretonbd_homogeneous_conditional_expected,
    paretonbd_homogeneous_expected,
)
_MODELS = {
    (mod.family, mod.limit): mod for mod in (BGNBD, BGNBD_HOMOGENEOUS, PARETONBD, PARETONBD_HOMOGENEOUS)
}


def transaction_model(name: str | TransactionModel, limit: str | None = None) -> TransactionModel:
    """The model object for a family name (and limit); an unknown name is a :class:`ModelError`."""
    if isinstance(name, TransactionModel):
        return name
    try:
        return _MODELS[(name, limit)]
    except KeyError:
        what = f"{name!r} with limit {limit!r}" if limit else repr(name)
        raise ModelError(
            f"unknown model {what}: transaction models are {' and '.join(map(repr, TRANSACTION_MODEL_NAMES))}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Small dense linear algebra in Python floats: the same operations in the same order on every CPU
# ---------------------------------------------------------------------------------------------
Matrix = list[list[float]]


def _solve(A: Matrix, rhs: Sequence[float]) -> list[float] | None:
    """Solve ``A x = rhs`` by Gaussian elimination with partial pivoting (None if singular)."""
    n = len(rhs)
    M = [list(map(float, row)) + [float(v)] for row, v in zip(A, rhs, strict=True)]
    for col in range(n):
        piv = max(range(col, n), key=lambda i: abs(M[i][col]))
        if M[piv][col] == 0.0 or not math.isfinite(M[piv][col]):
            return None
        M[col], M[piv] = M[piv], M[col]
        for i in range(col + 1, n):
            f = M[i][col] / M[col][col]
            for j in range(col, n + 1):
                M[i][j] -= f * M[col][j]
    out = [0.0] * n
    for i in range(n - 1, -1, -1):
        out[i] = (M[i][n] - sum(M[i][j] * out[j] for j in range(i + 1, n))) / M[i][i]
    return out


def _inverse(A: Matrix) -> Matrix | None:
    """The inverse of a small matrix, column by column through :func:`_solve`."""
    n = len(A)
    cols = [_solve(A, [1.0 if i == j else 0.0 for i in range(n)]) for j in range(n)]
    if any(c is None for c in cols):
        return None
    return [[cols[j][i] for j in range(n)] for i in range(n)]  # type: ignore[index]


def _positive_definite(A: Matrix) -> bool:
    """Cholesky succeeds (all pivots positive)."""
    n = len(A)
    L = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = A[i][j] - sum(L[i][k] * L[j][k] for k in range(j))
            if i == j:
                if not (s > 0.0 and math.isfinite(s)):
                    return False
                L[i][i] = math.sqrt(s)
            else:
                L[i][j] = s / L[j][j]
    return True


# ---------------------------------------------------------------------------------------------
# Maximum likelihood: a global search, then a BLAS-free Newton polish that decides the answer
# ---------------------------------------------------------------------------------------------
Objective = Callable[[FloatArray], tuple[float, FloatArray]]
INVALID = 1e300


def _objective(loglik_of: Callable[[FloatArray], tuple[float, FloatArray]], scale: float) -> Objective:
    """``theta -> (-loglik * scale, -gradient * scale)``, with a huge value where it is undefined."""

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        with np.errstate(all="ignore"):
            ll, g = loglik_of(np.asarray(theta, dtype=np.float64))
        if not np.isfinite(ll) or not np.all(np.isfinite(g)):
            return INVALID, np.zeros(len(theta))
        return -ll * scale, -np.asarray(g) * scale

    return objective


def _search(
    objective: Objective,
    starts: Sequence[FloatArray],
    bounds: Sequence[tuple[float, float]],
    maxiter: int = 1000,
) -> tuple[FloatArray, int]:
    """Bounded L-BFGS-B from each start; the best end point (only a starting point for Newton)."""
    best: tuple[float, FloatArray] | None = None
    iterations = 0
    for start in starts:
        res = optimize.minimize(
            objective,
            np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds]),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-8},
        )
        iterations += int(res.nit)
        if np.isfinite(res.fun) and res.fun < INVALID and (best is None or res.fun < best[0]):
            best = (float(res.fun), np.asarray(res.x, dtype=np.float64))
    if best is None:
        raise ModelError("the likelihood is not finite at any starting point: check the summary statistics")
    return best[1], iterations


def _hessian(objective: Objective, theta: FloatArray) -> Matrix:
    """Central differences of the gradient, symmetrised."""
    k = len(theta)
    rows: list[FloatArray] = []
    for i in range(k):
        h = 1e-5 * max(1.0, abs(float(theta[i])))
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] -= h
        rows.append((objective(up)[1] - objective(dn)[1]) / (2.0 * h))
    return [[0.5 * (float(rows[i][j]) + float(rows[j][i])) for j in range(k)] for i in range(k)]


@dataclass(frozen=True)
class _Polished:
    theta: FloatArray
    f: float
    gradient: FloatArray
    hessian: Matrix
    steps: int
    loglik_change: float  # relative change of the objective over the last accepted step

    @property
    def gradient_norm(self) -> float:
        return float(np.max(np.abs(self.gradient)))


def _newton(
    objective: Objective,
    theta: FloatArray,
    max_steps: int = 40,
    *,
    start_hessian: Matrix | None = None,
) -> _Polished:
    """Damped Newton iterations (Levenberg damping when the Hessian is not positive definite).

    Stops when the gradient is at rounding level or no step decreases the objective any more.
    The Hessian is central differences of the gradient, recomputed after every step; with
    ``start_hessian`` (e.g. from a sample of the data) that one is kept for every step instead (a
    chord method: a step costs one gradient) and the Hessian is computed once at the end point
    for the standard errors.
    Every operation is elementwise numpy or Python floats, so the end point does not depend on
    the BLAS kernel that found the starting point.
    """
    theta = np.asarray(theta, dtype=np.float64).copy()
    refresh = start_hessian is None
    f, g = objective(theta)
    change = math.inf
    H = _hessian(objective, theta) if start_hessian is None else start_hessian
    steps = 0
    for steps in range(1, max_steps + 1):  # noqa: B007 - the count is reported
        if float(np.max(np.abs(g))) < 1e-13:
            break
        direction = None
        damping = 0.0
        scale = max(abs(H[i][i]) for i in range(len(g))) or 1.0
        for _ in range(30):
            Hd = [[H[i][j] + (damping if i == j else 0.0) for j in range(len(g))] for i in range(len(g))]
            if _positive_definite(Hd):
                direction = _solve(Hd, [-float(v) for v in g])
                if direction is not None:
                    break
            damping = max(damping * 10.0, 1e-10 * scale)
        if direction is None:
            break
        d = np.array(direction)
        slope = float(sum(float(a) * b for a, b in zip(g, direction, strict=True)))
        t = 1.0
        accepted = False
        while t > 1e-10:
            cand = theta + t * d
            f_new, g_new = objective(cand)
            if f_new < INVALID and f_new <= f + 1e-4 * t * slope:
                accepted = True
                break
            t *= 0.5
        if not accepted or f_new >= f and float(np.max(np.abs(g_new))) >= float(np.max(np.abs(g))):
            break
        change = abs(f - f_new) / max(abs(f), 1e-300)
        theta, f, g = cand, f_new, g_new
        if refresh:
            H = _hessian(objective, theta)
    if not refresh:
        H = _hessian(objective, theta)
    return _Polished(theta, f, g, H, steps, 0.0 if change == math.inf else change)


def _delta_method(info: Matrix, jacobian: Matrix) -> list[float]:
    """Standard errors of ``params(theta)`` from the information matrix in theta (NaN if singular)."""
    cov = _inverse(info)
    k = len(jacobian)
    if cov is None:
        return [math.nan] * k
    out = []
    for i in range(k):
        Ji = jacobian[i]
        var = sum(Ji[a] * cov[a][b] * Ji[b] for a in range(len(Ji)) for b in range(len(Ji)))
        out.append(math.sqrt(var) if var > 0 else math.nan)
    return out


@dataclass(frozen=True)
class FitResult:
    """Maximum-likelihood estimates with standard errors and the convergence verdict.

    ``limit`` names the limit model when the optimum lies on it (e.g. ``homogeneous_dropout``);
    the parameters that went to the limit are then absent from ``params``.
    """

    model: str
    params: dict[str, float]
    std_errors: dict[str, float]
    loglik: float
    converged: bool
    iterations: int
    message: str
    n_customers: int
    limit: str | None = None
    gradient_norm: float = math.nan
    loglik_change: float = math.nan

    @property
    def transaction_model(self) -> TransactionModel:
        return transaction_model(self.model, self.limit)

    @property
    def vector(self) -> FloatArray:
        if self.model == "gamma_gamma":
            return np.array([self.params[k] for k in SPEND_PARAM_NAMES[self.limit]])
        names = self.transaction_model.param_names
        return np.array([self.params[k] for k in names])


def _verdict(polished: _Polished, extra_ok: bool = True, extra_reason: str = "") -> tuple[bool, str]:
    """Converged iff the (projected) gradient and the last log-likelihood change are small."""
    if not np.isfinite(polished.f) or polished.f >= INVALID:
        return False, "the log-likelihood is not finite at the end point"
    if polished.gradient_norm >= GRADIENT_TOLERANCE:
        return False, f"gradient {polished.gradient_norm:.2e} per customer is not small at the end point"
    if polished.loglik_change >= LOGLIK_CHANGE_TOLERANCE:
        return False, f"the log-likelihood still changed by {polished.loglik_change:.1e} (relative)"
    if not extra_ok:
        return False, extra_reason
    return True, "converged"


def _result(
    model: str,
    names: Sequence[str],
    params: Sequence[float],
    jacobian: Matrix,
    polished: _Polished,
    weight_total: float,
    n_customers: int,
    iterations: int,
    *,
    limit: str | None = None,
    extra_ok: bool = True,
    extra_reason: str = "",
) -> FitResult:
    info = [[v * weight_total for v in row] for row in polished.hessian]
    se = _delta_method(info, jacobian)
    converged, message = _verdict(polished, extra_ok, extra_reason)
    return FitResult(
        model=model,
        params={k: float(v) for k, v in zip(names, params, strict=True)},
        std_errors={k: float(v) for k, v in zip(names, se, strict=True)},
        loglik=float(-polished.f * weight_total),
        converged=converged,
        iterations=iterations + polished.steps,
        message=message,
        n_customers=n_customers,
        limit=limit,
        gradient_norm=polished.gradient_norm,
        loglik_change=polished.loglik_change,
    )


WARM_START_TRIPLES = 40_000
# Shape/scale pairs whose mixing distribution degenerates when both grow at a fixed ratio.
PARETO_SEARCH_TRIPLES = 3_000  # each Pareto/NBD evaluation integrates over 16 nodes per triple
_LOG_BOUND = 18.0  # search box for log-parameters; a reported parameter never sits on it


def _outside_box(theta: FloatArray, names: Sequence[str], bound: float = _LOG_BOUND) -> str:
    """The names of log-parameters that reached the search box (empty if none)."""
    return ", ".join(n for n, v in zip(names, theta, strict=True) if abs(float(v)) >= bound - 1e-6)


@dataclass(frozen=True)
class _Family:
    """How one model family is searched and reported (see :func:`_fit_with_limit`).

    The search coordinates are ``(*theta, eps)`` with ``eps >= 0`` the inverse concentration of
    the mixing distribution that can degenerate; ``eps = 0`` is the limit model.  ``limit_params``
    maps ``theta`` to the limit's parameters and their Jacobian; ``full_params`` maps ``(*theta,
    log eps)`` to the full model's parameters, their Jacobian and their logs (for the box check).
    """

    model: str
    full_names: tuple[str, ...]
    limit: str
    limit_names: tuple[str, ...]
    limit_reason: str
    limit_params: Callable[[FloatArray], tuple[Sequence[float], Matrix]]
    full_params: Callable[[FloatArray], tuple[Sequence[float], Matrix, FloatArray]]


def _fit_with_limit(
    family: _Family,
    searched: Callable[[Any], Objective],
    data: Any,
    search_data: Any,
    starts: Sequence[FloatArray],
    bounds: Sequence[tuple[float, float]],
    *,
    weight_total: float,
    n_customers: int,
    chord: bool = False,
) -> FitResult:
    """Search, then polish the limit model and (if the search ended inside) the full model.

    ``searched(data)`` is the objective in the search coordinates.  The search (bounded
    L-BFGS-B on ``search_data``) only picks the starting point; the answer is a BLAS-free Newton
    polish on ``data``, with the sample's Hessian kept for every step when ``chord``.  The limit
    is converged only if the likelihood does not increase into ``eps > 0`` (Karush-Kuhn-Tucker);
    the full model is the answer only when strictly more likely than the limit, because near
    ``eps = 0`` the gradient in ``log eps`` vanishes however the likelihood slopes.
    """
    psi, iterations = _search(searched(search_data), starts, bounds)
    full_obj, sample_obj = searched(data), searched(search_data)
    k = len(psi) - 1

    def on_limit(objective: Objective) -> Objective:
        def obj(theta: FloatArray) -> tuple[float, FloatArray]:
            f, g = objective(np.array([*theta, 0.0]))
            return f, g[:k]

        return obj

    def inside(objective: Objective) -> Objective:
        def obj(theta: FloatArray) -> tuple[float, FloatArray]:
            eps = math.exp(theta[k])
            f, g = objective(np.array([*theta[:k], eps]))
            return f, np.array([*g[:k], g[k] * eps])

        return obj

    def polish(make: Callable[[Objective], Objective], start: FloatArray) -> _Polished:
        hessian = _hessian(make(sample_obj), start) if chord else None
        return _newton(make(full_obj), start, start_hessian=hessian)

    lim = polish(on_limit, psi[:k].copy())
    g_eps = float(full_obj(np.array([*lim.theta, 0.0]))[1][k])
    values, jac = family.limit_params(lim.theta)
    stuck = _outside_box(lim.theta, family.limit_names)
    limit_fit = _result(
        family.model,
        family.limit_names,
        values,
        jac,
        lim,
        weight_total,
        n_customers,
        iterations,
        limit=family.limit,
        extra_ok=g_eps > -GRADIENT_TOLERANCE and not stuck,
        extra_reason=f"{stuck} reached the search bound"
        if stuck
        else f"the likelihood still increases away from {family.limit_reason} (gradient {g_eps:.1e})",
    )
    if psi[k] <= 1e-12:
        return limit_fit
    full = polish(inside, np.array([*psi[:k], math.log(psi[k])]))
    if not (full.f < INVALID and full.f < lim.f * (1 - 1e-12 * np.sign(lim.f))):
        return limit_fit
    values, jac, logs = family.full_params(full.theta)
    stuck = _outside_box(logs, family.full_names)
    return _result(
        family.model,
        family.full_names,
        values,
        jac,
        full,
        weight_total,
        n_customers,
        iterations,
        extra_ok=not stuck,
        extra_reason=f"{stuck} reached the search bound (a degenerate mixing distribution)",
    )


def _bgnbd_limit_params(theta: FloatArray) -> tuple[Sequence[float], Matrix]:
    r, alpha, p = math.exp(theta[0]), math.exp(theta[1]), float(special.expit(theta[2]))
    return (r, alpha, p), [[r, 0, 0], [0, alpha, 0], [0, 0, p * (1 - p)]]


def _bgnbd_full_params(theta: FloatArray) -> tuple[Sequence[float], Matrix, FloatArray]:
    r, alpha = math.exp(theta[0]), math.exp(theta[1])
    phi, eps = float(special.expit(theta[2])), math.exp(theta[3])
    a, b = phi / eps, (1.0 - phi) / eps
    dphi = phi * (1.0 - phi) / eps
    jac = [[r, 0, 0, 0], [0, alpha, 0, 0], [0, 0, dphi, -a], [0, 0, -dphi, -b]]
    return (r, alpha, a, b), jac, np.array([theta[0], theta[1], math.log(a), math.log(b)])


BGNBD_FAMILY = _Family(
    "bgnbd", PARAM_NAMES["bgnbd"], HOMOGENEOUS_DROPOUT, ("r", "alpha", "p_dropout"), "homogeneous dropout",
    _bgnbd_limit_params, _bgnbd_full_params,
)  # fmt: skip


def fit_bgnbd(d: Triples) -> FitResult:
    """BG/NBD by maximum likelihood; the homogeneous-dropout limit when the optimum lies on it.

    Search coordinates ``(log r, log alpha, logit phi, eps)`` with ``phi = a/(a+b)`` and
    ``eps = 1/(a+b)``; the limit ``eps = 0`` is one dropout probability for everybody.
    """
    total = float(d.weight.sum())
    scale = 1.0 / max(total, 1.0)
    mean_T = float(np.average(d.T, weights=d.weight)) or 1.0
    mean_x = float(np.average(d.x, weights=d.weight))
    search_data = d.sample(WARM_START_TRIPLES // 2) if len(d.x) > WARM_START_TRIPLES else d

    def searched(data: Triples) -> Objective:
        def ll(psi: FloatArray) -> tuple[float, FloatArray]:
            r, alpha = math.exp(psi[0]), math.exp(psi[1])
            phi, eps = float(special.expit(psi[2])), float(psi[3])
            v, g = bgnbd_loglik_mean_form(r, alpha, phi, eps, data, gradient=True)
            assert g is not None
            return v, np.array([g[0] * r, g[1] * alpha, g[2] * phi * (1.0 - phi), g[3]])

        return _objective(ll, scale)

    rate0 = math.log(max(mean_T / max(mean_x, 1e-3), 1e-3))
    starts = [
        np.array([0.0, rate0, float(special.logit(phi)), eps])
        for phi, eps in ((0.25, 0.3), (0.05, 0.02), (0.5, 1.0))
    ]
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 3 + [(0.0, 1e3)]
    return _fit_with_limit(
        BGNBD_FAMILY, searched, d, search_data, starts, bounds, weight_total=total, n_customers=d.n_customers
    )


def _paretonbd_limit_params(theta: FloatArray) -> tuple[Sequence[float], Matrix]:
    r, alpha, mu = (math.exp(v) for v in theta)
    return (r, alpha, mu), [[r, 0, 0], [0, alpha, 0], [0, 0, mu]]


def _paretonbd_full_params(theta: FloatArray) -> tuple[Sequence[float], Matrix, FloatArray]:
    r, alpha, mu, eps = (math.exp(v) for v in theta)
    s, beta = 1.0 / eps, 1.0 / (mu * eps)
    # d(r, alpha, s, beta) / d(log r, log alpha, log mu_bar, log eps)
    jac = [[r, 0, 0, 0], [0, alpha, 0, 0], [0, 0, 0, -s], [0, 0, -beta, -beta]]
    return (r, alpha, s, beta), jac, np.array([theta[0], theta[1], math.log(s), math.log(beta)])


PARETONBD_FAMILY = _Family(
    "paretonbd", PARAM_NAMES["paretonbd"], HOMOGENEOUS_DROPOUT, ("r", "alpha", "dropout_rate"),
    "homogeneous dropout", _paretonbd_limit_params, _paretonbd_full_params,
)  # fmt: skip


def fit_paretonbd(d: Triples) -> FitResult:
    """Pareto/NBD by maximum likelihood; the homogeneous-dropout limit when the optimum lies on it.

    Search coordinates ``(log r, log alpha, log mu_bar, eps)`` with ``mu_bar = s/beta`` and
    ``eps = 1/s``, on a sample of the triples; the polish on all of them keeps the sample's
    Hessian for its steps (a chord method: each step costs one gradient on all triples).
    """
    total = float(d.weight.sum())
    scale = 1.0 / max(total, 1.0)
    mean_T = float(np.average(d.T, weights=d.weight)) or 1.0
    mean_x = float(np.average(d.x, weights=d.weight))
    search_data = d.sample(PARETO_SEARCH_TRIPLES) if len(d.x) > PARETO_SEARCH_TRIPLES else d

    def searched(data: Triples) -> Objective:
        def ll(psi: FloatArray) -> tuple[float, FloatArray]:
            r, alpha, mu, eps = math.exp(psi[0]), math.exp(psi[1]), math.exp(psi[2]), float(psi[3])
            v, g = paretonbd_loglik_mean_form(r, alpha, mu, eps, data, gradient=True)
            assert g is not None
            return v, np.array([g[0] * r, g[1] * alpha, g[2] * mu, g[3]])

        return _objective(ll, scale)

    rate0 = math.log(max(mean_T / max(mean_x, 1e-3), 1e-3))
    starts = [np.array([0.0, rate0, math.log(1.0 / mean_T), eps]) for eps in (1.0, 0.1)]
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 3 + [(0.0, 1e3)]
    return _fit_with_limit(
        PARETONBD_FAMILY, searched, d, search_data, starts, bounds,
        weight_total=total, n_customers=d.n_customers, chord=True,
    )  # fmt: skip


def fit_transactions(model: str | TransactionModel, d: Triples) -> FitResult:
    """Fit BG/NBD or Pareto/NBD to the triples by maximum likelihood."""
    family = transaction_model(model).family
    if float(np.average(d.x, weights=d.weight)) <= 0:
        raise ModelError("no customer has a repeat purchase: the transaction model cannot be fitted")
    return fit_bgnbd(d) if family == "bgnbd" else fit_paretonbd(d)


def _gamma_gamma_limit_params(theta: FloatArray) -> tuple[Sequence[float], Matrix]:
    q, scale = math.exp(theta[0]), math.exp(theta[1])
    return (q, scale), [[q, 0.0], [0.0, scale]]


def _gamma_gamma_full_params(theta: FloatArray) -> tuple[Sequence[float], Matrix, FloatArray]:
    q, c, eps = (math.exp(v) for v in theta)
    p, g = 1.0 / eps, c * eps
    # d(p, q, gamma) / d(log q, log scale, log eps)
    jac = [[0.0, 0.0, -p], [q, 0.0, 0.0], [0.0, g, g]]
    return (p, q, g), jac, np.array([math.log(p), theta[0], math.log(g)])


GAMMA_GAMMA_FAMILY = _Family(
    "gamma_gamma", PARAM_NAMES["gamma_gamma"], CONSTANT_SPEND, SPEND_PARAM_NAMES[CONSTANT_SPEND],
    "constant spend per customer", _gamma_gamma_limit_params, _gamma_gamma_full_params,
)  # fmt: skip


def _gamma_gamma_homogeneous_limit_params(theta: FloatArray) -> tuple[Sequence[float], Matrix]:
    p, nu = math.exp(theta[0]), math.exp(theta[1])
    mean_spend = p / nu
    return (p, mean_spend), [[p, 0.0], [mean_spend, -mean_spend]]


def _gamma_gamma_homogeneous_full_params(theta: FloatArray) -> tuple[Sequence[float], Matrix, FloatArray]:
    p, nu, delta = (math.exp(v) for v in theta)
    q = 1.0 / delta
    g = q / nu
    # d(p, q, gamma) / d(log p, log nu, log delta)
    jac = [[p, 0.0, 0.0], [0.0, 0.0, -q], [0.0, -g, -g]]
    return (p, q, g), jac, np.array([theta[0], -theta[2], math.log(g)])


GAMMA_GAMMA_HOMOGENEOUS_FAMILY = _Family(
    "gamma_gamma", PARAM_NAMES["gamma_gamma"], HOMOGENEOUS_SPEND, SPEND_PARAM_NAMES[HOMOGENEOUS_SPEND],
    "one spend level for every customer", _gamma_gamma_homogeneous_limit_params,
    _gamma_gamma_homogeneous_full_params,
)  # fmt: skip


def fit_gamma_gamma(d: SpendData) -> FitResult:
    """Gamma-Gamma by maximum likelihood; a limit model when the optimum lies on one.

    Search coordinates ``(log q, log scale, eps)`` with ``scale = p*gamma`` and ``eps = 1/p``, so
    ``p -> inf`` (every customer's transactions worth the same) is the boundary ``eps = 0``
    rather than a direction without end.  The other ridge, ``q, gamma -> inf`` (customers do not
    differ in expected spend), is not a boundary of those coordinates, so the model is also
    searched in ``(log p, log nu, delta)`` with ``nu = q/gamma`` and ``delta = 1/q``
    (:func:`gamma_gamma_homogeneous_form_loglik`), where it is.  That search's limit is the answer
    when it converged and is at least as likely; an interior optimum is the first search's answer
    (both reach it; the second only when the first did not converge).
    """
    first = _fit_gamma_gamma_around_constant_spend(d)
    second = _fit_gamma_gamma_around_homogeneous_spend(d)
    # The first answer's likelihood in the form that stays exact at large q: the first form's own
    # value is off by rounding there (~1e-4 at q ~ 3e6), and along the ridge its search can stop
    # anywhere with a vanishing gradient, so only this comparison decides.
    first_ll = first.loglik
    if first.limit is None:
        p, q, g = (first.params[k] for k in PARAM_NAMES["gamma_gamma"])
        first_ll = gamma_gamma_homogeneous_form_loglik(p, q / g, 1.0 / q, d)[0]
    tolerance = 1e-9 * abs(first_ll)
    if second.converged and second.limit is not None and second.loglik >= first_ll - tolerance:
        return second  # the homogeneous limit is at least as likely
    if second.converged and not first.converged and second.loglik > first_ll + tolerance:
        return second
    return first


def _fit_gamma_gamma_around_homogeneous_spend(d: SpendData) -> FitResult:
    """The Gamma-Gamma search whose boundary ``delta = 1/q = 0`` is the homogeneous limit."""
    # Start at the limit's moments: m has mean p/nu and variance p/(x nu^2).
    mean_m = float(np.average(d.m, weights=d.weight))
    spread = float(np.average(d.x * (d.m - mean_m) ** 2, weights=d.weight)) or mean_m**2
    p0 = max(mean_m**2 / spread, 1e-3)
    starts = [np.array([math.log(p0), math.log(p0 / mean_m), delta]) for delta in (0.05, 0.5)]
    return _fit_gamma_gamma_form(
        GAMMA_GAMMA_HOMOGENEOUS_FAMILY, gamma_gamma_homogeneous_form_loglik, d, starts
    )


def _fit_gamma_gamma_around_constant_spend(d: SpendData) -> FitResult:
    """The Gamma-Gamma search whose boundary ``eps = 1/p = 0`` is the constant-spend limit."""
    # Start at the moments of 1/m, which is gamma(q, rate scale) under the limit model.
    inv = 1.0 / d.m
    mean_inv = float(np.average(inv, weights=d.weight))
    var_inv = float(np.average((inv - mean_inv) ** 2, weights=d.weight)) or mean_inv**2
    q0, c0 = mean_inv**2 / var_inv, mean_inv / var_inv
    mean_m = float(np.average(d.m, weights=d.weight))
    starts = [
        np.array([math.log(q0), math.log(c0), 0.2]),
        np.array([math.log(2.0), math.log(mean_m), 1.0]),
        np.array([math.log(4.0), math.log(4.0 * mean_m), 0.25]),
    ]
    return _fit_gamma_gamma_form(GAMMA_GAMMA_FAMILY, gamma_gamma_loglik_mean_form, d, starts)


def _fit_gamma_gamma_form(
    family: _Family, loglik_form: LogLik, d: SpendData, starts: Sequence[FloatArray]
) -> FitResult:
    """Search one Gamma-Gamma parametrisation ``(a, b, e)``: ``a, b`` by their logs, ``e >= 0`` the
    inverse concentration whose boundary ``e = 0`` is ``family``'s limit."""
    total = float(d.weight.sum())
    scale_w = 1.0 / max(total, 1.0)

    def searched(data: SpendData) -> Objective:
        def ll(psi: FloatArray) -> tuple[float, FloatArray]:
            a, b, e = math.exp(psi[0]), math.exp(psi[1]), float(psi[2])
            v, g = loglik_form(a, b, e, data, gradient=True)
            assert g is not None
            return v, np.array([g[0] * a, g[1] * b, g[2]])

        return _objective(ll, scale_w)

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 2 + [(0.0, 1e3)]
    return _fit_with_limit(
        family, searched, d, d, starts, bounds, weight_total=total, n_customers=int(round(total))
    )


# ---------------------------------------------------------------------------------------------
# Scoring helpers
# ---------------------------------------------------------------------------------------------
def p_alive(
    model: str | TransactionModel, params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """P(alive) under a transaction model (a model object, or a family name)."""
    return transaction_model(model).p_alive(params, x, t_x, T)


def conditional_expected(
    model: str | TransactionModel, params: ArrayLike, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T] under a transaction model."""
    return transaction_model(model).conditional_expected(params, t, x, t_x, T)


def discounted_expected_purchases(
    model: str | TransactionModel,
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
    mod = transaction_model(model)
    x = np.asarray(x, dtype=np.float64)
    month_units = 365.25 / 12.0 / unit_days
    monthly = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    total = np.zeros_like(x)
    prev = np.zeros_like(x)
    for i in range(1, months + 1):
        cum = mod.conditional_expected(params, i * month_units, x, t_x, T)
        total += (cum - prev) / (1.0 + monthly) ** i
        prev = cum
    return total
