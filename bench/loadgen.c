/* loadgen.c - an SMTP load generator that sends camera alert mail.
 *
 * K concurrent sessions to one loopback host and port, each EHLO, AUTH
 * LOGIN (unless --no-auth), then MAIL, RCPT, DATA with a camera alert
 * (multipart/mixed: a text part and a base64 JPEG of a chosen size in
 * 76-column lines), RSET between messages and QUIT at the end. Every
 * subject carries a token "LG<run>-<seq>" that the end-to-end mode looks
 * for in the MQTT messages it subscribes to.
 *
 * Latency "." -> 250 runs from the moment the write that carried the final
 * "." returned to the moment the 250 was read; "." -> MQTT from the same
 * moment to the arrival at our subscriber. One libevent loop drives every
 * session; the message body is built once and added to each session's
 * output by reference, so the sender does not copy it.
 *
 * Prints a human summary and one "result" line of key=value pairs that
 * bench/run.sh reads. Exits 0 when every message got its 250 (and, in
 * end-to-end mode, arrived), 1 otherwise, 2 on bad usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_SESSIONS 20000
#define LG_MAX_MESSAGES 10000000L
#define LG_MAX_SECONDS 3600
#define LG_REPLY_TIMEOUT 60
#define LG_BOUNDARY "----=_camgate_loadgen_7f3a"

enum lg_state {
  LG_GREETING, LG_EHLO, LG_AUTH, LG_AUTH_USER, LG_AUTH_PASS, LG_IDLE,
  LG_MAIL, LG_RCPT, LG_DATA, LG_BODY, LG_RSET, LG_QUIT, LG_DONE
};

struct lg_opts {
  struct sockaddr_in addr;
  int sessions;
  long messages;
  double duration;
  size_t size;
  const char *user;
  const char *password;
  int users;
  int no_auth;
  int idle;
  double rate;
  double hold;
  double ramp;
  int mqtt_port;
  const char *topic;
  double wait;
  int max_errors;
  int quiet;
};

struct lg_session {
  struct lg *lg;
  int index;
  struct bufferevent *bev;
  enum lg_state state;
  long seq;            /* the message in flight, or -1 */
  int multiline;       /* inside a "250-" reply */
  struct event *timer; /* pacing, holding and reconnecting */
  int ready;           /* has logged in once */
  char user[128];
};

struct lg {
  struct lg_opts o;
  struct event_base *base;
  struct lg_session *ss;
  const char *tail;    /* the shared part of each message */
  size_t tail_len;
  unsigned run;
  long next_seq;
  long ok;
  long errors;
  long connects;
  int live;            /* sessions not yet done */
  int authed;          /* sessions that logged in */
  int done;            /* sessions that ended */
  int started;         /* every session is in: messages may go */
  int stopping;
  double t_start;
  double t_go;         /* when the last session had logged in */
  double t_first_dot;
  double t_last_ack;
  double *t_dot;       /* per seq: when the "." left, 0 if never */
  double *t_ack;       /* per seq: when the 250 came, 0 if never */
  double *t_arr;       /* per seq: when it reached MQTT, 0 if never */
  long cap;
  pthread_mutex_t mu;  /* guards t_arr and arrived */
  long arrived;
  long dup_arrivals;
  struct mosquitto *mosq;
  volatile int subscribed;
  struct event *stop_timer;
  struct timeval stop_after;
  struct event *hard_timer;
};

static double
lg_now(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
lg_die(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void *
lg_alloc(size_t n)
{
  void *p = calloc(1, n ? n : 1);

  if (p == NULL)
    lg_die("out of memory (%zu bytes)", n);
  return p;
}

/* ---------------------------------------------------------------- message */

static const char lg_b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of src in lines of 76 characters with CRLF; returns the text
 * (caller frees) and its length in *outlen. */
static char *
lg_base64_lines(const unsigned char *src, size_t n, size_t *outlen)
{
  size_t chars = (n + 2) / 3 * 4;
  size_t cap = chars + (chars / 76 + 1) * 2 + 1;
  char *out = lg_alloc(cap);
  size_t o = 0;
  size_t col = 0;

  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)src[i] << 16;
    size_t left = n - i;

    if (left > 1)
      v |= (uint32_t)src[i + 1] << 8;
    if (left > 2)
      v |= src[i + 2];
    out[o++] = lg_b64[(v >> 18) & 63];
    out[o++] = lg_b64[(v >> 12) & 63];
    out[o++] = left > 1 ? lg_b64[(v >> 6) & 63] : '=';
    out[o++] = left > 2 ? lg_b64[v & 63] : '=';
    col += 4;
    if (col == 76) {
      out[o++] = '\r';
      out[o++] = '\n';
      col = 0;
    }
  }
  if (col) {
    out[o++] = '\r';
    out[o++] = '\n';
  }
  *outlen = o;
  return out;
}

