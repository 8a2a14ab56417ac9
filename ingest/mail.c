/* mail.c - see mail.h. */
#include "ingest/mail.h"

#include <errno.h>
#include <fcntl.h>
#include <gmime/gmime.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/log.h"
#include "ingest/kind.h"

#define MAIL_TEXT_MAX 8192
/* A subject is a line: longer ones are cut (a camera's is a few words). */
#define MAIL_SUBJECT_MAX 998
#define MAIL_MAX_IMAGES 16
/* A forwarded alert is one message/rfc822 deep; more is a mail bomb. */
#define MAIL_MAX_DEPTH 4
/* Base64 pictures longer than this (encoded) are decoded into a file
 * under the spill directory, never whole into memory. */
#define MAIL_FILE_OVER (1024 * 1024)

static char *mail_spill_dir;

/* A label a vendor writes as "KEY: value" on a line of its body. Group 1
 * goes to key1, group 2 (if any) to key2; the first line found wins. */
struct mail_vendor {
  const char *pattern;
  const char *key1;
  const char *key2;
};

static const struct mail_vendor mail_vendors[] = {
  /* Hikvision */
  {"^[ \\t]*NVR S/N[ \\t]*:[ \\t]*(\\S.*?)[ \\t]*$", "serial", NULL},
  {"^[ \\t]*(?:NVR|DEVICE) NAME[ \\t]*:[ \\t]*(\\S.*?)[ \\t]*$",
   "device_name", NULL},
  {"^[ \\t]*CAMERA NAME\\(NUM\\)[ \\t]*:[ \\t]*(.*?)[ \\t]*"
   "\\(([^()]+)\\)[ \\t]*$", "channel_name", "channel"},
  /* Dahua, Amcrest */
  {"^[ \\t]*Alarm Input Channel[ \\t]*:[ \\t]*(\\S+)", "channel", NULL},
  {"^[ \\t]*Alarm Device Name[ \\t]*:[ \\t]*(\\S.*?)[ \\t]*$",
   "device_name", NULL},
  /* ZoneMinder */
  {"^[ \\t]*Monitor[ \\t]*:[ \\t]*(\\S.*?)[ \\t]*$", "channel_name", NULL},
  {"^[ \\t]*Event[ \\t]*:[ \\t]*(\\d+)\\b", "event_id", NULL},
};

#define MAIL_NVENDOR (sizeof(mail_vendors) / sizeof(mail_vendors[0]))

/* Times a body states, in the order tried. Each names its fields: y, mo,
 * d or, for Dahua's self-describing "(D/M/Y H:M:S)", the order letters
 * o1..o3 and the numbers a..c; h, mi, s; tz when a zone is written; dt is
 * the whole date and time, kept as the raw text. */
static const char *const mail_time_patterns[] = {
  /* Hikvision: "EVENT TIME:    2024-05-01,12:30:45" */
  "(?i:EVENT[ \\t]+TIME)[ \\t]*:[ \\t]*(?<dt>(?<y>\\d{4})-(?<mo>\\d{1,2})-"
  "(?<d>\\d{1,2})[,T ][ \\t]*(?<h>\\d{1,2}):(?<mi>\\d{2}):(?<s>\\d{2})"
  "(?<tz>Z|[+-]\\d{2}:?\\d{2})?)",
  /* Dahua: "Alarm Start Time(D/M/Y H:M:S): 01/05/2024 12:30:45" */
  "Time[ \\t]*\\([ \\t]*(?<o1>[DMY])[^DMY)]*(?<o2>[DMY])[^DMY)]*"
  "(?<o3>[DMY])[^)]*\\)[ \\t]*:[ \\t]*(?<dt>(?<a>\\d{1,4})[/.-]"
  "(?<b>\\d{1,2})[/.-](?<c>\\d{1,4})[ \\t]*[ T,][ \\t]*(?<h>\\d{1,2}):"
  "(?<mi>\\d{2}):(?<s>\\d{2}))",
  /* Anything else: "at 2024-05-01 12:30:45" */
  "(?<!\\d)(?<dt>(?<y>\\d{4})[-/](?<mo>\\d{2})[-/](?<d>\\d{2})[ T,]"
  "(?<h>\\d{2}):(?<mi>\\d{2}):(?<s>\\d{2})(?<tz>Z|[+-]\\d{2}:?\\d{2})?)"
  "(?!\\d)",
};

