/* mqtt.h - the MQTT backend's pure parts: topic slugs, the event payload
 * and the Home Assistant discovery documents.
 *
 * The backend itself is mqtt_backend_ops (backends/backend.h). What is
 * declared here takes values and returns strings, so tests reach it
 * without a broker. Every returned string is malloc'd and NUL-terminated;
 * the caller frees it with free().
 *
 * Topics, under the configured prefix P:
 *   P/status                      online / offline (retained, LWT)
 *   P/<camera>/event              the event JSON (not retained)
 *   P/<camera>/<kind>             ON / OFF (retained)
 *   P/<camera>/snapshot           the snapshot bytes (retained)
 *   P/<camera>/last_event         ISO 8601 time (retained)
 * where <camera> is mqtt_slug(camera id) and <kind> mqtt_kind_slug(kind). */
#ifndef CAMGATE_MQTT_H
#define CAMGATE_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "gateway/event.h"

/* Room for "2026-12-03T16:57:56.123Z" and a NUL. */
#define MQTT_TIME_LEN 32

/* Returns s with every byte outside [A-Za-z0-9_-] replaced by '_' (so no
 * '/', '+' or '#' reaches a topic); "_" when s is empty or NULL. */
char *mqtt_slug(const char *s);

/* Returns the topic level for kind: mqtt_slug(kind), prefixed with
 * "kind_" when it would land on one of a camera's own topics (event,
 * snapshot, last_event). */
char *mqtt_kind_slug(const char *kind);

/* Writes ms since the epoch as UTC with milliseconds,
 * "2026-12-03T16:57:56.123Z", into buf (MQTT_TIME_LEN bytes suffice). */
void mqtt_format_time(int64_t ms, char *buf, size_t bufsz);

/* Returns the Home Assistant binary_sensor device class that fits kind,
 * or NULL when none does (a plain on/off sensor). */
const char *mqtt_device_class(const char *kind);

/* Returns the JSON published on P/<camera>/event: id, camera,
 * camera_name, source, kind, state, device_time (null when unknown),
 * recv_time, title, text, labels, snapshot_size and attachments. Text
 * that is not valid UTF-8 has its non-ASCII bytes replaced by '?'. */
char *mqtt_event_json(const struct cam_event *ev);

/* Returns the Home Assistant device discovery document for one camera:
 * a binary_sensor per kind, an image for the snapshot, an event entity
 * (when there is a kind) and a last-event timestamp sensor. camera_name
 * NULL means the id. */
char *mqtt_discovery_json(const struct mqtt_conf *mc, const char *camera,
                          const char *camera_name,
                          const char *const *kinds, size_t nkinds);

/* Returns the discovery document of the gateway device itself: one
 * connectivity binary_sensor on P/status. */
char *mqtt_gateway_json(const struct mqtt_conf *mc);

#endif
