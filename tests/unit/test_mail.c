/* test_mail.c - camera alert mails into events: the shared fixtures and
 * synthetic messages for what the fixtures do not show. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "gateway/log.h"
#include "ingest/mail.h"

#define ASSETS FIXTURES_DIR "/assets/"
#define SMTP FIXTURES_DIR "/smtp/"

/* Per fixture: the README's expected kind and snapshot count, and which
 * asset each attachment embeds (checked byte for byte). A mail that only
 * says "motion" is a pulse: kind.h gives start/stop only when the words
 * do, and the README's "start only" means no stop mail ever follows. */
struct fixture {
  const char *file;
  const char *kind;
  enum event_state state;
  size_t natt;
  const char *assets[3];
  size_t size0;           /* size of attachment 0 when the README says */
};

static const struct fixture fixtures[] = {
  {"05_hikvision_nvr_motion_3jpeg.eml", "motion", EVENT_PULSE, 3,
   {"snap_64x48.jpg", "snap2_64x48.jpg", "snap_64x48.jpg"}, 0},
  {"06_dahua_ezip_base64_body.eml", "motion", EVENT_START, 1,
   {"snap_64x48.jpg", NULL, NULL}, 0},
  {"07_reolink_text_only.eml", "motion", EVENT_PULSE, 0, {NULL}, 0},
  {"08_no_date_no_msgid_bare_lf.eml", "motion", EVENT_PULSE, 0, {NULL}, 0},
  {"11_single_line_base64_over_998.eml", "motion", EVENT_PULSE, 1,
   {"noise_160x120.jpg", NULL, NULL}, 18105},
  {"12_zoneminder_inline_cid_related.eml", "motion", EVENT_PULSE, 1,
   {"snap_64x48.jpg", NULL, NULL}, 0},
};

#define NFIXTURES (sizeof(fixtures) / sizeof(fixtures[0]))

static const struct smtp_conf no_conf;

static char *
slurp(const char *path, size_t *len)
{
  gchar *data = NULL;
  gsize n = 0;
  char *copy;

  if (!g_file_get_contents(path, &data, &n, NULL))
    fail_msg("cannot read %s", path);
  copy = xmalloc(n + 1);
  memcpy(copy, data, n);
  copy[n] = '\0';
  g_free(data);
  *len = n;
  return copy;
}

static void
set_tz(const char *tz)
{
  setenv("TZ", tz, 1);
  tzset();
}

static struct cam_event *
parse_file(const char *name)
{
  struct cam_event *ev = cam_event_new();
  char path[1024];

  snprintf(path, sizeof(path), "%s%s", SMTP, name);
  assert_int_equal(mail_parse_file(path, &no_conf, ev), 0);
  return ev;
}

static struct cam_event *
parse_str(const char *msg)
{
  struct cam_event *ev = cam_event_new();

  assert_int_equal(mail_parse_mem(msg, strlen(msg), &no_conf, ev), 0);
  return ev;
}

static void
assert_jpeg(const struct attachment *a)
{
  assert_string_equal(a->content_type, "image/jpeg");
  assert_true(a->len > 4);
  assert_int_equal(a->data[0], 0xff);
  assert_int_equal(a->data[1], 0xd8);
  assert_int_equal(a->data[2], 0xff);
  assert_int_equal(a->data[a->len - 2], 0xff);
  assert_int_equal(a->data[a->len - 1], 0xd9);
}

static void
assert_asset(const struct attachment *a, const char *asset)
{
  char path[1024];
  size_t len;
  char *want;

  snprintf(path, sizeof(path), "%s%s", ASSETS, asset);
  want = slurp(path, &len);
  assert_int_equal(a->len, len);
  assert_memory_equal(a->data, want, len);
  free(want);
}

static const struct fixture *
fixture_find(const char *file)
{
  for (size_t i = 0; i < NFIXTURES; i++)
    if (strcmp(fixtures[i].file, file) == 0)
      return &fixtures[i];
  return NULL;
}

