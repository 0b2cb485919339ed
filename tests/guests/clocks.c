/* Clocks: monotonicity, nanosleep duration, agreement between clocks.
 * Prints only booleans; exits 0. */
#include <errno.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long ns(struct timespec t) {
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(void) {
    struct timespec a, b, r1, r2, res;
    int mono_ok = 1, real_ok = 1, boot_ok = 1;
    for (int i = 0; i < 10000; i++) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        clock_gettime(CLOCK_MONOTONIC, &b);
        mono_ok &= ns(b) >= ns(a);
    }
    for (int i = 0; i < 1000; i++) {
        clock_gettime(CLOCK_BOOTTIME, &a);
        clock_gettime(CLOCK_BOOTTIME, &b);
        boot_ok &= ns(b) >= ns(a);
    }
    clock_gettime(CLOCK_REALTIME, &r1);
    for (int i = 0; i < 1000; i++) {
        clock_gettime(CLOCK_REALTIME, &r2);
        real_ok &= r2.tv_sec >= r1.tv_sec && r2.tv_nsec >= 0 && r2.tv_nsec < 1000000000L;
    }
    printf("monotonic non-decreasing: %d\n", mono_ok);
    printf("boottime non-decreasing: %d\n", boot_ok);
    printf("realtime sane: %d\n", real_ok);
    printf("realtime after 2020: %d\n", r2.tv_sec > 1577836800L);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    clock_gettime(CLOCK_REALTIME, &r2);
    long long diff = ns(r2) - ((long long)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL);
    printf("gettimeofday agrees with realtime: %d\n", diff >= 0 && diff < 1000000000LL);
    time_t t = time(NULL);
    printf("time() agrees with realtime: %d\n", t >= r2.tv_sec - 1 && t <= r2.tv_sec + 1);

    printf("monotonic resolution <= 1ms: %d\n",
           clock_getres(CLOCK_MONOTONIC, &res) == 0 && res.tv_sec == 0 && res.tv_nsec <= 1000000);

    clock_gettime(CLOCK_MONOTONIC, &a);
    struct timespec req = {0, 10 * 1000000L};
    int rc = nanosleep(&req, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long slept = ns(b) - ns(a);
    printf("nanosleep 10ms returned 0: %d, elapsed >= 10ms: %d, < 5s: %d\n", rc == 0,
           slept >= 10000000LL, slept < 5000000000LL);

    clock_gettime(CLOCK_MONOTONIC, &a);
    struct timespec abs = a;
    abs.tv_nsec += 20 * 1000000L;
    if (abs.tv_nsec >= 1000000000L) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000L;
    }
    rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("clock_nanosleep absolute reached deadline: %d\n", rc == 0 && ns(b) >= ns(abs));

    /* CPU time advances with work and never goes backwards */
    struct timespec c1, c2;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 50000000UL; i++)
        x += i;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c2);
    printf("process cpu time advanced: %d\n", ns(c2) > ns(c1));
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    printf("thread cpu time positive: %d\n", ns(c1) > 0);

    errno = 0;
    printf("invalid clock: EINVAL=%d\n", clock_gettime((clockid_t)12345, &a) == -1 && errno == EINVAL);
    errno = 0;
    struct timespec bad = {0, 1000000000L};
    printf("nanosleep bad nsec: EINVAL=%d\n", nanosleep(&bad, NULL) == -1 && errno == EINVAL);
    return 0;
}
