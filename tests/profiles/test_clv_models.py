"""BG/NBD, Pareto/NBD and Gamma-Gamma against published CDNOW estimates and independent closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from micromarketing.errors import ModelError
from micromarketing.profiles import clv_models as m
from micromarketing.profiles.clv_validate import cdnow_path

# --- Published estimates on the CDNOW 1/10th sample (2,357 customers, weeks, calibration to 1997-09-30) ---
# Fader, Hardie & Lee (2005), "'Counting Your Customers' the Easy Way: An Alternative to the Pareto/NBD
# Model", Marketing Science 24(2):275-284, section 4: r=0.243, alpha=4.414, a=0.793, b=2.426, LL=-9582.4.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
# Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions" (brucehardie.com
# note 009) and FHL (2005) above: r=0.553, alpha=10.578, s=0.606, beta=11.669, LL=-9595.0.
PUBLISHED_PNBD = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
PUBLISHED_PNBD_LL = -9595.0
# Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (note 025): 946 repeat customers,
# p=6.25, q=3.74, gamma=15.44; mean repeat-transaction value $35.08.
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


@pytest.fixture(scope="module")
def cdnow():
    """Calibration summary of CDNOW_sample.txt computed here in pandas, independently of our SQL."""
    df = pd.read_csv(cdnow_path(), sep=r"\s+", header=None, names=["cid", "sid", "date", "cds", "amt"])
    df["date"] = pd.to_datetime(df["date"].astype(str))
    days = df.groupby(["cid", "date"], as_index=False)["amt"].sum()
    end = pd.Timestamp("1997-09-30")
    cal = days[days["date"] <= end]
    g = cal.groupby("cid")["date"].agg(["min", "max", "count"])
    first = cal.groupby("cid")["date"].transform("min")
    mx = cal[cal["date"] > first].groupby("cid")["amt"].mean().reindex(g.index)
    return pd.DataFrame(
        {
            "x": (g["count"] - 1).to_numpy(float),
            "t_x": ((g["max"] - g["min"]).dt.days / 7).to_numpy(),
            "T": ((end - g["min"]).dt.days / 7).to_numpy(),
            "m": mx.to_numpy(),
        }
    )


@pytest.fixture(scope="module")
def triples(cdnow):
    return m.Triples.build(cdnow["x"], cdnow["t_x"], cdnow["T"])


def _within(fit: dict[str, float], published: dict[str, float], rel: float = 0.01) -> None:
    for name, value in published.items():
        assert fit[name] == pytest.approx(value, rel=rel), name


# --- independent closed forms (direct, not log-space, SciPy special functions) -----------------------
def bgnbd_ll_direct(p, x, t_x, T):
    r, alpha, a, b = p
    common = special.gamma(r + x) * alpha**r / special.gamma(r)
    l1 = special.beta(a, b + x) / special.beta(a, b) * common / (alpha + T) ** (r + x)
    l2 = np.where(
        x > 0,
        special.beta(a + 1, np.maximum(b + x - 1, 1e-9))
        / special.beta(a, b)
        * common
        / (alpha + t_x) ** (r + x),
        0.0,
    )
    return np.log(l1 + l2)


def pnbd_ll_direct(p, x, t_x, T):
    """Fader & Hardie (2005) note, eq. (22) with the hypergeometric arguments as printed."""
    r, alpha, s, beta = p
    if alpha >= beta:
        F = lambda t: (  # noqa: E731
            special.hyp2f1(r + s + x, s + 1, r + s + x + 1, (alpha - beta) / (alpha + t))
            / (alpha + t) ** (r + s + x)
        )  # noqa: E731
    else:
        F = lambda t: (  # noqa: E731
            special.hyp2f1(r + s + x, r + x, r + s + x + 1, (beta - alpha) / (beta + t))
            / (beta + t) ** (r + s + x)
        )  # noqa: E731
    A0 = F(t_x) - F(T)
    lead = special.gamma(r + x) * alpha**r * beta**s / special.gamma(r)
    return np.log(lead * (1 / ((alpha + T) ** (r + x) * (beta + T) ** s) + s / (r + s + x) * A0))


def test_bgnbd_matches_published_cdnow_estimates(triples):
    fit = m.fit_transactions("bgnbd", triples)
    assert fit.converged
    assert fit.n_customers == 2357
    _within(fit.params, PUBLISHED_BGNBD)
    assert fit.loglik == pytest.approx(PUBLISHED_BGNBD_LL, abs=0.05)
    assert all(np.isfinite(v) and v > 0 for v in fit.std_errors.values())


def test_paretonbd_matches_published_cdnow_estimates(triples):
    fit = m.fit_transactions("paretonbd", triples)
    assert fit.converged
    _within(fit.params, PUBLISHED_PNBD)
    assert fit.loglik == pytest.approx(PUBLISHED_PNBD_LL, abs=0.05)


def test_gamma_gamma_matches_published_cdnow_estimates(cdnow):
    d = m.SpendData.build(cdnow["x"], cdnow["m"])
    assert len(d.x) == 946
    assert float(d.m.mean()) == pytest.approx(35.078, abs=0.001)
    fit = m.fit_gamma_gamma(d)
    assert fit.converged
    _within(fit.params, PUBLISHED_GG)


@pytest.mark.parametrize("params", [[0.243, 4.414, 0.793, 2.426], [1.3, 20.0, 2.5, 0.7]])
def test_bgnbd_loglik_equals_direct_closed_form(cdnow, triples, params):
    ours = m.bgnbd_loglik(params, triples)[0]
    direct = bgnbd_ll_direct(
        np.array(params), cdnow["x"].to_numpy(), cdnow["t_x"].to_numpy(), cdnow["T"].to_numpy()
    ).sum()
    assert ours == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("params", [[0.553, 10.578, 0.606, 11.669], [0.9, 15.0, 1.4, 6.0]])
def test_paretonbd_loglik_equals_direct_closed_form(cdnow, triples, params):
    ours = m.paretonbd_loglik(params, triples)[0]
    direct = pnbd_ll_direct(
        params, cdnow["x"].to_numpy(), cdnow["t_x"].to_numpy(), cdnow["T"].to_numpy()
    ).sum()
    assert ours == pytest.approx(direct, rel=1e-9)


def test_bgnbd_loglik_equals_lifetimes(cdnow, triples):
    lifetimes = pytest.importorskip("lifetimes")
    params = np.array([0.243, 4.414, 0.793, 2.426])
    x, t_x, T = (cdnow[c].to_numpy() for c in ("x", "t_x", "T"))
    neg_mean = lifetimes.BetaGeoFitter._negative_log_likelihood(
        np.log(params), x, t_x, T, np.ones_like(x), 0.0
    )
    assert m.bgnbd_loglik(params, triples)[0] == pytest.approx(-neg_mean * len(x), rel=1e-6)


@pytest.mark.parametrize("params", [[0.553, 10.578, 0.606, 11.669], [0.9, 15.0, 1.4, 6.0]])
def test_paretonbd_loglik_equals_lifetimes(cdnow, triples, params):
    lifetimes = pytest.importorskip("lifetimes")
    x, t_x, T = (cdnow[c].to_numpy() for c in ("x", "t_x", "T"))
    fitter = lifetimes.ParetoNBDFitter
    neg = fitter._negative_log_likelihood(np.array(params), x, t_x, T, np.ones_like(x), 0.0)
    assert m.paretonbd_loglik(params, triples)[0] == pytest.approx(-neg, rel=1e-9)


def test_gamma_gamma_loglik_equals_numerical_integral(cdnow):
    """The closed form integrates the gamma(px, nu x) density of the mean over nu ~ gamma(q, gamma)."""
    d = m.SpendData.build(cdnow["x"], cdnow["m"])
    p, q, g = 6.25, 3.74, 15.44
    rows = [0, 5, 50, 200, 900]
    for i in rows:
        x, mean = d.x[i], d.m[i]

        def integrand(nu, x=x, mean=mean):
            return np.exp(
                special.xlogy(p * x, nu * x)
                - special.gammaln(p * x)
                + special.xlogy(p * x - 1, mean)
                - nu * x * mean
                + special.xlogy(q, g)
                - special.gammaln(q)
                + special.xlogy(q - 1, nu)
                - g * nu
            )

        value, _ = integrate.quad(integrand, 0, np.inf, limit=200)
        one = m.SpendData.build([x], [mean])
        assert m.gamma_gamma_loglik([p, q, g], one)[0] == pytest.approx(np.log(value), rel=1e-7)


@pytest.mark.parametrize("model", ["bgnbd", "gamma_gamma"])
def test_analytic_gradient_matches_finite_differences(triples, cdnow, model):
    if model == "bgnbd":
        f, data, p = m.bgnbd_loglik, triples, np.array([0.3, 5.0, 0.9, 2.0])
    else:
        f, data, p = (
            m.gamma_gamma_loglik,
            m.SpendData.build(cdnow["x"], cdnow["m"]),
            np.array([5.0, 3.0, 12.0]),
        )
    _, grad = f(p, data, gradient=True)
    for i in range(len(p)):
        h = 1e-6 * p[i]
        up, dn = p.copy(), p.copy()
        up[i] += h
        dn[i] -= h
        fd = (f(up, data)[0] - f(dn, data)[0]) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-5)


def test_conditional_expectation_euler_form_equals_paper_form():
    """FHL (2005) eq. (10) as printed, against our Euler-transformed, overflow-free version."""
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    x = np.array([0.0, 1, 2, 5, 10, 20])
    t_x = np.array([0.0, 10, 20, 30, 35, 38])
    T, t = 38.86, 39.0
    z = t / (alpha + T + t)
    numer = (
        (a + b + x - 1)
        / (a - 1)
        * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * special.hyp2f1(r + x, b + x, a + b + x - 1, z))
    )
    denom = 1 + np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0)
    expected = numer / denom
    got = m.bgnbd_conditional_expected([r, alpha, a, b], t, x, t_x, T)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_huge_frequency_and_long_tenure_stay_finite():
    x = np.array([0.0, 1, 50, 5_000, 100_000, 100_000])
    T = np.array([10.0, 5_000, 5_000, 50_000, 100_000, 100_000])
    t_x = np.array([0.0, 1, 4_000, 49_999, 100_000, 10.0])
    d = m.Triples.build(x, t_x, T)
    for model, params in (
        ("bgnbd", [0.243, 4.414, 0.793, 2.426]),
        ("paretonbd", [0.553, 10.578, 0.606, 11.669]),
    ):
        ll, _ = (m.bgnbd_loglik if model == "bgnbd" else m.paretonbd_loglik)(params, d)
        assert np.isfinite(ll)
        pa = m.p_alive(model, params, x, t_x, T)
        assert np.all((pa >= 0) & (pa <= 1)) and np.all(np.isfinite(pa))
        assert pa[4] > 0.99 and pa[5] < 1e-6  # bought until yesterday vs silent for ~100k weeks
        e = m.conditional_expected(model, params, 52.0, x, t_x, T)
        assert np.all(np.isfinite(e)) and np.all(e >= 0)
        # A heavy buyer who is alive keeps buying at about x/T per week.
        assert e[4] == pytest.approx(52.0, rel=0.05)


def simulate_bgnbd(n: int, params, T_max: float, seed: int):
    """Draw BG/NBD customers (gamma purchase rates, beta-geometric dropout) with ages up to T_max."""
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.integers(7, int(T_max * 7), n) / 7.0  # ages in whole days, expressed in weeks
    x = np.zeros(n)
    t_x = np.zeros(n)
    t = np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        t[active] += rng.exponential(1 / lam[active])
        buy = active & (t <= T)
        x[buy] += 1
        t_x[buy] = t[buy]
        active = buy & (rng.uniform(size=n) >= p)
    return x, np.floor(t_x * 7) / 7, T  # recency at day resolution, as the warehouse summary gives it


def test_recovers_generated_parameters_without_convergence_errors():
    true = (0.8, 6.0, 1.2, 3.5)
    x, t_x, T = simulate_bgnbd(20_000, true, 100.0, seed=7)
    fit = m.fit_transactions("bgnbd", m.Triples.build(x, t_x, T))
    assert fit.converged
    for name, value in zip(m.PARAM_NAMES["bgnbd"], true, strict=True):
        assert abs(fit.params[name] - value) < 4 * fit.std_errors[name] + 0.05 * value, name
    pn = m.fit_transactions("paretonbd", m.Triples.build(x[:4000], t_x[:4000], T[:4000]))
    assert pn.converged and np.isfinite(pn.loglik)  # misspecified here, but it must fit


def test_collapsing_to_unique_triples_keeps_the_likelihood(cdnow):
    full = m.Triples.build(cdnow["x"], cdnow["t_x"], cdnow["T"], collapse=False)
    small = m.Triples.build(cdnow["x"], cdnow["t_x"], cdnow["T"])
    assert len(small.x) < len(full.x) / 2
    p = [0.243, 4.414, 0.793, 2.426]
    assert m.bgnbd_loglik(p, small)[0] == pytest.approx(m.bgnbd_loglik(p, full)[0], rel=1e-12)


def test_bad_statistics_are_model_errors():
    with pytest.raises(ModelError, match="recency must lie between 0 and T"):
        m.Triples.build([1], [5.0], [4.0])
    with pytest.raises(ModelError, match="no customers"):
        m.Triples.build([], [], [])
    with pytest.raises(ModelError, match="no customer has a repeat purchase"):
        m.fit_transactions("bgnbd", m.Triples.build([0, 0], [0, 0], [3, 4]))


def test_bgnbd_expectations_stay_finite_when_dropout_heterogeneity_vanishes():
    """The MLE on homogeneous-dropout data reaches a, b ~ 1e5..1e7 (seen on generated data)."""
    from scipy import special

    r, alpha, a, b = 1.552, 12.851, 1.674e5, 6.373e6
    x = np.array([0.0, 1.0, 5.0, 20.0, 200.0])
    t_x = np.array([0.0, 10.0, 50.0, 100.0, 240.0])
    T = np.array([20.0, 60.0, 120.0, 150.0, 250.0])
    t = 90 / 7
    got = m.conditional_expected("bgnbd", np.array([r, alpha, a, b]), t, x, t_x, T)
    assert np.all(np.isfinite(got)) and np.all(got > 0)

    # The same expectation from the defining series, summed term by term in log space.
    def series_h(xi: float, Ti: float) -> float:
        z = t / (alpha + Ti + t)
        log_terms, lt = [0.0], 0.0
        for n in range(10_000):
            lt += (
                np.log(r + xi + n)
                + np.log(b + xi + n)
                - np.log(a + b + xi - 1 + n)
                - np.log(n + 1)
                + np.log(z)
            )
            log_terms.append(lt)
            if lt < -60:
                break
        return np.exp((r + xi) * np.log((alpha + Ti) / (alpha + Ti + t)) + np.logaddexp.reduce(log_terms))

    p_alive = special.expit(
        -np.where(
            x > 0,
            np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)),
            -np.inf,
        )
    )
    expected = [
        (a + b + xi - 1) / (a - 1) * (1 - series_h(xi, Ti)) * pa
        for xi, Ti, pa in zip(x, T, p_alive, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def _homogeneous_dropout_sample(seed: int = 5, n: int = 20_000, p_drop: float = 0.08, T_end: float = 52.0):
    """Every customer drops out with the same p: the BG/NBD optimum is the a, b -> inf limit."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(2.0, 1 / 8.0, n)  # purchase rates, Gamma(r=2, alpha=8)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T_end:
                break
            x[i], t_x[i] = x[i] + 1, t
            if rng.random() < p_drop:
                break
    return x, t_x, np.full(n, T_end)


