/* The simple_switch packet path of engine.py in C (parser -> ingress -> PRE -> egress -> deparser, with
 * clones, resubmit and recirculate), over a batch of frames, plus the functions Python calls (backend.py).
 * Every step mirrors a method of engine.PacketEngine; keep the two in step. */

#define H_EXIT 0
#define H_CLONE 1
#define H_RESUBMIT 2
#define H_RECIRC 3
#define H_PKTLEN 4
#define H_INGLEN 5
#define H_TRUNC 6
#define H_DIGEST 7
#define REQUEST_FLAG 0x8000000000000000ULL
#define DROP_PORT 511
#define MAX_PASSES 32
enum { IT_NORMAL = 0, IT_INGRESS_CLONE = 1, IT_EGRESS_CLONE = 2, IT_RECIRC = 4, IT_REPLICATION = 5, IT_RESUBMIT = 6 };

static u64 *ss_phv_alloc(St *st) {
    if (st->phv_used == st->phv_cap) {
        int cap = st->phv_cap ? st->phv_cap * 2 : 16;
        st->phvs = ss_xrealloc(st->phvs, sizeof(u64 *) * cap);
        for (int i = st->phv_cap; i < cap; i++) st->phvs[i] = ss_xrealloc(0, sizeof(u64) * NSLOTS);
        st->phv_cap = cap;
    }
    return st->phvs[st->phv_used++];
}

static u8 *ss_frame_alloc(St *st, size_t n) {
    if (st->frame_used == st->frame_cap) {
        st->frame_cap = st->frame_cap ? st->frame_cap * 2 : 4;
        st->frames = ss_xrealloc(st->frames, sizeof(u8 *) * st->frame_cap);
    }
    u8 *p = ss_xrealloc(0, n);
    st->frames[st->frame_used++] = p;
    return p;
}

static void ss_push(St *st, SsItem item) {
    if (st->nwork == st->work_cap) {
        st->work_cap = st->work_cap ? st->work_cap * 2 : 16;
        st->work = ss_xrealloc(st->work, sizeof(SsItem) * st->work_cap);
    }
    st->work[st->nwork++] = item;
}

static inline u64 ss_now_us(St *st) {
    return (u64)ss_clock_us(st) & 0xFFFFFFFFFFFFULL;
}

/* A digest record: the learn list id, the number of values, the values (ss_learn, generated, calls this). */
static void ss_digest_push(St *st, u64 id, const u64 *values, u32 n) {
    if (st->dig_n + n + 2 > st->dig_cap) {
        st->dig_cap = (st->dig_n + n + 2) * 2;
        st->dig = ss_xrealloc(st->dig, sizeof(u64) * st->dig_cap);
    }
    st->dig[st->dig_n++] = id;
    st->dig[st->dig_n++] = n;
    memcpy(st->dig + st->dig_n, values, sizeof(u64) * n);
    st->dig_n += n;
}

static void ss_reset_metadata(u64 *F) {
    for (int i = 0; i < N_METADATA; i++) F[SS_METADATA_SLOTS[i]] = SS_INITIAL[SS_METADATA_SLOTS[i]];
}

static void ss_clear_requests(u64 *F) {
    F[H_EXIT] = 0;
    F[H_CLONE] = 0;
    F[H_RESUBMIT] = 0;
    F[H_RECIRC] = 0;
    F[H_TRUNC] = 0;
}

/* engine._parse: returns the payload offset. */
static u32 ss_parse_packet(St *st, u64 *F, const u8 *frame, u32 len) {
    u32 offset = 0;
    u32 error = ss_parse(st, F, frame, len, &offset);
#if STD_PARSER_ERROR >= 0
    F[STD_PARSER_ERROR] = error;
#else
    (void)error;
#endif
#if HAS_CHECKSUMS
    u64 bad = ss_verify_checksums(st, F, frame + offset, len - offset);
#if STD_CHECKSUM_ERROR >= 0
    F[STD_CHECKSUM_ERROR] = bad;
#else
    (void)bad;
#endif
#endif
    return offset;
}

