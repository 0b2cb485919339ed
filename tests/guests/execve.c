/* execve: re-exec itself with arguments and environment, exec busybox,
 * exec failures (ENOENT, EACCES), and finally exec from a multi-threaded
 * process (the other threads must vanish). Exits 9 (from the final exec). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int run_child(char *const argv[]) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execve(argv[0], argv, environ);
        printf("execve %s failed: %s\n", argv[0], strerror(errno));
        fflush(stdout);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void *idle_thread(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "child") == 0) {
        printf("child: argc=%d argv0=%s", argc, argv[0]);
        for (int i = 2; i < argc; i++)
            printf(" [%s]", argv[i]);
        const char *mark = getenv("RVISOR_EXEC_MARK");
        printf(" mark=%s\n", mark ? mark : "(unset)");
        return 5;
    }

    setenv("RVISOR_EXEC_MARK", "inherited", 1);
    char *self[] = {"/proc/self/exe", "child", "two words", "", "last", NULL};
    /* argv[0] as given to execve is what the new program sees */
    char *self2[] = {argv[0], "child", NULL};
    printf("re-exec via /proc/self/exe -> %d\n", run_child(self));
    printf("re-exec via argv[0] -> %d\n", run_child(self2) == 5);

    char *bb[] = {"/bin/busybox", "echo", "hello from busybox", NULL};
    printf("busybox echo -> %d\n", run_child(bb));

    char *missing[] = {"/nonexistent/program", NULL};
    printf("missing -> %d\n", run_child(missing));

    char *notexec[] = {"tests/fixtures/lorem.txt", NULL};
    printf("not executable -> %d\n", run_child(notexec));

    char *dir[] = {"/tmp", NULL};
    printf("directory -> %d\n", run_child(dir));

    /* In-process failures leave the process intact. */
    errno = 0;
    int r = execve("/nonexistent", (char *[]){"x", NULL}, environ);
    printf("failed execve returned %d ENOENT=%d\n", r, errno == ENOENT);

    /* exec from a process with another thread running */
    pthread_t t;
    pthread_create(&t, NULL, idle_thread, NULL);
    printf("final exec\n");
    fflush(stdout);
    char *fin[] = {"/bin/busybox", "sh", "-c", "echo after exec: $RVISOR_EXEC_MARK; exit 9", NULL};
    execve(fin[0], fin, environ);
    perror("final execve");
    return 1;
}
