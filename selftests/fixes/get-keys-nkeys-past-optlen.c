// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * getsockopt(TCP_AO_GET_KEYS) with an optlen shorter than struct tcp_ao_getsockopt must not
 * write past optlen. Linux 6.7 .. 7.2.13 writes the matched-key count at
 * offsetof(struct tcp_ao_getsockopt, nkeys) whatever optlen was.
 *
 * Build against a kernel's uapi headers (6.7 or later) and run as any user on a kernel with
 * CONFIG_TCP_AO:
 *   cc -Wall -O2 -I<headers>/usr/include -o repro get-keys-nkeys-past-optlen.c && ./repro
 * Exit status: 0 nothing written past optlen, 1 bytes written past it, 2 could not test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/tcp.h>

#define CANARY 0xaa

int main(void)
{
	static const int optlens[] = { 1, 2, 4, 16, 128, 271, 272, 275 };
	struct tcp_ao_add add = { 0 };
	struct sockaddr_in *peer = (struct sockaddr_in *)&add.addr;
	int fd, bad = 0;

	fd = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (fd < 0) {
		perror("socket");
		return 2;
	}
	peer->sin_family = AF_INET;
	peer->sin_addr.s_addr = htonl(0x0a000002); /* 10.0.0.2 */
	strcpy(add.alg_name, "hmac(sha1)");
	add.prefix = 32;
	add.sndid = add.rcvid = 100;
	add.keylen = 6;
	memcpy(add.key, "secret", 6);
	if (setsockopt(fd, IPPROTO_TCP, TCP_AO_ADD_KEY, &add, sizeof(add))) {
		perror("setsockopt(TCP_AO_ADD_KEY)");
		return 2;
	}

	for (size_t i = 0; i < sizeof(optlens) / sizeof(optlens[0]); i++) {
		unsigned char buf[sizeof(struct tcp_ao_getsockopt) + 16];
		socklen_t len = optlens[i];
		unsigned short family = AF_INET;
		int first = -1, last = -1;

		/* The request: AF_INET, any address, prefix 0; a canary after optlen. */
		memset(buf, CANARY, sizeof(buf));
		memset(buf, 0, len);
		memcpy(buf, &family, len < sizeof(family) ? len : sizeof(family));
		if (getsockopt(fd, IPPROTO_TCP, TCP_AO_GET_KEYS, buf, &len)) {
			printf("optlen %3d: getsockopt: %s\n", optlens[i], strerror(errno));
			continue;
		}
		for (size_t b = optlens[i]; b < sizeof(buf); b++) {
			if (buf[b] == CANARY)
				continue;
			if (first < 0)
				first = b;
			last = b;
		}
		if (first < 0) {
			printf("optlen %3d: ok, optlen out %u, nothing written past optlen\n",
			       optlens[i], len);
			continue;
		}
		printf("optlen %3d: optlen out %u, bytes %d..%d written past optlen "
		       "(nkeys is at %zu..%zu)\n", optlens[i], len, first, last,
		       offsetof(struct tcp_ao_getsockopt, nkeys),
		       offsetof(struct tcp_ao_getsockopt, nkeys) + 3);
		bad = 1;
	}
	close(fd);
	return bad;
}
