/* smtp_proto.h - the byte-level parts of SMTP, without sockets.
 *
 * Command lines, envelope paths and SASL payloads are parsed here by
 * functions that take bytes and return values, so unit tests and fuzzers
 * reach them directly. RFC 5321 (commands, paths), RFC 4954 and RFC 4616
 * (AUTH, PLAIN), RFC 1870 (SIZE). */
#ifndef CAMGATE_SMTP_PROTO_H
#define CAMGATE_SMTP_PROTO_H

#include <stddef.h>

enum smtp_verb {
  SMTP_CMD_UNKNOWN, SMTP_CMD_HELO, SMTP_CMD_EHLO, SMTP_CMD_AUTH,
  SMTP_CMD_MAIL, SMTP_CMD_RCPT, SMTP_CMD_DATA, SMTP_CMD_RSET,
  SMTP_CMD_NOOP, SMTP_CMD_QUIT, SMTP_CMD_VRFY, SMTP_CMD_EXPN,
  SMTP_CMD_HELP, SMTP_CMD_STARTTLS, SMTP_CMD_BDAT
};

/* Splits a command line (without its line end) into the verb and the
 * argument: *arg points into line after the spaces that follow the verb
 * ("" when none). Verbs are case-insensitive. */
enum smtp_verb smtp_proto_verb(const char *line, const char **arg);

/* Parses "FROM:<addr> PARAMS" (prefix "FROM:") or "TO:<addr> PARAMS".
 * Lenient where cameras are sloppy: spaces after the colon, a missing
 * pair of angle brackets. Writes the address (without brackets, maybe
 * empty) into addr and a pointer to the parameters (or "") into *params.
 * Returns 0, or -1 on a syntax error. */
int smtp_proto_path(const char *arg, const char *prefix, char *addr,
                    size_t addrsz, const char **params);

/* Finds ESMTP parameter name (e.g. "SIZE") in params; copies its value
 * into val. Returns 1 when found, 0 when not. */
int smtp_proto_param(const char *params, const char *name, char *val,
                     size_t valsz);

/* Strict base64 decode (RFC 4648, padding required, no spaces). Writes at
 * most outsz bytes and NUL-terminates (outsz must leave room). Returns the
 * decoded length or -1 when the input is not base64 or too long. */
long smtp_proto_b64decode(const char *in, size_t inlen, char *out,
                          size_t outsz);
/* Base64-encodes in into out (NUL-terminated). Returns the length, or -1
 * when out is too small. */
long smtp_proto_b64encode(const unsigned char *in, size_t inlen, char *out,
                          size_t outsz);

/* Splits a decoded AUTH PLAIN message "authzid\0authcid\0password".
 * Sets *user and *pass to point into msg. Returns 0 or -1. An authzid other
 * than empty or equal to the user is refused (-1). */
int smtp_proto_auth_plain(const char *msg, size_t len, const char **user,
                          const char **pass);

#endif
