/*
 * loadgen: a closed-loop echo load generator that verifies every byte.
 *
 * One thread, one epoll set.  Each connection keeps exactly one message in
 * flight: send it, read back exactly as many bytes, compare each against what
 * was sent, then send the next.  Messages differ per connection and per
 * message (an 8-byte head of connection id and sequence number, then a window
 * of a random pattern at an offset derived from both), so an echo server that
 * mixes up connections, drops, duplicates or corrupts bytes is caught.
 *
 * Run shape, phase by phase:
 *   connect  open every connection (at most MAX_PENDING at a time, so a
 *            server's accept queue is not overrun) and echo one message on
 *            each; a connection counts as established only after that.
 *   hold     (--hold S) all connections idle for S seconds, so a caller can
 *            sample the server's memory with every connection open.
 *   warm-up  traffic, not recorded.
 *   measure  traffic, recorded: requests, bytes, latency histogram.
 *   drain    no new messages; in-flight ones finish (bounded), then close.
 * With --marks, "#held", "#start" and "#stop" lines on stdout mark the phase
 * changes so a caller can sample the server's CPU time over exactly the
 * measured interval.  The result is one JSON line on stdout.  Exit status:
 * 0 clean, 1 any connection error or mismatch, 2 usage or setup failure.
 *
 * Traffic is closed-loop (every connection always has one message in flight)
 * unless --rate R is given: then R messages/s are sent round-robin over the
 * connections, a connection whose previous message is still in flight having
 * its turn skipped (counted as "skipped").
 *
 * Latency is from the first byte sent to the last byte received, kept in a
 * log-linear histogram of nanoseconds (exact below 128 ns, then 64 buckets
 * per power of two: under 1.6% error), so memory does not grow with requests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 20000
#define MAX_PENDING 256        /* connections being opened at once */
#define PATTERN_SPAN 4096      /* distinct window offsets into the pattern */
#define HEAD_LEN 8             /* connection id + sequence number */
#define RECV_BUF (64 * 1024)
#define MAX_EVENTS 512
#define DRAIN_NS 1000000000ull /* in-flight messages get this long to finish */

#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define N_BUCKETS (2 * SUB + (64 - SUB_BITS - 1) * SUB)

enum phase { P_CONNECT, P_HOLD, P_WARMUP, P_MEASURE, P_DRAIN, P_DONE };
enum cstate { C_CONNECTING, C_BUSY, C_IDLE, C_CLOSED };

struct conn {
    int fd;
    uint32_t id;
    uint32_t seq;            /* number of the message in flight */
    uint32_t off;            /* its window offset into the pattern */
    size_t sent, recvd;      /* progress of the message in flight */
    uint64_t t_send;         /* ns: when its first byte went out */
    unsigned char head[HEAD_LEN];
    enum cstate state;
    int want_out;            /* EPOLLOUT registered */
};

static struct {
    /* options */
    const char *host, *port, *unix_path;
    long nconns;
    size_t size, head_len;
    double duration_s, warmup_s, hold_s, rate, timeout_s;
    uint64_t count;          /* measure this many requests instead of a duration */
    int marks;
    /* state */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int ep;
    struct conn *conns;
    unsigned char *pattern;
    unsigned char rbuf[RECV_BUF];
    enum phase phase;
    uint64_t deadline, t_begin, t_established, t_measure0, t_measure1, last_progress;
    long next_to_open, pending, established, busy, closed;
    uint64_t rate_t0, rate_issued, rr;
    double cpu0, cpu1;
    /* results */
    uint64_t requests, bytes, errors, mismatches, skipped;
    uint64_t hist[N_BUCKETS], lat_sum, lat_max;
    char first_error[256];
} g;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void mark(const char *what)
{
    if (g.marks) {
        printf("#%s\n", what);
        fflush(stdout);
    }
}

/* ---- latency histogram ---- */

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);   /* e >= SUB_BITS + 1 */
    return 2 * SUB + (e - SUB_BITS - 1) * SUB + (unsigned)((v >> (e - SUB_BITS)) & (SUB - 1));
}

/* Midpoint of a bucket, in ns. */
static double bucket_value(unsigned i)
{
    if (i < 2 * SUB)
        return i;
    unsigned k = (i - 2 * SUB) / SUB, m = (i - 2 * SUB) % SUB;
    unsigned shift = k + 1;
    return (double)((uint64_t)(SUB + m) << shift) + (double)(1ull << shift) / 2;
}

