// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A TCP-AO (or TCP-MD5) signed IPv6 segment that reaches TCP reassembled from IPv6 fragments
 * must verify. Linux 7.2.13 hashes each frag_list skb from tcp_hdr(), which for an IPv6
 * fragment is its 8-byte fragment header, so the segment is dropped as TCPAOBad
 * (TCPMD5Failure for TCP-MD5).
 *
 * No MAC is computed here: the kernel signs a 1,024-byte segment of a connection over ::1, a
 * packet socket captures it, and it is sent again (a duplicate, which the receiver verifies and
 * then drops as old data) first whole, then as IPv6 fragments of 512 bytes. Each duplicate
 * that verifies makes the receiver send a duplicate ACK; one that does not grows the failure
 * counter.
 *
 * Build against a kernel's uapi headers (6.7 or later) and run as root (it makes its own
 * network namespace) on a kernel with CONFIG_TCP_AO and CONFIG_TCP_MD5SIG:
 *   cc -Wall -O2 -I<headers>/usr/include -o repro ao-hash-frag-list-from-data.c && ./repro
 * Exit status: 0 every duplicate verified, 1 a fragmented one did not, 2 could not test.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/tcp.h>

#define PAYLOAD 1024
#define FRAG 512
#define IP6_HLEN 40
#define FRAG_HLEN 8

enum verdict { VERIFIED, DROPPED_BAD, NO_ANSWER };
static const char *const verdict_name[] = { "verified", "counted bad", "no answer in 2 s" };

static void die(const char *what)
{
	perror(what);
	exit(2);
}

/* A TcpExt counter of this network namespace. */
static long tcpext(const char *name)
{
	char names[4096], values[4096];
	FILE *f = fopen("/proc/net/netstat", "r");
	long found = -1;

	if (!f)
		die("/proc/net/netstat");
	while (fgets(names, sizeof(names), f) && fgets(values, sizeof(values), f)) {
		char *ns, *vs, *n, *v;

		if (strncmp(names, "TcpExt:", 7))
			continue;
		n = strtok_r(names, " \n", &ns);
		v = strtok_r(values, " \n", &vs);
		while (n && v) {
			if (!strcmp(n, name))
				found = atol(v);
			n = strtok_r(NULL, " \n", &ns);
			v = strtok_r(NULL, " \n", &vs);
		}
	}
	fclose(f);
	if (found < 0) {
		fprintf(stderr, "TcpExt has no %s\n", name);
		exit(2);
	}
	return found;
}

static void add_ao_key(int fd)
{
	struct tcp_ao_add add = { 0 };
	struct sockaddr_in6 *peer = (struct sockaddr_in6 *)&add.addr;

	peer->sin6_family = AF_INET6;
	peer->sin6_addr = in6addr_loopback;
	strcpy(add.alg_name, "hmac(sha1)");
	add.prefix = 128;
	add.sndid = add.rcvid = 100;
	add.keylen = 6;
	memcpy(add.key, "secret", 6);
	if (setsockopt(fd, IPPROTO_TCP, TCP_AO_ADD_KEY, &add, sizeof(add)))
		die("setsockopt(TCP_AO_ADD_KEY)");
}

static void add_md5_key(int fd)
{
	struct tcp_md5sig md5 = { 0 };
	struct sockaddr_in6 *peer = (struct sockaddr_in6 *)&md5.tcpm_addr;

	peer->sin6_family = AF_INET6;
	peer->sin6_addr = in6addr_loopback;
	md5.tcpm_keylen = 6;
	memcpy(md5.tcpm_key, "secret", 6);
	if (setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, &md5, sizeof(md5)))
		die("setsockopt(TCP_MD5SIG)");
}

static uint16_t tcp_port(const uint8_t *pkt, int off)
{
	return (uint16_t)(pkt[IP6_HLEN + off] << 8 | pkt[IP6_HLEN + off + 1]);
}

/* The next TCP packet over lo from port `from`, sent by this host (each packet over lo is seen
 * twice, going out and coming in); its length, 0 after `ms` milliseconds without one.
 */
