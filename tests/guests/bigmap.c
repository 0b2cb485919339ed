/* A 256 MiB anonymous mapping touched page by page; the sum is checked;
 * then munmap. Exits 0. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE (256UL << 20)

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    size_t pages = SIZE / page;
    int zero = 1;
    for (size_t i = 0; i < pages; i++) {
        zero &= p[i * page + (i % page)] == 0; /* fresh anonymous memory reads as zero */
        p[i * page] = (unsigned char)(i & 0xff);
        p[i * page + page - 1] = (unsigned char)(i >> 8);
    }
    uint64_t sum = 0, want = 0;
    for (size_t i = 0; i < pages; i++) {
        sum += p[i * page] + p[i * page + page - 1];
        want += (i & 0xff) + ((i >> 8) & 0xff);
    }
    printf("pages=%zu zero-filled=%d sum=%llu expected=%llu\n", pages, zero,
           (unsigned long long)sum, (unsigned long long)want);
    printf("munmap=%d\n", munmap(p, SIZE));
    return sum == want && zero ? 0 : 1;
}
