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

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t next_random(Server *s) {  /* xorshift64* */
    uint64_t x = s->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    s->rng = x;
    return x * 2685821657736338717ULL;
}

static record_t **find(Server *s, uint64_t hash, const uint8_t *key, uint32_t len) {
    size_t i = hash & (TABLE_SIZE - 1);
    for (;;) {
        record_t *r = s->table[i];
        if (r == NULL || (r->hash == hash && r->key_len == len && memcmp(r->bytes, key, len) == 0))
            return &s->table[i];
        i = (i + 1) & (TABLE_SIZE - 1);
    }
}

/* Free every record: O(records), through the places they were put (a cache of one entry
 * starts afresh on every miss, so this must not scan the whole table). */
static void drop_records(Server *s) {
    for (size_t i = 0; i < s->records; i++) {
        free(s->table[s->placed[i]]);
        s->table[s->placed[i]] = NULL;
    }
    s->records = 0;
}

/* The variant for a uniform draw: bisect_right(cumulative, u * total), as answer.py does. */
static uint32_t choose(Server *s, const record_t *r) {
    if (r->n_tails == 1)
        return 0;
    double x = (double)(next_random(s) >> 11) * 0x1.0p-53 * r->total;
    for (uint32_t i = 0; i < r->n_tails; i++)
        if ((double)r->cumulative[i] > x)
            return i;
    return r->n_tails - 1;
}

static void count_hit(Server *s, uint32_t slot) {
    slot_t *sl = &s->slots[slot];
    sl->pending++;
    if (!sl->touched) {
        sl->touched = 1;
        if (s->n_touched == s->cap_touched) {
            uint32_t cap = s->cap_touched ? 2 * s->cap_touched : 1024;
            uint32_t *grown = realloc(s->touched, cap * sizeof *grown);
            if (grown == NULL) { sl->touched = 0; return; }  /* counted at close() */
            s->touched = grown;
            s->cap_touched = cap;
        }
        s->touched[s->n_touched++] = slot;
    }
}

static void queue_miss(Server *s, const uint8_t *data, uint32_t len,
                       const struct sockaddr_storage *name, socklen_t name_len) {
    uint8_t *copy = s->n_misses < MAX_MISSES ? malloc(len ? len : 1) : NULL;
    if (copy == NULL) {
        s->dropped_misses++;
        return;
    }
    memcpy(copy, data, len);
    miss_t *m = &s->misses[(s->first_miss + s->n_misses++) % MAX_MISSES];
    m->data = copy;
    m->len = len;
    m->name_len = name_len;
    memcpy(&m->name, name, name_len);
}

/* The live record answering this datagram, or NULL (a miss); the caller has the lock. */
static record_t *live_record(Server *s, const uint8_t *data, uint32_t len) {
    if (len <= 12)
        return NULL;
    record_t *r = *find(s, fnv1a(data + 2, len - 2), data + 2, len - 2);
    if (r == NULL || !s->slots[r->slot].open || s->slots[r->slot].gen != r->slot_gen)
        return NULL;
    return r;
}

/* Write the reply into out (SEND_SLOT bytes); its size, or 0 when it does not fit. */
static size_t build_reply(Server *s, const record_t *r, const uint8_t *data, uint8_t *out) {
    uint32_t v = choose(s, r);
    size_t size = 2 + (size_t)r->head_len + r->tail_len[v];
    if (size > SEND_SLOT)
        return 0;
    memcpy(out, data, 2);
    memcpy(out + 2, r->bytes + r->key_len, r->head_len);
    memcpy(out + 2 + r->head_len, r->bytes + r->tail_at[v], r->tail_len[v]);
    count_hit(s, r->slot);
    s->hits++;
    return size;
}