static void record(uint64_t ns)
{
    g.hist[bucket_of(ns)]++;
    g.lat_sum += ns;
    if (ns > g.lat_max)
        g.lat_max = ns;
}

static double percentile_us(double q)
{
    if (g.requests == 0)
        return 0;
    double exact = q * (double)g.requests;
    uint64_t rank = (uint64_t)exact, seen = 0;   /* rank = ceil(exact), at least 1 */
    if ((double)rank < exact || rank == 0)
        rank++;
    for (unsigned i = 0; i < N_BUCKETS; i++) {
        seen += g.hist[i];
        if (seen >= rank) {
            double v = bucket_value(i);
            return (v > (double)g.lat_max ? (double)g.lat_max : v) / 1e3;
        }
    }
    return (double)g.lat_max / 1e3;
}

/* ---- connections ---- */

static void fail(struct conn *c, int is_mismatch, const char *fmt, ...)
{
    if (is_mismatch)
        g.mismatches++;
    else
        g.errors++;
    if (!g.first_error[0]) {
        va_list ap;
        va_start(ap, fmt);
        int n = snprintf(g.first_error, sizeof g.first_error, "connection %u: ", c->id);
        vsnprintf(g.first_error + n, sizeof g.first_error - (size_t)n, fmt, ap);
        va_end(ap);
    }
    if (c->state == C_CONNECTING || (g.phase == P_CONNECT && c->state == C_BUSY))
        g.pending--;
    if (c->state == C_BUSY)
        g.busy--;
    close(c->fd);   /* also removes it from the epoll set */
    c->fd = -1;
    c->state = C_CLOSED;
    g.closed++;
}

static void set_events(struct conn *c, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
}

static void try_send(struct conn *c)
{
    while (c->sent < g.size) {
        struct iovec iov[2];
        int n = 0;
        if (c->sent < g.head_len)
            iov[n++] = (struct iovec){c->head + c->sent, g.head_len - c->sent};
        size_t from = c->sent > g.head_len ? c->sent : g.head_len;
        if (from < g.size)
            iov[n++] = (struct iovec){g.pattern + c->off + from, g.size - from};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            fail(c, 0, "send: %s", strerror(errno));
            return;
        }
        c->sent += (size_t)w;
    }
    set_events(c, c->sent < g.size);
}

static void begin_message(struct conn *c, uint64_t now)
{
    c->seq++;
    c->off = (c->id * 2654435761u + c->seq * 40503u) % PATTERN_SPAN;
    uint32_t words[2] = {c->id, c->seq};
    memcpy(c->head, words, HEAD_LEN);
    c->sent = c->recvd = 0;
    c->t_send = now;
    c->state = C_BUSY;
    g.busy++;
    try_send(c);
}

static void start_connect(struct conn *c)
{
    int is_unix = g.addr.ss_family == AF_UNIX;
    /* A non-blocking unix connect fails with EAGAIN when the server's backlog
     * is full instead of waiting; a blocking one (bounded by SO_SNDTIMEO)
     * waits for the server to accept, and loopback needs no overlap anyway. */
    c->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (is_unix ? 0 : SOCK_NONBLOCK), 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    c->state = C_CONNECTING;
    g.pending++;
    if (is_unix) {
        struct timeval tv = {.tv_sec = (time_t)g.timeout_s};
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    } else {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->want_out = 1;
    if (connect(c->fd, (struct sockaddr *)&g.addr, g.addrlen) < 0 && errno != EINPROGRESS) {
        fail(c, 0, "connect: %s", strerror(errno));
        return;
    }
    if (is_unix)
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
}

static void on_connected(struct conn *c, uint64_t now)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        fail(c, 0, "connect: %s", strerror(err));
        return;
    }
    begin_message(c, now);   /* the first echo; still pending until it is verified */
}

static void message_done(struct conn *c, uint64_t now)
{
    c->state = C_IDLE;
    g.busy--;
    g.last_progress = now;
    switch (g.phase) {
    case P_CONNECT:
        g.pending--;
        g.established++;
        break;
    case P_MEASURE:
        g.requests++;
        g.bytes += g.size;
        record(now - c->t_send);
        /* fall through */
    case P_WARMUP:
        if (g.rate == 0)
            begin_message(c, now);
        break;
    default:
        break;
    }
}

