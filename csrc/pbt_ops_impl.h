/*
 * pbt_ops_impl.h -- the per-dtype kernels of pbt_ops.c, included once per
 * dtype (TH style) with these macros defined:
 *   real     the element type (float, double)
 *   accreal  the accumulation type (double)
 *   S(name)  name with the dtype suffix (name_f32, name_f64)
 * and the math functions S(m_exp), S(m_log), ... defined before.
 *
 * The row kernels take a length and one pointer and one stride (in
 * elements) per operand.  The op is switched on outside the loops: every
 * loop below is instantiated with a constant op (the helpers are
 * always_inline) so that gcc vectorizes it; unit and zero strides get loops
 * of their own.
 */

/* ---- binary ----------------------------------------------------------------- */

PBT_INLINE real S(binop)(int op, real x, real y) {
  switch (op) {
  case PBT_ADD: return x + y;
  case PBT_SUB: return x - y;
  case PBT_MUL: return x * y;
  case PBT_DIV: return x / y;
  case PBT_POW: return S(m_pow)(x, y);
  case PBT_MAXIMUM: return (x > y || x != x) ? x : y;
  case PBT_MINIMUM: return (x < y || x != x) ? x : y;
  case PBT_EQ: return (real)(x == y);
  case PBT_NE: return (real)(x != y);
  case PBT_LT: return (real)(x < y);
  case PBT_LE: return (real)(x <= y);
  case PBT_GT: return (real)(x > y);
  case PBT_GE: return (real)(x >= y);
  }
  return 0;
}

PBT_INLINE void S(binloop)(int op, int64_t n, real *o, int64_t so,
                           const real *a, int64_t sa, const real *b,
                           int64_t sb) {
  int64_t i;
  for (i = 0; i < n; i++) o[i * so] = S(binop)(op, a[i * sa], b[i * sb]);
}

PBT_INLINE void S(binrow_op)(int op, int64_t n, real *o, int64_t so,
                             const real *a, int64_t sa, const real *b,
                             int64_t sb) {
  if (so == 1 && sa == 1 && sb == 1) S(binloop)(op, n, o, 1, a, 1, b, 1);
  else if (so == 1 && sa == 1 && sb == 0) S(binloop)(op, n, o, 1, a, 1, b, 0);
  else if (so == 1 && sa == 0 && sb == 1) S(binloop)(op, n, o, 1, a, 0, b, 1);
  else S(binloop)(op, n, o, so, a, sa, b, sb);
}

static PBT_CLONES void S(binary_row)(pbt_binop op, int64_t n, real *o,
                                     int64_t so, const real *a, int64_t sa,
                                     const real *b, int64_t sb) {
  switch (op) {
  case PBT_ADD: S(binrow_op)(PBT_ADD, n, o, so, a, sa, b, sb); break;
  case PBT_SUB: S(binrow_op)(PBT_SUB, n, o, so, a, sa, b, sb); break;
  case PBT_MUL: S(binrow_op)(PBT_MUL, n, o, so, a, sa, b, sb); break;
  case PBT_DIV: S(binrow_op)(PBT_DIV, n, o, so, a, sa, b, sb); break;
  case PBT_POW: S(binloop)(PBT_POW, n, o, so, a, sa, b, sb); break;
  case PBT_MAXIMUM: S(binrow_op)(PBT_MAXIMUM, n, o, so, a, sa, b, sb); break;
  case PBT_MINIMUM: S(binrow_op)(PBT_MINIMUM, n, o, so, a, sa, b, sb); break;
  case PBT_EQ: S(binrow_op)(PBT_EQ, n, o, so, a, sa, b, sb); break;
  case PBT_NE: S(binrow_op)(PBT_NE, n, o, so, a, sa, b, sb); break;
  case PBT_LT: S(binrow_op)(PBT_LT, n, o, so, a, sa, b, sb); break;
  case PBT_LE: S(binrow_op)(PBT_LE, n, o, so, a, sa, b, sb); break;
  case PBT_GT: S(binrow_op)(PBT_GT, n, o, so, a, sa, b, sb); break;
  case PBT_GE: S(binrow_op)(PBT_GE, n, o, so, a, sa, b, sb); break;
  }
}

