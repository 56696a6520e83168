/*
 * The agent's common case in C: consume the RESULTs a column awaits, in order, and answer each with the next
 * CONTRIB where this worker contributes to the column's next round (host/engine.py, TensorExchange._consume and
 * _contribute). Python's per-packet path stays the reference: orx_consume takes the rows of a batch one after the
 * other and stops at the first that is not the plain case (a REPAIR, a forwarded REQUEST, a duplicate, an early
 * result, a result for a retransmitted round, anything malformed or wrong), which Python then handles with
 * on_payload before calling again for the rest. Everything a row changes is changed before the next row is
 * looked at, so a column's second result in one batch is consumed here too, exactly as one by one.
 *
 * The header offsets (ORX_*), LANES, SET_MASK, END_OF_TENSOR and MSG_RESULT are #defines that host/native.py
 * writes in front of this file from omnireduce.p4src.constants (generated from the P4 headers).
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct orx_exchange {
    /* constants of the exchange */
    uint64_t constant;          /* header bytes 0..7 & ORX_CONSTANT_BITS of a RESULT of this job and tensor */
    int64_t slots;              /* S: block b belongs to slot b mod S */
    int64_t count;              /* blocks of the tensor */
    int64_t columns;            /* min(S, count) */
    int64_t expected_exponent;  /* -1: any */
    double initial, ceiling, first, fallback;  /* Timeouts: retransmit_initial, _max, _first, request_fallback */
    /* the round-trip estimator (engine.RoundTripEstimator), in and out; NaN stands for None */
    double srtt, rttvar, peak, peak_at, backed_off;  /* peak_at: when the peak was last decayed */
    /* TensorExchange.send_seq (the next CONTRIB's place in sending order), answered_seq and answered_at, in and
       out */
    int64_t send_seq, answered_seq;
    double answered_at;
    /* what the last call did */
    int64_t consumed;     /* rows consumed (all from the first row given) */
    int64_t sent;         /* CONTRIB rows written to out_rows */
    int64_t first_round;  /* consumed results of blocks < S (the first round) */
    int64_t closed;       /* columns closed (next = END_OF_TENSOR) */
    int64_t exponent;     /* exponent field of the last row consumed */
} orx_exchange;

typedef struct orx_columns {
    /* engine.ColumnState, indexed by slot */
    int64_t *expected, *own_next, *timeouts;
    uint8_t *contributed, *gap_requested, *has_early;
    double *sent_at, *first_sent_at, *retransmitted_at;
    int64_t *sent_seq;          /* our CONTRIB's place in sending order (ColumnState.sent_seq) */
    double *rto, *deadline;
    uint8_t *contrib;           /* columns x ORX_PAYLOAD: each column's last CONTRIB */
    uint8_t *set_index;         /* SlotChannels.set_index */
    /* the tensor, indexed by block */
    const uint8_t *lanes;       /* rows of ORX_LANE_BYTES, big-endian int32 (host/lanes.py, BlockLanes) */
    const int32_t *lane_row;    /* block b's row in lanes; NULL: row b (tensor-sized) */
    const uint32_t *next_block; /* the plan's next block in the column */
    uint8_t *result;            /* count x ORX_LANE_BYTES */
    int64_t *result_next;
    uint8_t *result_set;
} orx_columns;

static inline uint64_t be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline double max2(double a, double b) { return a >= b ? a : b; }  /* Python's max(a, b) for non-NaN */
static inline double min2(double a, double b) { return b < a ? b : a; }   /* Python's min(a, b) */

/* engine.decayed_peak: the peak halved every ORX_PEAK_HALF_LIFE smoothed round trips since peak_at. pow is what
   Python's float ** calls, so the doubles are the same. */
static double decayed_peak(const orx_exchange *x, double now) {
    if (isnan(x->peak_at) || isnan(x->srtt) || !(x->srtt > 0) || !(now > x->peak_at)) return x->peak;
    return x->peak * pow(0.5, (now - x->peak_at) / (ORX_PEAK_HALF_LIFE * x->srtt));
}

/* RoundTripEstimator.sample: the same operations in the same order, so the doubles are the same. */
static void sample(orx_exchange *x, double seconds, double now) {
    x->peak = max2(seconds, decayed_peak(x, now));
    x->peak_at = now;
    if (isnan(x->srtt)) {
        x->srtt = seconds;
        x->rttvar = seconds / 2;
    } else {
        x->rttvar = 0.75 * x->rttvar + 0.25 * fabs(x->srtt - seconds);
        x->srtt = 0.875 * x->srtt + 0.125 * seconds;
    }
    x->backed_off = NAN;
}