#define MAIL_NTIME (sizeof(mail_time_patterns) / sizeof(mail_time_patterns[0]))

static pthread_once_t mail_once = PTHREAD_ONCE_INIT;
static GRegex *mail_vendor_res[MAIL_NVENDOR];
static GRegex *mail_time_res[MAIL_NTIME];

/* What a walk over the parts has found so far. */
struct mail_walk {
  struct cam_event *ev;
  char *plain;            /* first text/plain, UTF-8, xmalloc'd */
  char *html;             /* first text/html, UTF-8, xmalloc'd */
  size_t nimages;
  size_t skipped;
  int depth;
};

static GRegex *
mail_compile(const char *pattern, GRegexCompileFlags flags)
{
  GError *err = NULL;
  /* Not optimized (JIT): see kind_compile(). */
  GRegex *re = g_regex_new(pattern, flags, 0, &err);

  if (re == NULL)
    fatal("mail: bad built-in pattern %s: %s", pattern, err->message);
  return re;
}

static void
mail_init_once(void)
{
  g_mime_init();
  for (size_t i = 0; i < MAIL_NVENDOR; i++)
    mail_vendor_res[i] = mail_compile(mail_vendors[i].pattern,
                                      G_REGEX_CASELESS | G_REGEX_MULTILINE);
  for (size_t i = 0; i < MAIL_NTIME; i++)
    mail_time_res[i] = mail_compile(mail_time_patterns[i], 0);
}

void
mail_init(void)
{
  pthread_once(&mail_once, mail_init_once);
}

void
mail_set_spill_dir(const char *dir)
{
  free(mail_spill_dir);
  mail_spill_dir = dir ? xstrdup(dir) : NULL;
}

static void
mail_label_once(struct cam_event *ev, const char *key, const char *value)
{
  if (value != NULL && *value != '\0' && cam_event_label(ev, key) == NULL)
    cam_event_add_label(ev, key, value);
}

/* Turns CRLF and lone CR into LF, trims both ends and cuts at max bytes
 * on a UTF-8 character boundary. Works in place. */
static void
mail_text_tidy(char *s, size_t max)
{
  size_t i = 0, o = 0, n;
  size_t start = 0;

  for (; s[i] != '\0'; i++) {
    if (s[i] == '\r') {
      s[o++] = '\n';
      if (s[i + 1] == '\n')
        i++;
    } else {
      s[o++] = s[i];
    }
  }
  while (o > 0 && g_ascii_isspace(s[o - 1]))
    o--;
  s[o] = '\0';
  while (g_ascii_isspace(s[start]))
    start++;
  n = o - start;
  memmove(s, s + start, n + 1);
  if (n > max) {
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--;
    s[n] = '\0';
  }
}

/* Trims each line and leaves at most one blank line between paragraphs,
 * as HTML reduced to text is full of both. */
static void
mail_squeeze_lines(char *s)
{
  size_t o = 0;
  int newlines = 2;     /* no blank lines at the start */
  const char *p = s;

  while (*p != '\0') {
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);

    while (len > 0 && (*p == ' ' || *p == '\t')) {
      p++;
      len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
      len--;
    if (len > 0) {
      memmove(s + o, p, len);
      o += len;
      newlines = 0;
    }
    if (e == NULL)
      break;
    if (newlines < 2) {
      s[o++] = '\n';
      newlines++;
    }
    p = e + 1;
  }
  s[o] = '\0';
}

static void
mail_html_space(GString *out)
{
  if (out->len > 0 && out->str[out->len - 1] != ' ' &&
      out->str[out->len - 1] != '\n')
    g_string_append_c(out, ' ');
}

static void
mail_html_newline(GString *out)
{
  if (out->len > 0 && out->str[out->len - 1] == ' ')
    g_string_truncate(out, out->len - 1);
  g_string_append_c(out, '\n');
}

/* Skips past the element's closing tag: script and style hold no text a
 * reader wants, title and head repeat what the body says. */
static const char *
mail_html_skip_element(const char *p, const char *name, size_t nlen)
{
  for (; *p != '\0'; p++) {
    if (p[0] == '<' && p[1] == '/' &&
        g_ascii_strncasecmp(p + 2, name, nlen) == 0 &&
        !g_ascii_isalnum(p[2 + nlen])) {
      const char *gt = strchr(p, '>');

      return gt ? gt + 1 : p + strlen(p);
    }
  }
  return p;
}

