/* module.c - see module.h. */
#include "gateway/module.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/log.h"

/* Defined by gateway/httpmod.c when its objects are linked in. */
extern const struct http_module camgate_http_module __attribute__((weak));

static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct http_module *module_loaded;

/* The directory of the running binary into dir, or "." when unknown. */
static void
module_dir(char *dir, size_t sz)
{
  const char *env = getenv("CAMGATE_MODULE_DIR");
  char exe[PATH_MAX];
  ssize_t n;
  char *slash;

  if (env && env[0]) {
    snprintf(dir, sz, "%s", env);
    return;
  }
  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    snprintf(dir, sz, ".");
    return;
  }
  exe[n] = '\0';
  slash = strrchr(exe, '/');
  if (slash)
    *slash = '\0';
  snprintf(dir, sz, "%s", slash ? exe : ".");
}

const struct http_module *
http_module(char *err, size_t errsz)
{
  char dir[PATH_MAX], path[PATH_MAX + sizeof(HTTP_MODULE_FILE) + 1];
  const struct http_module *m;
  const char *why;
  void *h;

  if (&camgate_http_module != NULL)
    return &camgate_http_module;
  pthread_mutex_lock(&module_lock);
  m = module_loaded;
  if (m) {
    pthread_mutex_unlock(&module_lock);
    return m;
  }
  module_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/%s", dir, HTTP_MODULE_FILE);
  /* Kept open for the life of the process: backends hold its code. */
  h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    why = dlerror();
    snprintf(err, errsz, "cannot load %s, which the ntfy and e-mail "
             "backends need (%s); put camgate-http.so from the build beside "
             "the camgate binary or set CAMGATE_MODULE_DIR, then reload",
             path, why ? why : "unknown error");
  } else if ((m = dlsym(h, "camgate_http_module")) == NULL) {
    snprintf(err, errsz, "%s is not camgate's HTTP module", path);
    dlclose(h);
  } else {
    module_loaded = m;
    log_debug("module", "path=%s msg=\"HTTP module loaded\"", path);
  }
  pthread_mutex_unlock(&module_lock);
  return m;
}
