/* fork + pipe: a child writes, the parent reads; waitpid reports a normal
 * exit status and a death by signal. Exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, int status) {
    if (WIFEXITED(status))
        printf("%s: exited %d\n", what, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
    else
        printf("%s: other status\n", what);
}

int main(void) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        close(fds[0]);
        for (int i = 0; i < 100; i++) {
            char line[64];
            int n = snprintf(line, sizeof line, "line %03d from child\n", i);
            if (write(fds[1], line, n) != n)
                _exit(99);
        }
        close(fds[1]);
        _exit(7);
    }
    close(fds[1]);
    static char buf[8192];
    size_t total = 0, lines = 0;
    ssize_t n;
    while (total < sizeof buf && (n = read(fds[0], buf + total, sizeof buf - total)) > 0)
        total += n;
    for (size_t i = 0; i < total; i++)
        lines += buf[i] == '\n';
    char last[64] = "";
    if (total >= 20)
        memcpy(last, buf + total - 20, 19);
    close(fds[0]);
    printf("parent read %zu bytes, %zu lines, last: %s\n", total, lines, last);
    int status;
    pid_t w = waitpid(child, &status, 0);
    printf("waitpid matched child: %d\n", w == child);
    report("writer child", status);

    /* A child killed by SIGKILL from its parent. */
    fflush(stdout);
    pid_t sleeper = fork();
    if (sleeper == 0) {
        for (;;)
            pause();
    }
    kill(sleeper, SIGKILL);
    waitpid(sleeper, &status, 0);
    report("killed child", status);

    /* A child that dies of its own SIGTERM. */
    fflush(stdout);
    pid_t self_killer = fork();
    if (self_killer == 0) {
        kill(getpid(), SIGTERM);
        _exit(0);
    }
    waitpid(self_killer, &status, 0);
    report("self-terminated child", status);

    /* Several children reaped with WNOHANG polling, then ECHILD. */
    fflush(stdout);
    int sum = 0;
    for (int i = 1; i <= 5; i++)
        if (fork() == 0)
            _exit(i * 10);
    int reaped = 0;
    while (reaped < 5) {
        pid_t r = waitpid(-1, &status, 0);
        if (r > 0 && WIFEXITED(status)) {
            sum += WEXITSTATUS(status);
            reaped++;
        }
    }
    printf("reaped %d children, exit status sum %d\n", reaped, sum);
    errno = 0;
    pid_t none = waitpid(-1, &status, WNOHANG);
    printf("no more children: ret=%d ECHILD=%d\n", (int)none, errno == ECHILD);

    /* Reading from a pipe whose writer is gone gives EOF; writing to a pipe
     * whose reader is gone gives EPIPE (SIGPIPE ignored). */
    signal(SIGPIPE, SIG_IGN);
    int p2[2];
    pipe(p2);
    close(p2[0]);
    errno = 0;
    ssize_t wr = write(p2[1], "x", 1);
    printf("write to closed pipe: ret=%zd EPIPE=%d\n", wr, errno == EPIPE);
    close(p2[1]);
    return 0;
}