def test_homogeneous_dropout_is_reported_as_the_limit_model():
    x, t_x, T = _homogeneous_dropout_sample()
    fit = m.fit_transactions("bgnbd", m.Triples.build(x, t_x, T))
    assert fit.converged, fit.message
    assert fit.limit == m.HOMOGENEOUS_DROPOUT
    assert set(fit.params) == set(fit.std_errors) == {"r", "alpha", "p_dropout"}  # no a, b at a bound
    assert fit.params["p_dropout"] == pytest.approx(0.08, rel=0.15)
    assert fit.params["r"] == pytest.approx(2.0, rel=0.15)
    assert all(np.isfinite(v) and v > 0 for v in fit.std_errors.values())
    # The limit is the optimum: the full model at any large concentration is no more likely.
    d = m.Triples.build(x, t_x, T)
    r, alpha, p = fit.vector
    for kappa in (1e2, 1e4, 1e6):
        full = m.bgnbd_loglik([r, alpha, p * kappa, (1 - p) * kappa], d)[0]
        assert full <= fit.loglik + 1e-6
    assert m.bgnbd_loglik([r, alpha, p * 1e9, (1 - p) * 1e9], d)[0] == pytest.approx(fit.loglik, abs=1e-3)


def test_beta_ratios_are_exact_at_huge_concentration():
    """At a + b = 7e7 the log1p sums keep ~1e-13 where betaln differences lose ~3e-7."""
    d = m.Triples.build([0.0, 1, 3, 40], [0.0, 5, 20, 50], [52.0, 52, 52, 52])
    p, kappa = 0.08, 7e7
    ours = m.bgnbd_loglik([2.0, 8.0, p * kappa, (1 - p) * kappa], d)[0]
    limit = m.bgnbd_homogeneous_loglik([2.0, 8.0, p], d)[0]
    assert ours == pytest.approx(limit, abs=1e-5)  # O(x^2 / kappa) apart, not rounding noise
    # Against mpmath-free exact arithmetic: the product of (b+k)/(a+b+k) in Python fractions.
    from fractions import Fraction

    a, b = Fraction(p * kappa), Fraction((1 - p) * kappa)
    exact = Fraction(1)
    for k in range(40):
        exact *= (b + k) / (a + b + k)
    S = m._beta_ratio_logs(float(a / (a + b)), float(1 / (a + b)), 40, gradient=False)[0]
    assert S[40] == pytest.approx(float(np.log(float(exact))), rel=1e-13)