/* Compare n received bytes, at position c->recvd of the message, with what was sent. */
static int verify(const struct conn *c, const unsigned char *buf, size_t n, size_t *bad_at)
{
    size_t pos = c->recvd, i = 0;
    for (; i < n && pos + i < g.head_len; i++)
        if (buf[i] != c->head[pos + i])
            goto bad;
    if (i < n && memcmp(buf + i, g.pattern + c->off + pos + i, n - i) != 0) {
        for (; buf[i] == g.pattern[c->off + pos + i]; i++)
            ;
        goto bad;
    }
    return 1;
bad:
    *bad_at = pos + i;
    return 0;
}

static void on_readable(struct conn *c, uint64_t now)
{
    ssize_t n = recv(c->fd, g.rbuf, sizeof g.rbuf, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            fail(c, 0, "recv: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        fail(c, 0, "closed by the server after %zu of %zu bytes", c->recvd, g.size);
        return;
    }
    size_t got = (size_t)n, bad_at;
    if (c->state != C_BUSY || c->recvd + got > c->sent) {
        fail(c, 1, "%zu bytes more than were sent (message %u)", c->recvd + got - c->sent, c->seq);
        return;
    }
    if (!verify(c, g.rbuf, got, &bad_at)) {
        fail(c, 1, "message %u byte %zu differs from what was sent", c->seq, bad_at);
        return;
    }
    c->recvd += got;
    if (c->recvd == g.size)
        message_done(c, now);
}

static void on_event(struct conn *c, uint32_t events, uint64_t now)
{
    if (c->state == C_CONNECTING) {
        on_connected(c, now);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c, now);
    if (c->state == C_BUSY && (events & EPOLLOUT))
        try_send(c);
}

/* ---- phases ---- */

static void start_traffic(uint64_t now)
{
    g.phase = P_WARMUP;
    g.deadline = now + (uint64_t)(g.warmup_s * 1e9);
    g.last_progress = now;
    if (g.rate > 0) {
        g.rate_t0 = now;
        return;
    }
    for (long i = 0; i < g.nconns; i++)
        if (g.conns[i].state == C_IDLE)
            begin_message(&g.conns[i], now);
}

static void start_measure(uint64_t now)
{
    mark("start");
    g.phase = P_MEASURE;
    g.t_measure0 = now;
    g.cpu0 = cpu_seconds();
    g.deadline = g.count ? 0 : now + (uint64_t)(g.duration_s * 1e9);
}

static void stop_measure(uint64_t now)
{
    g.t_measure1 = now;
    g.cpu1 = cpu_seconds();
    mark("stop");
    g.phase = P_DRAIN;
    g.deadline = now + DRAIN_NS;
}

static void advance(uint64_t now)
{
    switch (g.phase) {
    case P_CONNECT:
        while (g.next_to_open < g.nconns && g.pending < MAX_PENDING)
            start_connect(&g.conns[g.next_to_open++]);
        if (g.next_to_open == g.nconns && g.pending == 0) {
            g.t_established = now;
            if (g.established == 0) {
                g.phase = P_DONE;
                return;
            }
            mark("held");
            g.phase = P_HOLD;
            g.deadline = now + (uint64_t)(g.hold_s * 1e9);
        }
        if (g.phase != P_HOLD)
            return;
        /* fall through */
    case P_HOLD:
        if (now >= g.deadline)
            start_traffic(now);
        if (g.phase != P_WARMUP)
            return;
        /* fall through */
    case P_WARMUP:
        if (now >= g.deadline)
            start_measure(now);
        return;
    case P_MEASURE:
        if (g.count ? g.requests >= g.count : now >= g.deadline)
            stop_measure(now);
        return;
    case P_DRAIN:
        if (g.busy == 0 || now >= g.deadline)
            g.phase = P_DONE;
        return;
    case P_DONE:
        return;
    }
}

/* Rate mode: issue every message that is due by now, round-robin. */
static void pace(uint64_t now)
{
    uint64_t due = (uint64_t)((double)(now - g.rate_t0) * g.rate / 1e9);
    for (; g.rate_issued < due; g.rate_issued++) {
        struct conn *c = &g.conns[g.rr];
        g.rr = (g.rr + 1) % (uint64_t)g.nconns;
        if (c->state == C_IDLE)
            begin_message(c, now);
        else
            g.skipped++;
    }
}

/* epoll_wait timeout: until the next deadline, rounded up so that we wake
 * after it rather than spinning just before it; rate mode paces in 1 ms steps. */
static int wait_ms(uint64_t now)
{
    uint64_t until = now + (uint64_t)(g.timeout_s * 1e9);
    if ((g.phase == P_HOLD || g.phase == P_WARMUP || g.phase == P_DRAIN ||
         (g.phase == P_MEASURE && !g.count)) && g.deadline < until)
        until = g.deadline;
    if (g.rate > 0 && (g.phase == P_WARMUP || g.phase == P_MEASURE)) {
        uint64_t next = g.rate_t0 + (uint64_t)((double)(g.rate_issued + 1) * 1e9 / g.rate);
        if (next < until)
            until = next;
    }
    if (until <= now)
        return 0;
    uint64_t ms = (until - now + 999999) / 1000000;
    return (int)(ms > 0x7fffffff ? 0x7fffffff : ms);
}

/* ---- setup and output ---- */

static void resolve(void)
{
    if (g.unix_path) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&g.addr;
        if (strlen(g.unix_path) >= sizeof sun->sun_path)
            die("unix socket path too long: %s", g.unix_path);
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, g.unix_path);
        g.addrlen = sizeof *sun;
        return;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(g.host, g.port, &hints, &res);
    if (rc != 0)
        die("%s port %s: %s", g.host, g.port, gai_strerror(rc));
    memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
    g.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)g.nconns + 16;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        die("%ld connections need %lu file descriptors; the hard limit is %lu", g.nconns,
            (unsigned long)need, (unsigned long)rl.rlim_max);
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit(RLIMIT_NOFILE, %lu): %s", (unsigned long)need, strerror(errno));
}