/* A JPEG-looking image of n bytes: SOI, a JFIF APP0, filler in a comment
 * segment, EOI. Its content is not decoded by anyone in the benchmark. */
static unsigned char *
lg_fake_jpeg(size_t n)
{
  static const unsigned char head[] = {
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01,
    0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00
  };
  unsigned char *p;
  uint32_t x = 2463534242u;

  if (n < sizeof(head) + 2)
    n = sizeof(head) + 2;
  p = lg_alloc(n);
  memcpy(p, head, sizeof(head));
  for (size_t i = sizeof(head); i < n - 2; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = (unsigned char)x;
  }
  p[n - 2] = 0xFF;
  p[n - 1] = 0xD9;
  return p;
}

/* The part of every message after its Subject line: the rest of the
 * header, the text part, the attachment and the final ".". The image is
 * sized so that the whole message comes to about o->size bytes. */
static void
lg_build_tail(struct lg *lg)
{
  static const char fmt[] =
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"" LG_BOUNDARY "\"\r\n"
    "\r\n"
    "This is a multi-part message in MIME format.\r\n"
    "\r\n"
    "--" LG_BOUNDARY "\r\n"
    "Content-Type: text/plain; charset=\"UTF-8\"\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "This is an automatically generated e-mail from your camera.\r\n"
    "\r\n"
    "EVENT TYPE:    Motion Detected\r\n"
    "EVENT TIME:    2025-03-14,09:26:53\r\n"
    "CAMERA NAME:   loadgen\r\n"
    "\r\n"
    "--" LG_BOUNDARY "\r\n"
    "Content-Type: image/jpeg; name=\"snapshot.jpg\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename=\"snapshot.jpg\"\r\n"
    "\r\n"
    "%s"
    "\r\n"
    "--" LG_BOUNDARY "--\r\n"
    ".\r\n";
  size_t overhead = sizeof(fmt) + 200;
  size_t img = 64;
  unsigned char *jpeg;
  char *b64;
  size_t b64len;
  size_t cap;
  char *tail;
  int n;

  if (lg->o.size > overhead)
    img = (lg->o.size - overhead) / 78 * 57;
  jpeg = lg_fake_jpeg(img);
  b64 = lg_base64_lines(jpeg, img, &b64len);
  free(jpeg);
  cap = sizeof(fmt) + b64len + 1;
  tail = lg_alloc(cap);
  n = snprintf(tail, cap, fmt, b64);
  if (n < 0 || (size_t)n >= cap)
    lg_die("message does not fit");
  free(b64);
  lg->tail = tail;
  lg->tail_len = (size_t)n;
}

/* -------------------------------------------------------------- sessions */

static void lg_session_start(struct lg_session *s);
static void lg_next_message(struct lg_session *s);
static void lg_check_done(struct lg *lg);
static void lg_maybe_go(struct lg *lg);

