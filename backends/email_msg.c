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
#include "gateway/snapshot.h"
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

/* Returns a thumbnail of ev->att[i] that is smaller than the JPEG, or
 * NULL (no box configured, not a usable JPEG, or no smaller). */
static struct snapshot *
email_thumbnail(const struct email_conf *ec, const struct cam_event *ev,
                size_t i)
{
  const struct attachment *a = &ev->att[i];
  struct snapshot *t;

  if (ec->snapshot_w <= 0 && ec->snapshot_h <= 0)
    return NULL;
  if (a->content_type == NULL || strcmp(a->content_type, "image/jpeg"))
    return NULL;
  t = snapshot_get_attachment(ev, i, ec->snapshot_w, ec->snapshot_h,
                              ec->quality);
  if (t && t->len >= a->len) {
    snapshot_unref(t);
    t = NULL;
  }
  return t;
}

/* Decides for each attachment: as is, a thumbnail, through a Graph
 * upload session (from upload_min bytes, 0: never), or left out. */
static void
email_compose_attach(const struct email_conf *ec,
                     const struct cam_event *ev, size_t budget,
                     size_t upload_min, struct email_content *c,
                     GString *text)
{
  size_t used = EMAIL_OVERHEAD, uploads = 0;

  for (size_t i = 0; ec->attach && i < ev->natt; i++) {
    const struct attachment *a = &ev->att[i];
    const char *name = a->name ? a->name : "attachment";
    struct snapshot *t = NULL;
    size_t need;

    /* A picture kept in a file is read here, into the event, for the
     * message or the upload; one that cannot be read is left out. */
    if (attachment_data(a) == NULL) {
      g_string_append_printf(text, "\n[%s (%zu bytes) left out: camgate "
                             "could not read it back]\n", name, a->len);
      continue;
    }
    if (ec->thumbnail_over > 0 && a->len > ec->thumbnail_over)
      t = email_thumbnail(ec, ev, i);
    if (t == NULL && upload_min > 0 && a->len >= upload_min &&
        a->len <= EMAIL_GRAPH_UPLOAD_MAX &&
        used + uploads + a->len <= ec->max_size) {
      c->attach[i] = EMAIL_ATTACH_UPLOAD;
      uploads += a->len;
      continue;
    }
    if (t == NULL && used + email_b64_size(a->len) > budget)
      t = email_thumbnail(ec, ev, i);
    need = email_b64_size(t ? t->len : a->len);
    if (used + need <= budget) {
      c->attach[i] = 1;
      c->thumb[i] = t;
      used += need;
      if (t)
        g_string_append_printf(text, "\n[%s (%zu bytes) sent as a %dx%d "
                               "thumbnail (%zu bytes)]\n", name, a->len,
                               t->width, t->height, t->len);
      continue;
    }
    snapshot_unref(t);
    g_string_append_printf(text, "\n[%s (%zu bytes) left out: the message "
                           "would exceed the size limit]\n", name, a->len);
  }
}

static void
email_compose_ex(const struct email_conf *ec, const struct cam_event *ev,
                 size_t budget, size_t upload_min, struct email_content *c)
{
  GString *text;
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
  c->thumb = xcalloc(ev->natt ? ev->natt : 1, sizeof(*c->thumb));
  email_compose_attach(ec, ev, budget, upload_min, c, text);
  c->text = email_utf8(text->str);
  g_string_free(text, TRUE);
}

void
email_compose(const struct email_conf *ec, const struct cam_event *ev,
              size_t budget, struct email_content *c)
{
  email_compose_ex(ec, ev, budget, 0, c);
}

void
email_content_part(const struct email_content *c,
                   const struct cam_event *ev, size_t i,
                   struct attachment *out)
{
  const struct snapshot *t = c->thumb[i];

  *out = ev->att[i];
  out->path = NULL;
  out->owns_file = 0;
  if (t == NULL)
    return;
  out->content_type = (char *)t->content_type;
  out->data = t->data;
  out->len = t->len;
}

