/* config.c - see config.h.
 *
 * Every mapping of camgate.yaml is described by one table of struct field:
 * key, type, bounds, default, flags (required, secret) and validator.
 * parse_obj() walks a YAML mapping against its table, and obj_free() walks
 * the same table to free and wipe what was loaded, so a new key is one line
 * in one table and can neither be forgotten by the free nor leak a secret.
 *
 * The YAML is loaded whole with the libyaml document API so every value
 * keeps its line and column; errors are collected, never fatal, so the
 * user sees every mistake of a file in one run. */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "gateway/log.h"
#include "gateway/template.h"

/* The config file itself and secret files; both are small by nature. */
#define CONFIG_MAX_BYTES (1024 * 1024)
#define SECRET_MAX_BYTES (64 * 1024)
#define PATH_LEN 256
#define FOUND_LEN 96
#define MAX_FIELDS 32
#define BAD_PATHS 64      /* keys remembered as reported, for follow-ons */

#define SMTP_PER_ADDRESS_DEFAULT 20

#define DAY 86400LL
#define KIB 1024LL

struct loader;

enum ftype {
  FT_STRING,    /* char * */
  FT_INT,       /* int in min..max */
  FT_BOOL,      /* int 0 or 1 */
  FT_DURATION,  /* int seconds in min..max */
  FT_SIZE,      /* size_t bytes in min..max */
  FT_ENUM,      /* int: the value of one of choices */
  FT_ENDPOINT,  /* struct endpoint */
  FT_REGEX,     /* GRegex * */
  FT_STRLIST,   /* char ** at off, count at off_n */
  FT_MATCH,     /* struct match_list: one glob or a list of them */
  FT_CIDRLIST,  /* struct cidr * at off, count at off_n */
  FT_MAP,       /* a nested mapping; sub's offsets are relative to off */
  FT_LIST,      /* a list of mappings: elem_size array at off, n at off_n */
  FT_LABELS,    /* struct label_match * at off, count at off_n */
  FT_BACKENDS   /* a rule's backends: names or {backend: ...} mappings */
};

#define F_REQUIRED 0x01u
#define F_SECRET 0x02u    /* X_file allowed; wiped; never printed */
#define F_FIRST 0x04u     /* parsed first: picks the schema variant */
#define F_CASELESS 0x08u  /* regex */
#define F_GROUP 0x10u     /* regex needs a capture group */
#define F_OPTIONAL 0x20u  /* map: absent means none, not its defaults */

struct choice {
  const char *name;
  int value;
};

/* A validator returns NULL when s is fine, else what was expected; it may
 * describe what was found in found (else the value is quoted). */
typedef const char *(*check_fn)(const char *s, char *found, size_t foundsz);

struct schema;

struct field {
  const char *key;
  enum ftype type;
  unsigned flags;
  size_t off;
  size_t off_n;
  long long min;
  long long max;
  const char *def;               /* default, in the syntax of the file */
  const struct choice *choices;  /* ends with a NULL name */
  const char *what;              /* noun for "unknown <what>" */
  check_fn check;
  const struct schema *sub;
  size_t elem_size;
};

struct schema {
  const struct field *fields;    /* ends with a NULL key */
  /* For mappings whose other keys depend on one (a backend's type). */
  const struct schema *(*variant)(const void *obj);
  /* Defaults that depend on other keys, and checks across keys. */
  void (*finish)(struct loader *ld, void *obj, const char *path,
                 size_t idx);
};

struct loader {
  const char *file;
  yaml_document_t doc;
  char *err;
  size_t errsz;
  size_t errlen;
  int nerr;
  /* Keys whose own value was reported: a check across keys says nothing
   * more about them ("expected tls.key with tls.cert, found none" after
   * "tls.key: expected a file only its owner can read" is wrong). */
  char bad[BAD_PATHS][PATH_LEN];
  size_t nbad;
};

/* One value being set: from the file (node) or from a default (text). */
struct ctx {
  struct loader *ld;
  const struct field *f;
  yaml_node_t *node;   /* NULL for a default */
  const char *text;    /* the scalar or the default; NULL for a node */
  const char *path;
  void *obj;           /* the struct that f->off is relative to */
};

struct ftype_ops {
  const char *noun;    /* what a value of the type is, for messages */
  int scalar;          /* 1: only a scalar will do */
  int (*set)(struct ctx *cx);
  void (*free)(const struct field *f, void *obj);
};

static void parse_obj(struct loader *ld, const struct schema *sc,
                      yaml_node_t *n, const char *path, void *obj,
                      size_t idx);
static void obj_free(const struct schema *sc, void *obj);

/* ---- error reporting ---- */

static void
load_verror(struct loader *ld, const yaml_mark_t *m, const char *path,
            const char *fmt, va_list ap)
{
  char msg[512];
  size_t left;
  int r;

  ld->nerr++;
  if (ld->nbad < BAD_PATHS)
    snprintf(ld->bad[ld->nbad++], PATH_LEN, "%s", path);
  if (ld->err == NULL || ld->errlen + 1 >= ld->errsz)
    return;
  vsnprintf(msg, sizeof(msg), fmt, ap);
  left = ld->errsz - ld->errlen;
  r = snprintf(ld->err + ld->errlen, left, "%s:%zu:%zu: %s: %s\n",
               ld->file, m ? m->line + 1 : 1, m ? m->column + 1 : 1,
               *path ? path : "(top)", msg);
  if (r > 0)
    ld->errlen += (size_t)r < left ? (size_t)r : left - 1;
}

/* Returns 1 when an error was already reported at path or path_file. */
static int
path_reported(const struct loader *ld, const char *path)
{
  size_t len = strlen(path);

  for (size_t i = 0; i < ld->nbad; i++)
    if (strncmp(ld->bad[i], path, len) == 0 &&
        (ld->bad[i][len] == '\0' || strcmp(ld->bad[i] + len, "_file") == 0))
      return 1;
  return 0;
}

static void __attribute__((format(printf, 4, 5)))
mark_error(struct loader *ld, const yaml_mark_t *m, const char *path,
           const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  load_verror(ld, m, path, fmt, ap);
  va_end(ap);
}

static void __attribute__((format(printf, 4, 5)))
load_error(struct loader *ld, const yaml_node_t *n, const char *path,
           const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  load_verror(ld, n ? &n->start_mark : NULL, path, fmt, ap);
  va_end(ap);
}

static int
node_is_null(const yaml_node_t *n)
{
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  const char *v;

  if (n == NULL)
    return 1;
  if (n->type != YAML_SCALAR_NODE ||
      n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  v = (const char *)n->data.scalar.value;
  for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
    if (strcmp(v, nulls[i]) == 0)
      return 1;
  return 0;
}

/* Describes a node for "found ...": never the value of a secret. */
static const char *
node_found(const yaml_node_t *n, int secret, char *buf, size_t sz)
{
  if (n == NULL || node_is_null(n))
    return "nothing";
  if (n->type == YAML_MAPPING_NODE)
    return "a mapping";
  if (n->type == YAML_SEQUENCE_NODE)
    return "a list";
  if (secret)
    return "a value (redacted)";
  return log_escape(buf, sz, (const char *)n->data.scalar.value,
                    n->data.scalar.length);
}

/* Reports "expected <what>, found <found or the value>". */
static int __attribute__((format(printf, 3, 4)))
cx_bad(struct ctx *cx, const char *found, const char *fmt, ...)
{
  char expect[256], buf[FOUND_LEN];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(expect, sizeof(expect), fmt, ap);
  va_end(ap);
  if (found == NULL && cx->node == NULL && cx->text)
    found = log_escape(buf, sizeof(buf), cx->text, strlen(cx->text));
  if (found == NULL)
    found = node_found(cx->node, (cx->f->flags & F_SECRET) != 0, buf,
                       sizeof(buf));
  load_error(cx->ld, cx->node, cx->path, "expected %s, found %s", expect,
             found);
  return -1;
}

/* ---- document navigation ---- */

static yaml_node_t *
map_value(yaml_document_t *doc, yaml_node_t *map, const char *key,
          size_t len)
{
  if (map == NULL || map->type != YAML_MAPPING_NODE)
    return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
       p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);

    if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == len &&
        memcmp(k->data.scalar.value, key, len) == 0)
      return yaml_document_get_node(doc, p->value);
  }
  return NULL;
}

static yaml_node_t *
seq_item(yaml_document_t *doc, yaml_node_t *seq, size_t i)
{
  if (seq == NULL || seq->type != YAML_SEQUENCE_NODE)
    return NULL;
  if (i >= (size_t)(seq->data.sequence.items.top -
                    seq->data.sequence.items.start))
    return NULL;
  return yaml_document_get_node(doc, seq->data.sequence.items.start[i]);
}

/* The node at a dotted path like "cameras[1].smtp.user", or its nearest
 * ancestor that exists, so checks across keys can point at a line. */
static yaml_node_t *
node_at(struct loader *ld, const char *path)
{
  yaml_node_t *n = yaml_document_get_root_node(&ld->doc);
  const char *p = path;

  while (n && *p) {
    yaml_node_t *next;

    if (*p == '.')
      p++;
    if (*p == '[') {
      char *end;
      unsigned long i = strtoul(p + 1, &end, 10);

      next = seq_item(&ld->doc, n, i);
      p = *end == ']' ? end + 1 : end;
    } else {
      size_t len = strcspn(p, ".[");

      next = map_value(&ld->doc, n, p, len);
      p += len;
    }
    if (next == NULL)
      break;
    n = next;
  }
  return n;
}

static void __attribute__((format(printf, 3, 4)))
path_error(struct loader *ld, const char *path, const char *fmt, ...)
{
  yaml_node_t *n = node_at(ld, path);
  va_list ap;

  va_start(ap, fmt);
  load_verror(ld, n ? &n->start_mark : NULL, path, fmt, ap);
  va_end(ap);
}

static void
path_join(char *dst, size_t sz, const char *path, const char *key)
{
  snprintf(dst, sz, "%s%s%s", path, *path ? "." : "", key);
}

/* ---- value syntax ---- */

long
config_parse_duration(const char *s)
{
  static const struct { char unit; long mult; } units[] = {
    {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}
  };
  long v, mult = 1;
  char *end;

  if (s == NULL || !isdigit((unsigned char)s[0]))
    return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0)
    return -1;
  if (*end != '\0') {
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
      if (*end == units[i].unit)
        break;
    if (i == sizeof(units) / sizeof(units[0]) || end[1] != '\0')
      return -1;
    mult = units[i].mult;
  }
  if (v > LONG_MAX / mult)
    return -1;
  return v * mult;
}

long long
config_parse_size(const char *s)
{
  long long v, mult = 1;
  char *end;

  if (s == NULL || !isdigit((unsigned char)s[0]))
    return -1;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0)
    return -1;
  if (*end != '\0') {
    const char *units = "KMG";
    const char *u = strchr(units, toupper((unsigned char)*end));

    if (u == NULL || end[1] != '\0')
      return -1;
    for (const char *q = units; q <= u; q++)
      mult *= 1024;
  }
  if (v > LLONG_MAX / mult)
    return -1;
  return v * mult;
}

static void
fmt_duration(char *buf, size_t sz, long long s)
{
  static const struct { const char *unit; long long mult; } units[] = {
    {"d", DAY}, {"h", 3600}, {"m", 60}
  };

  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (s > 0 && s % units[i].mult == 0) {
      snprintf(buf, sz, "%lld%s", s / units[i].mult, units[i].unit);
      return;
    }
  }
  snprintf(buf, sz, "%llds", s);
}

static void
fmt_size(char *buf, size_t sz, long long n)
{
  static const char units[] = "GMK";
  long long mult = KIB * KIB * KIB;

  for (size_t i = 0; i < 3; i++, mult /= KIB) {
    if (n > 0 && n % mult == 0) {
      snprintf(buf, sz, "%lld%c", n / mult, units[i]);
      return;
    }
  }
  snprintf(buf, sz, "%lld", n);
}

static int
port_parse(const char *s, int *port)
{
  char *end;
  long v;

  if (!isdigit((unsigned char)s[0]))
    return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
    return -1;
  *port = (int)v;
  return 0;
}

static int
hostname_ok(const char *s, size_t len)
{
  if (len == 0 || len > 253)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];

    if (!isalnum(c) && c != '.' && c != '-' && c != '_')
      return 0;
  }
  return 1;
}

/* "host:port", "[v6]:port"; the host is stored without brackets. */
static int
endpoint_parse(const char *s, struct endpoint *ep)
{
  const char *host = s, *colon;
  char tmp[INET6_ADDRSTRLEN];
  unsigned char bin[16];
  size_t hlen;

  if (*s == '[') {
    const char *close = strchr(s, ']');

    if (close == NULL || close[1] != ':')
      return -1;
    host = s + 1;
    hlen = (size_t)(close - host);
    if (hlen == 0 || hlen >= sizeof(tmp))
      return -1;
    memcpy(tmp, host, hlen);
    tmp[hlen] = '\0';
    if (inet_pton(AF_INET6, tmp, bin) != 1)
      return -1;
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL || memchr(s, ':', (size_t)(colon - s)))
      return -1;
    hlen = (size_t)(colon - s);
    if (!hostname_ok(s, hlen))
      return -1;
  }
  if (port_parse(colon + 1, &ep->port) < 0)
    return -1;
  ep->host = xstrndup(host, hlen);
  return 0;
}

/* Returns 0, -1 for bad syntax, -2 for host bits set below the prefix. */
static int
cidr_parse(const char *s, struct cidr *c)
{
  char tmp[INET6_ADDRSTRLEN + 8];
  const char *slash = strchr(s, '/');
  size_t alen = slash ? (size_t)(slash - s) : strlen(s);
  int max;

  if (alen == 0 || alen >= sizeof(tmp))
    return -1;
  memcpy(tmp, s, alen);
  tmp[alen] = '\0';
  memset(c, 0, sizeof(*c));
  if (inet_pton(AF_INET, tmp, c->addr) == 1) {
    c->family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, tmp, c->addr) == 1) {
    c->family = AF_INET6;
    max = 128;
  } else {
    return -1;
  }
  c->prefix = max;
  if (slash) {
    char *end;
    long p;

    if (!isdigit((unsigned char)slash[1]))
      return -1;
    errno = 0;
    p = strtol(slash + 1, &end, 10);
    if (errno != 0 || *end != '\0' || p < 0 || p > max)
      return -1;
    c->prefix = (int)p;
  }
  for (int bit = c->prefix; bit < max; bit++)
    if (c->addr[bit / 8] & (0x80 >> (bit % 8)))
      return -2;
  return 0;
}

