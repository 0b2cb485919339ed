/* File syscalls beyond read/write: splice, tee, vmsplice,
 * copy_file_range, memfd_create, O_TMPFILE, flock, fcntl record and OFD
 * locks (across processes), fallocate, openat2 with RESOLVE_* flags, and
 * the O_* open flags. Works in a fresh directory under argv[1] (default
 * "."), removed at the end. Prints only deterministic facts; exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                      \
            printf(__VA_ARGS__);                                             \
            printf(" (errno %s)\n", strerror(errno));                        \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static const char *err(long r) { return r < 0 ? strerrorname_np(errno) : "ok"; }

static void write_file(const char *p, const char *s) {
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0, "create %s", p);
    CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s), "write %s", p);
    close(fd);
}

static void test_splice(void) {
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0, "pipes");
    CHECK(write(a[1], "hello splice", 12) == 12, "fill");
    ssize_t n = splice(a[0], NULL, b[1], NULL, 5, 0);
    char buf[64] = {0};
    ssize_t m = read(b[0], buf, sizeof buf);
    printf("splice pipe->pipe: %zd [%.*s]\n", n, (int)m, buf);
    /* tee copies without consuming. */
    n = tee(a[0], b[1], 100, 0);
    m = read(b[0], buf, sizeof buf);
    printf("tee: %zd [%.*s]\n", n, (int)m, buf);
    m = read(a[0], buf, sizeof buf);
    printf("after tee, source still has [%.*s]\n", (int)m, buf);
    /* file -> pipe with an offset, pipe -> file. */
    write_file("src.txt", "0123456789abcdef");
    int fd = open("src.txt", O_RDONLY);
    loff_t off = 4;
    n = splice(fd, &off, a[1], NULL, 6, 0);
    printf("splice file->pipe: %zd off=%lld pos=%lld\n", n, (long long)off,
           (long long)lseek(fd, 0, SEEK_CUR));
    n = splice(fd, NULL, a[1], NULL, 3, 0);
    printf("splice file->pipe at pos: %zd pos=%lld\n", n, (long long)lseek(fd, 0, SEEK_CUR));
    int out = open("dst.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    n = splice(a[0], NULL, out, NULL, 100, 0);
    m = pread(out, buf, sizeof buf, 0);
    printf("splice pipe->file: %zd [%.*s]\n", n, (int)m, buf);
    printf("splice file->file: %s\n", err(splice(fd, NULL, out, NULL, 4, 0)));
    printf("splice offset on pipe: %s\n", err(splice(a[0], &off, out, NULL, 4, 0)));
    printf("splice empty nonblock: %s\n", err(splice(a[0], NULL, b[1], NULL, 4, SPLICE_F_NONBLOCK)));
    close(a[1]);
    printf("splice at eof: %zd\n", splice(a[0], NULL, b[1], NULL, 4, 0));
    /* vmsplice both ways. */
    struct iovec iov[2] = {{"vm", 2}, {"splice", 6}};
    n = vmsplice(b[1], iov, 2, 0);
    char x[3] = {0}, y[5] = {0};
    struct iovec riov[2] = {{x, 3}, {y, 5}};
    m = vmsplice(b[0], riov, 2, 0);
    printf("vmsplice: wrote %zd read %zd [%.3s|%.5s]\n", n, m, x, y);
    close(fd);
    close(out);
    close(a[0]);
    close(b[0]);
    close(b[1]);
}

static void test_copy_file_range(void) {
    write_file("cfr-in", "The quick brown fox");
    int in = open("cfr-in", O_RDONLY), out = open("cfr-out", O_CREAT | O_RDWR | O_TRUNC, 0644);
    loff_t oi = 4, oo = 2;
    ssize_t n = copy_file_range(in, &oi, out, &oo, 5, 0);
    printf("copy_file_range: %zd oi=%lld oo=%lld\n", n, (long long)oi, (long long)oo);
    n = copy_file_range(in, NULL, out, NULL, 100, 0);
    char buf[64];
    ssize_t m = pread(out, buf, sizeof buf, 0);
    printf("copy_file_range at pos: %zd, out=[", n);
    for (ssize_t i = 0; i < m; i++)
        putchar(buf[i] ? buf[i] : '.');
    printf("] in pos=%lld\n", (long long)lseek(in, 0, SEEK_CUR));
    printf("copy_file_range flags: %s\n", err(copy_file_range(in, NULL, out, NULL, 1, 1)));
    int ro = open("cfr-in", O_RDONLY);
    printf("copy_file_range to read-only: %s\n", err(copy_file_range(in, NULL, ro, NULL, 1, 0)));
    oi = 0;
    printf("copy_file_range at eof: %zd\n", copy_file_range(in, NULL, out, NULL, 10, 0));
    close(in);
    close(out);
    close(ro);
}

