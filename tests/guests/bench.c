/* Micro-benchmark guest for examples/bench.rs (not used by the tests).
 *
 * usage: bench MODE ITERATIONS [PATH]
 *   getppid  - ITERATIONS x syscall(SYS_getppid)          -> ns per call
 *   open     - ITERATIONS x open(PATH) + close            -> ns per pair
 *              (PATH defaults to /etc/hostname)
 *   fork     - ITERATIONS x fork, child _exit(0), waitpid -> ns per pair
 *
 * Each mode first runs a warm-up of ITERATIONS/10 operations (at least 1),
 * then times ITERATIONS operations with clock_gettime(CLOCK_MONOTONIC)
 * and prints one line:
 *
 *   bench mode=MODE iterations=N total_ns=T ns_per_op=X
 *
 * Every result is checked (getppid stable, open succeeds, the child exits
 * 0); on error it prints to stderr and exits 1, so a sandbox that returns
 * wrong answers cannot look fast. Build: cc -O2 -static. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("clock_gettime");
        exit(1);
    }
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long expected_ppid;

static void run_getppid(long n) {
    for (long i = 0; i < n; i++) {
        long r = syscall(SYS_getppid);
        if (r != expected_ppid) {
            fprintf(stderr, "getppid returned %ld, expected %ld\n", r, expected_ppid);
            exit(1);
        }
    }
}

static const char *open_path = "/etc/hostname";

static void run_open(long n) {
    for (long i = 0; i < n; i++) {
        int fd = open(open_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror(open_path);
            exit(1);
        }
        if (close(fd) != 0) {
            perror("close");
            exit(1);
        }
    }
}

static void run_fork(long n) {
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        if (pid == 0)
            _exit(0);
        int status;
        if (waitpid(pid, &status, 0) != pid) {
            perror("waitpid");
            exit(1);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child status %#x, expected exit 0\n", status);
            exit(1);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s getppid|open|fork ITERATIONS [PATH]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (*end != '\0' || n <= 0) {
        fprintf(stderr, "bad ITERATIONS: %s\n", argv[2]);
        return 2;
    }
    if (argc == 4)
        open_path = argv[3];

    void (*run)(long);
    if (strcmp(mode, "getppid") == 0) {
        expected_ppid = syscall(SYS_getppid);
        run = run_getppid;
    } else if (strcmp(mode, "open") == 0) {
        run = run_open;
    } else if (strcmp(mode, "fork") == 0) {
        run = run_fork;
    } else {
        fprintf(stderr, "unknown mode: %s\n", mode);
        return 2;
    }

    long warmup = n / 10 > 0 ? n / 10 : 1;
    run(warmup);

    long long t0 = now_ns();
    run(n);
    long long t1 = now_ns();

    long long total = t1 - t0;
    printf("bench mode=%s iterations=%ld total_ns=%lld ns_per_op=%.1f\n", mode, n, total,
           (double)total / (double)n);
    return 0;
}