static int
prefix_match(const unsigned char *net, const unsigned char *a, int prefix)
{
  int full = prefix / 8, rest = prefix % 8;
  unsigned char mask;

  if (memcmp(net, a, (size_t)full) != 0)
    return 0;
  if (rest == 0)
    return 1;
  mask = (unsigned char)(0xff << (8 - rest));
  return (net[full] & mask) == (a[full] & mask);
}

int
cidr_contains(const struct cidr *c, const struct sockaddr *sa)
{
  const unsigned char *a;
  int family;

  if (c == NULL || sa == NULL)
    return 0;
  if (sa->sa_family == AF_INET) {
    a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    family = AF_INET;
  } else if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

    a = a6->s6_addr;
    family = AF_INET6;
    /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d. */
    if (c->family == AF_INET && IN6_IS_ADDR_V4MAPPED(a6)) {
      a += 12;
      family = AF_INET;
    }
  } else {
    return 0;
  }
  return family == c->family && prefix_match(c->addr, a, c->prefix);
}

/* ---- validators ---- */

static int
chars_ok(const char *s, size_t max, const char *extra, int lower_only)
{
  size_t n = strlen(s);

  if (n == 0 || n > max)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];

    if (lower_only ? (islower(c) || isdigit(c)) : isalnum(c))
      continue;
    if (strchr(extra, c) == NULL)
      return 0;
  }
  return 1;
}

static const char *
check_camera_id(const char *s, char *found, size_t sz)
{
  (void)found, (void)sz;
  if (strcmp(s, EVENT_CAMERA_SELF) == 0)
    return "an id other than \"" EVENT_CAMERA_SELF "\" (camgate's own "
           "notices use it)";
  return chars_ok(s, 64, "_.-", 0) ? NULL
         : "1 to 64 of A-Z a-z 0-9 _ . -";
}

static const char *
check_kind(const char *s, char *found, size_t sz)
{
  (void)found, (void)sz;
  return chars_ok(s, 64, "_", 1) ? NULL : "a kind of a-z 0-9 _";
}

static const char *
check_backend_name(const char *s, char *found, size_t sz)
{
  (void)found, (void)sz;
  return chars_ok(s, 64, "_-", 0) ? NULL : "1 to 64 of A-Z a-z 0-9 _ -";
}

static const char *
check_token(const char *s, char *found, size_t sz)
{
  (void)found, (void)sz;
  for (const char *p = s; *p; p++)
    if (!isgraph((unsigned char)*p))
      return "printable characters without spaces";
  return *s ? NULL : "a non-empty value";
}

static const char *
check_nonempty(const char *s, char *found, size_t sz)
{
  (void)found, (void)sz;
  return *s ? NULL : "a non-empty value";
}

static const char *
check_crypt(const char *s, char *found, size_t sz)
{
  if (s[0] != '$' || strlen(s) < 4 || check_token(s, found, sz))
    return "a crypt(3) hash starting with '$' (like $y$...)";
  return NULL;
}

static const char *
check_hostname(const char *s, char *found, size_t sz)
{
  (void)found, (void)sz;
  return hostname_ok(s, strlen(s)) ? NULL : "a host name";
}

static const char *
check_mqtt_host(const char *s, char *found, size_t sz)
{
  unsigned char bin[16];

  (void)found, (void)sz;
  if (hostname_ok(s, strlen(s)) || inet_pton(AF_INET6, s, bin) == 1)
    return NULL;
  return "a host name or address";
}

static const char *
check_topic(const char *s, char *found, size_t sz)
{
  size_t n = strlen(s);

  (void)found, (void)sz;
  if (n == 0 || strpbrk(s, "+#") || s[0] == '/' || s[n - 1] == '/')
    return "a topic without '+', '#' or a leading or trailing '/'";
  return NULL;
}

static const char *
check_readable(const char *s, char *found, size_t sz)
{
  if (access(s, R_OK) == 0)
    return NULL;
  snprintf(found, sz, "\"%.40s\" (%s)", s, strerror(errno));
  return "a readable file";
}

/* Private keys with loose modes are refused, as sshd and OpenSMTPD do. */
static const char *
check_private(const char *s, char *found, size_t sz)
{
  struct stat st;

  if (stat(s, &st) < 0) {
    snprintf(found, sz, "\"%.40s\" (%s)", s, strerror(errno));
    return "an existing key file";
  }
  if (st.st_mode & 077) {
    snprintf(found, sz, "mode %04o", (unsigned)(st.st_mode & 07777));
    return "a file only its owner can read (chmod 600)";
  }
  return NULL;
}

/* An addr-spec as mailbox headers and SMTP take it: local@domain, no
 * spaces, brackets or quotes (a display name has its own key). */
static const char *
check_email_addr(const char *s, char *found, size_t sz)
{
  const char *at = strchr(s, '@');

  (void)found, (void)sz;
  if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') ||
      strlen(s) > 254 || strpbrk(s, "<>\"(),;: \t\r\n\\"))
    return "an e-mail address like alerts@example.com";
  for (const char *p = s; *p; p++)
    if (!isgraph((unsigned char)*p))
      return "an e-mail address like alerts@example.com";
  return NULL;
}

static const char *
check_url(const char *s, char *found, size_t sz)
{
  (void)found, (void)sz;
  if ((strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) ||
      check_token(s, found, sz) != NULL)
    return "an http:// or https:// URL";
  return NULL;
}

static const char *
check_time_zone(const char *s, char *found, size_t sz)
{
  GTimeZone *tz = g_time_zone_new_identifier(s);

  (void)found, (void)sz;
  if (tz == NULL)
    return "a time zone name like Europe/Berlin or UTC";
  g_time_zone_unref(tz);
  return NULL;
}

/* ---- validators of rules ---- */

static const char *
check_template(const char *s, char *found, size_t sz)
{
  return template_check(s, found, sz);
}

static const char *
check_rate(const char *s, char *found, size_t sz)
{
  int n, per;

  (void)found, (void)sz;
  return config_parse_rate(s, &n, &per) == 0 ? NULL
         : "a rate like 10/h, 3/5m or 100/d (1 to 100000 per 1s to 30d)";
}

static const char *
check_window(const char *s, char *found, size_t sz)
{
  int from, to;

  (void)found, (void)sz;
  return config_parse_window(s, &from, &to) == 0 ? NULL
         : "a time window like 23:00-06:30 (HH:MM-HH:MM; 24:00 ends a day)";
}

static const char *
check_days(const char *s, char *found, size_t sz)
{
  unsigned mask = 0;

  (void)found, (void)sz;
  return config_parse_days(s, &mask) == 0 ? NULL
         : "a day (mon, tue, wed, thu, fri, sat, sun) or a range like "
           "mon-fri";
}

static const char *
check_snapshot(const char *s, char *found, size_t sz)
{
  int w, h;

  (void)found, (void)sz;
  return config_parse_snapshot(s, &w, &h) == 0 ? NULL
         : "a snapshot size like 640x480, or full, or none";
}

/* ---- validators of ntfy ---- */

/* ntfy topics follow the same rule as backend names. */
static const char *
check_ntfy_topic(const char *s, char *found, size_t sz)
{
  return check_backend_name(s, found, sz);
}

/* Basic auth joins user and password with ':'. */
static const char *
check_ntfy_user(const char *s, char *found, size_t sz)
{
  if (check_token(s, found, sz) || strchr(s, ':'))
    return "a user name without spaces or ':'";
  return NULL;
}

static const char *
check_nonempty_template(const char *s, char *found, size_t sz)
{
  return *s ? check_template(s, found, sz) : "a non-empty template";
}

/* A URL that may hold {fields}, like http://cam/{camera}. */
static const char *
check_url_template(const char *s, char *found, size_t sz)
{
  const char *expect = check_url(s, found, sz);

  return expect ? expect : check_template(s, found, sz);
}

/* ---- setters, one per type ---- */

static void *
cx_dst(struct ctx *cx)
{
  return (char *)cx->obj + cx->f->off;
}

static const struct choice *
choice_find(const struct choice *ch, const char *s)
{
  for (; ch->name; ch++)
    if (strcmp(ch->name, s) == 0)
      return ch;
  return NULL;
}

static int
bad_choice(struct ctx *cx)
{
  char list[128] = "";
  size_t n = 0;

  for (const struct choice *ch = cx->f->choices; ch->name; ch++) {
    int r = snprintf(list + n, sizeof(list) - n, "%s%s",
                     n ? ", " : "", ch->name);

    if (r < 0 || (size_t)r >= sizeof(list) - n)
      break;
    n += (size_t)r;
  }
  if (cx->f->what)
    return cx_bad(cx, NULL, "a known %s (%s)", cx->f->what, list);
  return cx_bad(cx, NULL, "one of %s", list);
}

static int
run_check(struct ctx *cx, check_fn check, const char *s)
{
  char found[FOUND_LEN] = "";
  const char *expect = check ? check(s, found, sizeof(found)) : NULL;

  if (expect == NULL)
    return 0;
  return cx_bad(cx, found[0] ? found : NULL, "%s", expect);
}

static int
set_string(struct ctx *cx)
{
  char **dst = cx_dst(cx);

  if (cx->f->choices && choice_find(cx->f->choices, cx->text) == NULL)
    return bad_choice(cx);
  if (run_check(cx, cx->f->check, cx->text) < 0)
    return -1;
  *dst = xstrdup(cx->text);
  return 0;
}

static int
set_int(struct ctx *cx)
{
  const struct field *f = cx->f;
  char *end;
  long long v;

  errno = 0;
  v = strtoll(cx->text, &end, 10);
  if (errno != 0 || end == cx->text || *end != '\0' || v < f->min ||
      v > f->max)
    return cx_bad(cx, NULL, "an integer from %lld to %lld", f->min, f->max);
  *(int *)cx_dst(cx) = (int)v;
  return 0;
}

static int
set_bool(struct ctx *cx)
{
  static const struct { const char *name; int value; } words[] = {
    {"true", 1}, {"yes", 1}, {"on", 1},
    {"false", 0}, {"no", 0}, {"off", 0}
  };

  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
    if (strcasecmp(cx->text, words[i].name) == 0) {
      *(int *)cx_dst(cx) = words[i].value;
      return 0;
    }
  }
  return cx_bad(cx, NULL, "true or false");
}

static int
set_duration(struct ctx *cx)
{
  long v = config_parse_duration(cx->text);
  char lo[32], hi[32];

  if (v >= cx->f->min && v <= cx->f->max) {
    *(int *)cx_dst(cx) = (int)v;
    return 0;
  }
  fmt_duration(lo, sizeof(lo), cx->f->min);
  fmt_duration(hi, sizeof(hi), cx->f->max);
  return cx_bad(cx, NULL, "a duration from %s to %s (like 30s, 5m, 2h, 7d)",
                lo, hi);
}

static int
set_size(struct ctx *cx)
{
  long long v = config_parse_size(cx->text);
  char lo[32], hi[32];

  if (v >= cx->f->min && v <= cx->f->max) {
    *(size_t *)cx_dst(cx) = (size_t)v;
    return 0;
  }
  fmt_size(lo, sizeof(lo), cx->f->min);
  fmt_size(hi, sizeof(hi), cx->f->max);
  return cx_bad(cx, NULL, "a size from %s to %s (like 512K, 32M, 1G)", lo,
                hi);
}

static int
set_enum(struct ctx *cx)
{
  const struct choice *ch = choice_find(cx->f->choices, cx->text);

  if (ch == NULL)
    return bad_choice(cx);
  *(int *)cx_dst(cx) = ch->value;
  return 0;
}

static int
set_endpoint(struct ctx *cx)
{
  if (endpoint_parse(cx->text, cx_dst(cx)) == 0)
    return 0;
  return cx_bad(cx, NULL, "host:port with a port from 1 to 65535 "
                "(like 127.0.0.1:2525 or [::1]:2525)");
}

/* GLib says "Error while compiling regular expression 'x' at char N: why";
 * the pattern is already in the message, so keep only the position and
 * the reason. */
static const char *
regex_reason(const char *msg)
{
  const char *at = strstr(msg, " at char ");

  return at ? at + 1 : msg;
}

static int
set_regex(struct ctx *cx)
{
  GRegexCompileFlags flags = G_REGEX_OPTIMIZE;
  GError *gerr = NULL;
  GRegex *re;
  char found[FOUND_LEN + 160];
  char q[FOUND_LEN];

  if (cx->f->flags & F_CASELESS)
    flags |= G_REGEX_CASELESS;
  re = g_regex_new(cx->text, flags, 0, &gerr);
  if (re == NULL) {
    snprintf(found, sizeof(found), "%s (%s)",
             log_escape(q, sizeof(q), cx->text, strlen(cx->text)),
             regex_reason(gerr->message));
    g_error_free(gerr);
    return cx_bad(cx, found, "a valid regular expression");
  }
  if ((cx->f->flags & F_GROUP) && g_regex_get_capture_count(re) < 1) {
    g_regex_unref(re);
    return cx_bad(cx, NULL, "a regular expression with a capture group, "
                  "like (\\d+)");
  }
  *(GRegex **)cx_dst(cx) = re;
  return 0;
}

/* Calls item() for each scalar of a list, or for n itself when it is a
 * scalar and one_ok; reports anything else. Returns the items' count. */
