/* The module dns_server._fastpath: the Server type, its buffers, made and freed. */
#include "fastpath.h"

static void free_buffers(Server *s) {
    if (s->table != NULL && s->placed != NULL)
        fp_drop_records(s);
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

static void Server_dealloc(Server *s) {
    fp_stop_thread(s);
    if (s->table != NULL) {
        free_buffers(s);
        close(s->miss_fd);
        pthread_mutex_destroy(&s->lock);
    }
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyTypeObject ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dns_server._fastpath.Server",
    .tp_doc = "Answers prepared UDP replies on a thread of its own (see the module's source).",
    .tp_basicsize = sizeof(Server),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Server_init,
    .tp_dealloc = (destructor)Server_dealloc,
    .tp_methods = fp_methods,
    .tp_getset = fp_getset,
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
