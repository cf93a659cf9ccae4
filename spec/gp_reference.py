#!/usr/bin/python3
"""Reference values for PB2's Gaussian process (not run by the tests).

    cd /tmp && /usr/bin/python3 /work/main/spec/gp_reference.py

(Debian's python3-numpy and python3-scipy, apt-get install python3-scipy.)
It prints a Lua chunk `return { A = ..., B = ..., C = ... }` to paste into
the spec, and writes the same text to /tmp/gp_cases.lua.  Every number is
printed with %.17g (a float with ".0" added where %.17g leaves none), so the
data are bit-identical in Lua; the checks below are -- comments in it.

The GP is Ray Tune PB2's TV_SquaredExp, written out plainly in numpy here,
independently of the C code.  X is n x D, column 0 the time t:

    k(a, b) = s2 * exp(-sum_{j>=1} (a_j - b_j)^2 / l) * (1 - e)^(|a_0 - b_0| / 2)
    K = k(X, X) + sn2 I
    LML = -y' K^-1 y / 2 - log|K| / 2 - n log(2 pi) / 2
    mean(x*) = k(x*, X) K^-1 y,  var(x*) = s2 - k(x*, X) K^-1 k(X, x*)  (latent f)

with theta = (s2, l, e, sn2) from unconstrained u in [-9, 9]^4:
s2 = exp(u1), l = exp(u2), e = 0.5 / (1 + exp(-u3)), sn2 = exp(u4).

A: posterior, LML and dLML/du at a fixed theta (n = 10, D = 3).
   The posterior is computed by Cholesky and by np.linalg.solve, the LML by
   Cholesky, by slogdet and by scipy.stats.multivariate_normal, the gradient
   analytically (1/2 tr((a a' - K^-1) dK/du)) and by central differences.
B: the fit: L-BFGS-B on -LML over u in [-9, 9]^4 from
   u0 = (0, 0, log(0.25), 0) (e = 0.1), ftol 1e-15, gtol 1e-10, maxiter 1000,
   and from 20 random starts.  The data were chosen so that u0's optimum is
   the best of all starts (so, as far as one can tell, the global one), is
   a strict maximum (the Hessian's eigenvalues) and lies far inside the box
   (every u more than 6 from a bound; e about 0.22, far from 0 and 0.5).
C: the UCB acquisition on B's data and fitted theta:
   a(x) = mean_meanGP(f, x) + kappa sqrt(max(var_varGP(f, x), 0)), the
   mean GP on (X, y), the variance GP on X plus the pending rows P; x in
   [0, 1]^2 maximised by a 201 x 201 grid, then L-BFGS-B from the 30 best
   grid points (and, to find every other local maximum, from each local
   maximum of the grid).  f and P were chosen so that the maximum is in the
   interior of [0, 1]^2 (about 0.29 from the nearest face), unique (the
   best other local maximum, on the face x1 = 0, is about 1.6 lower), and
   moved by the pending rows (a pending row lies near the mean's peak).
"""
import sys

import numpy as np
import scipy
from scipy import linalg, optimize, stats

BOX = 9.0


