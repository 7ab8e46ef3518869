/* The thread: receive a batch, answer what is prepared, send, queue the rest for Python. */
#include "fastpath.h"

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
        record_t *r = fp_live_record(s, data, len);
        size_t size = r ? fp_build_reply(s, r, data, s->replies + (size_t)k * SEND_SLOT) : 0;
        if (size == 0) {
            fp_queue_miss(s, data, len, &s->names[i], name_len);
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

void *fp_serve(void *arg) {
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

void fp_stop_thread(Server *s) {
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
