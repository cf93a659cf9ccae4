/* pbt_linalg.c -- matrix products on OpenBLAS (see pbt_linalg.h). */
#include "pbt_linalg.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* ---- geometry ------------------------------------------------------------ */

/* A strided matrix inside a tensor's data: element (i, j) of batch b lies at
 * base + off + i * rs + j * cs (in elements). */
typedef struct mat {
  char *base; /* data of the storage, offset included */
  int64_t rs, cs;
} mat;

/* How BLAS can read a rows x cols matrix with strides rs, cs. */
enum { LAY_N, LAY_T, LAY_COPY };

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* LAY_N: row-major with leading dimension *ld; LAY_T: column-major (a
 * transposed view), the transpose row-major with *ld; LAY_COPY: neither.
 * The strides of a size-1 dimension are ignored and ld made valid. */
static int layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                  int64_t *ld) {
  if ((cols <= 1 || cs == 1) &&
      (rows <= 1 || (rs >= max1(cols) && rs <= INT_MAX))) {
    *ld = rows <= 1 ? max1(cols) : rs;
    return LAY_N;
  }
  if ((rows <= 1 || rs == 1) &&
      (cols <= 1 || (cs >= max1(rows) && cs <= INT_MAX))) {
    *ld = cols <= 1 ? max1(rows) : cs;
    return LAY_T;
  }
  return LAY_COPY;
}

/* A vector of length n and stride inc that BLAS accepts (inc != 0). */
static int vec_ok(int64_t n, int64_t inc) {
  return n <= 1 || (inc > 0 && inc <= INT_MAX);
}

static int vec_inc(int64_t n, int64_t inc) { return n <= 1 ? 1 : (int)inc; }

/* ---- the product problem --------------------------------------------------- */

/* Which BLAS routine a product of these sizes uses. */
enum { K_EMPTY, K_ZERO, K_DOT, K_GEMV_A, K_GEMV_B, K_GER, K_GEMM };

static int kind_of(int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return K_EMPTY;
  if (k == 0) return K_ZERO;
  if (m == 1 && n == 1) return K_DOT;
  if (n == 1) return K_GEMV_A; /* y[m] = A x */
  if (m == 1) return K_GEMV_B; /* y[n] = B^T x */
  if (k == 1) return K_GER;
  return K_GEMM;
}

/* C[b] = alpha * A[b] B[b] + beta * C[b] for every batch b. */
typedef struct problem {
  pbt_dtype dt;
  int kind;
  int64_t m, n, k;
  mat A, B, C;
  int nb; /* batch dimensions, broadcast; batch strides per operand */
  int64_t bshape[PBT_MAX_DIM], bsa[PBT_MAX_DIM], bsb[PBT_MAX_DIM],
      bsc[PBT_MAX_DIM];
  double alpha, beta;
} problem;

/* Whether the operand can be read as the problem's kind needs it. */
static int a_ok(const problem *p, int64_t rs, int64_t cs) {
  int64_t ld;
  switch (p->kind) {
  case K_DOT: case K_GEMV_B: return vec_ok(p->k, cs);
  case K_GER: return vec_ok(p->m, rs);
  case K_GEMV_A: case K_GEMM: return layout(p->m, p->k, rs, cs, &ld) != LAY_COPY;
  default: return 1;
  }
}

static int b_ok(const problem *p, int64_t rs, int64_t cs) {
  int64_t ld;
  switch (p->kind) {
  case K_DOT: case K_GEMV_A: return vec_ok(p->k, rs);
  case K_GER: return vec_ok(p->n, cs);
  case K_GEMV_B: case K_GEMM: return layout(p->k, p->n, rs, cs, &ld) != LAY_COPY;
  default: return 1;
  }
}

static int c_ok(const problem *p, int64_t rs, int64_t cs, int nb,
                const int64_t *bshape, const int64_t *bstride) {
  int64_t ld;
  int i;
  for (i = 0; i < nb; i++) /* an expanded output would be written twice */
    if (bshape[i] > 1 && bstride[i] == 0) return 0;
  switch (p->kind) {
  case K_DOT: case K_EMPTY: return 1;
  case K_GEMV_A: return vec_ok(p->m, rs);
  case K_GEMV_B: return vec_ok(p->n, cs);
  default: return layout(p->m, p->n, rs, cs, &ld) != LAY_COPY;
  }
}