def fmt(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return "{%s}" % ", ".join(fmt(x) for x in v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    s = "%.17g" % float(v)
    # a float stays a float in Lua 5.4 (1.0, not the integer 1)
    return s if any(c in s for c in ".en") else s + ".0"


# ---------------------------------------------------------------- the GP

def theta_of_u(u):
    u = np.asarray(u, dtype=float)
    return np.array([np.exp(u[0]), np.exp(u[1]),
                     0.5 / (1.0 + np.exp(-u[2])), np.exp(u[3])])


def u_of_theta(th):
    s2, l, e, sn2 = th
    return np.array([np.log(s2), np.log(l), np.log(e / (0.5 - e)),
                     np.log(sn2)])


def kern(A, B, th):
    """k(A, B) for rows of A and B, plus the pieces its derivatives need."""
    s2, l, e, _ = th
    A, B = np.atleast_2d(A), np.atleast_2d(B)
    d2 = np.zeros((A.shape[0], B.shape[0]))
    for j in range(1, A.shape[1]):
        d2 += (A[:, j][:, None] - B[:, j][None, :]) ** 2
    dt = np.abs(A[:, 0][:, None] - B[:, 0][None, :])
    k = s2 * np.exp(-d2 / l) * (1.0 - e) ** (dt / 2.0)
    return k, d2, dt


def lml_chol(X, y, th):
    n = len(y)
    K = kern(X, X, th)[0] + th[3] * np.eye(n)
    L = linalg.cholesky(K, lower=True)
    a = linalg.cho_solve((L, True), y)
    return (-0.5 * y @ a - np.sum(np.log(np.diag(L)))
            - 0.5 * n * np.log(2 * np.pi))


def lml_slogdet(X, y, th):
    n = len(y)
    K = kern(X, X, th)[0] + th[3] * np.eye(n)
    sign, logdet = np.linalg.slogdet(K)
    assert sign > 0
    return (-0.5 * y @ np.linalg.solve(K, y) - 0.5 * logdet
            - 0.5 * n * np.log(2 * np.pi))


def lml_grad(X, y, th):
    """LML and dLML/du, u the unconstrained parameters."""
    s2, l, e, sn2 = th
    n = len(y)
    k, d2, dt = kern(X, X, th)
    K = k + sn2 * np.eye(n)
    L = linalg.cholesky(K, lower=True)
    a = linalg.cho_solve((L, True), y)
    Kinv = linalg.cho_solve((L, True), np.eye(n))
    W = np.outer(a, a) - Kinv
    dK = [k,                                          # d/du1: s2 = exp(u1)
          k * d2 / l,                                 # d/du2: l = exp(u2)
          -k * (dt / 2.0) / (1.0 - e) * e * (1.0 - 2.0 * e),  # de/du3
          sn2 * np.eye(n)]                            # d/du4: sn2 = exp(u4)
    g = np.array([0.5 * np.sum(W * D) for D in dK])
    lml = (-0.5 * y @ a - np.sum(np.log(np.diag(L)))
           - 0.5 * n * np.log(2 * np.pi))
    return lml, g


def fd_grad(X, y, u, h=1e-5):
    g = np.zeros(4)
    for i in range(4):
        up, um = np.array(u, float), np.array(u, float)
        up[i] += h
        um[i] -= h
        g[i] = (lml_chol(X, y, theta_of_u(up))
                - lml_chol(X, y, theta_of_u(um))) / (2 * h)
    return g


def posterior_chol(X, y, Xs, th):
    n = len(y)
    K = kern(X, X, th)[0] + th[3] * np.eye(n)
    ks = kern(Xs, X, th)[0]
    c = linalg.cho_factor(K, lower=True)
    mean = ks @ linalg.cho_solve(c, y)
    v = linalg.solve_triangular(np.tril(c[0]), ks.T, lower=True)
    var = th[0] - np.sum(v * v, axis=0)
    return mean, var


def posterior_solve(X, y, Xs, th):
    n = len(y)
    K = kern(X, X, th)[0] + th[3] * np.eye(n)
    ks = kern(Xs, X, th)[0]
    mean = ks @ np.linalg.solve(K, y)
    var = th[0] - np.einsum("ij,ji->i", ks, np.linalg.solve(K, ks.T))
    return mean, var


def fit(X, y, u0):
    def f(u):
        v, g = lml_grad(X, y, theta_of_u(u))
        return -v, -g
    r = optimize.minimize(f, np.asarray(u0, float), jac=True,
                          method="L-BFGS-B", bounds=[(-BOX, BOX)] * 4,
                          options={"ftol": 1e-15, "gtol": 1e-10,
                                   "maxiter": 1000})
    return r.x, -r.fun, r


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))
                  / np.maximum(np.abs(np.asarray(b)), 1e-300))


# ---------------------------------------------------------------- the UCB

