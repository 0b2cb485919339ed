/* read/write/readv/writev/pread/pwrite into and out of every kind of
 * buffer the kernel handles differently: one mapping, a buffer spanning
 * two mappings whose pages are unrelated, shared anonymous memory seen by
 * a child, a shared mapping of a file, read-only and unmapped memory, and
 * directories. Works in a fresh directory under /tmp, removed at the end.
 * Prints only deterministic facts; exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096L

static int failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                      \
            printf(__VA_ARGS__);                                             \
            printf(" (errno %s)\n", strerrorname_np(errno));                 \
            failures++;                                                      \
        }                                                                    \
    } while (0)

/* NULL, hidden from the compiler's argument checks. */
static void *volatile null_ptr;

static const char *err(long r) { return r < 0 ? strerrorname_np(errno) : "ok"; }

/* Byte `i` of the test pattern. */
static unsigned char pat(long i) { return (unsigned char)(i * 7 + i / 4096); }

static int pattern_ok(const unsigned char *p, long len, long from) {
    for (long i = 0; i < len; i++)
        if (p[i] != pat(from + i))
            return 0;
    return 1;
}

static void fill(unsigned char *p, long len, long from) {
    for (long i = 0; i < len; i++)
        p[i] = pat(from + i);
}

/* Four pages whose upper half is a separate mapping made after the lower
 * half (so the two halves are unrelated memory in any implementation). */