static void ss_send_clone(St *st, u64 *clone, const u8 *payload, u32 plen, u32 session) {
    st->stats[R_CLONED]++;
    for (u32 r = 0; r < st->ses_count[session]; r++) {
        u32 at = st->ses_start[session] + r;
        u64 *copy = ss_phv_alloc(st);
        memcpy(copy, clone, sizeof(u64) * NSLOTS);
#if STD_EGRESS_RID >= 0
        copy[STD_EGRESS_RID] = st->rep_rid[at];
#endif
        ss_clear_requests(copy);
        copy[H_TRUNC] = st->ses_trunc[session];
        ss_push(st, (SsItem){0, st->rep_port[at], 0, 0, payload, plen, copy});
    }
}

static void ss_ingress_clone(St *st, const SsItem *it, const u64 *F, u32 session, u64 field_list) {
    if (!st->ses_exists[session]) {
        st->stats[R_UNKNOWN_CLONE_SESSION]++;
        return;
    }
    u64 *clone = ss_phv_alloc(st);
    memcpy(clone, SS_INITIAL, sizeof(u64) * NSLOTS);
    clone[STD_INGRESS_PORT] = it->port;
    clone[H_PKTLEN] = it->len;
    clone[H_INGLEN] = it->len;
    u32 offset = ss_parse_packet(st, clone, it->data, it->len);
    ss_reset_metadata(clone);
    ss_copy_field_list(clone, F, field_list);
#if STD_INSTANCE_TYPE >= 0
    clone[STD_INSTANCE_TYPE] = IT_INGRESS_CLONE;
#endif
    ss_send_clone(st, clone, it->data + offset, it->len - offset, session);
}

static void ss_ingress(St *st, const SsItem *it) {
    u64 *F = ss_phv_alloc(st);
    memcpy(F, SS_INITIAL, sizeof(u64) * NSLOTS);
    F[STD_INGRESS_PORT] = it->port;
    if (it->phv) ss_copy_field_list(F, it->phv, it->field_list);
#if STD_INSTANCE_TYPE >= 0
    F[STD_INSTANCE_TYPE] = it->instance_type;
#endif
#if STD_PACKET_LENGTH >= 0
    F[STD_PACKET_LENGTH] = it->len;
#endif
#if STD_INGRESS_TS >= 0
    F[STD_INGRESS_TS] = ss_now_us(st);
#endif
    F[H_PKTLEN] = it->len;
    F[H_INGLEN] = it->len;
    u32 offset = ss_parse_packet(st, F, it->data, it->len);
    const u8 *payload = it->data + offset;
    u32 plen = it->len - offset;
    PIPE_ingress(st, F);
    F[H_EXIT] = 0;
    if (F[H_CLONE]) {
        u64 c = F[H_CLONE];
        F[H_CLONE] = 0;
        ss_ingress_clone(st, it, F, (u32)((c >> 32) & 0xFFFF), c & 0xFFFFFFFFULL);
    }
    if (F[H_DIGEST]) ss_learn(st, F, F[H_DIGEST]);
    if (F[H_RESUBMIT]) {
        st->stats[R_RESUBMITTED]++;
        ss_push(st, (SsItem){1, it->port, IT_RESUBMIT, F[H_RESUBMIT] & 0xFFFFFFFFULL, it->data, it->len, F});
        return;
    }
#if STD_MCAST_GRP >= 0
    u64 mgid = F[STD_MCAST_GRP];
#else
    u64 mgid = 0;
#endif
    if (mgid) {
#if STD_INSTANCE_TYPE >= 0
        F[STD_INSTANCE_TYPE] = IT_REPLICATION;
#endif
        if (mgid > 0xFFFF || !st->grp_exists[mgid]) {
            st->stats[R_UNKNOWN_MULTICAST_GROUP]++;
            return;
        }
        if (!st->grp_count[mgid]) {
            st->stats[R_EMPTY_MULTICAST_GROUP]++;
            return;
        }
        for (u32 r = 0; r < st->grp_count[mgid]; r++) {
            u32 at = st->grp_start[mgid] + r;
            u64 *copy = ss_phv_alloc(st);
            memcpy(copy, F, sizeof(u64) * NSLOTS);
#if STD_EGRESS_RID >= 0
            copy[STD_EGRESS_RID] = st->rep_rid[at];
#endif
            ss_clear_requests(copy);
            ss_push(st, (SsItem){0, st->rep_port[at], 0, 0, payload, plen, copy});
        }
        return;
    }
    u64 egress_spec = F[STD_EGRESS_SPEC];
    if (egress_spec == DROP_PORT) {
        st->stats[R_INGRESS_MARK_TO_DROP]++;
        return;
    }
#if STD_INSTANCE_TYPE >= 0
    F[STD_INSTANCE_TYPE] = IT_NORMAL;
#endif
    ss_push(st, (SsItem){0, (u32)egress_spec, 0, 0, payload, plen, F});
}

