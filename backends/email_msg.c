/* email_msg.c - see email.h. GMime builds the message (headers, RFC 2047,
 * base64 in lines of 76, CRLF); jansson builds the Graph document. */
#include "backends/email.h"

#include <gmime/gmime.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/log.h"
#include "gateway/template.h"

#define EMAIL_NOTE_LEN 256
/* Headers, the text part and MIME boundaries, on top of attachments. */
#define EMAIL_OVERHEAD (64u * 1024u)
#define EMAIL_SUBJECT_MAX 900

static GTimeZone *
email_tz(const char *tz)
{
  GTimeZone *z = tz ? g_time_zone_new_identifier(tz) : NULL;

  return z ? z : g_time_zone_new_local();
}

/* Returns a valid UTF-8 copy of s (bad bytes become U+FFFD). */
static char *
email_utf8(const char *s)
{
  gchar *g = g_utf8_make_valid(s, -1);
  char *r = xstrdup(g);

  g_free(g);
  return r;
}

char *
email_expand(const char *tpl, const struct cam_event *ev, const char *tz)
{
  GTimeZone *z = email_tz(tz);
  char *s = template_expand(tpl, ev, z);
  char *r = email_utf8(s);

  free(s);
  g_time_zone_unref(z);
  return r;
}

/* One line: CR, LF and tabs become spaces; cut on a character boundary. */
static void
email_one_line(char *s)
{
  for (char *p = s; *p; p++)
    if (*p == '\r' || *p == '\n' || *p == '\t')
      *p = ' ';
  if (strlen(s) > EMAIL_SUBJECT_MAX) {
    const char *end = g_utf8_find_prev_char(s, s + EMAIL_SUBJECT_MAX);

    s[end ? end - s : 0] = '\0';
  }
}

static size_t
email_b64_size(size_t n)
{
  size_t b = (n + 2) / 3 * 4;

  return b + b / 76 * 2 + 512;   /* line ends and the part's headers */
}

void
email_compose(const struct email_conf *ec, const struct cam_event *ev,
              size_t budget, struct email_content *c)
{
  GString *text;
  size_t used = EMAIL_OVERHEAD;
  char *body;

  memset(c, 0, sizeof(*c));
  c->subject = email_expand(ec->subject, ev, ec->time_zone);
  body = email_expand(ec->body, ev, ec->time_zone);
  text = g_string_new(body);
  free(body);
  if (ev->folded > 0) {
    GTimeZone *z = email_tz(ec->time_zone);
    char note[EMAIL_NOTE_LEN];
    size_t n = strlen(c->subject);

    template_folded(ev, z, note, sizeof(note));
    g_time_zone_unref(z);
    c->subject = xrealloc(c->subject, n + strlen(note) + 4);
    snprintf(c->subject + n, strlen(note) + 4, " (%s)", note);
    g_string_append_printf(text, "\n%s\n", note);
  }
  email_one_line(c->subject);
  c->nattach = ev->natt;
  c->attach = xcalloc(ev->natt ? ev->natt : 1, 1);
  for (size_t i = 0; ec->attach && i < ev->natt; i++) {
    size_t need = email_b64_size(ev->att[i].len);

    if (used + need <= budget) {
      c->attach[i] = 1;
      used += need;
      continue;
    }
    g_string_append_printf(text, "\n[%s (%zu bytes) left out: the message "
                           "would exceed the size limit]\n",
                           ev->att[i].name ? ev->att[i].name : "attachment",
                           ev->att[i].len);
  }
  c->text = email_utf8(text->str);
  g_string_free(text, TRUE);
}

void
email_content_clear(struct email_content *c)
{
  free(c->subject);
  free(c->text);
  free(c->attach);
  memset(c, 0, sizeof(*c));
}

static const char *
email_domain(const char *addr)
{
  const char *at = strrchr(addr, '@');

  return at && at[1] ? at + 1 : "camgate.invalid";
}