/* o = a + alpha * b */
static PBT_CLONES void S(axpy_row)(int64_t n, real *o, int64_t so,
                                   const real *a, int64_t sa, real alpha,
                                   const real *b, int64_t sb) {
  int64_t i;
  if (so == 1 && sa == 1 && sb == 1)
    for (i = 0; i < n; i++) o[i] = a[i] + alpha * b[i];
  else
    for (i = 0; i < n; i++) o[i * so] = a[i * sa] + alpha * b[i * sb];
}

/* ---- unary ------------------------------------------------------------------ */

PBT_INLINE real S(unop)(int op, real x) {
  switch (op) {
  case PBT_NEG: return -x;
  case PBT_EXP: return S(m_exp)(x);
  case PBT_LOG: return S(m_log)(x);
  case PBT_LOG1P: return S(m_log1p)(x);
  case PBT_SQRT: return S(m_sqrt)(x);
  case PBT_ABS: return S(m_abs)(x);
  case PBT_SIN: return S(m_sin)(x);
  case PBT_COS: return S(m_cos)(x);
  case PBT_TANH: return S(m_tanh)(x);
  case PBT_SIGMOID: return S(m_sigmoid)(x);
  case PBT_RELU: return x < 0 ? 0 : x;
  case PBT_SIGN: return x > 0 ? 1 : (x < 0 ? -1 : x);
  case PBT_FLOOR: return S(m_floor)(x);
  }
  return 0;
}

/* The fast kernel of op, for x where S(fast_domain)(op, x). */
PBT_INLINE real S(unop_fast)(int op, real x) {
  switch (op) {
  case PBT_LOG: return S(m_log_fast)(x);
  case PBT_LOG1P: return S(m_log1p_fast)(x);
  case PBT_SIN: return S(m_sin_fast)(x);
  case PBT_COS: return S(m_cos_fast)(x);
  }
  return S(unop)(op, x);
}

/* In chunks: the fast kernel when the whole chunk is in its domain, else
 * the full function and libm for the elements that need it.  The chunk is
 * read before it is written, so o may be a. */
PBT_INLINE void S(unloop_chunked)(int op, int64_t n, real *o, int64_t so,
                                  const real *a, int64_t sa) {
  int64_t i, j, m;
  for (i = 0; i < n; i += FAST_CHUNK) {
    real *oc = o + i * so;
    const real *ac = a + i * sa;
    int outside = 0;
    m = n - i < FAST_CHUNK ? n - i : FAST_CHUNK;
    for (j = 0; j < m; j++) outside |= !S(fast_domain)(op, ac[j * sa]);
    if (!outside) {
      for (j = 0; j < m; j++) oc[j * so] = S(unop_fast)(op, ac[j * sa]);
    } else {
      real x[FAST_CHUNK];
      for (j = 0; j < m; j++) x[j] = ac[j * sa];
      for (j = 0; j < m; j++) oc[j * so] = S(unop)(op, x[j]);
      for (j = 0; j < m; j++)
        if (S(needs_libm)(op, x[j])) oc[j * so] = S(libm)(op, x[j]);
    }
  }
}

PBT_INLINE void S(unloop)(int op, int64_t n, real *o, int64_t so,
                          const real *a, int64_t sa) {
  int64_t i;
  if (sizeof(real) == sizeof(float) &&
      (op == PBT_LOG || op == PBT_LOG1P || op == PBT_SIN || op == PBT_COS)) {
    if (so == 1 && sa == 1) S(unloop_chunked)(op, n, o, 1, a, 1);
    else S(unloop_chunked)(op, n, o, so, a, sa);
  } else if (so == 1 && sa == 1) {
    for (i = 0; i < n; i++) o[i] = S(unop)(op, a[i]);
  } else {
    for (i = 0; i < n; i++) o[i * so] = S(unop)(op, a[i * sa]);
  }
}