static size_t
each_item(struct ctx *cx, const char *noun, int one_ok,
          int (*item)(struct ctx *ic, void *arr, size_t i), void *arr)
{
  yaml_node_t *n = cx->node;
  size_t count, ok = 0;

  if (n->type == YAML_SCALAR_NODE && one_ok) {
    struct ctx ic = *cx;

    ic.text = (const char *)n->data.scalar.value;
    return item(&ic, arr, 0) == 0;
  }
  if (n->type != YAML_SEQUENCE_NODE) {
    cx_bad(cx, NULL, "%s", noun);
    return 0;
  }
  count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  for (size_t i = 0; i < count; i++) {
    char path[PATH_LEN];
    struct ctx ic = *cx;

    snprintf(path, sizeof(path), "%s[%zu]", cx->path, i);
    ic.path = path;
    ic.node = seq_item(&cx->ld->doc, n, i);
    if (ic.node == NULL || ic.node->type != YAML_SCALAR_NODE ||
        node_is_null(ic.node)) {
      cx_bad(&ic, NULL, "a single value");
      continue;
    }
    ic.text = (const char *)ic.node->data.scalar.value;
    if (item(&ic, arr, ok) == 0)
      ok++;
  }
  return ok;
}

static size_t
node_count(const yaml_node_t *n)
{
  if (n->type == YAML_SEQUENCE_NODE)
    return (size_t)(n->data.sequence.items.top -
                    n->data.sequence.items.start);
  return 1;
}

static int
str_item(struct ctx *ic, void *arr, size_t i)
{
  if (run_check(ic, ic->f->check, ic->text) < 0)
    return -1;
  ((char **)arr)[i] = xstrdup(ic->text);
  return 0;
}

static int
set_strlist(struct ctx *cx)
{
  char **arr = xcalloc(node_count(cx->node), sizeof(char *));
  size_t n = each_item(cx, "a list", 0, str_item, arr);

  *(char ***)cx_dst(cx) = arr;
  *(size_t *)((char *)cx->obj + cx->f->off_n) = n;
  return 0;
}

static int
set_match(struct ctx *cx)
{
  struct match_list *m = cx_dst(cx);

  m->globs = xcalloc(node_count(cx->node), sizeof(char *));
  m->n = each_item(cx, "a glob or a list of globs", 1, str_item, m->globs);
  return 0;
}

static int
cidr_item(struct ctx *ic, void *arr, size_t i)
{
  int r = cidr_parse(ic->text, &((struct cidr *)arr)[i]);

  if (r == -2)
    return cx_bad(ic, NULL, "a network with no bits set past the prefix "
                  "(like 192.0.2.0/24)");
  if (r < 0)
    return cx_bad(ic, NULL, "an address or network (like 192.0.2.10, "
                  "192.0.2.0/24, 2001:db8::/32)");
  return 0;
}

static int
set_cidrlist(struct ctx *cx)
{
  struct cidr *arr = xcalloc(node_count(cx->node), sizeof(*arr));
  size_t n = each_item(cx, "a network or a list of networks", 1, cidr_item,
                       arr);

  *(struct cidr **)cx_dst(cx) = arr;
  *(size_t *)((char *)cx->obj + cx->f->off_n) = n;
  return 0;
}

static int
set_map(struct ctx *cx)
{
  parse_obj(cx->ld, cx->f->sub, cx->node, cx->path, cx_dst(cx), 0);
  return 0;
}

static int
set_list(struct ctx *cx)
{
  const struct field *f = cx->f;
  size_t n;
  char *arr;

  if (cx->node->type != YAML_SEQUENCE_NODE)
    return cx_bad(cx, NULL, "a list");
  n = node_count(cx->node);
  arr = xcalloc(n, f->elem_size);
  *(void **)cx_dst(cx) = arr;
  *(size_t *)((char *)cx->obj + f->off_n) = n;
  for (size_t i = 0; i < n; i++) {
    char path[PATH_LEN];

    snprintf(path, sizeof(path), "%s[%zu]", cx->path, i);
    parse_obj(cx->ld, f->sub, seq_item(&cx->ld->doc, cx->node, i), path,
              arr + i * f->elem_size, i);
  }
  return 0;
}

/* ---- freeing, one per type ---- */

static void
free_string(const struct field *f, void *obj)
{
  char **p = (void *)((char *)obj + f->off);

  if (*p && (f->flags & F_SECRET))
    explicit_bzero(*p, strlen(*p));
  free(*p);
  *p = NULL;
}

static void
free_nothing(const struct field *f, void *obj)
{
  (void)f, (void)obj;
}

static void
free_endpoint(const struct field *f, void *obj)
{
  struct endpoint *ep = (void *)((char *)obj + f->off);

  free(ep->host);
  ep->host = NULL;
}

static void
free_regex(const struct field *f, void *obj)
{
  GRegex **re = (void *)((char *)obj + f->off);

  if (*re)
    g_regex_unref(*re);
  *re = NULL;
}

static void
free_strv(char **v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void
free_strlist(const struct field *f, void *obj)
{
  char ***p = (void *)((char *)obj + f->off);
  size_t *n = (void *)((char *)obj + f->off_n);

  free_strv(*p, *n);
  *p = NULL;
  *n = 0;
}

static void
free_match(const struct field *f, void *obj)
{
  struct match_list *m = (void *)((char *)obj + f->off);

  free_strv(m->globs, m->n);
  m->globs = NULL;
  m->n = 0;
}

static void
free_cidrlist(const struct field *f, void *obj)
{
  struct cidr **p = (void *)((char *)obj + f->off);

  free(*p);
  *p = NULL;
}

static void
free_map(const struct field *f, void *obj)
{
  obj_free(f->sub, (char *)obj + f->off);
}

static void
free_list(const struct field *f, void *obj)
{
  char **p = (void *)((char *)obj + f->off);
  size_t *n = (void *)((char *)obj + f->off_n);

  for (size_t i = 0; *p && i < *n; i++)
    obj_free(f->sub, *p + i * f->elem_size);
  free(*p);
  *p = NULL;
  *n = 0;
}

/* ---- the types of rules: labels and backends ---- */

/* A rule's item of `backends` while it is parsed: the action, whose
 * schema's offsets start at 0, and the backend it is for. */
struct action_item {
  struct action_conf act;
  char *backend;
};

static const struct schema action_schema;
static const struct schema action_item_schema;

static size_t
map_count(const yaml_node_t *n)
{
  return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* One label of a rule's `labels`: its globs. Returns 0 when kept. */
static int
label_set(struct ctx *cx, yaml_node_pair_t *p, struct label_match *lm)
{
  yaml_node_t *k = yaml_document_get_node(&cx->ld->doc, p->key);
  char path[PATH_LEN], found[FOUND_LEN];
  struct ctx ic = *cx;
  const char *key;

  if (k == NULL || k->type != YAML_SCALAR_NODE || node_is_null(k)) {
    load_error(cx->ld, k, cx->path, "expected a label name, found %s",
               node_found(k, 0, found, sizeof(found)));
    return -1;
  }
  key = (const char *)k->data.scalar.value;
  path_join(path, sizeof(path), cx->path, key);
  ic.path = path;
  ic.node = yaml_document_get_node(&cx->ld->doc, p->value);
  if (ic.node == NULL || node_is_null(ic.node)) {
    cx_bad(&ic, NULL, "a glob or a list of globs");
    return -1;
  }
  lm->values.globs = xcalloc(node_count(ic.node), sizeof(char *));
  lm->values.n = each_item(&ic, "a glob or a list of globs", 1, str_item,
                           lm->values.globs);
  lm->key = xstrdup(key);
  return 0;
}

static int
set_labels(struct ctx *cx)
{
  struct label_match *arr;
  size_t n = 0;

  if (cx->node->type != YAML_MAPPING_NODE)
    return cx_bad(cx, NULL, "a mapping of label names to globs");
  arr = xcalloc(map_count(cx->node) + 1, sizeof(*arr));
  for (yaml_node_pair_t *p = cx->node->data.mapping.pairs.start;
       p < cx->node->data.mapping.pairs.top; p++)
    if (label_set(cx, p, &arr[n]) == 0)
      n++;
  *(struct label_match **)cx_dst(cx) = arr;
  *(size_t *)((char *)cx->obj + cx->f->off_n) = n;
  return 0;
}

/* One item of a rule's `backends`: a name, or a mapping with `backend`
 * and what that backend gets. Returns 0 when kept. */
static int
rule_backend_set(struct ctx *ic, struct rule_conf *rc, size_t i)
{
  struct action_item ai;

  if (ic->node->type == YAML_MAPPING_NODE) {
    memset(&ai, 0, sizeof(ai));
    parse_obj(ic->ld, &action_item_schema, ic->node, ic->path, &ai, i);
    if (ai.backend == NULL) {
      obj_free(&action_item_schema, &ai);
      return -1;
    }
    rc->backends[i] = ai.backend;
    rc->actions[i] = ai.act;
    return 0;
  }
  if (ic->node->type != YAML_SCALAR_NODE || node_is_null(ic->node))
    return cx_bad(ic, NULL, "a backend name or a mapping with backend:");
  ic->text = (const char *)ic->node->data.scalar.value;
  if (run_check(ic, check_nonempty, ic->text) < 0)
    return -1;
  rc->backends[i] = xstrdup(ic->text);
  return 0;
}

static int
set_rule_backends(struct ctx *cx)
{
  struct rule_conf *rc = cx->obj;
  size_t count, n = 0;

  if (cx->node->type != YAML_SEQUENCE_NODE)
    return cx_bad(cx, NULL, "a list of backend names or mappings with "
                  "backend:");
  count = node_count(cx->node);
  rc->backends = xcalloc(count + 1, sizeof(char *));
  rc->actions = xcalloc(count + 1, sizeof(struct action_conf));
  for (size_t i = 0; i < count; i++) {
    char path[PATH_LEN];
    struct ctx ic = *cx;

    snprintf(path, sizeof(path), "%s[%zu]", cx->path, i);
    ic.path = path;
    ic.node = seq_item(&cx->ld->doc, cx->node, i);
    if (ic.node && rule_backend_set(&ic, rc, n) == 0)
      n++;
  }
  rc->nbackends = n;
  return 0;
}

static void
free_labels(const struct field *f, void *obj)
{
  struct label_match **p = (void *)((char *)obj + f->off);
  size_t *n = (void *)((char *)obj + f->off_n);

  for (size_t i = 0; *p && i < *n; i++) {
    free((*p)[i].key);
    free_strv((*p)[i].values.globs, (*p)[i].values.n);
  }
  free(*p);
  *p = NULL;
  *n = 0;
}

static void
free_rule_backends(const struct field *f, void *obj)
{
  struct rule_conf *rc = obj;

  (void)f;
  for (size_t i = 0; i < rc->nbackends; i++) {
    free(rc->backends[i]);
    if (rc->actions)
      obj_free(&action_schema, &rc->actions[i]);
  }
  free(rc->backends);
  free(rc->actions);
  rc->backends = NULL;
  rc->actions = NULL;
  rc->nbackends = 0;
}

static const struct ftype_ops ftype_ops[] = {
  [FT_STRING] = {"a string", 1, set_string, free_string},
  [FT_INT] = {"an integer", 1, set_int, free_nothing},
  [FT_BOOL] = {"true or false", 1, set_bool, free_nothing},
  [FT_DURATION] = {"a duration", 1, set_duration, free_nothing},
  [FT_SIZE] = {"a size", 1, set_size, free_nothing},
  [FT_ENUM] = {"one word", 1, set_enum, free_nothing},
  [FT_ENDPOINT] = {"host:port", 1, set_endpoint, free_endpoint},
  [FT_REGEX] = {"a regular expression", 1, set_regex, free_regex},
  [FT_STRLIST] = {"a list", 0, set_strlist, free_strlist},
  [FT_MATCH] = {"a glob or a list of globs", 0, set_match, free_match},
  [FT_CIDRLIST] = {"a list of networks", 0, set_cidrlist, free_cidrlist},
  [FT_MAP] = {"a mapping", 0, set_map, free_map},
  [FT_LIST] = {"a list", 0, set_list, free_list},
  [FT_LABELS] = {"a mapping", 0, set_labels, free_labels},
  [FT_BACKENDS] = {"a list", 0, set_rule_backends, free_rule_backends},
};

/* ---- the mapping walker ---- */

/* Parsing state of one mapping: its schema, the variant chosen by an
 * F_FIRST key, and which keys were given (bit 1) or given as X_file
 * (bit 2). */
struct objstate {
  const struct schema *sc[2];
  unsigned char seen[2][MAX_FIELDS];
};

static const struct field *
field_find(struct objstate *st, const char *key, size_t len, int *si,
           int *fi)
{
  for (int s = 0; s < 2; s++) {
    if (st->sc[s] == NULL)
      continue;
    for (int i = 0; st->sc[s]->fields[i].key; i++) {
      const struct field *f = &st->sc[s]->fields[i];

      if (i >= MAX_FIELDS)
        fatal("config: schema of %s has too many keys", f->key);
      if (strlen(f->key) == len && memcmp(f->key, key, len) == 0) {
        *si = s;
        *fi = i;
        return f;
      }
    }
  }
  return NULL;
}

/* Reads a secret file: one trailing newline is not part of the secret.
 * Returns a malloc'd string the caller wipes, or NULL after an error. */
static char *
secret_read(struct ctx *cx, const char *file)
{
  char found[FOUND_LEN + 64];
  struct stat st;
  ssize_t r;
  size_t n = 0;
  char *buf;
  int fd;

  fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(found, sizeof(found), "\"%.60s\" (%s)", file, strerror(errno));
    cx_bad(cx, found, "a readable secret file");
    return NULL;
  }
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
      st.st_size > SECRET_MAX_BYTES) {
    close(fd);
    cx_bad(cx, NULL, "a regular file of at most 64K");
    return NULL;
  }
  if (st.st_mode & 077) {
    close(fd);
    snprintf(found, sizeof(found), "mode %04o",
             (unsigned)(st.st_mode & 07777));
    cx_bad(cx, found, "a file only its owner can read (chmod 600)");
    return NULL;
  }
  buf = xmalloc((size_t)st.st_size + 1);
  while (n < (size_t)st.st_size &&
         (r = read(fd, buf + n, (size_t)st.st_size - n)) > 0)
    n += (size_t)r;
  close(fd);
  buf[n] = '\0';
  if (n > 0 && buf[n - 1] == '\n')
    buf[--n] = '\0';
  return buf;
}

