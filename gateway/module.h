/* module.h - camgate-http.so, loaded only when it is needed.
 *
 * libcurl and the libraries it pulls in (GnuTLS, Kerberos, LDAP, SSH,
 * RTMP, ...) are about 4 MB of every process's memory from the moment
 * they are mapped. Only the HTTP backends (ntfy, e-mail) and the OAuth
 * commands use them, so they live in a module beside the camgate binary
 * that is opened the first time one of those is asked for: a camgate
 * that only publishes to MQTT never maps libcurl. The module's code
 * calls camgate's own functions, which the binary exports. A program
 * linked with the module's objects (the unit tests) uses those instead
 * of opening the file. */
#ifndef CAMGATE_MODULE_H
#define CAMGATE_MODULE_H

#include <stddef.h>
#include <stdio.h>

#include "backends/backend.h"
#include "config/config.h"

struct token;

struct http_module {
  const struct backend_ops *email;
  const struct backend_ops *ntfy;
  int (*token_load)(const char *path, struct token *t, char *err,
                    size_t errsz);
  void (*token_clear)(struct token *t);
  int (*oauth_login)(const struct backend_conf *bc, FILE *in, FILE *out,
                     FILE *err);
};

/* The module's file name, looked for in the directory of the running
 * binary, or in $CAMGATE_MODULE_DIR when that is set. */
#define HTTP_MODULE_FILE "camgate-http.so"

/* The module, opened on the first call (any thread). NULL with the reason
 * (the path and the loader's error) in err when it cannot be opened; a
 * later call tries again. */
const struct http_module *http_module(char *err, size_t errsz);

#endif
