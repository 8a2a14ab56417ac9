/* template.h - notification text made from an event.
 *
 * A rule's `title` and `message` are templates: text with fields in
 * braces, filled in from the event a backend is about to send.
 *
 *   {camera} {camera_name} {kind} {state} {source} {id} {rule}
 *   {title} {text}               what the camera wrote
 *   {time} {date} {datetime}     "23:30", "2026-12-03",
 *                                "2026-12-03 23:30:05 CET", in the zone
 *   {label.X}                    the event's label X ("" when absent)
 *   {{ and }}                    a brace
 *
 * Times are the device's time when it gave one, else when camgate
 * received the event. The loader checks templates with template_check(),
 * so expansion never meets an unknown field in a loaded config. */
#ifndef CAMGATE_TEMPLATE_H
#define CAMGATE_TEMPLATE_H

#include <glib.h>
#include <stddef.h>

#include "gateway/event.h"

/* Returns NULL when tmpl is well formed, else what was expected; the
 * offending field is written into found (NUL-terminated). */
const char *template_check(const char *tmpl, char *found, size_t foundsz);

/* Returns tmpl with ev's fields filled in, times in tz (NULL: UTC).
 * Never NULL; the caller frees it. */
char *template_expand(const char *tmpl, const struct cam_event *ev,
                      GTimeZone *tz);

/* Writes what rate limits folded into ev, as "+4 more motion events
 * since 14:02" (in tz; NULL: UTC), into buf; "" when nothing was.
 * Always NUL-terminates. */
void template_folded(const struct cam_event *ev, GTimeZone *tz, char *buf,
                     size_t bufsz);

#endif
