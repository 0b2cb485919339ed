/* Readiness and event files: epoll (level-triggered, edge-triggered,
 * one-shot, nested, errors) over pipes and eventfds, eventfd counter and
 * semaphore modes, timerfd (one-shot, periodic, absolute, blocking), and
 * signalfd (kill/tkill/sigqueue/SIGCHLD information, mask updates).
 * Prints only deterministic facts; exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *en(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : "?";
}

/* Result of a call that returns a descriptor or 0: "ok" or the errno. */
#define OK(label, expr)                                                        \
    do {                                                                       \
        errno = 0;                                                             \
        long r_ = (long)(expr);                                                \
        printf("%-52s %s\n", label, r_ >= 0 ? "ok" : en(errno));               \
    } while (0)

/* Result of a call whose value is deterministic. */
#define VAL(label, expr)                                                       \
    do {                                                                       \
        errno = 0;                                                             \
        long r_ = (long)(expr);                                                \
        if (r_ < 0)                                                            \
            printf("%-52s -1 %s\n", label, en(errno));                        \
        else                                                                   \
            printf("%-52s %ld\n", label, r_);                                  \
    } while (0)

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(ep, op, fd, &ev);
}

/* epoll_wait, printing the events sorted by data. */
static void show_wait(const char *label, int ep, int timeout) {
    struct epoll_event evs[8];
    int n = epoll_wait(ep, evs, 8, timeout);
    if (n < 0) {
        printf("%-52s -1 %s\n", label, en(errno));
        return;
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (evs[j].data.u64 < evs[i].data.u64) {
                struct epoll_event t = evs[i];
                evs[i] = evs[j];
                evs[j] = t;
            }
    printf("%-52s %d", label, n);
    for (int i = 0; i < n; i++)
        printf(" [data=%llu%s%s%s%s]", (unsigned long long)evs[i].data.u64,
               evs[i].events & EPOLLIN ? " IN" : "", evs[i].events & EPOLLOUT ? " OUT" : "",
               evs[i].events & EPOLLERR ? " ERR" : "", evs[i].events & EPOLLHUP ? " HUP" : "");
    printf("\n");
}

static void drain(int fd) {
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

/* ---- epoll basics and errors ---- */

static void epoll_basics(void) {
    printf("== epoll basics\n");
    OK("epoll_create(0)", epoll_create(0));
    OK("epoll_create1(bad flags)", epoll_create1(1));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    OK("epoll_create1(EPOLL_CLOEXEC)", ep);
    VAL("  FD_CLOEXEC set", fcntl(ep, F_GETFD) & FD_CLOEXEC);
    VAL("  F_GETFL access mode O_RDWR", (fcntl(ep, F_GETFL) & O_ACCMODE) == O_RDWR);
    int p[2];
    pipe2(p, O_NONBLOCK);
    OK("ADD pipe read end", ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
    OK("ADD it again", ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
    OK("MOD a descriptor not added", ctl(ep, EPOLL_CTL_MOD, p[1], EPOLLOUT, 2));
    OK("DEL a descriptor not added", ctl(ep, EPOLL_CTL_DEL, p[1], 0, 0));
    OK("ADD a closed descriptor", ctl(ep, EPOLL_CTL_ADD, 999, EPOLLIN, 0));
    OK("ADD the epoll fd to itself", ctl(ep, EPOLL_CTL_ADD, ep, EPOLLIN, 0));
    OK("epoll_ctl on a pipe as epfd", ctl(p[0], EPOLL_CTL_ADD, p[1], EPOLLOUT, 0));
    OK("bad op", ctl(ep, 99, p[1], EPOLLOUT, 0));
    OK("EPOLLEXCLUSIVE with MOD", ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLEXCLUSIVE, 1));
    OK("EPOLLEXCLUSIVE with EPOLLONESHOT",
       ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLEXCLUSIVE | EPOLLONESHOT, 2));
    OK("NULL event for DEL", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    OK("NULL event for ADD", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], NULL));
    OK("re-ADD", ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
    int dir = open("/", O_RDONLY | O_DIRECTORY);
    OK("ADD a directory", ctl(ep, EPOLL_CTL_ADD, dir, EPOLLIN, 0));
    close(dir);
    char tmpl[] = "/tmp/rvisor-events-XXXXXX";
    int reg = mkstemp(tmpl);
    unlink(tmpl);
    OK("ADD a regular file", ctl(ep, EPOLL_CTL_ADD, reg, EPOLLIN, 0));
    close(reg);
    int devnull = open("/dev/null", O_RDWR);
    OK("ADD /dev/null", ctl(ep, EPOLL_CTL_ADD, devnull, EPOLLIN, 0));
    close(devnull);

    struct epoll_event evs[4];
    OK("epoll_wait maxevents 0", epoll_wait(ep, evs, 0, 0));
    OK("epoll_wait on a pipe", epoll_wait(p[0], evs, 4, 0));
    OK("epoll_wait on a closed fd", epoll_wait(999, evs, 4, 0));
    OK("epoll_wait events in kernel space",
       syscall(SYS_epoll_wait, ep, (void *)0xffff800000000000UL, 4, 0));
    show_wait("wait, nothing ready", ep, 0);
    write(p[1], "ab", 2);
    show_wait("wait after write (level)", ep, 0);
    show_wait("wait again (still level-ready)", ep, 0);
    OK("ADD write end for OUT", ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT, 2));
    show_wait("wait with both", ep, 0);
    struct epoll_event one[1];
    /* Round robin: two level-ready interests alternate with maxevents 1. */
    uint64_t d1, d2, d3;
    epoll_wait(ep, one, 1, 0);
    d1 = one[0].data.u64;
    epoll_wait(ep, one, 1, 0);
    d2 = one[0].data.u64;
    epoll_wait(ep, one, 1, 0);
    d3 = one[0].data.u64;
    VAL("maxevents 1 alternates between ready interests", d1 != d2 && d1 == d3);
    drain(p[0]);
    OK("DEL write end", ctl(ep, EPOLL_CTL_DEL, p[1], 0, 0));
    show_wait("wait after draining", ep, 0);
    close(p[1]);
    show_wait("wait after closing the writer (HUP)", ep, 0);
    OK("MOD to EPOLLOUT only", ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLOUT, 3));
    show_wait("HUP reported without asking", ep, 0);
    close(p[0]);
    show_wait("closing the only fd drops the interest", ep, 0);

    /* A dup keeps the description, and the interest, alive. */
    pipe2(p, O_NONBLOCK);
    ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 7);
    int d = dup(p[0]);
    close(p[0]);
    write(p[1], "x", 1);
    show_wait("interest survives close while a dup exists", ep, 0);
    OK("DEL through the dup (different fd)", ctl(ep, EPOLL_CTL_DEL, d, 0, 0));
    close(d);
    close(p[1]);
    show_wait("gone with the last descriptor", ep, 0);
    close(ep);
}