/* Answer or queue the n datagrams received; return how many replies the send arrays hold. */
static int answer(Server *s, int n, int *woke) {
    int k = 0;
    uint32_t misses_before;
    pthread_mutex_lock(&s->lock);
    misses_before = s->n_misses;
    s->receive_calls++;
    s->datagrams += (uint64_t)n;
    for (int i = 0; i < n; i++) {
        const uint8_t *data = s->received + (size_t)i * RECEIVE_SLOT;
        uint32_t len = s->rmsgs[i].msg_len;
        socklen_t name_len = s->rmsgs[i].msg_hdr.msg_namelen;
        record_t *r = live_record(s, data, len);
        size_t size = r ? build_reply(s, r, data, s->replies + (size_t)k * SEND_SLOT) : 0;
        if (size == 0) {
            queue_miss(s, data, len, &s->names[i], name_len);
            continue;
        }
        s->siov[k].iov_len = size;
        s->smsgs[k].msg_hdr.msg_name = &s->names[i];
        s->smsgs[k].msg_hdr.msg_namelen = name_len;
        k++;
    }
    *woke = misses_before == 0 && s->n_misses > 0;
    pthread_mutex_unlock(&s->lock);
    return k;
}

static void *serve(void *arg) {
    Server *s = arg;
    while (!atomic_load(&s->stopping)) {
        for (int i = 0; i < s->batch; i++)
            s->rmsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        /* Blocks for the first datagram (SO_RCVTIMEO bounds the wait), then takes what waits. */
        int n = recvmmsg(s->fd, s->rmsgs, (unsigned)s->batch, MSG_WAITFORONE, NULL);
        if (atomic_load(&s->stopping))
            break;
        if (n <= 0) {
            if (n < 0 && errno == EBADF)
                break;
            continue;
        }
        int woke = 0;
        int k = answer(s, n, &woke);
        for (int first = 0; first < k;) {
            int sent = sendmmsg(s->fd, s->smsgs + first, (unsigned)(k - first), MSG_DONTWAIT);
            if (sent > 0)
                first += sent;
            else if (errno == EINTR)
                continue;
            else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                break;  /* the send buffer is full: UDP replies are dropped */
            else
                first++;  /* that peer is refused: skip its reply, send the rest */
        }
        if (woke) {
            uint64_t one = 1;
            ssize_t ignored = write(s->miss_fd, &one, sizeof one);
            (void)ignored;
        }
    }
    return NULL;
}

static void free_buffers(Server *s) {
    if (s->table != NULL && s->placed != NULL)
        drop_records(s);
    free(s->table);
    free(s->placed);
    for (uint32_t i = 0; s->misses != NULL && i < s->n_misses; i++)
        free(s->misses[(s->first_miss + i) % MAX_MISSES].data);
    free(s->misses); free(s->taking); free(s->slots); free(s->free_slots); free(s->touched);
    free(s->received); free(s->replies); free(s->rmsgs); free(s->smsgs);
    free(s->riov); free(s->siov); free(s->names);
    s->table = NULL; s->placed = NULL; s->misses = NULL; s->taking = NULL; s->slots = NULL; s->free_slots = NULL;
    s->touched = NULL; s->received = NULL; s->replies = NULL; s->rmsgs = NULL;
    s->smsgs = NULL; s->riov = NULL; s->siov = NULL; s->names = NULL;
}