def test_limit_model_expectations_are_the_limit_of_the_full_model():
    r, alpha, p = 0.9, 7.0, 0.1
    x = np.array([0.0, 1.0, 4.0, 12.0])
    t_x = np.array([0.0, 10.0, 30.0, 50.0])
    T = np.array([20.0, 40.0, 60.0, 52.0])
    lim = m.transaction_model("bgnbd", m.HOMOGENEOUS_DROPOUT)
    for kappa, rel in ((1e5, 1e-3), (1e7, 1e-5)):
        full = [r, alpha, p * kappa, (1 - p) * kappa]
        np.testing.assert_allclose(
            m.bgnbd_conditional_expected(full, 13.0, x, t_x, T),
            lim.conditional_expected([r, alpha, p], 13.0, x, t_x, T),
            rtol=rel,
        )
        np.testing.assert_allclose(
            m.bgnbd_p_alive(full, x, t_x, T), lim.p_alive([r, alpha, p], x, t_x, T), rtol=rel
        )
        np.testing.assert_allclose(m.bgnbd_expected(full, T), lim.expected([r, alpha, p], T), rtol=rel)


def test_unknown_model_names_are_errors():
    d = m.Triples.build([1, 0], [1.0, 0.0], [3.0, 4.0])
    with pytest.raises(ModelError, match="unknown model 'bgnb'"):
        m.fit_transactions("bgnb", d)
    with pytest.raises(ModelError, match="unknown model 'pareto'"):
        m.p_alive("pareto", [1, 1, 1, 1], [1], [1], [2])