static void
lg_send(struct lg_session *s, enum lg_state st, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static void
lg_send(struct lg_session *s, enum lg_state st, const char *fmt, ...)
{
  struct evbuffer *out = bufferevent_get_output(s->bev);
  va_list ap;

  va_start(ap, fmt);
  evbuffer_add_vprintf(out, fmt, ap);
  va_end(ap);
  evbuffer_add(out, "\r\n", 2);
  s->state = st;
}

static void
lg_b64_string(const char *in, char *out, size_t outsz)
{
  size_t n = strlen(in);
  size_t len;
  char *b = lg_base64_lines((const unsigned char *)in, n, &len);

  while (len > 0 && (b[len - 1] == '\n' || b[len - 1] == '\r'))
    len--;
  if (len >= outsz)
    len = outsz - 1;
  memcpy(out, b, len);
  out[len] = '\0';
  free(b);
}

static void
lg_session_close(struct lg_session *s)
{
  if (s->bev) {
    bufferevent_free(s->bev);
    s->bev = NULL;
  }
}

static void
lg_session_done(struct lg_session *s)
{
  lg_session_close(s);
  if (s->state != LG_DONE) {
    s->state = LG_DONE;
    s->lg->live--;
    if (!s->ready)
      s->lg->done++;
  }
  lg_maybe_go(s->lg);
  lg_check_done(s->lg);
}

/* A failure: the message in flight (if any) is lost, the connection is
 * dropped, and a new one is made after a pause while work remains. */
static void
lg_session_fail(struct lg_session *s, const char *why, const char *reply)
{
  struct lg *lg = s->lg;
  struct timeval tv = {0, 100000};

  lg->errors++;
  if (!lg->o.quiet || lg->errors <= 5)
    fprintf(stderr, "loadgen: session %d: %s%s%s\n", s->index, why,
            reply ? ": " : "", reply ? reply : "");
  s->seq = -1;
  lg_session_close(s);
  if (strncmp(why, "AUTH", 4) == 0)
    lg->stopping = 1;   /* a wrong password stays wrong: no retries */
  if (lg->stopping || lg->errors >= lg->o.max_errors ||
      (lg->o.messages > 0 && lg->next_seq >= lg->o.messages)) {
    lg_session_done(s);
    return;
  }
  s->state = LG_GREETING;
  evtimer_add(s->timer, &tv);
}

static void
lg_message_send(struct lg_session *s)
{
  struct lg *lg = s->lg;
  struct evbuffer *out = bufferevent_get_output(s->bev);

  evbuffer_add_printf(out,
                      "From: \"Camera %s\" <%s@cams.example.com>\r\n"
                      "To: alerts@example.net\r\n"
                      "Date: Fri, 14 Mar 2025 09:26:53 +0000\r\n"
                      "Message-ID: <%u.%ld@loadgen.example.com>\r\n"
                      "Subject: Motion Detected on %s LG%u-%ld\r\n",
                      s->user, s->user, lg->run, s->seq, s->user, lg->run,
                      s->seq);
  evbuffer_add_reference(out, lg->tail, lg->tail_len, NULL, NULL);
  s->state = LG_BODY;
}

static void
lg_acked(struct lg_session *s, const char *line)
{
  struct lg *lg = s->lg;
  double t = lg_now();

  if (line[0] == '2') {
    lg->t_ack[s->seq] = t;
    lg->ok++;
    if (t > lg->t_last_ack)
      lg->t_last_ack = t;
  } else {
    lg->errors++;
    if (!lg->o.quiet || lg->errors <= 5)
      fprintf(stderr, "loadgen: session %d: message %ld refused: %s\n",
              s->index, s->seq, line);
  }
  s->seq = -1;
  if (lg->errors >= lg->o.max_errors)
    lg->stopping = 1;
  lg_send(s, LG_RSET, "RSET");
}

/* Opens the start barrier once every live session has logged in: no
 * message goes before, so logins (a yescrypt check is tens of ms) are not
 * measured as message latency, and --rate paces from here. */
static void
lg_maybe_go(struct lg *lg)
{
  if (lg->started || lg->authed < lg->o.sessions - lg->done)
    return;
  lg->started = 1;
  lg->t_go = lg_now();
  evtimer_add(lg->stop_timer, &lg->stop_after);
  if (lg->o.hold > 0)
    fprintf(stderr, "loadgen: all %d sessions open\n", lg->authed);
  for (int i = 0; i < lg->o.sessions; i++) {
    struct lg_session *o = &lg->ss[i];

    if (o->state == LG_IDLE && o->bev)
      lg_next_message(o);
  }
}

/* A session has logged in (or needs no login): it sends once all have. */
static void
lg_authed(struct lg_session *s)
{
  struct lg *lg = s->lg;

  if (!s->ready) {
    s->ready = 1;
    lg->authed++;
  }
  if (!lg->started) {
    s->state = LG_IDLE;
    lg_maybe_go(lg);
    return;
  }
  lg_next_message(s);
}

/* Handles one complete reply (its last line) in the current state.
 * Returns NULL, or what failed when the reply is not the one expected. */
static const char *
lg_reply(struct lg_session *s, const char *line)
{
  struct lg *lg = s->lg;
  char b64[512];

  switch (s->state) {
  case LG_GREETING:
    if (line[0] != '2')
      return "greeting";
    lg_send(s, LG_EHLO, "EHLO loadgen.example.com");
    break;
  case LG_EHLO:
    if (line[0] != '2')
      return "EHLO";
    if (lg->o.no_auth) {
      lg_authed(s);
      break;
    }
    lg_send(s, LG_AUTH, "AUTH LOGIN");
    break;
  case LG_AUTH:
    if (strncmp(line, "334", 3) != 0)
      return "AUTH LOGIN";
    lg_b64_string(s->user, b64, sizeof(b64));
    lg_send(s, LG_AUTH_USER, "%s", b64);
    break;
  case LG_AUTH_USER:
    if (strncmp(line, "334", 3) != 0)
      return "AUTH user";
    lg_b64_string(lg->o.password, b64, sizeof(b64));
    lg_send(s, LG_AUTH_PASS, "%s", b64);
    break;
  case LG_AUTH_PASS:
    if (strncmp(line, "235", 3) != 0)
      return "AUTH password";
    lg_authed(s);
    break;
  case LG_MAIL:
    if (line[0] != '2')
      return "MAIL";
    lg_send(s, LG_RCPT, "RCPT TO:<alerts@example.net>");
    break;
  case LG_RCPT:
    if (line[0] != '2')
      return "RCPT";
    lg_send(s, LG_DATA, "DATA");
    break;
  case LG_DATA:
    if (strncmp(line, "354", 3) != 0)
      return "DATA";
    lg_message_send(s);
    break;
  case LG_BODY:
    if (lg->t_dot[s->seq] == 0)
      return "reply before the final dot";
    lg_acked(s, line);
    break;
  case LG_RSET:
    if (line[0] != '2')
      return "RSET";
    lg_next_message(s);
    break;
  case LG_QUIT:
    lg_session_done(s);
    break;
  case LG_IDLE:
  case LG_DONE:
    return "unexpected reply";
  }
  return NULL;
}

static void
lg_read_cb(struct bufferevent *bev, void *arg)
{
  struct lg_session *s = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  const char *why;
  size_t n;
  char *line;

  while (s->bev &&
         (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
    int last = n < 4 || line[3] != '-';

    if (n < 3 || line[0] < '1' || line[0] > '5') {
      lg_session_fail(s, "malformed reply", line);
      free(line);
      return;
    }
    if (last && (why = lg_reply(s, line)) != NULL)
      lg_session_fail(s, why, line);
    free(line);
  }
}

/* Runs when the output has drained into the kernel: for a message, that is
 * right after the write that carried its final ".". */
static void
lg_write_cb(struct bufferevent *bev, void *arg)
{
  struct lg_session *s = arg;
  struct lg *lg = s->lg;

  (void)bev;
  if (s->state == LG_BODY && s->seq >= 0 && lg->t_dot[s->seq] == 0) {
    double t = lg_now();

    lg->t_dot[s->seq] = t;
    if (lg->t_first_dot == 0)
      lg->t_first_dot = t;
  }
}

static void
lg_event_cb(struct bufferevent *bev, short what, void *arg)
{
  struct lg_session *s = arg;

  (void)bev;
  if (what & BEV_EVENT_CONNECTED) {
    int one = 1;

    setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP, TCP_NODELAY, &one,
               sizeof(one));
    return;
  }
  if (s->state == LG_QUIT && (what & BEV_EVENT_EOF)) {
    lg_session_done(s);
    return;
  }
  lg_session_fail(s, what & BEV_EVENT_TIMEOUT ? "timeout" :
                  what & BEV_EVENT_EOF ? "connection closed" :
                  "connection error", strerror(errno));
}

/* Picks the next message, or QUIT (after --hold) when there is none. */
static void
lg_next_message(struct lg_session *s)
{
  struct lg *lg = s->lg;
  double now = lg_now();
  double due;
  struct timeval tv;

  if (lg->stopping || lg->o.idle ||
      (lg->o.messages > 0 && lg->next_seq >= lg->o.messages) ||
      lg->next_seq >= lg->cap) {
    if (lg->o.hold > 0 && now < lg->t_go + lg->o.hold) {
      due = lg->t_go + lg->o.hold - now;
      s->state = LG_IDLE;
      tv.tv_sec = (time_t)due;
      tv.tv_usec = (suseconds_t)((due - (double)tv.tv_sec) * 1e6);
      evtimer_add(s->timer, &tv);
      return;
    }
    lg_send(s, LG_QUIT, "QUIT");
    return;
  }
  if (lg->o.rate > 0) {
    due = lg->t_go + (double)lg->next_seq / lg->o.rate;
    if (due > now) {
      s->state = LG_IDLE;
      tv.tv_sec = (time_t)(due - now);
      tv.tv_usec = (suseconds_t)((due - now - (double)tv.tv_sec) * 1e6);
      evtimer_add(s->timer, &tv);
      return;
    }
  }
  s->seq = lg->next_seq++;
  lg_send(s, LG_MAIL, "MAIL FROM:<%s@cams.example.com>", s->user);
}

static void
lg_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  struct lg_session *s = arg;

  (void)fd;
  (void)what;
  if (s->bev == NULL) {
    lg_session_start(s);
    return;
  }
  if (s->state == LG_IDLE)
    lg_next_message(s);
}

