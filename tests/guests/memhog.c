/* Touches MiB megabytes of anonymous memory, every other page non-zero,
 * says "ready", then sleeps: a sandbox worth checkpointing for size and
 * speed measurements. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
    size_t len = mib << 20;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (size_t off = 0; off < len; off += 4096) {
        p[off] = (off / 4096) % 2 ? 0 : (unsigned char)(1 + off / 4096 % 250);
    }
    printf("ready\n");
    fflush(stdout);
    sleep(600);
    return 0;
}