def test_hand_written_solve_matches_numpy():
    rng = np.random.default_rng(0)
    for k in (2, 3, 4):
        A = rng.normal(size=(k, k))
        A = A @ A.T + k * np.eye(k)
        b = rng.normal(size=k)
        np.testing.assert_allclose(m._solve(A.tolist(), b.tolist()), np.linalg.solve(A, b), rtol=1e-10)
        np.testing.assert_allclose(m._inverse(A.tolist()), np.linalg.inv(A), rtol=1e-10, atol=1e-12)
        assert m._positive_definite(A.tolist()) and not m._positive_definite((-A).tolist())


def test_the_answer_does_not_depend_on_where_the_search_stopped(triples):
    """The Newton polish, not the L-BFGS-B path, decides the fit: different end points, same answer."""
    fit = m.fit_transactions("bgnbd", triples)
    total = float(triples.weight.sum())

    def ll(th):
        r, alpha, phi, eps = np.exp(th[0]), np.exp(th[1]), 1 / (1 + np.exp(-th[2])), np.exp(th[3])
        v, g = m.bgnbd_loglik_mean_form(r, alpha, phi, eps, triples, gradient=True)
        return v, np.array([g[0] * r, g[1] * alpha, g[2] * phi * (1 - phi), g[3] * eps])

    objective = m._objective(ll, 1 / total)
    r, alpha, a, b = fit.vector
    best = np.array([np.log(r), np.log(alpha), np.log(a / b), -np.log(a + b)])
    for shift in (np.array([1e-3, -2e-3, 1e-3, 5e-3]), np.array([-3e-2, 2e-2, -4e-2, 1e-2])):
        polished = m._newton(objective, best + shift)
        np.testing.assert_allclose(polished.theta, best, rtol=1e-9, atol=1e-9)


