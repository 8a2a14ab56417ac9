/* tls.c - see tls.h. */
#include "gateway/tls.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

#include "gateway/log.h"

const char *
tls_error(char *buf, size_t bufsz)
{
  unsigned long e = ERR_get_error();

  if (e == 0)
    snprintf(buf, bufsz, "unknown TLS error");
  else
    ERR_error_string_n(e, buf, bufsz);
  ERR_clear_error();
  return buf;
}

static int
tls_version(const char *v)
{
  if (v == NULL || strcmp(v, "1.2") == 0)
    return TLS1_2_VERSION;
  if (strcmp(v, "1.0") == 0)
    return TLS1_VERSION;
  if (strcmp(v, "1.1") == 0)
    return TLS1_1_VERSION;
  if (strcmp(v, "1.3") == 0)
    return TLS1_3_VERSION;
  return -1;
}

SSL_CTX *
tls_server_ctx(const struct tls_conf *tc, char *err, size_t errsz)
{
  SSL_CTX *ctx;
  char ebuf[256];
  int floor = tls_version(tc->min_version);

  if (tc->cert == NULL || tc->key == NULL) {
    snprintf(err, errsz, "no TLS certificate configured");
    return NULL;
  }
  ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL)
    fatal("tls: SSL_CTX_new failed");
  if (floor < 0) {
    snprintf(err, errsz, "bad tls.min_version %s", tc->min_version);
    goto fail;
  }
  if (floor < TLS1_2_VERSION) {
    SSL_CTX_set_security_level(ctx, 0);
    log_warn("tls", "min_version=%s msg=\"legacy TLS allowed for old "
             "cameras; raise tls.min_version when they are replaced\"",
             tc->min_version);
  }
  SSL_CTX_set_min_proto_version(ctx, floor);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (tc->ciphers && SSL_CTX_set_cipher_list(ctx, tc->ciphers) != 1) {
    snprintf(err, errsz, "tls.ciphers: %s", tls_error(ebuf, sizeof(ebuf)));
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, tc->cert) != 1) {
    snprintf(err, errsz, "tls.cert %s: %s", tc->cert,
             tls_error(ebuf, sizeof(ebuf)));
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, tc->key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(err, errsz, "tls.key %s: %s", tc->key,
             tls_error(ebuf, sizeof(ebuf)));
    goto fail;
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}
