/* email.h - the e-mail backend's pure parts: templates, the message and
 * the Microsoft Graph sendMail document.
 *
 * The backend itself is email_backend_ops (backends/backend.h); it sends
 * what is built here over SMTP (password or XOAUTH2) or Graph. What is
 * declared here takes values and returns bytes, so tests reach it without
 * a server. Returned strings are malloc'd; the caller frees them. */
#ifndef CAMGATE_EMAIL_H
#define CAMGATE_EMAIL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "gateway/event.h"

/* Microsoft Graph refuses requests above 4 MB; stay a little under. */
#define EMAIL_GRAPH_MAX (4000000u)

/* Returns tpl (gateway/template.h) filled in from ev, times in the IANA
 * time zone tz (NULL: local time), as valid UTF-8. */
char *email_expand(const char *tpl, const struct cam_event *ev,
                   const char *tz);

/* What one alert mail says: the subject and the text (with the
 * "+N more since HH:MM" note when ev->folded > 0 and a note for each
 * snapshot left out), and which attachments go along. */
struct email_content {
  char *subject;
  char *text;
  unsigned char *attach;    /* attach[i]: ev->att[i] goes along */
  size_t nattach;
};

/* Fills c for ev. Attachments go along, in order, while their encoded
 * size stays within budget bytes; the rest are named in the text. */
void email_compose(const struct email_conf *ec, const struct cam_event *ev,
                   size_t budget, struct email_content *c);
void email_content_clear(struct email_content *c);

/* Returns the RFC 5322 message for ev, with CRLF line ends and *len set:
 * From the configured mailbox, To/Cc from the config, Reply-To the
 * camera's envelope sender when reply_to_camera is on, Date, Message-ID,
 * MIME-Version, RFC 2047 encoded words where headers are not ASCII, and
 * each snapshot base64 in lines of 76. */
char *email_build_message(const struct email_conf *ec,
                          const struct cam_event *ev, size_t *len);

/* Returns the JSON body of a Graph sendMail request for ev, within
 * EMAIL_GRAPH_MAX bytes, with *len set. */
char *email_graph_json(const struct email_conf *ec,
                       const struct cam_event *ev, size_t *len);

#endif
