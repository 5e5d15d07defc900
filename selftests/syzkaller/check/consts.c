#include <stdio.h>
#include <stddef.h>
#include <linux/tcp.h> /* 7.2.13 include/uapi/linux/tcp.h */
int main(void)
{
#define P(x) printf(#x " = %llu\n", (unsigned long long)(x))
	P(TCP_AO_ADD_KEY); P(TCP_AO_DEL_KEY); P(TCP_AO_INFO); P(TCP_AO_GET_KEYS); P(TCP_AO_REPAIR);
	P(TCP_AO_KEYF_EXCLUDE_OPT); P(TCP_AO_KEYF_IFINDEX); P(TCP_AO_MAXKEYLEN);
	P(TCP_MD5SIG_EXT); P(TCP_MD5SIG_FLAG_IFINDEX); P(TCP_MD5SIG_FLAG_PREFIX);
	printf("TCP_AO_GETSOCKOPT_SIZE = %zu\n", sizeof(struct tcp_ao_getsockopt));
	printf("# sizes: add %zu del %zu info %zu get %zu repair %zu md5 %zu\n", sizeof(struct tcp_ao_add), sizeof(struct tcp_ao_del), sizeof(struct tcp_ao_info_opt), sizeof(struct tcp_ao_getsockopt), sizeof(struct tcp_ao_repair), sizeof(struct tcp_md5sig));
	return 0;
}
