/* A UDP echo server for the published-ports tests: answers every datagram
   on the port given as argv[1] with "echo:" and the datagram, to its sender.
   Static, so that it runs in the busybox image. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp_echo PORT\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("udp_echo: bind");
        return 1;
    }
    for (;;) {
        char in[1024], out[1100];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &len);
        if (n < 0)
            continue;
        memcpy(out, "echo:", 5);
        memcpy(out + 5, in, (size_t)n);
        sendto(fd, out, (size_t)n + 5, 0, (struct sockaddr *)&peer, len);
    }
}