static void
check_fixture(const struct fixture *fx, const struct cam_event *ev)
{
  assert_non_null(ev->kind);
  assert_string_equal(ev->kind, fx->kind);
  assert_int_equal(ev->state, fx->state);
  assert_int_equal(ev->natt, fx->natt);
  for (size_t i = 0; i < ev->natt; i++) {
    assert_jpeg(&ev->att[i]);
    assert_asset(&ev->att[i], fx->assets[i]);
  }
  if (fx->size0)
    assert_int_equal(ev->att[0].len, fx->size0);
  assert_non_null(ev->title);
  assert_non_null(ev->text);
  assert_null(strchr(ev->text, '\r'));
  assert_null(cam_event_label(ev, "attachments_skipped"));
}

/* Every .eml in the fixtures, from the file and from memory alike; a new
 * fixture without an expectation here fails the test. */
static void
test_fixtures_all(void **state)
{
  DIR *d = opendir(SMTP);
  struct dirent *de;
  size_t seen = 0;

  (void)state;
  assert_non_null(d);
  while ((de = readdir(d)) != NULL) {
    const struct fixture *fx;
    struct cam_event *ev, *ev2;
    char path[1024];
    size_t len;
    char *buf;

    if (!g_str_has_suffix(de->d_name, ".eml"))
      continue;
    fx = fixture_find(de->d_name);
    if (fx == NULL)
      fail_msg("no expectation for fixture %s", de->d_name);
    seen++;
    ev = parse_file(fx->file);
    check_fixture(fx, ev);

    snprintf(path, sizeof(path), "%s%s", SMTP, fx->file);
    buf = slurp(path, &len);
    ev2 = cam_event_new();
    assert_int_equal(mail_parse_mem(buf, len, &no_conf, ev2), 0);
    check_fixture(fx, ev2);
    assert_string_equal(ev->title, ev2->title);
    assert_string_equal(ev->text, ev2->text);
    assert_int_equal(ev->device_time, ev2->device_time);
    free(buf);
    cam_event_free(ev);
    cam_event_free(ev2);
  }
  closedir(d);
  assert_int_equal(seen, NFIXTURES);
}

static void
test_fixture05_hikvision(void **state)
{
  struct cam_event *ev;

  (void)state;
  set_tz("Asia/Shanghai");
  ev = parse_file("05_hikvision_nvr_motion_3jpeg.eml");
  assert_string_equal(ev->title,
                      "Network Video Recorder: Motion Detected On Channel D4");
  /* The body's 12:30:45 wins over Date's 12:30:47 +0800. */
  assert_int_equal(ev->device_time, INT64_C(1714537845000));
  assert_string_equal(cam_event_label(ev, "device_time_text"),
                      "2024-05-01,12:30:45");
  assert_string_equal(cam_event_label(ev, "serial"),
                      "0820230101CCRR000000000WCVU");
  assert_string_equal(cam_event_label(ev, "channel"), "D4");
  assert_string_equal(cam_event_label(ev, "channel_name"), "Driveway");
  assert_string_equal(cam_event_label(ev, "device_name"),
                      "Network Video Recorder");
  assert_string_equal(cam_event_label(ev, "from"), "nvr-yard@example.com");
  assert_string_equal(cam_event_label(ev, "to"), "alerts@example.net");
  assert_string_equal(cam_event_label(ev, "subject"), ev->title);
  assert_null(cam_event_label(ev, "message_id"));
  assert_string_equal(ev->att[0].name, "D4_20240501123045_1.jpg");
  assert_string_equal(ev->att[2].name, "D4_20240501123045_3.jpg");
  assert_true(strncmp(ev->text, "This is an automatically", 24) == 0);
  assert_non_null(strstr(ev->text, "CAMERA NAME(NUM):   Driveway(D4)"));
  cam_event_free(ev);

  /* A time without a zone is the process's local time. */
  set_tz("Europe/Berlin");
  ev = parse_file("05_hikvision_nvr_motion_3jpeg.eml");
  assert_int_equal(ev->device_time, INT64_C(1714559445000));
  cam_event_free(ev);
  set_tz("UTC");
}

