/* pbt_vmath.h -- the vector math and the CPU dispatch shared by the kernel
 * files (pbt_ops.c and the network kernels pbt_nn.c, pbt_conv.c,
 * pbt_pool.c, pbt_loss.c).  Internal: not installed with the public
 * headers.  Include it first: it sets the optimisation pragma for the rest
 * of the file.
 *
 * Our loops never rely on floating-point traps or errno: letting gcc assume
 * so allows it to if-convert and vectorize the math below (the results do
 * not change; this is not -ffast-math).  The pragma is GCC's; other
 * compilers get the plain code. */
#ifndef PBT_VMATH_H
#define PBT_VMATH_H

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#define PBT_INLINE static inline __attribute__((always_inline))

/* Hot kernels are compiled for AVX-512, AVX2 and the baseline, chosen at
 * load time (needs ifunc support: glibc on x86-64).
 *
 * The unary kernels (PBT_CLONES_FMA: exp, log, sin, tanh...) are cloned for
 * x86-64-v4 and x86-64-v3 instead, which have FMA, and only there gcc may
 * fuse a * b + c (fp-contract=fast): their float32 results may differ in
 * the last bit between machines with and without FMA, as numpy's do.  Every
 * other kernel rounds each product, the same on every machine. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__linux__) && !defined(PBT_NO_CLONES)
#define PBT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define PBT_CLONES_FMA                                                       \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3",           \
                               "default"),                                   \
                 optimize("no-trapping-math", "no-math-errno",               \
                          "fp-contract=fast")))
#else
#define PBT_CLONES
#define PBT_CLONES_FMA
#endif

/* ---- float32 math ---------------------------------------------------------
 *
 * Branch-free versions that gcc vectorizes.  Maximum error measured over
 * every float against double-precision libm (with and without FMA):
 *   exp 1 ulp, log 1 ulp, log1p 1.5 ulp, sigmoid 2.5 ulp, tanh 2.5 ulp,
 *   sin and cos 2.5 ulp;
 * ±0, ±inf, NaN and subnormals give the IEEE results.
 *
 * log, log1p, sin and cos have a fast kernel (*_fast) for most of their
 * domain (fast_domain_f32): the row kernels check a chunk of FAST_CHUNK
 * elements first and run the fast kernel over all of it when every element
 * is inside, else the full function (also vectorized).  Outside: for log
 * zero, subnormals, negatives, inf and NaN; for log1p x <= -1, inf and
 * NaN; for sin and cos |x| > TRIG_MAX, inf and NaN.  sin and cos of finite
 * |x| > TRIG_MAX are then computed by libm (sinf, cosf), one by one. */

PBT_INLINE uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

PBT_INLINE float f32_from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* Cephes' expf, branch-free. */
PBT_INLINE float vexpf(float x) {
  float k, n, r, p;
  int32_t ni, n1, n2;
  x = x > 88.8f ? 88.8f : x; /* NaN passes through */
  x = x < -110.0f ? -110.0f : x;
  k = x * 1.44269504088896341f + 0x1.8p23f; /* n = round(x / ln 2) */
  n = k - 0x1.8p23f;
  r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * (r * r) + r + 1.0f;
  /* scale by 2^n in two steps so that subnormal results round once */
  ni = (int32_t)(f32_bits(k) - 0x4B400000u);
  n1 = ni / 2;
  n2 = ni - n1;
  return p * f32_from_bits((uint32_t)(n1 + 127) << 23) *
         f32_from_bits((uint32_t)(n2 + 127) << 23);
}

/* log(u + c) + eoff * ln 2 for a normal positive finite u, after Cephes'
 * logf: u = 2^e (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)).  When with_c,
 * c (|c| <= ulp(u) / 2, the rounding error of u = 1 + x in log1p) is added
 * to f. */
