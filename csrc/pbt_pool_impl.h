/* pbt_pool_impl.h -- the max-pooling kernels, for one dtype (see
 * pbt_nn_instantiate.h: real, S(name), IS_F32, m_exp...).  No include
 * guard: included once per dtype. */

/* One output row at a time: for each window offset, a pass over the row's
 * outputs (independent iterations, branch-free: no dependency chain through
 * the running maximum and no mispredicted data-dependent branches).  Within
 * a window the positions are visited in row-major order, so the first
 * maximum wins.  A row that saw a NaN is done again the slow way (the first
 * NaN of a window wins).  bi: OW scratch positions. */
static void S(max_pool)(const pool_geom *g, const real *x, real *out,
                        void *idx, int idx_f64, int64_t base, int64_t *bi) {
  int64_t p, oh, ow, h, kj, hw = g->h * g->w, k = 0;
  for (p = 0; p < g->planes; p++) {
    const real *xp = x + p * hw;
    for (oh = 0; oh < g->oh; oh++, k += g->ow) {
      int64_t h0 = oh * g->sh - g->ph, h1 = h0 + g->kh;
      real *o = out + k;
      int nan = 0;
      if (h0 < 0) h0 = 0;
      if (h1 > g->h) h1 = g->h;
      for (ow = 0; ow < g->ow; ow++) {
        int64_t w0 = ow * g->sw - g->pw;
        o[ow] = -(real)INFINITY;
        bi[ow] = h0 * g->w + (w0 < 0 ? 0 : w0);
      }
      for (h = h0; h < h1; h++)
        for (kj = 0; kj < g->kw; kj++) {
          int64_t lo, hi, at = h * g->w - g->pw + kj;
          valid_range(g->ow, g->sw, g->pw, kj, g->w, &lo, &hi);
          for (ow = lo; ow < hi; ow++) {
            int64_t pos = at + ow * g->sw;
            real v = xp[pos], best = o[ow];
            int64_t m = -(int64_t)(v > best);
            nan |= v != v;
            o[ow] = v > best ? v : best;
            bi[ow] = (pos & m) | (bi[ow] & ~m);
          }
        }
      if (nan) /* again, letting the first NaN of each window win */
        for (ow = 0; ow < g->ow; ow++) {
          int64_t w0 = ow * g->sw - g->pw, w1 = w0 + g->kw, w;
          real best = -(real)INFINITY;
          if (w0 < 0) w0 = 0;
          if (w1 > g->w) w1 = g->w;
          bi[ow] = h0 * g->w + w0;
          for (h = h0; h < h1; h++)
            for (w = w0; w < w1; w++) {
              real v = xp[h * g->w + w];
              if (v > best || (v != v && best == best)) best = v, bi[ow] = h * g->w + w;
            }
          o[ow] = best;
        }
      if (idx) {
        if (idx_f64)
          for (ow = 0; ow < g->ow; ow++) ((double *)idx)[k + ow] = (double)(bi[ow] + base);
        else
          for (ow = 0; ow < g->ow; ow++) ((float *)idx)[k + ow] = (float)(bi[ow] + base);
      }
    }
  }
}

/* The common 2x2 pooling with stride 2 and no padding: the windows tile the
 * plane.  One output row: r0 and r1 the two input rows, start the position
 * of r0[0] (exact in real: below 2^24 for float); branch-free, vectorised.
 * The first maximum of each window wins; returns nonzero when the rows hold
 * a NaN (then the row must be done again by pool2x2_nan). */
static PBT_CLONES int S(pool2x2_row)(int n, const real *restrict r0,
                                    const real *restrict r1, real *restrict o,
                                    real *restrict id, real start, real rw) {
  int j, nan = 0;
  for (j = 0; j < n; j++) {
    real a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
    real h0 = b > a ? b : a, h1 = d > c ? d : c;
    real f0 = b > a ? 1 : 0, f1 = d > c ? rw + 1 : rw;
    o[j] = h1 > h0 ? h1 : h0;
    id[j] = start + (real)(2 * j) + (h1 > h0 ? f1 : f0);
    nan |= (a != a) | (b != b) | (c != c) | (d != d);
  }
  return nan;
}

