/* Timers: alarm, setitimer/getitimer (ITIMER_REAL), and POSIX timers
 * (timer_create with SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID;
 * timer_settime/gettime/getoverrun/delete), their signal information, and
 * what fork and exec keep. POSIX timer calls go through syscall(2) so the
 * kernel's timer ids are seen as they are.
 * Prints only deterministic facts; exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *en(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : "?";
}

#define VAL(label, expr)                                                       \
    do {                                                                       \
        errno = 0;                                                             \
        long r_ = (long)(expr);                                                \
        if (r_ < 0)                                                            \
            printf("%-56s -1 %s\n", label, en(errno));                        \
        else                                                                   \
            printf("%-56s %ld\n", label, r_);                                  \
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

static volatile sig_atomic_t alrm_count;
static volatile sig_atomic_t alrm_code;

static void on_alrm(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    alrm_count++;
    alrm_code = si->si_code;
}

static int k_timer_create(clockid_t c, struct sigevent *sev, int *id) {
    return (int)syscall(SYS_timer_create, c, sev, id);
}
static int k_timer_settime(int id, int flags, const struct itimerspec *n, struct itimerspec *o) {
    return (int)syscall(SYS_timer_settime, id, flags, n, o);
}
static int k_timer_gettime(int id, struct itimerspec *cur) {
    return (int)syscall(SYS_timer_gettime, id, cur);
}
static int k_timer_getoverrun(int id) {
    return (int)syscall(SYS_timer_getoverrun, id);
}
static int k_timer_delete(int id) {
    return (int)syscall(SYS_timer_delete, id);
}

static long long ns_of(struct timespec t) {
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void alarm_tests(void) {
    printf("== alarm and setitimer\n");
    VAL("alarm(5) with none pending", alarm(5));
    VAL("alarm(3) returns the 5 s left (rounded)", alarm(3));
    VAL("alarm(0) returns the 3 s left", alarm(0));
    VAL("alarm(0) again", alarm(0));

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alrm;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    struct itimerval it = {{0, 0}, {0, 30000}};
    struct itimerval old, cur;
    long long t0 = now_ms();
    VAL("setitimer(ITIMER_REAL, 30ms)", setitimer(ITIMER_REAL, &it, &old));
    VAL("  old value was 0", old.it_value.tv_sec == 0 && old.it_value.tv_usec == 0);
    getitimer(ITIMER_REAL, &cur);
    VAL("  getitimer: 0 < value <= 30ms",
        cur.it_value.tv_sec == 0 && cur.it_value.tv_usec > 0 && cur.it_value.tv_usec <= 30000);
    while (alrm_count == 0)
        pause();
    VAL("  SIGALRM delivered once", alrm_count);
    VAL("  after >= 25ms", now_ms() - t0 >= 25);
    VAL("  si_code is SI_KERNEL", alrm_code == SI_KERNEL);
    getitimer(ITIMER_REAL, &cur);
    VAL("  disarmed afterwards", cur.it_value.tv_sec == 0 && cur.it_value.tv_usec == 0);

    alrm_count = 0;
    struct itimerval per = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_REAL, &per, NULL);
    t0 = now_ms();
    while (now_ms() - t0 < 120)
        pause();
    struct itimerval zero = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &zero, &old);
    int n = alrm_count;
    VAL("periodic 10ms for 120ms: >= 5 signals", n >= 5);
    VAL("  and <= 13", n <= 13);
    VAL("  old interval 10ms", old.it_interval.tv_sec == 0 && old.it_interval.tv_usec == 10000);
    sleep_ms(30);
    VAL("  no signal after disarming", alrm_count == n);

    struct itimerval bad = {{0, 0}, {0, 1000000}};
    VAL("setitimer tv_usec = 1e6", setitimer(ITIMER_REAL, &bad, NULL));
    VAL("setitimer which = 7", syscall(SYS_setitimer, 7, &it, NULL));
    VAL("getitimer which = 7", syscall(SYS_getitimer, 7, &cur));
    struct itimerval lng = {{2, 500000}, {100, 0}};
    setitimer(ITIMER_REAL, &lng, NULL);
    getitimer(ITIMER_REAL, &cur);
    VAL("getitimer interval 2.5s", cur.it_interval.tv_sec == 2 && cur.it_interval.tv_usec == 500000);
    VAL("  value in (99s, 100s]", cur.it_value.tv_sec == 99 || (cur.it_value.tv_sec == 100 && cur.it_value.tv_usec == 0));
    VAL("alarm(0) returns the 100 s left", alarm(0));

    /* alarm + sigtimedwait */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    sigprocmask(SIG_BLOCK, &s, NULL);
    struct itimerval in20 = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &in20, NULL);
    siginfo_t si;
    struct timespec lim = {5, 0};
    VAL("sigtimedwait(SIGALRM)", sigtimedwait(&s, &si, &lim));
    VAL("  si_code is SI_KERNEL", si.si_code == SI_KERNEL);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

