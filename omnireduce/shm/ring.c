/* Shared-memory frame rings: single-producer single-consumer rings of variable-length Ethernet frames in one
 * file that two processes map (omnireduce/shm/ring.py has the Python side; docs/softswitch.md the port kind).
 *
 * File layout (native byte order; both ends run on the same machine):
 *
 *   0                 struct orr_file   magic, version, geometry (written once, by the creator, magic last)
 *   ORR_CTL_OFFSET    struct orr_ctl[rings]   positions, the consumer's sleeping flag, counters
 *   header_bytes      ring 0's data, ring_bytes long; ring 1's data follows, and so on
 *
 * A ring's positions (head: bytes ever written, tail: bytes ever consumed) only grow; a position's offset in the
 * data is pos & (ring_bytes - 1) (a power of two >= 64). A record is a uint32 frame length and the frame, padded
 * to 8 bytes; a record that reaches the end of the data continues at its start (copied in two pieces: no
 * wrap marker, no wasted tail). The producer writes records, then publishes head with a release store; the
 * consumer reads head with an acquire load, copies records out, then publishes tail with a release store.
 *
 * NOTE: nothing read from the file is trusted. Each end keeps its own copy of the geometry it checked when it
 * attached, and every offset is masked into the data; a head or tail that is not within one ring of the other,
 * or a record length larger than max_frame or than what head announces, is a corrupt ring: the consumer drops
 * everything pending (tail = head) and counts it in `corrupt`, the producer treats the ring as full (counted in
 * `dropped_full`) until the consumer has resynchronised. No input makes either end crash or loop.
 *
 * Doorbell (waking a sleeping consumer without a system call per frame): each ring has a FIFO that the consumer
 * polls. Dekker's handshake, with a sequentially consistent fence on each side:
 *     producer: store head; fence; if sleeping: exchange it to 0, and if it was 1 write one byte to the FIFO
 *     consumer: store sleeping = 1; fence; if head != tail: clear sleeping, do not sleep; else poll the FIFO
 * At least one side sees the other's store, so a frame published while the consumer decides to sleep either
 * keeps it awake or rings the bell: no wake-up is lost. A byte left in the FIFO only causes one spurious wake-up.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define ORR_MAGIC 0x31474e4952524e4fULL /* "ONRRING1" little-endian */
#define ORR_VERSION 1u
#define ORR_CTL_OFFSET 256u
#define ORR_CTL_BYTES 256u
#define ORR_MAX_RINGS 8u
#define ORR_HEADER_BYTES 4096u
#define ORR_LEN_BYTES 4u
#define ORR_ALIGN 8u
#define ORR_MIN_RING 64u

/* Errors of orr_format / orr_attach (ring.py maps each to a sentence). */
#define ORR_E_SHORT -1     /* the file is shorter than its header or than its geometry says */
#define ORR_E_MAGIC -2     /* not a frame ring file (or not initialised yet) */
#define ORR_E_VERSION -3   /* another layout version */
#define ORR_E_GEOMETRY -4  /* ring_bytes not a power of two >= 64, max_frame too large for it, bad ring count */
#define ORR_E_INDEX -5     /* no such ring in the file */

struct orr_file {
    _Atomic uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint64_t ring_bytes;
    uint32_t max_frame;
    uint32_t rings;
    uint64_t file_bytes;
};

/* One cache line written by the producer, one by the consumer (no false sharing between the two). */
struct orr_ctl {
    _Atomic uint64_t head;
    _Atomic uint64_t pushed;         /* frames published */
    _Atomic uint64_t dropped_full;   /* frames refused: not enough room (or a corrupt tail) */
    _Atomic uint64_t dropped_long;   /* frames refused: longer than max_frame */
    _Atomic uint64_t bells;          /* doorbell bytes written */
    uint8_t pad0[64 - 5 * 8];
    _Atomic uint64_t tail;
    _Atomic uint32_t sleeping;       /* the consumer is about to poll, or polls, its FIFO */
    uint32_t pad1;
    _Atomic uint64_t popped;         /* frames consumed */
    _Atomic uint64_t corrupt;        /* resynchronisations after a corrupt position or record */
    uint8_t pad2[64 - 4 * 8];
};

_Static_assert(sizeof(struct orr_ctl) <= ORR_CTL_BYTES, "ctl block too large");
_Static_assert(ORR_CTL_OFFSET + ORR_MAX_RINGS * ORR_CTL_BYTES <= ORR_HEADER_BYTES, "header too small");