static ssize_t next_packet(int cap, uint16_t from, uint8_t *pkt, size_t size, int ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd p = { .fd = cap, .events = POLLIN };
		struct sockaddr_ll sll;
		socklen_t sll_len = sizeof(sll);
		ssize_t n;
		int left;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = ms - (int)((now.tv_sec - start.tv_sec) * 1000 +
				  (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return 0;
		n = recvfrom(cap, pkt, size, 0, (struct sockaddr *)&sll, &sll_len);
		if (n < 0)
			die("recvfrom(packet socket)");
		if (sll.sll_pkttype == PACKET_OUTGOING && sll.sll_protocol == htons(ETH_P_IPV6) &&
		    n >= IP6_HLEN + 20 &&
		    pkt[6] == IPPROTO_TCP && tcp_port(pkt, 0) == from)
			return n;
	}
}

/* RFC 793 checksum over the IPv6 pseudo-header: lo hands captured packets over with it
 * unfinished (CHECKSUM_PARTIAL). TCP-AO and TCP-MD5 MACs do not cover it.
 */
static void fix_tcp_checksum(uint8_t *pkt, size_t len)
{
	size_t tcp_len = len - IP6_HLEN, i;
	uint32_t sum = 0;

	pkt[IP6_HLEN + 16] = pkt[IP6_HLEN + 17] = 0;
	for (i = 8; i < IP6_HLEN; i += 2) /* source and destination addresses */
		sum += pkt[i] << 8 | pkt[i + 1];
	sum += (uint32_t)tcp_len + IPPROTO_TCP;
	for (i = 0; i < tcp_len; i += 2)
		sum += pkt[IP6_HLEN + i] << 8 | (i + 1 < tcp_len ? pkt[IP6_HLEN + i + 1] : 0);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	pkt[IP6_HLEN + 16] = sum >> 8;
	pkt[IP6_HLEN + 17] = sum & 0xff;
}

static void send_ipv6(int cap, const uint8_t *pkt, size_t len)
{
	struct sockaddr_ll to = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_IPV6),
		.sll_ifindex = (int)if_nametoindex("lo"),
		.sll_halen = ETH_ALEN,
	};

	if (sendto(cap, pkt, len, 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)len)
		die("sendto(packet socket)");
}

/* The captured segment again, whole (frag 0) or as IPv6 fragments of `frag` bytes. */
static void resend(int cap, const uint8_t *seg, size_t len, size_t frag, uint32_t id)
{
	size_t tcp_len = len - IP6_HLEN, off;

	if (!frag) {
		send_ipv6(cap, seg, len);
		return;
	}
	for (off = 0; off < tcp_len; off += frag) {
		size_t chunk = tcp_len - off < frag ? tcp_len - off : frag;
		uint8_t pkt[IP6_HLEN + FRAG_HLEN + FRAG];
		uint16_t offlg = (uint16_t)off | (off + chunk < tcp_len); /* offset, M flag */

		memcpy(pkt, seg, IP6_HLEN);
		pkt[4] = (uint8_t)((FRAG_HLEN + chunk) >> 8);
		pkt[5] = (uint8_t)(FRAG_HLEN + chunk);
		pkt[6] = 44; /* Fragment header */
		pkt[IP6_HLEN] = IPPROTO_TCP;
		pkt[IP6_HLEN + 1] = 0;
		pkt[IP6_HLEN + 2] = offlg >> 8;
		pkt[IP6_HLEN + 3] = offlg & 0xff;
		id = htonl(id);
		memcpy(pkt + IP6_HLEN + 4, &id, 4);
		id = ntohl(id);
		memcpy(pkt + IP6_HLEN + FRAG_HLEN, seg + IP6_HLEN + off, chunk);
		send_ipv6(cap, pkt, IP6_HLEN + FRAG_HLEN + chunk);
	}
}

/* Send the duplicate and wait for the receiver's answer: a duplicate ACK (verified) or the
 * failure counter growing (dropped).
 */
static enum verdict judge(int cap, const uint8_t *seg, size_t len, size_t frag, uint32_t id,
			  uint16_t server_port, const char *bad_counter)
{
	long bad = tcpext(bad_counter);
	uint8_t ack[2048];
	int waited;

	resend(cap, seg, len, frag, id);
	for (waited = 0; waited < 2000; waited += 50) {
		if (next_packet(cap, server_port, ack, sizeof(ack), 50))
			return VERIFIED;
		if (tcpext(bad_counter) > bad)
			return DROPPED_BAD;
	}
	return NO_ANSWER;
}