static void
test_fixture06_dahua(void **state)
{
  struct cam_event *ev;

  (void)state;
  set_tz("Asia/Shanghai");
  ev = parse_file("06_dahua_ezip_base64_body.eml");
  /* =?UTF-8?B?RVpJUC1HQVRFIOaKpeitpiBBbGFybQ==?= */
  assert_string_equal(ev->title,
                      "EZIP-GATE \xe6\x8a\xa5\xe8\xad\xa6 Alarm");
  assert_non_null(strstr(ev->text, "Alarm Input Channel: 1\n"));
  assert_true(strncmp(ev->text, "Alarm Event: Motion Detection Start\n",
                      36) == 0);
  /* D/M/Y: 01/05/2024 is the first of May. */
  assert_int_equal(ev->device_time, INT64_C(1714537845000));
  assert_string_equal(cam_event_label(ev, "device_time_text"),
                      "01/05/2024 12:30:45");
  assert_string_equal(cam_event_label(ev, "return_path"),
                      "ezip-gate@example.com");
  assert_string_equal(cam_event_label(ev, "channel"), "1");
  assert_string_equal(cam_event_label(ev, "device_name"), "EZIP-GATE");
  assert_string_equal(ev->att[0].name, "EZIP-GATE_ch1_20240501123045.jpg");
  cam_event_free(ev);
  set_tz("UTC");
}

static void
test_fixture07_date_header(void **state)
{
  struct cam_event *ev;

  (void)state;
  ev = parse_file("07_reolink_text_only.eml");
  /* No time in the body: Date, 12:30:45 +0200. */
  assert_int_equal(ev->device_time, INT64_C(1714559445000));
  assert_null(cam_event_label(ev, "device_time_text"));
  assert_string_equal(ev->title, "Motion alert garden");
  assert_string_equal(cam_event_label(ev, "to"), "garden@example.net");
  cam_event_free(ev);
}

static void
test_fixture08_bare_lf(void **state)
{
  struct cam_event *ev;

  (void)state;
  set_tz("Asia/Shanghai");
  ev = parse_file("08_no_date_no_msgid_bare_lf.eml");
  assert_string_equal(ev->title, "Motion detected porch-cam");
  assert_string_equal(ev->text, "Motion detected by porch-cam "
                                "(192.0.2.77) at 2024-05-01 12:30:45");
  assert_int_equal(ev->device_time, INT64_C(1714537845000));
  assert_string_equal(cam_event_label(ev, "device_time_text"),
                      "2024-05-01 12:30:45");
  assert_string_equal(cam_event_label(ev, "from"),
                      "thingino-porch@example.com");
  assert_null(cam_event_label(ev, "message_id"));
  cam_event_free(ev);
  set_tz("UTC");
}

static void
test_fixture11_long_line(void **state)
{
  struct cam_event *ev;

  (void)state;
  ev = parse_file("11_single_line_base64_over_998.eml");
  assert_int_equal(ev->att[0].len, 18105);
  assert_string_equal(ev->att[0].name, "capture.jpg");
  assert_string_equal(ev->text, "motion");
  assert_int_equal(ev->device_time, INT64_C(1714566645000));
  cam_event_free(ev);
}

static void
test_fixture12_zoneminder(void **state)
{
  struct cam_event *ev;

  (void)state;
  ev = parse_file("12_zoneminder_inline_cid_related.eml");
  assert_string_equal(ev->text, "Monitor: Garage\nEvent: 4711\n"
                                "Cause: Motion");
  assert_string_equal(cam_event_label(ev, "channel_name"), "Garage");
  assert_string_equal(cam_event_label(ev, "event_id"), "4711");
  assert_string_equal(cam_event_label(ev, "message_id"),
                      "zm-4711@zm.example.com");
  assert_string_equal(ev->att[0].name, "00012-capture.jpg");
  assert_int_equal(ev->device_time, INT64_C(1714566650000));
  cam_event_free(ev);
}

