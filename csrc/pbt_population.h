/*
 * pbt_population.h -- the population store of Population Based Training.
 *
 * A population holds a fixed number of members.  Each member has
 *   - an id (its 0-based index; ids never change), a generation, a parent
 *     (the donor's id at its last exploit, -1 for none), a step count and a
 *     status (alive or failed);
 *   - one value for each of the population's hyperparameters, which are a
 *     fixed, named list given at creation: continuous (a double), integer
 *     (an int64_t, stored exactly) or categorical (a 0-based index into the
 *     choices, which themselves live with the caller);
 *   - a state: named tensors and named numbers, in the order they were
 *     first set.  A state tensor SHARES its storage with the tensor it was
 *     set from (pbt_tensor_share): the model's parameters are the member's
 *     state, no copy is ever made when registering;
 *   - the last score and a ring buffer of the most recent `window` scores.
 *
 * Exploit (pbt_population_exploit) copies a donor's state into the
 * recipient's EXISTING buffers -- memcpy for contiguous entries, pbt_copy_
 * otherwise, never an allocation -- after checking that both states have the
 * same entries (names, kinds, shapes, dtypes); nothing is copied when they do
 * not.  It also copies the state numbers and the hyperparameters, and:
 *   - recipient.parent = donor.id;
 *   - recipient.generation = donor.generation + 1: a member's generation is
 *     the depth of its weights in the lineage tree (how many exploits lie
 *     between them and an initial member);
 *   - the recipient's score history and last score become copies of the
 *     donor's: they describe the weights the recipient now has (the t-test
 *     compares recent scores; the recipient's own history no longer
 *     describes anything it holds);
 *   - the recipient's status becomes alive (exploit is how a failed member
 *     is replaced); a failed donor is refused;
 *   - the recipient's step count becomes the donor's: like the history, it
 *     describes the weights (how many steps trained them), so a member's
 *     step count and score curve continue the donor's, as in Ray Tune.
 *
 * Published state.  A runner that trains members in several Lua states
 * (or processes) registers STORE-OWNED buffers as the state entries (tensors
 * nothing else holds) and then
 *   - publishes: pbt_population_publish copies the worker's live tensors and
 *     numbers into the member's entries in the same locked operation that
 *     records the score they earned, so the published state is exactly the
 *     one that earned the member's last score;
 *   - loads: pbt_population_load copies the published state back into a
 *     worker's live tensors (when a member moves to another worker, or after
 *     an exploit changed it).
 * Exploit copies published entries into published entries; nobody copies a
 * tensor another thread is updating.  Each member also carries
 *   - a version, bumped by every change of its entries (registration,
 *     publish, exploit), so a worker knows whether its live copy is current;
 *   - work: the steps this member slot has trained (publish and fail add
 *     one each; exploit leaves it alone), which a budget counts, while
 *     `steps` (the weights' steps through the lineage) follows the donor;
 *   - the whole curve of (step, score) pairs this slot reported (exploit
 *     leaves it alone: it is the slot's record, not the weights');
 *   - its generator's state (PBT_GENERATOR_STATE_WORDS words), saved by
 *     publish and read by load, so a member draws the same numbers in
 *     whichever worker trains it;
 *   - its schedule: (step, hyperparameters) entries and the root member
 *     whose initial weights began its lineage.  pbt_population_schedule_mark
 *     records the current hyperparameters from the current step on
 *     (replacing an entry of the same step); exploit gives the recipient the
 *     donor's schedule and root;
 *   - a busy flag, set while a worker trains it: exploit refuses a busy
 *     recipient.
 *
 * Staged events.  While staging is on (pbt_population_stage), the events of
 * each member are kept in a list of that member's instead of the log;
 * pbt_population_commit_staged appends them to the log member by member
 * (member 0's first) and turns staging off.  Workers that train members at
 * once thus give the same log, whatever order their events came in.
 *
 * Event log.  Reports, exploits, and the events the caller logs (ready,
 * explore, failure, note) are appended to one log in the order they
 * happen, each with a sequence number (0, 1, 2...), kind, member, other
 * member (the donor of an exploit; -1 for none), the member's step count,
 * a score (see pbt_event), the member's generation after the event and a
 * detail string.  Given the same sequence of calls, the log is the same bit
 * for bit: no clock enters these fields.  Each event also carries a wall
 * time (`time`, seconds since the Unix epoch), which is NOT part of the log
 * proper and must be left out of comparisons and of replayable output.
 *
 * Threads.  All functions may be called from several threads at once.
 * Locking rules:
 *   - each member has a mutex guarding its fields, its state list, its
 *     history, and -- during an exploit -- its tensors' data;
 *   - the population has one mutex guarding the event log; it is always the
 *     innermost lock: no member lock is taken while it is held;
 *   - exploit locks recipient and donor in increasing index order, then the
 *     population (to log), so two exploits in opposite directions cannot
 *     deadlock;
 *   - every other function holds at most one member lock at a time (reading
 *     all scores locks the members one after another).
 * The store does not guard a tensor's data against the training code that
 * writes it.  A runner with several workers registers store-owned buffers
 * and copies through pbt_population_publish / pbt_population_load (see
 * "Published state"), so no thread reads tensors another one updates; a
 * caller that registers its live tensors instead must hold member i's lock
 * (pbt_population_lock / pbt_population_unlock; recursive) across each
 * step while other threads may exploit from or into i, and must not call
 * pbt_population_exploit or take another member's lock while holding it.
 *
 * Life cycle.  pbt_population_new returns a population with a reference
 * count of 1; pbt_population_retain / pbt_population_release (atomic) let
 * each owner -- e.g. a userdata in each of several Lua states -- hold its own
 * reference.  The last release frees it and releases its state tensors.
 *
 * Indices are 0-based here; functions given an index out of range return
 * PBT_ERR_ARG.  Error messages name no function (the caller adds it).
 */