# --- Gamma-Gamma's constant-spend limit (p -> inf with p * gamma fixed) -----------------------------
def _constant_spend_sample(n: int = 2000, q: float = 3.0, scale: float = 60.0) -> m.SpendData:
    """Every customer's transactions worth the same; customer means an evenly spread inverse-gamma sample."""
    rng = np.random.default_rng(5)
    u = special.gammaincinv(q, (np.arange(n) + 0.5) / n)  # scale / mean ~ gamma(q, 1), stratified
    return m.SpendData.build(rng.integers(1, 30, n), scale / rng.permutation(u))


def test_gamma_gamma_tends_to_the_inverse_gamma_limit_at_large_p(cdnow):
    """ll(p, q, scale/p) -> the limit's ll, at the rate of the one-sided derivative in eps = 1/p."""
    d = m.SpendData.build(cdnow["x"], cdnow["m"])
    q, scale = 3.74, 96.5
    limit, grad = m.gamma_gamma_loglik_mean_form(q, scale, 0.0, d, gradient=True)
    assert limit == pytest.approx(
        float(np.sum(stats.invgamma.logpdf(d.m, q, scale=scale))), rel=1e-12
    )  # scipy's inverse gamma, independently
    for p, rel in ((1e4, 1e-2), (1e6, 1e-4), (1e8, 1e-5), (1e10, 1e-4)):  # O(1/p), then rounding
        full = m.gamma_gamma_loglik([p, q, scale / p], d)[0]
        assert (full - limit) * p == pytest.approx(grad[2], rel=rel), p
    # At moderate p the mean form is the paper's closed form.
    for p, g in ((6.25, 15.44), (200.0, 0.5)):
        px = p * d.x
        paper = np.sum(
            special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(g)
            + (px - 1) * np.log(d.m) + px * np.log(d.x) - (px + q) * np.log(g + d.x * d.m)
        )  # fmt: skip
        assert m.gamma_gamma_loglik([p, q, g], d)[0] == pytest.approx(paper, rel=1e-11)


