/*
 * pbt_channel.h -- what threads of one run hand each other: a channel of
 * byte messages, and a registry of named read-only values (data sets) that
 * every Lua state of the process shares.
 *
 * Channel.  A FIFO of messages (copies of the bytes sent), safe for any
 * number of senders and receivers.  pbt_channel_close wakes every receiver:
 * once closed, sends fail and receives return what is left, then "closed".
 * Reference-counted (atomic): each owner -- a userdata in each Lua state --
 * holds its own reference.
 *
 * Shared registry.  Named values made of a byte string (the caller's
 * encoding of the value's shape) and tensors whose storages are shared, not
 * copied: whoever asks for a name gets views of the same storages.  The
 * first thread that asks for a missing name is told to make it (and calls
 * pbt_shared_put or pbt_shared_abandon); the others wait until it is there.
 * Entries are never changed once put and live as long as the registry.
 */
#ifndef PBT_CHANNEL_H
#define PBT_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pbt_channel pbt_channel;

pbt_status pbt_channel_new(pbt_channel **out, pbt_error *err);
void pbt_channel_retain(pbt_channel *c);
void pbt_channel_release(pbt_channel *c); /* NULL is fine */
/* Appends a copy of the len bytes at data.  PBT_ERR_ARG "the channel is
 * closed" after pbt_channel_close. */
pbt_status pbt_channel_send(pbt_channel *c, const void *data, size_t len,
                            pbt_error *err);
/* Waits at most `timeout` seconds (negative: without limit) for a message.
 * Returns 1 with a malloc'd copy in *data (the caller frees it) and its
 * length in *len; 0 when the time ran out; -1 when the channel is closed
 * and empty. */
int pbt_channel_receive(pbt_channel *c, double timeout, void **data, size_t *len);
void pbt_channel_close(pbt_channel *c);
/* Messages waiting. */
size_t pbt_channel_pending(pbt_channel *c);

typedef struct pbt_shared pbt_shared;
typedef struct pbt_shared_entry pbt_shared_entry;

pbt_status pbt_shared_new(pbt_shared **out, pbt_error *err);
void pbt_shared_retain(pbt_shared *s);
void pbt_shared_release(pbt_shared *s); /* NULL is fine */
/* Looks name up.  When it is there, *entry is set and 1 is returned.  When
 * it is missing and nobody makes it, the caller is to make it: 0 is
 * returned (and *entry is NULL).  While another thread makes it, waits. */
int pbt_shared_begin(pbt_shared *s, const char *name,
                     const pbt_shared_entry **entry);
/* Puts the value the caller made (after pbt_shared_begin returned 0):
 * bytes and n tensors, which the entry shares. */
pbt_status pbt_shared_put(pbt_shared *s, const char *name, const void *bytes,
                          size_t len, const pbt_tensor *const *tensors,
                          int64_t n, const pbt_shared_entry **entry,
                          pbt_error *err);
/* Gives up making name (the next thread that asks makes it). */
void pbt_shared_abandon(pbt_shared *s, const char *name);
const void *pbt_shared_bytes(const pbt_shared_entry *e, size_t *len);
int64_t pbt_shared_ntensors(const pbt_shared_entry *e);
/* dst (released or initialised) becomes a view sharing tensor k's storage. */
void pbt_shared_tensor(const pbt_shared_entry *e, int64_t k, pbt_tensor *dst);

#ifdef __cplusplus
}
#endif
#endif
