/* smtp_proto.c - see smtp_proto.h. */
#include "ingest/smtp_proto.h"

#include <string.h>
#include <strings.h>

static const struct {
  const char *name;
  enum smtp_verb verb;
} smtp_verbs[] = {
  {"HELO", SMTP_CMD_HELO}, {"EHLO", SMTP_CMD_EHLO},
  {"AUTH", SMTP_CMD_AUTH}, {"MAIL", SMTP_CMD_MAIL},
  {"RCPT", SMTP_CMD_RCPT}, {"DATA", SMTP_CMD_DATA},
  {"RSET", SMTP_CMD_RSET}, {"NOOP", SMTP_CMD_NOOP},
  {"QUIT", SMTP_CMD_QUIT}, {"VRFY", SMTP_CMD_VRFY},
  {"EXPN", SMTP_CMD_EXPN}, {"HELP", SMTP_CMD_HELP},
  {"STARTTLS", SMTP_CMD_STARTTLS}, {"BDAT", SMTP_CMD_BDAT},
};

enum smtp_verb
smtp_proto_verb(const char *line, const char **arg)
{
  size_t n = 0;

  while (line[n] && line[n] != ' ')
    n++;
  *arg = line + n;
  while (**arg == ' ')
    (*arg)++;
  for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
    if (strlen(smtp_verbs[i].name) == n &&
        strncasecmp(line, smtp_verbs[i].name, n) == 0)
      return smtp_verbs[i].verb;
  }
  return SMTP_CMD_UNKNOWN;
}

int
smtp_proto_path(const char *arg, const char *prefix, char *addr,
                size_t addrsz, const char **params)
{
  size_t plen = strlen(prefix);
  const char *p;
  const char *end;
  size_t n;

  if (strncasecmp(arg, prefix, plen) != 0)
    return -1;
  p = arg + plen;
  while (*p == ' ')
    p++;
  if (*p == '<') {
    end = strchr(++p, '>');
    if (end == NULL)
      return -1;
    n = (size_t)(end - p);
    end++;
  } else {
    end = p;
    while (*end && *end != ' ')
      end++;
    n = (size_t)(end - p);
    if (n == 0)
      return -1;
  }
  if (n >= addrsz)
    return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];

    if (c <= ' ' || c == 0x7f || c == '<' || c == '>')
      return -1;
  }
  memcpy(addr, p, n);
  addr[n] = '\0';
  if (*end && *end != ' ')
    return -1;
  while (*end == ' ')
    end++;
  *params = end;
  return 0;
}

int
smtp_proto_param(const char *params, const char *name, char *val,
                 size_t valsz)
{
  size_t nlen = strlen(name);
  const char *p = params;

  while (*p) {
    const char *w = p;
    size_t wlen;

    while (*p && *p != ' ')
      p++;
    wlen = (size_t)(p - w);
    while (*p == ' ')
      p++;
    if (wlen >= nlen && strncasecmp(w, name, nlen) == 0 &&
        (wlen == nlen || w[nlen] == '=')) {
      size_t vlen = wlen > nlen ? wlen - nlen - 1 : 0;

      if (vlen >= valsz)
        vlen = valsz - 1;
      memcpy(val, w + nlen + (wlen > nlen), vlen);
      val[vlen] = '\0';
      return 1;
    }
  }
  return 0;
}

static int
b64_value(unsigned char c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

long
smtp_proto_b64decode(const char *in, size_t inlen, char *out, size_t outsz)
{
  size_t o = 0;

  if (inlen % 4 != 0)
    return -1;
  for (size_t i = 0; i < inlen; i += 4) {
    int v[4];
    int pad = 0;

    for (int k = 0; k < 4; k++) {
      unsigned char c = (unsigned char)in[i + k];

      if (c == '=' && i + 4 == inlen && k >= 2) {
        v[k] = 0;
        pad++;
        continue;
      }
      if (pad)
        return -1;
      v[k] = b64_value(c);
      if (v[k] < 0)
        return -1;
    }
    if (o + 3 - (size_t)pad >= outsz)
      return -1;
    out[o++] = (char)((v[0] << 2) | (v[1] >> 4));
    if (pad < 2)
      out[o++] = (char)(((v[1] & 15) << 4) | (v[2] >> 2));
    if (pad < 1)
      out[o++] = (char)(((v[2] & 3) << 6) | v[3]);
  }
  out[o] = '\0';
  return (long)o;
}

long
smtp_proto_b64encode(const unsigned char *in, size_t inlen, char *out,
                     size_t outsz)
{
  static const char tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t need = (inlen + 2) / 3 * 4;
  size_t o = 0;

  if (need + 1 > outsz)
    return -1;
  for (size_t i = 0; i < inlen; i += 3) {
    unsigned v = (unsigned)in[i] << 16;

    if (i + 1 < inlen)
      v |= (unsigned)in[i + 1] << 8;
    if (i + 2 < inlen)
      v |= in[i + 2];
    out[o++] = tab[(v >> 18) & 63];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = i + 1 < inlen ? tab[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < inlen ? tab[v & 63] : '=';
  }
  out[o] = '\0';
  return (long)o;
}

int
smtp_proto_auth_plain(const char *msg, size_t len, const char **user,
                      const char **pass)
{
  const char *z1 = memchr(msg, '\0', len);
  const char *z2;

  if (z1 == NULL)
    return -1;
  z2 = memchr(z1 + 1, '\0', len - (size_t)(z1 + 1 - msg));
  if (z2 == NULL || memchr(z2 + 1, '\0', len - (size_t)(z2 + 1 - msg)))
    return -1;
  *user = z1 + 1;
  *pass = z2 + 1;
  if (**user == '\0')
    return -1;
  if (z1 != msg && strcmp(msg, *user) != 0)
    return -1;
  return 0;
}