/* RoundTripEstimator.timeout */
static double timeout(const orx_exchange *x) {
    if (!isnan(x->backed_off)) return x->backed_off;
    if (isnan(x->srtt)) return min2(max2(x->first, x->initial), x->ceiling);
    double margin = max2(4 * x->rttvar, x->srtt);
    double smoothed = max2(x->srtt + margin, ORX_PEAK_MARGIN * x->peak);
    return min2(max2(x->initial, smoothed), x->ceiling);
}

/* engine.request_patience for one value */
static double patience(const orx_exchange *x, double rto) {
    return max2(min2(ORX_REQUEST_PATIENCE * rto, x->ceiling), x->fallback);
}

/* The fields of a RESULT that the plain case reads. */
typedef struct orx_result {
    int64_t slot, block, next;
} orx_result;

/* Whether row p (size bytes) is a RESULT that on_payload would consume with no side path; its fields into r. */
static int plain(const orx_exchange *x, const orx_columns *c, const uint8_t *p, int64_t size, orx_result *r) {
    if (size != ORX_PAYLOAD) return 0;
    if ((be64(p) & ORX_CONSTANT_BITS) != x->constant || p[ORX_LANE_COUNT] != ORX_LANES) return 0;
    int64_t slot = r->slot = be16(p + ORX_SLOT), block = r->block = be32(p + ORX_BLOCK);
    int64_t next = r->next = be32(p + ORX_NEXT);
    if (slot >= x->columns || block >= x->count || block % x->slots != slot) return 0;
    int64_t expected = c->expected[slot];
    if (expected == ORX_END || block != expected || c->has_early[slot]) return 0;
    if ((p[ORX_FLAGS] & ORX_SET_MASK) != c->set_index[slot]) return 0;
    /* A round completed by a late CONTRIB is not sampled, and our CONTRIB after a recovered result goes out late:
       Python decides both (TensorExchange._consume). */
    if ((p[ORX_FLAGS] & ORX_FLAG_LATE) || c->timeouts[slot] || c->gap_requested[slot]) return 0;
    if (next != ORX_END && (next <= block || next % x->slots != slot || next >= x->count)) return 0;
    if (next > c->own_next[slot]) return 0;
    if (x->expected_exponent >= 0 && p[ORX_EXPONENT] != x->expected_exponent) return 0;
    /* A result for a retransmitted round may show the timeout spurious: Python decides (answers_original). */
    if (c->contributed[slot] && isnan(c->sent_at[slot]) && !isnan(c->retransmitted_at[slot])) return 0;
    return 1;
}

/* TensorExchange._contribute of `block` on column `slot`, the payload copied to out_rows. */
static void contribute(orx_exchange *x, orx_columns *c, int64_t slot, int64_t block, double now, uint8_t *out) {
    int64_t following = c->next_block[block];
    uint8_t *row = c->contrib + slot * ORX_PAYLOAD;
    row[ORX_FLAGS] = c->set_index[slot];
    put_be32(row + ORX_BLOCK, (uint32_t)block);
    put_be32(row + ORX_NEXT, (uint32_t)following);
    int64_t lanes_row = c->lane_row ? c->lane_row[block] : block;
    memcpy(row + ORX_HEADER, c->lanes + lanes_row * ORX_LANE_BYTES, ORX_LANE_BYTES);
    c->own_next[slot] = following;
    c->contributed[slot] = 1;
    c->sent_at[slot] = now;
    c->first_sent_at[slot] = now;
    c->retransmitted_at[slot] = NAN;
    c->sent_seq[slot] = x->send_seq++;
    c->timeouts[slot] = 0;
    c->gap_requested[slot] = 0;
    memcpy(out + x->sent * ORX_PAYLOAD, row, ORX_PAYLOAD);
    x->sent++;
    double rto = timeout(x);
    c->rto[slot] = rto;
    c->deadline[slot] = now + rto;
}

/*
 * Consume rows [0, n) of `payloads` (rows of ORX_PAYLOAD bytes, row i sizes[i] long) until the first that is
 * not plain; returns how many were consumed (also in x->consumed). The CONTRIBs they trigger are written to
 * out_rows (room for n rows), in order, for the caller to send before anything else.
 */