/* One connection over ::1 signed by `add_key`; its client's first data segment captured and
 * sent again whole and in fragments. Returns how many fragmented duplicates did not verify.
 */
static int run(const char *name, void (*add_key)(int), const char *bad_counter)
{
	struct sockaddr_in6 addr = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t addr_len = sizeof(addr);
	uint8_t data[PAYLOAD], seg[4096];
	uint16_t server_port, client_port;
	int lst, cli, srv, cap, one = 1, failed = 0;
	struct tcp_info ti;
	socklen_t ti_len;
	ssize_t len = 0, got = 0;
	size_t frag;

	/* ETH_P_ALL: only those taps see packets going out. */
	cap = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
	lst = socket(AF_INET6, SOCK_STREAM, 0);
	cli = socket(AF_INET6, SOCK_STREAM, 0);
	if (cap < 0 || lst < 0 || cli < 0)
		die("socket");
	add_key(lst);
	add_key(cli);
	if (bind(lst, (struct sockaddr *)&addr, sizeof(addr)) || listen(lst, 1) ||
	    getsockname(lst, (struct sockaddr *)&addr, &addr_len))
		die("listen");
	server_port = ntohs(addr.sin6_port);
	if (connect(cli, (struct sockaddr *)&addr, sizeof(addr)))
		die("connect");
	srv = accept(lst, NULL, NULL);
	if (srv < 0)
		die("accept");
	addr_len = sizeof(addr);
	getsockname(cli, (struct sockaddr *)&addr, &addr_len);
	client_port = ntohs(addr.sin6_port);
	setsockopt(srv, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));

	memset(data, 'x', sizeof(data));
	if (send(cli, data, sizeof(data), 0) != sizeof(data))
		die("send");
	while (got < PAYLOAD) {
		ssize_t n = recv(srv, data, sizeof(data), 0);

		if (n <= 0)
			die("recv");
		got += n;
	}
	while (!len || len != IP6_HLEN + (seg[IP6_HLEN + 12] >> 4) * 4 + PAYLOAD) {
		len = next_packet(cap, client_port, seg, sizeof(seg), 2000);
		if (!len) {
			fprintf(stderr, "%s: the client's data segment was not seen\n", name);
			exit(2);
		}
	}
	fix_tcp_checksum(seg, (size_t)len);
	/* Wait until the data is acknowledged, then forget what was captured so far. */
	for (;;) {
		ti_len = sizeof(ti);
		if (getsockopt(cli, IPPROTO_TCP, TCP_INFO, &ti, &ti_len))
			die("getsockopt(TCP_INFO)");
		if (!ti.tcpi_unacked)
			break;
		poll(NULL, 0, 10);
	}
	while (next_packet(cap, server_port, data, sizeof(data), 100))
		;

	for (frag = 0; frag <= FRAG; frag += FRAG) {
		enum verdict v = judge(cap, seg, (size_t)len, frag, 0x7a0 + (uint32_t)frag,
				       server_port, bad_counter);

		if (frag)
			printf("%s: %zd-byte segment in %zu-byte IPv6 fragments: %s\n", name,
			       len - IP6_HLEN, frag, verdict_name[v]);
		else
			printf("%s: %zd-byte segment whole: %s\n", name, len - IP6_HLEN,
			       verdict_name[v]);
		if (v != VERIFIED && !frag) {
			fprintf(stderr, "%s: the whole duplicate must verify\n", name);
			exit(2);
		}
		failed += v != VERIFIED;
	}
	close(srv);
	close(cli);
	close(lst);
	close(cap);
	return failed;
}

int main(void)
{
	struct ifreq lo = { .ifr_name = "lo" };
	int fd, failed;

	if (unshare(CLONE_NEWNET))
		die("unshare(CLONE_NEWNET)");
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &lo))
		die("SIOCGIFFLAGS lo");
	lo.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &lo))
		die("SIOCSIFFLAGS lo");
	close(fd);

	failed = run("TCP-AO", add_ao_key, "TCPAOBad");
	failed += run("TCP-MD5", add_md5_key, "TCPMD5Failure");
	return failed ? 1 : 0;
}