class UCB:
    def __init__(self, X, y, P, th, f, kappa):
        self.X, self.y, self.th, self.f, self.kappa = X, y, th, f, kappa
        self.XV = np.vstack([X, P])
        K = kern(X, X, th)[0] + th[3] * np.eye(len(X))
        KV = kern(self.XV, self.XV, th)[0] + th[3] * np.eye(len(self.XV))
        self.alpha = linalg.cho_solve(linalg.cho_factor(K, lower=True), y)
        self.KVinv = linalg.cho_solve(linalg.cho_factor(KV, lower=True),
                                      np.eye(len(self.XV)))
        self.K, self.KV = K, KV

    def z(self, x):
        x = np.atleast_2d(x)
        return np.hstack([np.tile(self.f, (len(x), 1)), x])

    def parts(self, x):
        Z = self.z(x)
        mean = kern(Z, self.X, self.th)[0] @ self.alpha
        kv = kern(Z, self.XV, self.th)[0]
        var = self.th[0] - np.einsum("ij,jk,ik->i", kv, self.KVinv, kv)
        return mean, var

    def value(self, x):
        mean, var = self.parts(x)
        return mean + self.kappa * np.sqrt(np.maximum(var, 0.0))

    def value_grad(self, x):
        """a(x) and da/dx at one point x (free columns only)."""
        z = self.z(x)[0]
        nf = len(self.f)
        km = kern(z, self.X, self.th)[0][0]
        kv = kern(z, self.XV, self.th)[0][0]
        l = self.th[1]
        # dk(z, X_i)/dz_j = k * (-2 (z_j - X_ij) / l) for the free j >= 1
        dkm = km[:, None] * (-2.0 * (z[nf:][None, :] - self.X[:, nf:]) / l)
        dkv = kv[:, None] * (-2.0 * (z[nf:][None, :] - self.XV[:, nf:]) / l)
        mean = km @ self.alpha
        w = self.KVinv @ kv
        var = self.th[0] - kv @ w
        dmean = self.alpha @ dkm
        dvar = -2.0 * w @ dkv
        sd = np.sqrt(max(var, 0.0))
        a = mean + self.kappa * sd
        da = dmean + (self.kappa * 0.5 / sd * dvar if sd > 0 else 0.0)
        return a, da

    def check(self, x):
        """a(x) the other way: np.linalg.solve on the two K's."""
        Z = self.z(x)
        km = kern(Z, self.X, self.th)[0]
        kv = kern(Z, self.XV, self.th)[0]
        mean = km @ np.linalg.solve(self.K, self.y)
        var = self.th[0] - np.einsum("ij,ji->i", kv,
                                     np.linalg.solve(self.KV, kv.T))
        return mean + self.kappa * np.sqrt(np.maximum(var, 0.0))

    def maximise(self, m=201, best=30):
        g = np.linspace(0.0, 1.0, m)
        G1, G2 = np.meshgrid(g, g, indexing="ij")
        pts = np.column_stack([G1.ravel(), G2.ravel()])
        vals = self.value(pts)
        grid = vals.reshape(m, m)
        starts = list(np.argsort(-vals)[:best])
        # every local maximum of the grid (>= its 8 neighbours), so that the
        # best OTHER local maximum of a(x) is found too
        pad = np.pad(grid, 1, constant_values=-np.inf)
        ismax = np.ones_like(grid, dtype=bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di or dj:
                    ismax &= grid >= pad[1 + di:1 + di + m, 1 + dj:1 + dj + m]
        locs = list(np.flatnonzero(ismax.ravel()))
        found = []
        for idx in starts + [i for i in locs if i not in starts]:
            r = optimize.minimize(
                lambda x: tuple(-t for t in self.value_grad(x)), pts[idx],
                jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * 2,
                options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000})
            found.append((-r.fun, r.x, idx in starts))
        found.sort(key=lambda t: -t[0])
        return found, vals.max(), len(locs)


# ---------------------------------------------------------------- cases

out = []


def emit(s=""):
    out.append(s)


emit("-- generated by spec/gp_reference.py (numpy %s, scipy %s)"
     % (np.__version__, scipy.__version__))