#define ELEM(base, off, es) ((void *)((base) + (off) * (es)))

static void scale(const problem *p, char *c) {
  int64_t i, j;
  for (i = 0; i < p->m; i++)
    for (j = 0; j < p->n; j++) {
      int64_t o = i * p->C.rs + j * p->C.cs;
      if (p->dt == PBT_FLOAT64) {
        double *x = (double *)c + o;
        *x = p->beta == 0 ? 0 : p->beta * *x;
      } else {
        float *x = (float *)c + o;
        *x = p->beta == 0 ? 0 : (float)p->beta * *x;
      }
    }
}

/* One matrix product: A, B, C point at this batch's first elements. */
static void product1(const problem *p, char *a, char *b, char *c) {
  const int f64 = p->dt == PBT_FLOAT64;
  const int m = (int)p->m, n = (int)p->n, k = (int)p->k;
  const float fa = (float)p->alpha, fb = (float)p->beta;
  int64_t lda = 1, ldb = 1, ldc = 1;
  int la, lb;
  switch (p->kind) {
  case K_EMPTY: return;
  case K_ZERO: scale(p, c); return;
  case K_DOT: {
    int ia = vec_inc(k, p->A.cs), ib = vec_inc(k, p->B.rs);
    if (f64) {
      double d = p->alpha * cblas_ddot(k, (double *)a, ia, (double *)b, ib);
      *(double *)c = p->beta == 0 ? d : d + p->beta * *(double *)c;
    } else {
      float d = fa * cblas_sdot(k, (float *)a, ia, (float *)b, ib);
      *(float *)c = p->beta == 0 ? d : d + fb * *(float *)c;
    }
    return;
  }
  case K_GEMV_A: { /* y[m] = A[m,k] x[k] */
    int ix = vec_inc(k, p->B.rs), iy = vec_inc(m, p->C.rs);
    la = layout(m, k, p->A.rs, p->A.cs, &lda);
    if (f64)
      cblas_dgemv(CblasRowMajor, la == LAY_N ? CblasNoTrans : CblasTrans,
                  la == LAY_N ? m : k, la == LAY_N ? k : m, p->alpha,
                  (double *)a, (int)lda, (double *)b, ix, p->beta, (double *)c, iy);
    else
      cblas_sgemv(CblasRowMajor, la == LAY_N ? CblasNoTrans : CblasTrans,
                  la == LAY_N ? m : k, la == LAY_N ? k : m, fa, (float *)a,
                  (int)lda, (float *)b, ix, fb, (float *)c, iy);
    return;
  }
  case K_GEMV_B: { /* y[n] = B[k,n]^T x[k] */
    int ix = vec_inc(k, p->A.cs), iy = vec_inc(n, p->C.cs);
    lb = layout(k, n, p->B.rs, p->B.cs, &ldb);
    if (f64)
      cblas_dgemv(CblasRowMajor, lb == LAY_N ? CblasTrans : CblasNoTrans,
                  lb == LAY_N ? k : n, lb == LAY_N ? n : k, p->alpha,
                  (double *)b, (int)ldb, (double *)a, ix, p->beta, (double *)c, iy);
    else
      cblas_sgemv(CblasRowMajor, lb == LAY_N ? CblasTrans : CblasNoTrans,
                  lb == LAY_N ? k : n, lb == LAY_N ? n : k, fa, (float *)b,
                  (int)ldb, (float *)a, ix, fb, (float *)c, iy);
    return;
  }
  case K_GER: { /* C[m,n] = beta C + alpha x[m] y[n]^T */
    int ix = vec_inc(m, p->A.rs), iy = vec_inc(n, p->B.cs);
    int lc = layout(m, n, p->C.rs, p->C.cs, &ldc);
    scale(p, c);
    if (lc == LAY_N) {
      if (f64)
        cblas_dger(CblasRowMajor, m, n, p->alpha, (double *)a, ix, (double *)b,
                   iy, (double *)c, (int)ldc);
      else
        cblas_sger(CblasRowMajor, m, n, fa, (float *)a, ix, (float *)b, iy,
                   (float *)c, (int)ldc);
    } else { /* C^T = y x^T */
      if (f64)
        cblas_dger(CblasRowMajor, n, m, p->alpha, (double *)b, iy, (double *)a,
                   ix, (double *)c, (int)ldc);
      else
        cblas_sger(CblasRowMajor, n, m, fa, (float *)b, iy, (float *)a, ix,
                   (float *)c, (int)ldc);
    }
    return;
  }
  default: { /* K_GEMM */
    int lc = layout(m, n, p->C.rs, p->C.cs, &ldc);
    enum CBLAS_TRANSPOSE ta, tb;
    la = layout(m, k, p->A.rs, p->A.cs, &lda);
    lb = layout(k, n, p->B.rs, p->B.cs, &ldb);
    ta = la == LAY_N ? CblasNoTrans : CblasTrans;
    tb = lb == LAY_N ? CblasNoTrans : CblasTrans;
    if (lc == LAY_N) {
      if (f64)
        cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, p->alpha, (double *)a,
                    (int)lda, (double *)b, (int)ldb, p->beta, (double *)c, (int)ldc);
      else
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, fa, (float *)a, (int)lda,
                    (float *)b, (int)ldb, fb, (float *)c, (int)ldc);
    } else { /* C^T = B^T A^T, written row-major into the column-major C */
      ta = la == LAY_N ? CblasTrans : CblasNoTrans;
      tb = lb == LAY_N ? CblasTrans : CblasNoTrans;
      if (f64)
        cblas_dgemm(CblasRowMajor, tb, ta, n, m, k, p->alpha, (double *)b,
                    (int)ldb, (double *)a, (int)lda, p->beta, (double *)c, (int)ldc);
      else
        cblas_sgemm(CblasRowMajor, tb, ta, n, m, k, fa, (float *)b, (int)ldb,
                    (float *)a, (int)lda, fb, (float *)c, (int)ldc);
    }
    return;
  }
  }
}