/* ---- edge-triggered and one-shot ---- */

static void epoll_edges(void) {
    printf("== edge-triggered\n");
    int ep = epoll_create1(0);
    int p[2];
    pipe2(p, O_NONBLOCK);
    ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN | EPOLLET, 1);
    show_wait("nothing yet", ep, 0);
    write(p[1], "x", 1);
    show_wait("after a write", ep, 0);
    show_wait("again: edge already reported", ep, 0);
    write(p[1], "y", 1);
    show_wait("a second write is a new edge", ep, 0);
    drain(p[0]);
    show_wait("after draining", ep, 0);
    write(p[1], "z", 1);
    show_wait("data again", ep, 0);
    OK("MOD re-arms the edge", ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLET, 2));
    show_wait("after MOD", ep, 0);
    show_wait("after MOD, again", ep, 0);
    drain(p[0]);

    ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLET, 3);
    show_wait("write end: writable edge", ep, 0);
    show_wait("write end: no new edge", ep, 0);

    printf("== one-shot\n");
    int ep2 = epoll_create1(0);
    int q[2];
    pipe2(q, O_NONBLOCK);
    ctl(ep2, EPOLL_CTL_ADD, q[0], EPOLLIN | EPOLLONESHOT, 4);
    write(q[1], "x", 1);
    show_wait("first report", ep2, 0);
    show_wait("disabled after one report", ep2, 0);
    write(q[1], "y", 1);
    show_wait("still disabled after more data", ep2, 0);
    OK("MOD re-enables", ctl(ep2, EPOLL_CTL_MOD, q[0], EPOLLIN | EPOLLONESHOT, 5));
    show_wait("reported again", ep2, 0);
    show_wait("and disabled again", ep2, 0);
    close(q[0]);
    close(q[1]);
    close(ep2);
    close(p[0]);
    close(p[1]);
    close(ep);
}

