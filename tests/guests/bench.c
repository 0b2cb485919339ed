/* Micro-benchmark guest for examples/bench.rs and examples/fsbench.rs
 * (not used by the tests).
 *
 * usage: bench MODE ITERATIONS [PATH [BLOCK [SIZE]]]
 *   getppid   - ITERATIONS x syscall(SYS_getppid)          -> ns per call
 *   open      - ITERATIONS x open(PATH) + close            -> ns per pair
 *               (PATH defaults to /etc/hostname)
 *   fork      - ITERATIONS x fork, child _exit(0), waitpid -> ns per pair
 *   stat      - ITERATIONS x stat(PATH)                    -> ns per call
 *   openread  - ITERATIONS x open(PATH) + read(4 KiB buffer, to EOF) +
 *               close                                     -> ns per triple
 *   getdents  - ITERATIONS x open(PATH, O_DIRECTORY) + getdents64 (32 KiB
 *               buffer) to the end + close; BLOCK, if given, is the entry
 *               count expected (. and .. included)        -> ns per listing
 *   read      - ITERATIONS passes of lseek(0) + read(BLOCK) x SIZE/BLOCK
 *               over the existing file PATH (SIZE: its size); every read
 *               must return a full block (the last: the rest)
 *                                                         -> ns per read
 *   write     - ITERATIONS passes of lseek(0) + write(BLOCK) x SIZE/BLOCK
 *               into PATH, created if missing and never truncated, so
 *               passes after the first overwrite it        -> ns per write
 *   readback  - writes SIZE bytes to PATH (created, truncated) untimed,
 *               then like `read`: the sandbox reading a file it wrote
 *                                                         -> ns per read
 *
 * BLOCK defaults to 1 MiB, SIZE to 256 MiB (both in bytes). For write
 * and readback, a PATH of memfd:NAME is a fresh memfd_create(NAME) file
 * instead (the medium of a sandbox's own files under `rvisor do`).
 *
 * Each mode first runs a warm-up of ITERATIONS/10 operations (at least 1;
 * for read, write and readback: passes), then times ITERATIONS operations
 * with clock_gettime(CLOCK_MONOTONIC) and prints one line:
 *
 *   bench mode=MODE iterations=N total_ns=T ns_per_op=X
 *
 * read, write and readback add ops=BLOCKS block=BYTES bytes=TOTAL
 * MiB_per_s=R (ns_per_op is then per block, N counts passes).
 *
 * Every result is checked (getppid stable, open succeeds, the child exits
 * 0, byte and entry counts, data read back matches a pattern); on error
 * it prints to stderr and exits 1, so a sandbox that returns wrong
 * answers cannot look fast. Build: cc -O2 -static. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

static void run_stat(long n) {
    struct stat st;
    for (long i = 0; i < n; i++) {
        if (stat(open_path, &st) != 0) {
            perror(open_path);
            exit(1);
        }
    }
}

/* The small file's size, learnt before timing; every openread checks it. */
static long small_size = -1;

static void run_openread(long n) {
    char buf[4096];
    for (long i = 0; i < n; i++) {
        int fd = open(open_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror(open_path);
            exit(1);
        }
        long total = 0;
        for (;;) {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0) {
                perror("read");
                exit(1);
            }
            if (r == 0)
                break;
            total += r;
        }
        if (close(fd) != 0) {
            perror("close");
            exit(1);
        }
        if (small_size < 0)
            small_size = total;
        else if (total != small_size) {
            fprintf(stderr, "read %ld bytes of %s, expected %ld\n", total, open_path, small_size);
            exit(1);
        }
    }
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Entries getdents must find (0: whatever the first listing finds). */
static long expected_entries;

static void run_getdents(long n) {
    static char buf[32768];
    for (long i = 0; i < n; i++) {
        int fd = open(open_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            perror(open_path);
            exit(1);
        }
        long entries = 0;
        for (;;) {
            long r = syscall(SYS_getdents64, fd, buf, sizeof buf);
            if (r < 0) {
                perror("getdents64");
                exit(1);
            }
            if (r == 0)
                break;
            for (long off = 0; off < r;) {
                struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
                off += d->d_reclen;
                entries++;
            }
        }
        close(fd);
        if (expected_entries == 0)
            expected_entries = entries;
        else if (entries != expected_entries) {
            fprintf(stderr, "listed %ld entries of %s, expected %ld\n", entries, open_path,
                    expected_entries);
            exit(1);
        }
    }
}

/* ---- sequential I/O ----
 *
 * The data format (shared with examples/fsbench.rs, which creates the file
 * `read` reads): every 4 KiB page starts with its file offset as a
 * little-endian u64, and its other bytes are 0xa5. A read checks the first
 * word of every block it gets, so wrong data or a wrong offset is caught
 * at negligible cost. */

#define PAGE 4096L

static long block = 1L << 20;
static long file_size = 256L << 20;
static char *iobuf;
static int io_fd = -1;
/* Blocks transferred by the last call of a sequential mode. */
static long io_ops;

static void stamp(char *buf, long len, long off) {
    for (long p = 0; p < len; p += PAGE)
        memcpy(buf + p, &(uint64_t){(uint64_t)(off + p)}, 8);
}