static void test_memfd(void) {
    int fd = memfd_create("rvisor-test", MFD_CLOEXEC);
    CHECK(fd >= 0, "memfd_create");
    printf("memfd cloexec: %d\n", fcntl(fd, F_GETFD) & FD_CLOEXEC);
    CHECK(write(fd, "memfd data", 10) == 10, "memfd write");
    CHECK(ftruncate(fd, 8192) == 0, "memfd ftruncate");
    struct stat st;
    fstat(fd, &st);
    printf("memfd: size=%lld mode=%o nlink=%lu\n", (long long)st.st_size, st.st_mode & 07777,
           (unsigned long)st.st_nlink);
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "memfd mmap");
    if (p != MAP_FAILED) {
        memcpy(p + 6, "DATA", 4);
        munmap(p, 8192);
    }
    char link[128], path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("memfd link: %s\n", link);
    int again = open(path, O_RDONLY);
    char buf[16] = {0};
    n = read(again, buf, 10);
    printf("memfd reopened: %zd [%.10s] own offset=%lld\n", n, buf,
           (long long)lseek(fd, 0, SEEK_CUR));
    printf("memfd bad flags: %s\n", err(memfd_create("x", 0x100)));
    close(again);
    close(fd);
}

static void test_tmpfile(void) {
    int fd = open(".", O_TMPFILE | O_RDWR, 0600);
    CHECK(fd >= 0, "O_TMPFILE");
    CHECK(write(fd, "anon", 4) == 4, "tmpfile write");
    struct stat st;
    fstat(fd, &st);
    printf("O_TMPFILE: nlink=%lu size=%lld mode=%o\n", (unsigned long)st.st_nlink,
           (long long)st.st_size, st.st_mode & 07777);
    DIR *d = opendir(".");
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    printf("O_TMPFILE leaves no name: visible entries=%d\n", entries);
    printf("O_TMPFILE read-only: %s\n", err(open(".", O_TMPFILE | O_RDONLY, 0600)));
    printf("O_TMPFILE on a file: %s\n", err(open("src.txt", O_TMPFILE | O_RDWR, 0600)));
    close(fd);
}

