/* The DNS server's UDP fast path: prepared replies answered on a thread of their own.
 *
 * A thread without the GIL reads the UDP socket with recvmmsg(2). A query whose bytes after
 * the id were answered before (a "record": the reply prepared for exactly those bytes, with
 * its weighted variants) is answered here: the query's id, the prepared head, one variant,
 * sent back with sendmmsg(2). Any other datagram (a new question, garbage, a reply too large
 * for a send slot) is a miss: it is queued, an eventfd wakes the event loop, and the Python
 * engine answers it there (dns_server/fastpath.py), preparing the record for the next time.
 *
 * A record answers through a "slot", one per cached reply of the Python cache. Closing the
 * slot (the zone changed under that reply) makes every record on it a miss at once: the
 * check and the count are made under one mutex, so no reply is given from a closed slot and
 * no answer goes uncounted. Answers are counted per slot; Python folds the counts into its
 * metrics and the answer sampler's tallies (counts(), and close() returns what was left).
 *
 * No Python object is touched by the thread; every method runs with the GIL and takes the
 * mutex, which the thread holds for one batch at most.
 */
#ifndef DNSRACE_FASTPATH_H
#define DNSRACE_FASTPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECEIVE_SLOT 65536   /* any UDP datagram fits */
#define SEND_SLOT 4096       /* a larger reply is a miss: Python sends it */
#define MAX_RECORDS 131072   /* a bound never reached: Python forgets its 100,000 first */
#define TABLE_SIZE 262144    /* open addressing, a power of two, load <= 0.39 */
#define MAX_MISSES 16384     /* queued misses; past it a miss is dropped and counted */

typedef struct {
    uint64_t hash;
    uint32_t slot, slot_gen, key_len, head_len, n_tails;
    double total;            /* the last cumulative weight */
    uint64_t *cumulative;    /* n_tails sums of the weights */
    uint32_t *tail_at, *tail_len;
    uint8_t *bytes;          /* key, head, tails */
} record_t;

typedef struct {
    uint64_t pending;        /* answers since the last counts() */
    uint32_t gen;            /* bumped on close: records of an older gen are stale */
    uint8_t open, touched;
} slot_t;

typedef struct {
    uint8_t *data;
    uint32_t len;
    socklen_t name_len;
    struct sockaddr_storage name;
} miss_t;

typedef struct {
    PyObject_HEAD
    int fd, miss_fd, batch;
    pthread_t thread;
    int running;
    atomic_int stopping;
    pthread_mutex_t lock;
    record_t **table;
    size_t records;
    uint32_t *placed;        /* the table index of each record, in the order put */
    slot_t *slots;
    uint32_t n_slots, cap_slots, *free_slots, n_free;
    uint32_t *touched, n_touched, cap_touched;
    miss_t *misses, *taking; /* a ring of queued misses; where misses() moves them out */
    uint32_t first_miss, n_misses;
    uint64_t receive_calls, datagrams, hits, dropped_misses;
    uint64_t rng;
    uint8_t *received, *replies;
    struct mmsghdr *rmsgs, *smsgs;
    struct iovec *riov, *siov;
    struct sockaddr_storage *names;
} Server;

#define READY(s) do { if ((s)->table == NULL) { \
    PyErr_SetString(PyExc_RuntimeError, "not initialised"); return NULL; } } while (0)

/* table.c: the records, the slots' counts and the queue of misses (the caller has the lock) */
uint64_t fp_hash(const uint8_t *p, size_t n);
record_t **fp_find(Server *s, uint64_t hash, const uint8_t *key, uint32_t len);
void fp_drop_records(Server *s);
void fp_queue_miss(Server *s, const uint8_t *data, uint32_t len,
                   const struct sockaddr_storage *name, socklen_t name_len);
record_t *fp_live_record(Server *s, const uint8_t *data, uint32_t len);
size_t fp_build_reply(Server *s, const record_t *r, const uint8_t *data, uint8_t *out);

/* serve.c: the thread */
void *fp_serve(void *arg);
void fp_stop_thread(Server *s);

/* methods.c: the Python methods of Server */
extern PyMethodDef fp_methods[];
extern PyGetSetDef fp_getset[];

#endif