static PBT_CLONES_FMA void S(unary_row)(pbt_unop op, int64_t n, real *o,
                                    int64_t so, const real *a, int64_t sa) {
  switch (op) {
  case PBT_NEG: S(unloop)(PBT_NEG, n, o, so, a, sa); break;
  case PBT_EXP: S(unloop)(PBT_EXP, n, o, so, a, sa); break;
  case PBT_LOG: S(unloop)(PBT_LOG, n, o, so, a, sa); break;
  case PBT_LOG1P: S(unloop)(PBT_LOG1P, n, o, so, a, sa); break;
  case PBT_SQRT: S(unloop)(PBT_SQRT, n, o, so, a, sa); break;
  case PBT_ABS: S(unloop)(PBT_ABS, n, o, so, a, sa); break;
  case PBT_SIN: S(unloop)(PBT_SIN, n, o, so, a, sa); break;
  case PBT_COS: S(unloop)(PBT_COS, n, o, so, a, sa); break;
  case PBT_TANH: S(unloop)(PBT_TANH, n, o, so, a, sa); break;
  case PBT_SIGMOID: S(unloop)(PBT_SIGMOID, n, o, so, a, sa); break;
  case PBT_RELU: S(unloop)(PBT_RELU, n, o, so, a, sa); break;
  case PBT_SIGN: S(unloop)(PBT_SIGN, n, o, so, a, sa); break;
  case PBT_FLOOR: S(unloop)(PBT_FLOOR, n, o, so, a, sa); break;
  }
}

static PBT_CLONES void S(clamp_row)(int64_t n, real *o, int64_t so,
                                    const real *a, int64_t sa, real lo,
                                    real hi) {
  int64_t i;
  if (so == 1 && sa == 1)
    for (i = 0; i < n; i++) {
      real x = a[i];
      x = x < lo ? lo : x;
      o[i] = x > hi ? hi : x;
    }
  else
    for (i = 0; i < n; i++) {
      real x = a[i * sa];
      x = x < lo ? lo : x;
      o[i * so] = x > hi ? hi : x;
    }
}

/* o = m != 0 ? a : b; the mask is float32 (mdouble = 0) or float64. */
static void S(where_row)(int64_t n, real *o, int64_t so, const void *m,
                         int mdouble, int64_t sm, const real *a, int64_t sa,
                         const real *b, int64_t sb) {
  int64_t i;
  if (mdouble) {
    const double *md = (const double *)m;
    for (i = 0; i < n; i++)
      o[i * so] = md[i * sm] != 0 ? a[i * sa] : b[i * sb];
  } else {
    const float *mf = (const float *)m;
    for (i = 0; i < n; i++)
      o[i * so] = mf[i * sm] != 0 ? a[i * sa] : b[i * sb];
  }
}

/* ---- mapped sums -------------------------------------------------------------
 *
 * sum of f(x) over a contiguous row, pairwise over blocks, each block with
 * 16 independent accumulators; c[k] is the centre of DEV2 and EXP. */

PBT_INLINE accreal S(msmap)(int kind, real x, const accreal *c, int64_t k,
                            accreal p) {
  switch (kind) {
  case MS_SUM: return (accreal)x;
  case MS_SQ: return (accreal)x * (accreal)x;
  case MS_ABS: return (accreal)S(m_abs)(x);
  case MS_POW: return pow((accreal)S(m_abs)(x), p);
  case MS_NZ: return (accreal)(x != 0);
  case MS_DEV2: {
    accreal d = (accreal)x - c[k];
    return d * d;
  }
  case MS_EXP: return (accreal)S(m_exp)(x - (real)c[k]);
  }
  return 0;
}

#define MS_LANES 16
PBT_INLINE accreal S(msum_block)(int kind, const real *x, int64_t n,
                                 const accreal *c, accreal p) {
  accreal acc[MS_LANES] = {0}, s;
  int64_t i = 0;
  int j;
  for (; i + MS_LANES <= n; i += MS_LANES)
    for (j = 0; j < MS_LANES; j++) acc[j] += S(msmap)(kind, x[i + j], c, 0, p);
  for (j = MS_LANES / 2; j > 0; j /= 2) {
    int k;
    for (k = 0; k < j; k++) acc[k] += acc[k + j];
  }
  s = acc[0];
  for (; i < n; i++) s += S(msmap)(kind, x[i], c, 0, p);
  return s;
}

static PBT_CLONES accreal S(msum_blk)(int kind, const real *x, int64_t n,
                                      const accreal *c, accreal p) {
  switch (kind) {
  case MS_SUM: return S(msum_block)(MS_SUM, x, n, c, p);
  case MS_SQ: return S(msum_block)(MS_SQ, x, n, c, p);
  case MS_ABS: return S(msum_block)(MS_ABS, x, n, c, p);
  case MS_POW: return S(msum_block)(MS_POW, x, n, c, p);
  case MS_NZ: return S(msum_block)(MS_NZ, x, n, c, p);
  case MS_DEV2: return S(msum_block)(MS_DEV2, x, n, c, p);
  case MS_EXP: return S(msum_block)(MS_EXP, x, n, c, p);
  }
  return 0;
}

