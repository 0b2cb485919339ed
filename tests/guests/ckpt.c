/* A program worth checkpointing mid-run: two threads, a child process fed
 * through a pipe, a file in /tmp it appends to, timers between steps. Its
 * output is deterministic: "start" first, the results at the end. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STEPS 60

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void *worker(void *arg) {
    long mul = (long)arg, sum = 0;
    for (long i = 0; i < STEPS; i++) {
        sum += i * mul;
        nap(10);
    }
    return (void *)sum;
}

int main(void) {
    printf("start\n");
    fflush(stdout);
    char dir[] = "/tmp/rvisor-ckpt-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "%s/numbers", dir);
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 2;
    }
    pid_t child = fork();
    if (child == 0) {
        close(p[1]);
        FILE *in = fdopen(p[0], "r");
        long sum = 0, v;
        while (fscanf(in, "%ld", &v) == 1) {
            FILE *out = fopen(path, "a");
            fprintf(out, "%ld\n", v);
            fclose(out);
            sum += v;
        }
        _exit((int)(sum % 200));
    }
    close(p[0]);
    pthread_t a, b;
    pthread_create(&a, NULL, worker, (void *)2);
    pthread_create(&b, NULL, worker, (void *)3);
    for (int i = 0; i < STEPS; i++) {
        dprintf(p[1], "%d\n", i);
        nap(10);
    }
    close(p[1]);
    void *ra, *rb;
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    int status;
    waitpid(child, &status, 0);
    FILE *f = fopen(path, "r");
    long lines = 0, total = 0, v;
    while (f && fscanf(f, "%ld", &v) == 1) {
        lines++;
        total += v;
    }
    if (f)
        fclose(f);
    unlink(path);
    rmdir(dir);
    printf("threads %ld %ld\n", (long)ra, (long)rb);
    printf("child exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    printf("file lines %ld total %ld\n", lines, total);
    return 0;
}
