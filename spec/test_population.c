/* test_population.c -- the population store from C, without Lua: state
 * sharing, exploit, lineage, history, event log, errors, two threads
 * exploiting in opposite directions at once; published state (publish,
 * load, generator states, mismatches), staged events, busy members,
 * schedules, and two threads publishing while a third exploits.  Exits
 * non-zero on failure. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pbt_channel.h"
#include "pbt_population.h"
#include "pbt_tensor.h"

#include "test_harness.h"

/* the value member m holds at flat position k of entry e */
static double value(int m, int e, int64_t k) { return m * 1000 + e * 100 + (double)k + 0.25; }

static void fill(pbt_tensor *t, int m, int e) {
  int64_t k, n = pbt_tensor_numel(t);
  for (k = 0; k < n; k++) {
    if (t->dtype == PBT_FLOAT32) ((float *)pbt_tensor_data(t))[k] = (float)value(m, e, k);
    else ((double *)pbt_tensor_data(t))[k] = value(m, e, k);
  }
}

static int holds(const pbt_tensor *t, int m, int e) {
  int64_t k, n = pbt_tensor_numel(t);
  for (k = 0; k < n; k++) {
    double want = t->dtype == PBT_FLOAT32 ? (double)(float)value(m, e, k) : value(m, e, k);
    if (pbt_tensor_get_flat(t, k) != want) return 0;
  }
  return 1;
}

static const pbt_hparam_spec HP[] = {{"lr", PBT_HPARAM_FLOAT, 0},
                                     {"bs", PBT_HPARAM_INT, 0},
                                     {"opt", PBT_HPARAM_CHOICE, 3}};

/* member i: "w" float32 [3,4], "m" float64 [5], "step" = 10 i, hparams */
typedef struct model {
  pbt_tensor w, m;
} model;

static pbt_population *make(model *models, int window) {
  pbt_population *p;
  pbt_error err;
  int i;
  CHECK(pbt_population_new(&p, 4, 3, HP, window, &err) == PBT_OK);
  for (i = 0; i < 4; i++) {
    pbt_state_number step = {1, 0, 10 * i};
    pbt_hvalue lr = {1, 0.01 * i, 0}, bs = {1, 0, 16 * i}, opt = {1, 0, i % 3};
    pbt_tensor_init(&models[i].w);
    pbt_tensor_init(&models[i].m);
    CHECK(pbt_tensor_empty(&models[i].w, PBT_FLOAT32, 2, (int64_t[]){3, 4}, &err) == PBT_OK);
    CHECK(pbt_tensor_empty(&models[i].m, PBT_FLOAT64, 1, (int64_t[]){5}, &err) == PBT_OK);
    fill(&models[i].w, i, 1);
    fill(&models[i].m, i, 2);
    CHECK(pbt_population_set_tensor(p, i, "w", &models[i].w, &err) == PBT_OK);
    CHECK(pbt_population_set_tensor(p, i, "m", &models[i].m, &err) == PBT_OK);
    CHECK(pbt_population_set_number(p, i, "step", step, &err) == PBT_OK);
    CHECK(pbt_population_set_hparam(p, i, 0, lr, &err) == PBT_OK);
    CHECK(pbt_population_set_hparam(p, i, 1, bs, &err) == PBT_OK);
    CHECK(pbt_population_set_hparam(p, i, 2, opt, &err) == PBT_OK);
  }
  return p;
}

static void release_models(model *models) {
  int i;
  for (i = 0; i < 4; i++) {
    pbt_tensor_release(&models[i].w);
    pbt_tensor_release(&models[i].m);
  }
}