static accreal S(msum)(int kind, const real *x, int64_t n, const accreal *c,
                       accreal p) {
  int64_t h;
  if (n <= MS_BLOCK) return S(msum_blk)(kind, x, n, c, p);
  h = (n / 2) / MS_LANES * MS_LANES;
  return S(msum)(kind, x, h, c, p) + S(msum)(kind, x + h, n - h, c, p);
}

/* acc[j] += f(x[r * inner + j]) for r < R, j < inner.  COL_GROUP rows are
 * read at once (summed, then added to acc): acc then goes through the
 * cache COL_GROUP times less often, and the rows are streams the prefetcher
 * follows; blocks of columns would make short streams instead. */
PBT_INLINE void S(mcol_op)(int kind, const real *x, int64_t R, int64_t inner,
                           accreal *acc, const accreal *c, accreal p) {
  int64_t r = 0, j;
  int k;
  for (; r + COL_GROUP <= R; r += COL_GROUP, x += COL_GROUP * inner)
    for (j = 0; j < inner; j++) {
      accreal s = 0;
      /* unrolled first, so that gcc vectorizes the loop over j */
#pragma GCC unroll 8
      for (k = 0; k < COL_GROUP; k++)
        s += S(msmap)(kind, x[k * inner + j], c, j, p);
      acc[j] += s;
    }
  for (; r < R; r++, x += inner)
    for (j = 0; j < inner; j++) acc[j] += S(msmap)(kind, x[j], c, j, p);
}

static PBT_CLONES void S(mcol)(int kind, const real *x, int64_t R,
                               int64_t inner, accreal *acc, const accreal *c,
                               accreal p) {
  switch (kind) {
  case MS_SUM: S(mcol_op)(MS_SUM, x, R, inner, acc, c, p); break;
  case MS_SQ: S(mcol_op)(MS_SQ, x, R, inner, acc, c, p); break;
  case MS_ABS: S(mcol_op)(MS_ABS, x, R, inner, acc, c, p); break;
  case MS_POW: S(mcol_op)(MS_POW, x, R, inner, acc, c, p); break;
  case MS_NZ: S(mcol_op)(MS_NZ, x, R, inner, acc, c, p); break;
  case MS_DEV2: S(mcol_op)(MS_DEV2, x, R, inner, acc, c, p); break;
  case MS_EXP: S(mcol_op)(MS_EXP, x, R, inner, acc, c, p); break;
  }
}

/* ---- products, maxima ----------------------------------------------------- */

static PBT_CLONES accreal S(prod_row)(const real *x, int64_t n) {
  accreal acc[8] = {1, 1, 1, 1, 1, 1, 1, 1}, s;
  int64_t i = 0;
  int j;
  for (; i + 8 <= n; i += 8)
    for (j = 0; j < 8; j++) acc[j] *= x[i + j];
  s = ((acc[0] * acc[1]) * (acc[2] * acc[3])) *
      ((acc[4] * acc[5]) * (acc[6] * acc[7]));
  for (; i < n; i++) s *= x[i];
  return s;
}

static PBT_CLONES void S(prod_col)(const real *x, int64_t R, int64_t inner,
                                   accreal *acc) {
  int64_t r, j;
  for (r = 0; r < R; r++, x += inner)
    for (j = 0; j < inner; j++) acc[j] *= x[j];
}

/* "x beats m": greater (smaller), or the first NaN. */
PBT_INLINE int S(beats)(int want_max, real x, real m) {
  return (want_max ? x > m : x < m) || (x != x && m == m);
}

/* Maximum of n >= 1 contiguous elements; NaN if any is NaN.  The NaNs are
 * tracked in lanes of their own, and there are enough lanes that gcc keeps
 * the lane loop (and vectorizes it) rather than unrolling it. */