#ifndef PBT_POPULATION_H
#define PBT_POPULATION_H

#include <stddef.h>
#include <stdint.h>

#include "pbt_random.h"
#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PBT_POPULATION_DEFAULT_WINDOW 10

typedef enum pbt_hparam_kind {
  PBT_HPARAM_FLOAT = 0, /* continuous: a double */
  PBT_HPARAM_INT = 1,   /* integer: an int64_t */
  PBT_HPARAM_CHOICE = 2 /* categorical: a 0-based index into the choices */
} pbt_hparam_kind;

typedef struct pbt_hparam_spec {
  const char *name;     /* copied by pbt_population_new */
  pbt_hparam_kind kind;
  int64_t nchoices;     /* CHOICE: number of choices (0: not checked) */
} pbt_hparam_spec;

/* A hyperparameter's value: `f` for FLOAT, `i` for INT and CHOICE. */
typedef struct pbt_hvalue {
  int set; /* 0 until a value is given */
  double f;
  int64_t i;
} pbt_hvalue;

typedef enum pbt_member_status {
  PBT_MEMBER_ALIVE = 0,
  PBT_MEMBER_FAILED = 1
} pbt_member_status;

typedef struct pbt_member_info {
  int64_t id, generation, parent, steps;
  pbt_member_status status;
  int has_score;     /* 0 until the first report */
  double last_score;
  int64_t nscores;   /* scores in the history (at most the window) */
  int64_t nstate;    /* state entries (tensors and numbers) */
  int64_t work;      /* steps this slot trained (see "Published state") */
  int64_t version;   /* bumped by every change of the state entries */
  int64_t root;      /* the member whose initial weights began the lineage */
  int64_t ncurve;    /* points of the slot's (step, score) curve */
  int busy;          /* a worker is training it */
  int has_generator; /* a generator state was saved */
} pbt_member_info;

typedef enum pbt_event_kind {
  PBT_EVENT_REPORT = 0,
  PBT_EVENT_READY,
  PBT_EVENT_EXPLOIT,
  PBT_EVENT_EXPLORE,
  PBT_EVENT_FAILURE,
  PBT_EVENT_NOTE,
  PBT_EVENT_NKINDS
} pbt_event_kind;

/* "report", "ready", "exploit", "explore", "failure", "note". */
const char *pbt_event_kind_name(pbt_event_kind kind);
/* Returns 0 and sets *kind for a known name, else -1. */
int pbt_event_kind_from_name(const char *name, pbt_event_kind *kind);

typedef struct pbt_event {
  int64_t seq;        /* 0, 1, 2... in the order of the log */
  pbt_event_kind kind;
  int64_t member;
  int64_t other;      /* the donor of an exploit, or what the caller logged; -1 none */
  int64_t step;       /* the member's step count at the event */
  int has_score;      /* 0: no score (score is NaN) */
  double score;       /* report: the score; other kinds: the member's last
                         score after the event (for exploit, the donor's) */
  int64_t generation; /* the member's generation after the event */
  const char *detail; /* never NULL; valid while the population lives */
  const char *data;   /* "" or the text of a JSON object with further fields
                         (e.g. an explore's old and new hyperparameters) */
  double time;        /* wall clock, NOT part of the log proper */
} pbt_event;

