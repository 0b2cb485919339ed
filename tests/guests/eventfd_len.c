#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
int main(void){ int fd=eventfd(0,EFD_NONBLOCK); uint64_t v[2]={3,4}; ssize_t n=write(fd,v,16); int e=errno; uint64_t r=0; ssize_t m=read(fd,&r,8); printf("wrote %zd (%s) read %zd counter %llu\n", n, n<0?strerror(e):"-", m, (unsigned long long)r); return 0; }