static int
mail_html_name_in(const char *name, size_t nlen, const char *const *set)
{
  for (size_t i = 0; set[i] != NULL; i++)
    if (strlen(set[i]) == nlen && g_ascii_strncasecmp(name, set[i],
                                                      nlen) == 0)
      return 1;
  return 0;
}

/* Consumes the tag at p (which is at '<'); returns what follows it. */
static const char *
mail_html_tag(const char *p, GString *out)
{
  static const char *const breaks[] = {
    "br", "p", "div", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", NULL};
  static const char *const hidden[] = {
    "script", "style", "title", "head", NULL};
  const char *name, *gt;
  int closing = 0;
  size_t nlen = 0;

  if (!g_ascii_isalpha(p[1]) && p[1] != '/' && p[1] != '!') {
    g_string_append_c(out, '<');
    return p + 1;
  }
  if (strncmp(p, "<!--", 4) == 0) {
    const char *end = strstr(p + 4, "-->");

    return end ? end + 3 : p + strlen(p);
  }
  p++;
  if (*p == '/') {
    closing = 1;
    p++;
  }
  name = p;
  while (g_ascii_isalnum(name[nlen]))
    nlen++;
  gt = strchr(p, '>');
  p = gt ? gt + 1 : p + strlen(p);
  if (nlen == 0)
    return p;
  if (mail_html_name_in(name, nlen, breaks))
    mail_html_newline(out);
  else if (!closing && mail_html_name_in(name, nlen, hidden))
    return mail_html_skip_element(p, name, nlen);
  return p;
}

/* Consumes the entity at p (which is at '&'); unknown ones stay as text. */
static const char *
mail_html_entity(const char *p, GString *out)
{
  static const char *const names[][2] = {
    {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""},
    {"apos", "'"}, {"nbsp", " "}};
  const char *semi;
  size_t n = 1;

  /* A bounded look for ';': a page of bare '&'s must stay linear. */
  while (n <= 10 && p[n] != '\0' && p[n] != ';')
    n++;
  if (p[n] != ';') {
    g_string_append_c(out, '&');
    return p + 1;
  }
  semi = p + n;
  n--;
  if (p[1] == '#') {
    int hex = p[2] == 'x' || p[2] == 'X';
    const char *digits = p + 2 + hex;
    char *end = NULL;
    long cp = strtol(digits, &end, hex ? 16 : 10);
    char utf8[8];

    if (g_ascii_isxdigit(*digits) && end == semi && cp > 0 &&
        g_unichar_validate((gunichar)cp)) {
      g_string_append_len(out, utf8,
                          g_unichar_to_utf8((gunichar)cp, utf8));
      return semi + 1;
    }
  }
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (strlen(names[i][0]) == n && strncmp(p + 1, names[i][0], n) == 0) {
      g_string_append(out, names[i][1]);
      return semi + 1;
    }
  }
  g_string_append_c(out, '&');
  return p + 1;
}

/* Reduces HTML to the text a reader sees. Returns an xmalloc'd string. */
static char *
mail_html_text(const char *html)
{
  GString *out = g_string_sized_new(strlen(html) / 2 + 1);
  const char *p = html;
  char *text;

  while (*p != '\0') {
    if (*p == '<') {
      p = mail_html_tag(p, out);
    } else if (*p == '&') {
      p = mail_html_entity(p, out);
    } else if (g_ascii_isspace(*p)) {
      mail_html_space(out);
      p++;
    } else {
      g_string_append_c(out, *p++);
    }
  }
  text = xstrndup(out->str, out->len);
  g_string_free(out, TRUE);
  mail_squeeze_lines(text);
  return text;
}

/* A large base64 part decoded chunk by chunk into a new file under the
 * spill directory. Returns the path (caller frees; the file is the
 * caller's) with *len bytes and the first bytes in head (for the type),
 * or NULL when the part is not such a part or the file fails (logged;
 * the caller then decodes into memory). */
