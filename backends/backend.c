/* backend.c - the table of backend types. */
#include "backends/backend.h"

#include <stddef.h>

const struct backend_ops *
backend_ops_for(enum backend_type type)
{
  switch (type) {
  case BACKEND_MQTT:
    return &mqtt_backend_ops;
  case BACKEND_EMAIL:
    return &email_backend_ops;
  case BACKEND_NTFY:
    return &ntfy_backend_ops;
  }
  return NULL;
}