typedef struct pbt_population pbt_population;

/* ---- life cycle ---------------------------------------------------------- */
/* size >= 1 members; window >= 1 (0 picks PBT_POPULATION_DEFAULT_WINDOW);
 * hyperparameter names must be distinct and non-empty. */
pbt_status pbt_population_new(pbt_population **out, int64_t size, int nhparams,
                              const pbt_hparam_spec *hparams, int window,
                              pbt_error *err);
void pbt_population_retain(pbt_population *p);
/* Drops one reference; the last one frees the population (NULL is fine). */
void pbt_population_release(pbt_population *p);
long pbt_population_refcount(const pbt_population *p);

/* ---- shape of the population --------------------------------------------- */
int64_t pbt_population_size(const pbt_population *p);
int pbt_population_window(const pbt_population *p);
int pbt_population_nhparams(const pbt_population *p);
/* The spec of hyperparameter k (its name is owned by the population). */
const pbt_hparam_spec *pbt_population_hparam_spec(const pbt_population *p, int k);
/* Index of the hyperparameter called name, or -1. */
int pbt_population_find_hparam(const pbt_population *p, const char *name);

/* ---- members ------------------------------------------------------------- */
pbt_status pbt_population_member(pbt_population *p, int64_t i,
                                 pbt_member_info *out, pbt_error *err);
pbt_status pbt_population_set_status(pbt_population *p, int64_t i,
                                     pbt_member_status status, pbt_error *err);
pbt_status pbt_population_set_steps(pbt_population *p, int64_t i, int64_t steps,
                                    pbt_error *err);
pbt_status pbt_population_set_work(pbt_population *p, int64_t i, int64_t work,
                                   pbt_error *err);
/* Sets or clears member i's busy flag. */
pbt_status pbt_population_set_busy(pbt_population *p, int64_t i, int busy,
                                   pbt_error *err);
/* Marks member i failed, adds one to its work (the failed step) and logs a
 * failure event with that detail. */
pbt_status pbt_population_fail(pbt_population *p, int64_t i, const char *detail,
                               pbt_error *err);
/* Holds member i's (recursive) lock; see the locking rules above. */
pbt_status pbt_population_lock(pbt_population *p, int64_t i, pbt_error *err);
pbt_status pbt_population_unlock(pbt_population *p, int64_t i, pbt_error *err);

/* ---- hyperparameters ----------------------------------------------------- */
/* Sets hyperparameter k of member i from v.f (FLOAT) or v.i (INT, CHOICE;
 * a CHOICE must lie in 0..nchoices-1 when nchoices > 0). */
pbt_status pbt_population_set_hparam(pbt_population *p, int64_t i, int k,
                                     pbt_hvalue v, pbt_error *err);
/* Copies the member's nhparams values into out. */
pbt_status pbt_population_get_hparams(pbt_population *p, int64_t i,
                                      pbt_hvalue *out, pbt_error *err);

/* ---- state ----------------------------------------------------------------- */
typedef enum pbt_state_kind {
  PBT_STATE_NONE = 0,
  PBT_STATE_TENSOR = 1,
  PBT_STATE_NUMBER = 2
} pbt_state_kind;

/* A state number keeps whether it is an integer (is_int: value in i) or a
 * double (value in f). */
typedef struct pbt_state_number {
  int is_int;
  double f;
  int64_t i;
} pbt_state_number;

/* Registers (or replaces) entry `name` of member i as a tensor that shares
 * t's storage and geometry.  Names are non-empty. */
pbt_status pbt_population_set_tensor(pbt_population *p, int64_t i,
                                     const char *name, const pbt_tensor *t,
                                     pbt_error *err);
pbt_status pbt_population_set_number(pbt_population *p, int64_t i,
                                     const char *name, pbt_state_number v,
                                     pbt_error *err);
/* What entry `name` of member i is (PBT_STATE_NONE when absent or i out of
 * range). */
pbt_state_kind pbt_population_state_kind(pbt_population *p, int64_t i,
                                         const char *name);
/* dst (released or initialised) becomes a view sharing the entry's storage. */
pbt_status pbt_population_get_tensor(pbt_population *p, int64_t i,
                                     const char *name, pbt_tensor *dst,
                                     pbt_error *err);
