/* pbt_population.c -- the population store (see pbt_population.h). */
#define _XOPEN_SOURCE 700 /* recursive mutexes, clock_gettime */
#include "pbt_population.h"
#include "pbt_random.h"
#include "pbt_select.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
  char *name;
  pbt_state_kind kind;
  pbt_tensor t;          /* TENSOR: shares the caller's storage */
  pbt_state_number num;  /* NUMBER */
} entry;

typedef struct member {
  pthread_mutex_t lock; /* recursive */
  int64_t id, generation, parent, steps;
  pbt_member_status status;
  pbt_hvalue *hp;       /* nhparams values */
  entry *state;
  int64_t nstate, capstate;
  double *hist;         /* ring of `window` scores */
  int64_t hfirst, hcount;
  int has_score;
  double last;
  int64_t work, version, root;
  int busy, has_gen;
  uint64_t gen[PBT_GENERATOR_STATE_WORDS];
  int64_t *curve_step;  /* the slot's (step, score) curve */
  double *curve_score;
  int64_t ncurve, capcurve;
  int64_t *sched_step;  /* schedule: steps, and nhparams values per entry */
  pbt_hvalue *sched_h;
  int64_t nsched, capsched;
  pbt_event *staged;    /* events kept while staging (details owned) */
  int64_t nstaged, capstaged;
} member;

struct pbt_population {
  long refcount; /* touched only through __atomic builtins */
  int64_t size;
  int nhparams, window;
  pbt_hparam_spec *specs; /* names owned */
  member *members;
  pthread_mutex_t lock;   /* the event log; always the innermost lock */
  pbt_event *events;      /* details owned (NULL for "") */
  int64_t nevents, capevents, reserved;
  int staging;            /* read and written through __atomic builtins */
};

static const char *const kind_names[PBT_EVENT_NKINDS] = {
    "report", "ready", "exploit", "explore", "failure", "note"};

const char *pbt_event_kind_name(pbt_event_kind kind) {
  return (unsigned)kind < PBT_EVENT_NKINDS ? kind_names[kind] : "?";
}

int pbt_event_kind_from_name(const char *name, pbt_event_kind *kind) {
  int k;
  for (k = 0; k < PBT_EVENT_NKINDS; k++)
    if (strcmp(name, kind_names[k]) == 0) {
      *kind = (pbt_event_kind)k;
      return 0;
    }
  return -1;
}

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- life cycle -------------------------------------------------------- */

static void free_event_strings(pbt_event *e) {
  free((char *)e->detail);
  free((char *)e->data);
}

static void free_members(pbt_population *p, int64_t n) {
  int64_t i, k;
  for (i = 0; i < n; i++) {
    member *m = &p->members[i];
    for (k = 0; k < m->nstate; k++) {
      free(m->state[k].name);
      pbt_tensor_release(&m->state[k].t);
    }
    for (k = 0; k < m->nstaged; k++) free_event_strings(&m->staged[k]);
    free(m->staged);
    free(m->state);
    free(m->hp);
    free(m->hist);
    free(m->curve_step);
    free(m->curve_score);
    free(m->sched_step);
    free(m->sched_h);
    pthread_mutex_destroy(&m->lock);
  }
}