static void make_pattern(void)
{
    g.pattern = malloc(g.size + PATTERN_SPAN);
    if (!g.pattern)
        die("out of memory for a %zu-byte pattern", g.size);
    uint64_t x = 0x9e3779b97f4a7c15ull;   /* xorshift64: fixed, so runs are repeatable */
    for (size_t i = 0; i < g.size + PATTERN_SPAN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        g.pattern[i] = (unsigned char)(x >> 24);
    }
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar((unsigned char)*s < 0x20 ? ' ' : *s);
    }
    putchar('"');
}

static void report(void)
{
    double dur = g.t_measure1 > g.t_measure0 ? (double)(g.t_measure1 - g.t_measure0) / 1e9 : 0;
    printf("{\"connections\": %ld, \"established\": %ld, \"size\": %zu, \"duration_s\": %.6f, "
           "\"requests\": %llu, \"bytes\": %llu, \"rps\": %.1f, "
           "\"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, "
           "\"max_us\": %.2f, \"mean_us\": %.2f, \"errors\": %llu, \"mismatches\": %llu, "
           "\"skipped\": %llu, \"unfinished\": %ld, \"rate\": %.1f, \"connect_s\": %.3f, "
           "\"client_cpu_s\": %.3f, \"first_error\": ",
           g.nconns, g.established, g.size, dur, (unsigned long long)g.requests,
           (unsigned long long)g.bytes, dur > 0 ? (double)g.requests / dur : 0.0,
           percentile_us(0.50), percentile_us(0.90), percentile_us(0.99), percentile_us(0.999),
           (double)g.lat_max / 1e3, g.requests ? (double)g.lat_sum / (double)g.requests / 1e3 : 0.0,
           (unsigned long long)g.errors, (unsigned long long)g.mismatches,
           (unsigned long long)g.skipped, g.busy, g.rate,
           g.t_established ? (double)(g.t_established - g.t_begin) / 1e9 : 0.0, g.cpu1 - g.cpu0);
    if (g.first_error[0])
        print_json_string(g.first_error);
    else
        fputs("null", stdout);
    puts("}");
}

static void usage(FILE *to)
{
    fputs("usage: loadgen [options] HOST PORT\n"
          "       loadgen [options] --unix PATH\n"
          "  -c, --connections N   concurrent connections, 1..20000 (default 100)\n"
          "  -s, --size BYTES      message size (default 64)\n"
          "  -d, --duration S      measured seconds (default 5)\n"
          "  -n, --requests N      measure N requests instead of a duration\n"
          "  -w, --warmup S        unrecorded traffic before measuring (default 1)\n"
          "      --hold S          hold every connection idle S seconds before traffic\n"
          "      --rate R          R messages/s round-robin instead of closed loop\n"
          "      --timeout S       give up after S seconds without progress (default 10)\n"
          "      --marks           print #held, #start, #stop lines at phase changes\n"
          "      --unix PATH       connect to a unix stream socket\n",
          to);
}