static void
test_user_kind(void **state)
{
  char kind[] = "driveway";
  struct kind_pattern pat = {KIND_BODY, NULL, kind, NULL};
  struct smtp_conf sc;
  struct cam_event *ev = cam_event_new();

  (void)state;
  memset(&sc, 0, sizeof(sc));
  pat.re = g_regex_new("Driveway\\(D4\\)", 0, 0, NULL);
  assert_non_null(pat.re);
  sc.kinds = &pat;
  sc.nkinds = 1;
  assert_int_equal(mail_parse_file(SMTP "05_hikvision_nvr_motion_3jpeg.eml",
                                   &sc, ev), 0);
  assert_string_equal(ev->kind, "driveway");
  assert_int_equal(ev->state, EVENT_PULSE);
  g_regex_unref(pat.re);
  cam_event_free(ev);
}

static char *
asset_base64(const char *asset)
{
  char path[1024];
  size_t len;
  char *raw = NULL;
  gchar *b64;
  char *out;

  snprintf(path, sizeof(path), "%s%s", ASSETS, asset);
  raw = slurp(path, &len);
  b64 = g_base64_encode((const guchar *)raw, len);
  out = xstrdup(b64);
  g_free(b64);
  free(raw);
  return out;
}

static void
test_html_only(void **state)
{
  static const char msg[] =
    "From: Cam <cam@example.com>\r\n"
    "To: a@example.net, b@example.net\r\n"
    "Subject: Alert\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<!DOCTYPE html><html><head><title>Page title</title>\r\n"
    "<style>p { color: red }</style></head>\r\n"
    "<body><script type=\"text/javascript\">var a = 1 < 2;</script>\r\n"
    "<p>Tom &amp; Jerry &lt;3&gt;   &quot;hi&quot; &#65;&#x42; "
    "a&nbsp;b &bogus; 1 < 2</p>\r\n"
    "<div>second\r\n   line</div>\r\n\r\n\r\n"
    "<br><br/><br />third<!-- a <b>comment</b> -->\r\n"
    "</body></html>\r\n";
  struct cam_event *ev;

  (void)state;
  ev = parse_str(msg);
  assert_string_equal(ev->text,
                      "Tom & Jerry <3> \"hi\" AB a b &bogus; 1 < 2\n\n"
                      "second line\n\nthird");
  assert_string_equal(cam_event_label(ev, "to"), "a@example.net");
  assert_string_equal(cam_event_label(ev, "from"), "cam@example.com");
  assert_string_equal(ev->kind, "alert");
  assert_int_equal(ev->natt, 0);
  cam_event_free(ev);
}

/* Magic bytes over a lying label; a name over a missing label. */
static void
test_images_by_magic_and_name(void **state)
{
  char *jpg = asset_base64("snap_64x48.jpg");
  /* 89 50 4E 47 0D 0A 1A 0A and the start of an IHDR chunk */
  static const char png_b64[] = "iVBORw0KGgoAAAANSUhEUg==";
  char *msg;
  struct cam_event *ev;

  (void)state;
  msg = g_strdup_printf(
    "From: cam@example.com\r\n"
    "Subject: Motion\r\n"
    "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n\r\nmotion\r\n"
    "--b\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
    "--b\r\n"
    "Content-Type: application/x-camera-data\r\n"
    "Content-Disposition: attachment; filename=\"../../etc/snap.png\"\r\n"
    "\r\nnot really a png\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
    "--b\r\n"
    "Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
    "\r\nplain bytes, no image\r\n"
    "--b--\r\n", jpg, png_b64);
  ev = parse_str(msg);
  assert_int_equal(ev->natt, 3);
  assert_jpeg(&ev->att[0]);
  assert_asset(&ev->att[0], "snap_64x48.jpg");
  assert_string_equal(ev->att[0].name, "snapshot-1.jpg");
  assert_string_equal(ev->att[1].content_type, "image/png");
  assert_string_equal(ev->att[1].name, "snap.png");
  assert_int_equal(ev->att[1].len, strlen("not really a png"));
  assert_string_equal(ev->att[2].content_type, "image/png");
  assert_string_equal(ev->att[2].name, "snapshot-3.png");
  assert_int_equal(ev->att[2].data[0], 0x89);
  assert_memory_equal(ev->att[2].data + 1, "PNG\r\n\x1a\n", 7);
  assert_string_equal(ev->text, "motion");
  cam_event_free(ev);
  g_free(msg);
  free(jpg);
}

