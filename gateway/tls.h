/* tls.h - the OpenSSL server context every ingest shares. */
#ifndef CAMGATE_TLS_H
#define CAMGATE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config/config.h"

/* Returns a server context for tc (certificate, key, version floor,
 * ciphers), or NULL with the reason in err. A floor below TLS 1.2 also
 * lowers OpenSSL's security level, since old cameras' TLS 1.0 suites are
 * refused otherwise; camgate logs that once. Free with SSL_CTX_free. */
SSL_CTX *tls_server_ctx(const struct tls_conf *tc, char *err, size_t errsz);

/* Writes OpenSSL's last error queue entry into buf; returns buf. */
const char *tls_error(char *buf, size_t bufsz);

#endif
