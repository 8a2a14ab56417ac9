/* log.h - leveled, key=value logging to stderr.
 *
 * One line per happening: "2026-12-03T16:57:56.123Z level=info sub=smtp
 * msg...". Callers pass key=value text; input echoed from the network goes
 * through log_escape() first, so a camera cannot forge log lines. Passwords,
 * tokens and AUTH data are never passed here. */
#ifndef CAMGATE_LOG_H
#define CAMGATE_LOG_H

#include <stddef.h>

enum log_level { LOGL_ERROR, LOGL_WARN, LOGL_INFO, LOGL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns 0 or -1. */
int log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *sub, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

#define log_error(sub, ...) log_msg(LOGL_ERROR, sub, __VA_ARGS__)
#define log_warn(sub, ...) log_msg(LOGL_WARN, sub, __VA_ARGS__)
#define log_info(sub, ...) log_msg(LOGL_INFO, sub, __VA_ARGS__)
#define log_debug(sub, ...) log_msg(LOGL_DEBUG, sub, __VA_ARGS__)

/* Writes src (len bytes) into dst as printable ASCII in double quotes:
 * quotes, backslashes and control bytes escaped, cut to fit dstsz with a
 * trailing "...". Always NUL-terminates. Returns dst. */
char *log_escape(char *dst, size_t dstsz, const char *src, size_t len);

/* Ends the process after logging; for impossible states and allocation
 * failure. */
void fatal(const char *fmt, ...)
  __attribute__((format(printf, 1, 2), noreturn));

/* Allocation wrappers that never return NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Writes all n bytes to fd, going on after EINTR and short writes.
 * Returns 0, or -1 with errno set. */
int write_all(int fd, const void *p, size_t n);
/* A new string formatted like printf; never NULL. Caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