/* ---- eventfd ---- */

static uint64_t efd_val;

static void eventfd_tests(void) {
    printf("== eventfd\n");
    OK("eventfd2 bad flags", eventfd(0, 0x10));
    int e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    OK("eventfd(0, NONBLOCK|CLOEXEC)", e);
    VAL("  FD_CLOEXEC set", fcntl(e, F_GETFD) & FD_CLOEXEC);
    VAL("  O_NONBLOCK set", (fcntl(e, F_GETFL) & O_NONBLOCK) != 0);
    OK("read while zero", read(e, &efd_val, 8));
    uint64_t v = 5;
    VAL("write 5", write(e, &v, 8));
    v = 3;
    VAL("write 3", write(e, &v, 8));
    VAL("read", read(e, &efd_val, 8));
    VAL("  value", (long)efd_val);
    char small[4];
    OK("read 4 bytes", read(e, small, 4));
    OK("write 4 bytes", write(e, small, 4));
    v = UINT64_MAX;
    OK("write UINT64_MAX", write(e, &v, 8));
    v = UINT64_MAX - 1;
    VAL("write UINT64_MAX-1", write(e, &v, 8));
    v = 1;
    OK("write 1 more (overflow)", write(e, &v, 8));
    struct pollfd pf = {e, POLLIN | POLLOUT, 0};
    poll(&pf, 1, 0);
    VAL("poll when full: IN", (pf.revents & POLLIN) != 0);
    VAL("poll when full: OUT", (pf.revents & POLLOUT) != 0);
    read(e, &efd_val, 8);
    VAL("read the maximum", efd_val == UINT64_MAX - 1);
    close(e);

    int s = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    VAL("semaphore read 1", (read(s, &efd_val, 8), (long)efd_val));
    VAL("semaphore read 2", (read(s, &efd_val, 8), (long)efd_val));
    VAL("semaphore read 3", (read(s, &efd_val, 8), (long)efd_val));
    OK("semaphore read 4", read(s, &efd_val, 8));

    int ep = epoll_create1(0);
    ctl(ep, EPOLL_CTL_ADD, s, EPOLLIN | EPOLLOUT, 9);
    show_wait("epoll on an empty eventfd", ep, 0);
    v = 2;
    write(s, &v, 8);
    show_wait("epoll after a write", ep, 0);
    close(ep);
    close(s);
}

/* ---- blocking waits woken by other threads ---- */

struct waker {
    int fd;
    int ms;
    int kind; /* 0: write 8-byte 1, 1: write one byte, 2: kill SIGUSR1 to pid */
};

static void *waker_main(void *arg) {
    struct waker *w = arg;
    sleep_ms(w->ms);
    if (w->kind == 0) {
        uint64_t one = 1;
        write(w->fd, &one, 8);
    } else if (w->kind == 1) {
        write(w->fd, "w", 1);
    } else {
        kill(getpid(), SIGUSR1);
    }
    return NULL;
}

static pthread_t start_waker(struct waker *w) {
    pthread_t th;
    pthread_create(&th, NULL, waker_main, w);
    return th;
}

static void blocking_waits(void) {
    printf("== blocking\n");
    int ep = epoll_create1(0);
    int e = eventfd(0, 0);
    ctl(ep, EPOLL_CTL_ADD, e, EPOLLIN, 1);
    struct waker w = {e, 30, 0};
    long long t0 = now_ms();
    pthread_t th = start_waker(&w);
    show_wait("epoll_wait(-1) woken by an eventfd write", ep, -1);
    VAL("  slept until the write", now_ms() - t0 >= 25);
    pthread_join(th, NULL);
    VAL("blocking eventfd read", (read(e, &efd_val, 8), (long)efd_val));
    w.ms = 20;
    th = start_waker(&w);
    VAL("blocking read woken by a write", (read(e, &efd_val, 8), (long)efd_val));
    pthread_join(th, NULL);

    t0 = now_ms();
    show_wait("epoll_wait(50ms) times out", ep, 50);
    VAL("  waited", now_ms() - t0 >= 45);

    /* A child process wakes us through a pipe. */
    int p[2];
    pipe(p);
    ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 2);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        sleep_ms(30);
        write(p[1], "c", 1);
        _exit(0);
    }
    show_wait("epoll_wait(-1) woken by a child's write", ep, -1);
    waitpid(c, NULL, 0);
    close(p[0]);
    close(p[1]);
    close(e);
    close(ep);
}