GAMMA_GAMMA_FORMS = {  # each parametrisation and a point (its first two coordinates) to check it at
    "mean form (q, scale, eps)": (m.gamma_gamma_loglik_mean_form, (2.3, 40.0)),
    "homogeneous form (p, nu, delta)": (m.gamma_gamma_homogeneous_form_loglik, (2.3, 0.05)),
}


@pytest.mark.parametrize("form", GAMMA_GAMMA_FORMS)
@pytest.mark.parametrize("eps", [0.3, 1e-3, 1e-8, 0.0])
def test_gamma_gamma_form_gradients_match_finite_differences(cdnow, form, eps):
    """Both Gamma-Gamma parametrisations, inside and on their boundary (one-sided there)."""
    f, point = GAMMA_GAMMA_FORMS[form]
    d = m.SpendData.build(cdnow["x"], cdnow["m"])
    theta = np.array([*point, eps])
    _, grad = f(*theta, d, gradient=True)
    for i in range(3):
        h = 1e-6 * theta[i] if i < 2 else (min(1e-6, 0.1 * eps) if eps > 0 else 1e-9)
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] = max(dn[i] - h, 0.0)  # one-sided at the boundary
        fd = (f(*up, d)[0] - f(*dn, d)[0]) / (up[i] - dn[i])
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-6), i


def _limit_fit(d: m.SpendData, limit: str, expected: dict[str, tuple[float, float]]) -> m.FitResult:
    """The Gamma-Gamma fit of ``d``, checked to be the converged ``limit`` model whose parameters
    (and nothing at a bound) are ``expected`` {name: (value, rel)}, with finite standard errors."""
    fit = m.fit_gamma_gamma(d)
    assert fit.converged, fit.message
    assert fit.limit == limit
    assert set(fit.params) == set(fit.std_errors) == set(expected)
    for name, (value, rel) in expected.items():
        assert fit.params[name] == pytest.approx(value, rel=rel), name
    assert all(np.isfinite(v) and v > 0 for v in fit.std_errors.values())
    return fit


def test_constant_spend_is_reported_as_the_limit_model():
    d = _constant_spend_sample()
    fit = _limit_fit(d, m.CONSTANT_SPEND, {"q": (3.0, 0.05), "scale": (60.0, 0.05)})  # no p or gamma
    # The limit is the optimum: no finite p is more likely.
    q, scale = fit.vector
    for p in (1e1, 1e3, 1e6):
        assert m.gamma_gamma_loglik([p, q, scale / p], d)[0] < fit.loglik
    # Scoring: the full model's spend formula tends to the customer's own mean, which the limit uses.
    x, mean = np.array([1.0, 4.0, 20.0]), np.array([10.0, 55.0, 300.0])
    for p in (1e4, 1e8):
        full = m.gamma_gamma_conditional_spend(m.gamma_gamma_mean_form([p, q, scale / p]), x, mean)
        np.testing.assert_allclose(full, mean, rtol=10 / p)
    limit_form = m.gamma_gamma_mean_form(fit.vector, fit.limit)
    np.testing.assert_array_equal(m.gamma_gamma_conditional_spend(limit_form, x, mean), mean)
    assert m.gamma_gamma_population_spend(fit.vector, d, fit.limit) == (scale / (q - 1), "model_mean")


def test_gamma_gamma_full_model_wins_when_spend_varies_within_customers():
    """Spend drawn from the full model (p = 4): the interior optimum, not the limit."""
    rng = np.random.default_rng(11)
    n, p, q, g = 3000, 4.0, 3.0, 20.0
    x = rng.integers(1, 15, n)
    nu = rng.gamma(q, 1 / g, n)
    mean = rng.gamma(p * x, 1 / (nu * x))  # the mean of x gamma(p, nu) values
    fit = m.fit_gamma_gamma(m.SpendData.build(x, mean))
    assert fit.converged and fit.limit is None, fit.message
    for name, value in {"p": p, "q": q, "gamma": g}.items():
        assert fit.params[name] == pytest.approx(value, rel=0.25), name