/* One end of one ring, private to the process (the geometry as checked at attach time). */
typedef struct orr_ring {
    struct orr_ctl *ctl;
    uint8_t *data;
    uint64_t size;
    uint64_t mask;
    uint32_t max_frame;
    int bell_fd;
} orr_ring;

static inline uint64_t orr_record_bytes(uint64_t len) {
    return (ORR_LEN_BYTES + len + ORR_ALIGN - 1) & ~(uint64_t)(ORR_ALIGN - 1);
}

static inline void orr_count(_Atomic uint64_t *counter, uint64_t n) {
    /* Single writer: a relaxed load and store, no locked instruction. */
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}

uint64_t orr_file_bytes(uint64_t ring_bytes, uint32_t rings) {
    return ORR_HEADER_BYTES + ring_bytes * rings;
}

static int orr_geometry_ok(uint64_t ring_bytes, uint32_t max_frame, uint32_t rings) {
    if (ring_bytes < ORR_MIN_RING || (ring_bytes & (ring_bytes - 1)) != 0 || ring_bytes > ((uint64_t)1 << 40))
        return 0;
    if (orr_record_bytes(max_frame) > ring_bytes)
        return 0;
    return rings >= 1 && rings <= ORR_MAX_RINGS;
}

int orr_format(uint8_t *base, uint64_t file_bytes, uint64_t ring_bytes, uint32_t max_frame, uint32_t rings) {
    if (!orr_geometry_ok(ring_bytes, max_frame, rings))
        return ORR_E_GEOMETRY;
    if (file_bytes < orr_file_bytes(ring_bytes, rings))
        return ORR_E_SHORT;
    struct orr_file *file = (struct orr_file *)base;
    memset(base, 0, ORR_HEADER_BYTES);
    file->version = ORR_VERSION;
    file->header_bytes = ORR_HEADER_BYTES;
    file->ring_bytes = ring_bytes;
    file->max_frame = max_frame;
    file->rings = rings;
    file->file_bytes = orr_file_bytes(ring_bytes, rings);
    atomic_store_explicit(&file->magic, ORR_MAGIC, memory_order_release);
    return 0;
}

int orr_attach(orr_ring *ring, uint8_t *base, uint64_t file_bytes, uint32_t index, int bell_fd) {
    if (file_bytes < ORR_HEADER_BYTES)
        return ORR_E_SHORT;
    struct orr_file *file = (struct orr_file *)base;
    if (atomic_load_explicit(&file->magic, memory_order_acquire) != ORR_MAGIC)
        return ORR_E_MAGIC;
    if (file->version != ORR_VERSION || file->header_bytes != ORR_HEADER_BYTES)
        return ORR_E_VERSION;
    uint64_t ring_bytes = file->ring_bytes;
    uint32_t max_frame = file->max_frame, rings = file->rings;
    if (!orr_geometry_ok(ring_bytes, max_frame, rings))
        return ORR_E_GEOMETRY;
    if (file_bytes < orr_file_bytes(ring_bytes, rings))
        return ORR_E_SHORT;
    if (index >= rings)
        return ORR_E_INDEX;
    ring->ctl = (struct orr_ctl *)(base + ORR_CTL_OFFSET + (uint64_t)index * ORR_CTL_BYTES);
    ring->data = base + ORR_HEADER_BYTES + (uint64_t)index * ring_bytes;
    ring->size = ring_bytes;
    ring->mask = ring_bytes - 1;
    ring->max_frame = max_frame;
    ring->bell_fd = bell_fd;
    return 0;
}

/* --- producer ----------------------------------------------------------------------------------------------- */

static inline void orr_copy_in(orr_ring *ring, uint64_t pos, const uint8_t *src, uint64_t len) {
    uint64_t offset = pos & ring->mask;
    uint64_t first = ring->size - offset;
    if (len <= first) {
        memcpy(ring->data + offset, src, len);
    } else {
        memcpy(ring->data + offset, src, first);
        memcpy(ring->data, src + first, len - first);
    }
}

/* Append one frame at *head (not yet published); 1 if written, 0 if refused (counted). */
static inline int orr_append(orr_ring *ring, uint64_t *head, uint64_t tail, const uint8_t *frame, uint32_t len) {
    if (len > ring->max_frame) {
        orr_count(&ring->ctl->dropped_long, 1);
        return 0;
    }
    uint64_t record = orr_record_bytes(len);
    uint64_t used = *head - tail;
    if (used > ring->size || record > ring->size - used) {
        orr_count(&ring->ctl->dropped_full, 1);
        return 0;
    }
    uint32_t word = len;
    orr_copy_in(ring, *head, (const uint8_t *)&word, ORR_LEN_BYTES);
    orr_copy_in(ring, *head + ORR_LEN_BYTES, frame, len);
    *head += record;
    return 1;
}