PBT_INLINE real S(max_block)(int want_max, const real *x, int64_t n) {
  real m[MAX_LANES], nan[MAX_LANES], r;
  int64_t i = 0;
  int j;
  if (n < MAX_LANES) {
    r = x[0];
    for (i = 1; i < n; i++) r = S(beats)(want_max, x[i], r) ? x[i] : r;
    return r;
  }
  for (j = 0; j < MAX_LANES; j++) m[j] = x[j], nan[j] = 0;
  for (i = MAX_LANES; i + MAX_LANES <= n; i += MAX_LANES)
    for (j = 0; j < MAX_LANES; j++) {
      real v = x[i + j];
      if (want_max) m[j] = v > m[j] ? v : m[j];
      else m[j] = v < m[j] ? v : m[j];
      nan[j] = v != v ? v : nan[j];
    }
  r = m[0];
  for (j = 1; j < MAX_LANES; j++) r = S(beats)(want_max, m[j], r) ? m[j] : r;
  for (j = 0; j < MAX_LANES; j++) r = nan[j] != nan[j] ? nan[j] : r;
  for (; i < n; i++) r = S(beats)(want_max, x[i], r) ? x[i] : r;
  return r;
}

/* Max (min) of a contiguous row of n >= 1 elements and the 0-based position
 * of its first occurrence (of the first NaN if any). */
PBT_INLINE int64_t S(arg_row_op)(int want_max, const real *x, int64_t n,
                                 real *value) {
  int64_t b, best_b = 0, len, i;
  real best = x[0];
  for (b = 0; b < n; b += MAX_BLOCK) {
    real v;
    len = n - b < MAX_BLOCK ? n - b : MAX_BLOCK;
    v = S(max_block)(want_max, x + b, len);
    if (b == 0 || S(beats)(want_max, v, best)) best = v, best_b = b;
  }
  *value = best;
  len = n - best_b < MAX_BLOCK ? n - best_b : MAX_BLOCK;
  for (i = best_b; i < best_b + len; i++)
    if (x[i] == best || (best != best && x[i] != x[i])) return i;
  return best_b;
}

static PBT_CLONES int64_t S(arg_row)(int want_max, const real *x, int64_t n,
                                     real *value) {
  return want_max ? S(arg_row_op)(1, x, n, value)
                  : S(arg_row_op)(0, x, n, value);
}

static PBT_CLONES real S(max_row)(int want_max, const real *x, int64_t n) {
  return want_max ? S(max_block)(1, x, n) : S(max_block)(0, x, n);
}

/* Column maxima over R >= 1 rows: m[j] and idx[j] (positions), or when idx
 * is NULL m[j] only, using nan[] (inner elements) as scratch.  COL_GROUP
 * rows at once, as S(mcol_op). */
PBT_INLINE void S(max_col_op)(int want_max, const real *x, int64_t R,
                              int64_t inner, real *m, int64_t *idx,
                              real *nan) {
  int64_t r = 1, j;
  int k;
  for (j = 0; j < inner; j++) m[j] = x[j];
  x += inner;
  if (idx) {
    for (j = 0; j < inner; j++) idx[j] = 0;
    for (; r + COL_GROUP <= R; r += COL_GROUP, x += COL_GROUP * inner)
      for (j = 0; j < inner; j++) {
        real v = m[j];
        int64_t at = idx[j];
#pragma GCC unroll 8
        for (k = 0; k < COL_GROUP; k++) {
          real t = x[k * inner + j];
          if (S(beats)(want_max, t, v)) v = t, at = r + k;
        }
        m[j] = v, idx[j] = at;
      }
    for (; r < R; r++, x += inner)
      for (j = 0; j < inner; j++)
        if (S(beats)(want_max, x[j], m[j])) m[j] = x[j], idx[j] = r;
    return;
  }
  for (j = 0; j < inner; j++) nan[j] = 0;
  for (; r + COL_GROUP <= R; r += COL_GROUP, x += COL_GROUP * inner)
    for (j = 0; j < inner; j++) {
      real v = m[j], nn = nan[j];
#pragma GCC unroll 8
      for (k = 0; k < COL_GROUP; k++) {
        real t = x[k * inner + j];
        if (want_max) v = t > v ? t : v;
        else v = t < v ? t : v;
        nn = t != t ? t : nn;
      }
      m[j] = v, nan[j] = nn;
    }
  for (; r < R; r++, x += inner)
    for (j = 0; j < inner; j++) {
      real t = x[j];
      if (want_max) m[j] = t > m[j] ? t : m[j];
      else m[j] = t < m[j] ? t : m[j];
      nan[j] = t != t ? t : nan[j];
    }
  for (j = 0; j < inner; j++) m[j] = nan[j] != nan[j] ? nan[j] : m[j];
}

static PBT_CLONES void S(max_col)(int want_max, const real *x, int64_t R,
                                  int64_t inner, real *m, int64_t *idx,
                                  real *nan) {
  if (want_max) S(max_col_op)(1, x, R, inner, m, idx, nan);
  else S(max_col_op)(0, x, R, inner, m, idx, nan);
}