static void ss_out_reserve(St *st, size_t n) {
    if (st->out_used + n > st->out_cap) {
        size_t cap = st->out_cap ? st->out_cap : 65536;
        while (st->out_used + n > cap) cap *= 2;
        st->out = ss_xrealloc(st->out, cap);
        st->out_cap = cap;
    }
    if (st->out_n == st->out_max) {
        st->out_max = st->out_max ? st->out_max * 2 : 256;
        st->out_lens = ss_xrealloc(st->out_lens, sizeof(u32) * st->out_max);
        st->out_ports = ss_xrealloc(st->out_ports, sizeof(u16) * st->out_max);
    }
}

static void ss_egress(St *st, const SsItem *it) {
    u64 *F = it->phv;
#if STD_EGRESS_PORT >= 0
    F[STD_EGRESS_PORT] = it->port;
#endif
    F[STD_EGRESS_SPEC] = DROP_PORT + 1;
#if STD_PACKET_LENGTH >= 0
    F[STD_PACKET_LENGTH] = F[H_PKTLEN];
#endif
#if STD_EGRESS_TS >= 0
    F[STD_EGRESS_TS] = ss_now_us(st);
#endif
    PIPE_egress(st, F);
    F[H_EXIT] = 0;
    if (F[H_CLONE]) {
        u64 c = F[H_CLONE];
        F[H_CLONE] = 0;
        u32 session = (u32)((c >> 32) & 0xFFFF);
        if (!st->ses_exists[session]) {
            st->stats[R_UNKNOWN_CLONE_SESSION]++;
        } else {
            u64 *copy = ss_phv_alloc(st);
            memcpy(copy, F, sizeof(u64) * NSLOTS);
            ss_reset_metadata(copy);
            ss_copy_field_list(copy, F, c & 0xFFFFFFFFULL);
#if STD_INSTANCE_TYPE >= 0
            copy[STD_INSTANCE_TYPE] = IT_EGRESS_CLONE;
#endif
            ss_send_clone(st, copy, it->data, it->len, session);
        }
    }
    if (F[STD_EGRESS_SPEC] == DROP_PORT) {
        st->stats[R_EGRESS_MARK_TO_DROP]++;
        return;
    }
#if HAS_CHECKSUMS
    ss_update_checksums(st, F, it->data, it->len);
#endif
    if (F[H_RECIRC]) {
        u8 *frame = ss_frame_alloc(st, MAX_HEADER_BYTES + it->len);
        u32 n = ss_deparse(st, F, frame);
        memcpy(frame + n, it->data, it->len);
        st->stats[R_RECIRCULATED]++;
        ss_push(st, (SsItem){1, 0, IT_RECIRC, F[H_RECIRC] & 0xFFFFFFFFULL, frame, n + it->len, F});
        return;
    }
    ss_out_reserve(st, MAX_HEADER_BYTES + it->len);
    u8 *out = st->out + st->out_used;
    u32 n = ss_deparse(st, F, out);
    memcpy(out + n, it->data, it->len);
    u32 len = n + it->len;
    u64 trunc = F[H_TRUNC];
    if (trunc && len > trunc) len = (u32)trunc;
    st->out_used += len;
    st->out_lens[st->out_n] = len;
    st->out_ports[st->out_n] = (u16)it->port;
    st->out_n++;
}