static void test_exploit(void) {
  model models[4];
  pbt_population *p = make(models, 3);
  pbt_member_info info;
  pbt_hvalue hv[3];
  pbt_state_number num;
  pbt_error err;
  double hist[3];
  int64_t n;
  void *data = pbt_tensor_data(&models[1].w);
  CHECK(pbt_storage_refcount(models[1].w.storage) == 2); /* ours and the store's */
  CHECK(pbt_population_report(p, 3, 0.5, 7, &err) == PBT_OK);
  CHECK(pbt_population_report(p, 3, 0.75, 8, &err) == PBT_OK);
  CHECK(pbt_population_exploit(p, 1, 3, &err) == PBT_OK);
  CHECK(holds(&models[1].w, 3, 1) && holds(&models[1].m, 3, 2));
  CHECK(holds(&models[3].w, 3, 1) && holds(&models[0].w, 0, 1) && holds(&models[2].m, 2, 2));
  CHECK(pbt_tensor_data(&models[1].w) == data); /* the same buffer */
  CHECK(pbt_storage_refcount(models[1].w.storage) == 2);
  CHECK(pbt_population_get_number(p, 1, "step", &num, &err) == PBT_OK);
  CHECK(num.is_int && num.i == 30);
  CHECK(pbt_population_get_hparams(p, 1, hv, &err) == PBT_OK);
  CHECK(hv[0].set && hv[0].f == 0.01 * 3 && hv[1].i == 48 && hv[2].i == 0);
  CHECK(pbt_population_member(p, 1, &info, &err) == PBT_OK);
  CHECK(info.parent == 3 && info.generation == 1 && info.steps == 8);
  CHECK(info.has_score && info.last_score == 0.75 && info.nscores == 2);
  CHECK(pbt_population_history(p, 1, hist, &n, &err) == PBT_OK);
  CHECK(n == 2 && hist[0] == 0.5 && hist[1] == 0.75);
  CHECK(pbt_population_exploit(p, 0, 1, &err) == PBT_OK);
  CHECK(pbt_population_member(p, 0, &info, &err) == PBT_OK);
  CHECK(info.parent == 1 && info.generation == 2);
  CHECK(holds(&models[0].w, 3, 1));

  /* mismatches change nothing */
  {
    pbt_tensor bad;
    pbt_tensor_init(&bad);
    CHECK(pbt_tensor_empty(&bad, PBT_FLOAT32, 1, (int64_t[]){5}, &err) == PBT_OK);
    CHECK(pbt_population_set_tensor(p, 2, "m", &bad, &err) == PBT_OK);
    CHECK_MSG(pbt_population_exploit(p, 2, 3, &err), PBT_ERR_DTYPE, err,
              "state entry 'm': float64 in the donor, float32 in the recipient");
    CHECK(holds(&models[2].w, 2, 1)); /* "w" came first and was not copied */
    pbt_tensor_release(&bad);
    CHECK(pbt_tensor_empty(&bad, PBT_FLOAT64, 2, (int64_t[]){5, 1}, &err) == PBT_OK);
    CHECK(pbt_population_set_tensor(p, 2, "m", &bad, &err) == PBT_OK);
    CHECK_MSG(pbt_population_exploit(p, 2, 3, &err), PBT_ERR_SHAPE, err,
              "state entry 'm': shape [5] in the donor, [5,1] in the recipient");
    pbt_tensor_release(&bad);
    CHECK(pbt_population_set_tensor(p, 2, "m", &models[2].m, &err) == PBT_OK);
    num.is_int = 0;
    num.f = 1.5;
    CHECK(pbt_population_set_number(p, 3, "extra", num, &err) == PBT_OK);
    CHECK_MSG(pbt_population_exploit(p, 2, 3, &err), PBT_ERR_SHAPE, err,
              "state entry 'extra' is missing from the recipient");
    CHECK_MSG(pbt_population_exploit(p, 3, 2, &err), PBT_ERR_SHAPE, err,
              "state entry 'extra' is missing from the donor");
    CHECK(pbt_population_set_tensor(p, 2, "extra", &models[2].m, &err) == PBT_OK);
    CHECK_MSG(pbt_population_exploit(p, 2, 3, &err), PBT_ERR_SHAPE, err,
              "state entry 'extra' is a number in the donor and a tensor in the recipient");
    CHECK_MSG(pbt_population_exploit(p, 2, 2, &err), PBT_ERR_ARG, err,
              "a member cannot exploit itself");
    CHECK_MSG(pbt_population_exploit(p, 2, 4, &err), PBT_ERR_ARG, err,
              "member 4 out of range for a population of 4");
    CHECK(pbt_population_fail(p, 0, "boom", &err) == PBT_OK);
    CHECK_MSG(pbt_population_exploit(p, 1, 0, &err), PBT_ERR_ARG, err,
              "the donor has failed");
    CHECK(holds(&models[2].w, 2, 1) && holds(&models[2].m, 2, 2));
    CHECK(pbt_population_member(p, 2, &info, &err) == PBT_OK);
    CHECK(info.parent == -1 && info.generation == 0);
  }
  pbt_population_release(p);
  CHECK(pbt_storage_refcount(models[1].w.storage) == 1); /* the store let go */
  release_models(models);
}

static void test_history_and_log(void) {
  pbt_population *p;
  pbt_error err;
  pbt_event ev[16];
  pbt_member_info info;
  double hist[3], s[2];
  int64_t n, k;
  CHECK(pbt_population_new(&p, 2, 0, NULL, 3, &err) == PBT_OK);
  for (k = 1; k <= 5; k++) CHECK(pbt_population_report(p, 0, (double)k, k * 10, &err) == PBT_OK);
  CHECK(pbt_population_history(p, 0, hist, &n, &err) == PBT_OK);
  CHECK(n == 3 && hist[0] == 3 && hist[1] == 4 && hist[2] == 5);
  CHECK(pbt_population_scores(p, 0, 5, s) == 2);
  CHECK(s[0] == 5 && isnan(s[1]));
  CHECK(pbt_population_scores(p, 1, 5, s) == 1 && isnan(s[0]));
  CHECK(pbt_population_log(p, PBT_EVENT_READY, 0, -1, NULL, &err) == PBT_OK);
  CHECK(pbt_population_log(p, PBT_EVENT_EXPLORE, 0, -1, "lr x1.2", &err) == PBT_OK);
  CHECK(pbt_population_fail(p, 1, "nan loss", &err) == PBT_OK);
  CHECK(pbt_population_member(p, 1, &info, &err) == PBT_OK);
  CHECK(info.status == PBT_MEMBER_FAILED);
  CHECK(pbt_population_nevents(p) == 8);
  n = pbt_population_events(p, 4, 16, ev);
  CHECK(n == 4);
  CHECK(ev[0].seq == 4 && ev[0].kind == PBT_EVENT_REPORT && ev[0].score == 5 &&
        ev[0].step == 50 && ev[0].other == -1 && strcmp(ev[0].detail, "") == 0);
  CHECK(ev[1].kind == PBT_EVENT_READY && ev[1].member == 0 && ev[1].score == 5);
  CHECK(ev[2].kind == PBT_EVENT_EXPLORE && strcmp(ev[2].detail, "lr x1.2") == 0);
  CHECK(ev[3].kind == PBT_EVENT_FAILURE && ev[3].member == 1 && !ev[3].has_score &&
        strcmp(ev[3].detail, "nan loss") == 0);
  CHECK(strcmp(pbt_event_kind_name(PBT_EVENT_EXPLOIT), "exploit") == 0);
  CHECK_MSG(pbt_population_report(p, -1, 1, 0, &err), PBT_ERR_ARG, err,
            "member -1 out of range for a population of 2");
  CHECK_MSG(pbt_population_log(p, PBT_EVENT_NOTE, 0, 2, NULL, &err), PBT_ERR_ARG, err,
            "other member 2 out of range for a population of 2");
  pbt_population_release(p);
  CHECK_MSG(pbt_population_new(&p, 0, 0, NULL, 0, &err), PBT_ERR_ARG, err,
            "size must be at least 1");
  CHECK(p == NULL);
  CHECK(pbt_population_new(&p, 1, 0, NULL, 0, &err) == PBT_OK);
  CHECK(pbt_population_window(p) == PBT_POPULATION_DEFAULT_WINDOW);
  pbt_population_retain(p);
  CHECK(pbt_population_refcount(p) == 2);
  pbt_population_release(p);
  CHECK(pbt_population_refcount(p) == 1);
  pbt_population_release(p);
}

