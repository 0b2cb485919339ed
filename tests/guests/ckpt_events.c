/* Event objects and timers across a checkpoint: an eventfd (semaphore,
 * non-blocking), a periodic timerfd, a signalfd with a pending signal, an
 * epoll set over them and a pipe (one-shot, edge-triggered and level
 * interests, nested in a second epoll), setitimer(ITIMER_REAL) with a
 * SIGALRM handler and two POSIX timers. Runs ~0.6 s waiting on the timerfd
 * so a checkpoint lands mid-run; prints "start" first and deterministic
 * results at the end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000L

static volatile sig_atomic_t alarms, usr2s, usr2_value = -1;

static void on_alarm(int sig) {
    (void)sig;
    alarms++;
}

static void on_usr2(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    usr2s++;
    usr2_value = si->si_value.sival_int;
}

static void die(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

/* epoll_wait with no timeout; prints the reported data words, sorted. */
static void report(const char *name, int ep) {
    struct epoll_event ev[8];
    int n;
    do {
        n = epoll_wait(ep, ev, 8, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        die("epoll_wait");
    uint64_t d[8];
    for (int i = 0; i < n; i++)
        d[i] = ev[i].data.u64;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (d[j] < d[i]) {
                uint64_t t = d[i];
                d[i] = d[j];
                d[j] = t;
            }
    printf("%s:", name);
    for (int i = 0; i < n; i++)
        printf(" %llu", (unsigned long long)d[i]);
    printf("\n");
}

static void add(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl add");
}

int main(void) {
    printf("start\n");
    fflush(stdout);

    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct sigaction sa2 = {0};
    sa2.sa_sigaction = on_usr2;
    sa2.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa2, NULL);

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    int sfd = signalfd(-1, &usr1, SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd");
    union sigval v = {.sival_int = 42};
    if (sigqueue(getpid(), SIGUSR1, v) != 0)
        die("sigqueue");

    int efd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    if (efd < 0)
        die("eventfd");

    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    if (tfd < 0)
        die("timerfd_create");
    struct itimerspec its = {{0, 100 * MS}, {0, 100 * MS}};
    if (timerfd_settime(tfd, 0, &its, NULL) != 0)
        die("timerfd_settime");

    int p[2];
    if (pipe(p) != 0)
        die("pipe");
    if (write(p[1], "hello", 5) != 5)
        die("write");

    int ep = epoll_create1(0);
    int outer = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || outer < 0)
        die("epoll_create1");
    add(ep, efd, EPOLLIN | EPOLLONESHOT, 1);
    add(ep, tfd, EPOLLIN, 2);
    add(ep, sfd, EPOLLIN, 3);
    add(ep, p[0], EPOLLIN | EPOLLET, 4);
    add(outer, ep, EPOLLIN, 9);

    struct itimerval iv = {{0, 150000}, {0, 150000}};
    if (setitimer(ITIMER_REAL, &iv, NULL) != 0)
        die("setitimer");

    timer_t t_sig, t_none;
    struct sigevent se = {0};
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = SIGUSR2;
    se.sigev_value.sival_int = 77;
    if (timer_create(CLOCK_MONOTONIC, &se, &t_sig) != 0)
        die("timer_create");
    struct itimerspec one = {{0, 0}, {0, 400 * MS}};
    if (timer_settime(t_sig, 0, &one, NULL) != 0)
        die("timer_settime");
    struct sigevent none = {0};
    none.sigev_notify = SIGEV_NONE;
    if (timer_create(CLOCK_MONOTONIC, &none, &t_none) != 0)
        die("timer_create none");
    struct itimerspec ten = {{1, 0}, {10, 0}};
    if (timer_settime(t_none, 0, &ten, NULL) != 0)
        die("timer_settime none");

    /* Before the checkpoint (the timerfd has not expired yet). */
    report("first", ep);  /* one-shot eventfd, signalfd, pipe edge */
    report("second", ep); /* only the level-triggered signalfd */

    /* ~0.6 s: the checkpoint lands in here. */
    uint64_t ticks = 0;
    while (ticks < 6) {
        uint64_t n;
        ssize_t r = read(tfd, &n, sizeof n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != sizeof n)
            die("read timerfd");
        ticks += n;
    }
    struct itimerspec cur;
    timerfd_gettime(tfd, &cur);
    printf("timerfd: ticks>=6 interval=%ldms armed=%d\n", cur.it_interval.tv_nsec / MS,
           cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 100 * MS);

    /* Wait (bounded) for the POSIX timer's signal. */
    for (int i = 0; i < 100 && usr2s == 0; i++) {
        struct timespec ts = {0, 10 * MS};
        nanosleep(&ts, NULL);
    }
    struct itimerval off = {{0, 0}, {0, 0}}, old;
    setitimer(ITIMER_REAL, &off, &old);
    printf("itimer: alarms>=3 %d interval=%ldus\n", alarms >= 3, (long)old.it_interval.tv_usec);
    printf("posix: usr2=%d value=%d overrun=%d\n", (int)usr2s, (int)usr2_value,
           timer_getoverrun(t_sig));
    struct itimerspec left;
    timer_gettime(t_none, &left);
    printf("posix none: interval=%lds remaining<=10s %d >8s %d\n", (long)left.it_interval.tv_sec,
           left.it_value.tv_sec < 10 || (left.it_value.tv_sec == 10 && left.it_value.tv_nsec == 0),
           left.it_value.tv_sec >= 8);

    /* The interest lists kept their state. */
    if (epoll_ctl(ep, EPOLL_CTL_DEL, tfd, NULL) != 0)
        die("epoll_ctl del");
    report("after", ep); /* one-shot still disabled, edge consumed */
    report("nested", outer);
    if (write(p[1], "!", 1) != 1)
        die("write");
    struct epoll_event again = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 1};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, efd, &again) != 0)
        die("epoll_ctl mod");
    report("rearmed", ep);

    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != sizeof si)
        die("read signalfd");
    printf("signalfd: signo=%u int=%d\n", si.ssi_signo, si.ssi_int);

    printf("eventfd:");
    for (int i = 0; i < 4; i++) {
        uint64_t n;
        if (read(efd, &n, sizeof n) == sizeof n)
            printf(" %llu", (unsigned long long)n);
        else
            printf(" %s", errno == EAGAIN ? "EAGAIN" : strerror(errno));
    }
    printf("\n");

    char buf[16] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    printf("pipe: %zd %s\n", n, buf);
    printf("done\n");
    return 0;
}
