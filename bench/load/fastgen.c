/*
 * fastgen: the load generator's two hot loops, compiled.
 *
 * The Python generator (publisher.py, subscribers.py) costs about as much CPU
 * per delivered event as the server it measures; on a 2-core machine the two
 * compete for the same CPUs and the generator, not the server, ends a rate
 * ladder. This library does the per-event work in C; Python still does
 * everything else (commands, the WebSocket handshake, presence auth, churn,
 * the report), so the wire format and the figures stay the same:
 *
 *   pub_run()   the publisher: signed POST /apps/{id}/events at a fixed offered
 *               rate on `conns` keep-alive connections (one request in flight on
 *               each), open-loop schedule, reconnect when the server closes
 *               (Soketi does after every response); blocking, releases the GIL.
 *   sub_*()     a reader thread for subscribed sockets handed over by Python:
 *               finds the send timestamps in what arrives and records latency
 *               into a 100 us histogram; answers WebSocket pings; sends
 *               pusher:ping every 30 s as pusher-js does.
 *
 * Loaded with ctypes (bench/load/native.py); built by bench/run with
 *   cc -O2 -shared -fPIC -pthread fastgen.c -o libfastgen.so -l:libcrypto.so.3
 * No OpenSSL headers needed: the three functions used are declared below.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* libcrypto (OpenSSL 3), declared here so only the runtime library is needed. */
typedef struct evp_md_st EVP_MD;
extern const EVP_MD *EVP_sha256(void);
extern unsigned char *HMAC(const EVP_MD *md, const void *key, int key_len,
                           const unsigned char *d, size_t n, unsigned char *out,
                           unsigned int *out_len);
extern unsigned char *MD5(const unsigned char *d, size_t n, unsigned char *out);

static int64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* = Python's time.monotonic_ns() */
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void hex(const unsigned char *in, int n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* ======================================================================= publisher */

enum { L_IDLE, L_CONNECTING, L_WAITING };

typedef struct {
    int fd;
    int state;
    int attempt;       /* 0 first try, 1 the retry on a new connection */
    int channel;       /* index of the event's channel */
    char *req;         /* the request being sent */
    int req_len, req_off;
    char resp[4096];   /* the response read so far */
    int resp_len;
} lane_t;

typedef struct {
    int64_t sent, ok, failed, connects, errors, slip_max_us, scheduled;
    double elapsed;
    int64_t statuses[600]; /* count per HTTP status; [0] = no answer */
} pub_result_t;

typedef struct {
    struct sockaddr_in addr;
    int ep;
    pub_result_t *out;
    int64_t *per_channel_ok;
} pub_t;

static int lane_connect(pub_t *p, lane_t *l, int idx) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    p->out->connects++;
    if (connect(fd, (struct sockaddr *)&p->addr, sizeof p->addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)idx};
    epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev);
    l->fd = fd;
    l->state = L_CONNECTING;
    return 0;
}

static void lane_drop(pub_t *p, lane_t *l) {
    if (l->fd >= 0) {
        epoll_ctl(p->ep, EPOLL_CTL_DEL, l->fd, NULL);
        close(l->fd);
    }
    l->fd = -1;
    l->resp_len = 0;
}

static void lane_done(pub_t *p, lane_t *l, int status) {
    if (status < 0 || status >= 600) status = 0;
    p->out->statuses[status]++;
    if (status == 200) {
        p->out->ok++;
        p->per_channel_ok[l->channel]++;
    } else {
        p->out->failed++;
    }
    free(l->req);
    l->req = NULL;
    l->state = L_IDLE;
}

/* Send (or resend) the lane's request; connects first when needed. */
static void lane_send(pub_t *p, lane_t *l, int idx);

/* The request failed on this connection: retry once on a new one. */
static void lane_failed(pub_t *p, lane_t *l, int idx) {
    lane_drop(p, l);
    if (l->attempt == 0) {
        l->attempt = 1;
        lane_send(p, l, idx);
    } else {
        p->out->errors++;
        lane_done(p, l, 0);
    }
}