/* ---- two threads exploiting in opposite directions ------------------------ */

#define NT 16384
#define ROUNDS 2000

typedef struct worker {
  pbt_population *p;
  pbt_tensor *mine;
  int64_t me, other;
  int bad;
} worker;

/* Every tensor is uniform whenever its member's lock is held: an exploit
 * copies a whole uniform tensor under both locks. */
static int uniform(const pbt_tensor *t) {
  const float *x = (const float *)pbt_tensor_data(t);
  int64_t k;
  for (k = 1; k < NT; k++)
    if (x[k] != x[0]) return 0;
  return 1;
}

static void *work(void *arg) {
  worker *w = (worker *)arg;
  pbt_error err;
  int r;
  for (r = 0; r < ROUNDS; r++) {
    if (pbt_population_exploit(w->p, w->me, w->other, &err) != PBT_OK) w->bad++;
    pbt_population_lock(w->p, w->me, &err);
    if (!uniform(w->mine)) w->bad++;
    pbt_fill_(w->mine, (double)(w->me * 100000 + r));
    /* the member lock is recursive: the worker may report while holding it */
    if (pbt_population_report(w->p, w->me, (double)r, r, &err) != PBT_OK) w->bad++;
    pbt_population_unlock(w->p, w->me, &err);
  }
  return NULL;
}

static void test_threads(void) {
  pbt_population *p;
  pbt_error err;
  pbt_tensor t[2];
  worker w[2];
  pthread_t th[2];
  int64_t n, k, nexploit = 0;
  int i;
  pbt_event *ev;
  CHECK(pbt_population_new(&p, 2, 0, NULL, 0, &err) == PBT_OK);
  for (i = 0; i < 2; i++) {
    int64_t shape = NT;
    pbt_tensor_init(&t[i]);
    CHECK(pbt_tensor_empty(&t[i], PBT_FLOAT32, 1, &shape, &err) == PBT_OK);
    pbt_fill_(&t[i], i + 1);
    CHECK(pbt_population_set_tensor(p, i, "w", &t[i], &err) == PBT_OK);
    w[i].p = p;
    w[i].mine = &t[i];
    w[i].me = i;
    w[i].other = 1 - i;
    w[i].bad = 0;
  }
  for (i = 0; i < 2; i++) pthread_create(&th[i], NULL, work, &w[i]);
  for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
  CHECK(w[0].bad == 0 && w[1].bad == 0);
  n = pbt_population_nevents(p);
  CHECK(n == 4 * ROUNDS);
  ev = malloc((size_t)n * sizeof *ev);
  CHECK(pbt_population_events(p, 0, n, ev) == n);
  for (k = 0; k < n; k++) {
    CHECK(ev[k].seq == k);
    if (ev[k].kind == PBT_EVENT_EXPLOIT) {
      nexploit++;
      CHECK(ev[k].other == 1 - ev[k].member);
    }
  }
  CHECK(nexploit == 2 * ROUNDS);
  free(ev);
  pbt_population_release(p);
  pbt_tensor_release(&t[0]);
  pbt_tensor_release(&t[1]);
}

/* ---- published state ---------------------------------------------------- */

/* A population of `size` members whose state entries are store-owned
 * buffers, registered in the order w (float32 [3,4]), step (an integer), m
 * (float64 [5]), beta (a double): tensors count w, m and numbers step,
 * beta.  Entry values start at value(100 + i, e, k). */
static pbt_population *make_store(int64_t size, int window) {
  pbt_population *p;
  pbt_error err;
  int64_t i;
  CHECK(pbt_population_new(&p, size, 3, HP, window, &err) == PBT_OK);
  for (i = 0; i < size; i++) {
    pbt_tensor w, m;
    pbt_state_number step = {1, 0, 0}, beta = {0, 0.5, 0};
    pbt_tensor_init(&w);
    pbt_tensor_init(&m);
    CHECK(pbt_tensor_empty(&w, PBT_FLOAT32, 2, (int64_t[]){3, 4}, &err) == PBT_OK);
    CHECK(pbt_tensor_empty(&m, PBT_FLOAT64, 1, (int64_t[]){5}, &err) == PBT_OK);
    fill(&w, 100 + (int)i, 1);
    fill(&m, 100 + (int)i, 2);
    CHECK(pbt_population_set_tensor(p, i, "w", &w, &err) == PBT_OK);
    CHECK(pbt_population_set_number(p, i, "step", step, &err) == PBT_OK);
    CHECK(pbt_population_set_tensor(p, i, "m", &m, &err) == PBT_OK);
    CHECK(pbt_population_set_number(p, i, "beta", beta, &err) == PBT_OK);
    /* the store holds the only references now */
    pbt_tensor_release(&w);
    pbt_tensor_release(&m);
  }
  return p;
}

/* live tensors w, m of the store's shapes holding "member" v's values */
static void make_live(pbt_tensor *w, pbt_tensor *m, int v) {
  pbt_error err;
  pbt_tensor_init(w);
  pbt_tensor_init(m);
  CHECK(pbt_tensor_empty(w, PBT_FLOAT32, 2, (int64_t[]){3, 4}, &err) == PBT_OK);
  CHECK(pbt_tensor_empty(m, PBT_FLOAT64, 1, (int64_t[]){5}, &err) == PBT_OK);
  fill(w, v, 1);
  fill(m, v, 2);
}