/* ---- nested epoll ---- */

static void nested(void) {
    printf("== nested\n");
    int inner = epoll_create1(0);
    int outer = epoll_create1(0);
    int p[2];
    pipe2(p, O_NONBLOCK);
    OK("inner watches a pipe", ctl(inner, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
    OK("outer watches inner", ctl(outer, EPOLL_CTL_ADD, inner, EPOLLIN, 100));
    OK("inner watches outer (loop)", ctl(inner, EPOLL_CTL_ADD, outer, EPOLLIN, 0));
    OK("EPOLLEXCLUSIVE on an epoll fd", ctl(outer, EPOLL_CTL_ADD, inner, EPOLLIN | EPOLLEXCLUSIVE, 0));
    show_wait("outer, nothing ready", outer, 0);
    struct pollfd pf = {inner, POLLIN, 0};
    VAL("poll(inner) before", poll(&pf, 1, 0));
    write(p[1], "x", 1);
    VAL("poll(inner) after a write", poll(&pf, 1, 0));
    VAL("  revents has POLLIN", (pf.revents & POLLIN) != 0);
    show_wait("outer reports inner", outer, 0);
    show_wait("inner reports the pipe", inner, 0);
    drain(p[0]);
    show_wait("outer after draining", outer, 0);

    struct waker w = {p[1], 30, 1};
    pthread_t th = start_waker(&w);
    show_wait("outer epoll_wait(-1) woken through inner", outer, -1);
    pthread_join(th, NULL);
    drain(p[0]);
    pf.revents = 0;
    w.ms = 30;
    th = start_waker(&w);
    VAL("poll(inner, -1) woken by a write", poll(&pf, 1, -1));
    pthread_join(th, NULL);
    drain(p[0]);

    /* A chain of epoll instances deeper than Linux allows. */
    int chain[7];
    chain[0] = epoll_create1(0);
    ctl(chain[0], EPOLL_CTL_ADD, p[0], EPOLLIN, 0);
    int first_fail = -1;
    for (int i = 1; i < 7; i++) {
        chain[i] = epoll_create1(0);
        if (ctl(chain[i], EPOLL_CTL_ADD, chain[i - 1], EPOLLIN, i) < 0 && first_fail < 0) {
            first_fail = i;
            printf("%-52s %s\n", "chain: first refused link", en(errno));
        }
    }
    VAL("chain: instances in the longest allowed chain", first_fail);
    for (int i = 0; i < 7; i++)
        close(chain[i]);
    close(p[0]);
    close(p[1]);
    close(inner);
    close(outer);
}

/* ---- timerfd ---- */

static void show_gettime(const char *label, int fd, long max_ms) {
    struct itimerspec cur;
    if (timerfd_gettime(fd, &cur) < 0) {
        printf("%-52s -1 %s\n", label, en(errno));
        return;
    }
    long long v = (long long)cur.it_value.tv_sec * 1000000000LL + cur.it_value.tv_nsec;
    long long i = (long long)cur.it_interval.tv_sec * 1000000000LL + cur.it_interval.tv_nsec;
    printf("%-52s value %s, interval %lldms\n", label,
           v == 0 ? "0" : (v > 0 && v <= max_ms * 1000000LL ? "in (0, max]" : "out of range"),
           i / 1000000);
}

static void timerfd_tests(void) {
    printf("== timerfd\n");
    OK("timerfd_create(bad clock)", timerfd_create(99, 0));
    OK("timerfd_create(bad flags)", timerfd_create(CLOCK_MONOTONIC, 1));
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    OK("timerfd_create(MONOTONIC, NONBLOCK|CLOEXEC)", t);
    uint64_t ticks = 0;
    OK("read while disarmed", read(t, &ticks, 8));
    show_gettime("gettime disarmed", t, 0);
    struct itimerspec its = {{0, 0}, {0, 60 * 1000000L}};
    struct itimerspec old;
    OK("settime 60ms one-shot", timerfd_settime(t, 0, &its, &old));
    show_gettime("gettime armed", t, 60);
    struct pollfd pf = {t, POLLIN, 0};
    VAL("poll right away", poll(&pf, 1, 0));
    long long t0 = now_ms();
    VAL("poll(-1) until expiry", poll(&pf, 1, -1));
    VAL("  waited about 60ms", now_ms() - t0 >= 40);
    VAL("read expirations", (read(t, &ticks, 8), (long)ticks));
    OK("read again", read(t, &ticks, 8));
    show_gettime("gettime after expiry", t, 0);
    char small[4];
    OK("read 4 bytes", read(t, small, 4));
    OK("write", write(t, &ticks, 8));

    its.it_interval.tv_nsec = 10 * 1000000L;
    its.it_value.tv_nsec = 10 * 1000000L;
    timerfd_settime(t, 0, &its, NULL);
    sleep_ms(65);
    read(t, &ticks, 8);
    VAL("periodic 10ms after 65ms: >= 5 expirations", ticks >= 5);
    show_gettime("gettime periodic", t, 10);
    struct itimerspec zero = {{0, 0}, {0, 0}};
    OK("disarm", timerfd_settime(t, 0, &zero, &old));
    VAL("  old interval 10ms", old.it_interval.tv_nsec == 10 * 1000000L);
    OK("read after disarm", read(t, &ticks, 8));

    /* Absolute deadlines: in the past fires at once. */
    struct timespec nowr;
    clock_gettime(CLOCK_REALTIME, &nowr);
    int tr = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    struct itimerspec past = {{0, 0}, {nowr.tv_sec - 10, 0}};
    OK("settime ABSTIME in the past", timerfd_settime(tr, TFD_TIMER_ABSTIME, &past, NULL));
    VAL("  read", (read(tr, &ticks, 8), (long)ticks));
    struct itimerspec pastp = {{1, 0}, {nowr.tv_sec - 10, nowr.tv_nsec}};
    timerfd_settime(tr, TFD_TIMER_ABSTIME, &pastp, NULL);
    VAL("  periodic 1s, 10s in the past: expirations", (read(tr, &ticks, 8), (long)ticks));
    struct itimerspec fut = {{0, 0}, {nowr.tv_sec + 3600, 0}};
    timerfd_settime(tr, TFD_TIMER_ABSTIME, &fut, NULL);
    show_gettime("  gettime for an hour from now", tr, 3600 * 1000);
    close(tr);

    struct itimerspec bad = {{0, 0}, {0, 1000000000L}};
    OK("settime tv_nsec = 1e9", timerfd_settime(t, 0, &bad, NULL));
    OK("settime bad flags", timerfd_settime(t, 0x10, &its, NULL));
    int e = eventfd(0, 0);
    OK("settime on an eventfd", timerfd_settime(e, 0, &its, NULL));
    OK("gettime on an eventfd", timerfd_gettime(e, &old));
    close(e);
    OK("settime on a closed fd", timerfd_settime(999, 0, &its, NULL));

    /* Blocking read; epoll wakes at expiry. */
    int tb = timerfd_create(CLOCK_BOOTTIME, 0);
    struct itimerspec in30 = {{0, 0}, {0, 30 * 1000000L}};
    timerfd_settime(tb, 0, &in30, NULL);
    t0 = now_ms();
    VAL("blocking read", (read(tb, &ticks, 8), (long)ticks));
    VAL("  waited", now_ms() - t0 >= 20);
    int ep = epoll_create1(0);
    ctl(ep, EPOLL_CTL_ADD, tb, EPOLLIN, 5);
    timerfd_settime(tb, 0, &in30, NULL);
    t0 = now_ms();
    show_wait("epoll_wait(-1) on a timerfd", ep, -1);
    VAL("  waited", now_ms() - t0 >= 20);
    close(ep);
    close(tb);
    close(t);
}

/* ---- signalfd ---- */

static void show_ssi(const char *label, int fd) {
    struct signalfd_siginfo si;
    ssize_t n = read(fd, &si, sizeof si);
    if (n < 0) {
        printf("%-52s -1 %s\n", label, en(errno));
        return;
    }
    printf("%-52s %zd bytes signo=%u code=%d pid_is_me=%d int=%d\n", label, n, si.ssi_signo,
           si.ssi_code, si.ssi_pid == (uint32_t)getpid(), si.ssi_int);
}

static void signalfd_tests(void) {
    printf("== signalfd\n");
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGRTMIN + 2);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, NULL);

    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    OK("signalfd sizemask 4", syscall(SYS_signalfd4, -1, &m, 4, 0));
    OK("signalfd bad flags", signalfd(-1, &m, 0x10));
    int e = eventfd(0, 0);
    OK("signalfd on an eventfd", signalfd(e, &m, 0));
    close(e);
    OK("signalfd on a closed fd", signalfd(999, &m, 0));
    sigaddset(&m, SIGKILL);
    int s = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    OK("signalfd(-1, {USR1, KILL}, NONBLOCK|CLOEXEC)", s);
    show_ssi("read with nothing pending", s);
    char small[64];
    OK("read 64 bytes", read(s, small, sizeof small));

    struct pollfd pf = {s, POLLIN, 0};
    VAL("poll before", poll(&pf, 1, 0));
    raise(SIGUSR1);
    VAL("poll after raise(SIGUSR1)", poll(&pf, 1, 0));
    show_ssi("read (tkill)", s);
    kill(getpid(), SIGUSR1);
    show_ssi("read (kill)", s);
    kill(getpid(), SIGUSR2);
    show_ssi("SIGUSR2 is not in the set", s);
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGUSR2);
    sigaddset(&m, SIGRTMIN + 2);
    VAL("update the set (returns the same fd)", signalfd(s, &m, 0) == s);
    show_ssi("now SIGUSR2 reads", s);

    union sigval sv = {.sival_int = 42};
    sigqueue(getpid(), SIGRTMIN + 2, sv);
    sv.sival_int = 43;
    sigqueue(getpid(), SIGRTMIN + 2, sv);
    raise(SIGUSR2);
    raise(SIGUSR1);
    struct signalfd_siginfo many[4];
    ssize_t n = read(s, many, sizeof many);
    printf("%-52s %zd bytes:", "read four at once", n);
    for (int i = 0; i < n / (ssize_t)sizeof many[0]; i++)
        printf(" %s%d/%d", many[i].ssi_signo == (uint32_t)SIGRTMIN + 2 ? "RTMIN+2:" : "",
               many[i].ssi_signo == (uint32_t)SIGRTMIN + 2 ? 0 : (int)many[i].ssi_signo,
               many[i].ssi_int);
    printf("\n");

    /* Through epoll, and a blocking read woken by another thread. */
    int ep = epoll_create1(0);
    ctl(ep, EPOLL_CTL_ADD, s, EPOLLIN, 11);
    show_wait("epoll, nothing pending", ep, 0);
    kill(getpid(), SIGUSR2);
    show_wait("epoll after kill", ep, 0);
    show_ssi("read", s);
    struct waker w = {0, 30, 2};
    pthread_t th = start_waker(&w);
    show_wait("epoll_wait(-1) woken by a signal", ep, -1);
    pthread_join(th, NULL);
    show_ssi("read", s);
    int sb = signalfd(-1, &m, 0);
    th = start_waker(&w);
    show_ssi("blocking read woken by kill", sb);
    pthread_join(th, NULL);
    close(sb);

    /* SIGCHLD, blocked, read with its child information. */
    sigset_t cm;
    sigemptyset(&cm);
    sigaddset(&cm, SIGCHLD);
    int sc = signalfd(-1, &cm, 0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(7);
    struct signalfd_siginfo si;
    read(sc, &si, sizeof si);
    printf("%-52s signo=%u code=%d status=%d pid_is_child=%d\n", "SIGCHLD", si.ssi_signo,
           si.ssi_code, si.ssi_status, si.ssi_pid == (uint32_t)c);
    waitpid(c, NULL, 0);
    close(sc);
    close(ep);
    close(s);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    epoll_basics();
    epoll_edges();
    eventfd_tests();
    blocking_waits();
    nested();
    timerfd_tests();
    signalfd_tests();
    printf("events ok\n");
    return 0;
}
