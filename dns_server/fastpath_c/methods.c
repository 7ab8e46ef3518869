/* The Python methods of dns_server._fastpath.Server (run with the GIL; each takes the lock). */
#include "fastpath.h"

static PyObject *Server_start(Server *s, PyObject *unused) {
    READY(s);
    if (s->running || s->fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, s->running ? "already started" : "no socket");
        return NULL;
    }
    atomic_store(&s->stopping, 0);
    int error = pthread_create(&s->thread, NULL, fp_serve, s);
    if (error != 0) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    s->running = 1;
    Py_RETURN_NONE;
}

static PyObject *Server_stop(Server *s, PyObject *unused) {
    fp_stop_thread(s);
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
        fp_drop_records(s);
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
    r->hash = fp_hash(r->bytes, r->key_len);
    pthread_mutex_lock(&s->lock);
    if (slot >= s->n_slots || !s->slots[slot].open) {
        pthread_mutex_unlock(&s->lock);
        PyErr_Format(PyExc_KeyError, "slot %u is not open", slot);
        goto done;
    }
    r->slot_gen = s->slots[slot].gen;
    record_t **place = fp_find(s, r->hash, r->bytes, r->key_len);
    if (*place == NULL && s->records >= MAX_RECORDS) {
        fp_drop_records(s);
        place = fp_find(s, r->hash, r->bytes, r->key_len);
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
        record_t *r = fp_live_record(s, query.buf, (uint32_t)query.len);
        size = r ? fp_build_reply(s, r, query.buf, out) : 0;
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
    fp_drop_records(s);
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

PyMethodDef fp_methods[] = {
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

PyGetSetDef fp_getset[] = {
    {"miss_fd", (getter)Server_miss_fd, NULL, "An eventfd, readable when misses are queued.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