/* whether member i's entries w and m hold "member" v's values */
static int entries_hold(pbt_population *p, int64_t i, int v) {
  pbt_tensor t;
  pbt_error err;
  int ok;
  pbt_tensor_init(&t);
  ok = pbt_population_get_tensor(p, i, "w", &t, &err) == PBT_OK && holds(&t, v, 1);
  pbt_tensor_release(&t);
  ok = ok && pbt_population_get_tensor(p, i, "m", &t, &err) == PBT_OK && holds(&t, v, 2);
  pbt_tensor_release(&t);
  return ok;
}

static void test_publish_load(void) {
  pbt_population *p = make_store(2, 3);
  pbt_tensor lw, lm, ow, om;
  const pbt_tensor *live[2];
  pbt_tensor *out[2];
  pbt_state_number nums[2] = {{1, 0, 12}, {0, 0.75, 0}}, got[2], num;
  pbt_generator g, want, h;
  uint64_t words[PBT_GENERATOR_STATE_WORDS], back[PBT_GENERATOR_STATE_WORDS];
  pbt_member_info info;
  pbt_event ev[4];
  pbt_error err;
  int64_t version = -1, steps[4], k;
  double scores[4];
  int has_gen = -1;
  make_live(&lw, &lm, 7);
  make_live(&ow, &om, 9);
  live[0] = &lw;
  live[1] = &lm;
  out[0] = &ow;
  out[1] = &om;
  pbt_generator_seed(&g, 99);
  (void)pbt_generator_normal(&g); /* leaves the pair's second normal pending */
  pbt_generator_state(&g, words);
  want = g;
  CHECK(pbt_population_member(p, 0, &info, &err) == PBT_OK);
  CHECK(info.version == 4 && info.work == 0 && info.ncurve == 0 && !info.has_generator);

  CHECK(pbt_population_publish(p, 0, live, 2, nums, 2, words, 0.5, 30, &err) == PBT_OK);
  CHECK(entries_hold(p, 0, 7));
  CHECK(entries_hold(p, 1, 101)); /* the other member is untouched */
  CHECK(pbt_population_get_number(p, 0, "step", &num, &err) == PBT_OK);
  CHECK(num.is_int && num.i == 12);
  CHECK(pbt_population_get_number(p, 0, "beta", &num, &err) == PBT_OK);
  CHECK(!num.is_int && num.f == 0.75);
  CHECK(pbt_population_member(p, 0, &info, &err) == PBT_OK);
  CHECK(info.version == 5 && info.work == 1 && info.ncurve == 1 && info.has_generator);
  CHECK(info.steps == 30 && info.has_score && info.last_score == 0.5 && info.nscores == 1);
  CHECK(pbt_population_score(p, 0) == 0.5);
  CHECK(pbt_population_curve(p, 0, 0, 4, steps, scores) == 1);
  CHECK(steps[0] == 30 && scores[0] == 0.5);
  CHECK(pbt_population_nevents(p) == 1);
  CHECK(pbt_population_events(p, 0, 4, ev) == 1);
  CHECK(ev[0].kind == PBT_EVENT_REPORT && ev[0].member == 0 && ev[0].step == 30 &&
        ev[0].score == 0.5);

  /* copies: changing the live tensors leaves the entries alone */
  pbt_fill_(&lw, -1);
  pbt_fill_(&lm, -1);
  CHECK(entries_hold(p, 0, 7));

  /* load: the other way, with the numbers, the generator and the version */
  CHECK(pbt_population_load(p, 0, out, 2, got, 2, back, &has_gen, &version, &err) == PBT_OK);
  CHECK(holds(&ow, 7, 1) && holds(&om, 7, 2));
  CHECK(got[0].is_int && got[0].i == 12 && !got[1].is_int && got[1].f == 0.75);
  CHECK(has_gen == 1 && version == 5);
  CHECK(memcmp(words, back, sizeof words) == 0);
  pbt_generator_seed(&h, 1);
  CHECK(pbt_generator_set_state(&h, back, &err) == PBT_OK);
  for (k = 0; k < 5; k++) {
    CHECK(pbt_generator_normal(&h) == pbt_generator_normal(&want));
    CHECK(pbt_generator_next(&h) == pbt_generator_next(&want));
  }
  /* without a generator, and a member that has none saved */
  CHECK(pbt_population_load(p, 1, out, 2, got, 2, NULL, NULL, NULL, &err) == PBT_OK);
  CHECK(holds(&ow, 101, 1) && holds(&om, 101, 2));
  CHECK(got[0].i == 0 && got[1].f == 0.5);
  CHECK(pbt_population_load(p, 1, out, 2, got, 2, back, &has_gen, &version, &err) == PBT_OK);
  CHECK(has_gen == 0 && version == 4);

  /* an exploit changes the entries, not the live tensors */
  fill(&ow, 9, 1);
  CHECK(pbt_population_exploit(p, 1, 0, &err) == PBT_OK);
  CHECK(entries_hold(p, 1, 7));
  CHECK(holds(&ow, 9, 1));
  CHECK(pbt_population_member(p, 1, &info, &err) == PBT_OK);
  CHECK(info.version == 5 && info.work == 0 && info.ncurve == 0 && info.steps == 30);
  /* set_generator saves a state without publishing */
  pbt_generator_seed(&h, 5);
  pbt_generator_state(&h, words);
  CHECK(pbt_population_set_generator(p, 1, words, &err) == PBT_OK);
  CHECK(pbt_population_load(p, 1, out, 2, got, 2, back, &has_gen, &version, &err) == PBT_OK);
  CHECK(has_gen == 1 && version == 5 && memcmp(words, back, sizeof words) == 0);
  CHECK(pbt_population_nevents(p) == 2);

  pbt_population_release(p);
  pbt_tensor_release(&lw);
  pbt_tensor_release(&lm);
  pbt_tensor_release(&ow);
  pbt_tensor_release(&om);
}