/* One input frame: the work list in FIFO order, as PacketEngine.process. */
static void ss_process_one(St *st, u32 port, const u8 *frame, u32 len) {
    st->stats[R_RX]++;
    int first_out = st->out_n;
    st->nwork = 0;
    st->phv_used = 0;
    ss_push(st, (SsItem){1, port, IT_NORMAL, 0, frame, len, 0});
    volatile int passes = 0;
    for (volatile int i = 0; i < st->nwork; i++) {
        SsItem it = st->work[i];
        if (it.ingress && ++passes > MAX_PASSES) {
            st->stats[R_RECIRCULATION_LIMIT]++;
            continue;
        }
        if (setjmp(st->jb) == 0) {
            if (it.ingress) ss_ingress(st, &it);
            else ss_egress(st, &it);
        } else {
            st->stats[st->reason]++;
        }
    }
    st->stats[R_TX] += (u64)(st->out_n - first_out);
    for (int i = 0; i < st->frame_used; i++) free(st->frames[i]);
    st->frame_used = 0;
}

/* -- the API backend.py calls through cffi --------------------------------------------------------------- */
St *ss_new(void *ud) {
    St *st = calloc(1, sizeof(St));
    if (!st) return 0;
    st->ud = ud;
    st->rng = 0x2545F4914F6CDD1DULL;
    st->frozen_us = -1;
    st->batch_us = -1;
    clock_gettime(CLOCK_MONOTONIC, &st->t0);
    for (int k = 0; k < NMETERS; k++) {
        size_t n = SS_METER_SIZE[k] ? SS_METER_SIZE[k] : 1;
        st->meters[k].configured = calloc(n, 1);
        st->meters[k].rate = calloc(2 * n, sizeof(double));
        st->meters[k].burst = calloc(2 * n, sizeof(u64));
        st->meters[k].tokens = calloc(2 * n, sizeof(u64));
        st->meters[k].last = calloc(2 * n, sizeof(u64));
    }
    for (int k = 0; k < NREGS; k++) st->regs[k] = calloc(SS_REG_SIZE[k] ? SS_REG_SIZE[k] : 1, sizeof(u64));
    for (int k = 0; k < NCTRS; k++) {
        st->cpk[k] = calloc(SS_CTR_SIZE[k] ? SS_CTR_SIZE[k] : 1, sizeof(u64));
        st->cby[k] = calloc(SS_CTR_SIZE[k] ? SS_CTR_SIZE[k] : 1, sizeof(u64));
    }
    for (int t = 0; t < NTABLES; t++) {
        st->tables[t].nkeys = SS_TABLE_NKEYS[t];
        st->tables[t].exact = SS_TABLE_EXACT[t];
    }
    return st;
}

static void ss_table_free(SsTable *t) {
    free(t->entries); free(t->keys); free(t->masks); free(t->highs); free(t->is_range); free(t->slots);
    free(t->counters);
    t->entries = 0; t->keys = t->masks = t->highs = t->counters = 0; t->is_range = 0; t->slots = 0;
    t->n = 0;
}

static void ss_vset_free(SsVset *vs) {
    free(vs->exact); free(vs->values); free(vs->masks); free(vs->has_range); free(vs->lo); free(vs->hi);
    vs->exact = vs->values = vs->masks = 0; vs->has_range = 0; vs->lo = vs->hi = 0;
    vs->n_exact = vs->n_other = 0;
}

