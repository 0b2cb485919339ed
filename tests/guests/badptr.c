/* Bad pointers and unknown syscalls must fail cleanly with EFAULT/ENOSYS,
 * never crash the program. Exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what, long ret) {
    int e = errno;
    printf("%-28s ret=%ld errno=%s\n", what, ret, ret < 0 ? strerrorname_np(e) : "-");
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    errno = 0;
    show("write(1, 0x1, 10)", write(1, (void *)1, 10));
    int z = open("/dev/zero", O_RDONLY);
    errno = 0;
    show("read(/dev/zero, NULL, 10)", read(z, NULL, 10));
    errno = 0;
    show("read(/dev/zero, NULL, 0)", read(z, NULL, 0));
    close(z);
    errno = 0;
    show("open(0x1)", syscall(SYS_open, (void *)1, O_RDONLY));
    errno = 0;
    show("stat(path, 0x8)", syscall(SYS_stat, "/", (void *)8));
    errno = 0;
    show("clock_gettime(0x10)", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)16));
    errno = 0;
    struct iovec iov[2] = {{"ok", 2}, {(void *)1, 5}};
    int fds[2];
    pipe(fds);
    show("writev(pipe, bad 2nd iov)", writev(fds[1], iov, 2));
    errno = 0;
    show("pipe(NULL)", syscall(SYS_pipe, NULL));
    errno = 0;
    /* a kernel-space address */
    show("write(kernel address)", write(1, (void *)0xffffffff81000000UL, 4));
    errno = 0;
    /* an unmapped low address */
    show("uname(0x1000)", syscall(SYS_uname, (void *)0x1000));
    errno = 0;
    show("syscall(1000)", syscall(1000));
    errno = 0;
    show("syscall(-1)", syscall(-1L));
    errno = 0;
    show("syscall(100000)", syscall(100000));
    errno = 0;
    show("close(-1)", close(-1));
    errno = 0;
    show("close(9999)", close(9999));
    errno = 0;
    show("read(closed fd)", read(fds[0] + 100, (char[4]){0}, 4));
    printf("still alive\n");
    return 0;
}