static void
test_nested_three_deep(void **state)
{
  char *jpg = asset_base64("snap2_64x48.jpg");
  char *msg;
  struct cam_event *ev;

  (void)state;
  msg = g_strdup_printf(
    "From: nvr@example.com\r\n"
    "Subject: Person detected\r\n"
    "Content-Type: multipart/mixed; boundary=\"m1\"\r\n\r\n"
    "--m1\r\n"
    "Content-Type: multipart/related; boundary=\"m2\"\r\n\r\n"
    "--m2\r\n"
    "Content-Type: multipart/alternative; boundary=\"m3\"\r\n\r\n"
    "--m3\r\n"
    "Content-Type: text/html\r\n\r\n<p>html version</p>\r\n"
    "--m3\r\n"
    "Content-Type: text/plain\r\n\r\nplain version\r\n"
    "--m3--\r\n"
    "--m2\r\n"
    "Content-Type: image/pjpeg\r\n"
    "Content-ID: <img1>\r\n"
    "Content-Disposition: inline\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
    "--m2--\r\n"
    "--m1\r\n"
    "Content-Type: multipart/mixed; boundary=\"n2\"\r\n\r\n"
    "--n2\r\n"
    "Content-Type: multipart/mixed; boundary=\"n3\"\r\n\r\n"
    "--n3\r\n"
    "Content-Type: image/jpg; name=\"deep.jpg\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
    "--n3--\r\n"
    "--n2--\r\n"
    "--m1--\r\n", jpg, jpg);
  ev = parse_str(msg);
  assert_string_equal(ev->text, "plain version");
  assert_string_equal(ev->kind, "person");
  assert_int_equal(ev->natt, 2);
  for (size_t i = 0; i < 2; i++) {
    assert_jpeg(&ev->att[i]);
    assert_asset(&ev->att[i], "snap2_64x48.jpg");
  }
  assert_string_equal(ev->att[0].name, "snapshot-1.jpg");
  assert_string_equal(ev->att[1].name, "deep.jpg");
  cam_event_free(ev);
  g_free(msg);
  free(jpg);
}

static void
test_latin1(void **state)
{
  static const char msg[] =
    "From: cam@example.com\r\n"
    "Subject: =?ISO-8859-1?Q?Motion_d=E9tect=E9e_=E0_l'entr=E9e?=\r\n"
    "Content-Type: text/plain; charset=ISO-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Kamera Stra=DFe: Bewegung erkannt (=C4rger) caf=E9, sehr lange Zeile =\r\n"
    "mit weichem Umbruch\r\n";
  struct cam_event *ev;

  (void)state;
  ev = parse_str(msg);
  assert_string_equal(ev->title,
                      "Motion d\xc3\xa9tect\xc3\xa9" "e \xc3\xa0 "
                      "l'entr\xc3\xa9" "e");
  assert_string_equal(ev->text,
                      "Kamera Stra\xc3\x9f" "e: Bewegung erkannt "
                      "(\xc3\x84rger) caf\xc3\xa9, sehr lange Zeile "
                      "mit weichem Umbruch");
  assert_true(g_utf8_validate(ev->text, -1, NULL));
  assert_string_equal(ev->kind, "motion");
  cam_event_free(ev);
}

/* A declared UTF-8 body that is really Latin-1 still comes out UTF-8. */
static void
test_mislabelled_charset(void **state)
{
  static const char msg[] =
    "Subject: Motion\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Stra\xdf" "e\r\n";
  struct cam_event *ev;

  (void)state;
  ev = parse_str(msg);
  assert_true(g_utf8_validate(ev->text, -1, NULL));
  assert_true(strncmp(ev->text, "Stra", 4) == 0);
  cam_event_free(ev);
}