static char *
mail_part_to_file(GMimePart *part, size_t *len, unsigned char *head,
                  size_t headsz)
{
  GMimeDataWrapper *dw = g_mime_part_get_content(part);
  GMimeStream *src = dw ? g_mime_data_wrapper_get_stream(dw) : NULL;
  GMimeEncoding state;
  char in[16384];
  char out[16384 + 16];
  char *path;
  size_t n = 0;
  ssize_t r = 0;
  int fd;
  int ok = 1;

  if (mail_spill_dir == NULL || src == NULL ||
      g_mime_data_wrapper_get_encoding(dw) != GMIME_CONTENT_ENCODING_BASE64 ||
      g_mime_stream_length(src) <= MAIL_FILE_OVER ||
      g_mime_stream_reset(src) != 0)
    return NULL;
  path = xasprintf("%s/pic-XXXXXX", mail_spill_dir);
  fd = mkstemp(path);
  if (fd < 0) {
    log_error("mail", "dir=%s error=\"%s\" msg=\"cannot write a picture "
              "file; decoding in memory\"", mail_spill_dir, strerror(errno));
    free(path);
    return NULL;
  }
  g_mime_encoding_init_decode(&state, GMIME_CONTENT_ENCODING_BASE64);
  while (ok && (r = g_mime_stream_read(src, in, sizeof(in))) > 0) {
    size_t m = g_mime_encoding_step(&state, in, (size_t)r, out);

    if (n < headsz)
      memcpy(head + n, out, m < headsz - n ? m : headsz - n);
    ok = write_all(fd, out, m) == 0;
    n += m;
  }
  /* A file stream answers -1 at the end of its bounds, not 0. */
  if (r < 0 && g_mime_stream_eos(src))
    r = 0;
  g_mime_stream_reset(src);
  if (close(fd) != 0 || !ok || r < 0) {
    /* A read error shows again (and is logged) on the way in memory. */
    if (r >= 0)
      log_error("mail", "file=%s error=\"%s\" msg=\"cannot write a "
                "picture file; decoding in memory\"", path,
                strerror(errno));
    unlink(path);
    free(path);
    return NULL;
  }
  *len = n;
  return path;
}

/* Base64 content (nearly every camera snapshot) is decoded by GMime's
 * decoder straight into one buffer of the right size: the generic path
 * below grows a GByteArray through a filter stream and then copies it.
 * Returns NULL, having read nothing, when the content is not base64 or
 * its length is unknown. */
static unsigned char *
mail_part_base64(GMimeDataWrapper *dw, size_t *len)
{
  GMimeStream *src = g_mime_data_wrapper_get_stream(dw);
  GMimeEncoding state;
  gint64 srclen;
  unsigned char *out;
  size_t cap, n = 0;
  char buf[16384];
  ssize_t r = 0;

  if (g_mime_data_wrapper_get_encoding(dw) != GMIME_CONTENT_ENCODING_BASE64 ||
      src == NULL || (srclen = g_mime_stream_length(src)) < 0 ||
      g_mime_stream_reset(src) != 0)
    return NULL;
  g_mime_encoding_init_decode(&state, GMIME_CONTENT_ENCODING_BASE64);
  /* Four characters make at most three bytes; the decoder may hold up to
   * three back between steps. */
  cap = ((size_t)srclen / 4 + 2) * 3 + 1;
  out = xmalloc(cap);
  while ((r = g_mime_stream_read(src, buf, sizeof(buf))) > 0) {
    size_t need = n + g_mime_encoding_outlen(&state, (size_t)r) + 1;

    if (need > cap) {
      cap = need;
      out = xrealloc(out, cap);
    }
    n += g_mime_encoding_step(&state, buf, (size_t)r, (char *)out + n);
  }
  /* A file stream answers -1 at the end of its bounds, not 0. */
  if (r < 0 && g_mime_stream_eos(src))
    r = 0;
  g_mime_stream_reset(src);
  if (r < 0) {
    log_error("mail", "msg=\"cannot read the message back while decoding "
              "a part; the part is left out\"");
    free(out);
    *len = 0;
    return NULL;
  }
  out[n] = '\0';
  *len = n;
  return out;
}

/* The part's content with the transfer encoding undone. Returns an
 * xmalloc'd buffer of *len bytes (NUL-terminated for text use), or NULL
 * when the part has no content. */
static unsigned char *
mail_part_bytes(GMimePart *part, size_t *len)
{
  GMimeDataWrapper *dw = g_mime_part_get_content(part);
  GMimeStream *mem;
  GByteArray *ba;
  unsigned char *out = NULL;

  *len = 0;
  if (dw == NULL)
    return NULL;
  out = mail_part_base64(dw, len);
  if (out != NULL)
    return out;
  mem = g_mime_stream_mem_new();
  if (g_mime_data_wrapper_write_to_stream(dw, mem) >= 0) {
    ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    out = xmalloc(ba->len + 1);
    if (ba->len)
      memcpy(out, ba->data, ba->len);
    out[ba->len] = '\0';
    *len = ba->len;
  }
  g_object_unref(mem);
  return out;
}

