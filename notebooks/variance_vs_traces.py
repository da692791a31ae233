# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Value and gradient variance versus traces per prompt, on synthetic bandits
#
# The paper (Gong et al., *Kernelized Advantage Estimation*) argues that when only a few
# responses ("traces") per prompt are affordable, a prompt's past rewards, smoothed over the
# training-step index, give a far better baseline than the current group alone. Here every
# advantage estimator of `kernelvalue.advantage` runs on contextual bandits whose true value
# $V_i(x)=\sum_a \pi_i(a|x)\,\mu(x,a)$ and exact policy gradient are known at every step
# (`kernelvalue.bandits`), so errors are measured exactly rather than against Monte-Carlo truth.
#
# * **value MSE**: mean over responses of $(\hat V - V_i(x))^2$, the baseline each estimator used;
# * **gradient MSE**: $\lVert \hat g - \nabla J\rVert^2$ with
#   $\hat g = \frac1n\sum_x \frac1G\sum_g A_g\,(e_{a_g}-\pi(\cdot|x))$.
#
# All estimators are evaluated on the *same* samples at every step (paired comparisons). Sections 1-6
# take well under two minutes on two CPU cores. Section 7 (beyond the paper: `kae_auto` on a suite of
# scenarios) runs a small configuration by default (the CI run) and the full suite, 10 seeds, when
# `KERNELVALUE_FULL=1` (about half an hour on two busy cores); the committed notebook holds the full run.
# Figures go to `figures/` (or `$KERNELVALUE_FIGURES`).

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from kernelvalue.advantage import ESTIMATORS
from kernelvalue.bandits import (
    LogitDrift,
    SoftmaxBandit,
    kae_value_moments,
    run_comparison,
    summarize,
    value_bias_variance,
)

try:
    from kernelvalue.diagnostics import mse_rate
except ImportError:  # the same OLS-on-logs fit
    mse_rate = None

T0 = time.perf_counter()
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
FIG_DIR = Path(os.environ.get("KERNELVALUE_FIGURES") or ROOT / "figures")
FIG_DIR.mkdir(parents=True, exist_ok=True)
pd.set_option("display.precision", 4)
SMOOTHERS = ("kae", "kae_ll", "kae_shrink")  # estimators that take a bandwidth h
H_DEFAULT = 0.5
NAMES = sorted(ESTIMATORS)
FULL = os.environ.get("KERNELVALUE_FULL", "") not in ("", "0")
print("estimators:", ", ".join(NAMES))
print("figures ->", FIG_DIR.resolve())
print("section 7:", "full suite" if FULL else "small CI configuration (KERNELVALUE_FULL=1 for the full suite)")


def specs(h=H_DEFAULT, names=NAMES):
    """Registry specs: the kernel smoothers at bandwidth h, the rest with their defaults."""
    return {n: (n, {"bandwidth": h}) if n in SMOOTHERS else n for n in names}


# %% [markdown]
# ## 1. The training bandit
#
# 64 prompts with 4 actions each; mean rewards $\mu(x,a)=\sigma(d_x+c_{x,a})$ with a prompt
# difficulty $d_x\sim N(0,2^2)$, so prompt values are spread over $(0,1)$ as for real RLVR prompts.
# Bernoulli rewards. The paper's schedule: 16 prompts per step, each minibatch served $J=8$
# consecutive steps. The policy is trained by policy-gradient steps driven by the **oracle**
# advantage (so the policy path is the same for every estimator at a given $G$), learning rate 0.3
# (a slowly moving policy, the regime the paper's theory assumes).

# %%
P, A, PER_STEP, J, STEPS, LR = 64, 4, 16, 8, 160, 0.3
bandit = SoftmaxBandit.random(P, A, seed=3)
v0 = bandit.values()
print(f"initial values: mean {v0.mean():.3f}, sd {v0.std():.3f}, range [{v0.min():.2f}, {v0.max():.2f}]")

# %% [markdown]
# ## 2. Value and gradient MSE versus traces per prompt $G$

# %%
GS = (1, 2, 4, 8, 16)
runs = []
for G in GS:
    df = run_comparison(bandit, specs(), n_steps=STEPS, G=G, prompts_per_step=PER_STEP, J=J, driver="oracle",
                        lr=LR, seed=100 + G)  # fmt: skip
    s = summarize(df)
    s["G"] = G
    runs.append(s.reset_index())
by_g = pd.concat(runs, ignore_index=True)
value_table = by_g.pivot(index="estimator", columns="G", values="value_mse")
grad_table = by_g.pivot(index="estimator", columns="G", values="grad_mse")
print("value MSE (mean over steps):")
display(value_table.sort_values(4))

# %%
print("gradient MSE relative to the oracle's (same samples):")
display((grad_table / grad_table.loc["oracle"]).sort_values(4))

# %%
STYLE = {"kae": ("C3", "o", "-"), "kae_ll": ("C3", "s", "--"), "kae_shrink": ("C3", "^", ":"),
         "kae_cv": ("C3", "D", "-."), "grpo": ("C0", "o", "-"), "drgrpo": ("C0", "s", "--"),
         "gpg": ("C0", "^", ":"), "rloo": ("C0", "D", "-."), "reinforce": ("C2", "o", "-"),
         "reinforce_pp": ("C2", "s", "--"), "oracle": ("k", "x", "-"), "spo": ("C4", "o", "-"),
         "krpo": ("C4", "s", "--"), "jspo": ("C4", "^", ":"), "ema": ("C4", "D", "-."),
         "kae_auto": ("C1", "*", "-")}  # fmt: skip


