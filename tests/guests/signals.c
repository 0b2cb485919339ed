/* Signals: SA_RESTART vs EINTR on a blocking pipe read, SA_SIGINFO
 * details, sigaltstack + SA_ONSTACK, sigprocmask + sigpending, SIG_IGN,
 * raise. Deterministic output; exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_count;
static volatile sig_atomic_t info_ok;

static void on_usr1(int sig) {
    (void)sig;
    usr1_count++;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Wait until process `pid` is sleeping (state S in /proc/PID/stat). */
static void wait_until_sleeping(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            char buf[512];
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = 0;
            char *p = strrchr(buf, ')');
            if (p && p[1] == ' ' && p[2] == 'S')
                return;
        }
        sleep_ms(1);
    }
}

/* A child signals the parent while it is blocked in read(), then writes. */
static void blocked_read(int restart) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    usr1_count = 0;

    int fds[2];
    pipe(fds);
    pid_t parent = getpid();
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        wait_until_sleeping(parent);
        sleep_ms(20);
        kill(parent, SIGUSR1);
        sleep_ms(50);
        write(fds[1], "data", 4);
        _exit(0);
    }
    close(fds[1]);
    char buf[16];
    errno = 0;
    ssize_t n = read(fds[0], buf, sizeof buf);
    int e = errno;
    if (n < 0) /* interrupted: the data still arrives afterwards */
        n = read(fds[0], buf, sizeof buf);
    printf("%s: first read %s, then got %zd bytes '%.*s', handler ran %d time(s)\n",
           restart ? "SA_RESTART" : "no SA_RESTART",
           e == EINTR ? "failed with EINTR" : "was restarted", n, (int)(n > 0 ? n : 0), buf,
           (int)usr1_count);
    close(fds[0]);
    waitpid(child, NULL, 0);
}

static void on_info(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    info_ok = si->si_signo == sig && si->si_pid == getpid() && si->si_uid == getuid();
    if (si->si_code == SI_TKILL)
        info_ok |= 2;
    else if (si->si_code == SI_USER)
        info_ok |= 4;
    else if (si->si_code == SI_QUEUE && si->si_value.sival_int == 1234)
        info_ok |= 8;
}

static char *alt_base;
static size_t alt_size;
static volatile sig_atomic_t on_alt, onstack_flag;

static void on_usr2(int sig) {
    (void)sig;
    char local;
    uintptr_t p = (uintptr_t)&local;
    on_alt = p >= (uintptr_t)alt_base && p < (uintptr_t)alt_base + alt_size;
    stack_t cur;
    sigaltstack(NULL, &cur);
    onstack_flag = (cur.ss_flags & SS_ONSTACK) != 0;
}

static volatile sig_atomic_t term_count;
static void on_term(int sig) {
    (void)sig;
    term_count++;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);

    blocked_read(1);
    blocked_read(0);

    /* SA_SIGINFO: raise (tgkill -> SI_TKILL), kill (SI_USER),
     * sigqueue (SI_QUEUE with a value). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_info;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    info_ok = 0;
    raise(SIGUSR1);
    printf("siginfo raise: fields ok=%d SI_TKILL=%d\n", info_ok & 1, (info_ok & 2) != 0);
    info_ok = 0;
    kill(getpid(), SIGUSR1);
    printf("siginfo kill: fields ok=%d SI_USER=%d\n", info_ok & 1, (info_ok & 4) != 0);
    info_ok = 0;
    sigqueue(getpid(), SIGUSR1, (union sigval){.sival_int = 1234});
    printf("siginfo sigqueue: fields ok=%d SI_QUEUE+value=%d\n", info_ok & 1, (info_ok & 8) != 0);

    /* sigaltstack + SA_ONSTACK */
    alt_size = 1 << 16;
    alt_base = malloc(alt_size);
    stack_t ss = {.ss_sp = alt_base, .ss_size = alt_size, .ss_flags = 0};
    printf("sigaltstack set: %d\n", sigaltstack(&ss, NULL));
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    printf("handler on alt stack: %d, SS_ONSTACK reported: %d\n", (int)on_alt, (int)onstack_flag);
    stack_t cur;
    sigaltstack(NULL, &cur);
    printf("after handler: SS_ONSTACK=%d size ok=%d\n", (cur.ss_flags & SS_ONSTACK) != 0,
           cur.ss_size == alt_size);
    /* without SA_ONSTACK the handler runs on the normal stack */
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    printf("without SA_ONSTACK on alt stack: %d\n", (int)on_alt);

    /* sigprocmask + sigpending: a blocked signal stays pending and is
     * delivered when unblocked. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    usr1_count = 0;
    sigset_t block, old, pend;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    raise(SIGUSR1);
    raise(SIGUSR1); /* standard signals do not queue */
    sigpending(&pend);
    printf("blocked: pending USR1=%d USR2=%d handler ran %d\n", sigismember(&pend, SIGUSR1),
           sigismember(&pend, SIGUSR2), (int)usr1_count);
    sigprocmask(SIG_SETMASK, &old, NULL);
    sigpending(&pend);
    printf("unblocked: pending USR1=%d handler ran %d\n", sigismember(&pend, SIGUSR1),
           (int)usr1_count);

    /* Real-time signals queue. */
    sa.sa_handler = on_usr1;
    sigaction(SIGRTMIN + 1, &sa, NULL);
    usr1_count = 0;
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    for (int i = 0; i < 3; i++)
        raise(SIGRTMIN + 1);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    printf("rt signal queued deliveries: %d\n", (int)usr1_count);

    /* SIG_IGN, then a handler, for SIGTERM */
    signal(SIGTERM, SIG_IGN);
    raise(SIGTERM);
    printf("ignored SIGTERM: still alive\n");
    signal(SIGTERM, on_term);
    raise(SIGTERM);
    raise(SIGTERM);
    printf("SIGTERM handler ran %d times\n", (int)term_count);

    /* sigsuspend: wait for a signal from a child with it blocked otherwise */
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    usr1_count = 0;
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        kill(parent, SIGUSR1);
        _exit(0);
    }
    sigset_t wait_mask;
    sigemptyset(&wait_mask);
    errno = 0;
    int r = sigsuspend(&wait_mask);
    printf("sigsuspend returned %d EINTR=%d handler ran %d\n", r, errno == EINTR,
           (int)usr1_count);
    sigprocmask(SIG_SETMASK, &old, NULL);
    waitpid(child, NULL, 0);

    /* kill(pid, 0) probes existence */
    printf("kill(self, 0) = %d\n", kill(getpid(), 0));
    return 0;
}