/* Sets f from the value node n (NULL: from its default). */
static void
field_set(struct loader *ld, const struct field *f, yaml_node_t *n,
          const char *path, void *obj)
{
  struct ctx cx = {ld, f, n, NULL, path, obj};
  const struct ftype_ops *ops = &ftype_ops[f->type];

  if (n == NULL) {
    if (f->type == FT_MAP)
      ops->set(&cx);
    else if (f->def && ops->scalar) {
      cx.text = f->def;
      ops->set(&cx);
    }
    return;
  }
  if (ops->scalar) {
    if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
      cx_bad(&cx, NULL, "%s", ops->noun);
      return;
    }
    cx.text = (const char *)n->data.scalar.value;
  }
  ops->set(&cx);
}

static void
secret_set(struct loader *ld, const struct field *f, yaml_node_t *n,
           const char *path, void *obj)
{
  struct ctx cx = {ld, f, n, NULL, path, obj};
  char *secret;

  if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
    cx_bad(&cx, NULL, "a file name");
    return;
  }
  secret = secret_read(&cx, (const char *)n->data.scalar.value);
  if (secret == NULL)
    return;
  cx.text = secret;
  set_string(&cx);
  explicit_bzero(secret, strlen(secret));
  free(secret);
}

static int
key_is_file(const char *key, size_t len)
{
  return len > 5 && memcmp(key + len - 5, "_file", 5) == 0;
}

static void
unknown_key(struct loader *ld, struct objstate *st, yaml_node_t *k,
            const char *path)
{
  char list[256] = "", found[FOUND_LEN];
  size_t n = 0;

  for (int s = 0; s < 2; s++) {
    for (int i = 0; st->sc[s] && st->sc[s]->fields[i].key; i++) {
      const struct field *f = &st->sc[s]->fields[i];
      int r = snprintf(list + n, sizeof(list) - n, "%s%s%s", n ? ", " : "",
                       f->key, (f->flags & F_SECRET) ? "[_file]" : "");

      if (r < 0 || (size_t)r >= sizeof(list) - n)
        break;
      n += (size_t)r;
    }
  }
  load_error(ld, k, path, "expected one of %s, found unknown key %s", list,
             node_found(k, 0, found, sizeof(found)));
}

/* Handles one key: value pair. The first pass takes only F_FIRST keys,
 * which pick the variant; the second takes the rest and reports. */
static void
pair_parse(struct loader *ld, struct objstate *st, yaml_node_pair_t *p,
           const char *path, void *obj, int first)
{
  yaml_node_t *k = yaml_document_get_node(&ld->doc, p->key);
  yaml_node_t *v = yaml_document_get_node(&ld->doc, p->value);
  const struct field *f;
  char sub[PATH_LEN], found[FOUND_LEN];
  const char *key;
  size_t len;
  int si = 0, fi = 0, file = 0;

  if (k == NULL || k->type != YAML_SCALAR_NODE) {
    if (!first)
      load_error(ld, k, path, "expected a key name, found %s",
                 node_found(k, 0, found, sizeof(found)));
    return;
  }
  key = (const char *)k->data.scalar.value;
  len = k->data.scalar.length;
  f = field_find(st, key, len, &si, &fi);
  if (f == NULL && key_is_file(key, len)) {
    f = field_find(st, key, len - 5, &si, &fi);
    file = f && (f->flags & F_SECRET);
    f = file ? f : NULL;
  }
  if (first != (f && (f->flags & F_FIRST)))
    return;
  path_join(sub, sizeof(sub), path, key);
  if (f == NULL) {
    /* Keys of an unknown backend type cannot be checked; the type error
     * says what is wrong. */
    if (!(st->sc[0]->variant && st->sc[1] == NULL))
      unknown_key(ld, st, k, sub);
    return;
  }
  if (st->seen[si][fi]) {
    if (st->seen[si][fi] == 2 || file)
      load_error(ld, k, sub, "expected either %s or %s_file, found both",
                 f->key, f->key);
    else
      load_error(ld, k, sub, "expected the key once, found it again");
    return;
  }
  if (node_is_null(v) && !ftype_ops[f->type].scalar)
    return;
  st->seen[si][fi] = file ? 2 : 1;
  if (file)
    secret_set(ld, f, v, sub, obj);
  else
    field_set(ld, f, v, sub, obj);
}

static void
defaults_apply(struct loader *ld, struct objstate *st, const char *path,
               void *obj)
{
  for (int s = 0; s < 2; s++) {
    for (int i = 0; st->sc[s] && st->sc[s]->fields[i].key; i++) {
      const struct field *f = &st->sc[s]->fields[i];
      char sub[PATH_LEN];

      if (st->seen[s][i] || (f->flags & F_OPTIONAL))
        continue;
      path_join(sub, sizeof(sub), path, f->key);
      if (f->flags & F_REQUIRED)
        path_error(ld, sub, "expected %s (required), found nothing",
                   ftype_ops[f->type].noun);
      else
        field_set(ld, f, NULL, sub, obj);
    }
  }
}

static void
pairs_parse(struct loader *ld, struct objstate *st, yaml_node_t *n,
            const char *path, void *obj, int first)
{
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
       p < n->data.mapping.pairs.top; p++)
    pair_parse(ld, st, p, path, obj, first);
}

/* Picks the variant when every F_FIRST key was set without error. */
static const struct schema *
variant_pick(struct loader *ld, struct objstate *st, void *obj,
             int nerr_before)
{
  const struct schema *sc = st->sc[0];

  if (sc->variant == NULL || ld->nerr != nerr_before)
    return NULL;
  for (int i = 0; sc->fields[i].key; i++)
    if ((sc->fields[i].flags & F_FIRST) && !st->seen[0][i])
      return NULL;
  return sc->variant(obj);
}

/* Fills obj from the mapping n against sc; n NULL applies the defaults.
 * idx is the item's place when the mapping is in a list. */
static void
parse_obj(struct loader *ld, const struct schema *sc, yaml_node_t *n,
          const char *path, void *obj, size_t idx)
{
  struct objstate st = {{sc, NULL}, {{0}}};
  char found[FOUND_LEN];
  int nerr = ld->nerr;

  if (n && node_is_null(n))
    n = NULL;
  if (n && n->type != YAML_MAPPING_NODE) {
    load_error(ld, n, path, "expected a mapping, found %s",
               node_found(n, 0, found, sizeof(found)));
    return;
  }
  if (n) {
    pairs_parse(ld, &st, n, path, obj, 1);
    st.sc[1] = variant_pick(ld, &st, obj, nerr);
    pairs_parse(ld, &st, n, path, obj, 0);
  }
  defaults_apply(ld, &st, path, obj);
  if (sc->finish)
    sc->finish(ld, obj, path, idx);
}

static void
fields_free(const struct field *fields, void *obj)
{
  for (const struct field *f = fields; f->key; f++)
    ftype_ops[f->type].free(f, obj);
}

static void
obj_free(const struct schema *sc, void *obj)
{
  const struct schema *extra = sc->variant ? sc->variant(obj) : NULL;

  fields_free(sc->fields, obj);
  if (extra)
    fields_free(extra->fields, obj);
}

/* ---- the schema ---- */

#define CF(m) offsetof(struct config, m)
#define TLS(m) offsetof(struct tls_conf, m)
#define SM(m) offsetof(struct smtp_conf, m)
#define KP(m) offsetof(struct kind_pattern, m)
#define CAM(m) offsetof(struct camera_conf, m)
#define BE(m) offsetof(struct backend_conf, m)
#define MQ(m) offsetof(struct backend_conf, u.mqtt.m)
#define EM(m) offsetof(struct backend_conf, u.email.m)
#define OA(m) offsetof(struct oauth_conf, m)
#define RU(m) offsetof(struct rule_conf, m)
#define NT(m) offsetof(struct backend_conf, u.ntfy.m)
#define NA(m) offsetof(struct ntfy_action_conf, m)
#define AC(m) offsetof(struct action_conf, m)

static const struct choice log_levels[] = {
  {"error", 0}, {"warn", 0}, {"info", 0}, {"debug", 0}, {NULL, 0}
};
static const struct choice tls_versions[] = {
  {"1.0", 0}, {"1.1", 0}, {"1.2", 0}, {"1.3", 0}, {NULL, 0}
};
static const struct choice kind_fields[] = {
  {"subject", KIND_SUBJECT}, {"body", KIND_BODY}, {"any", KIND_ANY},
  {NULL, 0}
};
static const struct choice states[] = {
  {"start", 0}, {"stop", 0}, {"pulse", 0}, {NULL, 0}
};
static const struct choice channel_froms[] = {
  {"rcpt", CHANNEL_RCPT}, {"sender", CHANNEL_SENDER},
  {"subject", CHANNEL_SUBJECT}, {"body", CHANNEL_BODY}, {NULL, 0}
};
static const struct choice backend_types[] = {
  {"mqtt", BACKEND_MQTT}, {"email", BACKEND_EMAIL}, {"ntfy", BACKEND_NTFY},
  {NULL, 0}
};
static const struct choice ntfy_priorities[] = {
  {"min", 1}, {"low", 2}, {"default", 3}, {"high", 4}, {"urgent", 5},
  {"max", 5}, {"1", 1}, {"2", 2}, {"3", 3}, {"4", 4}, {"5", 5}, {NULL, 0}
};
static const struct choice ntfy_action_types[] = {
  {"view", NTFY_ACTION_VIEW}, {"http", NTFY_ACTION_HTTP}, {NULL, 0}
};
static const struct choice http_methods[] = {
  {"GET", 0}, {"POST", 0}, {"PUT", 0}, {"DELETE", 0}, {NULL, 0}
};
static const struct choice email_transports[] = {
  {"smtp", EMAIL_SMTP}, {"smtp_xoauth2", EMAIL_SMTP_XOAUTH2},
  {"graph", EMAIL_GRAPH}, {NULL, 0}
};
static const struct choice email_modes[] = {
  {"compose", EMAIL_MODE_COMPOSE}, {"forward", EMAIL_MODE_FORWARD},
  {NULL, 0}
};
static const struct choice email_tls_modes[] = {
  {"starttls", EMAIL_TLS_STARTTLS}, {"implicit", EMAIL_TLS_IMPLICIT},
  {"none", EMAIL_TLS_NONE}, {NULL, 0}
};
static const struct choice oauth_providers[] = {
  {"microsoft", OAUTH_MICROSOFT}, {"google", OAUTH_GOOGLE}, {NULL, 0}
};
static const struct choice oauth_flows[] = {
  {"device", OAUTH_FLOW_DEVICE}, {"auth_code", OAUTH_FLOW_AUTH_CODE},
  {"client_credentials", OAUTH_FLOW_CLIENT_CREDENTIALS}, {NULL, 0}
};

static const struct choice priorities[] = {
  {"min", 0}, {"low", 0}, {"default", 0}, {"high", 0}, {"urgent", 0},
  {NULL, 0}
};
static const struct choice snapshot_matches[] = {
  {"true", MATCH_SNAPSHOT_YES}, {"yes", MATCH_SNAPSHOT_YES},
  {"false", MATCH_SNAPSHOT_NO}, {"no", MATCH_SNAPSHOT_NO}, {NULL, 0}
};

static void action_finish(struct loader *ld, void *obj, const char *path,
                          size_t idx);
static void smtp_finish(struct loader *ld, void *obj, const char *path,
                        size_t idx);
static void camera_finish(struct loader *ld, void *obj, const char *path,
                          size_t idx);
static void camera_smtp_finish(struct loader *ld, void *obj,
                               const char *path, size_t idx);
static void backend_finish(struct loader *ld, void *obj, const char *path,
                           size_t idx);
static void rule_finish(struct loader *ld, void *obj, const char *path,
                        size_t idx);
static void root_finish(struct loader *ld, void *obj, const char *path,
                        size_t idx);
static const struct schema *backend_variant(const void *obj);

static const struct field log_fields[] = {
  {.key = "level", .type = FT_STRING, .off = CF(log_level), .def = "info",
   .choices = log_levels, .what = "log level"},
  {.key = NULL}
};
static const struct schema log_schema = {log_fields, NULL, NULL};

static const struct field spool_fields[] = {
  {.key = "path", .type = FT_STRING, .off = CF(spool_path), .def = "./var",
   .check = check_nonempty},
  {.key = "retention", .type = FT_DURATION, .off = CF(retention),
   .min = 60, .max = 3650 * DAY, .def = "7d"},
  {.key = NULL}
};
static const struct schema spool_schema = {spool_fields, NULL, NULL};

static const struct field tls_fields[] = {
  {.key = "cert", .type = FT_STRING, .off = TLS(cert),
   .check = check_readable},
  {.key = "key", .type = FT_STRING, .off = TLS(key), .check = check_private},
  {.key = "min_version", .type = FT_STRING, .off = TLS(min_version),
   .def = "1.2", .choices = tls_versions, .what = "TLS version"},
  {.key = "ciphers", .type = FT_STRING, .off = TLS(ciphers),
   .check = check_nonempty},
  {.key = NULL}
};
static const struct schema tls_schema = {tls_fields, NULL, NULL};

static const struct field kind_fields_tab[] = {
  {.key = "pattern", .type = FT_REGEX, .off = KP(re),
   .flags = F_REQUIRED | F_CASELESS},
  {.key = "in", .type = FT_ENUM, .off = KP(field), .def = "any",
   .choices = kind_fields},
  {.key = "kind", .type = FT_STRING, .off = KP(kind), .flags = F_REQUIRED,
   .check = check_kind},
  {.key = "state", .type = FT_STRING, .off = KP(state), .choices = states,
   .what = "state"},
  {.key = NULL}
};
static const struct schema kind_schema = {kind_fields_tab, NULL, NULL};