def _homogeneous_spend_sample(seed: int, n: int = 5000, p: float = 4.0, nu: float = 0.1) -> m.SpendData:
    """Customers who do not differ in expected spend: every purchase gamma(p, rate nu), mean p/nu.

    By chance the sample's spread between customers is below or above what gamma(p, nu) purchases
    give, so the optimum is the limit for about half the seeds (0, 1, 2 of 0-5) and a finite,
    large q for the others (3, 4, 5: q ~ 400-900)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 10, n).astype(np.float64)
    return m.SpendData.build(x, rng.gamma(p * x, 1 / nu) / x)  # the mean of x gamma(p, nu) values


def test_homogeneous_form_is_the_same_likelihood_and_tends_to_the_gamma_limit(cdnow):
    """ll in (p, nu = q/gamma, delta = 1/q) equals the paper's form; at delta -> 0 it tends to the
    limit (z = x m ~ gamma(p x, rate nu), checked with scipy) at the rate of its one-sided derivative."""
    d = m.SpendData.build(cdnow["x"], cdnow["m"])
    for p, q, g in ((6.25, 3.74, 15.44), (2.0, 300.0, 30.0), (0.5, 1.2, 9.0)):
        same = m.gamma_gamma_homogeneous_form_loglik(p, q / g, 1 / q, d)[0]
        assert same == pytest.approx(m.gamma_gamma_loglik([p, q, g], d)[0], rel=1e-12)
    p, nu = 2.5, 0.07
    limit, grad = m.gamma_gamma_homogeneous_form_loglik(p, nu, 0.0, d, gradient=True)
    z = d.x * d.m
    scipy_ll = np.sum(stats.gamma.logpdf(z, p * d.x, scale=1 / nu) + np.log(d.x))  # density of m = z/x
    assert limit == pytest.approx(float(scipy_ll), rel=1e-12)
    # O(1/q), then rounding; the (q, scale, eps) form loses this difference beyond q ~ 1e7.
    for q, rel in ((1e5, 1e-2), (1e7, 1e-4), (1e9, 1e-5), (1e11, 1e-4)):
        full = m.gamma_gamma_homogeneous_form_loglik(p, nu, 1 / q, d)[0]
        assert (full - limit) * q == pytest.approx(grad[2], rel=rel), q


def test_homogeneous_spend_is_reported_as_the_limit_model():
    """Without spread between customers the full model runs along q, gamma -> inf (not converged
    in the first parametrisation); the homogeneous limit is fitted and reported instead."""
    d = _homogeneous_spend_sample(seed=1)
    fit = _limit_fit(d, m.HOMOGENEOUS_SPEND, {"p": (4.0, 0.05), "mean_spend": (40.0, 0.02)})  # no q or gamma
    p, mean_spend = fit.vector
    assert fit.loglik == pytest.approx(m.gamma_gamma_homogeneous_loglik(fit.vector, d)[0], rel=1e-12)
    for q in (1e1, 1e3, 1e6):  # the limit is the optimum: no finite q is more likely
        assert m.gamma_gamma_loglik([p, q, q * mean_spend / p], d)[0] < fit.loglik
    # Scoring: the full model's spend tends to the common mean, which the limit gives everybody.
    x, mean = np.array([1.0, 4.0, 20.0]), np.array([10.0, 55.0, 300.0])
    for q in (1e5, 1e9):
        full = m.gamma_gamma_conditional_spend(m.gamma_gamma_mean_form([p, q, q * mean_spend / p]), x, mean)
        np.testing.assert_allclose(full, mean_spend, rtol=1e3 / q)
    limit_form = m.gamma_gamma_mean_form(fit.vector, fit.limit)
    np.testing.assert_allclose(m.gamma_gamma_conditional_spend(limit_form, x, mean), mean_spend, rtol=1e-15)
    spend, source = m.gamma_gamma_population_spend(fit.vector, d, fit.limit)
    assert spend == pytest.approx(mean_spend) and source == "model_mean"


def test_both_gamma_gamma_parametrisations_reach_the_same_interior_optimum():
    """Where the optimum is a finite (large) q, the search around the homogeneous limit finds the
    same fit as the first one, so taking either answer cannot change a converged result."""
    d = _homogeneous_spend_sample(seed=3)
    first = m.fit_gamma_gamma(d)
    second = m._fit_gamma_gamma_around_homogeneous_spend(d)
    assert first.converged and second.converged and first.limit is second.limit is None
    assert first.params["q"] > 100
    for name in ("p", "q", "gamma"):
        assert second.params[name] == pytest.approx(first.params[name], rel=1e-4), name
    assert second.loglik == pytest.approx(first.loglik, rel=1e-12)


# --- Pareto/NBD in mean/concentration form and its homogeneous-dropout limit ----------------------
@pytest.mark.parametrize("eps", [0.8, 1e-3, 0.0])
def test_paretonbd_mean_form_gradient_matches_finite_differences(triples, eps):
    theta = np.array([0.55, 10.6, 0.05, eps])
    _, grad = m.paretonbd_loglik_mean_form(*theta, triples, gradient=True)
    for i in range(4):
        h = 1e-6 * theta[i] if i < 3 else (1e-3 * eps if eps > 0 else 1e-7)
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] = max(dn[i] - h, 0.0)  # one-sided at the boundary eps = 0
        ll_up = m.paretonbd_loglik_mean_form(*up, triples)[0]
        fd = (ll_up - m.paretonbd_loglik_mean_form(*dn, triples)[0]) / (up[i] - dn[i])
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-4), i


def _exponential_lifetime_sample(n: int = 3000, seed: int = 3):
    """Pareto/NBD customers whose lifetimes are all exponential with rate 0.02 (no dropout heterogeneity)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(1.5, 1 / 10.0, n)
    T = rng.integers(7, 700, n) / 7.0
    end = np.minimum(T, rng.exponential(1 / 0.02, n))
    x, t_x, t = np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        t[active] += rng.exponential(1 / lam[active])
        active &= t < end
        x[active] += 1
        t_x[active] = t[active]
    return x, np.floor(t_x * 7) / 7, T


