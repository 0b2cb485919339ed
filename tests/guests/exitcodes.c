/* Exit status 3, with atexit handlers run and stdio flushed. */
#include <stdio.h>
#include <stdlib.h>

static void first(void) { printf("atexit: registered first, runs last\n"); }
static void second(void) { printf("atexit: registered second, runs first\n"); }

int main(void) {
    atexit(first);
    atexit(second);
    printf("buffered output is flushed at exit\n");
    fprintf(stderr, "a line on stderr\n");
    exit(3);
}