/* ---- drivers: a contiguous [outer, R, inner] block reduced over R --------- */

/* work: 3 * inner accreals when inner > 1. */
static void S(reduce_run)(pbt_reduce_op op, const real *x, int64_t outer,
                          int64_t R, int64_t inner, real *out,
                          accreal *work) {
  int64_t o, j;
  for (o = 0; o < outer; o++, x += R * inner, out += inner) {
    if (inner == 1) {
      accreal v = 0;
      switch (op) {
      case PBT_SUM: v = S(msum)(MS_SUM, x, R, NULL, 0); break;
      case PBT_MEAN: v = S(msum)(MS_SUM, x, R, NULL, 0) / (accreal)R; break;
      case PBT_PROD: v = S(prod_row)(x, R); break;
      case PBT_MAX: v = S(max_row)(1, x, R); break;
      case PBT_MIN: v = S(max_row)(0, x, R); break;
      case PBT_LOGSUMEXP: {
        accreal m;
        if (R == 0) {
          v = -INFINITY;
          break;
        }
        m = S(max_row)(1, x, R);
        if (m != m || m == INFINITY || m == -INFINITY) v = m;
        else v = m + log(S(msum)(MS_EXP, x, R, &m, 0));
        break;
      }
      }
      out[0] = (real)v;
      continue;
    }
    switch (op) {
    case PBT_SUM:
    case PBT_MEAN:
      for (j = 0; j < inner; j++) work[j] = 0;
      S(mcol)(MS_SUM, x, R, inner, work, NULL, 0);
      for (j = 0; j < inner; j++)
        out[j] = (real)(op == PBT_MEAN ? work[j] / (accreal)R : work[j]);
      break;
    case PBT_PROD:
      for (j = 0; j < inner; j++) work[j] = 1;
      S(prod_col)(x, R, inner, work);
      for (j = 0; j < inner; j++) out[j] = (real)work[j];
      break;
    case PBT_MAX:
    case PBT_MIN:
      S(max_col)(op == PBT_MAX, x, R, inner, out, NULL, (real *)(void *)work);
      break;
    case PBT_LOGSUMEXP: {
      accreal *m = work + inner;
      if (R == 0) {
        for (j = 0; j < inner; j++) out[j] = -INFINITY;
        break;
      }
      S(max_col)(1, x, R, inner, out, NULL, (real *)(void *)(work + 2 * inner));
      for (j = 0; j < inner; j++) {
        m[j] = out[j];
        /* an infinite or NaN maximum is the result; centre at 0 */
        if (m[j] != m[j] || m[j] == INFINITY || m[j] == -INFINITY) m[j] = 0;
        work[j] = 0;
      }
      S(mcol)(MS_EXP, x, R, inner, work, m, 0);
      for (j = 0; j < inner; j++) {
        real mx = out[j];
        if (!(mx != mx || mx == INFINITY || mx == -INFINITY))
          out[j] = (real)(m[j] + log(work[j]));
      }
      break;
    }
    }
  }
}

/* values (when not NULL) and 0-based positions as doubles plus base;
 * mwork and iwork hold inner elements. */
static void S(arg_run)(int want_max, const real *x, int64_t outer, int64_t R,
                       int64_t inner, real *values, double *indices,
                       int64_t base, real *mwork, int64_t *iwork) {
  int64_t o, j;
  for (o = 0; o < outer; o++, x += R * inner) {
    if (inner == 1) {
      real v;
      int64_t i = S(arg_row)(want_max, x, R, &v);
      if (values) values[o] = v;
      indices[o] = (double)(i + base);
      continue;
    }
    S(max_col)(want_max, x, R, inner, mwork, iwork, NULL);
    for (j = 0; j < inner; j++) {
      if (values) values[o * inner + j] = mwork[j];
      indices[o * inner + j] = (double)(iwork[j] + base);
    }
  }
}

/* Variance with the given correction (sqrt when take_sqrt); work: 2 * inner
 * accreals when inner > 1. */