static void
lg_session_start(struct lg_session *s)
{
  struct lg *lg = s->lg;
  struct timeval tmo = {LG_REPLY_TIMEOUT, 0};

  s->bev = bufferevent_socket_new(lg->base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (s->bev == NULL)
    lg_die("bufferevent_socket_new failed");
  bufferevent_setcb(s->bev, lg_read_cb, lg_write_cb, lg_event_cb, s);
  bufferevent_set_timeouts(s->bev, &tmo, &tmo);
  bufferevent_enable(s->bev, EV_READ | EV_WRITE);
  s->state = LG_GREETING;
  s->seq = -1;
  lg->connects++;
  if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&lg->o.addr,
                                 sizeof(lg->o.addr)) < 0)
    lg_session_fail(s, "connect", strerror(errno));
}

static void
lg_check_done(struct lg *lg)
{
  if (lg->live == 0)
    event_base_loopexit(lg->base, NULL);
}

static void
lg_stop_cb(evutil_socket_t fd, short what, void *arg)
{
  struct lg *lg = arg;

  (void)fd;
  (void)what;
  lg->stopping = 1;
  for (int i = 0; i < lg->o.sessions; i++) {
    struct lg_session *s = &lg->ss[i];

    if (s->state == LG_IDLE) {
      evtimer_del(s->timer);
      lg_next_message(s);
    }
  }
}