pbt_status pbt_population_get_number(pbt_population *p, int64_t i,
                                     const char *name, pbt_state_number *out,
                                     pbt_error *err);
/* Name of state entry k (0-based, in order of registration) of member i,
 * copied into buf (NUL-terminated); its kind in *kind. */
pbt_status pbt_population_state_name(pbt_population *p, int64_t i, int64_t k,
                                     char *buf, size_t size,
                                     pbt_state_kind *kind, pbt_error *err);
/* Publishes member i (see "Published state"): copies tensors[k] into its
 * k-th tensor entry and numbers[k] into its k-th number entry (entries
 * counted in order of registration, each kind apart), saves the generator
 * state gen (NULL: keep the saved one), then records the score as
 * pbt_population_report does with that step, adds one to work and bumps the
 * version.  The counts, shapes and dtypes must match the entries: else
 * PBT_ERR_SHAPE / PBT_ERR_DTYPE naming the entry, and nothing changes. */
pbt_status pbt_population_publish(pbt_population *p, int64_t i,
                                  const pbt_tensor *const *tensors, int64_t ntensors,
                                  const pbt_state_number *numbers, int64_t nnumbers,
                                  const uint64_t *gen, double score, int64_t step,
                                  pbt_error *err);
/* The same, with data (a string, copied; NULL for none) attached to the
 * report event it logs: what the runner records with a score (the metrics
 * an evaluation gave, the hyperparameters a slot starts with). */
pbt_status pbt_population_publish_data(pbt_population *p, int64_t i,
                                       const pbt_tensor *const *tensors, int64_t ntensors,
                                       const pbt_state_number *numbers, int64_t nnumbers,
                                       const uint64_t *gen, double score, int64_t step,
                                       const char *data, pbt_error *err);
/* The other way: copies member i's published entries into tensors[] and
 * numbers[] (same matching and checks), the saved generator state into gen
 * (when gen is not NULL; *has_gen tells whether there was one) and the
 * version into *version (may be NULL). */
pbt_status pbt_population_load(pbt_population *p, int64_t i,
                               pbt_tensor *const *tensors, int64_t ntensors,
                               pbt_state_number *numbers, int64_t nnumbers,
                               uint64_t *gen, int *has_gen, int64_t *version,
                               pbt_error *err);
/* Member i's saved generator state into gen; *has = 0 when there is none. */
pbt_status pbt_population_get_generator(pbt_population *p, int64_t i, uint64_t *gen,
                                        int *has, pbt_error *err);
/* Saves member i's generator state (without publishing). */
pbt_status pbt_population_set_generator(pbt_population *p, int64_t i,
                                        const uint64_t *gen, pbt_error *err);
/* How many of member i's state entries are tensors and numbers. */
pbt_status pbt_population_state_counts(pbt_population *p, int64_t i, int64_t *ntensors,
                                       int64_t *nnumbers, pbt_error *err);
/* Total bytes of member i's state tensors (what an exploit into it copies). */
pbt_status pbt_population_state_bytes(pbt_population *p, int64_t i,
                                      size_t *out, pbt_error *err);

/* ---- scores ---------------------------------------------------------------- */
/* Appends score to member i's history, sets its last score and, when
 * step >= 0, its step count; logs a report event. */
pbt_status pbt_population_report(pbt_population *p, int64_t i, double score,
                                 int64_t step, pbt_error *err);
/* Copies member i's history, oldest first, into out (room for the window);
 * *n receives the count. */
pbt_status pbt_population_history(pbt_population *p, int64_t i, double *out,
                                  int64_t *n, pbt_error *err);
/* Last scores of members from..from+n-1 (clipped to the population) into
 * out: NaN for a member with none.  Returns how many were written. */
int64_t pbt_population_scores(pbt_population *p, int64_t from, int64_t n,
                              double *out);
/* Member i's last score (NaN when it has none). */
double pbt_population_score(pbt_population *p, int64_t i);
/* Copies up to max points of member i's curve from point `from` on into
 * steps[] and scores[]; returns how many (0 past the end or for a bad i). */
int64_t pbt_population_curve(pbt_population *p, int64_t i, int64_t from,
                             int64_t max, int64_t *steps, double *scores);

/* ---- schedules ----------------------------------------------------------------- */
/* Records member i's current hyperparameters from its current step on: an
 * entry of the same step is replaced, else one is appended. */