def plot_lines(ax, table, skip=()):
    for name in table.index:
        if name in skip:
            continue
        c, m, ls = STYLE.get(name, ("grey", ".", "-"))
        ax.plot(table.columns, table.loc[name], color=c, marker=m, ls=ls, label=name, lw=1.3, ms=4)


fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
plot_lines(axes[0], value_table, skip=("oracle",))  # the oracle's value error is 0
axes[0].set(xscale="log", yscale="log", xlabel="traces per prompt G", ylabel="value MSE",
            title="Value MSE vs G (KAE family red, GRPO family blue)")  # fmt: skip
plot_lines(axes[1], grad_table)
axes[1].set(xscale="log", yscale="log", xlabel="traces per prompt G", ylabel="gradient MSE",
            title="Gradient MSE vs G")  # fmt: skip
for ax in axes:
    ax.set_xticks(GS, [str(g) for g in GS])
axes[1].legend(fontsize=7, ncol=3)
fig.tight_layout()
fig.savefig(FIG_DIR / "variance_vs_G.png", dpi=120)
plt.show()

# %% [markdown]
# Reading the figure:
#
# * The group baselines (GRPO, Dr. GRPO, GPG share the group mean; RLOO leaves the response out)
#   have value MSE $\approx \overline{V(1-V)}/G$ (or $/(G-1)$): the only way to improve them is more
#   traces. At $G=1$ there is no group at all (baseline 0, as REINFORCE).
# * KAE and the history-based peers (SPO, KRPO, EMA) pool the prompt's past rewards, so their value
#   MSE stays low even at $G=1$ (single stream, the paper's Figure 4 regime) and at $G=4$ is a small
#   fraction of the group baselines'.
# * REINFORCE++'s batch-global mean ignores how prompt values differ: its value MSE is roughly the
#   spread of $V$ across prompts, whatever $G$.
# * Gradient MSE: a baseline independent of the response's own reward adds roughly
#   $\mathrm{MSE}(\hat V)\,\mathbb E\lVert\text{score}\rVert^2$ to the oracle's gradient variance, so
#   KAE's gradient MSE is within a few percent of the oracle's (the "oracle property").
# * Caveats we measured and state plainly: the group-*mean* advantage (Dr. GRPO, GPG) equals
#   $\frac{G-1}{G}$ times RLOO's, a gradient shrunk towards zero; on these bandits, where the
#   per-step gradient is noisy relative to its size, that shrinkage *lowers* gradient MSE below the
#   oracle's despite the bias: gradient MSE alone does not rank training quality. (JSPO is
#   leave-one-out at both levels, so its gradient is unbiased; at $G=1$ its baseline is the other
#   prompts' mean.) GRPO and REINFORCE++ divide by a standard deviation
#   and so estimate a rescaled gradient; their gradient MSE is not comparable in scale.

# %%
g4 = by_g[by_g.G == 4].set_index("estimator")
print(f"G = 4: value MSE ratio KAE / RLOO = {g4.value_mse['kae'] / g4.value_mse['rloo']:.3f}, "
      f"KAE / GRPO = {g4.value_mse['kae'] / g4.value_mse['grpo']:.3f}, "
      f"KAE / REINFORCE++ = {g4.value_mse['kae'] / g4.value_mse['reinforce_pp']:.3f}")  # fmt: skip
print(f"G = 4: gradient MSE ratio KAE / oracle = {g4.grad_mse['kae'] / g4.grad_mse['oracle']:.3f}, "
      f"RLOO / oracle = {g4.grad_mse['rloo'] / g4.grad_mse['oracle']:.3f}")  # fmt: skip

# %% [markdown]
# ## 3. Sensitivity to the bandwidth $h$
#
# Same bandit and schedule, $G=4$, the KAE family over a grid of relative bandwidths (the window
# at step $i$ spans $i h$ steps). `kae_cv` chooses $h$ itself and is drawn as a horizontal line,
# with the group baselines and the oracle for reference.

# %%
HS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
spec_h = {f"{n}@{h}": (n, {"bandwidth": h}) for n in SMOOTHERS for h in HS}
spec_h.update({n: n for n in ("kae_cv", "rloo", "grpo", "reinforce_pp", "oracle")})
dfh = run_comparison(bandit, spec_h, n_steps=STEPS, G=4, prompts_per_step=PER_STEP, J=J, driver="oracle", lr=LR,
                     seed=104)  # fmt: skip
sh = summarize(dfh)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, col in zip(axes, ("value_mse", "grad_mse")):
    for n in SMOOTHERS:
        c, m, ls = STYLE[n]
        ax.plot(HS, [sh.loc[f"{n}@{h}", col] for h in HS], color=c, marker=m, ls=ls, label=n)
    for n in ("kae_cv", "rloo", "grpo", "reinforce_pp", "oracle"):
        if col == "value_mse" and n == "oracle":
            continue
        c, m, ls = STYLE[n]
        ax.axhline(sh.loc[n, col], color=c, ls=ls, lw=1, label=n)
    ax.set(xscale="log", yscale="log", xlabel="relative bandwidth h", ylabel=col.replace("_", " "))
axes[0].set_title("Value MSE vs h (G = 4)")
axes[1].set_title("Gradient MSE vs h (G = 4); grpo / reinforce++ std-scaled")
axes[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIG_DIR / "variance_vs_h.png", dpi=120)
plt.show()
print(sh.loc[[f"kae@{h}" for h in HS] + ["kae_cv", "rloo"], ["value_mse", "grad_mse"]])

# %% [markdown]
# As the paper's Figure 3 reports, KAE stays below GRPO and REINFORCE++ over the whole range of
# $h$. Too small an $h$ leaves only the current group (KAE tends to RLOO); on this slowly moving
# policy larger windows keep helping, up to the length of the schedule's revisits.