static void S(var_run)(const real *x, int64_t outer, int64_t R, int64_t inner,
                       int64_t correction, int take_sqrt, real *out,
                       accreal *work) {
  int64_t o, j;
  accreal den = R > correction ? (accreal)(R - correction) : 0;
  for (o = 0; o < outer; o++, x += R * inner, out += inner) {
    if (R == 0) {
      for (j = 0; j < inner; j++) out[j] = NAN;
      continue;
    }
    if (inner == 1) {
      accreal mean = S(msum)(MS_SUM, x, R, NULL, 0) / (accreal)R, v;
      v = S(msum)(MS_DEV2, x, R, &mean, 0) / den;
      out[0] = (real)(take_sqrt ? sqrt(v) : v);
      continue;
    }
    for (j = 0; j < inner; j++) work[j] = 0, work[inner + j] = 0;
    S(mcol)(MS_SUM, x, R, inner, work, NULL, 0);
    for (j = 0; j < inner; j++) work[j] /= (accreal)R;
    S(mcol)(MS_DEV2, x, R, inner, work + inner, work, 0);
    for (j = 0; j < inner; j++) {
      accreal v = work[inner + j] / den;
      out[j] = (real)(take_sqrt ? sqrt(v) : v);
    }
  }
}

/* Mapped sum with a final transform: the sum-based norms; work: inner
 * accreals (at least 1). */
static void S(norm_run)(int kind, accreal p, const real *x, int64_t outer,
                        int64_t R, int64_t inner, real *out, accreal *work) {
  int64_t o, j;
  for (o = 0; o < outer; o++, x += R * inner, out += inner) {
    if (inner == 1) {
      work[0] = S(msum)(kind, x, R, NULL, p);
      j = 0;
    } else {
      for (j = 0; j < inner; j++) work[j] = 0;
      S(mcol)(kind, x, R, inner, work, NULL, p);
    }
    for (j = 0; j < inner; j++) {
      accreal s = work[j];
      if (kind == MS_SQ) s = sqrt(s);
      else if (kind == MS_POW) s = pow(s, 1 / p);
      out[j] = (real)s;
    }
  }
}

/* ---- softmax ------------------------------------------------------------------ */

static PBT_CLONES void S(exp_shift_row)(int64_t n, real *o, const real *x,
                                        real m) {
  int64_t i;
  for (i = 0; i < n; i++) o[i] = S(m_exp)(x[i] - m);
}

static PBT_CLONES void S(scale_row)(int64_t n, real *o, real s) {
  int64_t i;
  for (i = 0; i < n; i++) o[i] = o[i] / s;
}

static PBT_CLONES void S(shift2_row)(int64_t n, real *o, const real *x,
                                     real m, real l) {
  int64_t i;
  for (i = 0; i < n; i++) o[i] = (x[i] - m) - l;
}

/* out may be x (in place).  work: 4 * inner accreals when inner > 1. */
static void S(softmax_run)(int take_log, const real *x, int64_t outer,
                           int64_t R, int64_t inner, real *out,
                           accreal *work) {
  int64_t o, r, j;
  for (o = 0; o < outer; o++, x += R * inner, out += R * inner) {
    if (R == 0) continue;
    if (inner == 1) {
      real m = S(max_row)(1, x, R);
      accreal s;
      if (m == -INFINITY || m == INFINITY) m = 0; /* gives NaN or 0 as torch */
      if (take_log) {
        accreal mm = m;
        s = S(msum)(MS_EXP, x, R, &mm, 0);
        S(shift2_row)(R, out, x, m, (real)log(s));
      } else {
        S(exp_shift_row)(R, out, x, m);
        s = S(msum)(MS_SUM, out, R, NULL, 0);
        S(scale_row)(R, out, (real)s);
      }
      continue;
    }
    {
      accreal *m = work, *s = work + inner;
      real *mx = (real *)(void *)(work + 2 * inner);
      S(max_col)(1, x, R, inner, mx, NULL, mx + inner);
      for (j = 0; j < inner; j++) {
        m[j] = mx[j] == -INFINITY || mx[j] == INFINITY ? 0 : mx[j];
        s[j] = 0;
      }
      S(mcol)(MS_EXP, x, R, inner, s, m, 0);
      for (r = 0; r < R; r++) {
        const real *xr = x + r * inner;
        real *orow = out + r * inner;
        if (take_log)
          for (j = 0; j < inner; j++)
            orow[j] = (xr[j] - (real)m[j]) - (real)log(s[j]);
        else
          for (j = 0; j < inner; j++)
            orow[j] = S(m_exp)(xr[j] - (real)m[j]) / (real)s[j];
      }
    }
  }
}