static const struct field smtp_fields[] = {
  {.key = "listen", .type = FT_ENDPOINT, .off = SM(listen),
   .def = "127.0.0.1:2525"},
  {.key = "listen_tls", .type = FT_ENDPOINT, .off = SM(listen_tls)},
  {.key = "hostname", .type = FT_STRING, .off = SM(hostname),
   .check = check_hostname},
  {.key = "max_size", .type = FT_SIZE, .off = SM(max_size), .min = KIB,
   .max = KIB * KIB * KIB, .def = "32M"},
  {.key = "max_sessions", .type = FT_INT, .off = SM(max_sessions), .min = 1,
   .max = 100000, .def = "200"},
  /* No default here: smtp_finish() gives 20, or max_sessions if lower. */
  {.key = "max_sessions_per_address", .type = FT_INT,
   .off = SM(max_sessions_per_address), .min = 1, .max = 100000},
  {.key = "idle_timeout", .type = FT_DURATION, .off = SM(idle_timeout),
   .min = 1, .max = DAY, .def = "5m"},
  {.key = "session_timeout", .type = FT_DURATION,
   .off = SM(session_timeout), .min = 1, .max = DAY, .def = "30m"},
  {.key = "max_recipients", .type = FT_INT, .off = SM(max_recipients),
   .min = 1, .max = 10000, .def = "100"},
  {.key = "auth_failures", .type = FT_INT, .off = SM(auth_failures),
   .min = 1, .max = 1000, .def = "5"},
  {.key = "auth_lockout", .type = FT_DURATION, .off = SM(auth_lockout),
   .min = 1, .max = 7 * DAY, .def = "5m"},
  {.key = "kinds", .type = FT_LIST, .off = SM(kinds), .off_n = SM(nkinds),
   .sub = &kind_schema, .elem_size = sizeof(struct kind_pattern)},
  {.key = NULL}
};
static const struct schema smtp_schema = {smtp_fields, NULL, smtp_finish};

static const struct field camera_smtp_fields[] = {
  {.key = "user", .type = FT_STRING, .off = CAM(smtp_user),
   .check = check_token},
  {.key = "password_hash", .type = FT_STRING,
   .off = CAM(smtp_password_hash), .flags = F_SECRET, .check = check_crypt},
  {.key = NULL}
};
static const struct schema camera_smtp_schema = {
  camera_smtp_fields, NULL, camera_smtp_finish
};

static const struct field channel_fields[] = {
  {.key = "from", .type = FT_ENUM, .off = CAM(channel_from),
   .flags = F_REQUIRED, .choices = channel_froms, .what = "channel source"},
  {.key = "pattern", .type = FT_REGEX, .off = CAM(channel_re),
   .flags = F_REQUIRED | F_GROUP},
  {.key = "id", .type = FT_STRING, .off = CAM(channel_id),
   .def = "{camera}-{1}", .check = check_nonempty},
  {.key = "name", .type = FT_STRING, .off = CAM(channel_name),
   .def = "{name} {1}", .check = check_nonempty},
  {.key = NULL}
};
static const struct schema channel_schema = {channel_fields, NULL, NULL};

/* What a rule does for a backend; also backends[].defaults and
 * cameras[].defaults. The limit keys also make cameras[].limit. */
#define LIMIT_FIELDS \
  {.key = "cooldown", .type = FT_DURATION, .off = AC(cooldown), .min = 0, \
   .max = 7 * DAY}, \
  {.key = "rate", .type = FT_STRING, .off = AC(rate), .check = check_rate}, \
  {.key = "burst", .type = FT_INT, .off = AC(burst), .min = 1, \
   .max = 10000}, \
  {.key = "daily_cap", .type = FT_INT, .off = AC(daily_cap), .min = 1, \
   .max = 100000}
#define ACTION_FIELDS \
  {.key = "priority", .type = FT_STRING, .off = AC(priority), \
   .choices = priorities, .what = "priority"}, \
  {.key = "title", .type = FT_STRING, .off = AC(title), \
   .check = check_template}, \
  {.key = "message", .type = FT_STRING, .off = AC(message), \
   .check = check_template}, \
  {.key = "snapshot", .type = FT_STRING, .off = AC(snapshot), \
   .check = check_snapshot}, \
  LIMIT_FIELDS, \
  {.key = "summary", .type = FT_BOOL, .off = AC(summary)}

static const struct field action_fields[] = {
  ACTION_FIELDS,
  {.key = NULL}
};
static const struct schema action_schema = {
  action_fields, NULL, action_finish
};

static const struct field action_item_fields[] = {
  {.key = "backend", .type = FT_STRING,
   .off = offsetof(struct action_item, backend), .flags = F_REQUIRED,
   .check = check_nonempty},
  ACTION_FIELDS,
  {.key = NULL}
};
static const struct schema action_item_schema = {
  action_item_fields, NULL, action_finish
};

static const struct field limit_fields[] = {
  LIMIT_FIELDS,
  {.key = NULL}
};
static const struct schema limit_schema = {limit_fields, NULL, action_finish};

static const struct field camera_fields[] = {
  {.key = "id", .type = FT_STRING, .off = CAM(id), .flags = F_REQUIRED,
   .check = check_camera_id},
  {.key = "name", .type = FT_STRING, .off = CAM(name),
   .check = check_nonempty},
  {.key = "smtp", .type = FT_MAP, .flags = F_OPTIONAL,
   .sub = &camera_smtp_schema},
  {.key = "allow_from", .type = FT_CIDRLIST, .off = CAM(allow),
   .off_n = CAM(nallow)},
  {.key = "channel", .type = FT_MAP, .flags = F_OPTIONAL,
   .sub = &channel_schema},
  {.key = "kinds", .type = FT_STRLIST, .off = CAM(kinds),
   .off_n = CAM(nkinds), .check = check_kind},
  {.key = "defaults", .type = FT_MAP, .off = CAM(defaults),
   .flags = F_OPTIONAL, .sub = &action_schema},
  {.key = "limit", .type = FT_MAP, .off = CAM(limit), .flags = F_OPTIONAL,
   .sub = &limit_schema},
  {.key = NULL}
};
static const struct schema camera_schema = {
  camera_fields, NULL, camera_finish
};

static const struct field backend_fields[] = {
  {.key = "name", .type = FT_STRING, .off = BE(name), .flags = F_REQUIRED,
   .check = check_backend_name},
  {.key = "type", .type = FT_ENUM, .off = BE(type),
   .flags = F_REQUIRED | F_FIRST, .choices = backend_types,
   .what = "backend type"},
  {.key = "retry_initial", .type = FT_DURATION, .off = BE(retry_initial),
   .min = 1, .max = DAY, .def = "5s"},
  {.key = "retry_max", .type = FT_DURATION, .off = BE(retry_max), .min = 1,
   .max = 7 * DAY, .def = "10m"},
  {.key = "max_attempts", .type = FT_INT, .off = BE(max_attempts), .min = 0,
   .max = 1000000, .def = "0"},
  {.key = "defaults", .type = FT_MAP, .off = BE(defaults),
   .flags = F_OPTIONAL, .sub = &action_schema},
  {.key = NULL}
};
static const struct schema backend_schema = {
  backend_fields, backend_variant, backend_finish
};

static const struct field mqtt_fields[] = {
  {.key = "host", .type = FT_STRING, .off = MQ(host), .def = "127.0.0.1",
   .check = check_mqtt_host},
  {.key = "port", .type = FT_INT, .off = MQ(port), .min = 1, .max = 65535,
   .def = "1883"},
  {.key = "user", .type = FT_STRING, .off = MQ(user), .check = check_token},
  {.key = "password", .type = FT_STRING, .off = MQ(password),
   .flags = F_SECRET, .check = check_nonempty},
  {.key = "client_id", .type = FT_STRING, .off = MQ(client_id),
   .def = "camgate", .check = check_token},
  {.key = "keepalive", .type = FT_DURATION, .off = MQ(keepalive), .min = 5,
   .max = 65535, .def = "30s"},
  {.key = "tls", .type = FT_BOOL, .off = MQ(tls), .def = "false"},
  {.key = "ca_file", .type = FT_STRING, .off = MQ(ca_file),
   .check = check_readable},
  {.key = "tls_insecure", .type = FT_BOOL, .off = MQ(tls_insecure),
   .def = "false"},
  {.key = "topic_prefix", .type = FT_STRING, .off = MQ(topic_prefix),
   .def = "camgate", .check = check_topic},
  {.key = "discovery", .type = FT_BOOL, .off = MQ(discovery),
   .def = "true"},
  {.key = "discovery_prefix", .type = FT_STRING,
   .off = MQ(discovery_prefix), .def = "homeassistant",
   .check = check_topic},
  {.key = "hold", .type = FT_DURATION, .off = MQ(hold), .min = 1,
   .max = DAY, .def = "30s"},
  {.key = "start_timeout", .type = FT_DURATION, .off = MQ(start_timeout),
   .min = 1, .max = 7 * DAY, .def = "5m"},
  {.key = "snapshot", .type = FT_STRING, .off = MQ(snapshot),
   .check = check_snapshot},
  {.key = "quality", .type = FT_INT, .off = MQ(quality), .min = 1,
   .max = 100, .def = "75"},
  {.key = NULL}
};
static const struct schema mqtt_schema = {mqtt_fields, NULL, NULL};

static const struct field oauth_fields[] = {
  {.key = "provider", .type = FT_ENUM, .off = OA(provider),
   .def = "microsoft", .choices = oauth_providers,
   .what = "OAuth provider"},
  {.key = "flow", .type = FT_ENUM, .off = OA(flow), .choices = oauth_flows,
   .what = "OAuth flow"},
  {.key = "client_id", .type = FT_STRING, .off = OA(client_id),
   .check = check_token},
  {.key = "client_secret", .type = FT_STRING, .off = OA(client_secret),
   .flags = F_SECRET, .check = check_nonempty},
  {.key = "tenant", .type = FT_STRING, .off = OA(tenant), .def = "common",
   .check = check_token},
  {.key = "scope", .type = FT_STRING, .off = OA(scope),
   .check = check_nonempty},
  {.key = "authority", .type = FT_STRING, .off = OA(authority),
   .def = "https://login.microsoftonline.com", .check = check_url},
  {.key = "token_url", .type = FT_STRING, .off = OA(token_url),
   .check = check_url},
  {.key = "device_code_url", .type = FT_STRING, .off = OA(device_code_url),
   .check = check_url},
  {.key = "auth_url", .type = FT_STRING, .off = OA(auth_url),
   .check = check_url},
  {.key = "redirect_uri", .type = FT_STRING, .off = OA(redirect_uri),
   .def = "http://127.0.0.1:8765/", .check = check_url},
  {.key = "token_file", .type = FT_STRING, .off = OA(token_file),
   .check = check_nonempty},
  {.key = "refresh_margin", .type = FT_DURATION, .off = OA(refresh_margin),
   .min = 10, .max = DAY, .def = "5m"},
  {.key = "refresh_every", .type = FT_DURATION, .off = OA(refresh_every),
   .min = 60, .max = 30 * DAY, .def = "1d"},
  {.key = NULL}
};
static const struct schema oauth_schema = {oauth_fields, NULL, NULL};

static const struct field email_fields[] = {
  {.key = "transport", .type = FT_ENUM, .off = EM(transport),
   .flags = F_REQUIRED, .choices = email_transports,
   .what = "e-mail transport"},
  {.key = "mode", .type = FT_ENUM, .off = EM(mode), .def = "compose",
   .choices = email_modes, .what = "e-mail mode"},
  {.key = "host", .type = FT_STRING, .off = EM(host),
   .check = check_mqtt_host},
  {.key = "port", .type = FT_INT, .off = EM(port), .min = 1, .max = 65535},
  {.key = "tls", .type = FT_ENUM, .off = EM(tls), .def = "starttls",
   .choices = email_tls_modes, .what = "TLS mode"},
  {.key = "ca_file", .type = FT_STRING, .off = EM(ca_file),
   .check = check_readable},
  {.key = "user", .type = FT_STRING, .off = EM(user), .check = check_token},
  {.key = "password", .type = FT_STRING, .off = EM(password),
   .flags = F_SECRET, .check = check_nonempty},
  {.key = "from", .type = FT_STRING, .off = EM(from), .flags = F_REQUIRED,
   .check = check_email_addr},
  {.key = "from_name", .type = FT_STRING, .off = EM(from_name),
   .def = "camgate", .check = check_nonempty},
  {.key = "to", .type = FT_STRLIST, .off = EM(to), .off_n = EM(nto),
   .flags = F_REQUIRED, .check = check_email_addr},
  {.key = "cc", .type = FT_STRLIST, .off = EM(cc), .off_n = EM(ncc),
   .check = check_email_addr},
  {.key = "reply_to_camera", .type = FT_BOOL, .off = EM(reply_to_camera),
   .def = "false"},
  {.key = "subject", .type = FT_STRING, .off = EM(subject),
   .def = "{camera_name}: {kind}", .check = check_template},
  {.key = "body", .type = FT_STRING, .off = EM(body),
   .def = "{title}\n\n{text}\n\nCamera: {camera_name} ({camera})\n"
          "Event: {kind} {state}\nTime: {datetime}\nRule: {rule}\n",
   .check = check_template},
  {.key = "time_zone", .type = FT_STRING, .off = EM(time_zone),
   .check = check_time_zone},
  {.key = "attach", .type = FT_BOOL, .off = EM(attach), .def = "true"},
  {.key = "max_size", .type = FT_SIZE, .off = EM(max_size), .min = 64 * KIB,
   .max = KIB * KIB * KIB, .def = "20M"},
  {.key = "thumbnail_over", .type = FT_SIZE, .off = EM(thumbnail_over),
   .min = 0, .max = KIB * KIB * KIB, .def = "0"},
  {.key = "snapshot", .type = FT_STRING, .off = EM(snapshot),
   .def = "640x480", .check = check_snapshot},
  {.key = "quality", .type = FT_INT, .off = EM(quality), .min = 1,
   .max = 100, .def = "75"},
  {.key = "timeout", .type = FT_DURATION, .off = EM(timeout), .min = 1,
   .max = 3600, .def = "60s"},
  {.key = "max_per_minute", .type = FT_INT, .off = EM(max_per_minute),
   .min = 0, .max = 600, .def = "0"},
  {.key = "graph_url", .type = FT_STRING, .off = EM(graph_url),
   .def = "https://graph.microsoft.com/v1.0", .check = check_url},
  {.key = "mailbox", .type = FT_STRING, .off = EM(mailbox),
   .check = check_email_addr},
  {.key = "oauth", .type = FT_MAP, .off = EM(oauth), .sub = &oauth_schema},
  {.key = NULL}
};
static const struct schema email_schema = {email_fields, NULL, NULL};