# %% [markdown]
# ## 4. Bias-variance decomposition of KAE's value error versus $h$
#
# To separate bias from variance, 8 template prompts are replicated 200 times (independent rewards,
# identical policy path), and the policy follows a prescribed drift that is linear in the action
# probabilities, so $V_i(x)$ is exactly affine in $i$. At step 60 the replicate mean and variance
# of KAE's baseline give $\text{bias}^2$ and variance; the lines are the exact finite-sample values
# from `kae_value_moments` (rewards are independent given the prescribed path, so $E\hat V$ and
# $\mathrm{Var}\,\hat V$ are sums over the window).

# %%
tmpl = SoftmaxBandit.random(8, 4, difficulty_scale=1.0, seed=11)
rg = np.random.default_rng(12)
N_BV, G_BV, R_BV = 60, 4, 200
drift = LogitDrift(rg.normal(0, 3, tmpl.theta.shape), rg.normal(0, 3, tmpl.theta.shape), N_BV, interpolate="probs")
HS_BV = (0.03, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
bv = value_bias_variance(tmpl, {h: ("kae", {"bandwidth": h}) for h in HS_BV}, n_replicates=R_BV, n_steps=N_BV,
                         G=G_BV, drift=drift, seed=3).set_index("estimator").loc[list(HS_BV)]  # fmt: skip
v_path, s2_path = tmpl.value_path(drift, N_BV)
h_fine = np.geomspace(0.02, 1.0, 60)
exact = np.array([kae_value_moments(v_path, s2_path, step=N_BV, bandwidth=h, G=G_BV) for h in h_fine])
ex_b2 = np.mean((exact[:, 0] - v_path[:, -1]) ** 2, axis=1)
ex_var = np.mean(exact[:, 1], axis=1)

fig, ax = plt.subplots(figsize=(6.5, 4.5))
debiased = bv.bias2 - bv.bias2_noise  # the plug-in bias^2 carries the replicate mean's noise
ax.plot(HS_BV, debiased.where(debiased > 0), "o", color="C3", label="bias$^2$ (replicates, debiased)")
ax.plot(HS_BV, bv.bias2_noise, "_", color="C3", ms=12, label="noise floor of bias$^2$ (var / R)")
ax.plot(HS_BV, bv.variance, "s", color="C0", label="variance (replicates)")
ax.plot(HS_BV, bv.mse, "^", color="k", label="MSE (replicates)")
ax.plot(h_fine, ex_b2, color="C3", lw=1)
ax.plot(h_fine, ex_var, color="C0", lw=1)
ax.plot(h_fine, ex_b2 + ex_var, color="k", lw=1, label="exact (lines)")
ax.set(xscale="log", yscale="log", xlabel="relative bandwidth h", ylabel="KAE value error at step 60",
       title="KAE bias-variance trade-off in h (G = 4, linear drift)")  # fmt: skip
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG_DIR / "kae_bias_variance_vs_h.png", dpi=120)
plt.show()
print(bv)
print(f"exact MSE-optimal h on this drift: {h_fine[np.argmin(ex_b2 + ex_var)]:.3f}")

# %% [markdown]
# Bias$^2$ grows with $h$ (a one-sided window at the current step lags the drifting value by about
# $ih/3$ steps for the triangular kernel) while the variance falls like $1/(\text{effective window
# size})$; the replicate estimates sit on the exact curves. Below $h\approx0.1$ the bias$^2$ is under
# the Monte-Carlo noise floor of 200 replicates (its points are then missing or noisy).
#
# ## 5. The $N^{-2/3}$ rate
#
# Runs of growing length $n$ follow the same policy path in relative time $t=i/n$ (infill
# asymptotics); all 300 prompts are served every step with $G=4$, and the bandwidth shrinks as
# $h=3N^{-1/3}$ with $N=(n-1)G$ the history length at the last step, where the value MSE is
# measured. Theory: KAE's MSE is $O(N^{-2/3})$; the group mean's does not depend on $N$.

# %%
P_R, G_R = 300, 4
base_r = SoftmaxBandit.random(P_R, 4, difficulty_scale=1.0, seed=6)
rg = np.random.default_rng(7)
start, end = rg.normal(0, 3.0, base_r.theta.shape), rg.normal(0, 3.0, base_r.theta.shape)
rate_rows = []
for n in (25, 50, 100, 200, 400, 800):
    N = (n - 1) * G_R
    h = 3.0 * N ** (-1 / 3)
    d = LogitDrift(start, end, horizon=n, interpolate="probs")
    dfr = run_comparison(base_r, {"kae": ("kae", {"bandwidth": h}), "grpo": "grpo"}, n_steps=n, G=G_R, drift=d,
                         eval_steps=[n], seed=n)  # fmt: skip
    m = dfr.set_index("estimator").value_mse
    vp, sp = base_r.value_path(d, n)
    mean, var = kae_value_moments(vp, sp, step=n, bandwidth=h, G=G_R)
    b2 = np.mean((mean - vp[:, -1]) ** 2)
    rate_rows.append({"N": N, "h": h, "kae": m["kae"], "grpo": m["grpo"], "kae_exact": b2 + var.mean(),
                      "bias2_share": b2 / (b2 + var.mean())})  # fmt: skip
rate = pd.DataFrame(rate_rows)


def fit_slope(ns, mses):
    if mse_rate is not None:
        f = mse_rate(ns, mses)
        return f.slope, f.ci
    from scipy import stats

    f = stats.linregress(np.log(ns), np.log(mses))
    t = stats.t.ppf(0.975, len(ns) - 2)
    return f.slope, (f.slope - t * f.stderr, f.slope + t * f.stderr)