static int wait_child(pid_t pid) {
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_flock(void) {
    write_file("lockfile", "0123456789012345678901234567890123456789");
    int a = open("lockfile", O_RDWR), b = open("lockfile", O_RDWR);
    printf("flock EX a: %s\n", err(flock(a, LOCK_EX)));
    printf("flock EX|NB b: %s\n", err(flock(b, LOCK_EX | LOCK_NB)));
    printf("flock SH|NB b: %s\n", err(flock(b, LOCK_SH | LOCK_NB)));
    int dupd = dup(a);
    printf("flock EX on dup of holder: %s\n", err(flock(dupd, LOCK_EX | LOCK_NB)));
    close(dupd);
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* Inherited description: holds the same lock. */
        int c = open("lockfile", O_RDWR);
        int nb = flock(c, LOCK_EX | LOCK_NB);
        write(p[1], nb < 0 && errno == EWOULDBLOCK ? "B" : "?", 1);
        /* Blocks until the parent unlocks. */
        int r = flock(c, LOCK_EX);
        write(p[1], r == 0 ? "L" : "?", 1);
        _exit(0);
    }
    char c1 = 0, c2 = 0;
    read(p[0], &c1, 1);
    usleep(100000);
    printf("child blocked first: %c\n", c1);
    flock(a, LOCK_UN);
    read(p[0], &c2, 1);
    printf("child got the lock after unlock: %c, child exit %d\n", c2, wait_child(pid));
    printf("flock after child exit (lock released on close): %s\n", err(flock(b, LOCK_EX | LOCK_NB)));
    close(b);
    printf("flock bad op: %s\n", err(flock(a, 0)));
    close(a);
    close(p[0]);
    close(p[1]);
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static void test_record_locks(void) {
    int fd = open("lockfile", O_RDWR);
    printf("F_SETLK W [0,10): %s\n", err(setlk(fd, F_SETLK, F_WRLCK, 0, 10)));
    printf("F_SETLK R [20,EOF): %s\n", err(setlk(fd, F_SETLK, F_RDLCK, 20, 0)));
    int p[2], q[2];
    pipe(p);
    pipe(q);
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int c = open("lockfile", O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1};
        fcntl(c, F_GETLK, &fl);
        printf("child F_GETLK: type=%s start=%lld len=%lld pid-is-parent=%d\n",
               fl.l_type == F_WRLCK ? "W" : fl.l_type == F_RDLCK ? "R" : "U",
               (long long)fl.l_start, (long long)fl.l_len, fl.l_pid == parent);
        fl = (struct flock){.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 25, .l_len = 5};
        fcntl(c, F_GETLK, &fl);
        printf("child F_GETLK read over read lock: %s\n", fl.l_type == F_UNLCK ? "unlocked" : "locked");
        fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 25, .l_len = 5};
        fcntl(c, F_GETLK, &fl);
        printf("child F_GETLK write over read lock: start=%lld len=%lld\n", (long long)fl.l_start,
               (long long)fl.l_len);
        printf("child F_SETLK [5,15): %s\n", err(setlk(c, F_SETLK, F_WRLCK, 5, 10)));
        printf("child F_SETLK [10,20): %s\n", err(setlk(c, F_SETLK, F_WRLCK, 10, 10)));
        fflush(stdout);
        write(q[1], "1", 1);
        /* Blocks until the parent closes a descriptor of the file. */
        int r = setlk(c, F_SETLKW, F_WRLCK, 0, 10);
        printf("child F_SETLKW [0,10) after parent's close: %s\n", err(r));
        fflush(stdout);
        _exit(0);
    }
    char c;
    read(q[0], &c, 1);
    usleep(100000);
    /* Closing any descriptor of the file drops the process's locks. */
    int other = open("lockfile", O_RDONLY);
    close(other);
    printf("parent: child exit %d\n", wait_child(pid));
    printf("parent F_SETLK [0,10) now held by nobody: %s\n", err(setlk(fd, F_SETLK, F_WRLCK, 0, 10)));
    printf("F_SETLK bad type: %s\n", err(setlk(fd, F_SETLK, 7, 0, 1)));
    printf("F_SETLK negative start: %s\n", err(setlk(fd, F_SETLK, F_WRLCK, -5, 1)));
    int ro = open("lockfile", O_RDONLY);
    printf("F_SETLK write lock on read-only fd: %s\n", err(setlk(ro, F_SETLK, F_WRLCK, 0, 1)));
    /* OFD locks: owned by the description, conflict within a process. */
    int o1 = open("lockfile", O_RDWR), o2 = open("lockfile", O_RDWR);
    printf("F_OFD_SETLK o1 [100,110): %s\n", err(setlk(o1, F_OFD_SETLK, F_WRLCK, 100, 10)));
    printf("F_OFD_SETLK o2 [105,106): %s\n", err(setlk(o2, F_OFD_SETLK, F_WRLCK, 105, 1)));
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    fcntl(o2, F_OFD_GETLK, &fl);
    printf("F_OFD_GETLK: type=%s pid=%d\n", fl.l_type == F_WRLCK ? "W" : "?", fl.l_pid);
    fl.l_pid = 1;
    printf("F_OFD_SETLK with l_pid: %s\n", err(fcntl(o1, F_OFD_SETLK, &fl)));
    close(o1);
    printf("F_OFD_SETLK o2 after o1 closed: %s\n", err(setlk(o2, F_OFD_SETLK, F_WRLCK, 105, 1)));
    close(o2);
    close(ro);
    close(fd);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}

static void test_fallocate(void) {
    int fd = open("falloc", O_CREAT | O_RDWR | O_TRUNC, 0644);
    struct stat st;
    printf("fallocate 0: %s", err(fallocate(fd, 0, 0, 8192)));
    fstat(fd, &st);
    printf(" size=%lld\n", (long long)st.st_size);
    printf("fallocate KEEP_SIZE: %s", err(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 100000)));
    fstat(fd, &st);
    printf(" size=%lld\n", (long long)st.st_size);
    char ones[8192];
    memset(ones, '1', sizeof ones);
    pwrite(fd, ones, sizeof ones, 0);
    printf("punch hole: %s", err(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096)));
    char b[2];
    pread(fd, b, 1, 4096);
    pread(fd, b + 1, 1, 4095);
    fstat(fd, &st);
    printf(" byte4096=%d byte4095=%c size=%lld\n", b[0], b[1], (long long)st.st_size);
    printf("punch without KEEP_SIZE: %s\n", err(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 1)));
    printf("fallocate len 0: %s\n", err(fallocate(fd, 0, 0, 0)));
    printf("fallocate bad mode: %s\n", err(fallocate(fd, 0x1000, 0, 1)));
    int ro = open("falloc", O_RDONLY);
    printf("fallocate read-only: %s\n", err(fallocate(ro, 0, 0, 1)));
    int p[2];
    pipe(p);
    printf("fallocate pipe: %s\n", err(fallocate(p[1], 0, 0, 1)));
    printf("sync_file_range: %s\n", err(sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)));
    printf("sync_file_range bad flags: %s\n", err(sync_file_range(fd, 0, 0, 8)));
    printf("sync_file_range pipe: %s\n", err(sync_file_range(p[0], 0, 0, 0)));
    printf("readahead: %s\n", err(readahead(fd, 0, 4096)));
    printf("readahead pipe: %s\n", err(readahead(p[0], 0, 1)));
    printf("syncfs: %s\n", err(syncfs(fd)));
    printf("syncfs bad fd: %s\n", err(syncfs(999)));
    close(p[0]);
    close(p[1]);
    close(ro);
    close(fd);
}

