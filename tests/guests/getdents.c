/* getdents64 via syscall(): 200 files in a fresh directory, read with a
 * small buffer, names sorted, count and checksum printed; rewind re-reads
 * the same; an unlinked file disappears. Exits 0. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NFILES 200

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static char *names[NFILES + 16];

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read all entries except . and ..; return their count; report types. */
static int read_all(int fd, int *n_regular, int *saw_dots, int bufsize) {
    char buf[4096];
    int n = 0;
    *n_regular = 0;
    *saw_dots = 0;
    for (;;) {
        long r = syscall(SYS_getdents64, fd, buf, bufsize);
        if (r < 0) {
            perror("getdents64");
            exit(1);
        }
        if (r == 0)
            break;
        for (long off = 0; off < r;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) {
                (*saw_dots)++;
                continue;
            }
            if (d->d_type == DT_REG)
                (*n_regular)++;
            if (n < NFILES + 16)
                names[n] = strdup(d->d_name);
            n++;
        }
    }
    return n;
}

static uint64_t checksum(int n) {
    qsort(names, n, sizeof names[0], cmp);
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) {
        for (const char *p = names[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ '/') * 1099511628211ULL;
    }
    return h;
}

int main(void) {
    char dir[] = "/tmp/rvisor-getdents-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[128];
    for (int i = 0; i < NFILES; i++) {
        snprintf(path, sizeof path, "%s/file-%03d-%s", dir, i, i % 2 ? "odd" : "even-longer-name");
        int fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0644);
        if (fd < 0) {
            perror("create");
            return 1;
        }
        close(fd);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int regular, dots;
    /* a small buffer forces many getdents64 calls */
    int n = read_all(fd, &regular, &dots, 512);
    printf("entries=%d regular=%d dots=%d\n", n, regular, dots);
    uint64_t sum = checksum(n);
    printf("checksum=%016llx first=%s last=%s\n", (unsigned long long)sum, names[0], names[n - 1]);
    for (int i = 0; i < n; i++)
        free(names[i]);

    /* at the end of the directory getdents64 returns 0 */
    long r = syscall(SYS_getdents64, fd, path, sizeof path);
    printf("at end: ret=%ld\n", r);

    /* a buffer too small for one entry */
    lseek(fd, 0, SEEK_SET);
    errno = 0;
    r = syscall(SYS_getdents64, fd, path, 8);
    printf("tiny buffer: ret=%ld EINVAL=%d\n", r, errno == EINVAL);

    /* rewind and read again with a big buffer */
    lseek(fd, 0, SEEK_SET);
    n = read_all(fd, &regular, &dots, 4096);
    printf("after rewind: entries=%d checksum=%016llx\n", n, (unsigned long long)checksum(n));
    for (int i = 0; i < n; i++)
        free(names[i]);

    /* unlink a few, read again */
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof path, "%s/file-%03d-%s", dir, i * 20, (i * 20) % 2 ? "odd" : "even-longer-name");
        unlink(path);
    }
    lseek(fd, 0, SEEK_SET);
    n = read_all(fd, &regular, &dots, 1024);
    printf("after unlink: entries=%d checksum=%016llx\n", n, (unsigned long long)checksum(n));

    /* getdents64 on a regular file fails with ENOTDIR */
    snprintf(path, sizeof path, "%s/%s", dir, names[0]);
    int ffd = open(path, O_RDONLY);
    errno = 0;
    r = syscall(SYS_getdents64, ffd, path, sizeof path);
    printf("on a file: ret=%ld ENOTDIR=%d\n", r, errno == ENOTDIR);
    close(ffd);

    /* clean up */
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
        free(names[i]);
    }
    close(fd);
    printf("rmdir=%d\n", rmdir(dir));
    return 0;
}