static void free_population(pbt_population *p, int64_t nmembers) {
  int64_t e;
  int k;
  if (p->members) free_members(p, nmembers);
  free(p->members);
  if (p->specs)
    for (k = 0; k < p->nhparams; k++) free((char *)p->specs[k].name);
  free(p->specs);
  for (e = 0; e < p->nevents; e++) free_event_strings(&p->events[e]);
  free(p->events);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

pbt_status pbt_population_new(pbt_population **out, int64_t size, int nhparams,
                              const pbt_hparam_spec *hparams, int window,
                              pbt_error *err) {
  pbt_population *p;
  pthread_mutexattr_t attr;
  int64_t i;
  int k, j;
  *out = NULL;
  if (size < 1) return pbt_fail(err, PBT_ERR_ARG, "size must be at least 1");
  if (window < 0) return pbt_fail(err, PBT_ERR_ARG, "window must be at least 1");
  if (window == 0) window = PBT_POPULATION_DEFAULT_WINDOW;
  if (nhparams < 0) return pbt_fail(err, PBT_ERR_ARG, "negative hyperparameter count");
  for (k = 0; k < nhparams; k++) {
    const pbt_hparam_spec *s = &hparams[k];
    if (s->name == NULL || s->name[0] == '\0')
      return pbt_fail(err, PBT_ERR_ARG, "hyperparameter %d has no name", k + 1);
    if ((unsigned)s->kind > PBT_HPARAM_CHOICE)
      return pbt_fail(err, PBT_ERR_ARG, "hyperparameter '%s' has an unknown kind",
                      s->name);
    if (s->nchoices < 0)
      return pbt_fail(err, PBT_ERR_ARG, "hyperparameter '%s' has a negative number of choices",
                      s->name);
    for (j = 0; j < k; j++)
      if (strcmp(hparams[j].name, s->name) == 0)
        return pbt_fail(err, PBT_ERR_ARG, "hyperparameter '%s' appears twice", s->name);
  }
  if ((uint64_t)size > SIZE_MAX / sizeof(member))
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  p = calloc(1, sizeof *p);
  if (!p) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  p->refcount = 1;
  p->size = size;
  p->nhparams = nhparams;
  p->window = window;
  pthread_mutex_init(&p->lock, NULL);
  p->specs = calloc(nhparams ? (size_t)nhparams : 1, sizeof *p->specs);
  p->members = calloc((size_t)size, sizeof *p->members);
  if (!p->specs || !p->members) {
    free(p->members);
    p->members = NULL;
    free_population(p, 0);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  for (k = 0; k < nhparams; k++) {
    p->specs[k] = hparams[k];
    p->specs[k].name = dup_string(hparams[k].name);
    if (!p->specs[k].name) {
      free(p->members);
      p->members = NULL;
      free_population(p, 0);
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    }
  }
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  for (i = 0; i < size; i++) {
    member *m = &p->members[i];
    m->id = i;
    m->root = i;
    m->parent = -1;
    m->hp = calloc(nhparams ? (size_t)nhparams : 1, sizeof *m->hp);
    m->hist = calloc((size_t)window, sizeof *m->hist);
    pthread_mutex_init(&m->lock, &attr);
    if (!m->hp || !m->hist) {
      pthread_mutexattr_destroy(&attr);
      free_population(p, i + 1);
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    }
  }
  pthread_mutexattr_destroy(&attr);
  *out = p;
  return PBT_OK;
}

void pbt_population_retain(pbt_population *p) {
  __atomic_fetch_add(&p->refcount, 1, __ATOMIC_RELAXED);
}

void pbt_population_release(pbt_population *p) {
  if (p && __atomic_fetch_sub(&p->refcount, 1, __ATOMIC_ACQ_REL) == 1)
    free_population(p, p->size);
}

long pbt_population_refcount(const pbt_population *p) {
  return __atomic_load_n(&p->refcount, __ATOMIC_RELAXED);
}

/* ---- shape ----------------------------------------------------------------- */

int64_t pbt_population_size(const pbt_population *p) { return p->size; }
int pbt_population_window(const pbt_population *p) { return p->window; }
int pbt_population_nhparams(const pbt_population *p) { return p->nhparams; }

const pbt_hparam_spec *pbt_population_hparam_spec(const pbt_population *p, int k) {
  return k >= 0 && k < p->nhparams ? &p->specs[k] : NULL;
}

int pbt_population_find_hparam(const pbt_population *p, const char *name) {
  int k;
  for (k = 0; k < p->nhparams; k++)
    if (strcmp(p->specs[k].name, name) == 0) return k;
  return -1;
}

/* ---- helpers ------------------------------------------------------------- */

static pbt_status check_index(const pbt_population *p, int64_t i, pbt_error *err) {
  if (i < 0 || i >= p->size)
    return pbt_fail(err, PBT_ERR_ARG, "member %lld out of range for a population of %lld",
                    (long long)i, (long long)p->size);
  return PBT_OK;
}

/* Locks member i after checking the index. */
static member *lock_member(pbt_population *p, int64_t i, pbt_error *err) {
  member *m;
  if (check_index(p, i, err)) return NULL;
  m = &p->members[i];
  pthread_mutex_lock(&m->lock);
  return m;
}

static void unlock_member(member *m) { pthread_mutex_unlock(&m->lock); }

static entry *find_entry(member *m, const char *name) {
  int64_t k;
  for (k = 0; k < m->nstate; k++)
    if (strcmp(m->state[k].name, name) == 0) return &m->state[k];
  return NULL;
}

static double wall_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Grows an array of `size`-byte items at *a (capacity *cap) to hold at
 * least n; 0 on success, -1 when out of memory (nothing changed). */
static int grow(void **a, int64_t *cap, int64_t n, size_t size) {
  int64_t c = *cap ? *cap : 8;
  void *q;
  if (n <= *cap) return 0;
  while (c < n) c *= 2;
  if ((uint64_t)c > SIZE_MAX / size) return -1;
  q = realloc(*a, (size_t)c * size);
  if (!q) return -1;
  *a = q;
  *cap = c;
  return 0;
}

/* Room for one event of member m (locked by the caller) is made before the
 * change it records, so that logging never fails once the change is made:
 * a slot of m's staged list while staging is on (*staged = 1), else a
 * reserved slot of the log. */
static pbt_status reserve_event(pbt_population *p, member *m, int *staged,
                                pbt_error *err) {
  pbt_status s = PBT_OK;
  *staged = __atomic_load_n(&p->staging, __ATOMIC_ACQUIRE);
  if (*staged) {
    if (grow((void **)&m->staged, &m->capstaged, m->nstaged + 1, sizeof *m->staged))
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    return PBT_OK;
  }
  pthread_mutex_lock(&p->lock);
  if (grow((void **)&p->events, &p->capevents, p->nevents + p->reserved + 1,
           sizeof *p->events))
    s = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  else p->reserved++;
  pthread_mutex_unlock(&p->lock);
  return s;
}

/* Appends an event for member m (locked by the caller) into the slot
 * reserve_event made; takes ownership of detail and data. */
static void commit_event(pbt_population *p, pbt_event_kind kind, member *m,
                         int64_t other, char *detail, char *data, int staged) {
  pbt_event e;
  e.kind = kind;
  e.member = m->id;
  e.other = other;
  e.step = m->steps;
  e.has_score = m->has_score;
  e.score = m->has_score ? m->last : NAN;
  e.generation = m->generation;
  e.detail = detail;
  e.data = data;
  e.time = wall_time();
  if (staged) {
    e.seq = -1;
    m->staged[m->nstaged++] = e;
    return;
  }
  pthread_mutex_lock(&p->lock);
  e.seq = p->nevents;
  p->events[p->nevents++] = e;
  p->reserved--;
  pthread_mutex_unlock(&p->lock);
}

void pbt_population_stage(pbt_population *p) {
  __atomic_store_n(&p->staging, 1, __ATOMIC_RELEASE);
}

void pbt_population_commit_staged(pbt_population *p) {
  int64_t i, k;
  __atomic_store_n(&p->staging, 0, __ATOMIC_RELEASE);
  for (i = 0; i < p->size; i++) {
    member *m = &p->members[i];
    pthread_mutex_lock(&m->lock);
    pthread_mutex_lock(&p->lock);
    /* the slots were reserved in m->staged; the log grows here, and when it
     * cannot, the events stay staged until the next commit */
    if (m->nstaged &&
        !grow((void **)&p->events, &p->capevents, p->nevents + p->reserved + m->nstaged,
              sizeof *p->events)) {
      for (k = 0; k < m->nstaged; k++) {
        m->staged[k].seq = p->nevents;
        p->events[p->nevents++] = m->staged[k];
      }
      m->nstaged = 0;
    }
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&m->lock);
  }
}

/* A malloc'd copy of detail, NULL for none or "" (*ok = 0 when out of
 * memory). */
static char *copy_detail(const char *detail, int *ok) {
  char *d;
  *ok = 1;
  if (detail == NULL || detail[0] == '\0') return NULL;
  d = dup_string(detail);
  if (!d) *ok = 0;
  return d;
}

/* ---- members --------------------------------------------------------------- */

pbt_status pbt_population_member(pbt_population *p, int64_t i,
                                 pbt_member_info *out, pbt_error *err) {
  member *m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  out->id = m->id;
  out->generation = m->generation;
  out->parent = m->parent;
  out->steps = m->steps;
  out->status = m->status;
  out->has_score = m->has_score;
  out->last_score = m->has_score ? m->last : NAN;
  out->nscores = m->hcount;
  out->nstate = m->nstate;
  out->work = m->work;
  out->version = m->version;
  out->root = m->root;
  out->ncurve = m->ncurve;
  out->busy = m->busy;
  out->has_generator = m->has_gen;
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_set_status(pbt_population *p, int64_t i,
                                     pbt_member_status status, pbt_error *err) {
  member *m;
  if (status != PBT_MEMBER_ALIVE && status != PBT_MEMBER_FAILED)
    return pbt_fail(err, PBT_ERR_ARG, "unknown status");
  m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  m->status = status;
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_set_steps(pbt_population *p, int64_t i, int64_t steps,
                                    pbt_error *err) {
  member *m;
  if (steps < 0) return pbt_fail(err, PBT_ERR_ARG, "negative step count");
  m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  m->steps = steps;
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_set_work(pbt_population *p, int64_t i, int64_t work,
                                   pbt_error *err) {
  member *m;
  if (work < 0) return pbt_fail(err, PBT_ERR_ARG, "negative work");
  m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  m->work = work;
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_set_busy(pbt_population *p, int64_t i, int busy,
                                   pbt_error *err) {
  member *m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  m->busy = busy != 0;
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_lock(pbt_population *p, int64_t i, pbt_error *err) {
  return lock_member(p, i, err) ? PBT_OK : PBT_ERR_ARG;
}

pbt_status pbt_population_unlock(pbt_population *p, int64_t i, pbt_error *err) {
  if (check_index(p, i, err)) return PBT_ERR_ARG;
  if (pthread_mutex_unlock(&p->members[i].lock) != 0)
    return pbt_fail(err, PBT_ERR_ARG, "member %lld is not locked by this thread",
                    (long long)i);
  return PBT_OK;
}

/* ---- hyperparameters ------------------------------------------------------ */

pbt_status pbt_population_set_hparam(pbt_population *p, int64_t i, int k,
                                     pbt_hvalue v, pbt_error *err) {
  const pbt_hparam_spec *s;
  member *m;
  if (check_index(p, i, err)) return PBT_ERR_ARG;
  if (k < 0 || k >= p->nhparams)
    return pbt_fail(err, PBT_ERR_ARG, "hyperparameter %d out of range (%d defined)", k,
                    p->nhparams);
  s = &p->specs[k];
  if (s->kind == PBT_HPARAM_CHOICE &&
      (v.i < 0 || (s->nchoices > 0 && v.i >= s->nchoices)))
    return pbt_fail(err, PBT_ERR_ARG,
                    "choice %lld out of range for hyperparameter '%s' (%lld choices)",
                    (long long)v.i, s->name, (long long)s->nchoices);
  v.set = 1;
  if (s->kind == PBT_HPARAM_FLOAT) v.i = 0;
  else v.f = 0;
  m = lock_member(p, i, err);
  m->hp[k] = v;
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_get_hparams(pbt_population *p, int64_t i,
                                      pbt_hvalue *out, pbt_error *err) {
  member *m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  if (p->nhparams) memcpy(out, m->hp, (size_t)p->nhparams * sizeof *out);
  unlock_member(m);
  return PBT_OK;
}

/* ---- state -------------------------------------------------------------------- */

/* Entry `name` of m, created (empty, kind NONE) when absent. */
static entry *entry_for(member *m, const char *name, pbt_error *err) {
  entry *e = find_entry(m, name);
  if (e) return e;
  if (m->nstate == m->capstate) {
    int64_t cap = m->capstate ? m->capstate * 2 : 8;
    entry *st = realloc(m->state, (size_t)cap * sizeof *st);
    if (!st) {
      pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
      return NULL;
    }
    m->state = st;
    m->capstate = cap;
  }
  e = &m->state[m->nstate];
  memset(e, 0, sizeof *e);
  e->name = dup_string(name);
  if (!e->name) {
    pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    return NULL;
  }
  m->nstate++;
  return e;
}

static pbt_status check_name(const char *name, pbt_error *err) {
  if (name == NULL || name[0] == '\0')
    return pbt_fail(err, PBT_ERR_ARG, "state entry names must be non-empty");
  return PBT_OK;
}

pbt_status pbt_population_set_tensor(pbt_population *p, int64_t i,
                                     const char *name, const pbt_tensor *t,
                                     pbt_error *err) {
  member *m;
  entry *e;
  if (check_name(name, err)) return PBT_ERR_ARG;
  if (t->storage == NULL)
    return pbt_fail(err, PBT_ERR_ARG, "state entry '%s': tensor has been released", name);
  m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  e = entry_for(m, name, err);
  if (e) {
    pbt_tensor_share(&e->t, t);
    e->kind = PBT_STATE_TENSOR;
    m->version++;
  }
  unlock_member(m);
  return e ? PBT_OK : PBT_ERR_NOMEM;
}

pbt_status pbt_population_set_number(pbt_population *p, int64_t i,
                                     const char *name, pbt_state_number v,
                                     pbt_error *err) {
  member *m;
  entry *e;
  if (check_name(name, err)) return PBT_ERR_ARG;
  m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  e = entry_for(m, name, err);
  if (e) {
    pbt_tensor_release(&e->t);
    if (v.is_int) v.f = (double)v.i;
    else v.i = 0;
    e->num = v;
    e->kind = PBT_STATE_NUMBER;
    m->version++;
  }
  unlock_member(m);
  return e ? PBT_OK : PBT_ERR_NOMEM;
}

pbt_state_kind pbt_population_state_kind(pbt_population *p, int64_t i,
                                         const char *name) {
  pbt_state_kind kind = PBT_STATE_NONE;
  member *m;
  entry *e;
  if (i < 0 || i >= p->size || name == NULL) return PBT_STATE_NONE;
  m = &p->members[i];
  pthread_mutex_lock(&m->lock);
  e = find_entry(m, name);
  if (e) kind = e->kind;
  unlock_member(m);
  return kind;
}

/* Member i's entry `name` of that kind copied out (a tensor shared into
 * dst, a number into num), under the member's lock. */
static pbt_status get_entry(pbt_population *p, int64_t i, const char *name,
                            pbt_state_kind kind, pbt_tensor *dst, pbt_state_number *num,
                            pbt_error *err) {
  pbt_status s = PBT_OK;
  member *m = lock_member(p, i, err);
  entry *e;
  if (!m) return PBT_ERR_ARG;
  e = find_entry(m, name);
  if (!e || e->kind != kind)
    s = pbt_fail(err, PBT_ERR_ARG, "member has no state %s '%s'",
                 kind == PBT_STATE_TENSOR ? "tensor" : "number", name);
  else if (kind == PBT_STATE_TENSOR) pbt_tensor_share(dst, &e->t);
  else *num = e->num;
  unlock_member(m);
  return s;
}

pbt_status pbt_population_get_tensor(pbt_population *p, int64_t i,
                                     const char *name, pbt_tensor *dst,
                                     pbt_error *err) {
  return get_entry(p, i, name, PBT_STATE_TENSOR, dst, NULL, err);
}

pbt_status pbt_population_get_number(pbt_population *p, int64_t i,
                                     const char *name, pbt_state_number *out,
                                     pbt_error *err) {
  return get_entry(p, i, name, PBT_STATE_NUMBER, NULL, out, err);
}

pbt_status pbt_population_state_name(pbt_population *p, int64_t i, int64_t k,
                                     char *buf, size_t size,
                                     pbt_state_kind *kind, pbt_error *err) {
  pbt_status s = PBT_OK;
  member *m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  if (k < 0 || k >= m->nstate) {
    s = pbt_fail(err, PBT_ERR_ARG, "state entry %lld out of range (%lld entries)",
                 (long long)k, (long long)m->nstate);
  } else {
    if (size) {
      strncpy(buf, m->state[k].name, size - 1);
      buf[size - 1] = '\0';
    }
    if (kind) *kind = m->state[k].kind;
  }
  unlock_member(m);
  return s;
}

static size_t tensor_bytes(const pbt_tensor *t) {
  return (size_t)pbt_tensor_numel(t) * pbt_dtype_size(t->dtype);
}

pbt_status pbt_population_state_counts(pbt_population *p, int64_t i, int64_t *ntensors,
                                       int64_t *nnumbers, pbt_error *err) {
  member *m = lock_member(p, i, err);
  int64_t k;
  if (!m) return PBT_ERR_ARG;
  *ntensors = *nnumbers = 0;
  for (k = 0; k < m->nstate; k++) {
    if (m->state[k].kind == PBT_STATE_TENSOR) (*ntensors)++;
    else if (m->state[k].kind == PBT_STATE_NUMBER) (*nnumbers)++;
  }
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_state_bytes(pbt_population *p, int64_t i,
                                      size_t *out, pbt_error *err) {
  member *m = lock_member(p, i, err);
  int64_t k;
  size_t n = 0;
  if (!m) return PBT_ERR_ARG;
  for (k = 0; k < m->nstate; k++)
    if (m->state[k].kind == PBT_STATE_TENSOR) n += tensor_bytes(&m->state[k].t);
  unlock_member(m);
  *out = n;
  return PBT_OK;
}

/* ---- scores ------------------------------------------------------------------ */

/* Records a score for m (locked, with an event reserved and room in its
 * curve): history, last score, step count, curve point, report event. */
static void record_score(pbt_population *p, member *m, double score, int64_t step,
                         int staged, char *data) {
  if (m->hcount < p->window) {
    m->hist[(m->hfirst + m->hcount) % p->window] = score;
    m->hcount++;
  } else {
    m->hist[m->hfirst] = score;
    m->hfirst = (m->hfirst + 1) % p->window;
  }
  m->has_score = 1;
  m->last = score;
  if (step >= 0) m->steps = step;
  m->curve_step[m->ncurve] = m->steps;
  m->curve_score[m->ncurve] = score;
  m->ncurve++;
  commit_event(p, PBT_EVENT_REPORT, m, -1, NULL, data, staged);
}

/* Room for one more curve point of m (locked). */
static pbt_status curve_room(member *m, pbt_error *err) {
  int64_t cap = m->capcurve;
  if (grow((void **)&m->curve_step, &cap, m->ncurve + 1, sizeof *m->curve_step) ||
      grow((void **)&m->curve_score, &m->capcurve, m->ncurve + 1, sizeof *m->curve_score))
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  return PBT_OK;
}

pbt_status pbt_population_report(pbt_population *p, int64_t i, double score,
                                 int64_t step, pbt_error *err) {
  member *m = lock_member(p, i, err);
  int staged;
  if (!m) return PBT_ERR_ARG;
  if (curve_room(m, err) || reserve_event(p, m, &staged, err)) {
    unlock_member(m);
    return PBT_ERR_NOMEM;
  }
  record_score(p, m, score, step, staged, NULL);
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_history(pbt_population *p, int64_t i, double *out,
                                  int64_t *n, pbt_error *err) {
  member *m = lock_member(p, i, err);
  int64_t k;
  if (!m) return PBT_ERR_ARG;
  for (k = 0; k < m->hcount; k++) out[k] = m->hist[(m->hfirst + k) % p->window];
  *n = m->hcount;
  unlock_member(m);
  return PBT_OK;
}

int64_t pbt_population_scores(pbt_population *p, int64_t from, int64_t n,
                              double *out) {
  int64_t i, k = 0;
  if (from < 0) from = 0;
  for (i = from; i < p->size && k < n; i++, k++) {
    member *m = &p->members[i];
    pthread_mutex_lock(&m->lock);
    out[k] = m->has_score ? m->last : NAN;
    unlock_member(m);
  }
  return k;
}

double pbt_population_score(pbt_population *p, int64_t i) {
  double x = NAN;
  pbt_population_scores(p, i, i >= 0 && i < p->size ? 1 : 0, &x);
  return x;
}

int64_t pbt_population_curve(pbt_population *p, int64_t i, int64_t from,
                             int64_t max, int64_t *steps, double *scores) {
  member *m;
  int64_t k, n = 0;
  if (i < 0 || i >= p->size || from < 0) return 0;
  m = &p->members[i];
  pthread_mutex_lock(&m->lock);
  for (k = from; k < m->ncurve && n < max; k++, n++) {
    steps[n] = m->curve_step[k];
    scores[n] = m->curve_score[k];
  }
  unlock_member(m);
  return n;
}

/* ---- published state ------------------------------------------------------------ */

static const char *state_kind_word(pbt_state_kind k) {
  return k == PBT_STATE_TENSOR ? "a tensor" : "a number";
}

static size_t entry_count(const member *m, pbt_state_kind kind) {
  size_t n = 0;
  int64_t k;
  for (k = 0; k < m->nstate; k++) n += m->state[k].kind == kind;
  return n;
}

/* Checks that live tensor t can be copied to or from entry e. */
static pbt_status check_pair(const entry *e, const pbt_tensor *t, pbt_error *err) {
  char a[96], b[96];
  if (t == NULL || t->storage == NULL)
    return pbt_fail(err, PBT_ERR_ARG, "state entry '%s': the tensor has been released",
                    e->name);
  if (!pbt_shape_equal(e->t.ndim, e->t.shape, t->ndim, t->shape)) {
    pbt_format_shape(a, sizeof a, e->t.ndim, e->t.shape);
    pbt_format_shape(b, sizeof b, t->ndim, t->shape);
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "state entry '%s': shape %s in the store, %s given", e->name, a, b);
  }
  if (e->t.dtype != t->dtype)
    return pbt_fail(err, PBT_ERR_DTYPE, "state entry '%s': %s in the store, %s given",
                    e->name, pbt_dtype_name(e->t.dtype), pbt_dtype_name(t->dtype));
  if (e->t.storage == t->storage)
    return pbt_fail(err, PBT_ERR_ARG,
                    "state entry '%s' shares its storage with the tensor given", e->name);
  return PBT_OK;
}

/* Checks the counts and every tensor of a publish or load of m. */
static pbt_status check_live(const member *m, const pbt_tensor *const *tensors,
                             int64_t ntensors, int64_t nnumbers, pbt_error *err) {
  size_t nt = entry_count(m, PBT_STATE_TENSOR), nn = entry_count(m, PBT_STATE_NUMBER);
  int64_t k, t = 0;
  if ((size_t)ntensors != nt || (size_t)nnumbers != nn)
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "the member's state has %zu tensors and %zu numbers, %lld and %lld given",
                    nt, nn, (long long)ntensors, (long long)nnumbers);
  for (k = 0; k < m->nstate; k++)
    if (m->state[k].kind == PBT_STATE_TENSOR) {
      pbt_status s = check_pair(&m->state[k], tensors[t++], err);
      if (s) return s;
    }
  return PBT_OK;
}

static void copy_tensor(pbt_tensor *dst, const pbt_tensor *src);

pbt_status pbt_population_publish(pbt_population *p, int64_t i,
                                  const pbt_tensor *const *tensors, int64_t ntensors,
                                  const pbt_state_number *numbers, int64_t nnumbers,
                                  const uint64_t *gen, double score, int64_t step,
                                  pbt_error *err) {
  return pbt_population_publish_data(p, i, tensors, ntensors, numbers, nnumbers, gen, score, step,
                                     NULL, err);
}

pbt_status pbt_population_publish_data(pbt_population *p, int64_t i,
                                       const pbt_tensor *const *tensors, int64_t ntensors,
                                       const pbt_state_number *numbers, int64_t nnumbers,
                                       const uint64_t *gen, double score, int64_t step,
                                       const char *data, pbt_error *err) {
  member *m;
  pbt_status s;
  int64_t k, t = 0, n = 0;
  int staged;
  char *copy = NULL;
  if (data) { /* copied before any lock: nothing fails once the copy begins */
    copy = strdup(data);
    if (!copy) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  m = lock_member(p, i, err);
  if (!m) {
    free(copy);
    return PBT_ERR_ARG;
  }
  s = check_live(m, tensors, ntensors, nnumbers, err);
  if (!s) s = curve_room(m, err);
  if (!s) s = reserve_event(p, m, &staged, err);
  if (s) {
    unlock_member(m);
    free(copy);
    return s;
  }
  for (k = 0; k < m->nstate; k++) {
    entry *e = &m->state[k];
    if (e->kind == PBT_STATE_TENSOR) copy_tensor(&e->t, tensors[t++]);
    else if (e->kind == PBT_STATE_NUMBER) {
      pbt_state_number v = numbers[n++];
      if (v.is_int) v.f = (double)v.i;
      else v.i = 0;
      e->num = v;
    }
  }
  if (gen) {
    memcpy(m->gen, gen, sizeof m->gen);
    m->has_gen = 1;
  }
  m->work++;
  m->version++;
  record_score(p, m, score, step, staged, copy);
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_load(pbt_population *p, int64_t i,
                               pbt_tensor *const *tensors, int64_t ntensors,
                               pbt_state_number *numbers, int64_t nnumbers,
                               uint64_t *gen, int *has_gen, int64_t *version,
                               pbt_error *err) {
  member *m = lock_member(p, i, err);
  pbt_status s;
  int64_t k, t = 0, n = 0;
  if (!m) return PBT_ERR_ARG;
  s = check_live(m, (const pbt_tensor *const *)tensors, ntensors, nnumbers, err);
  if (!s) {
    for (k = 0; k < m->nstate; k++) {
      entry *e = &m->state[k];
      if (e->kind == PBT_STATE_TENSOR) copy_tensor(tensors[t++], &e->t);
      else if (e->kind == PBT_STATE_NUMBER) numbers[n++] = e->num;
    }
    if (gen) memcpy(gen, m->gen, sizeof m->gen);
    if (has_gen) *has_gen = m->has_gen;
    if (version) *version = m->version;
  }
  unlock_member(m);
  return s;
}

pbt_status pbt_population_get_generator(pbt_population *p, int64_t i, uint64_t *gen,
                                        int *has, pbt_error *err) {
  member *m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  memcpy(gen, m->gen, sizeof m->gen);
  *has = m->has_gen;
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_set_generator(pbt_population *p, int64_t i,
                                        const uint64_t *gen, pbt_error *err) {
  member *m = lock_member(p, i, err);
  if (!m) return PBT_ERR_ARG;
  memcpy(m->gen, gen, sizeof m->gen);
  m->has_gen = 1;
  unlock_member(m);
  return PBT_OK;
}

/* ---- schedules ------------------------------------------------------------------ */

pbt_status pbt_population_schedule_mark(pbt_population *p, int64_t i,
                                        pbt_error *err) {
  member *m = lock_member(p, i, err);
  size_t nh = (size_t)(p->nhparams ? p->nhparams : 1);
  int64_t k;
  if (!m) return PBT_ERR_ARG;
  k = m->nsched;
  if (k > 0 && m->sched_step[k - 1] == m->steps) {
    k--;
  } else {
    int64_t cap = m->capsched;
    if (grow((void **)&m->sched_step, &cap, k + 1, sizeof *m->sched_step) ||
        (cap > m->capsched &&
         (uint64_t)cap > SIZE_MAX / (nh * sizeof *m->sched_h))) {
      unlock_member(m);
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    }
    if (cap > m->capsched) {
      pbt_hvalue *h = realloc(m->sched_h, (size_t)cap * nh * sizeof *h);
      if (!h) {
        unlock_member(m);
        return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
      }
      m->sched_h = h;
      m->capsched = cap;
    }
    m->nsched++;
  }
  m->sched_step[k] = m->steps;
  if (p->nhparams) memcpy(&m->sched_h[(size_t)k * nh], m->hp, (size_t)p->nhparams * sizeof *m->hp);
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_schedule_entry(pbt_population *p, int64_t i, int64_t k,
                                         int64_t *step, pbt_hvalue *h,
                                         int64_t *count, pbt_error *err) {
  member *m = lock_member(p, i, err);
  size_t nh = (size_t)(p->nhparams ? p->nhparams : 1);
  pbt_status s = PBT_OK;
  if (!m) return PBT_ERR_ARG;
  if (count) *count = m->nsched;
  if (k >= m->nsched)
    s = pbt_fail(err, PBT_ERR_ARG, "schedule entry %lld out of range (%lld entries)",
                 (long long)k, (long long)m->nsched);
  else if (k >= 0) {
    *step = m->sched_step[k];
    if (p->nhparams) memcpy(h, &m->sched_h[(size_t)k * nh], (size_t)p->nhparams * sizeof *h);
  }
  unlock_member(m);
  return s;
}

/* ---- exploit ------------------------------------------------------------------ */

/* Checks that recipient r can take donor d's state; on success fills
 * pairs[k] with r's entry matching d's entry k. */
static pbt_status match_states(member *r, member *d, entry **pairs,
                               pbt_error *err) {
  int64_t k;
  char a[96], b[96];
  for (k = 0; k < d->nstate; k++) {
    entry *de = &d->state[k];
    entry *re = k < r->nstate && strcmp(r->state[k].name, de->name) == 0
                    ? &r->state[k]
                    : find_entry(r, de->name);
    if (!re)
      return pbt_fail(err, PBT_ERR_SHAPE,
                      "state entry '%s' is missing from the recipient", de->name);
    if (re->kind != de->kind)
      return pbt_fail(err, PBT_ERR_SHAPE,
                      "state entry '%s' is %s in the donor and %s in the recipient",
                      de->name, state_kind_word(de->kind), state_kind_word(re->kind));
    if (de->kind == PBT_STATE_TENSOR) {
      if (!pbt_shape_equal(de->t.ndim, de->t.shape, re->t.ndim, re->t.shape)) {
        pbt_format_shape(a, sizeof a, de->t.ndim, de->t.shape);
        pbt_format_shape(b, sizeof b, re->t.ndim, re->t.shape);
        return pbt_fail(err, PBT_ERR_SHAPE,
                        "state entry '%s': shape %s in the donor, %s in the recipient",
                        de->name, a, b);
      }
      if (de->t.dtype != re->t.dtype)
        return pbt_fail(err, PBT_ERR_DTYPE,
                        "state entry '%s': %s in the donor, %s in the recipient",
                        de->name, pbt_dtype_name(de->t.dtype),
                        pbt_dtype_name(re->t.dtype));
      if (de->t.storage == re->t.storage)
        return pbt_fail(err, PBT_ERR_ARG,
                        "state entry '%s' shares its storage with the donor's",
                        de->name);
    }
    pairs[k] = re;
  }
  if (r->nstate != d->nstate)
    for (k = 0; k < r->nstate; k++)
      if (!find_entry(d, r->state[k].name))
        return pbt_fail(err, PBT_ERR_SHAPE,
                        "state entry '%s' is missing from the donor", r->state[k].name);
  return PBT_OK;
}

static void copy_tensor(pbt_tensor *dst, const pbt_tensor *src) {
  if (pbt_tensor_is_contiguous(dst) && pbt_tensor_is_contiguous(src))
    memcpy(pbt_tensor_data(dst), pbt_tensor_data(src), tensor_bytes(dst));
  else
    pbt_copy_(dst, src, NULL); /* same shape and dtype, other storages: cannot fail */
}

/* Room in r's schedule for n entries. */
static pbt_status schedule_room(pbt_population *p, member *r, int64_t n,
                                pbt_error *err) {
  size_t nh = (size_t)(p->nhparams ? p->nhparams : 1);
  int64_t cap = r->capsched;
  if (n <= r->capsched) return PBT_OK;
  if (grow((void **)&r->sched_step, &cap, n, sizeof *r->sched_step) ||
      (uint64_t)cap > SIZE_MAX / (nh * sizeof *r->sched_h))
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  {
    pbt_hvalue *h = realloc(r->sched_h, (size_t)cap * nh * sizeof *h);
    if (!h) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    r->sched_h = h;
    r->capsched = cap;
  }
  return PBT_OK;
}

pbt_status pbt_population_exploit(pbt_population *p, int64_t recipient,
                                  int64_t donor, pbt_error *err) {
  member *r, *d, *lo, *hi;
  entry **pairs;
  pbt_status s;
  int64_t k;
  int staged = 0;
  size_t nh = (size_t)(p->nhparams ? p->nhparams : 1);
  if (check_index(p, recipient, err) || check_index(p, donor, err)) return PBT_ERR_ARG;
  if (recipient == donor)
    return pbt_fail(err, PBT_ERR_ARG, "a member cannot exploit itself");
  r = &p->members[recipient];
  d = &p->members[donor];
  lo = recipient < donor ? r : d;
  hi = recipient < donor ? d : r;
  pthread_mutex_lock(&lo->lock);
  pthread_mutex_lock(&hi->lock);
  pairs = malloc((size_t)(d->nstate ? d->nstate : 1) * sizeof *pairs);
  if (!pairs) s = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  else if (d->status == PBT_MEMBER_FAILED)
    s = pbt_fail(err, PBT_ERR_ARG, "the donor has failed");
  else if (r->busy)
    s = pbt_fail(err, PBT_ERR_ARG, "the recipient is being trained");
  else s = match_states(r, d, pairs, err);
  if (!s) s = schedule_room(p, r, d->nsched, err);
  if (!s) s = reserve_event(p, r, &staged, err);
  if (s) {
    unlock_member(hi);
    unlock_member(lo);
    free(pairs);
    return s;
  }
  for (k = 0; k < d->nstate; k++) {
    entry *de = &d->state[k], *re = pairs[k];
    if (de->kind == PBT_STATE_TENSOR) copy_tensor(&re->t, &de->t);
    else re->num = de->num;
  }
  free(pairs);
  if (p->nhparams) memcpy(r->hp, d->hp, (size_t)p->nhparams * sizeof *r->hp);
  r->parent = d->id;
  r->root = d->root;
  r->generation = d->generation + 1;
  r->steps = d->steps;
  r->status = PBT_MEMBER_ALIVE;
  r->version++;
  memcpy(r->hist, d->hist, (size_t)p->window * sizeof *r->hist);
  r->hfirst = d->hfirst;
  r->hcount = d->hcount;
  r->has_score = d->has_score;
  r->last = d->last;
  if (d->nsched) {
    memcpy(r->sched_step, d->sched_step, (size_t)d->nsched * sizeof *r->sched_step);
    memcpy(r->sched_h, d->sched_h, (size_t)d->nsched * nh * sizeof *r->sched_h);
  }
  r->nsched = d->nsched;
  commit_event(p, PBT_EVENT_EXPLOIT, r, d->id, NULL, NULL, staged);
  unlock_member(hi);
  unlock_member(lo);
  return PBT_OK;
}

/* ---- restoring ------------------------------------------------------------------------ */

pbt_status pbt_population_restore(pbt_population *p, int64_t i,
                                  const pbt_member_record *rec, pbt_error *err) {
  member *m;
  size_t nh = (size_t)(p->nhparams ? p->nhparams : 1);
  int64_t k, capc;
  int j;
  if (check_index(p, i, err)) return PBT_ERR_ARG;
  if (rec->parent < -1 || rec->parent >= p->size || rec->root < 0 || rec->root >= p->size)
    return pbt_fail(err, PBT_ERR_ARG, "parent or root out of range for a population of %lld",
                    (long long)p->size);
  if (rec->generation < 0 || rec->steps < 0 || rec->work < 0 || rec->nhistory < 0 ||
      rec->ncurve < 0 || rec->nsched < 0)
    return pbt_fail(err, PBT_ERR_ARG, "negative count in a member record");
  if (rec->status != PBT_MEMBER_ALIVE && rec->status != PBT_MEMBER_FAILED)
    return pbt_fail(err, PBT_ERR_ARG, "unknown status");
  for (j = 0; j < p->nhparams; j++) {
    const pbt_hparam_spec *s = &p->specs[j];
    if (s->kind != PBT_HPARAM_CHOICE) continue;
    if (rec->hparams[j].i < 0 || (s->nchoices > 0 && rec->hparams[j].i >= s->nchoices))
      return pbt_fail(err, PBT_ERR_ARG, "choice %lld out of range for hyperparameter '%s'",
                      (long long)rec->hparams[j].i, s->name);
    for (k = 0; k < rec->nsched; k++) {
      int64_t c = rec->sched_h[(size_t)k * nh + (size_t)j].i;
      if (c < 0 || (s->nchoices > 0 && c >= s->nchoices))
        return pbt_fail(err, PBT_ERR_ARG, "choice %lld out of range for hyperparameter '%s'",
                        (long long)c, s->name);
    }
  }
  m = lock_member(p, i, err);
  capc = m->capcurve;
  if (grow((void **)&m->curve_step, &capc, rec->ncurve, sizeof *m->curve_step) ||
      grow((void **)&m->curve_score, &m->capcurve, rec->ncurve, sizeof *m->curve_score) ||
      schedule_room(p, m, rec->nsched, err)) {
    unlock_member(m);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  m->generation = rec->generation;
  m->parent = rec->parent;
  m->root = rec->root;
  m->steps = rec->steps;
  m->work = rec->work;
  m->status = rec->status;
  m->busy = 0;
  m->version++;
  m->hfirst = 0;
  m->hcount = 0;
  for (k = rec->nhistory > p->window ? rec->nhistory - p->window : 0; k < rec->nhistory; k++)
    m->hist[m->hcount++] = rec->history[k];
  m->has_score = rec->has_score;
  m->last = rec->has_score ? rec->last_score : 0;
  if (rec->ncurve) {
    memcpy(m->curve_step, rec->curve_steps, (size_t)rec->ncurve * sizeof *m->curve_step);
    memcpy(m->curve_score, rec->curve_scores, (size_t)rec->ncurve * sizeof *m->curve_score);
  }
  m->ncurve = rec->ncurve;
  if (rec->nsched) {
    memcpy(m->sched_step, rec->sched_steps, (size_t)rec->nsched * sizeof *m->sched_step);
    memcpy(m->sched_h, rec->sched_h, (size_t)rec->nsched * nh * sizeof *m->sched_h);
  }
  m->nsched = rec->nsched;
  for (j = 0; j < p->nhparams; j++) {
    m->hp[j] = rec->hparams[j];
    m->hp[j].set = 1;
  }
  if (rec->generator) {
    memcpy(m->gen, rec->generator, sizeof m->gen);
    m->has_gen = 1;
  } else {
    m->has_gen = 0;
  }
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_restore_event(pbt_population *p, const pbt_event *e,
                                        pbt_error *err) {
  char *d, *j;
  int ok1, ok2;
  pbt_event ev = *e;
  if ((unsigned)e->kind >= PBT_EVENT_NKINDS)
    return pbt_fail(err, PBT_ERR_ARG, "unknown event kind");
  if (e->member < 0 || e->member >= p->size || e->other < -1 || e->other >= p->size)
    return pbt_fail(err, PBT_ERR_ARG, "event member out of range for a population of %lld",
                    (long long)p->size);
  d = copy_detail(e->detail, &ok1);
  j = copy_detail(e->data, &ok2);
  if (!ok1 || !ok2) {
    free(d);
    free(j);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  ev.detail = d;
  ev.data = j;
  pthread_mutex_lock(&p->lock);
  if (e->seq != p->nevents) {
    int64_t next = p->nevents;
    pthread_mutex_unlock(&p->lock);
    free(d);
    free(j);
    return pbt_fail(err, PBT_ERR_ARG, "event %lld given where the log's next is %lld",
                    (long long)e->seq + 1, (long long)next + 1);
  }
  if (grow((void **)&p->events, &p->capevents, p->nevents + p->reserved + 1, sizeof *p->events)) {
    pthread_mutex_unlock(&p->lock);
    free(d);
    free(j);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  p->events[p->nevents++] = ev;
  pthread_mutex_unlock(&p->lock);
  return PBT_OK;
}

/* ---- decisions on the store ---------------------------------------------------------- */

pbt_status pbt_population_tournament(pbt_population *p, int64_t i, int mode,
                                     pbt_generator *g, int64_t *chosen,
                                     pbt_error *err) {
  int64_t j;
  *chosen = -1;
  if (check_index(p, i, err)) return PBT_ERR_ARG;
  j = pbt_select_other((size_t)p->size, (size_t)i, g);
  if (j >= 0 && pbt_score_better(pbt_population_score(p, j), pbt_population_score(p, i),
                                 (pbt_select_mode)mode))
    *chosen = j;
  return PBT_OK;
}

pbt_status pbt_population_ttest(pbt_population *p, int64_t i, int64_t window,
                                double alpha, int mode, pbt_generator *g,
                                int64_t *chosen, pbt_error *err) {
  double *hi, *hj;
  int64_t j, ni = 0, nj = 0;
  pbt_status s;
  *chosen = -1;
  if (check_index(p, i, err)) return PBT_ERR_ARG;
  if (window < 0 ||
      (s = pbt_ttest_check_options((size_t)window, alpha, err)) != PBT_OK)
    return window < 0 ? pbt_fail(err, PBT_ERR_ARG, "window must be at least 2, got %lld",
                                 (long long)window)
                      : s;
  if (window > p->window)
    return pbt_fail(err, PBT_ERR_ARG,
                    "the t-test's window (%lld) is longer than the population's score window (%d)",
                    (long long)window, p->window);
  j = pbt_select_other((size_t)p->size, (size_t)i, g);
  if (j < 0) return PBT_OK;
  hi = malloc(2 * (size_t)p->window * sizeof *hi);
  if (!hi) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  hj = hi + p->window;
  pbt_population_history(p, i, hi, &ni, NULL);
  pbt_population_history(p, j, hj, &nj, NULL);
  if (pbt_ttest_better(hi, (size_t)ni, hj, (size_t)nj, (size_t)window, alpha,
                       (pbt_select_mode)mode))
    *chosen = j;
  free(hi);
  return PBT_OK;
}

/* ---- event log ------------------------------------------------------------------ */

/* Logs an event of member i with copies of detail and data, setting the
 * member's status to `status` first when status >= 0 and adding `work`. */
static pbt_status log_event(pbt_population *p, pbt_event_kind kind, int64_t i,
                            int64_t other, const char *detail, const char *data,
                            int status, int64_t work, pbt_error *err) {
  member *m;
  char *d, *j;
  int ok1, ok2, staged;
  if ((unsigned)kind >= PBT_EVENT_NKINDS)
    return pbt_fail(err, PBT_ERR_ARG, "unknown event kind");
  if (check_index(p, i, err)) return PBT_ERR_ARG;
  if (other < -1 || other >= p->size)
    return pbt_fail(err, PBT_ERR_ARG, "other member %lld out of range for a population of %lld",
                    (long long)other, (long long)p->size);
  d = copy_detail(detail, &ok1);
  j = copy_detail(data, &ok2);
  if (!ok1 || !ok2) {
    free(d);
    free(j);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  m = lock_member(p, i, err);
  if (reserve_event(p, m, &staged, err)) {
    unlock_member(m);
    free(d);
    free(j);
    return PBT_ERR_NOMEM;
  }
  if (status >= 0) m->status = (pbt_member_status)status;
  m->work += work;
  commit_event(p, kind, m, other, d, j, staged);
  unlock_member(m);
  return PBT_OK;
}

pbt_status pbt_population_log(pbt_population *p, pbt_event_kind kind,
                              int64_t i, int64_t other, const char *detail,
                              pbt_error *err) {
  return log_event(p, kind, i, other, detail, NULL, -1, 0, err);
}

pbt_status pbt_population_log_data(pbt_population *p, pbt_event_kind kind,
                                   int64_t i, int64_t other, const char *detail,
                                   const char *data, pbt_error *err) {
  return log_event(p, kind, i, other, detail, data, -1, 0, err);
}

pbt_status pbt_population_fail(pbt_population *p, int64_t i, const char *detail,
                               pbt_error *err) {
  return log_event(p, PBT_EVENT_FAILURE, i, -1, detail, NULL, PBT_MEMBER_FAILED, 1, err);
}

int64_t pbt_population_nevents(pbt_population *p) {
  int64_t n;
  pthread_mutex_lock(&p->lock);
  n = p->nevents;
  pthread_mutex_unlock(&p->lock);
  return n;
}

int64_t pbt_population_events(pbt_population *p, int64_t from, int64_t max,
                              pbt_event *out) {
  int64_t n = 0, e;
  if (from < 0) from = 0;
  pthread_mutex_lock(&p->lock);
  for (e = from; e < p->nevents && n < max; e++, n++) {
    out[n] = p->events[e];
    if (!out[n].detail) out[n].detail = "";
    if (!out[n].data) out[n].data = "";
  }
  pthread_mutex_unlock(&p->lock);
  return n;
}