static const struct field ntfy_action_fields[] = {
  {.key = "action", .type = FT_ENUM, .off = NA(type), .def = "view",
   .choices = ntfy_action_types, .what = "ntfy action"},
  {.key = "label", .type = FT_STRING, .off = NA(label),
   .flags = F_REQUIRED, .check = check_nonempty_template},
  {.key = "url", .type = FT_STRING, .off = NA(url), .flags = F_REQUIRED,
   .check = check_url_template},
  {.key = "method", .type = FT_STRING, .off = NA(method),
   .choices = http_methods, .what = "HTTP method"},
  {.key = "body", .type = FT_STRING, .off = NA(body),
   .check = check_template},
  {.key = "clear", .type = FT_BOOL, .off = NA(clear), .def = "false"},
  {.key = NULL}
};
static const struct schema ntfy_action_schema = {
  ntfy_action_fields, NULL, NULL
};

static const struct field ntfy_fields[] = {
  {.key = "url", .type = FT_STRING, .off = NT(url),
   .def = "https://ntfy.sh", .check = check_url},
  {.key = "topic", .type = FT_STRING, .off = NT(topic), .flags = F_REQUIRED,
   .check = check_ntfy_topic},
  {.key = "token", .type = FT_STRING, .off = NT(token), .flags = F_SECRET,
   .check = check_token},
  {.key = "user", .type = FT_STRING, .off = NT(user),
   .check = check_ntfy_user},
  {.key = "password", .type = FT_STRING, .off = NT(password),
   .flags = F_SECRET, .check = check_nonempty},
  {.key = "priority", .type = FT_ENUM, .off = NT(priority),
   .def = "default", .choices = ntfy_priorities, .what = "ntfy priority"},
  {.key = "tags", .type = FT_STRLIST, .off = NT(tags), .off_n = NT(ntags),
   .check = check_nonempty_template},
  {.key = "click", .type = FT_STRING, .off = NT(click),
   .check = check_url_template},
  {.key = "icon", .type = FT_STRING, .off = NT(icon),
   .check = check_url_template},
  {.key = "actions", .type = FT_LIST, .off = NT(actions),
   .off_n = NT(nactions), .sub = &ntfy_action_schema,
   .elem_size = sizeof(struct ntfy_action_conf)},
  {.key = "title", .type = FT_STRING, .off = NT(title),
   .check = check_nonempty_template},
  {.key = "message", .type = FT_STRING, .off = NT(message),
   .check = check_nonempty_template},
  {.key = "snapshot", .type = FT_STRING, .off = NT(snapshot),
   .def = "640x480", .check = check_snapshot},
  {.key = "quality", .type = FT_INT, .off = NT(quality), .min = 1,
   .max = 100, .def = "75"},
  {.key = "max_attachment", .type = FT_SIZE, .off = NT(max_attachment),
   .min = KIB, .max = KIB * KIB * KIB, .def = "2M"},
  {.key = "timeout", .type = FT_DURATION, .off = NT(timeout), .min = 1,
   .max = 600, .def = "30s"},
  {.key = "ca_file", .type = FT_STRING, .off = NT(ca_file),
   .check = check_readable},
  {.key = NULL}
};
static const struct schema ntfy_schema = {ntfy_fields, NULL, NULL};

static const struct field match_fields[] = {
  {.key = "camera", .type = FT_MATCH, .off = RU(camera)},
  {.key = "kind", .type = FT_MATCH, .off = RU(kind)},
  {.key = "source", .type = FT_MATCH, .off = RU(source)},
  {.key = "state", .type = FT_MATCH, .off = RU(state)},
  {.key = "labels", .type = FT_LABELS, .off = RU(labels),
   .off_n = RU(nlabels)},
  {.key = "days", .type = FT_MATCH, .off = RU(days), .check = check_days},
  {.key = "time", .type = FT_MATCH, .off = RU(time), .check = check_window},
  {.key = "snapshot", .type = FT_ENUM, .off = RU(snapshot),
   .choices = snapshot_matches},
  {.key = NULL}
};
static const struct schema match_schema = {match_fields, NULL, NULL};

static const struct field rule_fields[] = {
  {.key = "name", .type = FT_STRING, .off = RU(name),
   .check = check_nonempty},
  {.key = "match", .type = FT_MAP, .flags = F_OPTIONAL,
   .sub = &match_schema},
  {.key = "backends", .type = FT_BACKENDS, .off = RU(backends)},
  {.key = "continue", .type = FT_BOOL, .off = RU(cont), .def = "false"},
  {.key = "drop", .type = FT_BOOL, .off = RU(drop), .def = "false"},
  {.key = NULL}
};
static const struct schema rule_schema = {rule_fields, NULL, rule_finish};

static const struct field root_fields[] = {
  {.key = "log", .type = FT_MAP, .sub = &log_schema},
  {.key = "spool", .type = FT_MAP, .sub = &spool_schema},
  {.key = "shutdown_grace", .type = FT_DURATION, .off = CF(shutdown_grace),
   .min = 0, .max = 3600, .def = "10s"},
  {.key = "tls", .type = FT_MAP, .off = CF(tls), .sub = &tls_schema},
  {.key = "smtp", .type = FT_MAP, .off = CF(smtp), .sub = &smtp_schema},
  {.key = "cameras", .type = FT_LIST, .off = CF(cameras),
   .off_n = CF(ncameras), .sub = &camera_schema,
   .elem_size = sizeof(struct camera_conf)},
  {.key = "backends", .type = FT_LIST, .off = CF(backends),
   .off_n = CF(nbackends), .sub = &backend_schema,
   .elem_size = sizeof(struct backend_conf)},
  {.key = "rules", .type = FT_LIST, .off = CF(rules), .off_n = CF(nrules),
   .sub = &rule_schema, .elem_size = sizeof(struct rule_conf)},
  {.key = "timezone", .type = FT_STRING, .off = CF(timezone),
   .check = check_time_zone},
  {.key = NULL}
};
static const struct schema root_schema = {root_fields, NULL, root_finish};

static const struct schema *
backend_variant(const void *obj)
{
  const struct backend_conf *bc = obj;

  switch (bc->type) {
  case BACKEND_MQTT:
    return &mqtt_schema;
  case BACKEND_EMAIL:
    return &email_schema;
  case BACKEND_NTFY:
    return &ntfy_schema;
  }
  return NULL;
}

static const char *
choice_name(const struct choice *ch, int value)
{
  for (; ch->name; ch++)
    if (ch->value == value)
      return ch->name;
  return "?";
}

/* ---- checks across keys ---- */

static void
smtp_finish(struct loader *ld, void *obj, const char *path, size_t idx)
{
  struct smtp_conf *sc = obj;
  char host[256];

  (void)idx;
  if (sc->max_sessions_per_address == 0) {
    sc->max_sessions_per_address =
      sc->max_sessions < SMTP_PER_ADDRESS_DEFAULT
        ? sc->max_sessions : SMTP_PER_ADDRESS_DEFAULT;
  } else if (sc->max_sessions > 0 &&
             sc->max_sessions_per_address > sc->max_sessions) {
    char sub[PATH_LEN];

    path_join(sub, sizeof(sub), path, "max_sessions_per_address");
    path_error(ld, sub, "expected an integer from 1 to max_sessions (%d), "
               "found %d", sc->max_sessions, sc->max_sessions_per_address);
  }
  if (sc->hostname)
    return;
  if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
    snprintf(host, sizeof(host), "camgate");
  host[sizeof(host) - 1] = '\0';
  sc->hostname = xstrdup(host);
}

static void
camera_smtp_finish(struct loader *ld, void *obj, const char *path,
                   size_t idx)
{
  struct camera_conf *cc = obj;
  char sub[PATH_LEN];

  (void)idx;
  if (!cc->smtp_user == !cc->smtp_password_hash)
    return;
  path_join(sub, sizeof(sub), path,
            cc->smtp_user ? "password_hash" : "user");
  if (path_reported(ld, sub))
    return;
  path_error(ld, sub, "expected user and password_hash together, "
             "found only %s", cc->smtp_user ? "user" : "password_hash");
}

static void
camera_finish(struct loader *ld, void *obj, const char *path, size_t idx)
{
  struct camera_conf *cc = obj;

  (void)ld, (void)path, (void)idx;
  if (cc->name == NULL && cc->id)
    cc->name = xstrdup(cc->id);
}

/* Returns "AUTHORITY/TENANT/oauth2/v2.0/ENDPOINT", malloc'd. */
static char *
ms_url(const struct oauth_conf *oc, const char *endpoint)
{
  size_t n = strlen(oc->authority) + strlen(oc->tenant) +
             strlen(endpoint) + 16;
  char *s = xmalloc(n);

  snprintf(s, n, "%s/%s/oauth2/v2.0/%s", oc->authority, oc->tenant,
           endpoint);
  return s;
}

/* The scope a provider wants for the transport and flow at hand. */
static const char *
oauth_default_scope(const struct email_conf *ec)
{
  const struct oauth_conf *oc = &ec->oauth;
  int graph = ec->transport == EMAIL_GRAPH;

  if (oc->provider == OAUTH_GOOGLE)
    return "https://mail.google.com/";
  if (oc->flow == OAUTH_FLOW_CLIENT_CREDENTIALS)
    return graph ? "https://graph.microsoft.com/.default"
                 : "https://outlook.office365.com/.default";
  return graph ? "https://graph.microsoft.com/Mail.Send offline_access"
               : "https://outlook.office.com/SMTP.Send offline_access";
}

static void
oauth_defaults(struct email_conf *ec)
{
  struct oauth_conf *oc = &ec->oauth;

  if (oc->flow == OAUTH_FLOW_DEFAULT)
    oc->flow = oc->provider == OAUTH_GOOGLE ? OAUTH_FLOW_AUTH_CODE
                                            : OAUTH_FLOW_DEVICE;
  if (oc->scope == NULL)
    oc->scope = xstrdup(oauth_default_scope(ec));
  if (oc->provider == OAUTH_GOOGLE) {
    if (oc->token_url == NULL)
      oc->token_url = xstrdup("https://oauth2.googleapis.com/token");
    if (oc->auth_url == NULL)
      oc->auth_url = xstrdup("https://accounts.google.com/o/oauth2/v2/auth");
    return;
  }
  if (oc->authority == NULL || oc->tenant == NULL)
    return;   /* already reported */
  if (oc->token_url == NULL)
    oc->token_url = ms_url(oc, "token");
  if (oc->device_code_url == NULL)
    oc->device_code_url = ms_url(oc, "devicecode");
  if (oc->auth_url == NULL)
    oc->auth_url = ms_url(oc, "authorize");
}

static void
oauth_check(struct loader *ld, const struct email_conf *ec,
            const char *path)
{
  const struct oauth_conf *oc = &ec->oauth;
  int app = oc->flow == OAUTH_FLOW_CLIENT_CREDENTIALS;
  char sub[PATH_LEN];

  path_join(sub, sizeof(sub), path, "oauth");
  if (oc->client_id == NULL)
    path_error(ld, sub, "expected oauth.client_id for transport %s, found "
               "none", choice_name(email_transports, ec->transport));
  if (oc->token_file == NULL && !app)
    path_error(ld, sub, "expected oauth.token_file (where the login keeps "
               "its tokens), found none");
  if ((app || oc->provider == OAUTH_GOOGLE) && oc->client_secret == NULL)
    path_error(ld, sub, "expected oauth.client_secret for this provider "
               "and flow, found none");
  if (app && oc->provider != OAUTH_MICROSOFT)
    path_error(ld, sub, "expected flow client_credentials with provider "
               "microsoft only, found provider google");
  if (oc->provider == OAUTH_GOOGLE && oc->flow == OAUTH_FLOW_DEVICE)
    path_error(ld, sub, "expected flow auth_code for Google (its device "
               "flow does not allow mail scopes), found device");
  if (ec->transport == EMAIL_GRAPH && oc->provider != OAUTH_MICROSOFT)
    path_error(ld, sub, "expected provider microsoft for transport graph, "
               "found google");
}

static void
email_finish(struct loader *ld, struct backend_conf *bc, const char *path)
{
  struct email_conf *ec = &bc->u.email;
  char sub[PATH_LEN];

  if (ec->transport != EMAIL_SMTP) {
    oauth_defaults(ec);
    oauth_check(ld, ec, path);
  }
  if (ec->host == NULL && ec->transport == EMAIL_SMTP_XOAUTH2)
    ec->host = xstrdup(ec->oauth.provider == OAUTH_GOOGLE
                       ? "smtp.gmail.com" : "smtp.office365.com");
  if (ec->host == NULL && ec->transport == EMAIL_SMTP) {
    path_join(sub, sizeof(sub), path, "host");
    path_error(ld, sub, "expected the SMTP server's host for transport "
               "smtp, found none");
  }
  if (ec->port == 0)
    ec->port = ec->tls == EMAIL_TLS_IMPLICIT ? 465
               : ec->tls == EMAIL_TLS_STARTTLS ? 587 : 25;
  if (ec->user == NULL && ec->from &&
      (ec->password || ec->transport != EMAIL_SMTP))
    ec->user = xstrdup(ec->from);
  if (ec->mailbox == NULL && ec->from)
    ec->mailbox = xstrdup(ec->from);
  if (ec->snapshot == NULL ||
      config_parse_snapshot(ec->snapshot, &ec->snapshot_w,
                            &ec->snapshot_h) < 0)
    ec->snapshot_w = ec->snapshot_h = -1;
  if (ec->nto == 0) {
    path_join(sub, sizeof(sub), path, "to");
    path_error(ld, sub, "expected at least one recipient, found none");
  }
}