static int
mail_charset_is_utf8(const char *charset)
{
  return g_ascii_strcasecmp(charset, "utf-8") == 0 ||
         g_ascii_strcasecmp(charset, "utf8") == 0 ||
         g_ascii_strcasecmp(charset, "us-ascii") == 0;
}

/* Returns data (in charset, which may be NULL or wrong) as xmalloc'd
 * UTF-8. Undeclared or mislabelled 8-bit text goes through GMime's
 * fallback charsets rather than being dropped. */
static char *
mail_to_utf8(const char *data, size_t len, const char *charset)
{
  const char *iconv_name = NULL;
  gchar *conv = NULL;
  char *out;

  if (charset != NULL && !mail_charset_is_utf8(charset))
    iconv_name = g_mime_charset_iconv_name(charset);
  if (iconv_name != NULL)
    conv = g_convert(data, (gssize)len, "UTF-8", iconv_name, NULL, NULL,
                     NULL);
  if (conv == NULL && g_utf8_validate(data, (gssize)len, NULL))
    return xstrndup(data, len);
  if (conv == NULL)
    conv = g_mime_utils_decode_8bit(NULL, data, len);
  if (conv != NULL && !g_utf8_validate(conv, -1, NULL)) {
    gchar *valid = g_utf8_make_valid(conv, -1);

    g_free(conv);
    conv = valid;
  }
  out = xstrdup(conv ? conv : "");
  g_free(conv);
  return out;
}

static char *
mail_part_text(GMimePart *part)
{
  const char *charset;
  unsigned char *data;
  char *text;
  size_t len;

  data = mail_part_bytes(part, &len);
  if (data == NULL)
    return xstrdup("");
  charset = g_mime_object_get_content_type_parameter(GMIME_OBJECT(part),
                                                     "charset");
  text = mail_to_utf8((const char *)data, len, charset);
  free(data);
  return text;
}

static int
mail_name_ends(const char *name, const char *ext)
{
  size_t n = strlen(name), e = strlen(ext);

  return n > e && g_ascii_strcasecmp(name + n - e, ext) == 0;
}

/* The bytes decide first: cameras label snapshots application/octet-stream
 * or even text/plain. A label or a file name is trusted otherwise. */
static const char *
mail_image_type(GMimeContentType *ct, const char *filename,
                const unsigned char *d, size_t n)
{
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n',
                                       0x1a, '\n'};

  if (n == 0)
    return NULL;
  if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
    return "image/jpeg";
  if (n >= 8 && memcmp(d, png, 8) == 0)
    return "image/png";
  if (g_mime_content_type_is_type(ct, "image", "jpeg") ||
      g_mime_content_type_is_type(ct, "image", "jpg") ||
      g_mime_content_type_is_type(ct, "image", "pjpeg"))
    return "image/jpeg";
  if (g_mime_content_type_is_type(ct, "image", "png"))
    return "image/png";
  if (filename != NULL && (mail_name_ends(filename, ".jpg") ||
                           mail_name_ends(filename, ".jpeg")))
    return "image/jpeg";
  if (filename != NULL && mail_name_ends(filename, ".png"))
    return "image/png";
  return NULL;
}

/* The camera's file name without any directory a sender put in it, or
 * "snapshot-N.ext" when it gave none. Returns an xmalloc'd string. */
static char *
mail_image_name(const char *filename, const char *type, size_t n)
{
  const char *base = filename;
  char name[64];

  if (filename != NULL) {
    for (const char *p = filename; *p != '\0'; p++)
      if (*p == '/' || *p == '\\')
        base = p + 1;
    if (*base != '\0' && strcmp(base, ".") != 0 && strcmp(base, "..") != 0)
      return xstrdup(base);
  }
  snprintf(name, sizeof(name), "snapshot-%zu.%s", n,
           strcmp(type, "image/png") == 0 ? "png" : "jpg");
  return xstrdup(name);
}