/* "camgate.<event>.<random>@<domain of From>" */
static char *
email_message_id(const struct email_conf *ec, const struct cam_event *ev)
{
  unsigned char rnd[8];
  char hex[sizeof(rnd) * 2 + 1];
  char *id;
  size_t n;

  if (RAND_bytes(rnd, sizeof(rnd)) != 1)
    fatal("email: RAND_bytes failed");
  for (size_t i = 0; i < sizeof(rnd); i++)
    snprintf(hex + i * 2, 3, "%02x", rnd[i]);
  n = strlen(email_domain(ec->from)) + 64;
  id = xmalloc(n);
  snprintf(id, n, "camgate.%" PRId64 ".%s@%s", ev->id, hex,
           email_domain(ec->from));
  return id;
}

/* The camera's envelope sender, when it looks like an address. */
static const char *
email_reply_to(const struct email_conf *ec, const struct cam_event *ev)
{
  const char *s = ec->reply_to_camera
                    ? cam_event_label(ev, "envelope_from") : NULL;

  if (s == NULL || strchr(s, '@') == NULL || strpbrk(s, "<>\"\r\n ,;"))
    return NULL;
  return s;
}

static void
email_headers(GMimeMessage *msg, const struct email_conf *ec,
              const struct cam_event *ev, const char *subject)
{
  GMimeObject *obj = GMIME_OBJECT(msg);
  const char *reply = email_reply_to(ec, ev);
  GDateTime *now = g_date_time_new_now_local();
  char *id = email_message_id(ec, ev);
  char evid[32];

  g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_FROM, ec->from_name,
                             ec->from);
  for (size_t i = 0; i < ec->nto; i++)
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_TO, NULL, ec->to[i]);
  for (size_t i = 0; i < ec->ncc; i++)
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_CC, NULL, ec->cc[i]);
  if (reply)
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_REPLY_TO, NULL,
                               reply);
  g_mime_message_set_subject(msg, subject, "utf-8");
  g_mime_message_set_date(msg, now);
  g_mime_message_set_message_id(msg, id);
  g_mime_object_set_header(obj, "MIME-Version", "1.0", NULL);
  snprintf(evid, sizeof(evid), "%" PRId64, ev->id);
  g_mime_object_set_header(obj, "X-Camgate-Event", evid, NULL);
  g_mime_object_set_header(obj, "X-Camgate-Camera", ev->camera, "utf-8");
  g_date_time_unref(now);
  free(id);
}

static GMimeObject *
email_text_part(const char *text)
{
  GMimeTextPart *tp = g_mime_text_part_new_with_subtype("plain");
  GMimeContentEncoding enc;

  g_mime_text_part_set_text(tp, text);
  g_mime_text_part_set_charset(tp, "utf-8");
  enc = g_mime_part_get_best_content_encoding(GMIME_PART(tp),
                                              GMIME_ENCODING_CONSTRAINT_7BIT);
  g_mime_part_set_content_encoding(GMIME_PART(tp), enc);
  return GMIME_OBJECT(tp);
}

static GMimeObject *
email_attachment_part(const struct attachment *a)
{
  const char *ct = a->content_type ? a->content_type
                                   : "application/octet-stream";
  GMimeContentType *type = g_mime_content_type_parse(NULL, ct);
  GMimePart *part = g_mime_part_new();
  GMimeStream *st = g_mime_stream_mem_new_with_buffer(
    (const char *)a->data, a->len);
  GMimeDataWrapper *dw = g_mime_data_wrapper_new_with_stream(
    st, GMIME_CONTENT_ENCODING_DEFAULT);

  g_mime_object_set_content_type(GMIME_OBJECT(part), type);
  g_mime_part_set_content(part, dw);
  g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
  g_mime_object_set_disposition(GMIME_OBJECT(part), "attachment");
  g_mime_part_set_filename(part, a->name ? a->name : "snapshot");
  g_object_unref(dw);
  g_object_unref(st);
  g_object_unref(type);
  return GMIME_OBJECT(part);
}