/* Publish head and wake the consumer if it sleeps: the producer's half of the handshake. */
static void orr_publish(orr_ring *ring, uint64_t head, uint64_t frames) {
    struct orr_ctl *ctl = ring->ctl;
    atomic_store_explicit(&ctl->head, head, memory_order_release);
    orr_count(&ctl->pushed, frames);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&ctl->sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&ctl->sleeping, 0, memory_order_relaxed)) {
        if (ring->bell_fd >= 0) {
            uint8_t byte = 1;
            ssize_t written;
            do {
                written = write(ring->bell_fd, &byte, 1);
            } while (written < 0 && errno == EINTR);
            /* EAGAIN: the FIFO is full of earlier bells; the consumer wakes anyway. */
        }
        orr_count(&ctl->bells, 1);
    }
}

/* Frames back to back in `data`, lengths in `lens`: append them in order until one does not fit (that one and
 * the rest are dropped and counted: a full link loses frames, it does not reorder them). Frames longer than
 * max_frame are dropped and counted. Returns the number published. */
int orr_push(orr_ring *ring, const uint8_t *data, const uint32_t *lens, int n) {
    struct orr_ctl *ctl = ring->ctl;
    uint64_t head = atomic_load_explicit(&ctl->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_acquire);
    int pushed = 0, i = 0;
    for (; i < n; i++) {
        uint32_t len = lens[i];
        if (!orr_append(ring, &head, tail, data, len)) {
            if (len <= ring->max_frame)
                break; /* full: the rest is dropped below */
        } else {
            pushed++;
        }
        data += len;
    }
    if (i < n)
        orr_count(&ctl->dropped_full, (uint64_t)(n - i - 1));
    if (pushed)
        orr_publish(ring, head, (uint64_t)pushed);
    return pushed;
}

/* The same for frames in rows `stride` bytes apart: row i holds lens[i] bytes (len for every row if lens is
 * NULL). */
int orr_push_rows(orr_ring *ring, const uint8_t *rows, uint64_t stride, const uint32_t *lens, uint32_t len, int n) {
    struct orr_ctl *ctl = ring->ctl;
    uint64_t head = atomic_load_explicit(&ctl->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_acquire);
    int pushed = 0, i = 0;
    for (; i < n; i++) {
        uint32_t this_len = lens ? lens[i] : len;
        if (this_len > stride) { /* a row cannot hold more than its stride: refuse it as too long */
            orr_count(&ctl->dropped_long, 1);
            continue;
        }
        if (!orr_append(ring, &head, tail, rows + (uint64_t)i * stride, this_len)) {
            if (this_len <= ring->max_frame)
                break;
        } else {
            pushed++;
        }
    }
    if (i < n)
        orr_count(&ctl->dropped_full, (uint64_t)(n - i - 1));
    if (pushed)
        orr_publish(ring, head, (uint64_t)pushed);
    return pushed;
}

/* Frames of a switch's output, each to the ring of its port (rings[port], NULL where the port has no ring):
 * appended in order per ring, each ring published (and its consumer woken) once at the end. The indexes of the
 * frames whose port has no ring are written to `others` for the caller to send; returns how many there are.
 * counts[0] += frames published, counts[1] += frames dropped (ring full or too long). */