/* The same, letting the first NaN of a window win. */
static void S(pool2x2_nan)(int n, const real *r0, const real *r1, real *o,
                           real *id, real start, real rw) {
  int j, k;
  for (j = 0; j < n; j++) {
    real v[4], best, off[4];
    v[0] = r0[2 * j], v[1] = r0[2 * j + 1], v[2] = r1[2 * j], v[3] = r1[2 * j + 1];
    off[0] = 0, off[1] = 1, off[2] = rw, off[3] = rw + 1;
    best = v[0], id[j] = start + (real)(2 * j);
    for (k = 1; k < 4; k++)
      if (v[k] > best || (v[k] != v[k] && best == best))
        best = v[k], id[j] = start + (real)(2 * j) + off[k];
    o[j] = best;
  }
}

/* idx: the positions in the element type; scratch (g->ow elements) takes
 * them when idx is NULL.  g->ow < 2^30. */
static void S(max_pool_2x2)(const pool_geom *g, const real *x, real *out,
                            real *idx, int64_t base, real *scratch) {
  int64_t p, oh, w = g->w, k = 0;
  for (p = 0; p < g->planes; p++)
    for (oh = 0; oh < g->oh; oh++, k += g->ow) {
      const real *r0 = x + p * g->h * w + 2 * oh * w;
      real *id = idx ? idx + k : scratch, start = (real)(base + 2 * oh * w);
      int nan;
#if IS_F32 && defined(PBT_POOL_VEC)
      if (g->ow >= 8)
        nan = pool2x2_vec8((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
      else if (g->ow >= 4)
        nan = pool2x2_vec4((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
      else
#endif
        nan = S(pool2x2_row)((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
      if (nan) S(pool2x2_nan)((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
    }
}

/* The backward of 2x2 windows that tile the plane (oh = h/2, ow = w/2):
 * returns 0 (gx partly written) when an index is not in its window, and the
 * general scatter must be done instead.  Each gx element is 0 + g or 0, as
 * the scatter into zeros gives. */
static PBT_CLONES int S(unpool2x2_row)(int n, const real *restrict g,
                                      const real *restrict id, real *restrict r0,
                                      real *restrict r1, real start, real rw) {
  int j;
  int bad = 0;
  for (j = 0; j < n; j++) {
    real d = id[j] - (start + (real)(2 * j)), v = g[j] + (real)0;
    r0[2 * j] = d == 0 ? v : 0;
    r0[2 * j + 1] = d == 1 ? v : 0;
    r1[2 * j] = d == rw ? v : 0;
    r1[2 * j + 1] = d == rw + 1 ? v : 0;
    bad |= (d != 0) & (d != 1) & (d != rw) & (d != rw + 1);
  }
  return bad;
}

static int S(max_pool_backward_2x2)(int64_t planes, int64_t h, int64_t w,
                                    const real *g, const real *idx,
                                    int64_t base, real *gx) {
  int64_t p, oh, i, ohn = h / 2, own = w / 2, k = 0;
  int bad = 0;
  for (p = 0; p < planes && !bad; p++) {
    real *gp = gx + p * h * w;
    for (oh = 0; oh < ohn; oh++, k += own) {
      real *r0 = gp + 2 * oh * w, start = (real)(base + 2 * oh * w);
#if IS_F32 && defined(PBT_POOL_VEC)
      if (own >= 8)
        bad |= unpool2x2_vec8((int)own, g + k, idx + k, r0, r0 + w, start, (real)w);
      else if (own >= 4)
        bad |= unpool2x2_vec4((int)own, g + k, idx + k, r0, r0 + w, start, (real)w);
      else
#endif
        bad |= S(unpool2x2_row)((int)own, g + k, idx + k, r0, r0 + w, start, (real)w);
      if (w & 1) r0[w - 1] = r0[2 * w - 1] = 0;
    }
    if (h & 1)
      for (i = 0; i < w; i++) gp[(h - 1) * w + i] = 0;
  }
  return !bad;
}

static pbt_status S(max_pool_backward)(int64_t planes, int64_t plane, int64_t n,
                                       const real *g, const void *idx,
                                       int idx_f64, int64_t base, real *gx,
                                       pbt_error *err) {
  int64_t p, i;
  memset(gx, 0, (size_t)(planes * plane) * sizeof *gx);
  for (p = 0; p < planes; p++)
    for (i = 0; i < n; i++) {
      int64_t k = p * n + i, iv;
      double v = idx_f64 ? ((const double *)idx)[k] : (double)((const float *)idx)[k];
      if (!(v >= (double)base && v < (double)(base + plane)) ||
          (double)(iv = (int64_t)v) != v)
        return pbt_fail(err, PBT_ERR_ARG, "index %g out of range for size %lld", v,
                        (long long)plane);
      gx[p * plane + iv - base] += g[k];
    }
  return PBT_OK;
}
