/* ntfy.h - the ntfy backend's pure parts: what a push says and the
 * request headers that say it.
 *
 * The backend itself is ntfy_backend_ops (backends/backend.h). It
 * publishes with one HTTP request per event (https://docs.ntfy.sh/publish):
 * with a picture, a PUT to <url>/<topic> whose raw body is the JPEG or
 * PNG and whose headers carry Filename and the text in Message (ntfy
 * takes no multipart uploads); without one, a POST whose body is the
 * text. Title, X-Priority, Tags, Click, Icon and Actions go as headers
 * either way. Priority travels as X-Priority because proxies such as
 * Cloudflare set a "Priority" header of their own (RFC 9218).
 *
 * HTTP header values must be ASCII; ntfy decodes RFC 2047 encoded words
 * ("=?UTF-8?B?...?="), so any other text is sent that way.
 *
 * What is declared here takes values and returns strings, so tests reach
 * it without a server. Returned strings are malloc'd; the caller frees
 * them with free(). */
#ifndef CAMGATE_NTFY_H
#define CAMGATE_NTFY_H

#include <glib.h>
#include <stddef.h>

#include "config/config.h"
#include "gateway/event.h"

#define NTFY_TITLE_MAX 250        /* bytes of the title, before encoding */
#define NTFY_MESSAGE_MAX 3800     /* ntfy turns a longer body into a file */
#define NTFY_TAGS_MAX 512

/* What one push says, in UTF-8. */
struct ntfy_msg {
  char *title;
  char *message;            /* with "+N more ... since HH:MM" when folded */
  int priority;             /* 1..5 */
  char *tags;               /* comma-separated; NULL: none */
  char *click;              /* URL; NULL: none */
  char *icon;               /* URL; NULL: none */
  char *actions;            /* the Actions JSON array; NULL: none */
};

/* Returns 1..5 for min, low, default, high, urgent (also max and the
 * digits 1 to 5), 0 for anything else. */
int ntfy_priority_parse(const char *s);

/* Returns the ntfy emoji tag that fits kind ("walking" for motion,
 * "bust_in_silhouette" for person, ...); "warning" when none does. */
const char *ntfy_kind_tag(const char *kind);

/* Returns s as a header value: s itself when it is printable ASCII that
 * cannot be taken for an encoded word, else RFC 2047 "B" encoded words
 * of UTF-8 separated by spaces, each at most 75 characters and cut at
 * character boundaries. Bytes that are not UTF-8 become '?'. */
char *ntfy_header_value(const char *s);

/* Returns the URL s with every byte that may not stand in a URL as it
 * is (controls, space, quotes, <>\^`{|} and non-ASCII) percent-encoded,
 * so a camera's name cannot break a Click or action URL. */
char *ntfy_url_clean(const char *s);

/* Fills m for ev from the backend's config and the rule's merged action
 * (config_action(), NULL for none): the action's priority, title and
 * message win over the backend's (the loader makes those the backend's
 * defaults, so a merged action already holds them unless a camera or
 * rule says otherwise). Times are in tz (NULL: UTC). Titles and messages
 * are cut to their limits at a character boundary. Free with
 * ntfy_msg_clear(). */
void ntfy_msg_build(struct ntfy_msg *m, const struct ntfy_conf *nc,
                    const struct action *act, const struct cam_event *ev,
                    GTimeZone *tz);
void ntfy_msg_clear(struct ntfy_msg *m);

/* Returns the file name a picture is sent under: the camera id (made
 * safe), the event time in UTC and an extension for content_type, like
 * "shed-20240501-123045.jpg". */
char *ntfy_filename(const struct cam_event *ev, const char *content_type);

/* Returns the Authorization header line ("Authorization: Bearer ..." or
 * "Authorization: Basic ..."), or NULL without credentials. It holds a
 * secret: wipe it (explicit_bzero) before free(). */
char *ntfy_auth_header(const struct ntfy_conf *nc);

/* Returns the request's header lines for m, NULL-terminated, each
 * "Name: value" in ASCII: Title, Message (only with a picture), X-Priority,
 * Tags, Click, Icon, Actions, Filename and Content-Type. filename NULL
 * means no picture (the message is the body). *n gets the count. Free
 * with ntfy_headers_free(). */
char **ntfy_headers(const struct ntfy_msg *m, const char *filename,
                    const char *content_type, size_t *n);
void ntfy_headers_free(char **h);

/* Returns the server's reason in an error answer's body: the "error" of
 * ntfy's JSON, else the first line of the text, cut short and reduced to
 * printable ASCII without quotes or backslashes (it goes into logs).
 * Empty when there is none. */
void ntfy_server_reason(const char *body, size_t len, char *out,
                        size_t outsz);

#endif