PBT_INLINE float vlogf_core(float u, float c, int with_c, float eoff) {
  uint32_t ix = f32_bits(u) - 0x3f3504f3u;
  int32_t ie = (int32_t)ix >> 23;
  float e = (float)ie + eoff, f, z, y;
  f = f32_from_bits((ix & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
  if (with_c) {
    ie = ie > 126 ? 126 : ie; /* then c = 0 */
    f = f + c * f32_from_bits((uint32_t)(127 - ie) << 23); /* c / 2^e */
  }
  z = f * f;
  y = 7.0376836292E-2f;
  y = y * f - 1.1514610310E-1f;
  y = y * f + 1.1676998740E-1f;
  y = y * f - 1.2420140846E-1f;
  y = y * f + 1.4249322787E-1f;
  y = y * f - 1.6668057665E-1f;
  y = y * f + 2.0000714765E-1f;
  y = y * f - 2.4999993993E-1f;
  y = y * f + 3.3333331174E-1f;
  y = y * f * z;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  z = f + y;
  return z + e * 0.693359375f;
}

PBT_INLINE float vlogf_fast(float x) { return vlogf_core(x, 0, 0, 0); }

PBT_INLINE float vlogf(float x) {
  int sub = x < 0x1p-126f;
  float r = vlogf_core(sub ? x * 0x1p23f : x, 0, 0, sub ? -23.0f : 0.0f);
  r = x == INFINITY ? x : r;
  r = x == 0 ? -INFINITY : r;
  r = x < 0 ? NAN : r;
  return x != x ? x : r;
}

/* log(u + c) with u + c = 1 + x exactly (c = x - (u - 1) is exact). */
PBT_INLINE float vlog1pf_fast(float x) {
  float u = 1.0f + x, r = vlogf_core(u, x - (u - 1.0f), 1, 0);
  return x == 0 ? x : r; /* keeps -0 */
}

PBT_INLINE float vlog1pf(float x) {
  float r = vlog1pf_fast(x);
  r = x == INFINITY ? x : r;
  r = x == -1.0f ? -INFINITY : r;
  r = x < -1.0f ? NAN : r;
  return x != x ? x : r;
}

/* tanh(x) = t / (t + 2) with t = expm1(2x) (for x >= 0; odd).  expm1 as
 * Cephes' expf: t = 2^n (expm1(r) + 1) - 1, no cancellation for n >= 0. */
PBT_INLINE float vtanhf(float x) {
  float ax = fabsf(x), k, n, r, p, s, t;
  ax = ax > 10.0f ? 10.0f : ax; /* tanh(10) rounds to 1; NaN passes */
  ax = ax + ax;
  k = ax * 1.44269504088896341f + 0x1.8p23f;
  n = k - 0x1.8p23f;
  r = ax - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * (r * r) + r;                                         /* expm1(r) */
  s = f32_from_bits((f32_bits(k) - 0x4B400000u + 127u) << 23); /* 2^n */
  t = s * p + (s - 1.0f);
  t = t / (t + 2.0f);
  return f32_from_bits(f32_bits(t) | (f32_bits(x) & 0x80000000u));
}

PBT_INLINE float vsigmoidf(float x) {
  float e = vexpf(-fabsf(x));
  return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

/* sin and cos: x - q pi/2 in float by Cody and Waite's method with pi/2 in
 * five pieces, the first four of 10 bits so that q * piece is exact for
 * |q| < 2^14, that is |x| <= TRIG_MAX; then sin of the reduced argument in
 * [-pi/2, pi/2] by an odd polynomial of degree 9 (SLEEF's coefficients).
 * The reduced argument is never smaller than 2^-28 there, and its error
 * stays well below that. */
#define TRIG_MAX 16384.0f
#define PIO2_A 0x1.92p+0f
#define PIO2_B 0x1.fb8p-12f
#define PIO2_C -0x1.5ep-23f
#define PIO2_D 0x1.0b8p-34f
#define PIO2_E -0x1.cf72cep-45f
#define INV_PI 0x1.45f306p-2f

PBT_INLINE float trig_reduce(float x, float q) {
  float r = x - q * PIO2_A;
  r = r - q * PIO2_B;
  r = r - q * PIO2_C;
  r = r - q * PIO2_D;
  return r - q * PIO2_E;
}

/* sin(r) for |r| <= pi/2 (a little more is fine), sign bit flipped by
 * `sign`. */
PBT_INLINE float trig_poly(float r, uint32_t sign) {
  float s = r * r, u;
  u = 2.6083159809786593541503e-06f;
  u = u * s - 1.981069071916863322258e-4f;
  u = u * s + 8.33307858556509017944336e-3f;
  u = u * s - 0.166666597127914428710938f;
  u = s * (u * r) + r;
  return f32_from_bits(f32_bits(u) ^ sign);
}

/* |x| <= TRIG_MAX: q = round(x / pi); sin(x) = (-1)^q sin(x - q pi). */
PBT_INLINE float vsinf_fast(float x) {
  float k = x * INV_PI + 0x1.8p23f, q = k - 0x1.8p23f;
  float u = trig_poly(trig_reduce(x, q + q), f32_bits(k) << 31);
  return x == 0 ? x : u; /* keeps -0 */
}

/* |x| <= TRIG_MAX: q = 2 round(x / pi - 1/2) + 1, odd; cos(x) = sin(x -
 * q pi/2), negated when q = 1 mod 4. */
PBT_INLINE float vcosf_fast(float x) {
  float k = (x * INV_PI - 0.5f) + 0x1.8p23f, m = k - 0x1.8p23f;
  return trig_poly(trig_reduce(x, m + m + 1.0f), ~f32_bits(k) << 31);
}

#endif