/* what a refused publish or load must leave as it was */
typedef struct seen {
  pbt_member_info info;
  int64_t nevents;
  int hold;
} seen;

static seen look(pbt_population *p, int64_t i, int v) {
  seen s;
  pbt_error err;
  CHECK(pbt_population_member(p, i, &s.info, &err) == PBT_OK);
  s.nevents = pbt_population_nevents(p);
  s.hold = entries_hold(p, i, v);
  return s;
}

static int same_seen(seen a, seen b) {
  return a.info.version == b.info.version && a.info.work == b.info.work &&
         a.info.ncurve == b.info.ncurve && a.info.nscores == b.info.nscores &&
         a.info.steps == b.info.steps && a.info.has_generator == b.info.has_generator &&
         a.nevents == b.nevents && a.hold && b.hold;
}

static void test_publish_mismatch(void) {
  pbt_population *p = make_store(2, 3);
  pbt_tensor lw, lm, w64, m4, gone, entry;
  const pbt_tensor *live[3];
  pbt_tensor *out[2];
  pbt_state_number nums[3] = {{1, 0, 1}, {0, 0.25, 0}, {1, 0, 3}};
  uint64_t words[PBT_GENERATOR_STATE_WORDS];
  pbt_generator g;
  pbt_error err;
  seen before;
  make_live(&lw, &lm, 8);
  pbt_tensor_init(&w64);
  pbt_tensor_init(&m4);
  pbt_tensor_init(&gone);
  pbt_tensor_init(&entry);
  CHECK(pbt_tensor_empty(&w64, PBT_FLOAT64, 2, (int64_t[]){3, 4}, &err) == PBT_OK);
  CHECK(pbt_tensor_empty(&m4, PBT_FLOAT64, 1, (int64_t[]){4}, &err) == PBT_OK);
  CHECK(pbt_population_get_tensor(p, 0, "w", &entry, &err) == PBT_OK);
  pbt_generator_seed(&g, 3);
  pbt_generator_state(&g, words);
  before = look(p, 0, 100);

  live[0] = &lw;
  live[1] = &lm;
  live[2] = &lm;
  CHECK_MSG(pbt_population_publish(p, 0, live, 1, nums, 2, words, 1, 1, &err), PBT_ERR_SHAPE,
            err, "the member's state has 2 tensors and 2 numbers, 1 and 2 given");
  CHECK_MSG(pbt_population_publish(p, 0, live, 3, nums, 2, words, 1, 1, &err), PBT_ERR_SHAPE,
            err, "the member's state has 2 tensors and 2 numbers, 3 and 2 given");
  CHECK_MSG(pbt_population_publish(p, 0, live, 2, nums, 3, words, 1, 1, &err), PBT_ERR_SHAPE,
            err, "the member's state has 2 tensors and 2 numbers, 2 and 3 given");
  live[1] = &m4;
  CHECK_MSG(pbt_population_publish(p, 0, live, 2, nums, 2, words, 1, 1, &err), PBT_ERR_SHAPE,
            err, "state entry 'm': shape [5] in the store, [4] given");
  live[1] = &lm;
  live[0] = &w64;
  CHECK_MSG(pbt_population_publish(p, 0, live, 2, nums, 2, words, 1, 1, &err), PBT_ERR_DTYPE,
            err, "state entry 'w': float32 in the store, float64 given");
  live[0] = &gone;
  CHECK_MSG(pbt_population_publish(p, 0, live, 2, nums, 2, words, 1, 1, &err), PBT_ERR_ARG,
            err, "state entry 'w': the tensor has been released");
  live[0] = &entry;
  CHECK_MSG(pbt_population_publish(p, 0, live, 2, nums, 2, words, 1, 1, &err), PBT_ERR_ARG,
            err, "state entry 'w' shares its storage with the tensor given");
  live[0] = &lw;
  CHECK_MSG(pbt_population_publish(p, 2, live, 2, nums, 2, words, 1, 1, &err), PBT_ERR_ARG,
            err, "member 2 out of range for a population of 2");
  CHECK(same_seen(before, look(p, 0, 100)));
  CHECK(!look(p, 0, 100).info.has_generator); /* no generator was saved */

  /* load refuses the same mismatches and writes no live tensor */
  out[0] = &lw;
  out[1] = &m4;
  CHECK_MSG(pbt_population_load(p, 0, out, 2, nums, 2, words, NULL, NULL, &err), PBT_ERR_SHAPE,
            err, "state entry 'm': shape [5] in the store, [4] given");
  CHECK(holds(&lw, 8, 1)); /* w came first and was not copied */
  out[1] = &lm;
  CHECK_MSG(pbt_population_load(p, 0, out, 1, nums, 2, NULL, NULL, NULL, &err), PBT_ERR_SHAPE,
            err, "the member's state has 2 tensors and 2 numbers, 1 and 2 given");
  out[0] = &w64;
  CHECK_MSG(pbt_population_load(p, 0, out, 2, nums, 2, NULL, NULL, NULL, &err), PBT_ERR_DTYPE,
            err, "state entry 'w': float32 in the store, float64 given");
  CHECK(holds(&lm, 8, 2));
  CHECK(nums[0].i == 1 && nums[1].f == 0.25); /* the numbers were not written */
  CHECK(same_seen(before, look(p, 0, 100)));

  pbt_population_release(p);
  pbt_tensor_release(&entry);
  pbt_tensor_release(&lw);
  pbt_tensor_release(&lm);
  pbt_tensor_release(&w64);
  pbt_tensor_release(&m4);
}