/* Whether a URL names a user (and maybe a password) before its host:
 * it would reach the logs with the URL. */
static int
url_has_userinfo(const char *url)
{
  const char *host = strstr(url, "//");

  if (host == NULL)
    return 0;
  host += 2;
  return memchr(host, '@', strcspn(host, "/?#")) != NULL;
}

/* ntfy's own priority, title, message and snapshot are the backend's
 * defaults for rules' actions (unless defaults: names them itself), so
 * a camera's defaults or a rule's action win over them. */
static void
ntfy_defaults(struct backend_conf *bc)
{
  static const char *const prio[] = {"default", "min", "low", "default",
                                     "high", "urgent"};
  const struct ntfy_conf *nc = &bc->u.ntfy;
  struct action_conf *d = &bc->defaults;

  if (d->priority == NULL && nc->priority >= 1 && nc->priority <= 5)
    d->priority = xstrdup(prio[nc->priority]);
  if (d->title == NULL && nc->title)
    d->title = xstrdup(nc->title);
  if (d->message == NULL && nc->message)
    d->message = xstrdup(nc->message);
  if (d->snapshot == NULL && nc->snapshot)
    d->snapshot = xstrdup(nc->snapshot);
}

static void
ntfy_finish(struct loader *ld, struct backend_conf *bc, const char *path)
{
  struct ntfy_conf *nc = &bc->u.ntfy;
  char sub[PATH_LEN];

  if (nc->snapshot == NULL ||
      config_parse_snapshot(nc->snapshot, &nc->snapshot_w,
                            &nc->snapshot_h) < 0)
    nc->snapshot_w = nc->snapshot_h = -1;
  if (nc->url && url_has_userinfo(nc->url)) {
    path_join(sub, sizeof(sub), path, "url");
    path_error(ld, sub, "expected a URL without user:password@ (use user "
               "and password_file), found one with");
  }
  if (nc->nactions > NTFY_MAX_ACTIONS) {
    path_join(sub, sizeof(sub), path, "actions");
    path_error(ld, sub, "expected at most %d actions (ntfy shows three), "
               "found %zu", NTFY_MAX_ACTIONS, nc->nactions);
  }
  if (nc->token && (nc->user || nc->password)) {
    path_join(sub, sizeof(sub), path, "token");
    path_error(ld, sub, "expected a token or a user and password, found "
               "both");
  } else if (!nc->user != !nc->password) {
    path_join(sub, sizeof(sub), path, nc->user ? "password" : "user");
    if (!path_reported(ld, sub))
      path_error(ld, sub, "expected user and password together, found "
                 "only %s", nc->user ? "user" : "password");
  }
  ntfy_defaults(bc);
}

static void
backend_finish(struct loader *ld, void *obj, const char *path, size_t idx)
{
  struct backend_conf *bc = obj;
  char sub[PATH_LEN];

  (void)idx;
  if (bc->type == BACKEND_EMAIL)
    email_finish(ld, bc, path);
  if (bc->type == BACKEND_NTFY)
    ntfy_finish(ld, bc, path);
  if (bc->retry_initial <= bc->retry_max)
    return;
  path_join(sub, sizeof(sub), path, "retry_max");
  path_error(ld, sub, "expected at least retry_initial (%ds), found %ds",
             bc->retry_initial, bc->retry_max);
}

/* Notes which integer keys an action gives, so that merging fills only
 * the others from defaults (a 0 written is not a 0 left out). */
static void
action_finish(struct loader *ld, void *obj, const char *path, size_t idx)
{
  static const struct { const char *key; unsigned bit; } keys[] = {
    {"cooldown", ACT_COOLDOWN}, {"burst", ACT_BURST},
    {"daily_cap", ACT_DAILY_CAP}, {"summary", ACT_SUMMARY}
  };
  struct action_conf *ac = obj;
  yaml_node_t *n = node_at(ld, path);

  (void)idx;
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    yaml_node_t *v = map_value(&ld->doc, n, keys[i].key,
                               strlen(keys[i].key));

    if (v && !node_is_null(v))
      ac->set |= keys[i].bit;
  }
}

static void
rule_finish(struct loader *ld, void *obj, const char *path, size_t idx)
{
  struct rule_conf *rc = obj;
  char sub[PATH_LEN];

  if (rc->name == NULL) {
    snprintf(sub, sizeof(sub), "rule %zu", idx + 1);
    rc->name = xstrdup(sub);
  }
  path_join(sub, sizeof(sub), path, "drop");
  if (rc->drop && rc->nbackends)
    path_error(ld, sub, "expected drop without backends, found both");
  path_join(sub, sizeof(sub), path, "backends");
  if (!rc->drop && rc->nbackends == 0)
    path_error(ld, sub, "expected backends or drop: true, found neither");
}

/* Reports every value that an earlier item of the list already has. */
static void
unique_check(struct loader *ld, const char *list, const char *key,
             const char *what, const char *const *vals, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; vals[i] && j < i; j++) {
      char path[PATH_LEN], first[PATH_LEN], q[FOUND_LEN];
      yaml_node_t *fn;

      if (vals[j] == NULL || strcmp(vals[i], vals[j]) != 0)
        continue;
      snprintf(path, sizeof(path), "%s[%zu].%s", list, i, key);
      snprintf(first, sizeof(first), "%s[%zu].%s", list, j, key);
      fn = node_at(ld, first);
      path_error(ld, path, "expected a unique %s, found %s again (first "
                 "at line %zu)", what,
                 log_escape(q, sizeof(q), vals[i], strlen(vals[i])),
                 fn ? fn->start_mark.line + 1 : 0);
      break;
    }
  }
}

static void
unique_checks(struct loader *ld, const struct config *cfg)
{
  size_t n = cfg->ncameras > cfg->nbackends ? cfg->ncameras
                                            : cfg->nbackends;
  const char **vals = xcalloc(n, sizeof(*vals));

  for (size_t i = 0; i < cfg->ncameras; i++)
    vals[i] = cfg->cameras[i].id;
  unique_check(ld, "cameras", "id", "camera id", vals, cfg->ncameras);
  for (size_t i = 0; i < cfg->ncameras; i++)
    vals[i] = cfg->cameras[i].smtp_user;
  unique_check(ld, "cameras", "smtp.user", "SMTP user", vals,
               cfg->ncameras);
  for (size_t i = 0; i < cfg->nbackends; i++)
    vals[i] = cfg->backends[i].name;
  unique_check(ld, "backends", "name", "backend name", vals,
               cfg->nbackends);
  free(vals);
}

static void
rule_backends_check(struct loader *ld, const struct config *cfg)
{
  for (size_t i = 0; i < cfg->nrules; i++) {
    const struct rule_conf *rc = &cfg->rules[i];

    for (size_t j = 0; j < rc->nbackends; j++) {
      char path[PATH_LEN], q[FOUND_LEN];

      if (config_backend(cfg, rc->backends[j]))
        continue;
      snprintf(path, sizeof(path), "rules[%zu].backends[%zu]", i, j);
      path_error(ld, path, "expected the name of a backend, found %s",
                 log_escape(q, sizeof(q), rc->backends[j],
                            strlen(rc->backends[j])));
    }
  }
}

static void
tls_check(struct loader *ld, const struct config *cfg)
{
  if (cfg->tls.cert && cfg->tls.key == NULL &&
      !path_reported(ld, "tls.key"))
    path_error(ld, "tls.key", "expected tls.key with tls.cert, found none");
  if (cfg->tls.key && cfg->tls.cert == NULL &&
      !path_reported(ld, "tls.cert"))
    path_error(ld, "tls.cert", "expected tls.cert with tls.key, found none");
  if (cfg->smtp.listen_tls.host && cfg->tls.cert == NULL &&
      !path_reported(ld, "tls.cert"))
    path_error(ld, "smtp.listen_tls", "expected tls.cert and tls.key for "
               "implicit TLS, found no certificate");
}

static void
root_finish(struct loader *ld, void *obj, const char *path, size_t idx)
{
  struct config *cfg = obj;

  (void)path, (void)idx;
  unique_checks(ld, cfg);
  rule_backends_check(ld, cfg);
  tls_check(ld, cfg);
  if (cfg->timezone)
    cfg->tz = g_time_zone_new_identifier(cfg->timezone);
  if (cfg->tz == NULL)
    cfg->tz = g_time_zone_new_local();
}

/* ---- loading ---- */