static void
lg_hard_cb(evutil_socket_t fd, short what, void *arg)
{
  struct lg *lg = arg;

  (void)fd;
  (void)what;
  fprintf(stderr, "loadgen: %d sessions still busy at the hard limit\n",
          lg->live);
  lg->errors += lg->live;
  event_base_loopbreak(lg->base);
}

/* ------------------------------------------------------------------ MQTT */

static void
lg_mqtt_connect_cb(struct mosquitto *m, void *arg, int rc)
{
  struct lg *lg = arg;

  if (rc == 0)
    mosquitto_subscribe(m, NULL, lg->o.topic, 0);
}

static void
lg_mqtt_subscribe_cb(struct mosquitto *m, void *arg, int mid, int n,
                     const int *granted)
{
  struct lg *lg = arg;

  (void)m;
  (void)mid;
  if (n > 0 && granted[0] <= 2)
    lg->subscribed = 1;
}

/* Finds "LG<run>-<seq>" in the payload and records the arrival. */
static void
lg_mqtt_message_cb(struct mosquitto *m, void *arg,
                   const struct mosquitto_message *msg)
{
  struct lg *lg = arg;
  double t = lg_now();
  char want[32];
  const char *p = msg->payload;
  const char *end = p + msg->payloadlen;
  size_t wl;
  long seq = 0;
  int digits = 0;

  (void)m;
  snprintf(want, sizeof(want), "LG%u-", lg->run);
  wl = strlen(want);
  for (; p + wl < end; p++) {
    if (*p == 'L' && memcmp(p, want, wl) == 0)
      break;
  }
  if (p + wl >= end)
    return;
  for (p += wl; p < end && *p >= '0' && *p <= '9' && digits < 12; p++) {
    seq = seq * 10 + (*p - '0');
    digits++;
  }
  if (digits == 0 || seq >= lg->cap)
    return;
  pthread_mutex_lock(&lg->mu);
  if (lg->t_arr[seq] == 0) {
    lg->t_arr[seq] = t;
    lg->arrived++;
  } else {
    lg->dup_arrivals++;
  }
  pthread_mutex_unlock(&lg->mu);
}

static void
lg_mqtt_start(struct lg *lg)
{
  char host[INET_ADDRSTRLEN];
  char id[64];
  double deadline;

  mosquitto_lib_init();
  snprintf(id, sizeof(id), "loadgen-%u", lg->run);
  lg->mosq = mosquitto_new(id, true, lg);
  if (lg->mosq == NULL)
    lg_die("mosquitto_new failed");
  mosquitto_connect_callback_set(lg->mosq, lg_mqtt_connect_cb);
  mosquitto_subscribe_callback_set(lg->mosq, lg_mqtt_subscribe_cb);
  mosquitto_message_callback_set(lg->mosq, lg_mqtt_message_cb);
  inet_ntop(AF_INET, &lg->o.addr.sin_addr, host, sizeof(host));
  if (mosquitto_connect(lg->mosq, host, lg->o.mqtt_port, 30) !=
      MOSQ_ERR_SUCCESS)
    lg_die("cannot connect to MQTT on %s:%d", host, lg->o.mqtt_port);
  if (mosquitto_loop_start(lg->mosq) != MOSQ_ERR_SUCCESS)
    lg_die("mosquitto_loop_start failed");
  deadline = lg_now() + 10;
  while (!lg->subscribed && lg_now() < deadline)
    usleep(10000);
  if (!lg->subscribed)
    lg_die("no SUBACK for %s within 10 s", lg->o.topic);
}

/* Waits (bounded by --wait) for every acknowledged message to arrive. */
static void
lg_mqtt_finish(struct lg *lg)
{
  double deadline = lg_now() + lg->o.wait;
  long arrived;

  for (;;) {
    pthread_mutex_lock(&lg->mu);
    arrived = lg->arrived;
    pthread_mutex_unlock(&lg->mu);
    if (arrived >= lg->ok || lg_now() >= deadline)
      break;
    usleep(20000);
  }
  mosquitto_disconnect(lg->mosq);
  mosquitto_loop_stop(lg->mosq, false);
  mosquitto_destroy(lg->mosq);
  mosquitto_lib_cleanup();
}