/* A picture of 3 MB (4 MB in base64) is decoded into a file under the
 * spill directory, never whole into memory: the event holds its path and
 * length, attachment_data() reads it back byte for byte, and the file
 * goes with the event. Small pictures stay in memory. */
static void
test_large_picture_goes_to_a_file(void **state)
{
  char dir[] = "/tmp/camgate-mail-XXXXXX";
  size_t n = 3 * 1024 * 1024 + 5;
  unsigned char *pic = xmalloc(n);
  GString *msg = g_string_new(NULL);
  struct cam_event *ev;
  const struct attachment *a;
  const unsigned char *back;
  gchar *b64;
  char *path;

  (void)state;
  assert_non_null(mkdtemp(dir));
  for (size_t i = 0; i < n; i++)
    pic[i] = (unsigned char)(i * 31 + 7);
  pic[0] = 0xff;
  pic[1] = 0xd8;
  pic[2] = 0xff;
  b64 = g_base64_encode(pic, n);
  g_string_append(msg, "From: cam@example.com\r\nSubject: Motion\r\n"
                  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                  "boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain"
                  "\r\n\r\nMotion on channel 1\r\n--b\r\nContent-Type: "
                  "application/octet-stream; name=\"big.jpg\"\r\n"
                  "Content-Transfer-Encoding: base64\r\n\r\n");
  for (size_t off = 0, len = strlen(b64); off < len; off += 76) {
    g_string_append_len(msg, b64 + off, len - off < 76 ? (gssize)(len - off)
                                                       : 76);
    g_string_append(msg, "\r\n");
  }
  g_string_append(msg, "--b--\r\n");
  g_free(b64);

  mail_set_spill_dir(dir);
  ev = cam_event_new();
  assert_int_equal(mail_parse_mem(msg->str, msg->len, &no_conf, ev), 0);
  mail_set_spill_dir(NULL);
  assert_int_equal(ev->natt, 1);
  a = &ev->att[0];
  assert_string_equal(a->content_type, "image/jpeg");
  assert_null(a->data);
  assert_non_null(a->path);
  assert_int_equal(strncmp(a->path, dir, strlen(dir)), 0);
  assert_int_equal(a->len, n);
  back = attachment_data(a);
  assert_non_null(back);
  assert_memory_equal(back, pic, n);
  path = xstrdup(a->path);
  cam_event_free(ev);
  assert_int_equal(access(path, F_OK), -1);
  free(path);

  /* The same from a file, as a message over 1 MiB arrives: a file
   * stream ends its parts differently from a memory stream. */
  {
    char msgpath[64];
    FILE *fp;

    snprintf(msgpath, sizeof(msgpath), "%s/msg", dir);
    fp = fopen(msgpath, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(msg->str, 1, msg->len, fp), msg->len);
    assert_int_equal(fclose(fp), 0);
    mail_set_spill_dir(dir);
    ev = cam_event_new();
    assert_int_equal(mail_parse_file(msgpath, &no_conf, ev), 0);
    mail_set_spill_dir(NULL);
    assert_int_equal(ev->natt, 1);
    assert_null(ev->att[0].data);
    assert_non_null(ev->att[0].path);
    assert_int_equal(ev->att[0].len, n);
    back = attachment_data(&ev->att[0]);
    assert_non_null(back);
    assert_memory_equal(back, pic, n);
    cam_event_free(ev);
    assert_int_equal(unlink(msgpath), 0);
  }

  /* Without a spill directory the same message decodes into memory. */
  ev = cam_event_new();
  assert_int_equal(mail_parse_mem(msg->str, msg->len, &no_conf, ev), 0);
  assert_int_equal(ev->natt, 1);
  assert_null(ev->att[0].path);
  assert_memory_equal(ev->att[0].data, pic, n);
  cam_event_free(ev);
  assert_int_equal(rmdir(dir), 0);
  g_string_free(msg, TRUE);
  free(pic);
}

