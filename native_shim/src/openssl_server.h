/* openssl_server.c's entries, for the OpenSSL adapter's optional table. */
#ifndef TLSH_OPENSSL_SERVER_H
#define TLSH_OPENSSL_SERVER_H

int tlsh_ossl_parent_use(void);
int tlsh_ossl_atfork_stop(void);
int tlsh_ossl_warm_methods(void);
int tlsh_ossl_rand_wrap(int mode);
unsigned long tlsh_ossl_rand_calls(void);
unsigned long tlsh_ossl_rand_reentries(void);

#endif
