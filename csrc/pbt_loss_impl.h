/* pbt_loss_impl.h -- the loss kernels (cross-entropy, binary cross-entropy with logits), for one dtype (see
 * pbt_nn_instantiate.h: real, S(name), IS_F32, m_exp...).  No include
 * guard: included once per dtype. */

/* Returns the sum of the losses; writes each into out when not NULL. */
static double S(cross_entropy)(int64_t n, int64_t k, const real *x,
                               const int64_t *lab, real *out) {
  int64_t i, j;
  double total = 0;
  for (i = 0; i < n; i++) {
    const real *r = x + i * k;
    real m = r[0];
    double s = 0, l;
    for (j = 1; j < k; j++) m = r[j] > m ? r[j] : m;
    for (j = 0; j < k; j++) s += m_exp(r[j] - m);
    l = (double)m + log(s) - (double)r[lab[i]];
    if (out) out[i] = (real)l;
    total += l;
  }
  return total;
}

static void S(cross_entropy_backward)(int64_t n, int64_t k, const real *x,
                                      const int64_t *lab, const double *scale,
                                      real *gx) {
  int64_t i, j;
  for (i = 0; i < n; i++) {
    const real *r = x + i * k;
    real *gr = gx + i * k, m = r[0], sc;
    double s = 0;
    for (j = 1; j < k; j++) m = r[j] > m ? r[j] : m;
    for (j = 0; j < k; j++) {
      gr[j] = m_exp(r[j] - m);
      s += gr[j];
    }
    sc = (real)(scale[i] / s);
    for (j = 0; j < k; j++) gr[j] *= sc;
    gr[lab[i]] -= (real)scale[i];
  }
}

static double S(bce)(int64_t n, const real *x, const real *t, real *out) {
  int64_t i;
  double total = 0;
  for (i = 0; i < n; i++) {
    real v = x[i];
    real l = (v > 0 ? v : 0) - v * t[i] + m_log1p(m_exp(-(v < 0 ? -v : v)));
    if (out) out[i] = l;
    total += l;
  }
  return total;
}

static void S(bce_backward)(int64_t n, const real *x, const real *t,
                            const real *g, double scale, real *gx, real *gt) {
  int64_t i;
  for (i = 0; i < n; i++) {
    real sc = g ? g[i] : (real)scale, v = x[i];
    real sig = v >= 0 ? 1 / (1 + m_exp(-v)) : m_exp(v) / (1 + m_exp(v));
    if (gx) gx[i] = sc * (sig - t[i]);
    if (gt) gt[i] = -sc * v;
  }
}
