/* Run inside a container by tests/integration/escape/test_snapshot.py.
 *
 * swapper DIR TARGET: makes PAIRS pairs of a directory DIR/dN/sub (holding
 * FILES files named secret-00, secret-01, ...) and a symlink DIR/lN ->
 * TARGET, then, forever, swaps each dN with its lN atomically and back,
 * and rests a moment. A host process that checks DIR/dN is a directory and
 * then opens DIR/dN/sub/secret-MM by path may find the symlink there by
 * then, and read TARGET/sub/secret-MM in the host's root: what the
 * container's snapshot walkers must never do. Many pairs and files, many
 * chances for each walk; sub, so that dN is a component in the middle of
 * the paths opened. dN is a symlink only briefly: a walker that refuses a
 * directory found to be a symlink when it opens it is refused seldom, and
 * goes on to meet the symlink mid-path, where the bug would be. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAIRS 8
#define FILES 8
#define REST_NS 50000
/* As long as the host's files (HOST-<16 hex digits>\n), so that a walker
 * that stats one and reads the other does not fail on the size. */
#define CONTENT "inside-00000000000000\n"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static char d[PAIRS][4096], l[PAIRS][4096];

static int make_pair(int n, const char *dir, const char *target) {
    char sub[4200], secret[4300];
    snprintf(d[n], sizeof d[n], "%s/d%d", dir, n);
    snprintf(l[n], sizeof l[n], "%s/l%d", dir, n);
    snprintf(sub, sizeof sub, "%s/sub", d[n]);
    if (mkdir(d[n], 0755) != 0 || mkdir(sub, 0755) != 0 || symlink(target, l[n]) != 0)
        return -1;
    for (int i = 0; i < FILES; i++) {
        snprintf(secret, sizeof secret, "%s/secret-%02d", sub, i);
        int fd = open(secret, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, CONTENT, sizeof CONTENT - 1) != sizeof CONTENT - 1 || close(fd) != 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: swapper DIR TARGET\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    for (int n = 0; n < PAIRS; n++) {
        if (make_pair(n, argv[1], argv[2]) != 0) {
            perror("swapper: setup");
            return 1;
        }
    }
    printf("swapping\n");
    fflush(stdout);
    struct timespec rest = {0, REST_NS};
    for (;;) {
        for (int n = 0; n < PAIRS; n++) {
            for (int there_and_back = 0; there_and_back < 2; there_and_back++) {
                if (syscall(SYS_renameat2, AT_FDCWD, d[n], AT_FDCWD, l[n], RENAME_EXCHANGE) != 0) {
                    perror("swapper: renameat2");
                    return 1;
                }
            }
        }
        nanosleep(&rest, NULL);
    }
}
