/* The static part of a native softswitch pipeline: types, the per-device state, bit access, hashes
 * (the algorithms of softswitch/hashes.py, i.e. BMv2's), tables and the helpers generated code calls.
 * cprogram.py puts the program's #defines before this file and the generated functions plus engine.c after
 * it; the result is compiled once per program and cached (build.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <time.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef unsigned __int128 W; /* every expression value, modulo 2**128 (cexpr.py says why that is exact) */
typedef __int128 SW;

/* Why a packet was dropped or counted; the names are the Python engine's stats keys (backend.py lists them). */
enum {
    R_RX, R_TX, R_RESUBMITTED, R_CLONED, R_RECIRCULATED,
    R_RECIRCULATION_LIMIT, R_ASSERT_FAILED, R_INGRESS_MARK_TO_DROP, R_EGRESS_MARK_TO_DROP,
    R_UNKNOWN_MULTICAST_GROUP, R_EMPTY_MULTICAST_GROUP, R_UNKNOWN_CLONE_SESSION,
    R_ZERO_DIVISION_ERROR, R_VALUE_ERROR, R_BAD_INGRESS_PORT, R_STACK_OUT_OF_BOUNDS, R_LOG_MSG_ERROR,
    R_COUNT
};

typedef struct SsEntry {
    u32 action;
    u32 meter; /* the entry's cell of its table's direct meter */
    u64 *counter; /* packets, bytes (direct counters), or 0 */
    u64 params[MAX_PARAMS];
} SsEntry;

typedef struct SsTable {
    int nkeys, exact, n;
    SsEntry *entries;
    u64 *keys, *masks, *highs; /* n * nkeys, in match precedence order for non-exact tables */
    u8 *is_range;
    int32_t *slots; /* exact tables: open addressing over entry indexes, -1 empty */
    u32 slot_mask;
    SsEntry *deflt;
    SsEntry deflt_store;
    u64 *counters; /* 2 * n */
} SsTable;

/* A parser value set (valuesets.py packs its members): exact members sorted for a binary search, the others
 * (masks, ranges) scanned; keys are select keys packed into a W, fields byte-aligned, the first one highest. */
typedef struct SsVset {
    u32 n_exact, n_other, nfields;
    W *exact, *values, *masks;
    u8 *has_range;
    u32 shift[8], width[8];
    u64 *lo, *hi; /* n_other * nfields */
} SsVset;

/* An action profile (profiles.py): members by slot (their action and parameters, in SsEntry form) and, for
 * selectors, groups by slot: each a run of member slots in BMv2 handle order. A table entry of a profile's table
 * holds SS_MEMBER or SS_GROUP as its action and the slot as its first parameter. */
#define SS_MEMBER 0xFFFFFFFEu
#define SS_GROUP 0xFFFFFFFDu
typedef struct SsProfile {
    u32 nmembers, ngroups;
    SsEntry *members;
    u32 *grp_start, *grp_count, *grp_members;
} SsProfile;

/* A meter array (meters.py): per cell a configured flag and two buckets, 2*i the peak one, 2*i+1 the committed one;
 * rates in units per microsecond (doubles, as BMv2 keeps them). */
typedef struct SsMeters {
    u8 *configured;
    double *rate;
    u64 *burst, *tokens, *last;
} SsMeters;

typedef struct SsItem {
    int ingress;
    u32 port, instance_type;
    u64 field_list;
    const u8 *data; /* ingress: the frame; egress: the payload */
    u32 len;
    u64 *phv; /* ingress: preserved PHV or 0; egress: the copy's PHV */
} SsItem;