/* Whether the batch dimensions of an operand with batch strides bs fold into
 * its rows (stride rs): batch b, row i at (b * m + i) * rs. */
static int folds(const problem *p, const int64_t *bs, int64_t rs) {
  int64_t want = p->m * rs;
  int i;
  for (i = p->nb - 1; i >= 0; i--) {
    if (p->bshape[i] != 1 && bs[i] != want) return 0;
    want *= p->bshape[i];
  }
  return 1;
}

static void run(problem *p) {
  const size_t es = pbt_dtype_size(p->dt);
  int64_t idx[PBT_MAX_DIM], nbatch = 1, oa = 0, ob = 0, oc = 0, t;
  int i;
  for (i = 0; i < p->nb; i++) {
    nbatch *= p->bshape[i];
    idx[i] = 0;
  }
  if (nbatch == 0 || p->kind == K_EMPTY) return;
  if (nbatch > 1 && p->kind == K_GEMM) {
    /* [..,m,k] . [k,n] with row-major A and C: one gemm of nbatch * m rows */
    int64_t lda, ldc, rows = nbatch * p->m;
    int bcast = 1;
    for (i = 0; i < p->nb; i++)
      if (p->bshape[i] != 1 && p->bsb[i] != 0) bcast = 0;
    if (bcast && rows <= INT_MAX &&
        layout(p->m, p->k, p->A.rs, p->A.cs, &lda) == LAY_N && p->A.cs == 1 &&
        layout(p->m, p->n, p->C.rs, p->C.cs, &ldc) == LAY_N && p->C.cs == 1 &&
        folds(p, p->bsa, p->A.rs) && folds(p, p->bsc, p->C.rs)) {
      problem q = *p;
      q.m = rows;
      q.nb = 0;
      product1(&q, p->A.base, p->B.base, p->C.base);
      return;
    }
  }
  for (t = 0; t < nbatch; t++) {
    product1(p, ELEM(p->A.base, oa, es), ELEM(p->B.base, ob, es),
             ELEM(p->C.base, oc, es));
    for (i = p->nb - 1; i >= 0; i--) { /* next batch index */
      if (++idx[i] < p->bshape[i]) {
        oa += p->bsa[i], ob += p->bsb[i], oc += p->bsc[i];
        break;
      }
      idx[i] = 0;
      oa -= p->bsa[i] * (p->bshape[i] - 1);
      ob -= p->bsb[i] * (p->bshape[i] - 1);
      oc -= p->bsc[i] * (p->bshape[i] - 1);
    }
  }
}