int64_t orx_consume(orx_exchange *x, orx_columns *c, const uint8_t *payloads, const int64_t *sizes, int64_t n,
                    double now, uint8_t *out_rows) {
    x->consumed = x->sent = x->first_round = x->closed = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = payloads + i * ORX_PAYLOAD;
        orx_result r;
        if (!plain(x, c, p, sizes[i], &r)) break;
        int64_t slot = r.slot, block = r.block, next = r.next;
        uint8_t set_bit = p[ORX_FLAGS] & ORX_SET_MASK;
        if (c->contributed[slot] && !isnan(c->sent_at[slot])) sample(x, now - c->sent_at[slot], now);
        if (c->contributed[slot] && c->sent_seq[slot] > x->answered_seq) {
            x->answered_seq = c->sent_seq[slot];
            x->answered_at = now;
        }
        memcpy(c->result + block * ORX_LANE_BYTES, p + ORX_HEADER, ORX_LANE_BYTES);
        c->result_next[block] = next;
        c->result_set[block] = set_bit;
        x->exponent = p[ORX_EXPONENT];
        if (block < x->slots) x->first_round++;
        c->set_index[slot] = (uint8_t)((set_bit + 1) & ORX_SET_MASK);
        c->expected[slot] = next;
        c->timeouts[slot] = 0;
        c->gap_requested[slot] = 0;
        if (next == ORX_END) {
            c->deadline[slot] = INFINITY;
            x->closed++;
        } else if (next == c->own_next[slot]) {
            contribute(x, c, slot, next, now, out_rows);
        } else {
            c->contributed[slot] = 0;
            c->sent_at[slot] = NAN;
            double wait = patience(x, timeout(x));
            c->rto[slot] = wait;
            c->deadline[slot] = now + wait;
        }
        x->consumed++;
    }
    return x->consumed;
}

/*
 * One pass over a float32 tensor for everything the agent needs to know before it quantizes it (host/quantize.py,
 * scan_float32): per block of ORX_LANES values whether any bit is set (candidates: -0.0 counts, as in
 * quantize_blocks), and the largest magnitude's bits (IEEE-754 orders the magnitudes of floats as their bits
 * without the sign: >= 0x7f800000 means an Inf or NaN somewhere). `words`: the values' bits, n of them; the last
 * block may be partial. Returns the largest magnitude's bits.
 *
 * The pass reads the whole tensor every call, at any density, so it is a fixed cost of each all-reduce: on x86-64
 * GCC also builds an AVX2 clone, chosen when the library loads on a CPU that has AVX2 (baseline x86-64 has no
 * unsigned 32-bit max, which the generic build emulates). On the device machine's Xeon a 100 MB tensor took 10.4 ms
 * with the clone against 15.5 ms, on this project's 2-core EPYC 7-8 against 8.5-10 ms.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
uint32_t orx_scan_f32(const uint32_t *words, int64_t n, uint8_t *candidates) {
    uint32_t largest = 0;
    int64_t full = n / ORX_LANES;
    for (int64_t b = 0; b < full; b++) {
        const uint32_t *w = words + b * ORX_LANES;
        uint32_t any = 0, top = 0;
        for (int i = 0; i < ORX_LANES; i++) {
            uint32_t magnitude = w[i] & 0x7fffffffu;
            any |= w[i];
            top = magnitude > top ? magnitude : top;
        }
        candidates[b] = any != 0;
        largest = top > largest ? top : largest;
    }
    if (full * ORX_LANES < n) {
        uint32_t any = 0;
        for (int64_t i = full * ORX_LANES; i < n; i++) {
            uint32_t magnitude = words[i] & 0x7fffffffu;
            any |= words[i];
            largest = magnitude > largest ? magnitude : largest;
        }
        candidates[full] = any != 0;
    }
    return largest;
}

/*
 * quantize() of the chosen blocks only (host/quantize.py, quantize_blocks): round(x * scale) as big-endian int32,
 * round half to even (rintf in the default rounding mode, as numpy's rint), for each block b in `blocks` (sorted,
 * of the n values; a partial last block is padded with zeros), written to row b of `rows` if by_block, else to
 * row k for blocks[k] (BlockLanes.compact); significant[b]: whether any lane is non-zero. scale is 2^shift, a
 * normal float32, so x * scale is exact as in numpy's float32 multiply.
 */