typedef struct St {
    void *ud;
    int log_enabled;
    u64 *regs[NREGS];
    u64 *cpk[NCTRS], *cby[NCTRS];
    SsTable tables[NTABLES];
    SsVset vsets[NVSETS];
    SsMeters meters[NMETERS];
    SsProfile profiles[NPROFILES];
    /* PRE: multicast groups and clone sessions, indexed by id; replicas in rep_port/rep_rid */
    u32 grp_start[65536], ses_start[65536], ses_trunc[65536];
    u16 grp_count[65536], ses_count[65536];
    u8 grp_exists[65536], ses_exists[65536];
    u16 *rep_port, *rep_rid;
    /* per input frame: PHVs (stable pointers), recirculated frames, the work list */
    u64 **phvs;
    int phv_cap, phv_used;
    u8 **frames;
    int frame_cap, frame_used;
    SsItem *work;
    int work_cap, nwork;
    /* outputs of one ss_process call */
    u8 *out;
    size_t out_cap, out_used;
    u32 *out_lens;
    u16 *out_ports;
    int out_n, out_max;
    u64 *dig; /* digests of the current batch: records of (learn list id, n, n values) */
    u32 dig_n, dig_cap;
    u64 stats[R_COUNT];
    u64 rng;
    struct timespec t0;
    int64_t frozen_us; /* >= 0: the clock stands at this many microseconds (Device.freeze_clock) */
    int64_t batch_us;  /* >= 0 while ss_process runs: the time of its whole batch */
    jmp_buf jb;
    int reason;
    /* the parser's way out of an expression that indexes a stack out of bounds (ss_pix) */
    jmp_buf pjb;
    u32 perr, poffset;
} St;

static void ss_py_log_msg(void *ud, int msg, const uint64_t *vals, int n, uint64_t signed_mask);

static void ss_fail(St *st, int reason) __attribute__((noreturn));
static void ss_fail(St *st, int reason) {
    st->reason = reason;
    longjmp(st->jb, 1);
}

static void *ss_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort(); /* out of memory: nothing sensible is left to do in a packet path */
    return q;
}