/* ---- operands and output ----------------------------------------------------- */

/* The matrix geometry of a product operand: a 1-d tensor is a row (lhs) or
 * a column (rhs); nbd = number of leading batch dimensions. */
typedef struct operand {
  const pbt_tensor *t; /* the tensor read: the input or `copy` */
  pbt_tensor copy;     /* contiguous copy when BLAS cannot read the input */
  int nbd;
  int64_t rs, cs;
} operand;

static void operand_geometry(operand *o, int lhs) {
  const pbt_tensor *t = o->t;
  if (t->ndim == 1) {
    o->nbd = 0;
    o->rs = lhs ? 0 : t->stride[0];
    o->cs = lhs ? t->stride[0] : 0;
  } else {
    o->nbd = t->ndim - 2;
    o->rs = t->stride[t->ndim - 2];
    o->cs = t->stride[t->ndim - 1];
  }
}

/* Batch strides of an operand seen with the broadcast batch shape. */
static void batch_strides(const operand *o, int nb, const int64_t *bshape,
                          int64_t *bs) {
  int i, lead = nb - o->nbd;
  for (i = 0; i < nb; i++) {
    if (i < lead || (o->t->shape[i - lead] == 1 && bshape[i] != 1)) bs[i] = 0;
    else bs[i] = o->t->stride[i - lead];
  }
}

/* Replaces the operand by a contiguous copy when BLAS cannot read it. */
static pbt_status operand_prepare(operand *o, const problem *p, int lhs,
                                  pbt_error *err) {
  pbt_status s;
  operand_geometry(o, lhs);
  if (lhs ? a_ok(p, o->rs, o->cs) : b_ok(p, o->rs, o->cs)) return PBT_OK;
  s = pbt_clone(&o->copy, o->t, err);
  if (s) return s;
  o->t = &o->copy;
  operand_geometry(o, lhs);
  return PBT_OK;
}

static pbt_status check_dtypes(const pbt_tensor *a, const pbt_tensor *b,
                               pbt_error *err) {
  if (a->dtype != b->dtype)
    return pbt_fail(err, PBT_ERR_DTYPE, "dtypes %s and %s do not match",
                    pbt_dtype_name(a->dtype), pbt_dtype_name(b->dtype));
  return PBT_OK;
}

static pbt_status cannot_multiply(const pbt_tensor *a, const pbt_tensor *b,
                                  pbt_error *err) {
  char sa[96], sb[96];
  pbt_format_shape(sa, sizeof sa, a->ndim, a->shape);
  pbt_format_shape(sb, sizeof sb, b->ndim, b->shape);
  return pbt_fail(err, PBT_ERR_SHAPE, "shapes %s and %s cannot be multiplied",
                  sa, sb);
}

static pbt_status too_large(int64_t v, pbt_error *err) {
  return pbt_fail(err, PBT_ERR_ARG, "size %lld too large for BLAS",
                  (long long)v);
}

/* Output modes of a product: written into out; computed in a temporary that
 * then replaces out; computed in a temporary then copied into out. */
enum { OUT_DIRECT, OUT_MOVE, OUT_COPY };

/*
 * The shared driver: checks done by the caller; sizes m, n, k; the result
 * shape (rnd, rshape) whose last dims are [m] / [n] / [m,n] as the 1-d
 * operands dictate; `keep` when beta != 0 (out's values are read).
 */