static void test_staging(void) {
  pbt_population *p;
  pbt_error err;
  pbt_event ev[16];
  int64_t n, k;
  static const int64_t members[] = {0, 0, 0, 1, 2, 2};
  static const pbt_event_kind kinds[] = {PBT_EVENT_REPORT, PBT_EVENT_REPORT,
                                         PBT_EVENT_EXPLORE, PBT_EVENT_NOTE,
                                         PBT_EVENT_REPORT, PBT_EVENT_FAILURE};
  CHECK(pbt_population_new(&p, 3, 0, NULL, 4, &err) == PBT_OK);
  CHECK(pbt_population_report(p, 1, 0.5, 1, &err) == PBT_OK); /* seq 0, before staging */
  pbt_population_stage(p);
  CHECK(pbt_population_report(p, 2, 2.0, 10, &err) == PBT_OK);
  CHECK(pbt_population_report(p, 0, 1.0, 10, &err) == PBT_OK);
  CHECK(pbt_population_log(p, PBT_EVENT_NOTE, 1, 2, "hello", &err) == PBT_OK);
  CHECK(pbt_population_fail(p, 2, "nan", &err) == PBT_OK);
  CHECK(pbt_population_report(p, 0, 1.5, 11, &err) == PBT_OK);
  CHECK(pbt_population_log_data(p, PBT_EVENT_EXPLORE, 0, -1, "lr", "{\"lr\":0.5}", &err) ==
        PBT_OK);
  CHECK(pbt_population_nevents(p) == 1); /* nothing reached the log yet */
  pbt_population_commit_staged(p);
  n = pbt_population_events(p, 1, 16, ev);
  CHECK(n == 6);
  for (k = 0; k < n && k < 6; k++) {
    CHECK(ev[k].seq == k + 1);
    CHECK(ev[k].member == members[k]);
    CHECK(ev[k].kind == kinds[k]);
  }
  CHECK(ev[0].score == 1.0 && ev[0].step == 10 && ev[1].score == 1.5 && ev[1].step == 11);
  CHECK(strcmp(ev[2].detail, "lr") == 0 && strcmp(ev[2].data, "{\"lr\":0.5}") == 0);
  CHECK(ev[3].other == 2 && strcmp(ev[3].detail, "hello") == 0 && strcmp(ev[3].data, "") == 0);
  CHECK(strcmp(ev[5].detail, "nan") == 0 && ev[5].score == 2.0);
  /* staging is off again */
  CHECK(pbt_population_report(p, 2, 3.0, 12, &err) == PBT_OK);
  CHECK(pbt_population_nevents(p) == 8);
  CHECK(pbt_population_events(p, 7, 16, ev) == 1 && ev[0].seq == 7 && ev[0].member == 2);
  pbt_population_commit_staged(p); /* nothing staged: nothing changes */
  CHECK(pbt_population_nevents(p) == 8);
  pbt_population_release(p);
}

static void test_busy_and_schedule(void) {
  model models[4];
  pbt_population *p = make(models, 3);
  pbt_member_info info;
  pbt_hvalue h[3], v = {1, 0, 0};
  pbt_error err;
  int64_t count = -1, step = -1, k;
  /* busy: refused as a recipient, fine as a donor */
  CHECK(pbt_population_set_busy(p, 1, 1, &err) == PBT_OK);
  CHECK(pbt_population_member(p, 1, &info, &err) == PBT_OK && info.busy);
  CHECK_MSG(pbt_population_exploit(p, 1, 0, &err), PBT_ERR_ARG, err,
            "the recipient is being trained");
  CHECK(holds(&models[1].w, 1, 1) && holds(&models[1].m, 1, 2));
  CHECK(pbt_population_member(p, 1, &info, &err) == PBT_OK);
  CHECK(info.parent == -1 && info.generation == 0 && info.version == 3);
  CHECK(pbt_population_nevents(p) == 0);
  CHECK(pbt_population_exploit(p, 2, 1, &err) == PBT_OK);
  CHECK(holds(&models[2].w, 1, 1));
  CHECK(pbt_population_set_busy(p, 1, 0, &err) == PBT_OK);
  CHECK(pbt_population_exploit(p, 1, 0, &err) == PBT_OK);
  CHECK(holds(&models[1].w, 0, 1));

  /* schedules: mark replaces an entry of the same step, else appends */
  CHECK(pbt_population_schedule_entry(p, 3, -1, NULL, NULL, &count, &err) == PBT_OK &&
        count == 0);
  CHECK(pbt_population_schedule_mark(p, 3, &err) == PBT_OK);
  v.f = 0.5;
  CHECK(pbt_population_set_hparam(p, 3, 0, v, &err) == PBT_OK);
  CHECK(pbt_population_schedule_mark(p, 3, &err) == PBT_OK); /* step 0 again: replaced */
  for (k = 1; k <= 20; k++) { /* past the first allocation */
    CHECK(pbt_population_set_steps(p, 3, 10 * k, &err) == PBT_OK);
    v.f = 0.5 + (double)k;
    CHECK(pbt_population_set_hparam(p, 3, 0, v, &err) == PBT_OK);
    CHECK(pbt_population_schedule_mark(p, 3, &err) == PBT_OK);
  }
  CHECK(pbt_population_schedule_entry(p, 3, 0, &step, h, &count, &err) == PBT_OK);
  CHECK(count == 21 && step == 0 && h[0].f == 0.5 && h[1].i == 48 && h[2].i == 0);
  CHECK(pbt_population_schedule_entry(p, 3, 20, &step, h, NULL, &err) == PBT_OK);
  CHECK(step == 200 && h[0].f == 20.5);
  CHECK_MSG(pbt_population_schedule_entry(p, 3, 21, &step, h, NULL, &err), PBT_ERR_ARG, err,
            "schedule entry 21 out of range (21 entries)");
  /* exploit gives the recipient the donor's schedule and root, as copies */
  CHECK(pbt_population_schedule_mark(p, 0, &err) == PBT_OK);
  CHECK(pbt_population_exploit(p, 0, 3, &err) == PBT_OK);
  CHECK(pbt_population_member(p, 0, &info, &err) == PBT_OK && info.root == 3);
  CHECK(pbt_population_schedule_entry(p, 0, 20, &step, h, &count, &err) == PBT_OK);
  CHECK(count == 21 && step == 200 && h[0].f == 20.5);
  CHECK(pbt_population_exploit(p, 2, 0, &err) == PBT_OK); /* a chain: root stays 3 */
  CHECK(pbt_population_member(p, 2, &info, &err) == PBT_OK && info.root == 3 &&
        info.generation == 2);
  v.f = -1;
  CHECK(pbt_population_set_hparam(p, 0, 0, v, &err) == PBT_OK);
  CHECK(pbt_population_schedule_mark(p, 0, &err) == PBT_OK); /* step 200: replaces */
  CHECK(pbt_population_schedule_entry(p, 0, 20, &step, h, &count, &err) == PBT_OK);
  CHECK(count == 21 && h[0].f == -1);
  CHECK(pbt_population_schedule_entry(p, 2, 20, &step, h, &count, &err) == PBT_OK);
  CHECK(count == 21 && h[0].f == 20.5);
  CHECK(pbt_population_schedule_entry(p, 3, 20, &step, h, &count, &err) == PBT_OK);
  CHECK(count == 21 && h[0].f == 20.5);
  /* a donor without a schedule leaves the recipient none */
  CHECK(pbt_population_exploit(p, 2, 1, &err) == PBT_OK);
  CHECK(pbt_population_schedule_entry(p, 2, -1, NULL, NULL, &count, &err) == PBT_OK &&
        count == 0);
  pbt_population_release(p);
  release_models(models);
}

