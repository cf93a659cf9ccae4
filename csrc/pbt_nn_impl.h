/* pbt_nn_impl.h -- the activation, layer-norm and dropout kernels, for one dtype (see
 * pbt_nn_instantiate.h: real, S(name), IS_F32, m_exp...).  No include
 * guard: included once per dtype. */

static void S(gelu)(int64_t n, const real *x, real *out) {
  int64_t i;
  for (i = 0; i < n; i++)
    out[i] = (real)0.5 * x[i] * m_erfc(x[i] * (real)-0.70710678118654752440);
}

static void S(gelu_backward)(int64_t n, const real *g, const real *x,
                             real *gx) {
  int64_t i;
  for (i = 0; i < n; i++) {
    real v = x[i];
    real cdf = (real)0.5 * m_erfc(v * (real)-0.70710678118654752440);
    real pdf = (real)0.39894228040143267794 * m_exp((real)-0.5 * v * v);
    gx[i] = g[i] * (cdf + v * pdf);
  }
}

/* g * (x > 0), the product rounded as g times a 0/1 mask would be (NaN
 * where g is NaN or infinite and x <= 0). */
static PBT_CLONES void S(relu_backward)(int64_t n, const real *restrict g,
                                       const real *restrict x, real *restrict gx) {
  int64_t i;
  for (i = 0; i < n; i++) gx[i] = g[i] * (x[i] > 0 ? (real)1 : (real)0);
}

static void S(layer_norm)(int64_t m, int64_t n, const real *x, const real *w,
                          const real *b, double eps, real *out, real *mean,
                          real *rstd) {
  int64_t i, j;
  for (i = 0; i < m; i++) {
    const real *r = x + i * n;
    real *o = out + i * n;
    double mu = 0, var = 0, rs;
    for (j = 0; j < n; j++) mu += r[j];
    mu /= (double)n;
    for (j = 0; j < n; j++) var += ((double)r[j] - mu) * ((double)r[j] - mu);
    var /= (double)n;
    rs = 1 / sqrt(var + eps);
    mean[i] = (real)mu, rstd[i] = (real)rs;
    for (j = 0; j < n; j++) {
      real y = (real)(((double)r[j] - mu) * rs);
      if (w) y *= w[j];
      if (b) y += b[j];
      o[j] = y;
    }
  }
}

/* acc holds 2n + 1 zeroed doubles when gw or gb is wanted. */
static void S(layer_norm_backward)(int64_t m, int64_t n, const real *g,
                                   const real *x, const real *w,
                                   const real *mean, const real *rstd, real *gx,
                                   real *gw, real *gb, double *acc) {
  int64_t i, j;
  for (i = 0; i < m; i++) {
    const real *r = x + i * n, *gr = g + i * n;
    double mu = mean[i], rs = rstd[i], s1 = 0, s2 = 0;
    for (j = 0; j < n; j++) {
      double xh = ((double)r[j] - mu) * rs;
      double gh = (double)gr[j] * (w ? (double)w[j] : 1.0);
      s1 += gh, s2 += gh * xh;
      if (acc) acc[j] += (double)gr[j] * xh, acc[n + j] += gr[j];
    }
    if (gx) {
      real *o = gx + i * n;
      s1 /= (double)n, s2 /= (double)n;
      for (j = 0; j < n; j++) {
        double xh = ((double)r[j] - mu) * rs;
        double gh = (double)gr[j] * (w ? (double)w[j] : 1.0);
        o[j] = (real)(rs * (gh - s1 - xh * s2));
      }
    }
  }
  for (j = 0; j < n; j++) {
    if (gw) gw[j] = (real)acc[j];
    if (gb) gb[j] = (real)acc[n + j];
  }
}

static void S(dropout)(int64_t n, const real *x, double p, pbt_generator *gen,
                       real *out, real *mask) {
  int64_t i;
  real keep = p < 1 ? (real)(1 / (1 - p)) : 0;
  for (i = 0; i < n; i++) {
    real mk = pbt_generator_uniform(gen) >= p ? keep : 0;
    mask[i] = mk;
    out[i] = x[i] * mk;
  }
}