static pbt_status multiply(pbt_tensor *out, const pbt_tensor *a,
                           const pbt_tensor *b, problem *p, int rnd,
                           const int64_t *rshape, pbt_error *err) {
  operand oa, ob;
  pbt_tensor tmp, *dst = out;
  int mode = OUT_DIRECT, fresh = 0, i;
  pbt_status s = PBT_OK;
  const int keep = p->beta != 0;

  if (p->m > INT_MAX) return too_large(p->m, err);
  if (p->n > INT_MAX) return too_large(p->n, err);
  if (p->k > INT_MAX) return too_large(p->k, err);
  p->kind = kind_of(p->m, p->n, p->k);
  pbt_tensor_init(&tmp);
  if (out->storage && out->dtype != p->dt)
    return pbt_fail(err, PBT_ERR_DTYPE, "out has dtype %s, expected %s",
                    pbt_dtype_name(out->dtype), pbt_dtype_name(p->dt));
  if (out->storage && pbt_shape_equal(out->ndim, out->shape, rnd, rshape) &&
      (s = pbt_check_writable(out, err)))
    return s;

  /* the output: out, or a temporary when out cannot take the result */
  if (!out->storage) {
    s = pbt_tensor_empty(out, p->dt, rnd, rshape, err);
    if (s) return s;
    fresh = 1;
  } else if (!pbt_shape_equal(out->ndim, out->shape, rnd, rshape)) {
    s = pbt_tensor_empty(&tmp, p->dt, rnd, rshape, err);
    if (s) return s;
    dst = &tmp, mode = OUT_MOVE;
  } else {
    int64_t crs = a->ndim >= 2 ? out->stride[p->nb] : 0;
    int64_t ccs = b->ndim >= 2 ? out->stride[rnd - 1] : 0;
    if (out->storage == a->storage || out->storage == b->storage ||
        !c_ok(p, crs, ccs, p->nb, p->bshape, out->stride)) {
      s = keep ? pbt_clone(&tmp, out, err)
               : pbt_tensor_empty(&tmp, p->dt, rnd, rshape, err);
      if (s) return s;
      dst = &tmp, mode = OUT_COPY;
    }
  }

  /* the operands, copied when BLAS cannot read them */
  memset(&oa, 0, sizeof oa);
  memset(&ob, 0, sizeof ob);
  oa.t = a, ob.t = b;
  s = operand_prepare(&oa, p, 1, err);
  if (!s) s = operand_prepare(&ob, p, 0, err);
  if (s) goto done;
  p->A.base = pbt_tensor_data(oa.t);
  p->A.rs = oa.rs, p->A.cs = oa.cs;
  p->B.base = pbt_tensor_data(ob.t);
  p->B.rs = ob.rs, p->B.cs = ob.cs;
  p->C.base = pbt_tensor_data(dst);
  p->C.rs = a->ndim >= 2 ? dst->stride[p->nb] : 0;
  p->C.cs = b->ndim >= 2 ? dst->stride[rnd - 1] : 0;
  batch_strides(&oa, p->nb, p->bshape, p->bsa);
  batch_strides(&ob, p->nb, p->bshape, p->bsb);
  for (i = 0; i < p->nb; i++) p->bsc[i] = dst->stride[i];
  run(p);

  if (mode == OUT_MOVE) {
    pbt_tensor_release(out);
    *out = tmp;
    pbt_tensor_init(&tmp);
  } else if (mode == OUT_COPY) {
    s = pbt_copy_(out, &tmp, err);
  }
done:
  pbt_tensor_release(&oa.copy);
  pbt_tensor_release(&ob.copy);
  pbt_tensor_release(&tmp);
  if (s && fresh) pbt_tensor_release(out);
  return s;
}

/* ---- public functions --------------------------------------------------------- */