static void lane_write(pub_t *p, lane_t *l, int idx) {
    while (l->req_off < l->req_len) {
        ssize_t n = send(l->fd, l->req + l->req_off, (size_t)(l->req_len - l->req_off),
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            lane_failed(p, l, idx);
            return;
        }
        l->req_off += (int)n;
    }
    struct epoll_event ev = {.events = EPOLLIN | (l->req_off < l->req_len ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)idx};
    epoll_ctl(p->ep, EPOLL_CTL_MOD, l->fd, &ev);
}

static void lane_send(pub_t *p, lane_t *l, int idx) {
    l->req_off = 0;
    l->resp_len = 0;
    if (l->fd < 0) {
        if (lane_connect(p, l, idx) < 0) {
            lane_failed(p, l, idx);
        }
        return; /* written once connected */
    }
    p->out->sent++;
    l->state = L_WAITING;
    lane_write(p, l, idx);
}

/* A header's value in a response head (case-insensitive name), or NULL. */
static const char *header(const char *head, int len, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i + 2 + (int)n < len; i++) {
        if (head[i] == '\r' && head[i + 1] == '\n' && strncasecmp(head + i + 2, name, n) == 0) {
            const char *v = head + i + 2 + n;
            while (*v == ' ') v++;
            return v;
        }
    }
    return NULL;
}

/* Parse what the lane has read; returns 1 when a whole response is in. */
static int lane_response(lane_t *l, int eof, int *status, int *close_after) {
    l->resp[l->resp_len] = 0;
    char *end = strstr(l->resp, "\r\n\r\n");
    if (end == NULL) return 0;
    int head_len = (int)(end - l->resp) + 2;
    *status = l->resp_len >= 12 ? atoi(l->resp + 9) : 0;
    const char *conn = header(l->resp, head_len, "connection:");
    *close_after = conn != NULL && strncasecmp(conn, "close", 5) == 0;
    const char *length = header(l->resp, head_len, "content-length:");
    if (length != NULL) {
        int total = head_len + 2 + atoi(length);
        if (l->resp_len < total) return 0;
        return 1; /* one request in flight: nothing follows the body */
    }
    if (header(l->resp, head_len, "transfer-encoding:") != NULL) {
        return strstr(end + 4, "0\r\n\r\n") != NULL;
    }
    if (!eof) return 0; /* the body runs until the server closes */
    *close_after = 1;
    return 1;
}

static void lane_readable(pub_t *p, lane_t *l, int idx) {
    int eof = 0;
    for (;;) {
        int room = (int)sizeof l->resp - 1 - l->resp_len;
        if (room <= 0) { /* a response this large is not a publish answer */
            lane_failed(p, l, idx);
            return;
        }
        ssize_t n = read(l->fd, l->resp + l->resp_len, (size_t)room);
        if (n > 0) {
            l->resp_len += (int)n;
            continue;
        }
        if (n == 0) eof = 1;
        else if (errno != EAGAIN) {
            lane_failed(p, l, idx);
            return;
        }
        break;
    }
    int status = 0, close_after = 0;
    if (l->state == L_WAITING && lane_response(l, eof, &status, &close_after)) {
        if (close_after || eof) lane_drop(p, l);
        l->resp_len = 0;
        lane_done(p, l, status);
        return;
    }
    if (eof) lane_failed(p, l, idx); /* closed before the whole answer */
}

static char *build_request(const char *host, int port, const char *app_id, const char *key,
                           const char *secret, const char *channel, int64_t due,
                           const char *padding, int close_each, int *len_out) {
    size_t body_cap = strlen(channel) + strlen(padding) + 96;
    size_t cap = body_cap + strlen(app_id) + strlen(key) + strlen(host) + 512;
    char *req = malloc(cap), *body = malloc(body_cap);
    if (req == NULL || body == NULL) goto fail;
    int body_len = snprintf(body, body_cap, "{\"name\":\"bench\",\"channel\":\"%s\",\"data\":\"%lld%s\"}",
                            channel, (long long)due, padding);
    unsigned char digest[32];
    char md5[33], sig[65], query[256], to_sign[512];
    MD5((const unsigned char *)body, (size_t)body_len, digest);
    hex(digest, 16, md5);
    int q = snprintf(query, sizeof query,
                     "auth_key=%s&auth_timestamp=%lld&auth_version=1.0&body_md5=%s", key,
                     (long long)time(NULL), md5);
    int s = snprintf(to_sign, sizeof to_sign, "POST\n/apps/%s/events\n%s", app_id, query);
    if (q >= (int)sizeof query || s >= (int)sizeof to_sign) goto fail;
    unsigned int sig_len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)to_sign, (size_t)s,
         digest, &sig_len);
    hex(digest, 32, sig);
    int n = snprintf(req, cap,
                     "POST /apps/%s/events?%s&auth_signature=%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n%s\r\n%s",
                     app_id, query, sig, host, port, body_len,
                     close_each ? "Connection: close\r\n" : "", body);
    if (n < 0 || (size_t)n >= cap) goto fail;
    free(body);
    *len_out = n;
    return req;