k_slope, k_ci = fit_slope(rate.N.values, rate.kae.values)
g_slope, g_ci = fit_slope(rate.N.values, rate.grpo.values)
display(rate)
print(f"KAE slope {k_slope:.3f} (95% CI {k_ci[0]:.3f}..{k_ci[1]:.3f}); GRPO slope {g_slope:.3f} "
      f"(95% CI {g_ci[0]:.3f}..{g_ci[1]:.3f}); theory -2/3 and 0")  # fmt: skip

fig, ax = plt.subplots(figsize=(6.5, 4.5))
ax.loglog(rate.N, rate.kae, "o", color="C3", label=f"KAE (slope {k_slope:.2f})")
ax.loglog(rate.N, rate.kae_exact, "-", color="C3", lw=1, label="KAE exact")
ax.loglog(rate.N, rate.grpo, "s", color="C0", label=f"GRPO group mean (slope {g_slope:.2f})")
ax.loglog(rate.N, rate.kae_exact.iloc[0] * (rate.N / rate.N.iloc[0]) ** (-2 / 3), ":", color="grey",
          label="$N^{-2/3}$")  # fmt: skip
ax.set(xlabel="history length N", ylabel="value MSE at the last step", title="Value MSE rate, h = 3 N^(-1/3)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG_DIR / "kae_rate.png", dpi=120)
plt.show()

# %% [markdown]
# Bias$^2$ is a stable ~40% of KAE's MSE along the whole sequence (column `bias2_share`), so the
# slope is the trade-off's, not a variance-only artefact.
#
# ## 6. Beyond the paper: where each KAE variant helps, and where it does not
#
# * **`kae_ll`** (local-linear over the step index) removes the lag of the one-sided window, at
#   the price of boundary-extrapolation variance.
# * **`kae_shrink`** shrinks each prompt's estimate toward the other prompts' mean (empirical
#   Bayes), by how noisy it is relative to the spread of prompt values.
# * **`kae_cv`** picks $h$ online by forward leave-one-out prediction of each step's rewards.
#
# Each is run in a setting built to favour it and one built against it, value MSE averaged over
# the evaluated steps.

# %%
def two_action(P, n, fast):
    """Every prompt pays 0.05 / 0.95; pi(good) goes 0.05 -> 0.95 linearly over n steps, or stays."""
    b = SoftmaxBandit(np.tile([[0.05, 0.95]], (P, 1)))
    lo, hi = np.log([0.95, 0.05]), np.log([0.05, 0.95])
    return b, LogitDrift(np.tile(lo, (P, 1)), np.tile(hi if fast else lo, (P, 1)), n, interpolate="probs")


def fixed(b):
    return LogitDrift(b.theta, b.theta, 1)


def mean_mse(b, d, spec, n, G, evals, seed=0):
    return run_comparison(b, spec, n_steps=n, G=G, drift=d, eval_steps=evals, seed=seed).groupby(
        "estimator").value_mse.mean()  # fmt: skip


fam = {"kae@0.5": ("kae", {"bandwidth": 0.5}), "kae@0.2": ("kae", {"bandwidth": 0.2}),
       "kae@0.05": ("kae", {"bandwidth": 0.05}), "kae_ll@0.5": ("kae_ll", {"bandwidth": 0.5}),
       "kae_shrink@0.5": ("kae_shrink", {"bandwidth": 0.5}), "kae_cv": "kae_cv", "kae_auto": "kae_auto",
       "rloo": "rloo"}  # fmt: skip
similar = SoftmaxBandit.random(200, 4, difficulty_scale=0.2, action_scale=0.2, seed=0)
spread = SoftmaxBandit.random(200, 4, difficulty_scale=3.0, action_scale=1.5, seed=0)
settings = {
    "fast linear drift (G=4, steps 80-100)": (*two_action(200, 100, True), 100, 4, range(80, 101)),
    "no drift (G=4, steps 80-100)": (*two_action(200, 100, False), 100, 4, range(80, 101)),
    "similar prompts, short history (G=2, steps 2-12)": (similar, fixed(similar), 12, 2, range(2, 13)),
    "spread prompts, long history (G=4, steps 80-100)": (spread, fixed(spread), 100, 4, range(80, 101)),
}
variants = pd.DataFrame({name: mean_mse(b, d, fam, n, G, ev) for name, (b, d, n, G, ev) in settings.items()}).T
display(variants[list(fam)])
rel = variants[list(fam)].div(variants["kae@0.5"], axis=0)
print("relative to kae@0.5:")
display(rel)

# %% [markdown]
# What the table shows (the numbers above are recomputed on every run; the statements are the
# ones `tests/test_bandits.py` checks):
#
# * `kae_ll` wins clearly under a fast linear drift (about 4x lower MSE than KAE at the same $h$,
#   and below KAE at its best fixed $h$ too) and loses clearly with no drift (about 3x higher): use
#   it when the policy moves fast relative to the window, not by default.
# * `kae_auto` (section 7) has the lowest error with similar prompts and short histories and with
#   spread prompts (half of `kae@0.5`'s), the second lowest with no drift (after `kae_shrink`, both
#   far below the rest), but it loses the fast linear drift to a
#   well-chosen fixed window (about 2x `kae@0.2`, 0.6x `kae@0.5`): there every prompt drifts the same
#   way at a steady speed, and its per-window drift test leaves the moderate bias of mid-size windows
#   undetected (section 7.6).
# * `kae_shrink` wins by an order of magnitude when prompts have similar values and histories are
#   short (early training, small $G$); with spread prompt values and long histories its
#   shrinkage factor goes to zero and it matches KAE. We found no setting where it is clearly worse.
# * `kae_cv` tracks the bandwidth the drift needs: with no drift it matches the best grid point
#   (the widest window); under the fast drift it selects a smaller $h$ and lands within ~1.2-1.5x of
#   the best fixed $h$ while a mis-set $h=0.5$ is ~3x worse. Where it does not help: when a fixed $h$
#   is already well chosen it is slightly worse (selection noise, and it lags the drift by up to
#   `refit_every` steps), and it cannot go beyond its grid (default max 0.5): on the slowly moving
#   training bandit of sections 2-3, where $h=1$ is better still, it sits a little above `kae@0.5`.

# %%
b_fast, d_fast = two_action(200, 100, True)
from kernelvalue.advantage import get_estimator  # noqa: E402

cv = get_estimator("kae_cv")
run_comparison(b_fast, {"kae_cv": cv}, n_steps=100, G=4, drift=d_fast, eval_steps=[100], seed=0)
print(f"kae_cv selected h = {cv.bandwidth:.3f} under the fast drift "
      f"(grid {np.round(cv.grid, 3).tolist()})")  # fmt: skip
print(f"sections 1-6 run time: {time.perf_counter() - T0:.1f} s")

# %% [markdown]
# ## 7. Beyond the paper: `kae_auto`, an adaptive window with empirical-Bayes pooling
#
# Sections 2-6 show what the issue (#12) reported: KAE's value error is far below GRPO's, but SPO's
# Beta tracker beats KAE at small $G$, KRPO at $G\le2$, and no fixed $h$ suits every drift. `kae_auto`
# (`kernelvalue.advantage.adaptive`; its docstring has the derivation) does the two things the paper
# names as future work:
#
# * **an adaptive bandwidth.** A bank of KAE windows (exponential kernel, time constants
#   $L=1,2,\dots,512$ steps, plus the current group alone) is kept by recursion, $O(H)$ per prompt. For
#   every response it estimates each window's MSE,
#   $$\mathrm{MSE}(\hat V_L)\approx \frac{\sigma^2}{n_L} + \delta_L^2\,\lambda_L^2,$$
#   with $n_L$ and the mean lag $\lambda_L$ from that response's own data and the drift speed
#   $\delta_L^2$ pooled over prompts by forward validation (each new reward is predicted by every
#   window; the excess squared error over the noise is the squared bias), and takes the smallest;
#   a per-prompt Lepski test (on Anscombe's variance-stabilised scale) caps the window where the
#   prompt's own data show a change. With no
#   drift the window grows as far as the history goes; after an abrupt change it shrinks within a
#   few steps and regrows as the stale rewards decay.
# * **cross-prompt shrinkage combined with cross-step smoothing**: the chosen estimate is shrunk to the
#   mean of the other prompts by $B=t/(t+\tau^2)$, $t$ its own error variance, with $\tau^2$ and the
#   pooled reward variance from the beta-binomial method of moments (for 0/1 rewards, the posterior
#   mean under a beta prior), and the reward variance model $\phi\,(V-\mathrm{lo})(\mathrm{hi}-V)$
#   with $\phi=1$ exactly for 0/1 rewards and estimated for graded ones (from the spread within
#   groups, pooled over past steps).
#
# Everything a response's baseline uses leaves that response out (the other $G-1$ responses, other
# prompts, past steps), so the policy gradient stays unbiased.
#
# ### 7.1 The scenario suite
#
# `kernelvalue.bandits.SCENARIOS`: seven situations with exactly known values, each replicated over
# seeds (fresh prompts, drift and rewards per seed; all estimators paired within a run).
# `run_suite` runs any registry estimators on it; `suite_summary` and `compare_on_suite` give
# seed-level 95% t intervals (paired differences for comparisons).

# %%
from kernelvalue.bandits import SCENARIOS, Scenario, compare_on_suite, run_suite, suite_summary  # noqa: E402

display(pd.DataFrame({n: {"description": s.description} for n, s in SCENARIOS.items()}).T)

PEERS = ["spo", "krpo", "jspo", "ema", "grpo", "rloo", "reinforce_pp"]
FAMILY = ["kae", "kae_ll", "kae_cv", "kae_shrink", "kae_auto"]
FIXED_H = {f"kae@{h}": ("kae", {"bandwidth": h}) for h in (0.05, 0.5, 1.0)}  # "kae" itself is h = 0.2
FIXED_L = {f"auto@L{L}": ("kae_auto", {"windows": [float(L)]}) for L in (4, 16, 64, 512)}  # one window
SUITE_SPECS = {**{n: n for n in PEERS + FAMILY}, **FIXED_H, **FIXED_L}
if FULL:
    SUITE = dict(Gs=(1, 2, 4, 8, 16), seeds=range(300, 310), n_steps=200)
else:  # the CI run: every scenario, two G, two seeds, short runs
    SUITE = dict(Gs=(1, 4), seeds=range(300, 302), n_steps=40)
t_suite = time.perf_counter()
suite = run_suite(SUITE_SPECS, **SUITE)
print(f"suite: {len(SCENARIOS)} scenarios x G {SUITE['Gs']} x {len(SUITE['seeds'])} seeds x "
      f"{SUITE['n_steps']} steps, {suite.estimator.nunique()} estimators: {time.perf_counter() - t_suite:.0f} s")  # fmt: skip

# %% [markdown]
# ### 7.2 Value and gradient MSE per scenario and $G$, every estimator, with intervals

# %%
value = suite_summary(suite, "value_mse")
grad = suite_summary(suite, "grad_mse", reference="oracle")
SHOWN = PEERS + FAMILY
GS7 = list(SUITE["Gs"])
fig, axes = plt.subplots(2, len(SCENARIOS), figsize=(3.2 * len(SCENARIOS), 7.5), sharex=True)
for col, name in enumerate(SCENARIOS):
    for row, (table, label) in enumerate(((value, "value MSE"), (grad, "gradient MSE / oracle's"))):
        ax = axes[row, col]
        for est in SHOWN:
            if row == 1 and est in ("grpo", "reinforce_pp"):
                continue  # std-scaled advantages: another gradient scale
            c, m, ls = STYLE.get(est, ("grey", ".", "-"))
            t = table.xs((name, est), level=("scenario", "estimator")).reindex(GS7)
            err = np.vstack([t["mean"] - t["ci_low"], t["ci_high"] - t["mean"]])
            ax.errorbar(GS7, t["mean"], yerr=np.nan_to_num(err), color=c, marker=m, ls=ls, ms=3.5, lw=1.1,
                        capsize=2, label=est, alpha=1.0 if est == "kae_auto" else 0.75)  # fmt: skip
        ax.set(xscale="log", yscale="log", xticks=GS7)
        ax.set_xticklabels([str(g) for g in GS7])
        if row == 0:
            ax.set_title(name, fontsize=10)
        else:
            ax.axhline(1.05, color="k", ls=":", lw=0.8)
            ax.set_xlabel("G")
        if col == 0:
            ax.set_ylabel(label)
axes[0, -1].legend(fontsize=6.5, ncol=2)
fig.suptitle("Scenario suite: mean over seeds with 95% t intervals (dotted: oracle + 5%)", fontsize=11)
fig.tight_layout()
fig.savefig(FIG_DIR / "kae_auto_suite.png", dpi=110)
plt.show()

# %%
print("value MSE, mean over seeds (rows: scenario, G):")
display(value["mean"].unstack("estimator")[SHOWN])
print("gradient MSE relative to the oracle's (paired per seed, mean over seeds):")
display(grad["mean"].unstack("estimator")[[e for e in SHOWN if e not in ("grpo", "reinforce_pp")]])

# %% [markdown]
# ### 7.3 The targets, cell by cell
#
# * **value MSE vs the best peer** (chosen per cell on the same data, which favours the peer): the
#   paired difference `kae_auto - best` with its 95% interval over seeds; `worse` only when the whole
#   interval lies above 0;
# * **vs plain KAE** (the paper's estimator, $h=0.2$), the same way;
# * **gradient MSE within 5% of the oracle's** at $G\ge4$: the mean of the paired ratios.

# %%
vs_peer = compare_on_suite(suite, "kae_auto", PEERS)
vs_kae = compare_on_suite(suite, "kae_auto", ["kae"])
g_auto = grad.xs("kae_auto", level="estimator")
targets = pd.DataFrame({
    "best peer": vs_peer["best"], "kae_auto": vs_peer["candidate_mean"], "best peer MSE": vs_peer["best_mean"],
    "ratio": vs_peer["ratio"], "diff CI low": vs_peer["ci_low"], "diff CI high": vs_peer["ci_high"],
    "vs peer": vs_peer["verdict"], "ratio to kae": vs_kae["ratio"], "vs kae": vs_kae["verdict"],
    "grad / oracle": g_auto["mean"], "grad CI high": g_auto["ci_high"],
})  # fmt: skip
display(targets)
big = targets.index.get_level_values("G") >= 4
print(f"value MSE: worse than the best peer in {(targets['vs peer'] == 'worse').sum()} of {len(targets)} cells, "
      f"better in {(targets['vs peer'] == 'better').sum()}; mean ratio to the best peer over the suite "
      f"{targets['ratio'].mean():.3f} (geometric {np.exp(np.log(targets['ratio']).mean()):.3f})")
print(f"vs KAE: worse in {(targets['vs kae'] == 'worse').sum()} cells, better in "
      f"{(targets['vs kae'] == 'better').sum()}; mean ratio {targets['ratio to kae'].mean():.3f}")
print(f"gradient MSE within 5% of the oracle's at G >= 4: {(targets.loc[big, 'grad / oracle'] <= 1.05).sum()} of "
      f"{big.sum()} cells; worst {targets.loc[big, 'grad / oracle'].max():.3f} "
      f"({targets.loc[big, 'grad / oracle'].idxmax()})")  # fmt: skip
best_grad = grad["mean"].unstack("estimator")[[e for e in SHOWN if e not in ("grpo", "reinforce_pp")]].min(axis=1)
print("cells where no estimator is within 5% of the oracle (the frontier):",
      [c for c in best_grad.index if c[1] >= 4 and best_grad[c] > 1.05])  # fmt: skip

# %% [markdown]
# ### 7.4 Does the adaptive window track the better of the fixed choices?
#
# The same suite carries KAE at four fixed relative bandwidths ($h$ = 0.05, 0.2, 0.5, 1) and
# `kae_auto`'s own machinery restricted to one window ($L$ = 4, 16, 64, 512 steps: no choice left
# except the current group alone). The best fixed choice differs by scenario and $G$ (an oracle
# choice, made after the fact); the ratio of `kae_auto` to it shows what the adaptation buys.

# %%
wide = value["mean"].unstack("estimator")
fixed_kae, fixed_L = ["kae"] + list(FIXED_H), list(FIXED_L)
track = pd.DataFrame({
    "best fixed h (KAE)": wide[fixed_kae].idxmin(axis=1), "kae_auto / best KAE h": wide["kae_auto"] / wide[fixed_kae].min(axis=1),
    "best fixed L": wide[fixed_L].idxmin(axis=1), "kae_auto / best L": wide["kae_auto"] / wide[fixed_L].min(axis=1),
    "worst L / best L": wide[fixed_L].max(axis=1) / wide[fixed_L].min(axis=1),
})  # fmt: skip
display(track)
print(f"kae_auto / best fixed window (per cell): median {track['kae_auto / best L'].median():.3f}, "
      f"max {track['kae_auto / best L'].max():.3f}; a wrong fixed window costs up to "
      f"{track['worst L / best L'].max():.1f}x")  # fmt: skip

# %% [markdown]
# ### 7.5 Design changes after seeing results, and a held-out check
#
# The method was not fixed in one go. In order, on development seeds 0-2 of this suite unless said
# otherwise:
#
# 1. *Lepski selection alone* (bank + per-prompt Lepski test, $z$ from the propagation condition,
#    EB shrinkage with a plug-in per-prompt variance). It beat every peer at $G\ge4$ but lost to
#    KRPO after the abrupt change at $G\le2$ (1.2-1.4x) and was 1.5x the best fixed window there:
#    Lepski tolerates a bias up to $z$ standard errors of the *narrower* windows, several times the
#    MSE-optimal bias.
# 2. *Estimated MSE with a pooled drift speed* (forward validation) plus the Lepski cap; the drift
#    evidence kept only beyond $z$ standard errors (the same propagation argument).
# 3. *Unbiased reward variances*: the plug-in $(m-\mathrm{lo})(\mathrm{hi}-m)$ is biased by
#    $-\mathrm{Var}(m)$, which matters for the drift test; replaced by the beta-posterior mean.
# 4. *Beta-binomial moments pooled over past steps* for $\tau^2$ and the prior (the batch alone gives
#    a noisy $\tau^2$ when histories are short: it lost to SPO's fixed Jeffreys prior at $G=1$
#    without recurrence).
# 5. *Drift-robust noise level*: the forward-validation excess subtracts $\sigma^2$ pooled from each
#    prediction's narrowest window instead of a model of $V$, which the drift itself biases.
# 6. *The Lepski cap on a variance-stabilised scale*. Section 6's "spread prompts" setting showed
#    `kae_auto` behind KAE: the normal bands of the current group (three rewards) beside a prompt at
#    0.99 are so tight that one failure "rejects" the history (raw $z$-score 5.7 for an event of
#    probability 3%). Removing the cap helped at small $G$ and hurt at $G=16$, where it catches real
#    changes; the plain arcsine scale over-stretched groups all at 0 or 1 at mid values, so the test
#    uses Anscombe's $\arcsin\sqrt{(nm+3/8)/(n+3/4)}$ with variance $1/(4n+2)$.
# 7. After a full run of version 6 (seeds 100-109 and six held-out scenarios, seeds 200-204): in
#    two held-out cells it was worse than KAE or SPO, for two diagnosed reasons. *The drift
#    statistic is paired with the current group* where there is one (the reward's own noise
#    cancels; unpaired, a small but costly drift under low-noise graded rewards went undetected:
#    1.19x KAE at $G=16$), and *the dispersion $\phi$ is pooled over past steps from within-group
#    spreads* (with single rewards per prompt it fell back to the Bernoulli bound $\phi=1$ and
#    over-shrank graded rewards: 1.30x SPO at $G=1$ without recurrence).
#
# Each change follows from a stated statistical argument, but each was prompted by a result. So the
# final design is evaluated on seeds it never saw (the suite above: 300-309) and on held-out
# scenarios: six *new* ones, never run before the design was frozen, and, for the record, the six
# that prompted change 7 (*seen*), all on fresh seeds 400-404.

# %%
HELD_OUT = [
    Scenario("paper_J10", "new: 128 prompts, 16 per step, J = 10 (the paper's GSM8K/MATH schedule)", n_prompts=128,
             J=10, drift=1.5),
    Scenario("graded_mixed", "new: Beta rewards (concentration 4), 20% easy and 20% impossible prompts",
             reward="beta", concentration=4.0, easy=0.2, impossible=0.2),
    Scenario("fast_once", "new: no recurrence, logits move by N(0, 3^2) over the run", recurrent=False, drift=3.0),
    Scenario("abrupt_graded", "new: Beta rewards, reward table redrawn at 60% of the run", reward="beta",
             shift_at=0.6),
    Scenario("trained_long_gap", "new: oracle policy gradient, lr 0.5, 256 prompts, 32 per step (recurs every 64)",
             n_prompts=256, prompts_per_step=32, drift=0.0, lr=0.5),
    Scenario("static_graded", "new: no drift, Beta rewards (concentration 8)", drift=0.0, reward="beta",
             concentration=8.0),
    Scenario("static", "seen: no drift at all (the propagation case)", drift=0.0),
    Scenario("long_gap", "seen: 256 prompts, 32 per step, J = 4: a prompt recurs every 32 steps", n_prompts=256,
             prompts_per_step=32, J=4, drift=1.5),
    Scenario("graded_fast", "seen: Beta rewards (concentration 8), logits move by N(0, 3^2) in half the run",
             reward="beta", concentration=8.0, drift=3.0, drift_span=0.5),
    Scenario("abrupt_mixed", "seen: reward table redrawn at 30% of the run; 20% easy and 20% impossible prompts",
             shift_at=0.3, easy=0.2, impossible=0.2),
    Scenario("trained_fast", "seen: oracle policy gradient with lr 1.0", drift=0.0, lr=1.0),
    Scenario("once_graded", "seen: no recurrence, J = 4, Beta rewards", recurrent=False, J=4, reward="beta"),
]  # fmt: skip
HELD = dict(Gs=(1, 2, 4, 8, 16), seeds=range(400, 405), n_steps=200) if FULL else dict(Gs=(2,), seeds=[400, 401],
                                                                                         n_steps=30)  # fmt: skip
held = run_suite({n: n for n in PEERS + ["kae", "kae_shrink", "kae_auto"]}, HELD_OUT, **HELD)
h_peer = compare_on_suite(held, "kae_auto", PEERS)
h_kae = compare_on_suite(held, "kae_auto", ["kae"])
h_grad = suite_summary(held, "grad_mse", reference="oracle").xs("kae_auto", level="estimator")
held_table = pd.DataFrame({"best peer": h_peer["best"], "ratio": h_peer["ratio"], "vs peer": h_peer["verdict"],
                           "ratio to kae": h_kae["ratio"], "vs kae": h_kae["verdict"],
                           "grad / oracle": h_grad["mean"]})  # fmt: skip
display(held_table)
kind = {s.name: s.description.split(":")[0] for s in HELD_OUT}
for group in ("new", "seen"):
    t = held_table[[kind[n] == group for n in held_table.index.get_level_values("scenario")]]
    hb = t.index.get_level_values("G") >= 4
    print(f"held-out ({group}): worse than the best peer in {(t['vs peer'] == 'worse').sum()} of {len(t)} cells "
          f"(better in {(t['vs peer'] == 'better').sum()}), mean ratio {t['ratio'].mean():.3f}; worse than KAE in "
          f"{(t['vs kae'] == 'worse').sum()}; gradient within 5% of the oracle at G >= 4 in "
          f"{(t.loc[hb, 'grad / oracle'] <= 1.05).sum()} of {hb.sum()}")  # fmt: skip
print(f"notebook run time: {time.perf_counter() - T0:.1f} s")

# %% [markdown]
# ### 7.6 Reading the results (the committed run: `KERNELVALUE_FULL=1`)
#
# Numbers from the committed full run (suite: seeds 300-309; held-out: seeds 400-404); a CI run of the
# small configuration prints other, noisier numbers.
#
# * **Value MSE against the peers.** In all 35 cells (7 scenarios x 5 G) `kae_auto` is below the best
#   peer chosen per cell, significantly in 34 (the 95% interval of the paired difference below 0) and
#   a tie in one (after the abrupt change at $G=2$, against KRPO); mean ratio 0.64 (geometric 0.60).
#   The best peer is SPO in most cells, KRPO after the abrupt change, JSPO at $G=16$ without
#   recurrence. On the issue's own bandit (section 2) it is below SPO at every $G$.
# * **Against plain KAE** ($h=0.2$): below in all 35 cells, ratio 0.19-0.86 (mean 0.43).
# * **Gradient MSE within 5% of the oracle's at $G\ge4$**: 19 of 21 cells. The two misses,
#   `abrupt_change` (1.054) and `no_recurrence` (1.073) at $G=4$, are cells where no estimator is
#   within 5% and `kae_auto` is the closest: at a prompt's first visit, or right after the reward
#   table changes, only the $G-1=3$ other responses say anything about the prompt.
# * **Fixed windows.** Against its own bank restricted to one window, `kae_auto` is at 0.67-1.18x of
#   the best fixed window chosen after the fact (median 0.93: usually better than any single window,
#   since the best window changes over time and by prompt), while a wrong fixed window costs up to
#   3.5x. Against KAE's relative bandwidth chosen after the fact ($h=1$ in most cells) it is better at
#   $G\le2$ and in 6 of 7 scenarios at $G=4$, but up to 1.28x worse at $G=8$-16 under drift
#   (`fast_drift`, `graded`, `trained`, `slow_drift` at 16).
# * **Held-out scenarios.** The six new ones: never worse than the best peer (better in 29 of 30
#   cells) or than KAE; gradient within 5% at $G\ge4$ in 17 of 18 (`fast_once`, $G=4$: 1.061). The six
#   that prompted design change 7, on fresh seeds: worse than SPO at $G=1$ in `graded_fast` (1.12x)
#   and `once_graded` (1.02x), never worse than KAE.
#
# **The frontier: where `kae_auto` is beaten, and why.**
#
# * *$G=1$, low-noise graded rewards, fast drift* (`graded_fast`): SPO's fixed ten-visit memory wins.
#   With one response per prompt there is no current group to pair the drift test with, so it carries
#   the reward's own noise and sees the drift late.
# * *Large $G$, a steady drift shared by all prompts* (`fast_drift` at $G\ge8$; section 6's fast
#   linear drift, 2x `kae@0.2`): a well-chosen fixed window wins. Each window's drift speed is kept
#   only where it is significant *for that window*, so mid-size windows, whose bias is moderate, are
#   treated as unbiased; and the exponential kernel puts more weight on old steps than the triangular
#   one at the same effective size. The natural next step, a monotone envelope of the drift speed
#   across windows (the speed the wide windows see applies to the narrow ones too), is untested: it
#   would need another round of fresh seeds and scenarios.
# * *First visits at moderate $G$* (gradient, above): no estimator reaches 5% of the oracle.
#
# **Which estimator is the default.** The paper's KAE stays the default (`get_estimator("kae")`, the
# reproduction's driver): `kae_auto` is better in every cell of the suite and of the held-out
# scenarios, 95 of 95 against KAE, but it does not win everywhere: section 6's steady linear drift
# is one setting where KAE at its default $h=0.2$ is twice as good. `kae_auto` is the one to choose
# when the drift speed is unknown or changes, $G$ is small, prompts recur irregularly or not at all,
# or rewards are graded; its cost is about 4-5x KAE's per step, within the 2 ms budget at 1024
# responses.