static void
test_garbage(void **state)
{
  unsigned char buf[4096];
  uint32_t x = 2463534242u;
  struct cam_event *ev;
  int rc;

  (void)state;
  for (size_t i = 0; i < sizeof(buf); i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    buf[i] = (unsigned char)x;
  }
  ev = cam_event_new();
  rc = mail_parse_mem((const char *)buf, sizeof(buf), &no_conf, ev);
  assert_true(rc == 0 || rc == -1);
  assert_int_equal(ev->natt, 0);
  cam_event_free(ev);

  ev = cam_event_new();
  rc = mail_parse_mem("", 0, &no_conf, ev);
  assert_true(rc == 0 || rc == -1);
  cam_event_free(ev);

  ev = cam_event_new();
  assert_int_equal(mail_parse_file(SMTP "no-such-file.eml", &no_conf, ev),
                   -1);
  assert_null(ev->kind);
  cam_event_free(ev);
}

static void
test_truncated_multipart(void **state)
{
  char *jpg = asset_base64("snap_64x48.jpg");
  char *msg;
  struct cam_event *ev;

  (void)state;
  jpg[400] = '\0';
  msg = g_strdup_printf(
    "From: cam@example.com\r\n"
    "Subject: Camera 1\r\n"
    "Content-Type: multipart/mixed; boundary=\"cut\"\r\n\r\n"
    "--cut\r\n"
    "Content-Type: text/plain\r\n\r\n"
    "Alarm Event: Motion Detection Start\r\n"
    "--cut\r\n"
    "Content-Type: image/jpeg; name=\"cut.jpg\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n%s", jpg);
  ev = parse_str(msg);
  assert_string_equal(ev->text, "Alarm Event: Motion Detection Start");
  assert_string_equal(ev->kind, "motion");
  assert_int_equal(ev->state, EVENT_START);
  assert_int_equal(ev->natt, 1);
  assert_int_equal(ev->att[0].len, 300);
  assert_int_equal(ev->att[0].data[0], 0xff);
  assert_int_equal(ev->att[0].data[1], 0xd8);
  cam_event_free(ev);
  g_free(msg);
  free(jpg);
}

static void
test_image_cap(void **state)
{
  char *jpg = asset_base64("snap_64x48.jpg");
  GString *msg = g_string_new(
    "From: cam@example.com\r\n"
    "Subject: Motion burst\r\n"
    "Content-Type: multipart/mixed; boundary=\"many\"\r\n\r\n");
  struct cam_event *ev;
  char name[48];

  (void)state;
  for (int i = 0; i < 20; i++)
    g_string_append_printf(msg, "--many\r\nContent-Type: image/jpeg\r\n"
                           "Content-Transfer-Encoding: base64\r\n\r\n"
                           "%s\r\n", jpg);
  g_string_append(msg, "--many--\r\n");
  ev = parse_str(msg->str);
  assert_int_equal(ev->natt, 16);
  assert_string_equal(cam_event_label(ev, "attachments_skipped"), "4");
  for (size_t i = 0; i < ev->natt; i++) {
    assert_jpeg(&ev->att[i]);
    snprintf(name, sizeof(name), "snapshot-%zu.jpg", i + 1);
    assert_string_equal(ev->att[i].name, name);
  }
  assert_null(ev->text);
  cam_event_free(ev);
  g_string_free(msg, TRUE);
  free(jpg);
}

