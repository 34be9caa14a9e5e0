/* A container process that watches for processes entering its container
 * (`overlayctl exec`) and tries to take what they hold of the host through
 * /proc, while they are still overlayctl's: run by
 * tests/integration/escape/test_entry.py as the container's PID 1.
 *
 *   procwatch SECONDS TOKEN...
 *
 * Each new pid is attacked in a tight loop until it is gone or runs a
 * program of the container's: its environ (a TOKEN in it), its fd links (a
 * TOKEN in one, or catalog.db: then opened read-write), its exe and cwd (on
 * another device than our root: the host's). Every success prints
 * "GOT KIND PID DETAIL"; at the end "SEEN N" (pids attacked) and "DONE".
 * It stops after SECONDS, or as soon as /stop exists. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char **tokens;
static int ntokens;
static dev_t root_dev;
static int reported[8]; /* one line per kind and pid is enough */
enum { ENVIRON, FD, FD_RW, EXE, CWD };
static const char *kinds[] = {"environ", "fd", "fd-rw", "exe", "cwd"};

static void got(int kind, int pid, const char *detail) {
    if (reported[kind] == pid)
        return;
    reported[kind] = pid;
    printf("GOT %s %d %s\n", kinds[kind], pid, detail);
    fflush(stdout);
}

static const char *has_token(const char *buf, size_t len) {
    for (int i = 0; i < ntokens; i++)
        if (memmem(buf, len, tokens[i], strlen(tokens[i])))
            return tokens[i];
    return NULL;
}

static void try_environ(int pid) {
    char path[64], buf[65536];
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    const char *token = n > 0 ? has_token(buf, (size_t)n) : NULL;
    if (token)
        got(ENVIRON, pid, token);
}

static void try_fds(int pid) {
    char path[64], entry[384], link[4096];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(entry, sizeof entry, "%s/%s", path, e->d_name);
        ssize_t n = readlink(entry, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = 0;
        if (has_token(link, (size_t)n))
            got(FD, pid, link);
        if (strstr(link, "catalog.db")) {
            got(FD, pid, link);
            int fd = open(entry, O_RDWR);
            if (fd >= 0) {
                got(FD_RW, pid, link);
                close(fd);
            }
        }
    }
    closedir(d);
}

static void try_exe_cwd(int pid) {
    char path[64], link[4096];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    if (stat(path, &st) == 0 && st.st_dev != root_dev) {
        ssize_t n = readlink(path, link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        got(EXE, pid, link);
    }
    snprintf(path, sizeof path, "/proc/%d/cwd", pid);
    if (stat(path, &st) == 0 && st.st_dev != root_dev) {
        ssize_t n = readlink(path, link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        got(CWD, pid, link);
    }
}

static int exists(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    return access(path, F_OK) == 0;
}

/* Whether pid runs one of the container's programs by now (then it holds
 * nothing of the host's any more): its exe is readable and on our root. */
static int is_ours(int pid) {
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    return stat(path, &st) == 0 && st.st_dev == root_dev;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: procwatch SECONDS TOKEN...\n");
        return 2;
    }
    double deadline = now() + atof(argv[1]);
    tokens = argv + 2;
    ntokens = argc - 2;
    struct stat st;
    if (stat("/", &st) != 0)
        return 2;
    root_dev = st.st_dev;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY\n");

    /* Pids in a PID namespace are handed out in order: the next process to
     * come in is (almost always) the last one seen plus one. */
    int next = getpid() + 1, seen = 0;
    long spins = 0;
    while (now() < deadline) {
        if ((++spins & 1023) == 0 && access("/stop", F_OK) == 0)
            break;
        int target = 0;
        for (int p = next; p < next + 4; p++)
            if (exists(p)) {
                target = p;
                break;
            }
        if (!target)
            continue;
        seen++;
        next = target + 1;
        while (exists(target) && !is_ours(target)) {
            try_environ(target);
            try_fds(target);
            try_exe_cwd(target);
        }
    }
    printf("SEEN %d\nDONE\n", seen);
    return 0;
}