int orr_scatter(orr_ring **rings, int nports, const uint8_t *data, const uint32_t *lens, const uint16_t *ports,
                int n, uint32_t *others, uint64_t *counts) {
    enum { MAX_TOUCHED = 512 };
    int touched[MAX_TOUCHED];
    uint64_t heads[MAX_TOUCHED], tails[MAX_TOUCHED], frames[MAX_TOUCHED];
    int slot_of[MAX_TOUCHED];
    int ntouched = 0, nothers = 0;
    if (nports > MAX_TOUCHED)
        nports = MAX_TOUCHED;
    for (int p = 0; p < nports; p++)
        slot_of[p] = -1;
    uint64_t published = 0, dropped = 0;
    for (int i = 0; i < n; i++) {
        uint32_t len = lens[i];
        int port = ports[i];
        orr_ring *ring = port < nports ? rings[port] : NULL;
        if (ring == NULL) {
            others[nothers++] = (uint32_t)i;
        } else {
            int slot = slot_of[port];
            if (slot < 0) {
                slot = slot_of[port] = ntouched++;
                touched[slot] = port;
                heads[slot] = atomic_load_explicit(&ring->ctl->head, memory_order_relaxed);
                tails[slot] = atomic_load_explicit(&ring->ctl->tail, memory_order_acquire);
                frames[slot] = 0;
            }
            if (orr_append(ring, &heads[slot], tails[slot], data, len))
                frames[slot]++;
            else
                dropped++;
        }
        data += len;
    }
    for (int slot = 0; slot < ntouched; slot++) {
        if (frames[slot]) {
            orr_publish(rings[touched[slot]], heads[slot], frames[slot]);
            published += frames[slot];
        }
    }
    counts[0] += published;
    counts[1] += dropped;
    return nothers;
}

/* --- consumer ----------------------------------------------------------------------------------------------- */

static inline void orr_copy_out(orr_ring *ring, uint64_t pos, uint8_t *dst, uint64_t len) {
    uint64_t offset = pos & ring->mask;
    uint64_t first = ring->size - offset;
    if (len <= first) {
        memcpy(dst, ring->data + offset, len);
    } else {
        memcpy(dst, ring->data + offset, first);
        memcpy(dst + first, ring->data, len - first);
    }
}

/* Drop everything pending after a corrupt position or record: the consumer's repair. */
static void orr_resync(orr_ring *ring, uint64_t head) {
    atomic_store_explicit(&ring->ctl->tail, head, memory_order_release);
    orr_count(&ring->ctl->corrupt, 1);
}

/* The next record's frame length at *tail, or -1 after resynchronising on a corrupt ring. */
static inline int64_t orr_peek(orr_ring *ring, uint64_t head, uint64_t tail) {
    uint64_t used = head - tail;
    if (used > ring->size)
        return -1;
    uint32_t len;
    orr_copy_out(ring, tail, (uint8_t *)&len, ORR_LEN_BYTES);
    if (len > ring->max_frame || orr_record_bytes(len) > used)
        return -1;
    return len;
}

/* Up to `max` frames, back to back into `out` (`out_bytes` long), their lengths into `lens`. Stops before a
 * frame that does not fit the rest of `out`. Returns the number of frames. */
int orr_pop(orr_ring *ring, uint8_t *out, uint64_t out_bytes, uint32_t *lens, int max) {
    struct orr_ctl *ctl = ring->ctl;
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ctl->head, memory_order_acquire);
    uint64_t filled = 0;
    int n = 0;
    while (n < max && tail != head) {
        int64_t len = orr_peek(ring, head, tail);
        if (len < 0) {
            if (n)
                orr_count(&ctl->popped, (uint64_t)n);
            orr_resync(ring, head);
            return n;
        }
        if ((uint64_t)len > out_bytes - filled)
            break;
        orr_copy_out(ring, tail + ORR_LEN_BYTES, out + filled, (uint64_t)len);
        lens[n++] = (uint32_t)len;
        filled += (uint64_t)len;
        tail += orr_record_bytes((uint64_t)len);
    }
    if (n) {
        atomic_store_explicit(&ctl->tail, tail, memory_order_release);
        orr_count(&ctl->popped, (uint64_t)n);
    }
    return n;
}

/* Up to `max` frames into rows `stride` bytes apart: row i gets the first min(len, stride) bytes of frame i,
 * lens[i] its whole length. Returns the number of frames. */
int orr_pop_rows(orr_ring *ring, uint8_t *rows, uint64_t stride, uint32_t *lens, int max) {
    struct orr_ctl *ctl = ring->ctl;
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ctl->head, memory_order_acquire);
    int n = 0;
    while (n < max && tail != head) {
        int64_t len = orr_peek(ring, head, tail);
        if (len < 0) {
            if (n)
                orr_count(&ctl->popped, (uint64_t)n);
            orr_resync(ring, head);
            return n;
        }
        uint64_t copy = (uint64_t)len < stride ? (uint64_t)len : stride;
        orr_copy_out(ring, tail + ORR_LEN_BYTES, rows + (uint64_t)n * stride, copy);
        lens[n++] = (uint32_t)len;
        tail += orr_record_bytes((uint64_t)len);
    }
    if (n) {
        atomic_store_explicit(&ctl->tail, tail, memory_order_release);
        orr_count(&ctl->popped, (uint64_t)n);
    }
    return n;
}

