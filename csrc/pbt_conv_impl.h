/* pbt_conv_impl.h -- the convolution kernels (GEMM, im2col, col2im, forward, backward), for one dtype (see
 * pbt_nn_instantiate.h: real, S(name), IS_F32, m_exp...).  No include
 * guard: included once per dtype. */

static void S(gemm)(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int64_t m,
                    int64_t n, int64_t k, const real *a, int64_t lda,
                    const real *b, int64_t ldb, real beta, real *c,
                    int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (sizeof(real) == sizeof(float))
    cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, (const float *)a,
                (int)(lda ? lda : 1), (const float *)b, (int)(ldb ? ldb : 1), (float)beta,
                (float *)c, (int)(ldc ? ldc : 1));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0, (const double *)a,
                (int)(lda ? lda : 1), (const double *)b, (int)(ldb ? ldb : 1), (double)beta,
                (double *)c, (int)(ldc ? ldc : 1));
}

/* cols [C*kh*kw, OH*OW] of one image x [C,H,W]. */
static void S(im2col)(const conv_geom *g, const real *x, real *cols) {
  int64_t c, ki, kj, oh, ow, ohw = g->oh * g->ow;
  for (c = 0; c < g->c; c++)
    for (ki = 0; ki < g->kh; ki++)
      for (kj = 0; kj < g->kw; kj++) {
        real *row = cols + ((c * g->kh + ki) * g->kw + kj) * ohw;
        const real *xc = x + c * g->h * g->w;
        int64_t wlo, whi;
        valid_range(g->ow, g->sw, g->pw, kj, g->w, &wlo, &whi);
        for (oh = 0; oh < g->oh; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki;
          real *r = row + oh * g->ow;
          if (ih < 0 || ih >= g->h) {
            memset(r, 0, (size_t)g->ow * sizeof *r);
            continue;
          }
          for (ow = 0; ow < wlo; ow++) r[ow] = 0;
          if (g->sw == 1) {
            memcpy(r + wlo, xc + ih * g->w + wlo - g->pw + kj,
                   (size_t)(whi - wlo) * sizeof *r);
          } else {
            int64_t at = ih * g->w - g->pw + kj;
            for (ow = wlo; ow < whi; ow++) r[ow] = xc[at + ow * g->sw];
          }
          for (ow = whi; ow < g->ow; ow++) r[ow] = 0;
        }
      }
}

/* gx [C,H,W] += the columns cols put back where im2col took them. */
static void S(col2im)(const conv_geom *g, const real *cols, real *gx) {
  int64_t c, ki, kj, oh, ow, ohw = g->oh * g->ow;
  for (c = 0; c < g->c; c++)
    for (ki = 0; ki < g->kh; ki++)
      for (kj = 0; kj < g->kw; kj++) {
        const real *row = cols + ((c * g->kh + ki) * g->kw + kj) * ohw;
        real *gc = gx + c * g->h * g->w;
        int64_t wlo, whi;
        valid_range(g->ow, g->sw, g->pw, kj, g->w, &wlo, &whi);
        for (oh = 0; oh < g->oh; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki;
          const real *r = row + oh * g->ow;
          int64_t at = ih * g->w - g->pw + kj;
          if (ih < 0 || ih >= g->h) continue;
          if (g->sw == 1)
            for (ow = wlo; ow < whi; ow++) gc[at + ow] += r[ow];
          else
            for (ow = wlo; ow < whi; ow++) gc[at + ow * g->sw] += r[ow];
        }
      }
}

/* The sum of x[0..n) in double, in 8 interleaved partial sums (no chain of
 * dependent additions; vectorised). */
static PBT_CLONES double S(row_sum)(int64_t n, const real *x) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0;
  int64_t i, k;
  for (i = 0; i + 8 <= n; i += 8)
    for (k = 0; k < 8; k++) a[k] += (double)x[i + k];
  for (; i < n; i++) t += (double)x[i];
  return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + t;
}

static void S(conv_forward)(const conv_geom *g, const real *x, const real *w,
                            const real *b, real *out, real *cols) {
  int64_t n, o, i, ohw = g->oh * g->ow, ckk = g->c * g->kh * g->kw;
  for (n = 0; n < g->n; n++) {
    const real *xn = x + n * g->c * g->h * g->w;
    real *on = out + n * g->o * ohw;
    if (!g->direct) S(im2col)(g, xn, cols);
    if (b)
      for (o = 0; o < g->o; o++)
        for (i = 0; i < ohw; i++) on[o * ohw + i] = b[o];
    S(gemm)(CblasNoTrans, CblasNoTrans, g->o, ohw, ckk, w, ckk, g->direct ? xn : cols, ohw,
            b ? 1 : 0, on, ohw);
  }
}

static void S(conv_backward)(const conv_geom *g, const real *gout,
                             const real *x, const real *w, real *gx, real *gw,
                             real *gb, double *acc, real *cols) {
  int64_t n, o, ohw = g->oh * g->ow, ckk = g->c * g->kh * g->kw;
  int64_t chw = g->c * g->h * g->w;
  for (n = 0; n < g->n; n++) {
    const real *gn = gout + n * g->o * ohw, *xn = x + n * chw;
    if (gb)
      for (o = 0; o < g->o; o++) acc[o] += S(row_sum)(ohw, gn + o * ohw);
    if (gw) {
      if (!g->direct) S(im2col)(g, xn, cols);
      S(gemm)(CblasNoTrans, CblasTrans, g->o, ckk, ohw, gn, ohw, g->direct ? xn : cols, ohw,
              n ? 1 : 0, gw, ckk);
    }
    if (gx) {
      if (g->direct) {
        S(gemm)(CblasTrans, CblasNoTrans, ckk, ohw, g->o, w, ckk, gn, ohw, 0, gx + n * chw,
                ohw);
      } else {
        S(gemm)(CblasTrans, CblasNoTrans, ckk, ohw, g->o, w, ckk, gn, ohw, 0, cols, ohw);
        memset(gx + n * chw, 0, (size_t)chw * sizeof *gx);
        S(col2im)(g, cols, gx + n * chw);
      }
    }
  }
  if (gw && g->n == 0) memset(gw, 0, (size_t)(g->o * ckk) * sizeof *gw);
  if (gb)
    for (o = 0; o < g->o; o++) gb[o] = (real)acc[o];
}
