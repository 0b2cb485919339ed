/* File mappings: MAP_PRIVATE writes stay private, MAP_SHARED writes reach
 * the file after msync, munmap, mprotect (a write to a read-only page
 * faults with SIGSEGV at the right address), mremap, a mapping past EOF
 * (SIGBUS). Deterministic output; exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIZE 8192

static sigjmp_buf jb;
static volatile void *fault_addr;
static volatile int fault_sig;

static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    fault_sig = sig;
    fault_addr = si->si_addr;
    siglongjmp(jb, 1);
}

static unsigned sum(const unsigned char *p, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

static unsigned file_sum(int fd) {
    unsigned char buf[SIZE];
    ssize_t n = pread(fd, buf, SIZE, 0);
    return n == SIZE ? sum(buf, SIZE) : 0;
}

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    char dir[] = "/tmp/rvisor-mmap-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[64];
    snprintf(path, sizeof path, "%s/data", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    unsigned char pattern[SIZE];
    for (int i = 0; i < SIZE; i++)
        pattern[i] = (unsigned char)(i * 7 + 3);
    if (write(fd, pattern, SIZE) != SIZE) {
        perror("write");
        return 1;
    }
    unsigned orig = file_sum(fd);
    printf("file written: %d bytes, sum %u\n", SIZE, orig);

    /* MAP_PRIVATE: copy-on-write, the file does not change */
    unsigned char *priv = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (priv == MAP_FAILED) {
        perror("mmap private");
        return 1;
    }
    printf("private mapping matches file: %d\n", memcmp(priv, pattern, SIZE) == 0);
    memset(priv + 100, 'P', 5000);
    printf("private write visible in mapping: %d, file unchanged: %d\n", priv[4000] == 'P',
           file_sum(fd) == orig);

    /* MAP_SHARED: writes reach the file */
    unsigned char *shared = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shared == MAP_FAILED) {
        perror("mmap shared");
        return 1;
    }
    memcpy(shared + 10, "SHARED!", 7);
    shared[SIZE - 1] = 'Z';
    printf("msync: %d\n", msync(shared, SIZE, MS_SYNC));
    char check[8] = {0};
    pread(fd, check, 7, 10);
    unsigned char lastb;
    pread(fd, &lastb, 1, SIZE - 1);
    printf("file sees shared write: '%s' last='%c'\n", check, lastb);
    /* a write(2) to the file shows up in the shared mapping */
    pwrite(fd, "WRITE", 5, 2000);
    printf("shared mapping sees write(2): %d\n", memcmp(shared + 2000, "WRITE", 5) == 0);
    /* the private page that was already copied keeps the private data */
    printf("private copy keeps its data: %d\n", priv[2000] == 'P');
    printf("munmap shared: %d, munmap private: %d\n", munmap(shared, SIZE), munmap(priv, SIZE));

    /* mprotect: a write to a read-only page raises SIGSEGV at its address */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    unsigned char *anon = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(anon, 0xAB, 4 * page);
    printf("mprotect read-only: %d\n", mprotect(anon + page, page, PROT_READ));
    volatile unsigned char *target = anon + page + 123;
    fault_sig = 0;
    if (sigsetjmp(jb, 1) == 0) {
        *target = 1;
        printf("write to read-only page did NOT fault\n");
    } else {
        printf("write to read-only page: signal %d, address exact: %d\n", fault_sig,
               fault_addr == (void *)target);
    }
    printf("read-only page still readable: %d\n", anon[page + 5] == 0xAB);
    printf("neighbour page still writable: %d\n", (anon[0] = 7) == 7);
    mprotect(anon + page, page, PROT_READ | PROT_WRITE);
    anon[page + 123] = 42;
    printf("writable again: %d\n", anon[page + 123] == 42);
    /* PROT_NONE: even reads fault */
    mprotect(anon + 2 * page, page, PROT_NONE);
    fault_sig = 0;
    if (sigsetjmp(jb, 1) == 0) {
        volatile unsigned char v = anon[2 * page];
        (void)v;
        printf("read of PROT_NONE page did NOT fault\n");
    } else {
        printf("read of PROT_NONE page: signal %d\n", fault_sig);
    }

    munmap(anon, 4 * page);

    /* mremap grows a mapping and keeps its contents */
    unsigned char *small = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(small, 0x5A, 2 * page);
    unsigned char *grown = mremap(small, 2 * page, 64 * page, MREMAP_MAYMOVE);
    if (grown == MAP_FAILED) {
        perror("mremap");
        return 1;
    }
    printf("mremap kept contents: %d, new tail zeroed: %d\n",
           grown[0] == 0x5A && grown[2 * page - 1] == 0x5A, grown[63 * page] == 0);
    grown[63 * page] = 1;
    munmap(grown, 64 * page);

    /* after munmap the address faults */
    fault_sig = 0;
    if (sigsetjmp(jb, 1) == 0) {
        volatile unsigned char v = *(volatile unsigned char *)grown;
        (void)v;
        printf("read after munmap did NOT fault\n");
    } else {
        printf("read after munmap: signal %d\n", fault_sig);
    }

    /* a shared mapping larger than the file: the page past EOF gives SIGBUS */
    ftruncate(fd, page);
    unsigned char *big = mmap(NULL, 2 * page, PROT_READ, MAP_SHARED, fd, 0);
    printf("first page readable: %d\n", big[0] == pattern[0]);
    fault_sig = 0;
    if (sigsetjmp(jb, 1) == 0) {
        volatile unsigned char v = big[page + 1];
        (void)v;
        printf("read past EOF did NOT fault\n");
    } else {
        printf("read past EOF: signal %d\n", fault_sig);
    }
    munmap(big, 2 * page);

    struct stat st;
    fstat(fd, &st);
    printf("final file size: %lld\n", (long long)st.st_size);
    close(fd);
    int u = unlink(path);
    int d = rmdir(dir);
    printf("cleanup: unlink %d rmdir %d\n", u, d);
    return 0;
}
