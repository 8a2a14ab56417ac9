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
struct snapshot;

/* How an attachment goes along (email_content.attach). */
#define EMAIL_ATTACH_OUT 0      /* left out, named in the text */
#define EMAIL_ATTACH_INLINE 1   /* in the message */
#define EMAIL_ATTACH_UPLOAD 2   /* Graph: through an upload session */

/* Graph takes attachments from 3 MB through upload sessions on a draft
 * (createUploadSession, then PUTs of byte ranges), up to 150 MB each. */
#define EMAIL_GRAPH_UPLOAD_MIN (3u * 1024 * 1024)
#define EMAIL_GRAPH_UPLOAD_MAX (150u * 1024 * 1024)

struct email_content {
  char *subject;
  char *text;
  unsigned char *attach;    /* attach[i]: how ev->att[i] goes along */
  struct snapshot **thumb;  /* thumb[i]: goes in its place; NULL: as is */
  size_t nattach;
};

/* Fills c for ev. Attachments go along, in order, while their encoded
 * size stays within budget bytes. A JPEG above ec->thumbnail_over, or
 * one that would not fit the budget, goes as a thumbnail fitted into
 * ec's snapshot box (gateway/snapshot.h), with a note in the text; what
 * still does not fit is left out and named in the text. */
void email_compose(const struct email_conf *ec, const struct cam_event *ev,
                   size_t budget, struct email_content *c);
/* Sets *out to what goes along for ev->att[i]: the attachment or its
 * thumbnail (pointers into ev and c, valid while both are). */
void email_content_part(const struct email_content *c,
                        const struct cam_event *ev, size_t i,
                        struct attachment *out);
void email_content_clear(struct email_content *c);

/* Returns the RFC 5322 message for ev, with CRLF line ends and *len set:
 * From the configured mailbox, To/Cc from the config, Reply-To the
 * camera's envelope sender when reply_to_camera is on, Date, Message-ID,
 * MIME-Version, RFC 2047 encoded words where headers are not ASCII, and
 * each snapshot base64 in lines of 76. */
char *email_build_message(const struct email_conf *ec,
                          const struct cam_event *ev, size_t *len);

/* Mode forward: returns the camera's own message (ev->raw) with *len
 * set, its body and every header field kept byte for byte except From,
 * Sender, Reply-To, Return-Path, Bcc and X-Camgate-*: From becomes the
 * configured mailbox, Reply-To the camera's envelope sender when
 * reply_to_camera is on, X-Camgate-Event and -Camera are added, and so
 * are Date and Message-ID when the camera sent none. With rcpt_headers
 * (Graph, which has no envelope and sends to the header's recipients)
 * To and Cc are the configured ones too, never the camera's. Returns
 * NULL when the event has no raw message or it would exceed
 * ec->max_size. */
char *email_forward_message(const struct email_conf *ec,
                            const struct cam_event *ev, int rcpt_headers,
                            size_t *len);

/* Returns the JSON body of a Graph sendMail request for ev, within
 * EMAIL_GRAPH_MAX bytes, with *len set. */
char *email_graph_json(const struct email_conf *ec,
                       const struct cam_event *ev, size_t *len);

/* Returns the JSON of a Graph draft (POST .../messages) for ev, with
 * *len set, when some attachment is large enough for an upload session:
 * those have c->attach[i] == EMAIL_ATTACH_UPLOAD and are not in the
 * JSON; the caller clears c. Returns NULL (c cleared) when none is: then
 * email_graph_json() and sendMail do. */
char *email_graph_draft(const struct email_conf *ec,
                        const struct cam_event *ev,
                        struct email_content *c, size_t *len);
/* Returns the createUploadSession request for attachment a. */
char *email_graph_session_json(const struct attachment *a, size_t *len);

#endif
