/* test_population.c -- the population store from C, without Lua: state
 * sharing, exploit, lineage, history, event log, errors, and two threads
 * exploiting in opposite directions at once.  Exits non-zero on failure. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbt_population.h"
#include "pbt_tensor.h"

static int failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                            \
    }                                                                        \
  } while (0)

#define CHECK_MSG(status, want_status, err, want_msg)                        \
  do {                                                                       \
    CHECK((status) == (want_status));                                        \
    if (strcmp((err).msg, (want_msg)) != 0) {                                \
      fprintf(stderr, "%s:%d: message \"%s\", expected \"%s\"\n", __FILE__,  \
              __LINE__, (err).msg, (want_msg));                              \
      failures++;                                                            \
    }                                                                        \
  } while (0)

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

int main(void) {
  test_exploit();
  test_history_and_log();
  test_threads();
  if (failures) {
    fprintf(stderr, "test_population: %d failures\n", failures);
    return 1;
  }
  printf("test_population: all checks passed\n");
  return 0;
}