static void run_read(long passes) {
    io_ops = 0;
    for (long pass = 0; pass < passes; pass++) {
        if (lseek(io_fd, 0, SEEK_SET) != 0) {
            perror("lseek");
            exit(1);
        }
        for (long off = 0; off < file_size;) {
            long want = file_size - off < block ? file_size - off : block;
            ssize_t r = read(io_fd, iobuf, block);
            if (r != want) {
                if (r < 0)
                    perror("read");
                else
                    fprintf(stderr, "read %zd bytes at %ld, expected %ld\n", r, off, want);
                exit(1);
            }
            uint64_t word;
            memcpy(&word, iobuf, 8);
            if (word != (uint64_t)off) {
                fprintf(stderr, "bad data at %ld: first word %#lx\n", off, (unsigned long)word);
                exit(1);
            }
            off += r;
            io_ops++;
        }
    }
}

static void run_write(long passes) {
    io_ops = 0;
    for (long pass = 0; pass < passes; pass++) {
        if (lseek(io_fd, 0, SEEK_SET) != 0) {
            perror("lseek");
            exit(1);
        }
        for (long off = 0; off < file_size; off += block) {
            long len = file_size - off < block ? file_size - off : block;
            stamp(iobuf, len, off);
            ssize_t w = write(io_fd, iobuf, len);
            if (w != len) {
                if (w < 0)
                    perror("write");
                else
                    fprintf(stderr, "short write: %zd of %ld bytes at %ld\n", w, len, off);
                exit(1);
            }
            io_ops++;
        }
    }
}

/* Opens PATH for a sequential mode and sets up the buffer. */
static void setup_io(const char *mode) {
    if (block < PAGE || block % PAGE != 0 || file_size <= 0 || file_size % PAGE != 0) {
        fprintf(stderr, "BLOCK and SIZE must be positive multiples of %ld\n", PAGE);
        exit(2);
    }
    iobuf = malloc(block);
    if (!iobuf) {
        perror("malloc");
        exit(1);
    }
    memset(iobuf, 0xa5, block);
    int write_mode = strcmp(mode, "read") != 0;
    int flags = write_mode ? O_RDWR | O_CREAT : O_RDONLY;
    if (strcmp(mode, "readback") == 0)
        flags |= O_TRUNC;
    if (strncmp(open_path, "memfd:", 6) == 0 && write_mode)
        io_fd = memfd_create(open_path + 6, MFD_CLOEXEC);
    else
        io_fd = open(open_path, flags | O_CLOEXEC, 0644);
    if (io_fd < 0) {
        perror(open_path);
        exit(1);
    }
    if (strcmp(mode, "read") == 0) {
        struct stat st;
        if (fstat(io_fd, &st) != 0) {
            perror("fstat");
            exit(1);
        }
        file_size = st.st_size;
        if (file_size <= 0 || file_size % PAGE != 0) {
            fprintf(stderr, "%s: size %ld is not a positive multiple of %ld\n", open_path,
                    file_size, PAGE);
            exit(1);
        }
    } else if (strcmp(mode, "readback") == 0) {
        run_write(1);
    }
}

static long parse_size(const char *s, const char *what) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v <= 0) {
        fprintf(stderr, "bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 6) {
        fprintf(stderr,
                "usage: %s getppid|open|fork|stat|openread|getdents|read|write|readback "
                "ITERATIONS [PATH [BLOCK [SIZE]]]\n",
                argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (*end != '\0' || n <= 0) {
        fprintf(stderr, "bad ITERATIONS: %s\n", argv[2]);
        return 2;
    }
    if (argc >= 4)
        open_path = argv[3];
    if (argc >= 5)
        block = parse_size(argv[4], "BLOCK");
    if (argc >= 6)
        file_size = parse_size(argv[5], "SIZE");

    void (*run)(long);
    if (strcmp(mode, "getppid") == 0) {
        expected_ppid = syscall(SYS_getppid);
        run = run_getppid;
    } else if (strcmp(mode, "open") == 0) {
        run = run_open;
    } else if (strcmp(mode, "fork") == 0) {
        run = run_fork;
    } else if (strcmp(mode, "stat") == 0) {
        run = run_stat;
    } else if (strcmp(mode, "openread") == 0) {
        run = run_openread;
    } else if (strcmp(mode, "getdents") == 0) {
        expected_entries = argc >= 5 ? block : 0;
        run = run_getdents;
    } else if (strcmp(mode, "read") == 0 || strcmp(mode, "readback") == 0) {
        setup_io(mode);
        run = run_read;
    } else if (strcmp(mode, "write") == 0) {
        setup_io(mode);
        run = run_write;
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
    if (io_fd >= 0) {
        double bytes = (double)io_ops * (double)block;
        if (strcmp(mode, "write") == 0 && close(io_fd) != 0) {
            perror("close");
            return 1;
        }
        printf("bench mode=%s iterations=%ld total_ns=%lld ns_per_op=%.1f ops=%ld block=%ld "
               "bytes=%.0f MiB_per_s=%.1f\n",
               mode, n, total, (double)total / (double)io_ops, io_ops, block, bytes,
               bytes / (1 << 20) / ((double)total / 1e9));
        return 0;
    }
    printf("bench mode=%s iterations=%ld total_ns=%lld ns_per_op=%.1f\n", mode, n, total,
           (double)total / (double)n);
    return 0;
}