/* ---- two threads publishing while a third exploits ------------------------ */

#define PUB_ROUNDS 1500

typedef struct publisher {
  pbt_population *p;
  int64_t me;
  pbt_tensor live, check;
  int bad;
} publisher;

static int uniform_at(const pbt_tensor *t, float v) {
  const float *x = (const float *)pbt_tensor_data(t);
  int64_t k;
  for (k = 0; k < NT; k++)
    if (x[k] != v) return 0;
  return 1;
}

static void *publish_loop(void *arg) {
  publisher *w = (publisher *)arg;
  pbt_error err;
  int r;
  for (r = 0; r < PUB_ROUNDS; r++) {
    const pbt_tensor *ts[1];
    pbt_tensor *outs[1];
    pbt_state_number num = {1, 0, r}, back;
    uint64_t gen[PBT_GENERATOR_STATE_WORDS];
    pbt_generator g;
    int64_t version;
    int has_gen;
    pbt_generator_seed(&g, (uint64_t)(w->me * 100000 + r));
    pbt_generator_state(&g, gen);
    pbt_fill_(&w->live, (double)(w->me * 100000 + r));
    ts[0] = &w->live;
    if (pbt_population_publish(w->p, w->me, ts, 1, &num, 1, gen, (double)r, r, &err) != PBT_OK)
      w->bad++;
    /* nobody else writes this member: the load gives what was published */
    outs[0] = &w->check;
    if (pbt_population_load(w->p, w->me, outs, 1, &back, 1, gen, &has_gen, &version, &err) !=
            PBT_OK ||
        !uniform_at(&w->check, (float)(w->me * 100000 + r)) || !back.is_int || back.i != r ||
        !has_gen)
      w->bad++;
  }
  return NULL;
}

typedef struct exploiter {
  pbt_population *p;
  int ok, refused, bad;
} exploiter;

static void *exploit_loop(void *arg) {
  exploiter *x = (exploiter *)arg;
  pbt_error err;
  pbt_generator g;
  pbt_tensor t;
  int r;
  pbt_tensor_init(&t);
  pbt_generator_seed(&g, 11);
  for (r = 0; r < PUB_ROUNDS; r++) {
    int64_t chosen;
    int64_t recipient = 2 + r % 2, donor = r % 3 == 0 ? r % 2 : 5 - recipient;
    pbt_status s = pbt_population_exploit(x->p, recipient, donor, &err);
    if (s == PBT_OK) x->ok++;
    else x->bad++;
    /* the busy publishers are never recipients */
    if (pbt_population_exploit(x->p, r % 2, 2, &err) == PBT_ERR_ARG &&
        strcmp(err.msg, "the recipient is being trained") == 0)
      x->refused++;
    else
      x->bad++;
    /* a published state copied whole: the recipient's entry is uniform */
    pbt_population_lock(x->p, recipient, &err);
    if (pbt_population_get_tensor(x->p, recipient, "w", &t, &err) != PBT_OK ||
        !uniform_at(&t, ((const float *)pbt_tensor_data(&t))[0]))
      x->bad++;
    pbt_tensor_release(&t);
    pbt_population_unlock(x->p, recipient, &err);
    if (pbt_population_tournament(x->p, recipient, 0, &g, &chosen, &err) != PBT_OK ||
        pbt_population_ttest(x->p, recipient, 3, 0.05, 0, &g, &chosen, &err) != PBT_OK)
      x->bad++;
  }
  return NULL;
}