/* --------------------------------------------------------------- results */

static int
lg_cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a;
  double y = *(const double *)b;

  return x < y ? -1 : x > y;
}

static double
lg_pct(const double *v, long n, double p)
{
  long i;

  if (n == 0)
    return 0;
  i = (long)(p / 100.0 * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* Sorts the n latencies in v (ms) and prints them as NAME_pXX_ms=... */
static void
lg_print_pcts(FILE *f, const char *name, double *v, long n)
{
  qsort(v, (size_t)n, sizeof(*v), lg_cmp_double);
  fprintf(f, " %s_p50_ms=%.3f %s_p90_ms=%.3f %s_p99_ms=%.3f"
          " %s_max_ms=%.3f", name, lg_pct(v, n, 50), name,
          lg_pct(v, n, 90), name, lg_pct(v, n, 99), name,
          n ? v[n - 1] : 0.0);
}

static double
lg_cpu_seconds(void)
{
  struct rusage ru;

  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
lg_report(struct lg *lg)
{
  long n = lg->next_seq;
  double *acks = lg_alloc(sizeof(double) * (size_t)(n + 1));
  double *e2e = lg_alloc(sizeof(double) * (size_t)(n + 1));
  long na = 0;
  long ne = 0;
  double span = lg->t_last_ack - lg->t_first_dot;
  double rate = span > 0 && lg->ok > 1 ? (double)lg->ok / span : 0;
  double cpu = lg_cpu_seconds();

  for (long i = 0; i < n; i++) {
    if (lg->t_ack[i] > 0 && lg->t_dot[i] > 0)
      acks[na++] = (lg->t_ack[i] - lg->t_dot[i]) * 1000;
    if (lg->mosq && lg->t_arr[i] > 0 && lg->t_dot[i] > 0)
      e2e[ne++] = (lg->t_arr[i] - lg->t_dot[i]) * 1000;
  }
  printf("result sessions=%d size=%zu sent=%ld ok=%ld errors=%ld"
         " connects=%ld msgs_per_s=%.1f loadgen_cpu_s=%.3f",
         lg->o.sessions, lg->o.size, n, lg->ok, lg->errors, lg->connects,
         rate, cpu);
  lg_print_pcts(stdout, "ack", acks, na);
  if (lg->mosq) {
    printf(" arrived=%ld dup=%ld", lg->arrived, lg->dup_arrivals);
    lg_print_pcts(stdout, "e2e", e2e, ne);
  }
  printf("\n");
  if (!lg->o.quiet) {
    printf("%ld messages of %zu bytes over %d sessions: %ld ok, %ld errors,"
           " %.1f msg/s, loadgen used %.2f CPU s\n", n, lg->o.size,
           lg->o.sessions, lg->ok, lg->errors, rate, cpu);
    printf("\".\" -> 250 ms: p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
           lg_pct(acks, na, 50), lg_pct(acks, na, 90), lg_pct(acks, na, 99),
           na ? acks[na - 1] : 0.0);
    if (lg->mosq)
      printf("\".\" -> MQTT ms: p50 %.2f p90 %.2f p99 %.2f max %.2f "
             "(%ld arrived)\n", lg_pct(e2e, ne, 50), lg_pct(e2e, ne, 90),
             lg_pct(e2e, ne, 99), ne ? e2e[ne - 1] : 0.0, lg->arrived);
  }
  fflush(stdout);
  free(acks);
  free(e2e);
}

/* ---------------------------------------------------------------- options */

static double
lg_parse_num(const char *s, const char *what, double lo, double hi)
{
  char *end;
  double v;

  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || v < lo || v > hi)
    lg_die("bad %s: %s (want %g..%g)", what, s, lo, hi);
  return v;
}

static size_t
lg_parse_size(const char *s)
{
  char *end;
  unsigned long long v;
  unsigned long long mul = 1;

  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || end == s)
    lg_die("bad size: %s", s);
  if (*end == 'K' || *end == 'k')
    mul = 1024;
  else if (*end == 'M' || *end == 'm')
    mul = 1024 * 1024;
  else if (*end != '\0')
    lg_die("bad size: %s", s);
  if (*end != '\0' && end[1] != '\0')
    lg_die("bad size: %s", s);
  if (v > (512ULL << 20) / mul)
    lg_die("size too large: %s (at most 512M)", s);
  return (size_t)(v * mul);
}

static void
lg_usage(FILE *f)
{
  fputs(
    "usage: loadgen -p PORT [options]\n"
    "  -H, --host ADDR      IPv4 loopback address (127.0.0.1)\n"
    "  -p, --port PORT      SMTP port\n"
    "  -c, --sessions K     concurrent sessions (10)\n"
    "  -n, --messages N     messages in all (1000; 0: until -d)\n"
    "  -d, --duration S     stop starting messages after S seconds (60)\n"
    "  -s, --size SIZE      message size, e.g. 150K, 1M (150K)\n"
    "  -u, --user USER      AUTH LOGIN user (bench)\n"
    "  -w, --password PW    AUTH LOGIN password (bench-pass)\n"
    "      --users M        M logins USER00..: session i uses i mod M\n"
    "      --no-auth        skip AUTH (e.g. against smtp-sink)\n"
    "  -r, --rate R         at most R messages per second in all\n"
    "      --hold S         keep sessions open (idle) until S seconds\n"
    "      --idle           send no mail: log in, hold, QUIT\n"
    "      --ramp S         spread the session starts over S seconds\n"
    "  -m, --mqtt-port P    end to end: subscribe on P, match tokens\n"
    "  -t, --topic FILTER   MQTT filter (camgate/+/event)\n"
    "      --wait S         wait at most S s for arrivals (10)\n"
    "      --max-errors E   give up after E errors (100)\n"
    "  -q, --quiet          only the result line\n", f);
}

static void
lg_parse_host(struct lg_opts *o, const char *host)
{
  if (inet_pton(AF_INET, host, &o->addr.sin_addr) != 1)
    lg_die("bad IPv4 address: %s", host);
  if ((ntohl(o->addr.sin_addr.s_addr) >> 24) != 127)
    lg_die("%s is not a loopback address; loadgen only loads loopback",
           host);
}

static void
lg_parse_opts(struct lg_opts *o, int argc, char **argv)
{
  static const struct option longs[] = {
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"sessions", required_argument, NULL, 'c'},
    {"messages", required_argument, NULL, 'n'},
    {"duration", required_argument, NULL, 'd'},
    {"size", required_argument, NULL, 's'},
    {"user", required_argument, NULL, 'u'},
    {"password", required_argument, NULL, 'w'},
    {"users", required_argument, NULL, 'U'},
    {"no-auth", no_argument, NULL, 'A'},
    {"rate", required_argument, NULL, 'r'},
    {"hold", required_argument, NULL, 'O'},
    {"idle", no_argument, NULL, 'I'},
    {"ramp", required_argument, NULL, 'R'},
    {"mqtt-port", required_argument, NULL, 'm'},
    {"topic", required_argument, NULL, 't'},
    {"wait", required_argument, NULL, 'W'},
    {"max-errors", required_argument, NULL, 'E'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}
  };
  int c;

  memset(o, 0, sizeof(*o));
  o->addr.sin_family = AF_INET;
  o->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  o->sessions = 10;
  o->messages = 1000;
  o->duration = 60;
  o->size = 150 * 1024;
  o->user = "bench";
  o->password = "bench-pass";
  o->topic = "camgate/+/event";
  o->wait = 10;
  o->max_errors = 100;
  while ((c = getopt_long(argc, argv, "H:p:c:n:d:s:u:w:r:m:t:qh", longs,
                          NULL)) != -1) {
    switch (c) {
    case 'H': lg_parse_host(o, optarg); break;
    case 'p':
      o->addr.sin_port = htons((uint16_t)lg_parse_num(optarg, "port", 1,
                                                      65535));
      break;
    case 'c':
      o->sessions = (int)lg_parse_num(optarg, "sessions", 1,
                                      LG_MAX_SESSIONS);
      break;
    case 'n':
      o->messages = (long)lg_parse_num(optarg, "messages", 0,
                                       LG_MAX_MESSAGES);
      break;
    case 'd':
      o->duration = lg_parse_num(optarg, "duration", 0.1, LG_MAX_SECONDS);
      break;
    case 's': o->size = lg_parse_size(optarg); break;
    case 'u': o->user = optarg; break;
    case 'w': o->password = optarg; break;
    case 'U': o->users = (int)lg_parse_num(optarg, "users", 1, 10000); break;
    case 'A': o->no_auth = 1; break;
    case 'I': o->idle = 1; break;
    case 'R': o->ramp = lg_parse_num(optarg, "ramp", 0, 600); break;
    case 'r': o->rate = lg_parse_num(optarg, "rate", 0.01, 1e6); break;
    case 'O': o->hold = lg_parse_num(optarg, "hold", 0, LG_MAX_SECONDS); break;
    case 'm':
      o->mqtt_port = (int)lg_parse_num(optarg, "MQTT port", 1, 65535);
      break;
    case 't': o->topic = optarg; break;
    case 'W': o->wait = lg_parse_num(optarg, "wait", 0, 600); break;
    case 'E':
      o->max_errors = (int)lg_parse_num(optarg, "max errors", 1, INT_MAX);
      break;
    case 'q': o->quiet = 1; break;
    case 'h': lg_usage(stdout); exit(0);
    default: lg_usage(stderr); exit(2);
    }
  }
  if (optind != argc || o->addr.sin_port == 0) {
    lg_usage(stderr);
    exit(2);
  }
}