emit("return {")

# ---- A: posterior, LML and gradient at a fixed theta
rng = np.random.default_rng(1)
XA = rng.random((10, 3))
noiseA = rng.standard_normal(10)
yA = (np.sin(3 * XA[:, 1]) + 0.5 * np.cos(2 * XA[:, 2]) - XA[:, 0] * XA[:, 1]
      + 0.1 * noiseA)
XsA = rng.random((4, 3))
thA = np.array([1.3, 0.4, 0.15, 0.05])
mA, vA = posterior_chol(XA, yA, XsA, thA)
mA2, vA2 = posterior_solve(XA, yA, XsA, thA)
lA = lml_chol(XA, yA, thA)
lA2 = lml_slogdet(XA, yA, thA)
lA4 = stats.multivariate_normal(
    np.zeros(len(yA)), kern(XA, XA, thA)[0] + thA[3] * np.eye(len(yA))
).logpdf(yA)
_, gA = lml_grad(XA, yA, thA)
gAfd = fd_grad(XA, yA, u_of_theta(thA))
emit("  -- A: posterior, LML and dLML/du at a fixed theta = (s2, l, e, sn2).")
emit("  -- X and Xs from numpy default_rng(1), y = sin(3 x1) + 0.5 cos(2 x2)"
     " - t x1 + 0.1 N(0, 1).")
emit("  -- mean, var: Cholesky vs np.linalg.solve: largest abs difference"
     " %.2g (mean), %.2g (var)"
     % (np.max(np.abs(mA - mA2)), np.max(np.abs(vA - vA2))))
emit("  -- lml: Cholesky vs slogdet: abs difference %.2g; vs"
     " scipy.stats.multivariate_normal.logpdf: %.2g"
     % (abs(lA - lA2), abs(lA - lA4)))
emit("  -- grad (analytic) vs central differences (h = 1e-5): largest"
     " relative difference %.2g" % rel(gAfd, gA))
emit("  A = {")
emit("    X = %s," % fmt(XA))
emit("    y = %s," % fmt(yA))
emit("    theta = %s," % fmt(thA))
emit("    u = %s,  -- log s2, log l, log(e / (0.5 - e)), log sn2"
     % fmt(u_of_theta(thA)))
emit("    Xs = %s," % fmt(XsA))
emit("    mean = %s," % fmt(mA))
emit("    var = %s," % fmt(vA))
emit("    lml = %s," % fmt(lA))
emit("    grad = %s,  -- dLML/du" % fmt(gA))
emit("  },")

# ---- B: the fit
# 20 rows (t, r, x1, x2): 5 time steps (0, 0.25, ..., 1) of 4 trials each,
# r (the reward so far) uniform and rounded to 6 digits, y a smooth bump in
# (x1, x2) whose centre drifts with t, plus a small t x1 term and
# N(0, 0.05^2) noise; then standardised.  Chosen (among a few seeds and
# drifts tried) so that the fit is interior, e moderate (not near 0 or 0.5)
# and the optimum the same from every start that reaches it.
rng = np.random.default_rng(5)
tB = np.repeat(np.linspace(0.0, 1.0, 5), 4)
x1B = rng.random(20)
x2B = rng.random(20)
rB = np.round(rng.random(20), 6)
yraw = (np.exp(-((x1B - 0.55 - 0.2 * tB) ** 2 + (x2B - 0.4) ** 2) / 0.15)
        + 0.1 * np.sin(3 * tB) * x1B + 0.05 * rng.standard_normal(20))