/* From several rings (a switch's input ports): up to `per_ring` frames of each in turn, starting with ring
 * `first`, back to back into `out`, with lengths and the ring's port number per frame, `max` frames at most.
 * Returns the number of frames. */
int orr_gather(orr_ring **rings, const uint16_t *ring_ports, int nrings, int first, int per_ring, uint8_t *out,
               uint64_t out_bytes, uint32_t *lens, uint16_t *ports, int max) {
    int n = 0;
    uint64_t filled = 0;
    for (int k = 0; k < nrings && n < max; k++) {
        int r = (first + k) % nrings;
        int limit = max - n < per_ring ? max - n : per_ring;
        int got = orr_pop(rings[r], out + filled, out_bytes - filled, lens + n, limit);
        for (int i = 0; i < got; i++) {
            filled += lens[n + i];
            ports[n + i] = ring_ports[r];
        }
        n += got;
    }
    return n;
}

/* The consumer's half of the handshake, for all its rings at once: announce sleep, fence, look again. Returns
 * 1 if some ring has frames (the flags are cleared again: do not sleep), 0 if the caller may poll the bells. */
int orr_prepare_sleep(orr_ring **rings, int nrings) {
    for (int r = 0; r < nrings; r++)
        atomic_store_explicit(&rings[r]->ctl->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    int ready = 0;
    for (int r = 0; r < nrings; r++) {
        struct orr_ctl *ctl = rings[r]->ctl;
        if (atomic_load_explicit(&ctl->head, memory_order_acquire) !=
            atomic_load_explicit(&ctl->tail, memory_order_relaxed)) {
            ready = 1;
            break;
        }
    }
    if (ready) {
        for (int r = 0; r < nrings; r++)
            atomic_store_explicit(&rings[r]->ctl->sleeping, 0, memory_order_relaxed);
    }
    return ready;
}

/* After polling: clear the flags and empty the bells (bytes of producers that saw us sleeping). */
void orr_end_sleep(orr_ring **rings, int nrings) {
    uint8_t sink[64];
    for (int r = 0; r < nrings; r++) {
        atomic_store_explicit(&rings[r]->ctl->sleeping, 0, memory_order_relaxed);
        if (rings[r]->bell_fd < 0)
            continue;
        ssize_t got;
        do {
            got = read(rings[r]->bell_fd, sink, sizeof sink);
        } while (got == (ssize_t)sizeof sink || (got < 0 && errno == EINTR));
    }
}

/* Bytes waiting in the ring (head - tail as the file says it; a corrupt ring may say anything). */
uint64_t orr_pending(orr_ring *ring) {
    return atomic_load_explicit(&ring->ctl->head, memory_order_acquire) -
           atomic_load_explicit(&ring->ctl->tail, memory_order_acquire);
}

/* The ring's counters: pushed, dropped_full, dropped_long, bells, popped, corrupt, head, tail, sleeping. */
void orr_counters(orr_ring *ring, uint64_t *out) {
    struct orr_ctl *ctl = ring->ctl;
    out[0] = atomic_load_explicit(&ctl->pushed, memory_order_relaxed);
    out[1] = atomic_load_explicit(&ctl->dropped_full, memory_order_relaxed);
    out[2] = atomic_load_explicit(&ctl->dropped_long, memory_order_relaxed);
    out[3] = atomic_load_explicit(&ctl->bells, memory_order_relaxed);
    out[4] = atomic_load_explicit(&ctl->popped, memory_order_relaxed);
    out[5] = atomic_load_explicit(&ctl->corrupt, memory_order_relaxed);
    out[6] = atomic_load_explicit(&ctl->head, memory_order_relaxed);
    out[7] = atomic_load_explicit(&ctl->tail, memory_order_relaxed);
    out[8] = atomic_load_explicit(&ctl->sleeping, memory_order_relaxed);
}

/* Where things are in a ring file, for tests and tools that inspect one: header bytes, the first ring's control
 * block, the size of a control block, head's and tail's offsets in it, sleeping's offset in it. */
void orr_layout(uint64_t *out) {
    out[0] = ORR_HEADER_BYTES;
    out[1] = ORR_CTL_OFFSET;
    out[2] = ORR_CTL_BYTES;
    out[3] = offsetof(struct orr_ctl, head);
    out[4] = offsetof(struct orr_ctl, tail);
    out[5] = offsetof(struct orr_ctl, sleeping);
}