void ss_free(St *st) {
    if (!st) return;
    for (int k = 0; k < NVSETS; k++) ss_vset_free(&st->vsets[k]);
    for (int k = 0; k < NPROFILES; k++) {
        SsProfile *p = &st->profiles[k];
        free(p->members); free(p->grp_start); free(p->grp_count); free(p->grp_members);
    }
    for (int k = 0; k < NMETERS; k++) {
        free(st->meters[k].configured); free(st->meters[k].rate); free(st->meters[k].burst);
        free(st->meters[k].tokens); free(st->meters[k].last);
    }
    for (int k = 0; k < NREGS; k++) free(st->regs[k]);
    for (int k = 0; k < NCTRS; k++) { free(st->cpk[k]); free(st->cby[k]); }
    for (int t = 0; t < NTABLES; t++) ss_table_free(&st->tables[t]);
    for (int i = 0; i < st->phv_cap; i++) free(st->phvs[i]);
    free(st->phvs); free(st->frames); free(st->work); free(st->out); free(st->out_lens); free(st->out_ports);
    free(st->rep_port); free(st->rep_rid); free(st->dig);
    free(st);
}

uint64_t *ss_register_cells(St *st, int k) { return st->regs[k]; }
uint64_t *ss_counter_cells(St *st, int k, int bytes) { return bytes ? st->cby[k] : st->cpk[k]; }
uint64_t *ss_table_counters(St *st, int t) { return st->tables[t].counters; }
uint64_t *ss_stats(St *st) { return st->stats; }
void ss_set_clock(St *st, int64_t frozen_us) { st->frozen_us = frozen_us; }
uint32_t ss_digest_words(St *st) { return st->dig_n; }
uint64_t *ss_digest_data(St *st) { return st->dig; }
void ss_digest_clear(St *st) { st->dig_n = 0; }
/* Meter k's arrays, for numpy views: 0 configured (u8), 1 rates (double), 2 bursts, 3 tokens, 4 last (u64). */
void *ss_meter_cells(St *st, int k, int which) {
    SsMeters *m = &st->meters[k];
    switch (which) {
    case 0: return m->configured;
    case 1: return m->rate;
    case 2: return m->burst;
    case 3: return m->tokens;
    default: return m->last;
    }
}
void ss_set_log(St *st, int enabled) { st->log_enabled = enabled; }
int ss_max_params(void) { return MAX_PARAMS; }
uint8_t *ss_out_data(St *st) { return st->out; }
uint32_t *ss_out_lens(St *st) { return st->out_lens; }
uint16_t *ss_out_ports(St *st) { return st->out_ports; }

/* Replace table t's entries (keys/masks/highs/is_range: n * nkeys, in match precedence order). */
int ss_table_load(St *st, int t, int n, const uint64_t *keys, const uint64_t *masks, const uint64_t *highs,
                  const uint8_t *is_range, const uint32_t *actions, const uint64_t *params, const uint32_t *meters) {
    SsTable *tb = &st->tables[t];
    ss_table_free(tb);
    int nk = tb->nkeys;
    size_t cells = (size_t)n * (nk ? nk : 1);
    tb->n = n;
    tb->entries = ss_xrealloc(0, sizeof(SsEntry) * (n ? n : 1));
    tb->keys = ss_xrealloc(0, sizeof(u64) * cells);
    tb->masks = ss_xrealloc(0, sizeof(u64) * cells);
    tb->highs = ss_xrealloc(0, sizeof(u64) * cells);
    tb->is_range = ss_xrealloc(0, cells);
    tb->counters = calloc(2 * (size_t)(n ? n : 1), sizeof(u64));
    memcpy(tb->keys, keys, sizeof(u64) * n * nk);
    memcpy(tb->masks, masks, sizeof(u64) * n * nk);
    memcpy(tb->highs, highs, sizeof(u64) * n * nk);
    memcpy(tb->is_range, is_range, (size_t)n * nk);
    for (int e = 0; e < n; e++) {
        tb->entries[e].action = actions[e];
        tb->entries[e].meter = meters[e];
        tb->entries[e].counter = &tb->counters[2 * e];
        memcpy(tb->entries[e].params, params + (size_t)e * MAX_PARAMS, sizeof(u64) * MAX_PARAMS);
    }
    if (tb->exact) {
        u32 size = 8;
        while (size < 2 * (u32)n + 1) size *= 2;
        tb->slots = ss_xrealloc(0, sizeof(int32_t) * size);
        for (u32 i = 0; i < size; i++) tb->slots[i] = -1;
        tb->slot_mask = size - 1;
        for (int e = 0; e < n; e++) {
            u32 i = (u32)ss_hash_key(tb->keys + (size_t)e * nk, nk) & tb->slot_mask;
            while (tb->slots[i] >= 0) i = (i + 1) & tb->slot_mask;
            tb->slots[i] = e;
        }
    }
    return 0;
}