static int Server_init(Server *s, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"fd", "batch", NULL};
    int fd, batch = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|i", keywords, &fd, &batch))
        return -1;
    if (s->table != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        return -1;
    }
    if (batch < 1 || batch > 1024) {
        PyErr_SetString(PyExc_ValueError, "batch must be between 1 and 1024");
        return -1;
    }
    s->fd = fd;  /* -1: never started, answer() only */
    s->batch = batch;
    s->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)s;
    s->table = calloc(TABLE_SIZE, sizeof *s->table);
    s->placed = malloc(MAX_RECORDS * sizeof *s->placed);
    s->misses = calloc(MAX_MISSES, sizeof *s->misses);
    s->taking = calloc(MAX_MISSES, sizeof *s->taking);
    s->received = malloc((size_t)batch * RECEIVE_SLOT);
    s->replies = malloc((size_t)batch * SEND_SLOT);
    s->rmsgs = calloc((size_t)batch, sizeof *s->rmsgs);
    s->smsgs = calloc((size_t)batch, sizeof *s->smsgs);
    s->riov = calloc((size_t)batch, sizeof *s->riov);
    s->siov = calloc((size_t)batch, sizeof *s->siov);
    s->names = calloc((size_t)batch, sizeof *s->names);
    if (!s->table || !s->placed || !s->misses || !s->taking || !s->received || !s->replies || !s->rmsgs || !s->smsgs
            || !s->riov || !s->siov || !s->names) {
        free_buffers(s);
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < batch; i++) {
        s->riov[i].iov_base = s->received + (size_t)i * RECEIVE_SLOT;
        s->riov[i].iov_len = RECEIVE_SLOT;
        s->rmsgs[i].msg_hdr.msg_name = &s->names[i];
        s->rmsgs[i].msg_hdr.msg_iov = &s->riov[i];
        s->rmsgs[i].msg_hdr.msg_iovlen = 1;
        s->siov[i].iov_base = s->replies + (size_t)i * SEND_SLOT;
        s->smsgs[i].msg_hdr.msg_iov = &s->siov[i];
        s->smsgs[i].msg_hdr.msg_iovlen = 1;
    }
    s->miss_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->miss_fd < 0) {
        free_buffers(s);
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_init(&s->lock, NULL);
    return 0;
}

static void stop_thread(Server *s) {
    if (!s->running)
        return;
    atomic_store(&s->stopping, 1);
    /* Wake the thread: an empty datagram to the socket's own address (else it sees the flag
     * when its SO_RCVTIMEO runs out). */
    struct sockaddr_storage self;
    socklen_t self_len = sizeof self;
    if (getsockname(s->fd, (struct sockaddr *)&self, &self_len) == 0)
        (void)sendto(s->fd, "", 0, MSG_DONTWAIT, (struct sockaddr *)&self, self_len);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(s->thread, NULL);
    Py_END_ALLOW_THREADS
    s->running = 0;
}

static void Server_dealloc(Server *s) {
    stop_thread(s);
    if (s->table != NULL) {
        free_buffers(s);
        close(s->miss_fd);
        pthread_mutex_destroy(&s->lock);
    }
    Py_TYPE(s)->tp_free((PyObject *)s);
}

#define READY(s) do { if ((s)->table == NULL) { \
    PyErr_SetString(PyExc_RuntimeError, "not initialised"); return NULL; } } while (0)

static PyObject *Server_start(Server *s, PyObject *unused) {
    READY(s);
    if (s->running || s->fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, s->running ? "already started" : "no socket");
        return NULL;
    }
    atomic_store(&s->stopping, 0);
    int error = pthread_create(&s->thread, NULL, serve, s);
    if (error != 0) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    s->running = 1;
    Py_RETURN_NONE;
}

static PyObject *Server_stop(Server *s, PyObject *unused) {
    stop_thread(s);
    Py_RETURN_NONE;
}

static PyObject *Server_open(Server *s, PyObject *unused) {
    READY(s);
    uint32_t id;
    pthread_mutex_lock(&s->lock);
    if (s->n_free > 0) {
        id = s->free_slots[--s->n_free];
    } else {
        if (s->n_slots == s->cap_slots) {
            uint32_t cap = s->cap_slots ? 2 * s->cap_slots : 1024;
            slot_t *grown = realloc(s->slots, cap * sizeof *grown);
            uint32_t *grown_free = grown ? realloc(s->free_slots, cap * sizeof *grown_free) : NULL;
            if (grown != NULL)
                s->slots = grown;
            if (grown_free == NULL) {
                pthread_mutex_unlock(&s->lock);
                return PyErr_NoMemory();
            }
            s->free_slots = grown_free;
            s->cap_slots = cap;
        }
        id = s->n_slots++;
        s->slots[id].gen = 0;
    }
    s->slots[id].open = 1;
    s->slots[id].pending = 0;
    s->slots[id].touched = 0;
    pthread_mutex_unlock(&s->lock);
    return PyLong_FromUnsignedLong(id);
}

