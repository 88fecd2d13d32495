/*
 * echo_floor: the smallest reasonable epoll echo server, the floor that the
 * Python servers are measured against.
 *
 * Level-triggered epoll, non-blocking sockets, TCP_NODELAY, one shared read
 * buffer.  Whatever a write cannot take at once is kept for that connection,
 * which then stops reading until it has been flushed: backpressure instead of
 * unbounded buffering.  Prints "ready HOST PORT" once listening (PORT 0 picks
 * a free port) and exits 0 on SIGTERM or SIGINT.
 *
 * usage: echo_floor HOST PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    char *pending;      /* unwritten echo bytes, or NULL */
    size_t len, off;
};

/* epoll data for the two fds that are not connections */
static struct conn listener, signals;
static int ep;
static char buf[BUF_SIZE];

static void die(const char *what)
{
    fprintf(stderr, "echo_floor: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void watch(int op, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static void drop(struct conn *c)
{
    close(c->fd);   /* also removes it from the epoll set */
    free(c->pending);
    free(c);
}

/* Write buf[0..n) to c; keep what does not fit and wait for EPOLLOUT. */
static void echo(struct conn *c, const char *data, size_t n)
{
    ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            drop(c);
            return;
        }
        w = 0;
    }
    if ((size_t)w == n)
        return;
    c->pending = malloc(n - (size_t)w);
    if (!c->pending) {
        drop(c);
        return;
    }
    memcpy(c->pending, data + w, n - (size_t)w);
    c->len = n - (size_t)w;
    c->off = 0;
    watch(EPOLL_CTL_MOD, c, EPOLLOUT);
}

static void flush(struct conn *c)
{
    ssize_t w = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            drop(c);
        return;
    }
    c->off += (size_t)w;
    if (c->off < c->len)
        return;
    free(c->pending);
    c->pending = NULL;
    watch(EPOLL_CTL_MOD, c, EPOLLIN);
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            /* out of fds or a connection reset while queued: leave it, keep serving */
            perror("echo_floor: accept4");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        watch(EPOLL_CTL_ADD, c, EPOLLIN);
    }
}

static int listen_on(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "echo_floor: %s port %s: %s\n", host, port, gai_strerror(rc));
        exit(2);
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
        die("bind");
    freeaddrinfo(res);
    if (listen(fd, 65535) < 0)   /* the kernel caps this at net.core.somaxconn */
        die("listen");
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fputs("usage: echo_floor HOST PORT\n", stderr);
        return 2;
    }
    struct rlimit rl;   /* many-connection runs need more than the usual 1024 fds */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        die("sigprocmask");
    signals.fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (signals.fd < 0)
        die("signalfd");
    listener.fd = listen_on(argv[1], argv[2]);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    watch(EPOLL_CTL_ADD, &listener, EPOLLIN);
    watch(EPOLL_CTL_ADD, &signals, EPOLLIN);

    struct sockaddr_storage addr;
    socklen_t alen = sizeof addr;
    char hbuf[NI_MAXHOST], pbuf[NI_MAXSERV];
    if (getsockname(listener.fd, (struct sockaddr *)&addr, &alen) < 0 ||
        getnameinfo((struct sockaddr *)&addr, alen, hbuf, sizeof hbuf, pbuf, sizeof pbuf,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        die("getsockname");
    printf("ready %s %s\n", hbuf, pbuf);
    fflush(stdout);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == &signals)
                return 0;   /* exit closes the connections; nothing to flush */
            if (c == &listener)
                accept_all();
            else if (c->pending)
                flush(c);
            else {
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r > 0)
                    echo(c, buf, (size_t)r);
                else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                    drop(c);
            }
        }
    }
}
