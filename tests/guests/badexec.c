/* execve of things that are not programs: each must fail with the errno
 * Linux gives, and the caller must carry on. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void try_exec(const char *what, const char *path) {
    char *argv[] = {(char *)path, NULL};
    char *envp[] = {NULL};
    int r = execve(path, argv, envp);
    printf("%-28s ret=%d errno=%s\n", what, r, r < 0 ? strerrorname_np(errno) : "-");
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
        perror(path);
        exit(2);
    }
    close(fd);
    chmod(path, mode);
}

int main(void) {
    char dir[] = "/tmp/rvisor-badexec-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char p[256];

    /* Random bytes with the exec bit: ENOEXEC. */
    snprintf(p, sizeof p, "%s/garbage", dir);
    write_file(p, "\x01\x02\x03\x04 not an elf at all", 24, 0755);
    try_exec("garbage", p);

    /* An ELF header for another machine (EM_AARCH64): ENOEXEC. */
    unsigned char elf[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    elf[16] = 2;   /* ET_EXEC */
    elf[18] = 183; /* EM_AARCH64 */
    snprintf(p, sizeof p, "%s/arm64", dir);
    write_file(p, elf, sizeof elf, 0755);
    try_exec("foreign machine", p);

    /* A truncated x86_64 header: ENOEXEC. */
    elf[18] = 62;
    snprintf(p, sizeof p, "%s/truncated", dir);
    write_file(p, elf, 20, 0755);
    try_exec("truncated header", p);

    /* No exec permission: EACCES. */
    snprintf(p, sizeof p, "%s/noexec", dir);
    write_file(p, "#!/bin/sh\n", 10, 0644);
    try_exec("no exec bit", p);

    /* A directory: EACCES. */
    try_exec("directory", dir);

    /* Missing: ENOENT. A script whose interpreter is missing: ENOENT. */
    snprintf(p, sizeof p, "%s/missing", dir);
    try_exec("missing", p);
    snprintf(p, sizeof p, "%s/badinterp", dir);
    write_file(p, "#!/nonexistent/interp\n", 22, 0755);
    try_exec("missing interpreter", p);

    printf("still alive\n");
    return 0;
}