def test_homogeneous_pareto_dropout_is_reported_as_the_limit_model():
    d = m.Triples.build(*_exponential_lifetime_sample())
    fit = m.fit_transactions("paretonbd", d)
    assert fit.converged, fit.message
    assert fit.limit == m.HOMOGENEOUS_DROPOUT
    assert set(fit.params) == set(fit.std_errors) == {"r", "alpha", "dropout_rate"}  # no s, beta at a bound
    assert fit.params["dropout_rate"] == pytest.approx(0.02, rel=0.25)
    assert fit.params["r"] == pytest.approx(1.5, rel=0.25)
    r, alpha, mu = fit.vector
    assert fit.loglik == pytest.approx(m.paretonbd_homogeneous_loglik([r, alpha, mu], d)[0], rel=1e-12)
    for s in (1e1, 1e3, 1e6):  # no finite concentration is more likely
        assert m.paretonbd_loglik([r, alpha, s, s / mu], d)[0] <= fit.loglik + 1e-6


def test_pareto_limit_model_expectations_are_the_limit_of_the_full_model():
    r, alpha, mu = 0.9, 7.0, 0.03
    x = np.array([0.0, 1.0, 4.0, 12.0])
    t_x = np.array([0.0, 10.0, 30.0, 50.0])
    T = np.array([20.0, 40.0, 60.0, 52.0])
    lim = m.transaction_model("paretonbd", m.HOMOGENEOUS_DROPOUT)
    d = m.Triples.build(x, t_x, T)
    for s, rel in ((1e4, 1e-3), (1e7, 1e-6)):
        full = [r, alpha, s, s / mu]
        np.testing.assert_allclose(
            m.paretonbd_conditional_expected(full, 13.0, x, t_x, T),
            lim.conditional_expected([r, alpha, mu], 13.0, x, t_x, T),
            rtol=rel,
        )
        np.testing.assert_allclose(
            m.paretonbd_p_alive(full, x, t_x, T), lim.p_alive([r, alpha, mu], x, t_x, T), rtol=rel
        )
        np.testing.assert_allclose(m.paretonbd_expected(full, T), lim.expected([r, alpha, mu], T), rtol=rel)
        assert m.paretonbd_loglik(full, d)[0] == pytest.approx(lim.loglik([r, alpha, mu], d)[0], rel=rel)


@pytest.mark.parametrize(
    "params",
    [[0.553, 10.578, 0.606, 11.669], [1.0, 20.0, 5.0, 1.0], [2.0, 1.0, 0.5, 0.2], [0.3, 0.5, 0.2, 100.0]],
)
def test_paretonbd_quadrature_equals_the_closed_form_per_customer(cdnow, params):
    """Every customer's log-likelihood, beta above and below alpha, to rounding level."""
    x, t_x, T = (cdnow[c].to_numpy() for c in ("x", "t_x", "T"))
    r, alpha, s, beta = params
    t1, t2, _, _ = m._pnbd_log_terms(r, alpha, s / beta, 1 / s, x, t_x, T, gradient=False)
    ours = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + np.logaddexp(t1, t2)
    np.testing.assert_allclose(ours, pnbd_ll_direct(params, x, t_x, T), rtol=0, atol=1e-10)