static PyObject *Server_close(Server *s, PyObject *arg) {
    READY(s);
    unsigned long id = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred())
        return NULL;
    pthread_mutex_lock(&s->lock);
    if (id >= s->n_slots || !s->slots[id].open) {
        pthread_mutex_unlock(&s->lock);
        PyErr_Format(PyExc_KeyError, "slot %lu is not open", id);
        return NULL;
    }
    slot_t *sl = &s->slots[id];
    uint64_t left = sl->pending;
    sl->open = 0; sl->pending = 0; sl->touched = 0; sl->gen++;
    s->free_slots[s->n_free++] = (uint32_t)id;
    pthread_mutex_unlock(&s->lock);
    return PyLong_FromUnsignedLongLong(left);
}

/* Take (slot, answers) of every slot answered since the last call; the caller has the lock. */
static PyObject *take_counts(Server *s, int close_all) {
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (uint32_t i = 0; i < s->n_touched; i++) {
        slot_t *sl = &s->slots[s->touched[i]];
        if (!sl->touched)
            continue;
        sl->touched = 0;
        if (sl->pending == 0)
            continue;
        PyObject *pair = Py_BuildValue("(IK)", s->touched[i], (unsigned long long)sl->pending);
        sl->pending = 0;
        if (pair == NULL || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(pair);
    }
    s->n_touched = 0;
    if (close_all) {
        for (uint32_t i = 0; i < s->n_slots; i++)
            s->slots[i].open = 0;
        s->n_slots = 0;
        s->n_free = 0;
        drop_records(s);
    }
    return out;
}

static PyObject *Server_counts(Server *s, PyObject *unused) {
    READY(s);
    pthread_mutex_lock(&s->lock);
    PyObject *out = take_counts(s, 0);
    pthread_mutex_unlock(&s->lock);
    return out;
}

static PyObject *Server_reset(Server *s, PyObject *unused) {
    READY(s);
    pthread_mutex_lock(&s->lock);
    PyObject *out = take_counts(s, 1);
    pthread_mutex_unlock(&s->lock);
    return out;
}

static PyObject *Server_put(Server *s, PyObject *args) {
    Py_buffer key, head;
    unsigned int slot;
    PyObject *tails, *cumulative;
    READY(s);
    if (!PyArg_ParseTuple(args, "y*Iy*O!O", &key, &slot, &head, &PyTuple_Type, &tails,
                          &cumulative))
        return NULL;
    PyObject *result = NULL;
    record_t *r = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(tails);
    if (n < 1 || (cumulative != Py_None && (!PyTuple_Check(cumulative)
                                            || PyTuple_GET_SIZE(cumulative) != n))) {
        PyErr_SetString(PyExc_ValueError, "tails: one or more; cumulative: None or one per tail");
        goto done;
    }
    size_t size = (size_t)key.len + (size_t)head.len;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *tail = PyTuple_GET_ITEM(tails, i);
        if (!PyBytes_Check(tail)) {
            PyErr_SetString(PyExc_TypeError, "tails must be bytes");
            goto done;
        }
        size += (size_t)PyBytes_GET_SIZE(tail);
    }
    r = malloc(sizeof *r + (size_t)n * (sizeof(uint64_t) + 2 * sizeof(uint32_t)) + size);
    if (r == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    r->cumulative = (uint64_t *)(r + 1);
    r->tail_at = (uint32_t *)(r->cumulative + n);
    r->tail_len = r->tail_at + n;
    r->bytes = (uint8_t *)(r->tail_len + n);
    r->slot = slot;
    r->key_len = (uint32_t)key.len;
    r->head_len = (uint32_t)head.len;
    r->n_tails = (uint32_t)n;
    memcpy(r->bytes, key.buf, (size_t)key.len);
    memcpy(r->bytes + key.len, head.buf, (size_t)head.len);
    size_t at = (size_t)key.len + (size_t)head.len;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *tail = PyTuple_GET_ITEM(tails, i);
        r->tail_at[i] = (uint32_t)at;
        r->tail_len[i] = (uint32_t)PyBytes_GET_SIZE(tail);
        memcpy(r->bytes + at, PyBytes_AS_STRING(tail), r->tail_len[i]);
        at += r->tail_len[i];
        if (cumulative == Py_None) {
            r->cumulative[i] = (uint64_t)i + 1;
        } else {
            r->cumulative[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(cumulative, i));
            if (PyErr_Occurred())
                goto done;
        }
    }
    r->total = (double)r->cumulative[n - 1];
    r->hash = fnv1a(r->bytes, r->key_len);
    pthread_mutex_lock(&s->lock);
    if (slot >= s->n_slots || !s->slots[slot].open) {
        pthread_mutex_unlock(&s->lock);
        PyErr_Format(PyExc_KeyError, "slot %u is not open", slot);
        goto done;
    }
    r->slot_gen = s->slots[slot].gen;
    record_t **place = find(s, r->hash, r->bytes, r->key_len);
    if (*place == NULL && s->records >= MAX_RECORDS) {
        drop_records(s);
        place = find(s, r->hash, r->bytes, r->key_len);
    }
    if (*place == NULL)
        s->placed[s->records++] = (uint32_t)(place - s->table);
    free(*place);
    *place = r;
    r = NULL;
    pthread_mutex_unlock(&s->lock);
    result = Py_None;
    Py_INCREF(result);
done:
    free(r);
    PyBuffer_Release(&key);
    PyBuffer_Release(&head);
    return result;
}