pbt_status pbt_matmul(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                      pbt_error *err) {
  problem p;
  int64_t rshape[PBT_MAX_DIM], ka, kb;
  int nba, nbb, rnd, i;
  pbt_status s = check_dtypes(a, b, err);
  if (s) return s;
  if (a->ndim == 0 || b->ndim == 0) return cannot_multiply(a, b, err);
  memset(&p, 0, sizeof p);
  p.dt = a->dtype;
  p.alpha = 1, p.beta = 0;
  ka = a->shape[a->ndim - 1];
  p.m = a->ndim >= 2 ? a->shape[a->ndim - 2] : 1;
  kb = b->ndim >= 2 ? b->shape[b->ndim - 2] : b->shape[0];
  p.n = b->ndim >= 2 ? b->shape[b->ndim - 1] : 1;
  if (ka != kb) return cannot_multiply(a, b, err);
  p.k = ka;
  nba = a->ndim > 2 ? a->ndim - 2 : 0;
  nbb = b->ndim > 2 ? b->ndim - 2 : 0;
  if (pbt_broadcast_shape(nba, a->shape, nbb, b->shape, &p.nb, p.bshape, NULL))
    return cannot_multiply(a, b, err);
  rnd = p.nb;
  for (i = 0; i < p.nb; i++) rshape[i] = p.bshape[i];
  if (a->ndim >= 2) rshape[rnd++] = p.m;
  if (b->ndim >= 2) rshape[rnd++] = p.n;
  if (rnd > PBT_MAX_DIM) return cannot_multiply(a, b, err);
  return multiply(out, a, b, &p, rnd, rshape, err);
}

pbt_status pbt_addmm(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                     double alpha, double beta, pbt_error *err) {
  problem p;
  char sa[96], sb[96];
  pbt_status s = check_dtypes(a, b, err);
  if (s) return s;
  if (a->ndim != 2 || b->ndim != 2) {
    pbt_format_shape(sa, sizeof sa, a->ndim, a->shape);
    pbt_format_shape(sb, sizeof sb, b->ndim, b->shape);
    return pbt_fail(err, PBT_ERR_SHAPE, "expects 2-d tensors, got shapes %s and %s",
                    sa, sb);
  }
  if (a->shape[1] != b->shape[0]) return cannot_multiply(a, b, err);
  if (!out->storage)
    return pbt_fail(err, PBT_ERR_ARG, "out must be an existing tensor");
  memset(&p, 0, sizeof p);
  p.dt = a->dtype;
  p.m = a->shape[0], p.k = a->shape[1], p.n = b->shape[1];
  p.alpha = alpha, p.beta = beta;
  if (out->ndim != 2 || out->shape[0] != p.m || out->shape[1] != p.n) {
    int64_t want[2];
    want[0] = p.m, want[1] = p.n;
    pbt_format_shape(sa, sizeof sa, out->ndim, out->shape);
    pbt_format_shape(sb, sizeof sb, 2, want);
    return pbt_fail(err, PBT_ERR_SHAPE, "out has shape %s, expected %s", sa, sb);
  }
  return multiply(out, a, b, &p, 2, out->shape, err);
}

static pbt_status check_1d(const pbt_tensor *a, const pbt_tensor *b,
                           pbt_error *err) {
  char sa[96], sb[96];
  pbt_status s = check_dtypes(a, b, err);
  if (s) return s;
  if (a->ndim == 1 && b->ndim == 1) return PBT_OK;
  pbt_format_shape(sa, sizeof sa, a->ndim, a->shape);
  pbt_format_shape(sb, sizeof sb, b->ndim, b->shape);
  return pbt_fail(err, PBT_ERR_SHAPE, "expects 1-d tensors, got shapes %s and %s",
                  sa, sb);
}

pbt_status pbt_dot(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                   pbt_error *err) {
  pbt_status s = check_1d(a, b, err);
  if (s) return s;
  return pbt_matmul(out, a, b, err);
}

pbt_status pbt_outer(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                     pbt_error *err) {
  problem p;
  int64_t rshape[2];
  pbt_tensor col, row;
  pbt_status s = check_1d(a, b, err);
  if (s) return s;
  /* a as [m,1] and b as [1,n]: headers only, the storage is not retained */
  col = *a, row = *b;
  col.ndim = 2, col.shape[1] = 1, col.stride[1] = 1;
  row.ndim = 2, row.shape[1] = b->shape[0], row.stride[1] = b->stride[0];
  row.shape[0] = 1, row.stride[0] = max1(b->shape[0]);
  memset(&p, 0, sizeof p);
  p.dt = a->dtype;
  p.m = a->shape[0], p.n = b->shape[0], p.k = 1;
  p.alpha = 1, p.beta = 0;
  rshape[0] = p.m, rshape[1] = p.n;
  return multiply(out, &col, &row, &p, 2, rshape, err);
}