static char *
file_slurp(struct loader *ld, size_t *len)
{
  char *buf = NULL;
  struct stat st;
  ssize_t r;
  size_t n = 0;
  int fd;

  fd = open(ld->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
      st.st_size > CONFIG_MAX_BYTES) {
    load_error(ld, NULL, "(file)", "expected a readable file of at most 1M, "
               "found %s", fd < 0 ? strerror(errno) : "something else");
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  buf = xmalloc((size_t)st.st_size + 1);
  while (n < (size_t)st.st_size &&
         (r = read(fd, buf + n, (size_t)st.st_size - n)) > 0)
    n += (size_t)r;
  close(fd);
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* Inline secrets pass through libyaml's buffers; wipe what we can reach. */
static void
doc_wipe(yaml_document_t *doc)
{
  for (yaml_node_t *n = doc->nodes.start; n && n < doc->nodes.top; n++)
    if (n->type == YAML_SCALAR_NODE)
      explicit_bzero(n->data.scalar.value, n->data.scalar.length);
}

static void
syntax_error(struct loader *ld, const yaml_parser_t *p)
{
  char ctx[128] = "";

  if (p->context)
    snprintf(ctx, sizeof(ctx), " (%s at line %zu)", p->context,
             p->context_mark.line + 1);
  mark_error(ld, &p->problem_mark, "yaml",
                   "expected valid YAML, found %s%s",
                   p->problem ? p->problem : "an error", ctx);
}

static int
doc_load(struct loader *ld)
{
  yaml_parser_t parser;
  yaml_document_t extra;
  size_t len = 0;
  char *buf = file_slurp(ld, &len);
  int ok;

  if (buf == NULL)
    return -1;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
  ok = yaml_parser_load(&parser, &ld->doc);
  if (!ok) {
    syntax_error(ld, &parser);
  } else if (!yaml_parser_load(&parser, &extra)) {
    syntax_error(ld, &parser);
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&extra);

    if (root)
      load_error(ld, root, "yaml", "expected one document, found another");
    doc_wipe(&extra);
    yaml_document_delete(&extra);
  }
  if (parser.buffer.start)
    explicit_bzero(parser.buffer.start,
                   (size_t)(parser.buffer.end - parser.buffer.start));
  yaml_parser_delete(&parser);
  explicit_bzero(buf, len);
  free(buf);
  if (ok && ld->nerr) {
    doc_wipe(&ld->doc);
    yaml_document_delete(&ld->doc);
  }
  return ok && ld->nerr == 0 ? 0 : -1;
}

static void
config_free(struct config *cfg)
{
  obj_free(&root_schema, cfg);
  if (cfg->tz)
    g_time_zone_unref(cfg->tz);
  free(cfg->path);
  free(cfg);
}

struct config *
config_load(const char *path, char *err, size_t errsz)
{
  struct loader ld = {.file = path, .err = err, .errsz = errsz};
  struct config *cfg;

  if (err && errsz)
    err[0] = '\0';
  if (doc_load(&ld) < 0)
    return NULL;
  cfg = xcalloc(1, sizeof(*cfg));
  cfg->refs = 1;
  cfg->path = xstrdup(path);
  parse_obj(&ld, &root_schema, yaml_document_get_root_node(&ld.doc), "",
            cfg, 0);
  doc_wipe(&ld.doc);
  yaml_document_delete(&ld.doc);
  if (ld.nerr) {
    config_free(cfg);
    return NULL;
  }
  return cfg;
}

struct config *
config_ref(struct config *cfg)
{
  if (cfg)
    cfg->refs++;
  return cfg;
}

void
config_unref(struct config *cfg)
{
  if (cfg == NULL || --cfg->refs > 0)
    return;
  config_free(cfg);
}

/* ---- lookups ---- */

const struct camera_conf *
config_camera_by_user(const struct config *cfg, const char *user)
{
  for (size_t i = 0; user && i < cfg->ncameras; i++)
    if (cfg->cameras[i].smtp_user &&
        strcmp(cfg->cameras[i].smtp_user, user) == 0)
      return &cfg->cameras[i];
  return NULL;
}

const struct camera_conf *
config_camera_by_id(const struct config *cfg, const char *id)
{
  for (size_t i = 0; id && i < cfg->ncameras; i++)
    if (strcmp(cfg->cameras[i].id, id) == 0)
      return &cfg->cameras[i];
  return NULL;
}

const struct camera_conf *
config_camera_by_addr(const struct config *cfg, const struct sockaddr *sa)
{
  for (size_t i = 0; i < cfg->ncameras; i++)
    for (size_t j = 0; j < cfg->cameras[i].nallow; j++)
      if (cidr_contains(&cfg->cameras[i].allow[j], sa))
        return &cfg->cameras[i];
  return NULL;
}

const struct backend_conf *
config_backend(const struct config *cfg, const char *name)
{
  for (size_t i = 0; name && i < cfg->nbackends; i++)
    if (cfg->backends[i].name && strcmp(cfg->backends[i].name, name) == 0)
      return &cfg->backends[i];
  return NULL;
}

/* ---- summary ---- */

static void
print_endpoint(FILE *f, const struct endpoint *ep)
{
  if (strchr(ep->host, ':'))
    fprintf(f, "[%s]:%d", ep->host, ep->port);
  else
    fprintf(f, "%s:%d", ep->host, ep->port);
}

static void
print_list(FILE *f, const char *key, char *const *v, size_t n,
           const char *none)
{
  fprintf(f, " %s=", key);
  if (n == 0)
    fputs(none, f);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s%s", i ? "," : "", v[i]);
}

static void
print_listeners(const struct config *cfg, FILE *f)
{
  char size[32];

  fmt_size(size, sizeof(size), (long long)cfg->smtp.max_size);
  fputs("listener smtp ", f);
  print_endpoint(f, &cfg->smtp.listen);
  fprintf(f, " starttls=%s max_size=%s\n", cfg->tls.cert ? "yes" : "no",
          size);
  if (cfg->smtp.listen_tls.host == NULL)
    return;
  fputs("listener smtps ", f);
  print_endpoint(f, &cfg->smtp.listen_tls);
  fprintf(f, " tls_min=%s\n", cfg->tls.min_version);
}

static void
print_camera(const struct camera_conf *cc, FILE *f)
{
  static const char *const froms[] = {
    [CHANNEL_NONE] = "none", [CHANNEL_RCPT] = "rcpt",
    [CHANNEL_SENDER] = "sender", [CHANNEL_SUBJECT] = "subject",
    [CHANNEL_BODY] = "body"
  };
  char name[128];

  fprintf(f, "camera %s name=%s smtp_user=%s allow=%zu channel=%s", cc->id,
          log_escape(name, sizeof(name), cc->name, strlen(cc->name)),
          cc->smtp_user ? cc->smtp_user : "-", cc->nallow,
          froms[cc->channel_from]);
  print_list(f, "kinds", cc->kinds, cc->nkinds, "-");
  fputc('\n', f);
}

static void
print_email(const struct backend_conf *bc, FILE *f)
{
  const struct email_conf *ec = &bc->u.email;

  fprintf(f, "backend %s type=email transport=%s", bc->name,
          choice_name(email_transports, ec->transport));
  if (ec->transport == EMAIL_GRAPH)
    fprintf(f, " graph=%s", ec->graph_url);
  else
    fprintf(f, " host=%s:%d tls=%s", ec->host, ec->port,
            choice_name(email_tls_modes, ec->tls));
  fprintf(f, " from=%s", ec->from);
  print_list(f, "to", ec->to, ec->nto, "-");
  fprintf(f, " mode=%s", choice_name(email_modes, ec->mode));
  if (ec->thumbnail_over > 0)
    fprintf(f, " thumbnail_over=%zu snapshot=%s", ec->thumbnail_over,
            ec->snapshot ? ec->snapshot : "none");
  if (ec->transport == EMAIL_SMTP)
    fprintf(f, " user=%s password=%s\n", ec->user ? ec->user : "-",
            ec->password ? "(redacted)" : "-");
  else
    fprintf(f, " oauth=%s flow=%s client_secret=%s token_file=%s\n",
            choice_name(oauth_providers, ec->oauth.provider),
            choice_name(oauth_flows, ec->oauth.flow),
            ec->oauth.client_secret ? "(redacted)" : "-",
            ec->oauth.token_file ? ec->oauth.token_file : "-");
}

static void
print_ntfy(const struct backend_conf *bc, FILE *f)
{
  const struct ntfy_conf *nc = &bc->u.ntfy;

  fprintf(f, "backend %s type=ntfy url=%s topic=%s", bc->name, nc->url,
          nc->topic);
  if (nc->token)
    fputs(" token=(redacted)", f);
  else if (nc->user)
    fprintf(f, " user=%s password=(redacted)", nc->user);
  else
    fputs(" auth=none", f);
  fprintf(f, " priority=%d snapshot=%s quality=%d actions=%zu\n",
          nc->priority, nc->snapshot ? nc->snapshot : "none", nc->quality,
          nc->nactions);
}

static void
print_backend(const struct backend_conf *bc, FILE *f)
{
  const struct mqtt_conf *m = &bc->u.mqtt;

  if (bc->type == BACKEND_EMAIL) {
    print_email(bc, f);
    return;
  }
  if (bc->type == BACKEND_NTFY) {
    print_ntfy(bc, f);
    return;
  }
  fprintf(f, "backend %s type=%s host=", bc->name,
          choice_name(backend_types, (int)bc->type));
  if (strchr(m->host, ':'))
    fprintf(f, "[%s]:%d", m->host, m->port);
  else
    fprintf(f, "%s:%d", m->host, m->port);
  fprintf(f, " user=%s password=%s tls=%s discovery=%s\n",
          m->user ? m->user : "-", m->password ? "(redacted)" : "-",
          m->tls ? "yes" : "no", m->discovery ? "yes" : "no");
}

/* The match keys beyond camera, kind, source and state, when given. */
static void
print_rule_extras(const struct rule_conf *rc, FILE *f)
{
  for (size_t i = 0; i < rc->nlabels; i++) {
    char key[96];

    snprintf(key, sizeof(key), "label.%s", rc->labels[i].key);
    print_list(f, key, rc->labels[i].values.globs, rc->labels[i].values.n,
               "*");
  }
  if (rc->days.n)
    print_list(f, "days", rc->days.globs, rc->days.n, "*");
  if (rc->time.n)
    print_list(f, "time", rc->time.globs, rc->time.n, "*");
  if (rc->snapshot != MATCH_SNAPSHOT_ANY)
    fprintf(f, " snapshot=%s",
            rc->snapshot == MATCH_SNAPSHOT_YES ? "yes" : "no");
}

static void
print_rule(const struct rule_conf *rc, FILE *f)
{
  char name[128];

  fprintf(f, "rule %s", log_escape(name, sizeof(name), rc->name,
                                   strlen(rc->name)));
  print_list(f, "camera", rc->camera.globs, rc->camera.n, "*");
  print_list(f, "kind", rc->kind.globs, rc->kind.n, "*");
  print_list(f, "source", rc->source.globs, rc->source.n, "*");
  print_list(f, "state", rc->state.globs, rc->state.n, "*");
  print_rule_extras(rc, f);
  fputs(" ->", f);
  if (rc->drop)
    fputs(" drop", f);
  for (size_t i = 0; i < rc->nbackends; i++)
    fprintf(f, "%s%s", i ? "," : " ", rc->backends[i]);
  fputs(rc->cont ? " (continue)\n" : "\n", f);
}

/* ---- warnings: valid, but probably not what was meant ---- */

static int
warn_empty(const struct config *cfg, FILE *f)
{
  int n = 0;

  if (cfg->ncameras == 0 && ++n)
    fprintf(f, "warning: %s: cameras: none configured; no camera can send "
            "an alert\n", cfg->path);
  if (cfg->nbackends == 0 && ++n)
    fprintf(f, "warning: %s: backends: none configured; alerts are stored "
            "but go nowhere\n", cfg->path);
  if (cfg->nrules == 0 && ++n)
    fprintf(f, "warning: %s: rules: none configured; alerts are stored "
            "but go nowhere\n", cfg->path);
  return n;
}

static int
warn_allow_any(const struct config *cfg, FILE *f)
{
  int n = 0;

  for (size_t i = 0; i < cfg->ncameras; i++) {
    const struct camera_conf *cc = &cfg->cameras[i];

    for (size_t j = 0; j < cc->nallow; j++) {
      if (cc->allow[j].prefix != 0)
        continue;
      fprintf(f, "warning: %s: cameras[%zu].allow_from[%zu]: %s lets any "
              "address send as camera %s without a password; list the "
              "camera's own address or network\n", cfg->path, i, j,
              cc->allow[j].family == AF_INET6 ? "::/0" : "0.0.0.0/0",
              cc->id);
      n++;
    }
  }
  return n;
}

/* Returns 1 when some event's camera could match one of m's globs: a
 * configured id does, or a camera with a channel pattern can mint ids. */
static int
camera_globs_reachable(const struct config *cfg, const struct match_list *m)
{
  if (m->n == 0)
    return 1;
  for (size_t i = 0; i < cfg->ncameras; i++) {
    const struct camera_conf *cc = &cfg->cameras[i];

    if (cc->channel_re)
      return 1;
    for (size_t j = 0; j < m->n; j++)
      if (m->globs[j] && cc->id && fnmatch(m->globs[j], cc->id, 0) == 0)
        return 1;
  }
  return 0;
}

static int
warn_rule_cameras(const struct config *cfg, FILE *f)
{
  int n = 0;

  for (size_t i = 0; i < cfg->nrules; i++) {
    const struct rule_conf *rc = &cfg->rules[i];
    char name[128];

    if (camera_globs_reachable(cfg, &rc->camera))
      continue;
    fprintf(f, "warning: %s: rules[%zu].match.camera: rule %s matches no "
            "configured camera id, so it never applies; check the id\n",
            cfg->path, i, log_escape(name, sizeof(name), rc->name,
                                    strlen(rc->name)));
    n++;
  }
  return n;
}

int
config_print_warnings(const struct config *cfg, FILE *f)
{
  return warn_empty(cfg, f) + warn_allow_any(cfg, f) +
         warn_rule_cameras(cfg, f);
}

void
config_print_summary(const struct config *cfg, FILE *f)
{
  print_listeners(cfg, f);
  for (size_t i = 0; i < cfg->ncameras; i++)
    print_camera(&cfg->cameras[i], f);
  for (size_t i = 0; i < cfg->nbackends; i++)
    print_backend(&cfg->backends[i], f);
  for (size_t i = 0; i < cfg->nrules; i++)
    print_rule(&cfg->rules[i], f);
}

/* ---- comparing backends (a reload keeps the unchanged ones) ---- */

static int obj_equal(const struct schema *sc, const void *a, const void *b);

static int
str_equal(const char *a, const char *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

static int
strv_equal(char *const *a, char *const *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!str_equal(a[i], b[i]))
      return 0;
  return 1;
}

static int
match_equal(const struct match_list *a, const struct match_list *b)
{
  return a->n == b->n && strv_equal(a->globs, b->globs, a->n);
}

static int
regex_equal(GRegex *a, GRegex *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(g_regex_get_pattern(a), g_regex_get_pattern(b)) == 0 &&
         g_regex_get_compile_flags(a) == g_regex_get_compile_flags(b);
}

static int
labels_equal(const struct label_match *a, const struct label_match *b,
             size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!str_equal(a[i].key, b[i].key) ||
        !match_equal(&a[i].values, &b[i].values))
      return 0;
  return 1;
}

static int
rule_backends_equal(const struct rule_conf *a, const struct rule_conf *b)
{
  if (a->nbackends != b->nbackends ||
      !strv_equal(a->backends, b->backends, a->nbackends) ||
      (a->actions == NULL) != (b->actions == NULL))
    return 0;
  for (size_t i = 0; a->actions && i < a->nbackends; i++)
    if (!obj_equal(&action_schema, &a->actions[i], &b->actions[i]))
      return 0;
  return 1;
}

static int
list_equal(const struct field *f, const char *a, const char *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!obj_equal(f->sub, a + i * f->elem_size, b + i * f->elem_size))
      return 0;
  return 1;
}

/* Compares the value of f in the objects a and b as loaded. */
static int
field_equal(const struct field *f, const void *a, const void *b)
{
  const char *pa = (const char *)a + f->off;
  const char *pb = (const char *)b + f->off;
  size_t na = f->off_n ? *(const size_t *)((const char *)a + f->off_n) : 0;
  size_t nb = f->off_n ? *(const size_t *)((const char *)b + f->off_n) : 0;

  switch (f->type) {
  case FT_STRING:
    return str_equal(*(char *const *)pa, *(char *const *)pb);
  case FT_INT:
  case FT_BOOL:
  case FT_DURATION:
  case FT_ENUM:
    return *(const int *)pa == *(const int *)pb;
  case FT_SIZE:
    return *(const size_t *)pa == *(const size_t *)pb;
  case FT_ENDPOINT:
    return str_equal(((const struct endpoint *)pa)->host,
                     ((const struct endpoint *)pb)->host) &&
           ((const struct endpoint *)pa)->port ==
             ((const struct endpoint *)pb)->port;
  case FT_REGEX:
    return regex_equal(*(GRegex *const *)pa, *(GRegex *const *)pb);
  case FT_STRLIST:
    return na == nb && strv_equal(*(char **const *)pa, *(char **const *)pb,
                                  na);
  case FT_MATCH:
    return match_equal((const void *)pa, (const void *)pb);
  case FT_CIDRLIST:
    return na == nb && (na == 0 ||
                        memcmp(*(const struct cidr *const *)pa,
                               *(const struct cidr *const *)pb,
                               na * sizeof(struct cidr)) == 0);
  case FT_MAP:
    return obj_equal(f->sub, pa, pb);
  case FT_LIST:
    return na == nb && list_equal(f, *(char *const *)pa,
                                  *(char *const *)pb, na);
  case FT_LABELS:
    return na == nb && labels_equal(*(const struct label_match *const *)pa,
                                    *(const struct label_match *const *)pb,
                                    na);
  case FT_BACKENDS:
    return rule_backends_equal(a, b);
  }
  return 0;
}

/* Walks the same tables as the loader, so a key added to a schema is
 * compared without a change here; an action's `set` (which keys were
 * given) is the one value that is not a key of its own. */
static int
obj_equal(const struct schema *sc, const void *a, const void *b)
{
  const struct schema *va = sc->variant ? sc->variant(a) : NULL;
  const struct schema *vb = sc->variant ? sc->variant(b) : NULL;

  for (const struct field *f = sc->fields; f->key; f++)
    if (!field_equal(f, a, b))
      return 0;
  if (va != vb)
    return 0;
  for (const struct field *f = va ? va->fields : NULL; f && f->key; f++)
    if (!field_equal(f, a, b))
      return 0;
  if (sc->finish == action_finish &&
      ((const struct action_conf *)a)->set !=
        ((const struct action_conf *)b)->set)
    return 0;
  return 1;
}

int
config_backend_equal(const struct backend_conf *a,
                     const struct backend_conf *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return obj_equal(&backend_schema, a, b);
}
