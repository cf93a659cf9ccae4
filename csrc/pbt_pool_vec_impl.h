/* pbt_pool_vec_impl.h -- 2x2 max pooling of float32 rows, W lanes at a
 * time with GCC's vector extensions (see pbt_pool.c).  Included once per
 * width W (8 or 4); the names below follow from it: VF and VI (W floats,
 * W int32), EV/OD (even/odd lanes of two vectors), LO/HI (interleaving),
 * LANE (0, 2, 4...), V(name) (name8 or name4).  No include guard. */
#define PV_CAT2(a, b) a##b
#define PV_CAT(a, b) PV_CAT2(a, b)
#define VF PV_CAT(PV_CAT(v, W), f)
#define VI PV_CAT(PV_CAT(v, W), i)
#define EV PV_CAT(ev, W)
#define OD PV_CAT(od, W)
#define LO PV_CAT(lo, W)
#define HI PV_CAT(hi, W)
#define LANE PV_CAT(lane, W)
#define V(name) PV_CAT(name, W)

static PBT_CLONES int V(pool2x2_vec)(int n, const float *r0, const float *r1, float *o,
                                    float *id, float start, float rw) {
  const VF zero = {0}, one = zero + 1;
  VI nan = {0};
  int j = 0, k, r = 0;
  for (;;) {
    VF l0, h0, l1, h1, a, b, c, d, m0, m1, f0, f1;
    VI mb, md, m;
    if (j > n - W) j = n - W;
    LDV(l0, r0 + 2 * j), LDV(h0, r0 + 2 * j + W);
    LDV(l1, r1 + 2 * j), LDV(h1, r1 + 2 * j + W);
    a = __builtin_shuffle(l0, h0, EV), b = __builtin_shuffle(l0, h0, OD);
    c = __builtin_shuffle(l1, h1, EV), d = __builtin_shuffle(l1, h1, OD);
    mb = b > a, md = d > c;
    m0 = SELV(VF, VI, mb, b, a), f0 = SELV(VF, VI, mb, one, zero);
    m1 = SELV(VF, VI, md, d, c), f1 = SELV(VF, VI, md, zero + (rw + 1), zero + rw);
    m = m1 > m0;
    STV(VF, o + j, SELV(VF, VI, m, m1, m0));
    STV(VF, id + j, (zero + start + (float)(2 * j) + LANE) + SELV(VF, VI, m, f1, f0));
    nan |= (a != a) | (b != b) | (c != c) | (d != d);
    if (j == n - W) break;
    j += W;
  }
  for (k = 0; k < W; k++) r |= nan[k];
  return r != 0;
}
static PBT_CLONES int V(unpool2x2_vec)(int n, const float *g, const float *id,
                                      float *r0, float *r1, float start, float rw) {
  const VF zero = {0};
  VI bad = {0};
  int j = 0, k, r = 0;
  for (;;) {
    VF v, d, e0, e1, e2, e3;
    VI k0, k1, k2, k3;
    if (j > n - W) j = n - W;
    LDV(v, g + j), LDV(d, id + j);
    v = v + zero;
    d = d - (zero + start + (float)(2 * j) + LANE);
    k0 = d == zero, k1 = d == zero + 1, k2 = d == zero + rw, k3 = d == zero + (rw + 1);
    e0 = SELV(VF, VI, k0, v, zero), e1 = SELV(VF, VI, k1, v, zero);
    e2 = SELV(VF, VI, k2, v, zero), e3 = SELV(VF, VI, k3, v, zero);
    STV(VF, r0 + 2 * j, __builtin_shuffle(e0, e1, LO));
    STV(VF, r0 + 2 * j + W, __builtin_shuffle(e0, e1, HI));
    STV(VF, r1 + 2 * j, __builtin_shuffle(e2, e3, LO));
    STV(VF, r1 + 2 * j + W, __builtin_shuffle(e2, e3, HI));
    bad |= ~(k0 | k1 | k2 | k3);
    if (j == n - W) break;
    j += W;
  }
  for (k = 0; k < W; k++) r |= bad[k];
  return r != 0;
}

#undef VF
#undef VI
#undef EV
#undef OD
#undef LO
#undef HI
#undef LANE
#undef V
#undef PV_CAT
#undef PV_CAT2