XB = np.column_stack([tB, rB, x1B, x2B])
yB = (yraw - yraw.mean()) / yraw.std(ddof=1)
u0 = np.array([0.0, 0.0, np.log(0.2 / 0.8), 0.0])
uB, lB, rB_ = fit(XB, yB, u0)
thB = theta_of_u(uB)
l0B = lml_chol(XB, yB, theta_of_u(u0))
_, gB0 = lml_grad(XB, yB, theta_of_u(u0))
gB0fd = fd_grad(XB, yB, u0)
_, gBopt = lml_grad(XB, yB, thB)
# the Hessian of LML in u at the fit, by central differences of the analytic
# gradient: all eigenvalues of -H positive means a strict local maximum
HB = np.zeros((4, 4))
for i in range(4):
    up, um = uB.copy(), uB.copy()
    up[i] += 1e-4
    um[i] -= 1e-4
    HB[i] = (lml_grad(XB, yB, theta_of_u(up))[1]
             - lml_grad(XB, yB, theta_of_u(um))[1]) / 2e-4
eigB = np.linalg.eigvalsh(-(HB + HB.T) / 2)
# how exact L-BFGS-B's optimum is: Newton steps from it (that Hessian, the
# analytic gradient) take |dLML/du| to ~1e-13; how far they move u and LML
# is a fair tolerance for comparing another optimiser's fit with u and lml
uN = uB.copy()
for _ in range(5):
    uN = uN - np.linalg.solve((HB + HB.T) / 2, lml_grad(XB, yB,
                                                          theta_of_u(uN))[1])
lN, gN = lml_grad(XB, yB, theta_of_u(uN))
rs = np.random.default_rng(7)
multi = []
for _ in range(20):
    ur, lr, _r = fit(XB, yB, rs.uniform(-BOX, BOX, 4))
    multi.append((lr, ur))
bestl, bestu = max(multi, key=lambda t: t[0])
nsame = sum(abs(lr - lB) <= 1e-9 for lr, _ in multi)
emit("  -- B: the fit. 20 rows (t, r, x1, x2), y standardised (ddof = 1).")
emit("  -- L-BFGS-B from u0: %d iterations, %s"
     % (rB_.nit, rB_.message if isinstance(rB_.message, str)
        else rB_.message.decode()))
emit("  -- |dLML/du| at the fit, largest: %.2g; grad at u0 analytic vs"
     " central differences: largest relative difference %.2g"
     % (np.max(np.abs(gBopt)), rel(gB0fd, gB0)))
emit("  -- eigenvalues of -d2LML/du2 at the fit: %s (all > 0: a strict"
     " maximum)" % ", ".join("%.3g" % v for v in eigB))
emit("  -- Newton steps from the fit: |dLML/du| %.2g, u moves by %.2g at"
     " most, lml by %.2g" % (np.max(np.abs(gN)), np.max(np.abs(uN - uB)),
                             lN - lB))
emit("  -- lml at the fit: Cholesky vs slogdet: abs difference %.2g"
     % abs(lB - lml_slogdet(XB, yB, thB)))
emit("  -- fitted u's distance to the box [-9, 9]^4: %.3g (>= 0.5: interior)"
     % np.min(BOX - np.abs(uB)))
emit("  -- 20 random starts in the box (default_rng(7)): best lml %.17g,"
     % bestl)
emit("  --   %s u0's to 1e-9 (difference %.2g; %d of 20 starts reach it;"
     " largest |u - u_fit| among those %.2g)"
     % ("equal to" if abs(bestl - lB) <= 1e-9 and lB >= bestl - 1e-9
        else "NOT equal to", bestl - lB, nsame,
        max([np.max(np.abs(ur - uB)) for lr, ur in multi
             if abs(lr - lB) <= 1e-9] + [0.0])))
emit("  B = {")
emit("    X = %s," % fmt(XB))
emit("    y = %s," % fmt(yB))
emit("    u0 = %s," % fmt(u0))
emit("    lml_u0 = %s," % fmt(l0B))
emit("    grad_u0 = %s," % fmt(gB0))
emit("    u = %s," % fmt(uB))
emit("    theta = %s," % fmt(thB))
emit("    lml = %s," % fmt(lB))
emit("  },")

