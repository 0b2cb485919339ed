/* raise(SIGSEGV) with the default action kills the process: the CLI
 * reports 128+11 = 139. */
#include <signal.h>
#include <stdio.h>

int main(void) {
    printf("about to raise SIGSEGV\n");
    fflush(stdout);
    raise(SIGSEGV);
    printf("still alive?!\n");
    return 0;
}