static void posix_tests(void) {
    printf("== POSIX timers\n");
    int rt = SIGRTMIN + 1;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, rt);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGALRM);
    sigprocmask(SIG_BLOCK, &s, NULL);

    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = rt;
    sev.sigev_value.sival_int = 0x1234;
    int id = -1;
    VAL("timer_create(MONOTONIC, SIGEV_SIGNAL)", k_timer_create(CLOCK_MONOTONIC, &sev, &id));
    struct itimerspec cur;
    k_timer_gettime(id, &cur);
    VAL("  disarmed at first", ns_of(cur.it_value) == 0 && ns_of(cur.it_interval) == 0);
    struct itimerspec in20 = {{0, 0}, {0, 20 * 1000000L}};
    struct itimerspec old;
    VAL("timer_settime 20ms", k_timer_settime(id, 0, &in20, &old));
    k_timer_gettime(id, &cur);
    VAL("  gettime: 0 < value <= 20ms", ns_of(cur.it_value) > 0 && ns_of(cur.it_value) <= 20000000LL);
    siginfo_t si;
    long long t0 = now_ms();
    VAL("sigwaitinfo", sigwaitinfo(&s, &si) == rt);
    VAL("  after >= 15ms", now_ms() - t0 >= 15);
    VAL("  si_code is SI_TIMER", si.si_code == SI_TIMER);
    VAL("  si_value", si.si_value.sival_int);
    VAL("  si_timerid is the id", si.si_timerid == id);
    VAL("  si_overrun", si.si_overrun);
    k_timer_gettime(id, &cur);
    VAL("  disarmed after expiry", ns_of(cur.it_value) == 0);

    /* Periodic with the signal blocked: expirations become overruns. */
    struct itimerspec per = {{0, 5 * 1000000L}, {0, 5 * 1000000L}};
    k_timer_settime(id, 0, &per, NULL);
    sleep_ms(80);
    sigwaitinfo(&s, &si);
    VAL("periodic 5ms, 80ms blocked: one signal, si_overrun >= 5", si.si_overrun >= 5);
    int ov = k_timer_getoverrun(id);
    VAL("  timer_getoverrun agrees", ov == si.si_overrun);
    k_timer_gettime(id, &cur);
    VAL("  gettime interval 5ms", ns_of(cur.it_interval) == 5000000LL);
    VAL("  gettime value in (0, 5ms]", ns_of(cur.it_value) > 0 && ns_of(cur.it_value) <= 5000000LL);
    VAL("timer_delete", k_timer_delete(id));
    VAL("timer_delete again", k_timer_delete(id));
    VAL("timer_gettime after delete", k_timer_gettime(id, &cur));
    /* Drain a signal the periodic timer may have queued meanwhile. */
    struct timespec zero = {0, 0};
    while (sigtimedwait(&s, &si, &zero) > 0) {
    }

    /* No sigevent: SIGALRM carrying the timer id. */
    int id2 = -1;
    VAL("timer_create(REALTIME, NULL)", k_timer_create(CLOCK_REALTIME, NULL, &id2));
    struct timespec nowr;
    clock_gettime(CLOCK_REALTIME, &nowr);
    struct itimerspec abs = {{0, 0}, {nowr.tv_sec, nowr.tv_nsec + 0}};
    abs.it_value.tv_nsec += 20 * 1000000L;
    if (abs.it_value.tv_nsec >= 1000000000L) {
        abs.it_value.tv_sec++;
        abs.it_value.tv_nsec -= 1000000000L;
    }
    VAL("  settime TIMER_ABSTIME now+20ms", k_timer_settime(id2, TIMER_ABSTIME, &abs, NULL));
    VAL("  sigwaitinfo gets SIGALRM", sigwaitinfo(&s, &si) == SIGALRM);
    VAL("  si_code SI_TIMER", si.si_code == SI_TIMER);
    VAL("  si_value is the timer id", si.si_value.sival_int == id2);
    k_timer_delete(id2);

    /* SIGEV_NONE: nothing delivered, but time runs. */
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_NONE;
    int id3 = -1;
    VAL("timer_create(SIGEV_NONE)", k_timer_create(CLOCK_MONOTONIC, &sev, &id3));
    struct itimerspec sec = {{0, 0}, {1, 0}};
    k_timer_settime(id3, 0, &sec, NULL);
    k_timer_gettime(id3, &cur);
    VAL("  value in (0.5s, 1s]", ns_of(cur.it_value) > 500000000LL && ns_of(cur.it_value) <= 1000000000LL);
    struct itimerspec tiny = {{0, 0}, {0, 1000000L}};
    k_timer_settime(id3, 0, &tiny, &old);
    VAL("  old value in (0.5s, 1s]", ns_of(old.it_value) > 500000000LL);
    sleep_ms(10);
    k_timer_gettime(id3, &cur);
    VAL("  expired one-shot SIGEV_NONE reads 0", ns_of(cur.it_value) == 0);
    VAL("  nothing pending", sigtimedwait(&s, &si, &zero));
    k_timer_delete(id3);

    /* SIGEV_THREAD_ID: to this thread. */
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGUSR1;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    int id4 = -1;
    VAL("timer_create(SIGEV_THREAD_ID, me)", k_timer_create(CLOCK_MONOTONIC, &sev, &id4));
    k_timer_settime(id4, 0, &in20, NULL);
    VAL("  sigwaitinfo gets SIGUSR1", sigwaitinfo(&s, &si) == SIGUSR1);
    VAL("  si_timerid", si.si_timerid == id4);
    k_timer_delete(id4);

    /* Errors. */
    VAL("timer_create(clock 99)", k_timer_create(99, NULL, &id));
    VAL("timer_create(CLOCK_MONOTONIC_RAW)", k_timer_create(CLOCK_MONOTONIC_RAW, NULL, &id));
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = 7;
    VAL("timer_create(sigev_notify 7)", k_timer_create(CLOCK_MONOTONIC, &sev, &id));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = 0;
    VAL("timer_create(signal 0)", k_timer_create(CLOCK_MONOTONIC, &sev, &id));
    sev.sigev_signo = 65;
    VAL("timer_create(signal 65)", k_timer_create(CLOCK_MONOTONIC, &sev, &id));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGUSR1;
    sev._sigev_un._tid = 999999;
    VAL("timer_create(SIGEV_THREAD_ID, no such thread)", k_timer_create(CLOCK_MONOTONIC, &sev, &id));
    VAL("timer_create(bad sigevent pointer)", k_timer_create(CLOCK_MONOTONIC, (void *)8, &id));
    VAL("timer_settime(no such timer)", k_timer_settime(4242, 0, &in20, NULL));
    int id5 = -1;
    k_timer_create(CLOCK_MONOTONIC, NULL, &id5);
    VAL("timer_settime(NULL new value)", k_timer_settime(id5, 0, NULL, NULL));
    struct itimerspec bad = {{0, 0}, {0, 1000000000L}};
    VAL("timer_settime(tv_nsec 1e9)", k_timer_settime(id5, 0, &bad, NULL));
    VAL("timer_getoverrun(no such timer)", k_timer_getoverrun(4242));
    k_timer_delete(id5);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