static double parse_num(const char *s, const char *what, double lo, double hi)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= lo && v <= hi))
        die("bad %s '%s' (want %g..%g)", what, s, lo, hi);
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum { O_HOLD = 256, O_RATE, O_TIMEOUT, O_MARKS, O_UNIX };
    static const struct option opts[] = {
        {"connections", required_argument, 0, 'c'}, {"size", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'},    {"requests", required_argument, 0, 'n'},
        {"warmup", required_argument, 0, 'w'},      {"hold", required_argument, 0, O_HOLD},
        {"rate", required_argument, 0, O_RATE},     {"timeout", required_argument, 0, O_TIMEOUT},
        {"marks", no_argument, 0, O_MARKS},         {"unix", required_argument, 0, O_UNIX},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    g.nconns = 100;
    g.size = 64;
    g.duration_s = 5;
    g.warmup_s = 1;
    g.timeout_s = 10;
    int o;
    while ((o = getopt_long(argc, argv, "c:s:d:n:w:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': g.nconns = (long)parse_num(optarg, "connections", 1, MAX_CONNECTIONS); break;
        case 's': g.size = (size_t)parse_num(optarg, "size", 1, 1 << 24); break;
        case 'd': g.duration_s = parse_num(optarg, "duration", 0.001, 86400); break;
        case 'n': g.count = (uint64_t)parse_num(optarg, "request count", 1, 1e15); break;
        case 'w': g.warmup_s = parse_num(optarg, "warm-up", 0, 86400); break;
        case O_HOLD: g.hold_s = parse_num(optarg, "hold", 0, 86400); break;
        case O_RATE: g.rate = parse_num(optarg, "rate", 0, 1e9); break;
        case O_TIMEOUT: g.timeout_s = parse_num(optarg, "timeout", 0.001, 86400); break;
        case O_MARKS: g.marks = 1; break;
        case O_UNIX: g.unix_path = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (g.unix_path ? optind != argc : optind != argc - 2) {
        usage(stderr);
        exit(2);
    }
    if (!g.unix_path) {
        g.host = argv[optind];
        g.port = argv[optind + 1];
    }
    g.head_len = g.size < HEAD_LEN ? g.size : HEAD_LEN;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    resolve();
    raise_fd_limit();
    make_pattern();
    g.conns = calloc((size_t)g.nconns, sizeof *g.conns);
    if (!g.conns)
        die("out of memory for %ld connections", g.nconns);
    for (long i = 0; i < g.nconns; i++) {
        g.conns[i].id = (uint32_t)i;
        g.conns[i].fd = -1;
    }
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0)
        die("epoll_create1: %s", strerror(errno));

    static struct epoll_event evs[MAX_EVENTS];
    uint64_t now = now_ns();
    g.t_begin = g.last_progress = now;
    g.phase = P_CONNECT;
    advance(now);
    while (g.phase != P_DONE) {
        int n = epoll_wait(g.ep, evs, MAX_EVENTS, wait_ms(now));
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            /* an earlier event in this batch may have closed it */
            if (c->state != C_CLOSED)
                on_event(c, evs[i].events, now_ns());
        }
        now = now_ns();
        if (g.closed == g.nconns) {
            if (g.phase == P_MEASURE)
                stop_measure(now);
            g.phase = P_DONE;
            break;
        }
        if (g.rate > 0 && (g.phase == P_WARMUP || g.phase == P_MEASURE))
            pace(now);
        advance(now);
        if (g.phase != P_HOLD && g.phase != P_DRAIN && g.phase != P_DONE &&
            now - g.last_progress > (uint64_t)(g.timeout_s * 1e9)) {
            g.errors++;
            if (!g.first_error[0])
                snprintf(g.first_error, sizeof g.first_error,
                         "no message completed for %g s (%ld connections busy)", g.timeout_s, g.busy);
            if (g.phase == P_MEASURE)
                stop_measure(now);
            g.phase = P_DONE;
        }
    }

    for (long i = 0; i < g.nconns; i++)
        if (g.conns[i].fd >= 0)
            close(g.conns[i].fd);
    close(g.ep);
    report();
    return (g.errors || g.mismatches || g.established < g.nconns) ? 1 : 0;
}