void ss_table_set_default(St *st, int t, int has, uint32_t action, const uint64_t *params) {
    SsTable *tb = &st->tables[t];
    tb->deflt = has ? &tb->deflt_store : 0;
    tb->deflt_store.action = action;
    tb->deflt_store.counter = 0;
    memcpy(tb->deflt_store.params, params, sizeof(u64) * MAX_PARAMS);
}

/* Replace action profile k: members by slot (action, MAX_PARAMS parameters each), groups by slot (a start and a
 * count into grp_members, which holds member slots in BMv2 handle order). */
int ss_profile_load(St *st, int k, uint32_t nmembers, const uint32_t *actions, const uint64_t *params,
                    uint32_t ngroups, const uint32_t *starts, const uint32_t *counts, uint32_t total,
                    const uint32_t *members) {
    SsProfile *p = &st->profiles[k];
    p->members = ss_xrealloc(p->members, sizeof(SsEntry) * (nmembers ? nmembers : 1));
    for (u32 i = 0; i < nmembers; i++) {
        p->members[i].action = actions[i];
        p->members[i].meter = 0xFFFFFFFFu;
        p->members[i].counter = 0;
        memcpy(p->members[i].params, params + (size_t)i * MAX_PARAMS, sizeof(u64) * MAX_PARAMS);
    }
    p->grp_start = ss_xrealloc(p->grp_start, sizeof(u32) * (ngroups ? ngroups : 1));
    p->grp_count = ss_xrealloc(p->grp_count, sizeof(u32) * (ngroups ? ngroups : 1));
    p->grp_members = ss_xrealloc(p->grp_members, sizeof(u32) * (total ? total : 1));
    memcpy(p->grp_start, starts, sizeof(u32) * ngroups);
    memcpy(p->grp_count, counts, sizeof(u32) * ngroups);
    memcpy(p->grp_members, members, sizeof(u32) * total);
    p->nmembers = nmembers;
    p->ngroups = ngroups;
    return 0;
}