fail:
    free(req);
    free(body);
    return NULL;
}

/*
 * Publish `total` events at `rate` per second, round-robin over `channels`.
 * Event i is due at t0 + i/rate and carries its due time as data; a free lane
 * sends the next event once it is due, so a server that answers late shows up
 * as latency (and slip), not as a lower rate.
 * With `close_each`, every request asks for `Connection: close` (a publisher that
 * opens a connection per event, as PHP without a queue worker does).
 * Returns 0, or -1 when the address is unusable.
 */
int pub_run(const char *host, int port, const char *app_id, const char *key, const char *secret,
            const char **channels, int n_channels, double rate, int64_t total,
            const char *padding, int conns, int close_each, int64_t *per_channel_ok,
            pub_result_t *out) {
    pub_t p = {.out = out, .per_channel_ok = per_channel_ok};
    memset(out, 0, sizeof *out);
    p.addr.sin_family = AF_INET;
    p.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &p.addr.sin_addr) != 1) return -1;
    p.ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns < 1) conns = 1;
    lane_t *lanes = calloc((size_t)conns, sizeof *lanes);
    for (int i = 0; i < conns; i++) lanes[i].fd = -1;
    int64_t next = 0, t0 = now_us() + 20000; /* first event due in 20 ms */
    int busy = 0;
    out->scheduled = total;
    struct epoll_event events[256];
    while (next < total || busy > 0) {
        /* Hand due events to free lanes. */
        int64_t now = now_us();
        for (int i = 0; i < conns && next < total; i++) {
            lane_t *l = &lanes[i];
            if (l->state != L_IDLE || l->req != NULL) continue;
            int64_t due = t0 + (int64_t)((double)next * 1e6 / rate);
            if (due > now) break; /* sent at its due time, never early */
            int ch = (int)(next % n_channels);
            int len = 0;
            char *req = build_request(host, port, app_id, key, secret, channels[ch], due, padding,
                                      close_each, &len);
            next++;
            if (req == NULL) {
                out->statuses[0]++;
                out->failed++;
                continue;
            }
            int64_t slip = now_us() - due;
            if (slip > out->slip_max_us) out->slip_max_us = slip;
            l->req = req;
            l->req_len = len;
            l->channel = ch;
            l->attempt = 0;
            lane_send(&p, l, i);
        }
        busy = 0;
        int free_lane = 0;
        for (int i = 0; i < conns; i++) {
            if (lanes[i].req != NULL) busy++;
            else free_lane = 1;
        }
        /* Sleep until the next event is due (if a lane is free) or an answer comes. */
        struct timespec timeout, *tp = NULL;
        if (next < total && free_lane) {
            int64_t wait = t0 + (int64_t)((double)next * 1e6 / rate) - now_us();
            if (wait < 0) wait = 0;
            timeout.tv_sec = wait / 1000000;
            timeout.tv_nsec = (wait % 1000000) * 1000;
            tp = &timeout;
        }
        if (busy == 0 && tp == NULL) break;
        int n = epoll_pwait2(p.ep, events, 256, tp, NULL);
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            lane_t *l = &lanes[i];
            if (l->fd < 0) continue;
            if (l->req == NULL) { /* an idle kept-alive connection: closed by the server? */
                char scrap[512];
                ssize_t r = read(l->fd, scrap, sizeof scrap);
                if (r == 0 || (r < 0 && errno != EAGAIN)) lane_drop(&p, l);
                continue;
            }
            if (l->state == L_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0 || (events[k].events & (EPOLLERR | EPOLLHUP))) {
                    lane_failed(&p, l, i);
                    continue;
                }
                out->sent++;
                l->state = L_WAITING;
                lane_write(&p, l, i);
                continue;
            }
            if (events[k].events & EPOLLOUT) lane_write(&p, l, i);
            if (l->fd >= 0 && l->req != NULL && (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                lane_readable(&p, l, i);
        }
    }
    out->elapsed = (double)(now_us() - t0) / 1e6;
    for (int i = 0; i < conns; i++) {
        lane_drop(&p, &lanes[i]);
        free(lanes[i].req);
    }
    free(lanes);
    close(p.ep);
    return 0;
}