static long openat2_(int dirfd, const char *path, unsigned long long flags,
                     unsigned long long resolve, size_t size) {
    struct open_how how = {.flags = flags, .mode = 0, .resolve = resolve};
    return syscall(SYS_openat2, dirfd, path, &how, size);
}

static void test_openat2(void) {
    mkdir("root", 0755);
    mkdir("root/sub", 0755);
    write_file("root/file", "inside");
    write_file("outside", "outside");
    symlink("/file", "root/abs");
    symlink("../outside", "root/up");
    symlink("file", "root/rel");
    int d = open("root", O_RDONLY | O_DIRECTORY);
    size_t sz = sizeof(struct open_how);
    char buf[16] = {0};
    long fd;
    printf("openat2 plain: %s\n", err(fd = openat2_(d, "file", O_RDONLY, 0, sz)));
    if (fd >= 0)
        close(fd);
    printf("BENEATH ../outside: %s\n", err(openat2_(d, "../outside", O_RDONLY, RESOLVE_BENEATH, sz)));
    printf("BENEATH sub/../file: %s\n", err(fd = openat2_(d, "sub/../file", O_RDONLY, RESOLVE_BENEATH, sz)));
    if (fd >= 0)
        close(fd);
    printf("BENEATH absolute: %s\n", err(openat2_(d, "/etc/hostname", O_RDONLY, RESOLVE_BENEATH, sz)));
    printf("BENEATH abs symlink: %s\n", err(openat2_(d, "abs", O_RDONLY, RESOLVE_BENEATH, sz)));
    printf("BENEATH up symlink: %s\n", err(openat2_(d, "up", O_RDONLY, RESOLVE_BENEATH, sz)));
    fd = openat2_(d, "abs", O_RDONLY, RESOLVE_IN_ROOT, sz);
    memset(buf, 0, sizeof buf);
    if (fd >= 0) {
        read(fd, buf, sizeof buf - 1);
        close(fd);
    }
    printf("IN_ROOT abs symlink: %s [%s]\n", err(fd), buf);
    fd = openat2_(d, "../../../file", O_RDONLY, RESOLVE_IN_ROOT, sz);
    memset(buf, 0, sizeof buf);
    if (fd >= 0) {
        read(fd, buf, sizeof buf - 1);
        close(fd);
    }
    printf("IN_ROOT ../../../file: %s [%s]\n", err(fd), buf);
    fd = openat2_(d, "/file", O_RDONLY, RESOLVE_IN_ROOT, sz);
    if (fd >= 0)
        close(fd);
    printf("IN_ROOT /file: %s\n", err(fd));
    printf("NO_SYMLINKS rel: %s\n", err(openat2_(d, "rel", O_RDONLY, RESOLVE_NO_SYMLINKS, sz)));
    printf("NO_SYMLINKS O_NOFOLLOW|O_PATH: %s\n",
           err(fd = openat2_(d, "rel", O_PATH | O_NOFOLLOW, RESOLVE_NO_SYMLINKS, sz)));
    if (fd >= 0)
        close(fd);
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", d);
    printf("NO_MAGICLINKS: %s\n", err(openat2_(AT_FDCWD, self, O_RDONLY, RESOLVE_NO_MAGICLINKS, sz)));
    printf("magic link allowed: %s\n", err(fd = openat2_(AT_FDCWD, self, O_RDONLY, 0, sz)));
    if (fd >= 0)
        close(fd);
    printf("BENEATH|IN_ROOT: %s\n", err(openat2_(d, "file", O_RDONLY, RESOLVE_BENEATH | RESOLVE_IN_ROOT, sz)));
    printf("unknown resolve: %s\n", err(openat2_(d, "file", O_RDONLY, 0x1000, sz)));
    printf("unknown flag: %s\n", err(openat2_(d, "file", O_RDONLY | (1ULL << 40), 0, sz)));
    printf("small size: %s\n", err(openat2_(d, "file", O_RDONLY, 0, 8)));
    struct {
        struct open_how how;
        unsigned long long extra;
    } big = {{.flags = O_RDONLY}, 1};
    printf("nonzero tail: %s\n", err(syscall(SYS_openat2, d, "file", &big, sizeof big)));
    big.extra = 0;
    printf("zero tail: %s\n", err(fd = syscall(SYS_openat2, d, "file", &big, sizeof big)));
    if (fd >= 0)
        close(fd);
    struct open_how m = {.flags = O_RDONLY, .mode = 0644};
    printf("mode without O_CREAT: %s\n", err(syscall(SYS_openat2, d, "file", &m, sz)));
    close(d);
}