# ---- C: UCB
# f: the last time step and a reward of 0.75; one pending row near the
# mean's peak (so the variance GP differs there from the mean GP's), one
# away from it
fC = np.array([1.0, 0.75])
PC = np.array([[1.0, 0.75, 0.75, 0.45], [1.0, 0.75, 0.3, 0.55]])
nC = 20
kappa = np.sqrt(0.2 + max(0.0, np.log(0.4 * nC)))
ucb = UCB(XB, yB, PC, thB, fC, kappa)
found, gridmax, nloc = ucb.maximise()
noP = UCB(XB, yB, np.zeros((0, 4)), thB, fC, kappa).maximise()[0][0]
aC, xC, _ = found[0]
others = [t for t in found if np.max(np.abs(t[1] - xC)) >= 0.05]
same = [t for t in found if np.max(np.abs(t[1] - xC)) < 0.05]
mC, vmC = posterior_chol(XB, yB, ucb.z(xC), thB)
_, vC = posterior_chol(ucb.XV, np.zeros(len(ucb.XV)), ucb.z(xC), thB)
aC2 = ucb.check(xC)[0]
_, daC = ucb.value_grad(xC)
h = 1e-6
dafd = np.array([(ucb.value(xC + h * np.eye(2)[i])[0]
                  - ucb.value(xC - h * np.eye(2)[i])[0]) / (2 * h)
                 if 0 < xC[i] - h and xC[i] + h < 1 else np.nan
                 for i in range(2)])
faces = ["x%d = %g" % (i + 1, b) for i in range(2) for b in (0, 1)
         if abs(xC[i] - b) < 1e-9]
where = ("in the interior (%.3g from the nearest face)"
         % np.min(np.minimum(xC, 1 - xC)) if not faces
         else "on the face %s" % " and ".join(faces))
emit("  -- C: UCB on B's X and y (not repeated here) and B's fitted theta;"
     " z = (f, x), x in [0, 1]^2,")
emit("  -- kappa = sqrt(0.2 + max(0, log(0.4 n))), n = 20.")
emit("  -- grid 201 x 201: best %.17g; L-BFGS-B from the 30 best grid points"
     " and from each of the %d grid local maxima" % (gridmax, nloc))
emit("  -- x* is %s of [0, 1]^2; %d of %d polished starts end within 0.05 of"
     " it, at most %.2g from x* (in a, %.2g)"
     % (where, len(same), len(found),
        max(np.max(np.abs(t[1] - xC)) for t in same),
        max(aC - t[0] for t in same)))
if others:
    ao, xo, _ = others[0]
    emit("  -- best OTHER local maximum (>= 0.05 away): a = %.17g at x = %s,"
         " %.3g below a(x*)" % (ao, fmt(xo), aC - ao))
else:
    emit("  -- no other local maximum found: every start ends at x*")
emit("  -- a(x*): Cholesky vs np.linalg.solve: abs difference %.2g;"
     " da/dx at x* %s (analytic), %s (central differences)"
     % (abs(aC - aC2), "{%.2g, %.2g}" % tuple(daC),
        "{%.2g, %.2g}" % tuple(dafd)))
emit("  -- without the pending rows the maximum would be a = %.6g at"
     " x = {%.4f, %.4f}: P matters" % (noP[0], noP[1][0], noP[1][1]))
emit("  -- mean: the mean GP's mean at z* = (f, x*); mean_gp_var: the mean"
     " GP's own var there;")
emit("  -- var: the variance GP's var there (the one a uses; its mean would"
     " depend on P's y, so none)")
emit("  C = {")
emit("    theta = %s," % fmt(thB))
emit("    nfixed = 2,")
emit("    f = %s," % fmt(fC))
emit("    P = %s," % fmt(PC))
emit("    n = %d," % nC)
emit("    kappa = %s," % fmt(kappa))
emit("    x = %s," % fmt(xC))
emit("    a = %s," % fmt(aC))
emit("    mean = %s," % fmt(mC[0]))
emit("    mean_gp_var = %s," % fmt(vmC[0]))
emit("    var = %s," % fmt(vC[0]))
emit("  },")
emit("}")

text = "\n".join(out) + "\n"
sys.stdout.write(text)
with open("/tmp/gp_cases.lua", "w") as fh:
    fh.write(text)
