/* The records (prepared replies by query bytes), the slots' counts and the queue of misses.
 * Every function here is called with the server's lock held. */
#include "fastpath.h"

uint64_t fp_hash(const uint8_t *p, size_t n) {
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

record_t **fp_find(Server *s, uint64_t hash, const uint8_t *key, uint32_t len) {
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
void fp_drop_records(Server *s) {
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

void fp_queue_miss(Server *s, const uint8_t *data, uint32_t len,
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
record_t *fp_live_record(Server *s, const uint8_t *data, uint32_t len) {
    if (len <= 12)
        return NULL;
    record_t *r = *fp_find(s, fp_hash(data + 2, len - 2), data + 2, len - 2);
    if (r == NULL || !s->slots[r->slot].open || s->slots[r->slot].gen != r->slot_gen)
        return NULL;
    return r;
}

/* Write the reply into out (SEND_SLOT bytes); its size, or 0 when it does not fit. */
size_t fp_build_reply(Server *s, const record_t *r, const uint8_t *data, uint8_t *out) {
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