void
email_content_clear(struct email_content *c)
{
  for (size_t i = 0; c->thumb && i < c->nattach; i++)
    snapshot_unref(c->thumb[i]);
  free(c->subject);
  free(c->text);
  free(c->attach);
  free(c->thumb);
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
    natt += c.attach[i] == EMAIL_ATTACH_INLINE;
  if (natt == 0) {
    g_mime_message_set_mime_part(msg, text);
  } else {
    GMimeMultipart *mp = g_mime_multipart_new_with_subtype("mixed");

    g_mime_multipart_add(mp, text);
    for (size_t i = 0; i < c.nattach; i++) {
      struct attachment a;
      GMimeObject *part;

      if (!c.attach[i])
        continue;
      email_content_part(&c, ev, i, &a);
      part = email_attachment_part(&a);
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

/* Header fields of the camera's message that forward mode replaces or
 * leaves out. */
static const char *const email_fwd_drop[] = {
  "From", "Sender", "Reply-To", "Return-Path", "Bcc", "X-Camgate-Event",
  "X-Camgate-Camera", NULL
};

/* Whether the header field at p (its first line) is named name. */
static int
email_field_is(const char *p, size_t n, const char *name)
{
  size_t k = strlen(name);

  return n > k && p[k] == ':' && g_ascii_strncasecmp(p, name, k) == 0;
}

static int
email_fwd_dropped(const char *p, size_t n, int rcpt_headers)
{
  for (size_t i = 0; email_fwd_drop[i]; i++)
    if (email_field_is(p, n, email_fwd_drop[i]))
      return 1;
  return rcpt_headers && (email_field_is(p, n, "To") ||
                          email_field_is(p, n, "Cc"));
}

/* "To: a, b" from the config, or nothing when n is 0. */
static void
email_fwd_rcpts(GString *out, const char *field, char *const *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    g_string_append_printf(out, "%s%s", i ? ",\r\n " : field, v[i]);
  if (n)
    g_string_append(out, "\r\n");
}

/* The length of the header field at p: its first line and the folded
 * lines after it. *end is set when p is the empty line ending the
 * header (or the end of the message). */
static size_t
email_field_len(const char *p, size_t left, int *end)
{
  size_t n = 0;

  *end = left == 0 || p[0] == '\n' || (p[0] == '\r' && left > 1 &&
                                        p[1] == '\n');
  while (n < left) {
    const char *nl = memchr(p + n, '\n', left - n);

    n = nl ? (size_t)(nl - p) + 1 : left;
    if (*end || n >= left || (p[n] != ' ' && p[n] != '\t'))
      break;
  }
  return n;
}

/* The fields forward mode puts first. */
static void
email_fwd_head(GString *out, const struct email_conf *ec,
               const struct cam_event *ev, int rcpt_headers)
{
  InternetAddress *ia = internet_address_mailbox_new(ec->from_name,
                                                     ec->from);
  char *from = internet_address_to_string(ia, NULL, TRUE);
  const char *reply = email_reply_to(ec, ev);

  g_string_append_printf(out, "From: %s\r\n", from);
  if (reply)
    g_string_append_printf(out, "Reply-To: %s\r\n", reply);
  g_string_append_printf(out, "X-Camgate-Event: %" PRId64 "\r\n", ev->id);
  g_string_append_printf(out, "X-Camgate-Camera: %s\r\n", ev->camera);
  if (rcpt_headers) {
    email_fwd_rcpts(out, "To: ", ec->to, ec->nto);
    email_fwd_rcpts(out, "Cc: ", ec->cc, ec->ncc);
  }
  g_free(from);
  g_object_unref(ia);
}

/* Date and Message-ID, when the camera's header has none. */
static void
email_fwd_tail(GString *out, const struct email_conf *ec,
               const struct cam_event *ev, int has_date, int has_id)
{
  if (!has_date) {
    GDateTime *now = g_date_time_new_now_local();
    char *date = g_mime_utils_header_format_date(now);

    g_string_append_printf(out, "Date: %s\r\n", date);
    g_free(date);
    g_date_time_unref(now);
  }
  if (!has_id) {
    char *id = email_message_id(ec, ev);

    g_string_append_printf(out, "Message-ID: <%s>\r\n", id);
    free(id);
  }
}

char *
email_forward_message(const struct email_conf *ec,
                      const struct cam_event *ev, int rcpt_headers,
                      size_t *len)
{
  const char *raw = (const char *)ev->raw;
  size_t off = 0, n;
  int end = 0, has_date = 0, has_id = 0;
  GString *out;
  char *r;

  if (raw == NULL || ev->raw_len + EMAIL_OVERHEAD > ec->max_size)
    return NULL;
  out = g_string_sized_new(ev->raw_len + 512);
  email_fwd_head(out, ec, ev, rcpt_headers);
  while (off < ev->raw_len) {
    n = email_field_len(raw + off, ev->raw_len - off, &end);
    if (end)
      break;
    has_date |= email_field_is(raw + off, n, "Date");
    has_id |= email_field_is(raw + off, n, "Message-ID");
    if (!email_fwd_dropped(raw + off, n, rcpt_headers))
      g_string_append_len(out, raw + off, (gssize)n);
    off += n;
  }
  email_fwd_tail(out, ec, ev, has_date, has_id);
  g_string_append(out, "\r\n");
  if (end && off < ev->raw_len)
    off += raw[off] == '\r' ? 2 : 1;    /* the empty line, ours now */
  g_string_append_len(out, raw + off, (gssize)(ev->raw_len - off));
  *len = out->len;
  r = xmalloc(out->len + 1);
  memcpy(r, out->str, out->len + 1);
  g_string_free(out, TRUE);
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

/* The Graph message resource for ev as composed in c. */
static json_t *
email_graph_message(const struct email_conf *ec, const struct cam_event *ev,
                    const struct email_content *c)
{
  const char *reply = email_reply_to(ec, ev);
  json_t *msg, *atts;

  msg = json_pack("{s:s,s:{s:s,s:s},s:o}", "subject", c->subject, "body",
                  "contentType", "Text", "content", c->text, "toRecipients",
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
  for (size_t i = 0; i < c->nattach; i++) {
    struct attachment a;

    if (c->attach[i] != EMAIL_ATTACH_INLINE)
      continue;
    email_content_part(c, ev, i, &a);
    json_array_append_new(atts, email_json_attachment(&a));
  }
  json_object_set_new(msg, "attachments", atts);
  return msg;
}

static char *
email_json_out(json_t *root, size_t *len)
{
  char *r = json_dumps(root, JSON_COMPACT);

  if (r == NULL)
    fatal("email: cannot serialize the Graph message");
  *len = strlen(r);
  json_decref(root);
  return r;
}

static size_t
email_graph_budget(const struct email_conf *ec)
{
  return ec->max_size < EMAIL_GRAPH_MAX ? ec->max_size : EMAIL_GRAPH_MAX;
}

char *
email_graph_json(const struct email_conf *ec, const struct cam_event *ev,
                 size_t *len)
{
  struct email_content c;
  json_t *root;

  email_compose(ec, ev, email_graph_budget(ec), &c);
  root = json_pack("{s:o,s:b}", "message", email_graph_message(ec, ev, &c),
                   "saveToSentItems", 0);
  email_content_clear(&c);
  return email_json_out(root, len);
}

char *
email_graph_draft(const struct email_conf *ec, const struct cam_event *ev,
                  struct email_content *c, size_t *len)
{
  size_t n = 0;

  email_compose_ex(ec, ev, email_graph_budget(ec), EMAIL_GRAPH_UPLOAD_MIN,
                   c);
  for (size_t i = 0; i < c->nattach; i++)
    n += c->attach[i] == EMAIL_ATTACH_UPLOAD;
  if (n == 0) {
    email_content_clear(c);
    return NULL;
  }
  return email_json_out(email_graph_message(ec, ev, c), len);
}

char *
email_graph_session_json(const struct attachment *a, size_t *len)
{
  json_t *root = json_pack("{s:{s:s,s:s,s:I,s:s}}", "AttachmentItem",
                           "attachmentType", "file", "name",
                           a->name ? a->name : "snapshot", "size",
                           (json_int_t)a->len, "contentType",
                           a->content_type ? a->content_type
                             : "application/octet-stream");

  if (root == NULL)
    fatal("email: cannot build the upload session request");
  return email_json_out(root, len);
}