/* ===================================================================== subscribers */

#define MARK "\"data\":\""
#define MARK_LEN 8
#define TAIL_MAX 64
/* Histogram buckets of 100 us; the first NEG_BUCKETS hold negative latencies
 * (an event sent up to 0.5 ms before its due time and delivered before it). */
#define NEG_BUCKETS 100
#define BUCKETS (NEG_BUCKETS + 600000) /* 60 s */

static const char PONG[] = "\x8a\x80\x00\x00\x00\x00";
/* {"event":"pusher:ping","data":{}} as a client frame masked with a zero key */
static const char PING[] = "\x81\xa1\x00\x00\x00\x00{\"event\":\"pusher:ping\",\"data\":{}}";

typedef struct {
    int fd;   /* -1: no socket in this slot */
    int tail_len;
    char tail[TAIL_MAX];
} slot_t;

typedef struct {
    int ep, nslots, stop;
    int64_t bucket_us, ping_every_us, next_ping;
    pthread_t thread;
    pthread_mutex_t mu;
    slot_t *slots;
    /* figures since the last reset */
    int64_t received, max_us, closed;
    uint32_t *hist;
} sub_t;

/* Count the timestamps in `data`; returns where an unfinished one (a mark whose
 * digits run to the end) starts, or NULL. */
static const char *record(sub_t *s, const char *data, int len, int64_t now) {
    const char *p = data, *end = data + len;
    while ((p = memmem(p, (size_t)(end - p), MARK, MARK_LEN)) != NULL) {
        const char *d = p + MARK_LEN;
        int64_t ts = 0;
        while (d < end && *d >= '0' && *d <= '9') ts = ts * 10 + (*d++ - '0');
        if (d == end) return p;
        p += MARK_LEN;
        if (d == p || (*d != '"' && *d != ' ')) continue;
        int64_t lat = now - ts;
        int64_t b = (lat >= 0 ? lat / s->bucket_us : -((-lat + s->bucket_us - 1) / s->bucket_us)) + NEG_BUCKETS;
        if (b < 0) b = 0;
        if (b >= BUCKETS) b = BUCKETS - 1;
        s->hist[b]++;
        s->received++;
        if (lat > s->max_us) s->max_us = lat;
    }
    return NULL;
}

/* What arrived on a slot: count the timestamps, keep a cut one for next time. */
static void consume(sub_t *s, slot_t *sl, const char *data, int len, int64_t now) {
    char joined[TAIL_MAX + 65536];
    if (sl->tail_len) {
        memcpy(joined, sl->tail, (size_t)sl->tail_len);
        memcpy(joined + sl->tail_len, data, (size_t)len);
        data = joined;
        len += sl->tail_len;
    }
    /* Keep the end that may start a timestamp: an unfinished mark+digits, or
     * the last MARK_LEN-1 bytes (which cannot hold a whole mark). */
    const char *cut = record(s, data, len, now), *end = data + len;
    int keep = cut != NULL ? (int)(end - cut) : MARK_LEN - 1;
    if (keep > len) keep = len;
    if (keep > TAIL_MAX) keep = MARK_LEN - 1;
    memmove(sl->tail, end - keep, (size_t)keep);
    sl->tail_len = keep;
    if (memchr(data, 0x89, (size_t)len) != NULL) { /* a WebSocket ping (or a false positive) */
        ssize_t w = send(sl->fd, PONG, sizeof PONG - 1, MSG_NOSIGNAL);
        (void)w;
    }
}

