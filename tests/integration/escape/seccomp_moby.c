/* socket(2) for each address family named on the command line, as a
 * program in a container would open it; prints "FAMILY: ok" or
 * "FAMILY: errno N". EPERM is the seccomp filter's answer; a kernel
 * without the family answers EAFNOSUPPORT (97), which means the call got
 * through the filter. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define FAMILY_ALG 38

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		int family = atoi(argv[i]);
		int type = family == FAMILY_ALG ? SOCK_SEQPACKET : SOCK_STREAM;
		int fd = socket(family, type, 0);
		if (fd >= 0) {
			printf("%d: ok\n", family);
			close(fd);
		} else {
			printf("%d: errno %d\n", family, errno);
		}
	}
	return 0;
}