static unsigned char *two_mappings(void) {
    unsigned char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap 4 pages");
    memset(p, 0x11, 4 * PAGE);
    CHECK(munmap(p + 2 * PAGE, 2 * PAGE) == 0, "munmap upper half");
    unsigned char *q = mmap(p + 2 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(q == p + 2 * PAGE, "map upper half again");
    memset(q, 0x22, 2 * PAGE);
    return p;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    char dir[] = "/tmp/rvisor-rwpaths-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/data", dir);
    snprintf(path2, sizeof path2, "%s/out", dir);

    /* A 3 MiB + 100 byte file of the pattern. */
    long size = 3 * (1L << 20) + 100;
    unsigned char *big = malloc(4L << 20);
    fill(big, size, 0);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "create");
    long w = write(fd, big, size);
    printf("write 3 MiB+100 from one buffer: %ld\n", w);

    /* One large read: all of it in one call, then EOF. */
    memset(big, 0, 4L << 20);
    lseek(fd, 0, SEEK_SET);
    long r = read(fd, big, 4L << 20);
    printf("read 4 MiB buffer: %ld pattern=%d\n", r, pattern_ok(big, size, 0));
    r = read(fd, big, 4096);
    printf("read at EOF: %ld\n", r);
    r = read(fd, big, 0);
    printf("read 0 bytes: %ld\n", r);

    /* A buffer across two unrelated mappings. */
    unsigned char *two = two_mappings();
    unsigned char *mid = two + PAGE; /* pages 1 and 2: one in each */
    lseek(fd, 100, SEEK_SET);
    r = read(fd, mid, 2 * PAGE);
    printf("read across mappings: %ld pattern=%d pos=%ld untouched=%d,%d\n", r,
           pattern_ok(mid, 2 * PAGE, 100), (long)lseek(fd, 0, SEEK_CUR), two[PAGE - 1] == 0x11,
           two[3 * PAGE] == 0x22);
    memset(mid, 0, 2 * PAGE);
    r = pread(fd, mid, 2 * PAGE, size - 5000);
    printf("pread across mappings near EOF: %ld pattern=%d pos=%ld\n", r,
           pattern_ok(mid, r > 0 ? r : 0, size - 5000), (long)lseek(fd, 0, SEEK_CUR));

    /* readv/preadv into pieces of both mappings. */
    memset(two, 0, 4 * PAGE);
    struct iovec iov[3] = {
        {two + 10, 1000}, {two + PAGE + 3000, 2000}, {two + 3 * PAGE, 500}};
    lseek(fd, 4096, SEEK_SET);
    r = readv(fd, iov, 3);
    printf("readv 3 iovs: %ld pattern=%d,%d,%d pos=%ld\n", r, pattern_ok(two + 10, 1000, 4096),
           pattern_ok(two + PAGE + 3000, 2000, 5096), pattern_ok(two + 3 * PAGE, 500, 7096),
           (long)lseek(fd, 0, SEEK_CUR));
    r = preadv(fd, iov, 3, size - 1500);
    printf("preadv 3 iovs at EOF-1500: %ld pattern=%d,%d\n", r,
           pattern_ok(two + 10, 1000, size - 1500), pattern_ok(two + PAGE + 3000, 500, size - 500));

    /* write/writev/pwrite from both mappings, read back. */
    int out = open(path2, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(out >= 0, "create out");
    fill(two, 4 * PAGE, 0);
    w = write(out, mid, 2 * PAGE);
    struct iovec wv[3] = {{two, 100}, {two + PAGE + 4000, 200}, {two + 3 * PAGE + 1, 300}};
    long wv_n = writev(out, wv, 3);
    long pw = pwrite(out, two + PAGE, 2 * PAGE, 3 * PAGE);
    unsigned char check[5 * PAGE];
    long got = pread(out, check, sizeof check, 0);
    printf("write across mappings: %ld, writev: %ld, pwrite: %ld, file %ld bytes, data=%d,%d,%d,%d\n",
           w, wv_n, pw, got, pattern_ok(check, 2 * PAGE, PAGE),
           pattern_ok(check + 2 * PAGE, 100, 0) && pattern_ok(check + 2 * PAGE + 100, 200, PAGE + 4000),
           pattern_ok(check + 2 * PAGE + 300, 300, 3 * PAGE + 1),
           pattern_ok(check + 3 * PAGE, 2 * PAGE, PAGE));

    /* O_APPEND from a buffer across mappings. */
    int app = open(path2, O_WRONLY | O_APPEND);
    w = write(app, mid, 2 * PAGE);
    struct stat st;
    fstat(out, &st);
    printf("append across mappings: %ld size=%ld\n", w, (long)st.st_size);
    close(app);

    /* Pipes: one piece and two pieces each way. */
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    w = write(p[1], mid, 2 * PAGE);
    memset(two, 0, 4 * PAGE);
    r = read(p[0], two + 100, 2 * PAGE);
    printf("pipe across mappings: wrote %ld read %ld data=%d\n", w, r,
           pattern_ok(two + 100, r > 0 ? r : 0, PAGE));
    w = write(p[1], big, 3000);
    r = read(p[0], two + 200, 1000);
    long r2 = read(p[0], two + 1200, 4000);
    printf("pipe one mapping: wrote %ld read %ld+%ld data=%d\n", w, r, r2,
           pattern_ok(two + 200, 3000, 0));
    struct iovec pv[2] = {{two, 10}, {two + 3 * PAGE, 20}};
    w = writev(p[1], pv, 2);
    memset(two, 0, 4 * PAGE);
    struct iovec rv[2] = {{two + 2 * PAGE + 5, 15}, {two + 50, 15}};
    r = readv(p[0], rv, 2);
    printf("pipe writev/readv: %ld/%ld\n", w, r);

    /* Shared anonymous memory: a child's read lands where the parent sees it. */
    unsigned char *shared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pid = fork();
    if (pid == 0) {
        _exit(pread(fd, shared + 50, PAGE, 1000) == PAGE ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child read into shared memory: exit %d pattern=%d\n", WEXITSTATUS(status),
           pattern_ok(shared + 50, PAGE, 1000));

    /* A shared mapping of a file: read into it, the file has the bytes. */
    unsigned char *fmap = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, out, 0);
    CHECK(fmap != MAP_FAILED, "map out");
    r = pread(fd, fmap + 10, PAGE, 20000);
    memset(check, 0, PAGE);
    got = pread(out, check, PAGE, 10);
    printf("read into shared file mapping: %ld, file has it: %d\n", r,
           got == PAGE && pattern_ok(check, PAGE, 20000));
    w = pwrite(fd, fmap + 10, 100, 0);
    got = pread(fd, check, 100, 0);
    printf("write from shared file mapping: %ld data=%d\n", w, pattern_ok(check, 100, 20000));
    pwrite(fd, big, 100, 0); /* restore */
    munmap(fmap, 2 * PAGE);

    /* Bad buffers: EFAULT, nothing consumed where nothing is copied. */
    unsigned char *ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    lseek(fd, 0, SEEK_SET);
    r = read(fd, ro, 100);
    printf("read into read-only page: %s\n", err(r));
    r = read(fd, null_ptr, 100);
    printf("read into NULL: %s\n", err(r));
    unsigned char *none = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    w = write(out, none, 100);
    printf("write from PROT_NONE page: %s\n", err(w));
    w = write(out, ro, 100);
    printf("write from read-only page: %ld\n", w);
    struct iovec bad[2] = {{null_ptr, 10}, {two, 10}};
    r = readv(fd, bad, 2);
    printf("readv NULL first: %s\n", err(r));
    w = writev(out, bad, 2);
    printf("writev NULL first: %s\n", err(w));

    /* Directories say EISDIR whatever the buffer. */
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    r = read(d, two, 10);
    printf("read dir: %s\n", err(r));
    r = read(d, null_ptr, 10);
    printf("read dir into NULL: %s\n", err(r));
    r = read(d, two, 0);
    printf("read dir 0 bytes: %s\n", err(r));
    r = pread(d, two, 10, 0);
    printf("pread dir: %s\n", err(r));
    close(d);

    /* Write-only and read-only descriptors. */
    int wo = open(path, O_WRONLY);
    r = read(wo, two, 10);
    printf("read write-only fd: %s\n", err(r));
    r = read(wo, null_ptr, 10);
    printf("read write-only fd into NULL: %s\n", err(r));
    close(wo);
    int rdo = open(path, O_RDONLY);
    w = write(rdo, two, 10);
    printf("write read-only fd: %s\n", err(w));
    w = write(rdo, two, 0);
    printf("write read-only fd 0 bytes: %s\n", err(w));
    close(rdo);

    close(fd);
    close(out);
    unlink(path);
    unlink(path2);
    printf("cleanup: rmdir %d\n", rmdir(dir));
    printf("failures: %d\n", failures);
    return failures ? 1 : 0;
}