static void
mail_take_image(struct mail_walk *w, GMimePart *part, GMimeContentType *ct)
{
  const char *filename = g_mime_part_get_filename(part);
  const char *type;
  unsigned char *data;
  unsigned char head[16];
  char *name;
  char *path;
  size_t len = 0;

  path = w->nimages < MAIL_MAX_IMAGES
           ? mail_part_to_file(part, &len, head, sizeof(head)) : NULL;
  if (path != NULL) {
    type = mail_image_type(ct, filename, head,
                           len < sizeof(head) ? len : sizeof(head));
    if (type == NULL) {
      unlink(path);
      free(path);
      return;
    }
    w->nimages++;
    name = mail_image_name(filename, type, w->nimages);
    cam_event_add_attachment_file(w->ev, name, type, path, len);
    free(name);
    free(path);
    return;
  }
  data = mail_part_bytes(part, &len);
  if (data == NULL)
    return;
  type = mail_image_type(ct, filename, data, len);
  if (type == NULL || w->nimages >= MAIL_MAX_IMAGES) {
    if (type != NULL)
      w->skipped++;
    free(data);
    return;
  }
  w->nimages++;
  name = mail_image_name(filename, type, w->nimages);
  cam_event_add_attachment_owned(w->ev, name, type, data, len);
  free(name);
}

/* A text part is the body unless it is a named attachment (a log file). */
static int
mail_is_body_text(GMimeObject *obj, GMimeContentType *ct,
                  const char *subtype)
{
  GMimeContentDisposition *disp;

  if (!g_mime_content_type_is_type(ct, "text", subtype))
    return 0;
  disp = g_mime_object_get_content_disposition(obj);
  return disp == NULL || !g_mime_content_disposition_is_attachment(disp) ||
         g_mime_part_get_filename(GMIME_PART(obj)) == NULL;
}

static void mail_walk_message(GMimeMessage *msg, struct mail_walk *w);

static void
mail_walk_part(GMimeObject *parent, GMimeObject *obj, gpointer data)
{
  struct mail_walk *w = data;
  GMimeContentType *ct;

  (void)parent;
  if (GMIME_IS_MESSAGE_PART(obj)) {
    GMimeMessage *inner =
      g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

    if (inner != NULL)
      mail_walk_message(inner, w);
    return;
  }
  if (!GMIME_IS_PART(obj))
    return;
  ct = g_mime_object_get_content_type(obj);
  if (w->plain == NULL && mail_is_body_text(obj, ct, "plain")) {
    w->plain = mail_part_text(GMIME_PART(obj));
    return;
  }
  if (w->html == NULL && mail_is_body_text(obj, ct, "html")) {
    w->html = mail_part_text(GMIME_PART(obj));
    return;
  }
  mail_take_image(w, GMIME_PART(obj), ct);
}

static void
mail_walk_message(GMimeMessage *msg, struct mail_walk *w)
{
  if (w->depth >= MAIL_MAX_DEPTH)
    return;
  w->depth++;
  g_mime_message_foreach(msg, mail_walk_part, w);
  w->depth--;
}

static InternetAddressMailbox *
mail_first_mailbox(InternetAddressList *list)
{
  int n = list ? internet_address_list_length(list) : 0;

  for (int i = 0; i < n; i++) {
    InternetAddress *ia = internet_address_list_get_address(list, i);
    InternetAddressMailbox *mb = NULL;

    if (INTERNET_ADDRESS_IS_MAILBOX(ia))
      return INTERNET_ADDRESS_MAILBOX(ia);
    if (INTERNET_ADDRESS_IS_GROUP(ia))
      mb = mail_first_mailbox(internet_address_group_get_members(
        INTERNET_ADDRESS_GROUP(ia)));
    if (mb != NULL)
      return mb;
  }
  return NULL;
}

static void
mail_label_address(struct cam_event *ev, const char *key,
                   InternetAddressList *list)
{
  InternetAddressMailbox *mb = mail_first_mailbox(list);

  if (mb != NULL)
    mail_label_once(ev, key, internet_address_mailbox_get_addr(mb));
}

static void
mail_label_return_path(struct cam_event *ev, GMimeMessage *msg)
{
  const char *rp = g_mime_object_get_header(GMIME_OBJECT(msg),
                                            "Return-Path");
  char *v, *p;
  size_t n;

  if (rp == NULL)
    return;
  v = xstrdup(rp);
  p = g_strstrip(v);
  if (*p == '<')
    p++;
  n = strlen(p);
  if (n > 0 && p[n - 1] == '>')
    p[n - 1] = '\0';
  mail_label_once(ev, "return_path", g_strstrip(p));
  free(v);
}

