/* Escape attempts run from inside a container by tests/integration/test_isolation.py.
 * Each attempt prints "NAME: blocked (errno text)" or "NAME: ESCAPED ...". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(const char *name, int rc) {
    if (rc < 0)
        printf("%s: blocked (%s)\n", name, strerror(errno));
    else
        printf("%s: ESCAPED\n", name);
    return rc;
}

int main(int argc, char **argv) {
    const char *marker = argc > 1 ? argv[1] : "/nonexistent-marker";

    /* open_by_handle_at (the "shocker" escape): needs CAP_DAC_READ_SEARCH. */
    struct {
        struct file_handle fh;
        unsigned char bytes[128];
    } h;
    h.fh.handle_bytes = 128;
    int mount_id;
    if (syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h.fh, &mount_id, 0) == 0) {
        report("open_by_handle_at", (int)syscall(SYS_open_by_handle_at, AT_FDCWD, &h.fh, O_RDONLY));
    } else {
        report("open_by_handle_at", -1);
    }

    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("unshare_mount_ns", unshare(CLONE_NEWNS) == 0 ? mount("none", "/tmp", "tmpfs", 0, NULL) : -1);

    /* The classic chroot escape: chroot into a subdirectory while keeping
     * the cwd outside it, climb, chroot to what we reached. */
    mkdir("/chroot-escape", 0755);
    if (chroot("/chroot-escape") == 0) {
        for (int i = 0; i < 64; i++)
            if (chdir("..") != 0)
                break;
        chroot(".");
    }
    struct stat st;
    if (stat(marker, &st) == 0)
        printf("chroot: ESCAPED (host marker %s visible)\n", marker);
    else
        printf("chroot: blocked (host marker not visible)\n");
    return 0;
}
