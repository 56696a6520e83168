/* Batched datagram I/O: many UDP datagrams per system call (recvmmsg/sendmmsg), for the softswitch's UDP ports and
 * the agents' frame transport (omnireduce/dgram/__init__.py has the Python side). Each call takes or fills numpy
 * buffers directly; nothing here keeps state between calls. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* recvmmsg, sendmmsg (Python.h defines it already) */
#endif
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define DG_MAX 256 /* datagrams per system call at most (the stack arrays below) */

/* Up to `max` datagrams waiting on `fd` (never blocks), datagram i into out + i * slot_bytes; lens[i] its length
 * (cut to slot_bytes when longer). Returns how many (0: none waiting), or -errno. */
int dg_recv(int fd, uint8_t *out, uint64_t slot_bytes, uint32_t *lens, int max) {
    struct mmsghdr msgs[DG_MAX];
    struct iovec iovs[DG_MAX];
    if (max > DG_MAX)
        max = DG_MAX;
    if (max <= 0)
        return 0;
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)max);
    for (int i = 0; i < max; i++) {
        iovs[i].iov_base = out + (uint64_t)i * slot_bytes;
        iovs[i].iov_len = slot_bytes;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got;
    do {
        got = recvmmsg(fd, msgs, (unsigned)max, MSG_DONTWAIT, NULL);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < got; i++)
        lens[i] = msgs[i].msg_len;
    return got;
}

/* `dest` below: a struct sockaddr_in as Linux lays it out (sockaddr_bytes() in Python builds it), or NULL.
 * Send n datagrams to `dest` (NULL: the socket's connected peer), in order, many per call: datagram i is lens[i]
 * bytes (len each if lens is NULL) at data + i * stride, or back to back when stride is 0. Stops at the first the
 * socket refuses: a full buffer drops the rest, as a network would (sendmmsg sends what it can and reports the
 * error of the next one on the following call, which is not made). Returns how many went, or -errno when the
 * first one failed. */
static int dg_send_iov(int fd, const uint8_t *data, uint64_t stride, const uint32_t *lens, uint32_t len, int n,
                       const struct sockaddr_in *dest) {
    struct mmsghdr msgs[DG_MAX];
    struct iovec iovs[DG_MAX];
    int sent = 0;
    uint64_t offset = 0;
    while (sent < n) {
        int batch = n - sent < DG_MAX ? n - sent : DG_MAX;
        memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)batch);
        uint64_t at = offset;
        for (int i = 0; i < batch; i++) {
            int k = sent + i;
            uint32_t this_len = lens ? lens[k] : len;
            iovs[i].iov_base = (void *)(data + (stride ? (uint64_t)k * stride : at));
            iovs[i].iov_len = this_len;
            at += this_len;
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (dest) {
                msgs[i].msg_hdr.msg_name = (void *)dest;
                msgs[i].msg_hdr.msg_namelen = sizeof *dest;
            }
        }
        int went;
        do {
            went = sendmmsg(fd, msgs, (unsigned)batch, 0);
        } while (went < 0 && errno == EINTR);
        if (went < 0)
            return sent ? sent : -errno;
        sent += went;
        if (went < batch)
            return sent;
        offset = at;
    }
    return sent;
}

int dg_send(int fd, const uint8_t *data, const uint32_t *lens, int n, const uint8_t *dest) {
    return dg_send_iov(fd, data, 0, lens, 0, n, (const struct sockaddr_in *)dest);
}

int dg_send_rows(int fd, const uint8_t *rows, uint64_t stride, uint32_t len, int n, const uint8_t *dest) {
    return dg_send_iov(fd, rows, stride, NULL, len, n, (const struct sockaddr_in *)dest);
}