static void slot_close(sub_t *s, slot_t *sl, int count) {
    if (sl->fd < 0) return;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, sl->fd, NULL);
    close(sl->fd);
    sl->fd = -1;
    sl->tail_len = 0;
    if (count) s->closed++;
}

static void *sub_loop(void *arg) {
    sub_t *s = arg;
    static char buf[65536];
    struct epoll_event events[256];
    while (!s->stop) {
        int n = epoll_wait(s->ep, events, 256, 200);
        pthread_mutex_lock(&s->mu);
        int64_t now = now_us();
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            if (i >= s->nslots) continue;
            slot_t *sl = &s->slots[i];
            if (sl->fd < 0) continue;
            ssize_t r = read(sl->fd, buf, sizeof buf);
            if (r > 0) consume(s, sl, buf, (int)r, now);
            else if (r == 0 || errno != EAGAIN) slot_close(s, sl, 1); /* closed by the server */
        }
        if (now >= s->next_ping) {
            s->next_ping = now + s->ping_every_us;
            for (int i = 0; i < s->nslots; i++) {
                if (s->slots[i].fd >= 0) {
                    ssize_t w = send(s->slots[i].fd, PING, sizeof PING - 1, MSG_NOSIGNAL);
                    (void)w;
                }
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

sub_t *sub_create(int nslots, int bucket_us, int ping_every_ms) {
    sub_t *s = calloc(1, sizeof *s);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->nslots = nslots;
    s->bucket_us = bucket_us;
    s->ping_every_us = (int64_t)ping_every_ms * 1000;
    s->next_ping = now_us() + s->ping_every_us;
    s->slots = calloc((size_t)nslots, sizeof *s->slots);
    for (int i = 0; i < nslots; i++) s->slots[i].fd = -1;
    s->hist = calloc(BUCKETS, sizeof *s->hist);
    pthread_mutex_init(&s->mu, NULL);
    pthread_create(&s->thread, NULL, sub_loop, s);
    return s;
}

/* Take over `fd` (a subscribed socket, already dup()ed by Python) in `slot`;
 * `pending` holds bytes Python read after the subscription succeeded. */
int sub_add(sub_t *s, int slot, int fd, const char *pending, int pending_len) {
    if (slot < 0 || slot >= s->nslots || set_nonblocking(fd) < 0) return -1;
    pthread_mutex_lock(&s->mu);
    slot_t *sl = &s->slots[slot];
    slot_close(s, sl, 0);
    sl->fd = fd;
    if (pending_len > 0) consume(s, sl, pending, pending_len, now_us());
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
    int rc = epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int sub_is_open(sub_t *s, int slot) {
    pthread_mutex_lock(&s->mu);
    int open = slot >= 0 && slot < s->nslots && s->slots[slot].fd >= 0;
    pthread_mutex_unlock(&s->mu);
    return open;
}

void sub_close(sub_t *s, int slot) {
    pthread_mutex_lock(&s->mu);
    if (slot >= 0 && slot < s->nslots) slot_close(s, &s->slots[slot], 0);
    pthread_mutex_unlock(&s->mu);
}

/* The figures since the last reset: totals, then the non-empty buckets
 * (bucket index relative to zero latency, and count); returns how many. */
int sub_stats(sub_t *s, int64_t *totals, int32_t *keys, uint32_t *counts, int cap) {
    pthread_mutex_lock(&s->mu);
    totals[0] = s->received;
    totals[1] = s->max_us;
    totals[2] = s->closed;
    int n = 0;
    for (int b = 0; b < BUCKETS && n < cap; b++) {
        if (s->hist[b]) {
            keys[n] = b - NEG_BUCKETS;
            counts[n++] = s->hist[b];
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sub_reset(sub_t *s) {
    pthread_mutex_lock(&s->mu);
    s->received = s->max_us = s->closed = 0;
    memset(s->hist, 0, BUCKETS * sizeof *s->hist);
    pthread_mutex_unlock(&s->mu);
}

/* Stop the reader thread and close every socket it holds. */
void sub_destroy(sub_t *s) {
    s->stop = 1;
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->nslots; i++) slot_close(s, &s->slots[i], 0);
    close(s->ep);
    pthread_mutex_destroy(&s->mu);
    free(s->slots);
    free(s->hist);
    free(s);
}
