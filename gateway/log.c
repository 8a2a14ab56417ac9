/* log.c - see log.h. */
#include "gateway/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level = LOGL_INFO;

static const char *const log_names[] = {"error", "warn", "info", "debug"};

void
log_set_level(enum log_level level)
{
  log_level = level;
}

enum log_level
log_get_level(void)
{
  return log_level;
}

int
log_level_parse(const char *name, enum log_level *out)
{
  for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
    if (strcmp(name, log_names[i]) == 0) {
      *out = (enum log_level)i;
      return 0;
    }
  }
  return -1;
}

static void log_vwrite(enum log_level level, const char *sub,
                       const char *fmt, va_list ap)
  __attribute__((format(printf, 3, 0)));

static void
log_vwrite(enum log_level level, const char *sub, const char *fmt,
           va_list ap)
{
  char line[2048];
  struct timeval tv;
  struct tm tm;
  size_t n;
  int r;

  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
  r = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s sub=%s ",
               (long)(tv.tv_usec / 1000), log_names[level], sub);
  if (r > 0)
    n += (size_t)r;
  if (n < sizeof(line)) {
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (r > 0)
      n += (size_t)r;
  }
  if (n >= sizeof(line) - 1)
    n = sizeof(line) - 2;
  line[n++] = '\n';
  fwrite(line, 1, n, stderr);
}

void
log_msg(enum log_level level, const char *sub, const char *fmt, ...)
{
  va_list ap;

  if (level > log_level)
    return;
  va_start(ap, fmt);
  log_vwrite(level, sub, fmt, ap);
  va_end(ap);
}

char *
log_escape(char *dst, size_t dstsz, const char *src, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;

  if (dstsz < 8) {
    if (dstsz)
      dst[0] = '\0';
    return dst;
  }
  dst[o++] = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)src[i];
    char tmp[4];
    size_t tn = 0;

    if (c == '"' || c == '\\') {
      tmp[tn++] = '\\';
      tmp[tn++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      tmp[tn++] = '\\';
      tmp[tn++] = 'x';
      tmp[tn++] = hex[c >> 4];
      tmp[tn++] = hex[c & 15];
    } else {
      tmp[tn++] = (char)c;
    }
    if (o + tn + 5 > dstsz) {
      memcpy(dst + o, "...", 3);
      o += 3;
      break;
    }
    memcpy(dst + o, tmp, tn);
    o += tn;
  }
  dst[o++] = '"';
  dst[o] = '\0';
  return dst;
}

void
fatal(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  log_vwrite(LOGL_ERROR, "fatal", fmt, ap);
  va_end(ap);
  exit(1);
}

void *
xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);

  if (p == NULL)
    fatal("out of memory allocating %zu bytes", n);
  return p;
}

void *
xcalloc(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size ? size : 1);

  if (p == NULL)
    fatal("out of memory allocating %zu x %zu bytes", n, size);
  return p;
}

void *
xrealloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);

  if (q == NULL)
    fatal("out of memory reallocating %zu bytes", n);
  return q;
}

char *
xstrdup(const char *s)
{
  return xstrndup(s, strlen(s));
}

char *
xasprintf(const char *fmt, ...)
{
  va_list ap;
  char *s;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    fatal("cannot format a string from \"%s\"", fmt);
  s = xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

char *
xstrndup(const char *s, size_t n)
{
  char *p = xmalloc(n + 1);

  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

int
write_all(int fd, const void *p, size_t n)
{
  const char *c = p;

  while (n > 0) {
    ssize_t w = write(fd, c, n);

    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      if (w == 0)
        errno = EIO;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}