void orx_quantize_f32(const float *values, int64_t n, const int64_t *blocks, int64_t nblocks, float scale,
                      uint8_t *rows, int by_block, uint8_t *significant) {
    for (int64_t k = 0; k < nblocks; k++) {
        int64_t b = blocks[k], start = b * ORX_LANES;
        int64_t stop = start + ORX_LANES < n ? start + ORX_LANES : n;
        uint8_t *out = rows + (by_block ? b : k) * ORX_LANE_BYTES;
        uint32_t any = 0;
        for (int64_t i = start; i < start + ORX_LANES; i++) {
            int32_t v = i < stop ? (int32_t)rintf(values[i] * scale) : 0;
            any |= (uint32_t)v;
            put_be32(out + 4 * (i - start), (uint32_t)v);
        }
        significant[b] = any != 0;
    }
}

/*
 * The sums, received big-endian into `buffer` (count blocks), become its values in one pass from start to end
 * (host/quantize.py, from_wire_in_place): each block in `blocks` (sorted) is converted in place, as float32
 * sum * 2^-shift rounded once from the exact double (numpy's ldexp of the float64, cast to float32) where
 * is_float, else as native int32; every other block is written zero, whatever it held. One sequential pass
 * costs what zeroing the buffer beforehand would alone, and reads each received block while it is in cache.
 */
void orx_from_wire(uint8_t *buffer, int64_t count, const int64_t *blocks, int64_t nblocks, int is_float, int shift) {
    /* sum * 2^-shift is exact in a double (31 significant bits, |shift| far from the exponent range's ends), so
       one multiplication by the power of two gives ldexp's value without a libm call per lane. */
    const double scale = ldexp(1.0, -shift);
    int64_t next = 0;  /* first block not written yet */
    for (int64_t k = 0; k < nblocks; k++) {
        int64_t b = blocks[k];
        if (b < next || b >= count) continue;  /* not sorted or out of range: never written twice or outside */
        memset(buffer + next * ORX_LANE_BYTES, 0, (size_t)(b - next) * ORX_LANE_BYTES);
        uint8_t *p = buffer + b * ORX_LANE_BYTES;
        for (int i = 0; i < ORX_LANES; i++) {
            int32_t sum = (int32_t)be32(p + 4 * i);
            if (is_float) {
                float value = (float)((double)sum * scale);
                memcpy(p + 4 * i, &value, 4);
            } else {
                memcpy(p + 4 * i, &sum, 4);
            }
        }
        next = b + 1;
    }
    memset(buffer + next * ORX_LANE_BYTES, 0, (size_t)(count - next) * ORX_LANE_BYTES);
}

/*
 * blocks.next_in_column: next[b] = the smallest b' > b in b's column (b' = b mod slots) with send[b'], or
 * ORX_END. One pass backwards, row by row (no division per block); `following` is scratch for `slots` values.
 */
void orx_next_in_column(const uint8_t *send, int64_t count, int64_t slots, uint32_t *next, uint32_t *following) {
    for (int64_t s = 0; s < slots; s++) following[s] = (uint32_t)ORX_END;
    int64_t rows = (count + slots - 1) / slots;
    for (int64_t row = rows - 1; row >= 0; row--) {
        int64_t start = row * slots, stop = start + slots < count ? start + slots : count;
        for (int64_t b = start; b < stop; b++) {
            int64_t s = b - start;
            next[b] = following[s];
            if (send[b]) following[s] = (uint32_t)b;
        }
    }
}

/*
 * Which frames of a received batch are exactly what the switch sends this worker (host/transport.py,
 * FrameTransport.receive_batch): usual[i] = 1 where frame i (row i of `frames`, `stride` bytes apart) is
 * data_size bytes long and starts with data_prefix, or control_size bytes long and starts with control_prefix
 * (prefix_len bytes each: Ethernet, IPv4 and UDP headers); returns how many are. The others are parsed one by one.
 */
int64_t orx_usual_frames(const uint8_t *frames, int64_t stride, const int64_t *sizes, int64_t n,
                         const uint8_t *data_prefix, int64_t data_size, const uint8_t *control_prefix,
                         int64_t control_size, int64_t prefix_len, uint8_t *usual) {
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *frame = frames + i * stride;
        int ok = (sizes[i] == data_size && memcmp(frame, data_prefix, (size_t)prefix_len) == 0)
                 || (sizes[i] == control_size && memcmp(frame, control_prefix, (size_t)prefix_len) == 0);
        usual[i] = (uint8_t)ok;
        count += ok;
    }
    return count;
}
