/* pbt_channel.c -- channels and the shared registry (see pbt_channel.h). */
#define _XOPEN_SOURCE 700 /* clock_gettime, pthread_cond_timedwait */
#include "pbt_channel.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- channel -------------------------------------------------------------- */

typedef struct message {
  struct message *next;
  size_t len;
  unsigned char data[];
} message;

struct pbt_channel {
  long refcount; /* __atomic builtins */
  pthread_mutex_t lock;
  pthread_cond_t ready;
  message *head, *tail;
  size_t count;
  int closed;
};

pbt_status pbt_channel_new(pbt_channel **out, pbt_error *err) {
  pbt_channel *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  c->refcount = 1;
  pthread_mutex_init(&c->lock, NULL);
  {
    /* timed waits against the monotonic clock: a change of the wall clock
     * does not stretch or cut them */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->ready, &attr);
    pthread_condattr_destroy(&attr);
  }
  *out = c;
  return PBT_OK;
}

void pbt_channel_retain(pbt_channel *c) {
  __atomic_fetch_add(&c->refcount, 1, __ATOMIC_RELAXED);
}

void pbt_channel_release(pbt_channel *c) {
  message *m, *next;
  if (!c || __atomic_fetch_sub(&c->refcount, 1, __ATOMIC_ACQ_REL) != 1) return;
  for (m = c->head; m; m = next) {
    next = m->next;
    free(m);
  }
  pthread_cond_destroy(&c->ready);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

pbt_status pbt_channel_send(pbt_channel *c, const void *data, size_t len,
                            pbt_error *err) {
  message *m;
  if (len > SIZE_MAX - sizeof *m) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  m = malloc(sizeof *m + len);
  if (!m) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  m->next = NULL;
  m->len = len;
  if (len) memcpy(m->data, data, len);
  pthread_mutex_lock(&c->lock);
  if (c->closed) {
    pthread_mutex_unlock(&c->lock);
    free(m);
    return pbt_fail(err, PBT_ERR_ARG, "the channel is closed");
  }
  if (c->tail) c->tail->next = m;
  else c->head = m;
  c->tail = m;
  c->count++;
  pthread_cond_signal(&c->ready);
  pthread_mutex_unlock(&c->lock);
  return PBT_OK;
}

int pbt_channel_receive(pbt_channel *c, double timeout, void **data, size_t *len) {
  struct timespec until;
  message *m;
  int r;
  *data = NULL;
  *len = 0;
  if (timeout > 1e9) timeout = -1; /* over 30 years, or infinite: no limit */
  if (timeout >= 0) {
    double whole = floor(timeout);
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)whole;
    until.tv_nsec += (long)((timeout - whole) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&c->lock);
  while (!c->head && !c->closed) {
    if (timeout < 0) pthread_cond_wait(&c->ready, &c->lock);
    else if (pthread_cond_timedwait(&c->ready, &c->lock, &until) == ETIMEDOUT) break;
  }
  m = c->head;
  if (m) {
    c->head = m->next;
    if (!c->head) c->tail = NULL;
    c->count--;
  }
  r = m ? 1 : (c->closed ? -1 : 0);
  pthread_mutex_unlock(&c->lock);
  if (m) {
    /* hand the caller the bytes: move them to the start of the block */
    size_t n = m->len;
    memmove(m, m->data, n);
    *data = m;
    *len = n;
  }
  return r;
}

void pbt_channel_close(pbt_channel *c) {
  pthread_mutex_lock(&c->lock);
  c->closed = 1;
  pthread_cond_broadcast(&c->ready);
  pthread_mutex_unlock(&c->lock);
}

size_t pbt_channel_pending(pbt_channel *c) {
  size_t n;
  pthread_mutex_lock(&c->lock);
  n = c->count;
  pthread_mutex_unlock(&c->lock);
  return n;
}

/* ---- shared registry ------------------------------------------------------- */

struct pbt_shared_entry {
  struct pbt_shared_entry *next;
  char *name;
  int made;            /* 0 while its maker works on it */
  unsigned char *bytes;
  size_t len;
  int64_t n;
  pbt_tensor *tensors;
};

struct pbt_shared {
  long refcount;
  pthread_mutex_t lock;
  pthread_cond_t changed;
  pbt_shared_entry *entries;
};

pbt_status pbt_shared_new(pbt_shared **out, pbt_error *err) {
  pbt_shared *s = calloc(1, sizeof *s);
  *out = NULL;
  if (!s) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  s->refcount = 1;
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->changed, NULL);
  *out = s;
  return PBT_OK;
}