static char *
email_serialize(GMimeMessage *msg, size_t *len)
{
  GMimeFormatOptions *fo = g_mime_format_options_clone(NULL);
  GMimeStream *out = g_mime_stream_mem_new();
  GByteArray *ba;
  char *r;

  g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
  g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, out);
  ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
  r = xmalloc(ba->len + 1);
  memcpy(r, ba->data, ba->len);
  r[ba->len] = '\0';
  *len = ba->len;
  g_object_unref(out);
  g_mime_format_options_free(fo);
  return r;
}

char *
email_build_message(const struct email_conf *ec, const struct cam_event *ev,
                    size_t *len)
{
  GMimeMessage *msg = g_mime_message_new(FALSE);
  GMimeObject *text;
  struct email_content c;
  size_t natt = 0;
  char *r;

  email_compose(ec, ev, ec->max_size, &c);
  email_headers(msg, ec, ev, c.subject);
  text = email_text_part(c.text);
  for (size_t i = 0; i < c.nattach; i++)
    natt += c.attach[i];
  if (natt == 0) {
    g_mime_message_set_mime_part(msg, text);
  } else {
    GMimeMultipart *mp = g_mime_multipart_new_with_subtype("mixed");

    g_mime_multipart_add(mp, text);
    for (size_t i = 0; i < c.nattach; i++) {
      GMimeObject *part;

      if (!c.attach[i])
        continue;
      part = email_attachment_part(&ev->att[i]);
      g_mime_multipart_add(mp, part);
      g_object_unref(part);
    }
    g_mime_message_set_mime_part(msg, GMIME_OBJECT(mp));
    g_object_unref(mp);
  }
  g_object_unref(text);
  r = email_serialize(msg, len);
  g_object_unref(msg);
  email_content_clear(&c);
  return r;
}

static json_t *
email_json_addr(const char *addr)
{
  return json_pack("{s:{s:s}}", "emailAddress", "address", addr);
}

static json_t *
email_json_addrs(char *const *v, size_t n)
{
  json_t *arr = json_array();

  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, email_json_addr(v[i]));
  return arr;
}

static json_t *
email_json_attachment(const struct attachment *a)
{
  gchar *b64 = g_base64_encode(a->data, a->len);
  json_t *o = json_pack("{s:s,s:s,s:s,s:s}",
                        "@odata.type", "#microsoft.graph.fileAttachment",
                        "name", a->name ? a->name : "snapshot",
                        "contentType", a->content_type
                          ? a->content_type : "application/octet-stream",
                        "contentBytes", b64);

  g_free(b64);
  return o;
}

char *
email_graph_json(const struct email_conf *ec, const struct cam_event *ev,
                 size_t *len)
{
  size_t budget = ec->max_size < EMAIL_GRAPH_MAX ? ec->max_size
                                                 : EMAIL_GRAPH_MAX;
  const char *reply = email_reply_to(ec, ev);
  struct email_content c;
  json_t *msg, *atts, *root;
  char *r;

  email_compose(ec, ev, budget, &c);
  msg = json_pack("{s:s,s:{s:s,s:s},s:o}", "subject", c.subject, "body",
                  "contentType", "Text", "content", c.text, "toRecipients",
                  email_json_addrs(ec->to, ec->nto));
  if (msg == NULL)
    fatal("email: cannot build the Graph message");
  if (ec->ncc)
    json_object_set_new(msg, "ccRecipients",
                        email_json_addrs(ec->cc, ec->ncc));
  if (reply)
    json_object_set_new(msg, "replyTo", email_json_addrs((char **)&reply,
                                                         1));
  atts = json_array();
  for (size_t i = 0; i < c.nattach; i++)
    if (c.attach[i])
      json_array_append_new(atts, email_json_attachment(&ev->att[i]));
  json_object_set_new(msg, "attachments", atts);
  root = json_pack("{s:o,s:b}", "message", msg, "saveToSentItems", 0);
  r = json_dumps(root, JSON_COMPACT);
  if (r == NULL)
    fatal("email: cannot serialize the Graph message");
  *len = strlen(r);
  json_decref(root);
  email_content_clear(&c);
  return r;
}
