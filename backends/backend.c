/* backend.c - the table of backend types. */
#include "backends/backend.h"

#include <stddef.h>
#include <stdio.h>

#include "gateway/module.h"

const struct backend_ops *
backend_ops_for(enum backend_type type, char *err, size_t errsz)
{
  char why[512];
  const struct http_module *m;

  if (type == BACKEND_MQTT)
    return &mqtt_backend_ops;
  if (type != BACKEND_EMAIL && type != BACKEND_NTFY)
    return NULL;
  m = http_module(why, sizeof(why));
  if (m == NULL) {
    if (err)
      snprintf(err, errsz, "%s", why);
    return NULL;
  }
  return type == BACKEND_EMAIL ? m->email : m->ntfy;
}