void pbt_shared_retain(pbt_shared *s) {
  __atomic_fetch_add(&s->refcount, 1, __ATOMIC_RELAXED);
}

static void free_entry(pbt_shared_entry *e) {
  int64_t k;
  for (k = 0; k < e->n; k++) pbt_tensor_release(&e->tensors[k]);
  free(e->tensors);
  free(e->bytes);
  free(e->name);
  free(e);
}

void pbt_shared_release(pbt_shared *s) {
  pbt_shared_entry *e, *next;
  if (!s || __atomic_fetch_sub(&s->refcount, 1, __ATOMIC_ACQ_REL) != 1) return;
  for (e = s->entries; e; e = next) {
    next = e->next;
    free_entry(e);
  }
  pthread_cond_destroy(&s->changed);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static pbt_shared_entry *find(pbt_shared *s, const char *name) {
  pbt_shared_entry *e;
  for (e = s->entries; e; e = e->next)
    if (strcmp(e->name, name) == 0) return e;
  return NULL;
}

/* A placeholder for name, marking it as being made (NULL without memory). */
static pbt_shared_entry *placeholder(pbt_shared *s, const char *name) {
  pbt_shared_entry *e = calloc(1, sizeof *e);
  size_t n = strlen(name) + 1;
  if (!e || !(e->name = malloc(n))) {
    free(e);
    return NULL;
  }
  memcpy(e->name, name, n);
  e->next = s->entries;
  s->entries = e;
  return e;
}

int pbt_shared_begin(pbt_shared *s, const char *name,
                     const pbt_shared_entry **entry) {
  pbt_shared_entry *e;
  int found = 0;
  *entry = NULL;
  pthread_mutex_lock(&s->lock);
  for (;;) {
    e = find(s, name);
    if (!e) {
      (void)placeholder(s, name); /* without memory, the put fails later */
      break;
    }
    if (e->made) {
      *entry = e;
      found = 1;
      break;
    }
    pthread_cond_wait(&s->changed, &s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  return found;
}

pbt_status pbt_shared_put(pbt_shared *s, const char *name, const void *bytes,
                          size_t len, const pbt_tensor *const *tensors,
                          int64_t n, const pbt_shared_entry **entry,
                          pbt_error *err) {
  pbt_shared_entry *e;
  unsigned char *b = malloc(len ? len : 1);
  pbt_tensor *ts = calloc((size_t)(n > 0 ? n : 1), sizeof *ts);
  int64_t k;
  *entry = NULL;
  if (!b || !ts || n < 0) {
    free(b);
    free(ts);
    pbt_shared_abandon(s, name);
    return pbt_fail(err, n < 0 ? PBT_ERR_ARG : PBT_ERR_NOMEM,
                    n < 0 ? "negative tensor count" : "not enough memory");
  }
  if (len) memcpy(b, bytes, len);
  for (k = 0; k < n; k++) {
    pbt_tensor_init(&ts[k]);
    pbt_tensor_share(&ts[k], tensors[k]);
  }
  pthread_mutex_lock(&s->lock);
  e = find(s, name);
  if (!e) e = placeholder(s, name);
  if (!e || e->made) {
    pthread_mutex_unlock(&s->lock);
    for (k = 0; k < n; k++) pbt_tensor_release(&ts[k]);
    free(ts);
    free(b);
    return pbt_fail(err, e ? PBT_ERR_ARG : PBT_ERR_NOMEM,
                    e ? "'%s' is already there" : "not enough memory", name);
  }
  e->bytes = b;
  e->len = len;
  e->tensors = ts;
  e->n = n;
  e->made = 1;
  *entry = e;
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
  return PBT_OK;
}

void pbt_shared_abandon(pbt_shared *s, const char *name) {
  pbt_shared_entry **at, *e;
  pthread_mutex_lock(&s->lock);
  for (at = &s->entries; (e = *at) != NULL; at = &e->next)
    if (strcmp(e->name, name) == 0 && !e->made) {
      *at = e->next;
      free_entry(e);
      break;
    }
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
}

const void *pbt_shared_bytes(const pbt_shared_entry *e, size_t *len) {
  *len = e->len;
  return e->bytes;
}

int64_t pbt_shared_ntensors(const pbt_shared_entry *e) { return e->n; }

void pbt_shared_tensor(const pbt_shared_entry *e, int64_t k, pbt_tensor *dst) {
  pbt_tensor_share(dst, &e->tensors[k]);
}
