/* Pseudo-terminals: /dev/ptmx and /dev/pts, the line discipline (echo,
 * line editing, VEOF, ISIG, OPOST, VMIN/VTIME), window size and SIGWINCH,
 * a controlling terminal acquired by a session leader, and hangup.
 *
 * The parent drives the master; a child in its own session uses the
 * slave as its controlling terminal. Two pipes order the two processes'
 * output, so it is deterministic. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static int p2c[2], c2p[2];
static volatile sig_atomic_t got_int, got_winch, got_hup;

static void on_sig(int s) {
    if (s == SIGINT) got_int++;
    if (s == SIGWINCH) got_winch++;
    if (s == SIGHUP) got_hup++;
}

static const char *ename(int e) {
    switch (e) {
    case EIO: return "EIO";
    case EAGAIN: return "EAGAIN";
    case EPERM: return "EPERM";
    case ENOTTY: return "ENOTTY";
    case ENXIO: return "ENXIO";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    default: return "E?";
    }
}

/* The bytes as a C string literal body (two calls may share a printf). */
static const char *esc(const char *in, int n) {
    static char bufs[2][4096];
    static int which;
    char *out = bufs[which++ & 1];
    int o = 0;
    for (int i = 0; i < n && o < 4096 - 5; i++) {
        unsigned char c = in[i];
        if (c == '\r') o += sprintf(out + o, "\\r");
        else if (c == '\n') o += sprintf(out + o, "\\n");
        else if (c == '\t') o += sprintf(out + o, "\\t");
        else if (c == '\\' || c == '\'') o += sprintf(out + o, "\\%c", c);
        else if (c < 32 || c >= 127) o += sprintf(out + o, "\\x%02x", c);
        else out[o++] = c;
    }
    out[o] = 0;
    return out;
}

static void tell(int fd) {
    char c = 'x';
    if (write(fd, &c, 1) != 1) _exit(90);
}

static void hear(int fd) {
    char c;
    if (read(fd, &c, 1) != 1) _exit(91);
}

/* Reads from the master until `last` arrives (or 5 s pass). */
static int read_until(int m, char *buf, int max, char last) {
    int got = 0;
    while (got < max) {
        struct pollfd p = {m, POLLIN, 0};
        if (poll(&p, 1, 5000) <= 0) {
            printf("TIMEOUT waiting for the master\n");
            break;
        }
        int k = read(m, buf + got, 1);
        if (k <= 0) break;
        got += k;
        if (buf[got - 1] == last) break;
    }
    return got;
}

/* Waits until `pid` sleeps (in its blocking read), seen twice 20 ms apart. */
static void wait_sleeping(pid_t pid) {
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int seen = 0;
    for (int i = 0; i < 500 && seen < 2; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(st, 1, sizeof st - 1, f) : 0;
        if (f) fclose(f);
        st[n] = 0;
        char *e = strrchr(st, ')');
        seen = e && e[1] == ' ' && e[2] == 'S' ? seen + 1 : 0;
        usleep(20000);
    }
}