/* -- big-endian access ---------------------------------------------------------------------------------- */
static inline u64 ss_ld8(const u8 *p) { return p[0]; }
static inline u64 ss_ld16(const u8 *p) { return ((u64)p[0] << 8) | p[1]; }
static inline u64 ss_ld32(const u8 *p) { return __builtin_bswap32(*(const uint32_t __attribute__((aligned(1))) *)p); }
static inline u64 ss_ld64(const u8 *p) { return __builtin_bswap64(*(const uint64_t __attribute__((aligned(1))) *)p); }
static inline void ss_st8(u8 *p, u64 v) { p[0] = (u8)v; }
static inline void ss_st16(u8 *p, u64 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static inline void ss_st32(u8 *p, u64 v) { uint32_t x = __builtin_bswap32((uint32_t)v); memcpy(p, &x, 4); }
static inline void ss_st64(u8 *p, u64 v) { uint64_t x = __builtin_bswap64(v); memcpy(p, &x, 8); }

static inline u64 ss_get_bits(const u8 *p, u32 bit, u32 width) {
    p += bit >> 3;
    bit &= 7;
    u32 nbytes = (bit + width + 7) >> 3;
    W acc = 0;
    for (u32 i = 0; i < nbytes; i++) acc = (acc << 8) | p[i];
    acc >>= nbytes * 8 - bit - width;
    return width >= 64 ? (u64)acc : (u64)acc & ((1ULL << width) - 1);
}

/* ORs `width` bits of v into p at bit offset `bit` (the region starts zeroed). */
static inline void ss_put_bits(u8 *p, u32 bit, u32 width, u64 v) {
    p += bit >> 3;
    bit &= 7;
    int nbytes = (int)((bit + width + 7) >> 3);
    if (width < 64) v &= (1ULL << width) - 1;
    W acc = (W)v << (nbytes * 8 - bit - width);
    for (int i = nbytes - 1; i >= 0; i--) {
        p[i] |= (u8)acc;
        acc >>= 8;
    }
}

/* -- arithmetic with Python's semantics ------------------------------------------------------------------- */
static inline u64 ss_sext64(u64 x, int w) {
    if (w >= 64) return x;
    int s = 64 - w;
    return (u64)(((int64_t)(x << s)) >> s);
}
static inline W ss_sext128(W x, int w) {
    if (w >= 128) return x;
    int s = 128 - w;
    return (W)(((SW)(x << s)) >> s);
}
static inline W ss_clamp(W a, W lo, W hi) {
    if ((SW)a < (SW)lo) return lo;
    if ((SW)a > (SW)hi) return hi;
    return a;
}
static inline W ss_or1(W x) { return x ? x : 1; }
static inline W ss_shl(St *st, W a, W b, int b_signed) {
    if (b_signed && (SW)b < 0) ss_fail(st, R_VALUE_ERROR); /* Python: negative shift count */
    return b >= 128 ? 0 : a << (unsigned)b;
}
static inline W ss_shr(St *st, W a, W b, int a_signed, int b_signed) {
    if (b_signed && (SW)b < 0) ss_fail(st, R_VALUE_ERROR);
    if (b >= 128) return (a_signed && (SW)a < 0) ? ~(W)0 : 0;
    return a_signed ? (W)((SW)a >> (unsigned)b) : a >> (unsigned)b;
}
/* Python's floor division and modulo (the sign of the result follows the divisor). */
static inline W ss_div(St *st, W a, W b, int is_signed) {
    if (b == 0) ss_fail(st, R_ZERO_DIVISION_ERROR);
    if (!is_signed) return a / b;
    SW x = (SW)a, y = (SW)b, q = x / y;
    if ((x % y != 0) && ((x < 0) != (y < 0))) q -= 1;
    return (W)q;
}
static inline W ss_mod(St *st, W a, W b, int is_signed) {
    if (b == 0) ss_fail(st, R_ZERO_DIVISION_ERROR);
    if (!is_signed) return a % b;
    SW x = (SW)a, y = (SW)b, r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return (W)r;
}
static inline W ss_random_between(St *st, W lo, W hi) {
    st->rng ^= st->rng << 13;
    st->rng ^= st->rng >> 7;
    st->rng ^= st->rng << 17;
    W span = hi - lo + 1;
    return span ? lo + (W)st->rng % span : lo + (W)st->rng;
}

/* -- header stacks ----------------------------------------------------------------------------------------- */
/* A stack index computed in a control: out of bounds drops the packet (BMv2's std::vector::at throws). */
static inline u32 ss_ix(St *st, W index, u32 size) {
    if (index >= size) ss_fail(st, R_STACK_OUT_OF_BOUNDS);
    return (u32)index;
}
/* In the parser: out of bounds is the StackOutOfBounds parser error, at the offset parsed so far. */
static inline u32 ss_pix(St *st, W index, u32 size, u32 offset, u32 error) {
    if (index >= size) {
        st->perr = error;
        st->poffset = offset;
        longjmp(st->pjb, 1);
    }
    return (u32)index;
}
static inline void ss_swap(u64 *a, u64 *b, u32 n) {
    for (u32 i = 0; i < n; i++) {
        u64 t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

/* -- varbit fields: a value of `bits` bits, least significant limb in F[limbs[0]] ------------------------- */
static inline void ss_get_varbit(u64 *F, const u32 *limbs, u32 nlimbs, const u8 *p, u32 bit, u32 bits) {
    for (u32 k = 0; k < nlimbs; k++) {
        u32 lo = 64 * k; /* the limb holds value bits [lo, lo + 64) */
        if (lo >= bits) { F[limbs[k]] = 0; continue; }
        u32 width = bits - lo < 64 ? bits - lo : 64;
        F[limbs[k]] = ss_get_bits(p, bit + (bits - lo - width), width);
    }
}
static inline void ss_put_varbit(u8 *p, u32 bit, const u64 *F, const u32 *limbs, u32 nlimbs, u32 bits) {
    for (u32 k = 0; k < nlimbs; k++) {
        u32 lo = 64 * k;
        if (lo >= bits) break;
        u32 width = bits - lo < 64 ? bits - lo : 64;
        ss_put_bits(p, bit + (bits - lo - width), width, F[limbs[k]]);
    }
}

/* -- hashes: each runs over the packed input `a` followed by the payload `b` ------------------------------ */
static u64 ss_crc16(const u8 *a, u32 na, const u8 *b, u32 nb) {
    /* CRC-16/ARC: reflected poly 0xA001, init 0, no final xor */
    u32 crc = 0;
    for (int s = 0; s < 2; s++) {
        const u8 *p = s ? b : a;
        u32 n = s ? nb : na;
        for (u32 i = 0; i < n; i++) {
            crc ^= p[i];
            for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0xA001 : crc >> 1;
        }
    }
    return crc & 0xFFFF;
}
static u64 ss_crc32(const u8 *a, u32 na, const u8 *b, u32 nb) {
    static u32 table[256];
    static int ready;
    if (!ready) {
        for (u32 i = 0; i < 256; i++) {
            u32 c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    u32 crc = 0xFFFFFFFFu;
    for (int s = 0; s < 2; s++) {
        const u8 *p = s ? b : a;
        u32 n = s ? nb : na;
        for (u32 i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    }
    return crc ^ 0xFFFFFFFFu;
}
static u64 ss_crc_ccitt(const u8 *a, u32 na, const u8 *b, u32 nb) {
    /* binascii.crc_hqx(data, 0xFFFF): poly 0x1021, not reflected, init 0xFFFF */
    u32 crc = 0xFFFF;
    for (int s = 0; s < 2; s++) {
        const u8 *p = s ? b : a;
        u32 n = s ? nb : na;
        for (u32 i = 0; i < n; i++) {
            crc ^= (u32)p[i] << 8;
            for (int k = 0; k < 8; k++) crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xFFFF : (crc << 1) & 0xFFFF;
        }
    }
    return crc;
}
static u64 ss_csum16(const u8 *a, u32 na, const u8 *b, u32 nb) {
    u64 sum = 0;
    u32 pos = 0; /* byte position in the concatenation: even bytes are high halves */
    for (int s = 0; s < 2; s++) {
        const u8 *p = s ? b : a;
        u32 n = s ? nb : na;
        for (u32 i = 0; i < n; i++, pos++) sum += (pos & 1) ? p[i] : (u64)p[i] << 8;
    }
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return ~sum & 0xFFFF;
}
static u64 ss_identity(const u8 *a, u32 na, const u8 *b, u32 nb) {
    u64 v = 0;
    u32 taken = 0;
    for (int s = 0; s < 2 && taken < 8; s++) {
        const u8 *p = s ? b : a;
        u32 n = s ? nb : na;
        for (u32 i = 0; i < n && taken < 8; i++, taken++) v = (v << 8) | p[i];
    }
    return v;
}
static u64 ss_xor_words(const u8 *a, u32 na, const u8 *b, u32 nb, u32 size) {
    u64 out = 0, word = 0;
    u32 pos = 0;
    for (int s = 0; s < 2; s++) {
        const u8 *p = s ? b : a;
        u32 n = s ? nb : na;
        for (u32 i = 0; i < n; i++, pos++) {
            word = (word << 8) | p[i];
            if (pos % size == size - 1) { out ^= word; word = 0; }
        }
    }
    if (pos % size) out ^= word << (8 * (size - pos % size)); /* zero-padded on the right */
    return out;
}
static u64 ss_xor16(const u8 *a, u32 na, const u8 *b, u32 nb) { return ss_xor_words(a, na, b, nb, 2); }
static u64 ss_xor32(const u8 *a, u32 na, const u8 *b, u32 nb) { return ss_xor_words(a, na, b, nb, 4); }

/* -- tables ----------------------------------------------------------------------------------------------- */
static inline u64 ss_hash_key(const u64 *key, int n) {
    u64 h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < n; i++) {
        h ^= key[i];
        h *= 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    return h;
}

static inline const SsEntry *ss_table_lookup(SsTable *t, const u64 *key) {
    int nk = t->nkeys;
    if (t->exact) {
        if (!t->n) return 0;
        u32 i = (u32)ss_hash_key(key, nk) & t->slot_mask;
        for (;;) {
            int32_t e = t->slots[i];
            if (e < 0) return 0;
            const u64 *k = t->keys + (size_t)e * nk;
            int same = 1;
            for (int j = 0; j < nk; j++) same &= k[j] == key[j];
            if (same) return &t->entries[e];
            i = (i + 1) & t->slot_mask;
        }
    }
    for (int e = 0; e < t->n; e++) {
        const u64 *v = t->keys + (size_t)e * nk, *m = t->masks + (size_t)e * nk, *h = t->highs + (size_t)e * nk;
        const u8 *r = t->is_range + (size_t)e * nk;
        int j = 0;
        for (; j < nk; j++) {
            if (r[j] ? (key[j] < v[j] || key[j] > h[j]) : ((key[j] & m[j]) != v[j])) break;
        }
        if (j == nk) return &t->entries[e];
    }
    return 0;
}

/* -- parser value sets ------------------------------------------------------------------------------------ */
static int ss_vset_contains(const SsVset *vs, W k, W case_mask) {
    W km = k & case_mask;
    if (case_mask == ~(W)0) {
        u32 lo = 0, hi = vs->n_exact;
        while (lo < hi) {
            u32 mid = (lo + hi) / 2;
            if (vs->exact[mid] < km) lo = mid + 1;
            else hi = mid;
        }
        if (lo < vs->n_exact && vs->exact[lo] == km) return 1;
    } else {
        for (u32 i = 0; i < vs->n_exact; i++)
            if (((km ^ vs->exact[i]) & case_mask) == 0) return 1;
    }
    for (u32 i = 0; i < vs->n_other; i++) {
        if ((km ^ vs->values[i]) & vs->masks[i] & case_mask) continue;
        if (vs->has_range[i]) {
            u32 f = 0;
            for (; f < vs->nfields; f++) {
                u64 fmask = vs->width[f] >= 64 ? ~0ULL : (1ULL << vs->width[f]) - 1;
                u64 x = (u64)(km >> vs->shift[f]) & fmask;
                if (x < vs->lo[(size_t)i * vs->nfields + f] || x > vs->hi[(size_t)i * vs->nfields + f]) break;
            }
            if (f < vs->nfields) continue;
        }
        return 1;
    }
    return 0;
}

/* -- the clock and meters (meters.py has the same arithmetic) --------------------------------------------- */
static inline int64_t ss_clock_us(St *st) {
    if (st->frozen_us >= 0) return st->frozen_us;
    if (st->batch_us >= 0) return st->batch_us;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t ns = (int64_t)(t.tv_sec - st->t0.tv_sec) * 1000000000LL + (int64_t)t.tv_nsec - (int64_t)st->t0.tv_nsec;
    return ns / 1000;
}

static u64 ss_meter_execute(St *st, SsMeters *m, size_t index, u64 amount) {
    if (!m->configured[index]) return 0;
    int64_t now = ss_clock_us(st);
    for (int r = 0; r < 2; r++) {
        size_t i = 2 * index + (size_t)r;
        u64 since = (u64)((double)now * m->rate[i]);
        u64 fresh = since > m->last[i] ? since - m->last[i] : 0;
        m->last[i] = since;
        u64 have = m->tokens[i] + fresh;
        if (have > m->burst[i] || have < m->tokens[i]) have = m->burst[i];
        if (have < amount) {
            m->tokens[i] = have;
            return r == 0 ? 2 : 1;
        }
        m->tokens[i] = have - amount;
    }
    return 0;
}

/* -- action profiles: the entry a hit runs (0: an empty group, nothing runs) ------------------------------ */
static inline const SsEntry *ss_profile_member(const SsProfile *p, const SsEntry *e) {
    return &p->members[e->params[0]];
}
static inline const SsEntry *ss_group_pick(const SsProfile *p, const SsEntry *e, u64 hash) {
    u32 g = (u32)e->params[0];
    u32 n = p->grp_count[g];
    if (!n) return 0;
    return &p->members[p->grp_members[p->grp_start[g] + (u32)((hash & 0xFFFFFFFFULL) % n)]];
}