static void test_threads_publish(void) {
  pbt_population *p;
  pbt_error err;
  publisher w[2];
  exploiter x = {NULL, 0, 0, 0};
  pthread_t th[3];
  pbt_member_info info;
  pbt_event *ev;
  int64_t i, n, k, reports[4] = {0, 0, 0, 0}, exploits = 0;
  CHECK(pbt_population_new(&p, 4, 0, NULL, 4, &err) == PBT_OK);
  for (i = 0; i < 4; i++) {
    int64_t shape = NT;
    pbt_tensor t;
    pbt_state_number num = {1, 0, 0};
    pbt_tensor_init(&t);
    CHECK(pbt_tensor_empty(&t, PBT_FLOAT32, 1, &shape, &err) == PBT_OK);
    pbt_fill_(&t, (double)i);
    CHECK(pbt_population_set_tensor(p, i, "w", &t, &err) == PBT_OK);
    CHECK(pbt_population_set_number(p, i, "n", num, &err) == PBT_OK);
    pbt_tensor_release(&t);
  }
  for (i = 0; i < 2; i++) {
    int64_t shape = NT;
    w[i].p = p;
    w[i].me = i;
    w[i].bad = 0;
    pbt_tensor_init(&w[i].live);
    pbt_tensor_init(&w[i].check);
    CHECK(pbt_tensor_empty(&w[i].live, PBT_FLOAT32, 1, &shape, &err) == PBT_OK);
    CHECK(pbt_tensor_empty(&w[i].check, PBT_FLOAT32, 1, &shape, &err) == PBT_OK);
    CHECK(pbt_population_set_busy(p, i, 1, &err) == PBT_OK);
  }
  x.p = p;
  for (i = 0; i < 2; i++) pthread_create(&th[i], NULL, publish_loop, &w[i]);
  pthread_create(&th[2], NULL, exploit_loop, &x);
  for (i = 0; i < 3; i++) pthread_join(th[i], NULL);
  CHECK(w[0].bad == 0 && w[1].bad == 0 && x.bad == 0);
  CHECK(x.ok == PUB_ROUNDS && x.refused == PUB_ROUNDS);
  for (i = 0; i < 2; i++) {
    CHECK(pbt_population_member(p, i, &info, &err) == PBT_OK);
    CHECK(info.work == PUB_ROUNDS && info.ncurve == PUB_ROUNDS && info.version == 2 + PUB_ROUNDS);
    CHECK(info.steps == PUB_ROUNDS - 1 && info.busy);
  }
  n = pbt_population_nevents(p);
  CHECK(n == 2 * PUB_ROUNDS + x.ok);
  ev = malloc((size_t)n * sizeof *ev);
  CHECK(ev != NULL && pbt_population_events(p, 0, n, ev) == n);
  for (k = 0; ev && k < n; k++) {
    CHECK(ev[k].seq == k);
    if (ev[k].kind == PBT_EVENT_REPORT) {
      CHECK(ev[k].member < 2 && ev[k].step == reports[ev[k].member]); /* in order */
      reports[ev[k].member]++;
    } else {
      CHECK(ev[k].kind == PBT_EVENT_EXPLOIT && ev[k].member >= 2);
      exploits++;
    }
  }
  CHECK(reports[0] == PUB_ROUNDS && reports[1] == PUB_ROUNDS && exploits == x.ok);
  free(ev);

  /* again while staging: the commit puts member 0's events first */
  pbt_population_stage(p);
  for (i = 0; i < 2; i++) pthread_create(&th[i], NULL, publish_loop, &w[i]);
  for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
  CHECK(pbt_population_nevents(p) == n);
  pbt_population_commit_staged(p);
  CHECK(pbt_population_nevents(p) == n + 2 * PUB_ROUNDS);
  ev = malloc((size_t)(2 * PUB_ROUNDS) * sizeof *ev);
  CHECK(ev != NULL && pbt_population_events(p, n, 2 * PUB_ROUNDS, ev) == 2 * PUB_ROUNDS);
  for (k = 0; ev && k < 2 * PUB_ROUNDS; k++) {
    CHECK(ev[k].seq == n + k && ev[k].member == (k < PUB_ROUNDS ? 0 : 1));
    CHECK(ev[k].step == k % PUB_ROUNDS);
  }
  free(ev);
  pbt_population_release(p);
  for (i = 0; i < 2; i++) {
    pbt_tensor_release(&w[i].live);
    pbt_tensor_release(&w[i].check);
  }
}

/* ---- channels: a receive with a timeout past any clock (1e10 s, infinity)
 * waits until another thread closes the channel, without holding its lock */
static void *close_later(void *arg) {
  struct timespec d = {0, 100000000L};
  nanosleep(&d, NULL);
  pbt_channel_close((pbt_channel *)arg);
  return NULL;
}

static void test_channel_long_timeouts(void) {
  static const double timeouts[] = {1e10, 1.0 / 0.0, -1};
  size_t k;
  for (k = 0; k < sizeof timeouts / sizeof timeouts[0]; k++) {
    pbt_channel *c;
    pbt_error err;
    pthread_t th;
    void *data;
    size_t len;
    CHECK(pbt_channel_new(&c, &err) == PBT_OK);
    CHECK(pthread_create(&th, NULL, close_later, c) == 0);
    CHECK(pbt_channel_receive(c, timeouts[k], &data, &len) == -1);
    CHECK(data == NULL && len == 0);
    pthread_join(th, NULL);
    CHECK(pbt_channel_send(c, "x", 1, &err) == PBT_ERR_ARG);
    pbt_channel_release(c);
  }
}

int main(void) {
  test_channel_long_timeouts();
  test_exploit();
  test_history_and_log();
  test_threads();
  test_publish_load();
  test_publish_mismatch();
  test_staging();
  test_busy_and_schedule();
  test_threads_publish();
  return test_harness_report("test_population");
}