static void test_open_flags(void) {
    write_file("f", "12345");
    printf("O_EXCL existing: %s\n", err(open("f", O_CREAT | O_EXCL | O_WRONLY, 0644)));
    symlink("f", "link");
    symlink("nowhere", "dangling");
    printf("O_NOFOLLOW on symlink: %s\n", err(open("link", O_RDONLY | O_NOFOLLOW)));
    printf("O_EXCL on dangling symlink: %s\n", err(open("dangling", O_CREAT | O_EXCL | O_WRONLY, 0644)));
    printf("O_DIRECTORY on file: %s\n", err(open("f", O_RDONLY | O_DIRECTORY)));
    printf("O_CREAT|O_DIRECTORY: %s\n", err(open("newdir", O_CREAT | O_DIRECTORY | O_RDONLY, 0755)));
    printf("O_WRONLY on dir: %s\n", err(open(".", O_WRONLY)));
    printf("O_CREAT trailing slash: %s\n", err(open("g/", O_CREAT | O_WRONLY, 0644)));
    int fd = open("f", O_WRONLY | O_APPEND);
    lseek(fd, 0, SEEK_SET);
    write(fd, "67", 2);
    printf("O_APPEND pos after write: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
    /* Linux's pwrite appends on O_APPEND files, whatever the offset. */
    pwrite(fd, "89", 2, 0);
    close(fd);
    fd = open("f", O_RDONLY);
    char buf[16] = {0};
    read(fd, buf, sizeof buf - 1);
    printf("after append: %s\n", buf);
    close(fd);
    fd = open("f", O_RDWR | O_TRUNC);
    struct stat st;
    fstat(fd, &st);
    printf("O_TRUNC size: %lld\n", (long long)st.st_size);
    close(fd);
    fd = open("f", O_RDONLY | O_CREAT, 0600);
    printf("O_CREAT existing keeps mode: %o\n", (fstat(fd, &st), st.st_mode & 0777));
    close(fd);
    umask(027);
    fd = open("masked", O_CREAT | O_WRONLY, 0777);
    fstat(fd, &st);
    printf("umask 027 applied: %o\n", st.st_mode & 0777);
    close(fd);
    umask(022);
    /* Credentials: an unprivileged child meets permission checks. */
    write_file("secret", "root only");
    chmod("secret", 0600);
    mkdir("locked", 0700);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(1000) != 0 || setuid(1000) != 0)
            _exit(99);
        printf("uid 1000 open 0600 root file: %s\n", err(open("secret", O_RDONLY)));
        printf("uid 1000 create in 0700 root dir: %s\n", err(open("locked/x", O_CREAT | O_WRONLY, 0644)));
        printf("uid 1000 access W_OK: %s\n", err(access("secret", W_OK)));
        printf("uid 1000 read world-readable: %s\n", err(open("f", O_RDONLY)));
        fflush(stdout);
        _exit(0);
    }
    printf("unprivileged child exit %d\n", wait_child(pid));
    rmdir("locked");
}

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : ".";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fileops.XXXXXX", base);
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("mkdtemp");
        return 1;
    }
    chmod(".", 0755);
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_splice();
    test_copy_file_range();
    test_memfd();
    test_tmpfile();
    test_flock();
    test_record_locks();
    test_fallocate();
    test_openat2();
    test_open_flags();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "/bin/busybox rm -rf %s", dir);
    chdir("/");
    if (system(cmd) != 0)
        printf("cleanup failed\n");
    printf("failures: %d\n", failures);
    return failures ? 2 : 0;
}