static void
mail_labels_vendor(struct cam_event *ev, const char *text)
{
  for (size_t i = 0; i < MAIL_NVENDOR; i++) {
    const struct mail_vendor *v = &mail_vendors[i];
    GMatchInfo *mi = NULL;

    if (g_regex_match(mail_vendor_res[i], text, 0, &mi)) {
      gchar *v1 = g_match_info_fetch(mi, 1);
      gchar *v2 = v->key2 ? g_match_info_fetch(mi, 2) : NULL;

      mail_label_once(ev, v->key1, v1);
      if (v->key2 != NULL)
        mail_label_once(ev, v->key2, v2);
      g_free(v1);
      g_free(v2);
    }
    g_match_info_free(mi);
  }
}

/* A named group as a number, or -1 when absent or not a number. */
static long
mail_group_num(const GMatchInfo *mi, const char *name)
{
  gchar *v = g_match_info_fetch_named(mi, name);
  char *end = NULL;
  long n = -1;

  if (v != NULL && *v != '\0') {
    n = strtol(v, &end, 10);
    if (*end != '\0')
      n = -1;
  }
  g_free(v);
  return n;
}

/* Reads "Z", "+08:00" or "-0530" (the pattern vouches for the digits)
 * into seconds east of UTC. */
static long
mail_zone_offset(const char *tz)
{
  const char *m;
  long sign, hh, mm;

  if (tz[0] == 'Z')
    return 0;
  sign = tz[0] == '-' ? -1 : 1;
  hh = (tz[1] - '0') * 10 + (tz[2] - '0');
  m = tz + (tz[3] == ':' ? 4 : 3);
  mm = (m[0] - '0') * 10 + (m[1] - '0');
  return sign * (hh * 3600 + mm * 60);
}

/* Fills y/mo/d from Dahua's order letters, e.g. "D","M","Y". */
static int
mail_time_ordered(const GMatchInfo *mi, long *y, long *mo, long *d)
{
  static const char *const letters[] = {"o1", "o2", "o3"};
  static const char *const nums[] = {"a", "b", "c"};

  *y = *mo = *d = -1;
  for (size_t i = 0; i < 3; i++) {
    gchar *l = g_match_info_fetch_named(mi, letters[i]);
    long v = mail_group_num(mi, nums[i]);
    char c = l ? g_ascii_toupper(l[0]) : '\0';

    g_free(l);
    if (c == 'Y' && *y < 0)
      *y = v;
    else if (c == 'M' && *mo < 0)
      *mo = v;
    else if (c == 'D' && *d < 0)
      *d = v;
    else
      return -1;
  }
  return 0;
}

/* The time a match names, in ms since the epoch; 0 when it is no time. */
static int64_t
mail_time_from_match(const GMatchInfo *mi)
{
  struct tm tm;
  long y, mo, d, h, mi_, s;
  gchar *tz;
  time_t t;

  if (mail_group_num(mi, "a") >= 0) {
    if (mail_time_ordered(mi, &y, &mo, &d) != 0)
      return 0;
  } else {
    y = mail_group_num(mi, "y");
    mo = mail_group_num(mi, "mo");
    d = mail_group_num(mi, "d");
  }
  h = mail_group_num(mi, "h");
  mi_ = mail_group_num(mi, "mi");
  s = mail_group_num(mi, "s");
  if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 ||
      h < 0 || h > 23 || mi_ < 0 || mi_ > 59 || s < 0 || s > 60)
    return 0;

  memset(&tm, 0, sizeof(tm));
  tm.tm_year = (int)(y - 1900);
  tm.tm_mon = (int)(mo - 1);
  tm.tm_mday = (int)d;
  tm.tm_hour = (int)h;
  tm.tm_min = (int)mi_;
  tm.tm_sec = (int)s;
  tz = g_match_info_fetch_named(mi, "tz");
  if (tz != NULL && *tz != '\0') {
    t = timegm(&tm) - mail_zone_offset(tz);
  } else {
    /* No zone written: the camera's clock is the gateway's local time. */
    tm.tm_isdst = -1;
    t = mktime(&tm);
  }
  g_free(tz);
  if (t == (time_t)-1)
    return 0;
  return (int64_t)t * 1000;
}

/* The body is the moment of the event; Date is when the mail left, which
 * can be minutes later on a camera that queues its mail. */