/* The thread's answer to one datagram, without sockets (for tests): the reply, or None. */
static PyObject *Server_answer(Server *s, PyObject *arg) {
    Py_buffer query;
    uint8_t out[SEND_SLOT];
    READY(s);
    if (!PyArg_Parse(arg, "y*", &query))
        return NULL;
    size_t size = 0;
    pthread_mutex_lock(&s->lock);
    if (query.len <= UINT32_MAX) {
        record_t *r = live_record(s, query.buf, (uint32_t)query.len);
        size = r ? build_reply(s, r, query.buf, out) : 0;
    }
    pthread_mutex_unlock(&s->lock);
    PyBuffer_Release(&query);
    if (size == 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)size);
}

static PyObject *Server_forget(Server *s, PyObject *unused) {
    READY(s);
    pthread_mutex_lock(&s->lock);
    drop_records(s);
    pthread_mutex_unlock(&s->lock);
    Py_RETURN_NONE;
}

static PyObject *Server_misses(Server *s, PyObject *args) {
    unsigned int most = MAX_MISSES;
    READY(s);
    if (!PyArg_ParseTuple(args, "|I", &most))
        return NULL;
    miss_t *taken = s->taking;  /* the GIL is held: one caller at a time */
    pthread_mutex_lock(&s->lock);
    uint32_t n = s->n_misses < most ? s->n_misses : most;
    uint32_t before_wrap = MAX_MISSES - s->first_miss < n ? MAX_MISSES - s->first_miss : n;
    memcpy(taken, s->misses + s->first_miss, before_wrap * sizeof *taken);
    memcpy(taken + before_wrap, s->misses, (n - before_wrap) * sizeof *taken);
    s->first_miss = (s->first_miss + n) % MAX_MISSES;
    s->n_misses -= n;
    pthread_mutex_unlock(&s->lock);
    PyObject *out = PyList_New(n);
    for (uint32_t i = 0; i < n; i++) {
        if (out != NULL) {
            PyObject *pair = Py_BuildValue("(y#y#)", taken[i].data, (Py_ssize_t)taken[i].len,
                                           (const char *)&taken[i].name,
                                           (Py_ssize_t)taken[i].name_len);
            if (pair == NULL)
                Py_CLEAR(out);
            else
                PyList_SET_ITEM(out, i, pair);
        }
        free(taken[i].data);
    }
    return out;
}