/* fork drops timers; exec drops POSIX timers but keeps the interval
 * timer. */
static void inheritance(const char *self) {
    printf("== fork and exec\n");
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_NONE;
    int id = -1;
    k_timer_create(CLOCK_MONOTONIC, &sev, &id);
    struct itimerspec hour = {{0, 0}, {3600, 0}};
    k_timer_settime(id, 0, &hour, NULL);
    struct itimerval ihour = {{0, 0}, {3600, 0}};
    setitimer(ITIMER_REAL, &ihour, NULL);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        struct itimerspec cur;
        struct itimerval icur;
        getitimer(ITIMER_REAL, &icur);
        VAL("fork child: ITIMER_REAL disarmed", icur.it_value.tv_sec == 0 && icur.it_value.tv_usec == 0);
        VAL("fork child: timer_gettime(parent's id)", k_timer_gettime(id, &cur));
        fflush(stdout);
        char ids[16];
        snprintf(ids, sizeof ids, "%d", id);
        /* Re-arm here, then exec: the interval timer survives. */
        setitimer(ITIMER_REAL, &ihour, NULL);
        execl(self, self, "exec-child", ids, (char *)NULL);
        _exit(99);
    }
    int st = 0;
    waitpid(c, &st, 0);
    VAL("child exit status", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    struct itimerspec cur;
    VAL("parent still has its timer", k_timer_gettime(id, &cur));
    k_timer_delete(id);
    alarm(0);
}

static int exec_child(int id) {
    /* The POSIX timer created before exec is gone... */
    struct itimerspec cur;
    VAL("after exec: timer_gettime(old id)", k_timer_gettime(id, &cur));
    /* ...the interval timer is not. */
    struct itimerval icur;
    getitimer(ITIMER_REAL, &icur);
    VAL("after exec: ITIMER_REAL still armed", icur.it_value.tv_sec > 3000);
    alarm(0);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "exec-child") == 0)
        return exec_child(atoi(argv[2]));
    alarm_tests();
    posix_tests();
    inheritance("/proc/self/exe");
    printf("timers ok\n");
    return 0;
}