/* Replace value set k: W values travel as (low, high) u64 pairs; exact values sorted ascending. */
int ss_vset_load(St *st, int k, uint32_t nfields, const uint32_t *shifts, const uint32_t *widths,
                 uint32_t n_exact, const uint64_t *exact, uint32_t n_other, const uint64_t *values,
                 const uint64_t *masks, const uint8_t *has_range, const uint64_t *lo, const uint64_t *hi) {
    SsVset *vs = &st->vsets[k];
    if (nfields > 8) return -1;
    ss_vset_free(vs);
    vs->nfields = nfields;
    for (u32 f = 0; f < nfields; f++) { vs->shift[f] = shifts[f]; vs->width[f] = widths[f]; }
    vs->n_exact = n_exact;
    vs->n_other = n_other;
    vs->exact = ss_xrealloc(0, sizeof(W) * (n_exact ? n_exact : 1));
    vs->values = ss_xrealloc(0, sizeof(W) * (n_other ? n_other : 1));
    vs->masks = ss_xrealloc(0, sizeof(W) * (n_other ? n_other : 1));
    vs->has_range = ss_xrealloc(0, n_other ? n_other : 1);
    size_t cells = (size_t)n_other * nfields;
    vs->lo = ss_xrealloc(0, sizeof(u64) * (cells ? cells : 1));
    vs->hi = ss_xrealloc(0, sizeof(u64) * (cells ? cells : 1));
    for (u32 i = 0; i < n_exact; i++) vs->exact[i] = ((W)exact[2 * i + 1] << 64) | exact[2 * i];
    for (u32 i = 0; i < n_other; i++) {
        vs->values[i] = ((W)values[2 * i + 1] << 64) | values[2 * i];
        vs->masks[i] = ((W)masks[2 * i + 1] << 64) | masks[2 * i];
        vs->has_range[i] = has_range[i];
    }
    memcpy(vs->lo, lo, sizeof(u64) * cells);
    memcpy(vs->hi, hi, sizeof(u64) * cells);
    return 0;
}

/* Replace the PRE: groups then sessions, their replicas concatenated in ports/rids in that order. */
int ss_pre_load(St *st, int ngroups, const uint32_t *gids, const uint32_t *gcounts, int nsessions,
                const uint32_t *sids, const uint32_t *scounts, const uint32_t *struncs, const uint16_t *ports,
                const uint16_t *rids) {
    memset(st->grp_exists, 0, sizeof st->grp_exists);
    memset(st->ses_exists, 0, sizeof st->ses_exists);
    size_t total = 0;
    for (int i = 0; i < ngroups; i++) total += gcounts[i];
    for (int i = 0; i < nsessions; i++) total += scounts[i];
    st->rep_port = ss_xrealloc(st->rep_port, sizeof(u16) * (total ? total : 1));
    st->rep_rid = ss_xrealloc(st->rep_rid, sizeof(u16) * (total ? total : 1));
    memcpy(st->rep_port, ports, sizeof(u16) * total);
    memcpy(st->rep_rid, rids, sizeof(u16) * total);
    u32 at = 0;
    for (int i = 0; i < ngroups; i++) {
        u32 g = gids[i] & 0xFFFF;
        st->grp_exists[g] = 1;
        st->grp_start[g] = at;
        st->grp_count[g] = (u16)gcounts[i];
        at += gcounts[i];
    }
    for (int i = 0; i < nsessions; i++) {
        u32 s = sids[i] & 0xFFFF;
        st->ses_exists[s] = 1;
        st->ses_start[s] = at;
        st->ses_count[s] = (u16)scounts[i];
        st->ses_trunc[s] = struncs[i];
        at += scounts[i];
    }
    return 0;
}

/* Run n frames (concatenated in data, lengths in lens, ingress ports in ports); returns the outputs, which
 * ss_out_data/ss_out_lens/ss_out_ports hold until the next call. */
int ss_process(St *st, const uint8_t *data, const uint32_t *lens, const uint16_t *ports, int n) {
    st->out_n = 0;
    st->out_used = 0;
    /* NOTE: one clock reading for the whole batch (its frames were received together): the timestamps and meters
       of its packets all see it. A reading per pipeline pass (ingress and every egress copy: five per result with
       four workers) took about an eighth of the native pipeline's time on the omnireduce trace, for differences
       of microseconds. */
    st->batch_us = -1;
    st->batch_us = ss_clock_us(st);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (ports[i] >= 512) {
            st->stats[R_BAD_INGRESS_PORT]++;
        } else {
            ss_process_one(st, ports[i], data + at, lens[i]);
        }
        at += lens[i];
    }
    st->batch_us = -1;
    return st->out_n;
}