/* ------------------------------------------------------------------- main */

static void
lg_raise_nofile(int sessions)
{
  struct rlimit rl;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur < (rlim_t)sessions + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void
lg_setup(struct lg *lg)
{
  long cap = lg->o.messages;

  if (cap == 0) {
    double r = lg->o.rate > 0 ? lg->o.rate : 20000;

    cap = (long)(r * lg->o.duration) + 1;
    if (cap > LG_MAX_MESSAGES)
      cap = LG_MAX_MESSAGES;
  }
  lg->cap = cap;
  lg->t_dot = lg_alloc(sizeof(double) * (size_t)cap);
  lg->t_ack = lg_alloc(sizeof(double) * (size_t)cap);
  lg->t_arr = lg_alloc(sizeof(double) * (size_t)cap);
  lg->run = (unsigned)getpid() * 7919u + (unsigned)time(NULL) % 7919u;
  pthread_mutex_init(&lg->mu, NULL);
  lg_build_tail(lg);
  lg->base = event_base_new();
  if (lg->base == NULL)
    lg_die("event_base_new failed");
  lg->ss = lg_alloc(sizeof(*lg->ss) * (size_t)lg->o.sessions);
  for (int i = 0; i < lg->o.sessions; i++) {
    struct lg_session *s = &lg->ss[i];

    s->lg = lg;
    s->index = i;
    s->seq = -1;
    s->timer = evtimer_new(lg->base, lg_timer_cb, s);
    if (lg->o.users > 0)
      snprintf(s->user, sizeof(s->user), "%s%02d", lg->o.user,
               i % lg->o.users);
    else
      snprintf(s->user, sizeof(s->user), "%s", lg->o.user);
  }
}

static void
lg_run(struct lg *lg)
{
  struct timeval *stop = &lg->stop_after;
  struct timeval hard;

  /* The stop timer starts at the barrier (lg_maybe_go); the hard limit
   * also bounds the logins before it. */
  stop->tv_sec = (time_t)lg->o.duration;
  stop->tv_usec = (suseconds_t)((lg->o.duration - (double)stop->tv_sec) *
                                1e6);
  hard.tv_sec = (time_t)(lg->o.duration + lg->o.hold) + LG_REPLY_TIMEOUT +
                120;
  hard.tv_usec = 0;
  lg->stop_timer = evtimer_new(lg->base, lg_stop_cb, lg);
  lg->hard_timer = evtimer_new(lg->base, lg_hard_cb, lg);
  evtimer_add(lg->hard_timer, &hard);
  lg->t_start = lg_now();
  lg->live = lg->o.sessions;
  for (int i = 0; i < lg->o.sessions; i++) {
    double at = lg->o.ramp * i / lg->o.sessions;
    struct timeval tv;

    if (at <= 0) {
      lg_session_start(&lg->ss[i]);
      continue;
    }
    tv.tv_sec = (time_t)at;
    tv.tv_usec = (suseconds_t)((at - (double)tv.tv_sec) * 1e6);
    evtimer_add(lg->ss[i].timer, &tv);
  }
  event_base_dispatch(lg->base);
}

static void
lg_free(struct lg *lg)
{
  for (int i = 0; i < lg->o.sessions; i++) {
    lg_session_close(&lg->ss[i]);
    event_free(lg->ss[i].timer);
  }
  event_free(lg->stop_timer);
  event_free(lg->hard_timer);
  event_base_free(lg->base);
  free(lg->ss);
  free((char *)lg->tail);
  free(lg->t_dot);
  free(lg->t_ack);
  free(lg->t_arr);
  pthread_mutex_destroy(&lg->mu);
}

int
main(int argc, char **argv)
{
  static struct lg lg;
  int failed;

  lg_parse_opts(&lg.o, argc, argv);
  lg_raise_nofile(lg.o.sessions);
  lg_setup(&lg);
  if (lg.o.mqtt_port)
    lg_mqtt_start(&lg);
  if (!lg.o.quiet && lg.o.hold > 0)
    fprintf(stderr, "loadgen: opening %d sessions, holding %.0f s\n",
            lg.o.sessions, lg.o.hold);
  lg_run(&lg);
  if (lg.mosq)
    lg_mqtt_finish(&lg);
  lg_report(&lg);
  failed = lg.errors > 0 || lg.ok < lg.next_seq ||
           (lg.mosq && lg.arrived < lg.ok);
  lg_free(&lg);
  return failed ? 1 : 0;
}
