/* Run inside a container by tests/integration/escape/test_snapshot.py.
 *
 * swapper DIR TARGET: makes DIR/d/sub (a directory holding FILES files
 * named secret-00, secret-01, ...) and the symlink DIR/l -> TARGET, then
 * swaps d and l atomically, forever. A host process that checks DIR/d is a
 * directory and then opens DIR/d/sub/secret-NN by path may find the symlink
 * there by then, and read TARGET/sub/secret-NN in the host's root: what the
 * container's snapshot walkers must never do. Many files, many chances;
 * sub, so that d is a component in the middle of the paths opened. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILES 16
/* As long as the host's files (HOST-<16 hex digits>\n), so that a walker
 * that stats one and reads the other does not fail on the size. */
#define CONTENT "inside-00000000000000\n"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: swapper DIR TARGET\n");
        return 2;
    }
    char d[4096], sub[4200], l[4096], secret[4300];
    snprintf(d, sizeof d, "%s/d", argv[1]);
    snprintf(sub, sizeof sub, "%s/sub", d);
    snprintf(l, sizeof l, "%s/l", argv[1]);
    mkdir(argv[1], 0755);
    if (mkdir(d, 0755) != 0 || mkdir(sub, 0755) != 0 || symlink(argv[2], l) != 0) {
        perror("swapper: setup");
        return 1;
    }
    for (int i = 0; i < FILES; i++) {
        snprintf(secret, sizeof secret, "%s/secret-%02d", sub, i);
        int fd = open(secret, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, CONTENT, sizeof CONTENT - 1) != sizeof CONTENT - 1 || close(fd) != 0) {
            perror("swapper: secret");
            return 1;
        }
    }
    printf("swapping\n");
    fflush(stdout);
    for (;;) {
        if (syscall(SYS_renameat2, AT_FDCWD, d, AT_FDCWD, l, RENAME_EXCHANGE) != 0) {
            perror("swapper: renameat2");
            return 1;
        }
    }
}