static int64_t
mail_body_time(struct cam_event *ev, const char *text)
{
  for (size_t i = 0; i < MAIL_NTIME; i++) {
    GMatchInfo *mi = NULL;
    int64_t ms = 0;

    if (g_regex_match(mail_time_res[i], text, 0, &mi)) {
      ms = mail_time_from_match(mi);
      if (ms != 0) {
        gchar *raw = g_match_info_fetch_named(mi, "dt");

        mail_label_once(ev, "device_time_text", raw);
        g_free(raw);
      }
    }
    g_match_info_free(mi);
    if (ms != 0)
      return ms;
  }
  return 0;
}

static int64_t
mail_header_time(GMimeMessage *msg)
{
  GDateTime *dt = g_mime_message_get_date(msg);

  if (dt == NULL)
    return 0;
  return (int64_t)g_date_time_to_unix(dt) * 1000 +
         g_date_time_get_microsecond(dt) / 1000;
}

static void
mail_fill_headers(GMimeMessage *msg, struct cam_event *ev)
{
  const char *subject = g_mime_message_get_subject(msg);
  const char *mid = g_mime_message_get_message_id(msg);

  if (subject != NULL) {
    char *cut = xstrdup(subject);

    mail_text_tidy(cut, MAIL_SUBJECT_MAX);
    cam_event_set(&ev->title, cut);
    mail_label_once(ev, "subject", cut);
    free(cut);
  }
  mail_label_address(ev, "from", g_mime_message_get_from(msg));
  mail_label_address(ev, "to", g_mime_message_get_to(msg));
  mail_label_once(ev, "message_id", mid);
  mail_label_return_path(ev, msg);
}

static void
mail_fill_body(struct mail_walk *w)
{
  struct cam_event *ev = w->ev;
  char *text = NULL;

  if (w->plain != NULL) {
    mail_text_tidy(w->plain, MAIL_TEXT_MAX);
    /* An empty plain alternative beside the HTML says nothing. */
    if (*w->plain != '\0' || w->html == NULL) {
      text = w->plain;
      w->plain = NULL;
    }
  }
  if (text == NULL && w->html != NULL) {
    text = mail_html_text(w->html);
    mail_text_tidy(text, MAIL_TEXT_MAX);
  }
  if (text != NULL) {
    cam_event_set(&ev->text, text);
    free(text);
  }
  if (w->skipped > 0) {
    char n[32];

    snprintf(n, sizeof(n), "%zu", w->skipped);
    cam_event_add_label(ev, "attachments_skipped", n);
  }
}

static void
mail_fill(GMimeMessage *msg, const struct smtp_conf *sc,
          struct cam_event *ev)
{
  struct mail_walk w;
  const char *kind = NULL;
  enum event_state state = EVENT_PULSE;
  const char *text;

  memset(&w, 0, sizeof(w));
  w.ev = ev;
  mail_fill_headers(msg, ev);
  mail_walk_message(msg, &w);
  mail_fill_body(&w);
  free(w.plain);
  free(w.html);

  text = ev->text ? ev->text : "";
  ev->device_time = mail_body_time(ev, text);
  if (ev->device_time == 0)
    ev->device_time = mail_header_time(msg);
  mail_labels_vendor(ev, text);

  kind_classify(sc ? sc->kinds : NULL, sc ? sc->nkinds : 0, ev->title,
                ev->text, &kind, &state);
  cam_event_set(&ev->kind, kind);
  ev->state = state;
}

static int
mail_parse_stream(GMimeStream *stream, const struct smtp_conf *sc,
                  struct cam_event *ev)
{
  GMimeParser *parser = g_mime_parser_new_with_stream(stream);
  GMimeMessage *msg;

  g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
  msg = g_mime_parser_construct_message(parser, NULL);
  g_object_unref(parser);
  if (msg == NULL)
    return -1;
  mail_fill(msg, sc, ev);
  g_object_unref(msg);
  return 0;
}

int
mail_parse_file(const char *path, const struct smtp_conf *sc,
                struct cam_event *ev)
{
  GMimeStream *stream;
  int fd, rc;

  mail_init();
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  /* The stream owns fd from here and closes it when unreferenced. */
  stream = g_mime_stream_fs_new(fd);
  rc = mail_parse_stream(stream, sc, ev);
  g_object_unref(stream);
  return rc;
}

int
mail_parse_mem(const char *buf, size_t len, const struct smtp_conf *sc,
               struct cam_event *ev)
{
  GMimeStream *stream;
  int rc;

  mail_init();
  stream = g_mime_stream_mem_new_with_buffer(buf, len);
  rc = mail_parse_stream(stream, sc, ev);
  g_object_unref(stream);
  return rc;
}