static PyObject *Server_send(Server *s, PyObject *args) {
    Py_buffer reply, name;
    READY(s);
    if (!PyArg_ParseTuple(args, "y*y*", &reply, &name))
        return NULL;
    ssize_t sent = -1;
    if ((size_t)name.len <= sizeof(struct sockaddr_storage))
        sent = sendto(s->fd, reply.buf, (size_t)reply.len, MSG_DONTWAIT,
                      (const struct sockaddr *)name.buf, (socklen_t)name.len);
    PyBuffer_Release(&reply);
    PyBuffer_Release(&name);
    return PyBool_FromLong(sent >= 0);
}

static PyObject *Server_stats(Server *s, PyObject *unused) {
    READY(s);
    pthread_mutex_lock(&s->lock);
    PyObject *out = Py_BuildValue("{sKsKsKsKsn}", "receive_calls",
                                  (unsigned long long)s->receive_calls, "datagrams",
                                  (unsigned long long)s->datagrams, "hits",
                                  (unsigned long long)s->hits, "dropped_misses",
                                  (unsigned long long)s->dropped_misses, "records",
                                  (Py_ssize_t)s->records);
    pthread_mutex_unlock(&s->lock);
    return out;
}

static PyObject *Server_miss_fd(Server *s, void *closure) {
    READY(s);
    return PyLong_FromLong(s->miss_fd);
}

static PyMethodDef Server_methods[] = {
    {"start", (PyCFunction)Server_start, METH_NOARGS, "Start answering on a thread."},
    {"stop", (PyCFunction)Server_stop, METH_NOARGS,
     "Stop the thread (within the socket's SO_RCVTIMEO) and wait for it."},
    {"open", (PyCFunction)Server_open, METH_NOARGS, "A new slot for a cached reply."},
    {"close", (PyCFunction)Server_close, METH_O,
     "Close a slot: its records answer no more; returns its answers not yet counted."},
    {"put", (PyCFunction)Server_put, METH_VARARGS,
     "put(query_tail, slot, head, tails, cumulative): answer these query bytes (after the id)"
     " with the id, head and one of the tails (weighted by cumulative, or the only one)."},
    {"counts", (PyCFunction)Server_counts, METH_NOARGS,
     "[(slot, answers)] for every slot answered since the last call."},
    {"reset", (PyCFunction)Server_reset, METH_NOARGS,
     "Close every slot and drop every record; returns the answers not yet counted."},
    {"answer", (PyCFunction)Server_answer, METH_O,
     "answer(datagram) -> the reply the thread would send (and count), or None for a miss."},
    {"forget", (PyCFunction)Server_forget, METH_NOARGS,
     "Drop every record (the slots stay open): their queries are misses until put again."},
    {"misses", (PyCFunction)Server_misses, METH_VARARGS,
     "misses(most=16384): [(datagram, peer sockaddr)] queued for Python, oldest first."},
    {"send", (PyCFunction)Server_send, METH_VARARGS,
     "send(reply, peer sockaddr) -> bool: whether the kernel took it."},
    {"stats", (PyCFunction)Server_stats, METH_NOARGS, "Totals since the start."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Server_getset[] = {
    {"miss_fd", (getter)Server_miss_fd, NULL, "An eventfd, readable when misses are queued.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dns_server._fastpath.Server",
    .tp_doc = "Answers prepared UDP replies on a thread of its own (see the module's source).",
    .tp_basicsize = sizeof(Server),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Server_init,
    .tp_dealloc = (destructor)Server_dealloc,
    .tp_methods = Server_methods,
    .tp_getset = Server_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath", "The DNS server's UDP fast path, in C.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&ServerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ServerType);
    if (PyModule_AddObject(m, "Server", (PyObject *)&ServerType) < 0) {
        Py_DECREF(&ServerType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_RECORDS", MAX_RECORDS);
    PyModule_AddIntConstant(m, "MAX_MISSES", MAX_MISSES);
    PyModule_AddIntConstant(m, "SEND_SLOT", SEND_SLOT);
    return m;
}