pbt_status pbt_population_schedule_mark(pbt_population *p, int64_t i,
                                        pbt_error *err);
/* Entry k (0-based) of member i's schedule: its step into *step and its
 * nhparams values into h.  *count receives the number of entries (call
 * with k = -1 to ask only that). */
pbt_status pbt_population_schedule_entry(pbt_population *p, int64_t i, int64_t k,
                                         int64_t *step, pbt_hvalue *h,
                                         int64_t *count, pbt_error *err);

/* ---- exploit ----------------------------------------------------------------- */
/* See the top of this file.  On a mismatch returns PBT_ERR_SHAPE (shapes,
 * names or kinds) or PBT_ERR_DTYPE and changes nothing; the message names
 * the entry, e.g. "state entry 'w': shape [3,4] in the donor, [4,3] in the
 * recipient". */
pbt_status pbt_population_exploit(pbt_population *p, int64_t recipient,
                                  int64_t donor, pbt_error *err);

/* ---- restoring a member (resuming a run from a database) -------------------------- */
/* Everything the store keeps of a member but its state entries, which
 * pbt_population_set_tensor / set_number / load restore. */
typedef struct pbt_member_record {
  int64_t generation, parent, root, steps, work; /* parent -1 for none */
  pbt_member_status status;
  const double *history;   /* oldest first; at most the window is kept */
  int64_t nhistory;
  int has_score;
  double last_score;
  const int64_t *curve_steps; /* the slot's curve */
  const double *curve_scores;
  int64_t ncurve;
  const int64_t *sched_steps; /* schedule entries, nhparams values each */
  const pbt_hvalue *sched_h;
  int64_t nsched;
  const pbt_hvalue *hparams;  /* nhparams values */
  const uint64_t *generator;  /* PBT_GENERATOR_STATE_WORDS words, or NULL */
} pbt_member_record;

/* Sets member i from rec (not busy afterwards, version bumped).  Checks
 * the indices (parent, root), choices and counts first: PBT_ERR_ARG and
 * nothing changed. */
pbt_status pbt_population_restore(pbt_population *p, int64_t i,
                                  const pbt_member_record *rec, pbt_error *err);
/* Appends an event with the fields of e as they are (its seq must be the
 * log's next, its time is kept): a resumed run's log continues the old one.
 * detail and data are copied. */
pbt_status pbt_population_restore_event(pbt_population *p, const pbt_event *e,
                                        pbt_error *err);

/* ---- decisions on the store ------------------------------------------------------- */
/* The binary tournament and the t-test of pbt_select.h, reading only the two
 * members they compare: j = pbt_select_other(size, i, g) is drawn and
 * *chosen is j when it wins (pbt_score_better on last scores, or
 * pbt_ttest_better on the histories), else -1.  The same draws as
 * pbt_select_tournament / pbt_select_ttest over the population's arrays.
 * mode is a pbt_select_mode (0 max, 1 min). */
pbt_status pbt_population_tournament(pbt_population *p, int64_t i, int mode,
                                     pbt_generator *g, int64_t *chosen,
                                     pbt_error *err);
pbt_status pbt_population_ttest(pbt_population *p, int64_t i, int64_t window,
                                double alpha, int mode, pbt_generator *g,
                                int64_t *chosen, pbt_error *err);

/* ---- event log --------------------------------------------------------------- */
/* Appends an event of that kind for member i (other: -1 for none); step,
 * score and generation are the member's. detail may be NULL. */
pbt_status pbt_population_log(pbt_population *p, pbt_event_kind kind,
                              int64_t i, int64_t other, const char *detail,
                              pbt_error *err);
/* The same with structured fields: data is NULL, "" or a JSON object's
 * text, kept as given (the store does not parse it). */
pbt_status pbt_population_log_data(pbt_population *p, pbt_event_kind kind,
                                   int64_t i, int64_t other, const char *detail,
                                   const char *data, pbt_error *err);
/* Staging (see the top of this file).  pbt_population_stage turns it on;
 * pbt_population_commit_staged appends the staged events in member order
 * and turns it off. */
void pbt_population_stage(pbt_population *p);
void pbt_population_commit_staged(pbt_population *p);
int64_t pbt_population_nevents(pbt_population *p);
/* Copies up to max events from sequence number `from` on into out; returns
 * how many. */
int64_t pbt_population_events(pbt_population *p, int64_t from, int64_t max,
                              pbt_event *out);

#ifdef __cplusplus
}
#endif
#endif