static void
test_body_time_variants(void **state)
{
  static const struct {
    const char *body;
    int64_t want;
    const char *raw;
  } cases[] = {
    /* UTC here, so local 12:30:45 is 1714566645000. */
    {"EVENT TIME:    2024-05-01 12:30:45", INT64_C(1714566645000),
     "2024-05-01 12:30:45"},
    {"EVENT TIME: 2024-05-01T12:30:45", INT64_C(1714566645000),
     "2024-05-01T12:30:45"},
    {"Alarm Start Time(M/D/Y H:M:S): 05/01/2024 12:30:45",
     INT64_C(1714566645000), "05/01/2024 12:30:45"},
    {"Alarm Start Time(Y-M-D H:M:S): 2024-05-01 12:30:45",
     INT64_C(1714566645000), "2024-05-01 12:30:45"},
    {"Triggered at 2024-05-01T12:30:45+02:00 by zone 1",
     INT64_C(1714559445000), "2024-05-01T12:30:45+02:00"},
    {"Triggered at 2024-05-01 12:30:45Z", INT64_C(1714566645000),
     "2024-05-01 12:30:45Z"},
    /* Not a time: the Date header (12:00:00 UTC) stays. */
    {"Serial 2024-13-45 99:99:99", INT64_C(1714564800000), NULL},
  };

  (void)state;
  set_tz("UTC");
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *msg = g_strdup_printf(
      "Subject: Motion\r\nDate: Wed, 1 May 2024 12:00:00 +0000\r\n"
      "Content-Type: text/plain\r\n\r\n%s\r\n", cases[i].body);
    struct cam_event *ev = parse_str(msg);

    if (ev->device_time != cases[i].want)
      fail_msg("case %zu: device_time %lld, want %lld", i,
               (long long)ev->device_time, (long long)cases[i].want);
    if (cases[i].raw != NULL)
      assert_string_equal(cam_event_label(ev, "device_time_text"),
                          cases[i].raw);
    else
      assert_null(cam_event_label(ev, "device_time_text"));
    cam_event_free(ev);
    g_free(msg);
  }
}

static void
test_text_cap(void **state)
{
  GString *msg = g_string_new("Subject: Motion\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "\r\n");
  struct cam_event *ev;

  (void)state;
  /* Two-byte characters, so the cap must not split one. */
  for (int i = 0; i < 6000; i++)
    g_string_append(msg, "\xc3\xa9");
  g_string_append(msg, "\r\n");
  ev = parse_str(msg->str);
  assert_true(strlen(ev->text) <= 8192);
  assert_true(strlen(ev->text) >= 8190);
  assert_true(g_utf8_validate(ev->text, -1, NULL));
  cam_event_free(ev);
  g_string_free(msg, TRUE);
}

/* The spool writer thread parses too: several threads at once. */
static void *
parse_thread(void *arg)
{
  int *ok = arg;

  for (int i = 0; i < 20; i++) {
    struct cam_event *ev = cam_event_new();

    if (mail_parse_file(SMTP "05_hikvision_nvr_motion_3jpeg.eml", NULL,
                        ev) != 0 || ev->natt != 3 ||
        strcmp(ev->kind, "motion") != 0 ||
        cam_event_label(ev, "serial") == NULL)
      *ok = 0;
    cam_event_free(ev);
  }
  return NULL;
}

static void
test_threads(void **state)
{
  pthread_t t[4];
  int ok[4] = {1, 1, 1, 1};

  (void)state;
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, parse_thread, &ok[i]), 0);
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_true(ok[i]);
  }
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fixtures_all),
    cmocka_unit_test(test_fixture05_hikvision),
    cmocka_unit_test(test_fixture06_dahua),
    cmocka_unit_test(test_fixture07_date_header),
    cmocka_unit_test(test_fixture08_bare_lf),
    cmocka_unit_test(test_fixture11_long_line),
    cmocka_unit_test(test_fixture12_zoneminder),
    cmocka_unit_test(test_user_kind),
    cmocka_unit_test(test_html_only),
    cmocka_unit_test(test_images_by_magic_and_name),
    cmocka_unit_test(test_nested_three_deep),
    cmocka_unit_test(test_latin1),
    cmocka_unit_test(test_mislabelled_charset),
    cmocka_unit_test(test_garbage),
    cmocka_unit_test(test_large_picture_goes_to_a_file),
    cmocka_unit_test(test_truncated_multipart),
    cmocka_unit_test(test_image_cap),
    cmocka_unit_test(test_body_time_variants),
    cmocka_unit_test(test_text_cap),
    cmocka_unit_test(test_threads),
  };

  /* Tests pin TZ themselves; UTC is the base for the rest. */
  set_tz("UTC");
  mail_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