static void child(const char *name) {
    close(p2c[1]);
    close(c2p[0]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    printf("child: setsid ok: %d\n", setsid() == getpid());
    int s = open(name, O_RDWR); /* a session leader's first tty: its ctty */
    printf("child: open slave: %d\n", s >= 0);
    printf("child: TIOCSCTTY: %d\n", ioctl(s, TIOCSCTTY, 0));
    printf("child: foreground group is mine: %d\n", tcgetpgrp(s) == getpid());
    printf("child: TIOCGSID is my session: %d\n", tcgetsid(s) == getpid());
    int t = open("/dev/tty", O_RDWR);
    printf("child: /dev/tty opens: %d\n", t >= 0);
    if (t >= 0) {
        struct stat a;
        fstat(t, &a);
        printf("child: /dev/tty is char 5:0: %d\n", major(a.st_rdev) == 5 && minor(a.st_rdev) == 0);
        close(t);
    }
    const char *tn = ttyname(s);
    printf("child: ttyname matches ptsname: %d\n", tn && strcmp(tn, name) == 0);
    errno = 0;
    int r = tcsetpgrp(s, getpgid(getppid()));
    printf("child: tcsetpgrp to another session's group: %d %s\n", r, ename(errno));
    unsigned n;
    errno = 0;
    r = ioctl(s, TIOCGPTN, &n);
    printf("child: TIOCGPTN on the slave: %d %s\n", r, ename(errno));
    tell(c2p[1]);

    /* Canonical reads. */
    char buf[256];
    for (int i = 0; i < 4; i++) {
        int k = read(s, buf, sizeof buf);
        printf("child: canonical read %d: %d bytes '%s'\n", i, k, esc(buf, k > 0 ? k : 0));
        tell(c2p[1]);
    }

    /* Window size. */
    hear(p2c[0]);
    struct winsize ws;
    ioctl(s, TIOCGWINSZ, &ws);
    printf("child: window %dx%d, SIGWINCH received: %d\n", ws.ws_row, ws.ws_col, got_winch);
    tell(c2p[1]);

    /* VINTR while blocked in read. */
    int k = read(s, buf, sizeof buf);
    printf("child: SIGINT received: %d, then read %d bytes '%s'\n", got_int, k, esc(buf, k > 0 ? k : 0));
    tell(c2p[1]);

    /* Output processing. */
    hear(p2c[0]);
    struct termios orig, tt;
    tcgetattr(s, &orig);
    if (write(s, "out\n", 4) != 4) _exit(92);
    tt = orig;
    tt.c_oflag &= ~OPOST;
    tcsetattr(s, TCSANOW, &tt);
    if (write(s, "raw\n", 4) != 4) _exit(92);
    tcsetattr(s, TCSANOW, &orig);
    tell(c2p[1]);

    /* Non-canonical: VMIN=3, then VMIN=0 with and without VTIME. */
    tt = orig;
    tt.c_lflag &= ~(ICANON | ECHO);
    tt.c_cc[VMIN] = 3;
    tt.c_cc[VTIME] = 0;
    tcsetattr(s, TCSANOW, &tt);
    tell(c2p[1]);
    k = read(s, buf, sizeof buf);
    printf("child: VMIN=3 read: %d bytes '%s'\n", k, esc(buf, k > 0 ? k : 0));
    tt.c_cc[VMIN] = 0;
    tcsetattr(s, TCSANOW, &tt);
    k = read(s, buf, sizeof buf);
    printf("child: VMIN=0 VTIME=0 read with no input: %d\n", k);
    tt.c_cc[VTIME] = 2;
    tcsetattr(s, TCSANOW, &tt);
    k = read(s, buf, sizeof buf);
    printf("child: VMIN=0 VTIME=2 read with no input: %d\n", k);
    tell(c2p[1]);
    hear(p2c[0]);
    struct pollfd p = {s, POLLIN, 0};
    poll(&p, 1, 5000);
    int avail = -1;
    ioctl(s, FIONREAD, &avail);
    k = read(s, buf, sizeof buf);
    printf("child: FIONREAD %d, read %d bytes '%s'\n", avail, k, esc(buf, k > 0 ? k : 0));
    tcsetattr(s, TCSANOW, &orig);
    tell(c2p[1]);

    /* Hangup: the parent closes the master while we read. The blocked
     * read fails, later ones see end of file. */
    errno = 0;
    k = read(s, buf, sizeof buf);
    printf("child: read blocked at hangup: %d %s, SIGHUP received: %d\n", k, ename(errno), got_hup);
    k = read(s, buf, sizeof buf);
    printf("child: read after hangup: %d\n", k);
    errno = 0;
    r = write(s, "x", 1);
    printf("child: write after hangup: %d %s\n", r, ename(errno));
    errno = 0;
    t = open("/dev/tty", O_RDWR);
    printf("child: /dev/tty after hangup: %d %s\n", t, ename(errno));
    _exit(0);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0) {
        perror("posix_openpt");
        return 1;
    }
    char name[64];
    snprintf(name, sizeof name, "%s", ptsname(m));
    unsigned n = 12345;
    ioctl(m, TIOCGPTN, &n);
    char want[64];
    snprintf(want, sizeof want, "/dev/pts/%u", n);
    printf("ptsname is /dev/pts/<TIOCGPTN>: %d\n", strcmp(name, want) == 0);
    printf("isatty(master): %d\n", isatty(m));
    int locked = -1;
    ioctl(m, TIOCGPTLCK, &locked);
    printf("locked before unlockpt: %d\n", locked);
    errno = 0;
    int r = open(name, O_RDWR | O_NOCTTY);
    printf("open while locked: %d %s\n", r, ename(errno));
    printf("unlockpt: %d\n", unlockpt(m));
    ioctl(m, TIOCGPTLCK, &locked);
    printf("locked after unlockpt: %d\n", locked);

    struct stat st;
    printf("slave is char %d:N: %d\n", 136,
           stat(name, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 136 &&
               minor(st.st_rdev) == n);
    int listed = 0;
    DIR *d = opendir("/dev/pts");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, name + strlen("/dev/pts/")) == 0) listed = 1;
    if (d) closedir(d);
    printf("listed in /dev/pts: %d\n", listed);

    struct termios t;
    tcgetattr(m, &t);
    printf("default termios: iflag=%#x oflag=%#x cflag=%#x lflag=%#x\n", t.c_iflag, t.c_oflag,
           t.c_cflag, t.c_lflag);
    printf("default cc: intr=%d quit=%d erase=%d kill=%d eof=%d min=%d time=%d susp=%d\n",
           t.c_cc[VINTR], t.c_cc[VQUIT], t.c_cc[VERASE], t.c_cc[VKILL], t.c_cc[VEOF],
           t.c_cc[VMIN], t.c_cc[VTIME], t.c_cc[VSUSP]);
    printf("speed: %d\n", cfgetospeed(&t) == B38400);

    struct pollfd p = {m, POLLIN | POLLOUT, 0};
    poll(&p, 1, 0);
    printf("master poll before any slave: in=%d out=%d hup=%d\n", !!(p.revents & POLLIN),
           !!(p.revents & POLLOUT), !!(p.revents & POLLHUP));
    fcntl(m, F_SETFL, O_NONBLOCK);
    char buf[512];
    errno = 0;
    r = read(m, buf, sizeof buf);
    printf("master read with nothing written: %d %s\n", r, ename(errno));
    fcntl(m, F_SETFL, 0);

    /* A slave through TIOCGPTPEER, written to, then closed. */
    int peer = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    printf("TIOCGPTPEER gives the slave: %d\n",
           peer >= 0 && fstat(peer, &st) == 0 && major(st.st_rdev) == 136 &&
               minor(st.st_rdev) == n);
    if (write(peer, "bye\n", 4) != 4) return 2;
    close(peer);
    p.events = POLLIN;
    poll(&p, 1, 5000);
    printf("master poll after the only slave closed: in=%d hup=%d\n", !!(p.revents & POLLIN),
           !!(p.revents & POLLHUP));
    int k = read_until(m, buf, sizeof buf, '\n');
    printf("master reads what it wrote: '%s'\n", esc(buf, k));
    errno = 0;
    r = read(m, buf, sizeof buf);
    printf("then: %d %s\n", r, ename(errno));

    if (pipe(p2c) || pipe(c2p)) return 3;
    pid_t pid = fork();
    if (pid == 0) {
        close(m);
        child(name);
    }
    close(p2c[0]);
    close(c2p[1]);
    hear(c2p[0]);
    printf("parent: TIOCGSID on the master is the child's session: %d\n",
           tcgetsid(m) == pid);
    pid_t fg = -1;
    ioctl(m, TIOCGPGRP, &fg);
    printf("parent: TIOCGPGRP on the master is the child: %d\n", fg == pid);

    static const char *inputs[4] = {"hello\r", "junk\x15helo\x7flo\r", "abc\x04", "\x04"};
    for (int i = 0; i < 4; i++) {
        if (write(m, inputs[i], strlen(inputs[i])) < 0) return 4;
        k = i == 3 ? 0 : read_until(m, buf, sizeof buf, i == 2 ? 'c' : '\n');
        hear(c2p[0]);
        printf("parent: typed '%s', echo '%s'\n", esc(inputs[i], strlen(inputs[i])), esc(buf, k));
    }

    struct winsize ws = {24, 80, 0, 0};
    ioctl(m, TIOCSWINSZ, &ws);
    tell(p2c[1]);
    hear(c2p[0]);

    if (write(m, "\x03", 1) != 1) return 4;
    k = read_until(m, buf, sizeof buf, 'C');
    printf("parent: echo of VINTR: '%s'\n", esc(buf, k));
    if (write(m, "after\r", 6) != 6) return 4;
    k = read_until(m, buf, sizeof buf, '\n');
    hear(c2p[0]);
    printf("parent: echo after VINTR: '%s'\n", esc(buf, k));

    tell(p2c[1]);
    hear(c2p[0]);
    k = read_until(m, buf, sizeof buf, '\n');
    k += read_until(m, buf + k, sizeof buf - k, '\n');
    printf("parent: slave output with OPOST then without: '%s'\n", esc(buf, k));

    hear(c2p[0]);
    if (write(m, "x", 1) != 1 || write(m, "yz", 2) != 2) return 4;
    hear(c2p[0]);
    if (write(m, "abcd", 4) != 4) return 4;
    tell(p2c[1]);
    hear(c2p[0]);

    wait_sleeping(pid);
    close(m);
    int status;
    waitpid(pid, &status, 0);
    printf("parent: child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
