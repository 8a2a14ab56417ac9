/* mail.h - turns a camera's alert mail into an event, with GMime.
 *
 * Fills the event's title (the subject, RFC 2047 decoded to UTF-8), text
 * (the plain part, or the HTML part reduced to text), attachments (every
 * image part: by content type, by file name, or by JPEG/PNG magic bytes
 * when labelled application/octet-stream; inline and nested parts too),
 * device_time (the Date header, or a time written in the body), kind and
 * state (ingest/kind.h), and the labels "from", "to", "subject",
 * "message_id". Camera, source and recv_time are the caller's. */
#ifndef CAMGATE_MAIL_H
#define CAMGATE_MAIL_H

#include <stddef.h>

#include "config/config.h"
#include "gateway/event.h"

/* Call once per process before the first parse (g_mime_init). */
void mail_init(void);

/* Large base64 pictures are decoded into files in dir (NULL: into
 * memory, the default); the event owns such a file (event.h). Call before
 * parsing, from the thread that parses. */
void mail_set_spill_dir(const char *dir);

/* Parse the message in the file at path / in buf. Return 0, or -1 when the
 * data is not a message at all (the event then keeps what was found). */
int mail_parse_file(const char *path, const struct smtp_conf *sc,
                    struct cam_event *ev);
int mail_parse_mem(const char *buf, size_t len, const struct smtp_conf *sc,
                   struct cam_event *ev);

#endif
