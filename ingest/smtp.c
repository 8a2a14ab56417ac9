/* smtp.c - see smtp.h.
 *
 * One session per connection, a state machine whose only writer is
 * smtp_set_state(). Input is read line by line from a bufferevent; while a
 * message is being stored, or a failed login's reply is held back, input
 * waits in the buffer, so pipelined commands (a QUIT written with the
 * final dot) are answered in order afterwards. */
#include "ingest/smtp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gateway/auth.h"
#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/router.h"
#include "gateway/spool.h"
#include "gateway/tls.h"
#include "ingest/identity.h"
#include "ingest/mail.h"
#include "ingest/smtp_proto.h"

#define SMTP_LINE_MAX (64 * 1024)        /* a command line */
#define SMTP_DATA_LINE_MAX (1024 * 1024) /* a line inside DATA */
#define SMTP_BODY_MEM_MAX (1024 * 1024)  /* then the body goes to a file */
#define SMTP_MAX_SINGLE_READ (256 * 1024)
#define SMTP_MAX_ERRORS 20
/* Replies a client has not read yet, at most: past this, camgate stops
 * reading its commands until the replies are taken. */
#define SMTP_UNSENT_MAX (64 * 1024)
/* A camera's alert has a few parts and a few dozen header lines. */
#define SMTP_MAX_BOUNDARIES 1000
#define SMTP_MAX_HEADER_LINES 10000
#define SMTP_AUTH_DELAY_MS 1000
#define SMTP_ADDR_MAX 512
#define SMTP_REFUSED_SLOTS 64            /* addresses whose refusals log */
#define SMTP_REFUSED_LOG_MS (60 * 1000)  /* one line per address a minute */

enum smtp_state {
  SMTP_ST_COMMAND,    /* waiting for a command */
  SMTP_ST_AUTH_USER,  /* AUTH LOGIN: waiting for the user name */
  SMTP_ST_AUTH_PASS,  /* AUTH LOGIN: waiting for the password */
  SMTP_ST_AUTH_PLAIN, /* AUTH PLAIN: waiting for the response */
  SMTP_ST_DATA,       /* receiving a message */
  SMTP_ST_STORING,    /* message complete, the spool is committing it */
  SMTP_ST_PAUSED,     /* a password is being checked, or a failed
                       * login's reply is held back */
  SMTP_ST_CLOSING     /* last reply queued; close once it is sent */
};

static const char *const smtp_state_names[] = {
  "command", "auth-user", "auth-pass", "auth-plain",
  "data", "storing", "paused", "closing",
};

struct smtp_body {
  char *buf;
  size_t len;
  size_t cap;
  FILE *spill;
  char path[3200];
  size_t size;        /* bytes of the message so far */
  int too_big;
  /* The shape of the message, counted as it arrives: every line that
   * starts with "--" (a MIME boundary, an upper bound on the parts) and
   * every line of a header block (the message's, or a part's after a
   * boundary). GMime builds an object for each part and header, so a
   * mail of 200,000 tiny parts within max_size took 600 MB to parse. */
  size_t boundaries;
  size_t header_lines;
  int in_body;        /* past the current header block's blank line */
  int too_complex;
};

struct smtp_session {
  uint64_t id;
  struct smtp_server *srv;
  struct config *cfg;
  struct bufferevent *bev;
  char peer[64];
  struct sockaddr_storage peer_sa;
  enum smtp_state state;
  int tls;
  int greeted;
  int seen_input;
  int errors;
  int warned_noauth;   /* each warning once per session */
  int warned_locked;
  int warned_size;
  int out_full;        /* reading stopped until the replies are read */
  int dead;           /* connection gone while the spool commits */
  const struct camera_conf *camera;
  struct auth_job *auth_job; /* a password check on a worker thread */
  int authed;
  char auth_user[256];
  int has_mail;
  char mail_from[SMTP_ADDR_MAX];
  char **rcpts;
  size_t nrcpts;
  struct smtp_body body;
  struct event *total_timer;
  struct event *delay_timer;
  struct event *close_timer;
  struct event *idle_timer;  /* reset by complete lines, not by bytes */
  struct smtp_session *prev;
  struct smtp_session *next;
};

/* An address refused for holding too many sessions, and when that was
 * last logged: a flood of connections makes one line a minute, not one
 * per connection. */
struct smtp_refused {
  char addr[64];
  int64_t logged;            /* mono ms; 0: slot free */
  unsigned long since;       /* refusals since that line */
};

struct smtp_server {
  struct event_base *base;
  struct config *cfg;
  struct spool *spool;
  SSL_CTX *tls_ctx;
  struct evconnlistener *lis;
  struct evconnlistener *lis_tls;
  smtp_stored_fn stored;
  void *stored_arg;
  struct smtp_session *sessions;
  int nsessions;
  int shutting_down;
  uint64_t next_id;
  struct smtp_refused refused[SMTP_REFUSED_SLOTS];
  char tmpdir[3072];
};

static void smtp_process(struct smtp_session *s);
static void smtp_idle_reset(struct smtp_session *s);
static void smtp_session_free(struct smtp_session *s);

static void
smtp_set_state(struct smtp_session *s, enum smtp_state st)
{
  if (s->state != st)
    log_debug("smtp", "session=%016" PRIx64 " state=%s->%s", s->id,
              smtp_state_names[s->state], smtp_state_names[st]);
  s->state = st;
}

static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
  struct evbuffer *out = bufferevent_get_output(s->bev);
  va_list ap;

  /* Every refusal counts towards SMTP_MAX_ERRORS, so a client that keeps
   * sending what is refused is cut off instead of filling the log; but
   * not 452 for recipients past the limit, which RFC 5321 (3.5.3) has a
   * client answer by sending them in another transaction. */
  if ((fmt[0] == '4' || fmt[0] == '5') && strncmp(fmt, "421", 3) != 0 &&
      strncmp(fmt, "452", 3) != 0)
    s->errors++;
  va_start(ap, fmt);
  evbuffer_add_vprintf(out, fmt, ap);
  va_end(ap);
  evbuffer_add(out, "\r\n", 2);
}

static size_t
smtp_unsent(struct smtp_session *s)
{
  struct bufferevent *under = bufferevent_get_underlying(s->bev);
  size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));

  if (under)
    n += evbuffer_get_length(bufferevent_get_output(under));
  return n;
}

/* Ends a closing session once its last reply has left. After STARTTLS the
 * TLS layer hands its bytes to the socket layer under it, whose progress
 * no callback of ours sees, so that case is polled briefly. */
static void
smtp_close_check(struct smtp_session *s)
{
  struct timeval tv = {0, 10000};

  if (smtp_unsent(s) == 0)
    smtp_session_free(s);
  else if (bufferevent_get_underlying(s->bev))
    evtimer_add(s->close_timer, &tv);
}

static void
smtp_close_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  smtp_close_check(arg);
}

/* Queues a last reply; the session ends when it has been written. */
static void
smtp_close_with(struct smtp_session *s, const char *reply)
{
  if (reply)
    smtp_reply(s, "%s", reply);
  bufferevent_disable(s->bev, EV_READ);
  smtp_set_state(s, SMTP_ST_CLOSING);
  smtp_close_check(s);
}

static void
smtp_body_reset(struct smtp_body *b)
{
  if (b->spill) {
    fclose(b->spill);
    unlink(b->path);
  }
  free(b->buf);
  memset(b, 0, sizeof(*b));
}

static void
smtp_envelope_reset(struct smtp_session *s)
{
  for (size_t i = 0; i < s->nrcpts; i++)
    free(s->rcpts[i]);
  free(s->rcpts);
  s->rcpts = NULL;
  s->nrcpts = 0;
  s->has_mail = 0;
  s->mail_from[0] = '\0';
  smtp_body_reset(&s->body);
}

/* Appends one message line (dot already removed) and its CRLF. */
static void
smtp_body_add(struct smtp_session *s, const char *line, size_t n)
{
  struct smtp_body *b = &s->body;

  b->size += n + 2;
  if (n >= 2 && line[0] == '-' && line[1] == '-') {
    b->boundaries++;
    b->in_body = 0;
  } else if (!b->in_body) {
    if (n == 0)
      b->in_body = 1;
    else
      b->header_lines++;
  }
  if (b->boundaries > SMTP_MAX_BOUNDARIES ||
      b->header_lines > SMTP_MAX_HEADER_LINES)
    b->too_complex = 1;
  if (b->too_big || b->too_complex || b->size > s->cfg->smtp.max_size) {
    b->too_big |= b->size > s->cfg->smtp.max_size;
    return;
  }
  if (b->spill == NULL && b->len + n + 2 > SMTP_BODY_MEM_MAX) {
    int fd;

    snprintf(b->path, sizeof(b->path), "%s/msg-XXXXXX", s->srv->tmpdir);
    fd = mkstemp(b->path);
    b->spill = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (b->spill == NULL ||
        fwrite(b->buf, 1, b->len, b->spill) != b->len) {
      log_error("smtp", "session=%016" PRIx64 " tmpdir=%s error=\"%s\"",
                s->id, s->srv->tmpdir, strerror(errno));
      if (fd >= 0 && b->spill == NULL)
        close(fd);
      b->too_big = 1;
      return;
    }
    b->len = 0;
  }
  if (b->spill) {
    fwrite(line, 1, n, b->spill);
    fwrite("\r\n", 1, 2, b->spill);
    return;
  }
  if (b->len + n + 2 > b->cap) {
    b->cap = (b->len + n + 2) * 2;
    b->buf = xrealloc(b->buf, b->cap);
  }
  memcpy(b->buf + b->len, line, n);
  memcpy(b->buf + b->len + n, "\r\n", 2);
  b->len += n + 2;
}

static void
smtp_event_identity(struct smtp_session *s, struct cam_event *ev)
{
  const struct camera_conf *cam = s->camera;
  const char *one[1];
  const char *const *texts = one;
  size_t n = 1;

  switch (cam->channel_from) {
  case CHANNEL_RCPT:
    texts = (const char *const *)s->rcpts;
    n = s->nrcpts;
    break;
  case CHANNEL_SENDER:
    one[0] = s->mail_from;
    break;
  case CHANNEL_SUBJECT:
    one[0] = ev->title;
    break;
  case CHANNEL_BODY:
    one[0] = ev->text;
    break;
  case CHANNEL_NONE:
    n = 0;
    break;
  }
  free(ev->camera);
  free(ev->camera_name);
  identity_resolve(s->cfg, cam, texts, n, &ev->camera, &ev->camera_name);
}

static struct cam_event *
smtp_build_event(struct smtp_session *s)
{
  struct cam_event *ev = cam_event_new();
  struct smtp_body *b = &s->body;

  ev->recv_time = now_ms();
  if (b->spill) {
    fflush(b->spill);
    mail_parse_file(b->path, &s->cfg->smtp, ev);
  } else {
    mail_parse_mem(b->buf ? b->buf : "", b->len, &s->cfg->smtp, ev);
  }
  /* An e-mail backend in mode forward re-sends the message as it came. */
  if (config_keeps_raw(s->cfg)) {
    if (b->spill)
      cam_event_set_raw_file(ev, b->path, s->cfg->smtp.max_size);
    else
      cam_event_set_raw(ev, b->buf ? b->buf : "", b->len);
  }
  if (ev->kind == NULL)
    cam_event_set(&ev->kind, "alert");
  cam_event_set(&ev->source, "smtp");
  if (ev->device_time == 0)
    ev->device_time = ev->recv_time;
  smtp_event_identity(s, ev);
  cam_event_add_label(ev, "envelope_from", s->mail_from);
  cam_event_add_label(ev, "remote_addr", s->peer);
  return ev;
}

static void
smtp_stored(void *arg, int ok, int64_t event_id)
{
  struct smtp_session *s = arg;
  struct smtp_server *srv = s->srv;

  if (ok && srv->stored)
    srv->stored(srv->stored_arg, event_id);
  if (s->dead) {
    log_info("smtp", "session=%016" PRIx64 " event=%" PRId64
             " stored=%d msg=\"client left before the reply\"", s->id,
             event_id, ok);
    smtp_session_free(s);
    return;
  }
  if (ok)
    smtp_reply(s, "250 2.0.0 Ok: queued as %" PRId64, event_id);
  else
    smtp_reply(s, "451 4.3.0 Could not store the message, try again later");
  smtp_envelope_reset(s);
  smtp_set_state(s, SMTP_ST_COMMAND);
  if (srv->shutting_down) {
    smtp_close_with(s, "421 4.3.2 Service shutting down");
    return;
  }
  bufferevent_enable(s->bev, EV_READ);
  smtp_idle_reset(s);
  smtp_process(s);
}

static void
smtp_data_end(struct smtp_session *s)
{
  struct smtp_server *srv = s->srv;
  struct route routes[64];
  struct cam_event *ev;
  size_t nroutes;
  char title[160];

  if (s->body.too_big) {
    log_warn("smtp", "session=%016" PRIx64 " camera=%s size=%zu max=%zu "
             "msg=\"message over smtp.max_size refused; raise "
             "smtp.max_size or lower the camera's picture size\"", s->id,
             s->camera ? s->camera->id : "-", s->body.size,
             s->cfg->smtp.max_size);
    smtp_reply(s, "552 5.3.4 Message too big for this system");
    smtp_envelope_reset(s);
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  if (s->body.too_complex) {
    log_warn("smtp", "session=%016" PRIx64 " camera=%s boundaries=%zu "
             "header_lines=%zu max_boundaries=%d max_header_lines=%d "
             "msg=\"message refused: more MIME parts or header lines than "
             "any camera sends\"", s->id, s->camera ? s->camera->id : "-",
             s->body.boundaries, s->body.header_lines, SMTP_MAX_BOUNDARIES,
             SMTP_MAX_HEADER_LINES);
    smtp_reply(s, "554 5.6.0 Message structure too complex (too many MIME "
               "parts or header lines)");
    smtp_envelope_reset(s);
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  ev = smtp_build_event(s);
  nroutes = router_route(s->cfg, ev, routes, 64);
  log_info("smtp", "session=%016" PRIx64 " camera=%s kind=%s state=%s "
           "attachments=%zu size=%zu routes=%zu title=%s", s->id,
           ev->camera, ev->kind, event_state_name(ev->state), ev->natt,
           s->body.size, nroutes,
           log_escape(title, sizeof(title), ev->title ? ev->title : "",
                      ev->title ? strlen(ev->title) : 0));
  smtp_set_state(s, SMTP_ST_STORING);
  bufferevent_disable(s->bev, EV_READ);
  spool_submit(srv->spool, ev, routes, nroutes, smtp_stored, s);
}

static void
smtp_data_line(struct smtp_session *s, const char *line, size_t n)
{
  if (n == 1 && line[0] == '.') {
    smtp_data_end(s);
    return;
  }
  if (n > 0 && line[0] == '.') {
    line++;
    n--;
  }
  smtp_body_add(s, line, n);
}

static void
smtp_ehlo(struct smtp_session *s, const char *arg, int extended)
{
  if (*arg == '\0') {
    smtp_reply(s, "501 5.5.4 %s needs a domain or address",
               extended ? "EHLO" : "HELO");
    return;
  }
  smtp_envelope_reset(s);
  s->greeted = 1;
  if (!extended) {
    smtp_reply(s, "250 %s", s->cfg->smtp.hostname);
    return;
  }
  smtp_reply(s, "250-%s Hello", s->cfg->smtp.hostname);
  smtp_reply(s, "250-SIZE %zu", s->cfg->smtp.max_size);
  smtp_reply(s, "250-PIPELINING");
  smtp_reply(s, "250-8BITMIME");
  smtp_reply(s, "250-ENHANCEDSTATUSCODES");
  if (!s->authed) {
    smtp_reply(s, "250-AUTH PLAIN LOGIN");
    smtp_reply(s, "250-AUTH=PLAIN LOGIN");
  }
  if (s->srv->tls_ctx && !s->tls)
    smtp_reply(s, "250-STARTTLS");
  smtp_reply(s, "250 HELP");
}

static void
smtp_delay_cb(evutil_socket_t fd, short what, void *arg)
{
  struct smtp_session *s = arg;

  (void)fd;
  (void)what;
  smtp_reply(s, "535 5.7.8 Authentication credentials invalid");
  smtp_set_state(s, SMTP_ST_COMMAND);
  bufferevent_enable(s->bev, EV_READ);
  smtp_process(s);
}

/* Answers a login with the check's verdict cam: now on success, after a
 * delay that slows down guessing on failure. The user is s->auth_user. */
static void
smtp_auth_result(struct smtp_session *s, const struct camera_conf *cam)
{
  char euser[96];
  struct timeval tv = {SMTP_AUTH_DELAY_MS / 1000,
                       (SMTP_AUTH_DELAY_MS % 1000) * 1000};
  int known = cam || config_camera_by_user(s->cfg, s->auth_user);

  /* A name no camera has may be a password typed in the wrong field:
   * only configured user names reach the log. */
  if (known)
    log_escape(euser, sizeof(euser), s->auth_user, strlen(s->auth_user));
  else
    snprintf(euser, sizeof(euser), "(not-a-camera)");
  if (cam) {
    auth_succeeded((struct sockaddr *)&s->peer_sa);
    s->authed = 1;
    s->camera = cam;
    log_info("smtp", "session=%016" PRIx64 " auth=ok user=%s camera=%s",
             s->id, euser, cam->id);
    smtp_reply(s, "235 2.7.0 Authentication successful");
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  auth_failed(s->cfg, (struct sockaddr *)&s->peer_sa);
  log_warn("smtp", "session=%016" PRIx64 " auth=failed user=%s remote=%s "
           "msg=\"%s\"", s->id, euser, s->peer,
           known ? "wrong password for this user; check the camera's SMTP "
                   "password"
                 : "no camera has this user name (not logged: it may be "
                   "a password typed into the user field); check the "
                   "camera's SMTP user");
  smtp_set_state(s, SMTP_ST_PAUSED);
  bufferevent_disable(s->bev, EV_READ);
  evtimer_add(s->delay_timer, &tv);
}

/* The worker's verdict, on the loop thread. */
static void
smtp_auth_done(void *arg, const struct camera_conf *cam)
{
  struct smtp_session *s = arg;

  s->auth_job = NULL;
  if (s->state != SMTP_ST_PAUSED)
    return;
  smtp_auth_result(s, cam);
  if (s->state != SMTP_ST_COMMAND)
    return;
  bufferevent_enable(s->bev, EV_READ);
  smtp_process(s);
}

/* Checks a user and password. A success the cache knows is answered at
 * once; otherwise the session pauses, reading nothing, while a worker
 * thread runs the slow hash, so other sessions go on meanwhile. */
static void
smtp_auth_finish(struct smtp_session *s, const char *user, const char *pass)
{
  const struct camera_conf *cam;

  if (user != s->auth_user)
    snprintf(s->auth_user, sizeof(s->auth_user), "%s", user);
  /* user itself, not the copy, which a long name would not fit. */
  cam = auth_check_start(s->cfg, user, pass, smtp_auth_done, s,
                         &s->auth_job);
  if (s->auth_job == NULL) {
    smtp_auth_result(s, cam);
    return;
  }
  smtp_set_state(s, SMTP_ST_PAUSED);
  bufferevent_disable(s->bev, EV_READ);
}

static void
smtp_auth_plain(struct smtp_session *s, const char *b64)
{
  char buf[1024];
  const char *user;
  const char *pass;
  long n;

  if (strcmp(b64, "*") == 0) {
    smtp_reply(s, "501 5.7.0 Authentication cancelled");
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  n = smtp_proto_b64decode(b64, strlen(b64), buf, sizeof(buf));
  if (n < 0 || smtp_proto_auth_plain(buf, (size_t)n, &user, &pass) != 0) {
    explicit_bzero(buf, sizeof(buf));
    smtp_reply(s, "501 5.5.2 Cannot decode the AUTH PLAIN response");
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  smtp_auth_finish(s, user, pass);
  explicit_bzero(buf, sizeof(buf));
}

/* AUTH LOGIN user name step; the challenges must be exactly these, since
 * some cameras compare them as strings. */
static void
smtp_auth_login_user(struct smtp_session *s, const char *b64)
{
  long n;

  if (strcmp(b64, "*") == 0) {
    smtp_reply(s, "501 5.7.0 Authentication cancelled");
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  n = smtp_proto_b64decode(b64, strlen(b64), s->auth_user,
                           sizeof(s->auth_user));
  if (n <= 0 || memchr(s->auth_user, '\0', (size_t)n)) {
    smtp_reply(s, "501 5.5.2 Cannot decode the user name");
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  smtp_reply(s, "334 UGFzc3dvcmQ6");
  smtp_set_state(s, SMTP_ST_AUTH_PASS);
}

static void
smtp_auth_login_pass(struct smtp_session *s, const char *b64)
{
  char pass[512];
  long n;

  if (strcmp(b64, "*") == 0) {
    smtp_reply(s, "501 5.7.0 Authentication cancelled");
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  n = smtp_proto_b64decode(b64, strlen(b64), pass, sizeof(pass));
  if (n < 0 || memchr(pass, '\0', (size_t)n)) {
    explicit_bzero(pass, sizeof(pass));
    smtp_reply(s, "501 5.5.2 Cannot decode the password");
    smtp_set_state(s, SMTP_ST_COMMAND);
    return;
  }
  smtp_auth_finish(s, s->auth_user, pass);
  explicit_bzero(pass, sizeof(pass));
}

static void
smtp_cmd_auth(struct smtp_session *s, const char *arg)
{
  const char *init;
  int wait;

  if (!s->greeted) {
    smtp_reply(s, "503 5.5.1 Send HELO or EHLO first");
    return;
  }
  if (s->authed || s->has_mail) {
    smtp_reply(s, "503 5.5.1 %s", s->authed ? "Already authenticated"
                                            : "Not inside a transaction");
    return;
  }
  wait = auth_blocked(s->cfg, (struct sockaddr *)&s->peer_sa);
  if (wait > 0) {
    if (!s->warned_locked++)
      log_warn("smtp", "session=%016" PRIx64 " remote=%s locked=%ds "
               "msg=\"too many failed logins from this address; refused "
               "until then, or until a reload (SIGHUP) after fixing the "
               "camera's user or password\"", s->id, s->peer, wait);
    smtp_reply(s, "454 4.7.0 Too many failed logins, try again later");
    return;
  }
  init = strchr(arg, ' ');
  if (init)
    while (*init == ' ')
      init++;
  if (strncasecmp(arg, "PLAIN", 5) == 0 && (arg[5] == ' ' || !arg[5])) {
    if (init && *init) {
      smtp_auth_plain(s, init);
    } else {
      smtp_reply(s, "334 ");
      smtp_set_state(s, SMTP_ST_AUTH_PLAIN);
    }
  } else if (strncasecmp(arg, "LOGIN", 5) == 0 &&
             (arg[5] == ' ' || !arg[5])) {
    if (init && *init) {
      smtp_auth_login_user(s, init);
    } else {
      smtp_reply(s, "334 VXNlcm5hbWU6");
      smtp_set_state(s, SMTP_ST_AUTH_USER);
    }
  } else if (*arg == '\0') {
    smtp_reply(s, "501 5.5.4 AUTH needs a mechanism");
  } else {
    smtp_reply(s, "504 5.5.4 Mechanism not supported; use PLAIN or LOGIN");
  }
}

/* Each transaction runs on the config in force when it starts: after a
 * reload, a session takes the new one at its next MAIL. A login that the
 * new config no longer knows, or whose password it changed, must log in
 * again. Returns 0, or -1 when the session was told to. */
static int
smtp_session_refresh(struct smtp_session *s)
{
  struct config *now = s->srv->cfg;
  const struct camera_conf *cam = NULL;

  if (s->cfg == now)
    return 0;
  if (s->authed) {
    cam = config_camera_by_user(now, s->auth_user);
    if (cam && (strcmp(cam->id, s->camera->id) != 0 ||
                g_strcmp0(cam->smtp_password_hash,
                          s->camera->smtp_password_hash) != 0))
      cam = NULL;
  }
  config_unref(s->cfg);
  s->cfg = config_ref(now);
  s->camera = cam;
  if (s->authed && cam == NULL) {
    char euser[96];

    s->authed = 0;
    log_info("smtp", "session=%016" PRIx64 " user=%s msg=\"login no longer "
             "valid after the reload (camera removed or its password "
             "changed); asked to log in again\"", s->id,
             log_escape(euser, sizeof(euser), s->auth_user,
                        strlen(s->auth_user)));
    smtp_reply(s, "530 5.7.0 Authentication required");
    return -1;
  }
  return 0;
}

static void
smtp_cmd_mail(struct smtp_session *s, const char *arg)
{
  char addr[SMTP_ADDR_MAX];
  char val[32];
  const char *params;

  if (!s->greeted) {
    smtp_reply(s, "503 5.5.1 Send HELO or EHLO first");
    return;
  }
  if (s->has_mail) {
    smtp_reply(s, "503 5.5.1 Sender already given");
    return;
  }
  if (smtp_proto_path(arg, "FROM:", addr, sizeof(addr), &params) != 0) {
    smtp_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
    return;
  }
  if (smtp_session_refresh(s) != 0)
    return;
  if (!s->authed) {
    s->camera = config_camera_by_addr(s->cfg,
                                      (struct sockaddr *)&s->peer_sa);
    if (s->camera == NULL) {
      if (!s->warned_noauth++)
        log_warn("smtp", "session=%016" PRIx64 " remote=%s msg=\"no AUTH "
                 "and address not in any camera's allow_from\"", s->id,
                 s->peer);
      smtp_reply(s, "530 5.7.0 Authentication required");
      return;
    }
  }
  if (smtp_proto_param(params, "SIZE", val, sizeof(val))) {
    char *end;
    unsigned long long size = strtoull(val, &end, 10);

    if (!isdigit((unsigned char)val[0]) || *end != '\0') {
      smtp_reply(s, "501 5.5.4 Bad SIZE parameter");
      return;
    }
    if (size > s->cfg->smtp.max_size) {
      if (!s->warned_size++)
        log_warn("smtp", "session=%016" PRIx64 " camera=%s size=%llu "
                 "max=%zu msg=\"message announced over smtp.max_size "
                 "refused at MAIL FROM; raise smtp.max_size or lower the "
                 "camera's picture size\"", s->id,
                 s->camera ? s->camera->id : "-", size,
                 s->cfg->smtp.max_size);
      smtp_reply(s, "552 5.3.4 Message too big for this system");
      return;
    }
  }
  snprintf(s->mail_from, sizeof(s->mail_from), "%s", addr);
  s->has_mail = 1;
  smtp_reply(s, "250 2.1.0 Ok");
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const char *arg)
{
  char addr[SMTP_ADDR_MAX];
  const char *params;

  if (!s->has_mail) {
    smtp_reply(s, "503 5.5.1 Need MAIL before RCPT");
    return;
  }
  if (smtp_proto_path(arg, "TO:", addr, sizeof(addr), &params) != 0 ||
      addr[0] == '\0') {
    smtp_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
    return;
  }
  if ((int)s->nrcpts >= s->cfg->smtp.max_recipients) {
    smtp_reply(s, "452 4.5.3 Too many recipients");
    return;
  }
  /* Recipients are only a hint to the camera's identity: where the alert
   * goes is decided by the rules, so camgate is never a relay. */
  s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) * sizeof(char *));
  s->rcpts[s->nrcpts++] = xstrdup(addr);
  smtp_reply(s, "250 2.1.5 Ok");
}

static void
smtp_cmd_data(struct smtp_session *s, const char *arg)
{
  if (*arg) {
    smtp_reply(s, "501 5.5.4 DATA takes no argument");
    return;
  }
  if (!s->has_mail || s->nrcpts == 0) {
    smtp_reply(s, "503 5.5.1 Need MAIL and RCPT before DATA");
    return;
  }
  smtp_body_reset(&s->body);
  smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
  smtp_set_state(s, SMTP_ST_DATA);
}

static void smtp_session_setcb(struct smtp_session *s);

static void
smtp_cmd_starttls(struct smtp_session *s, const char *arg)
{
  struct smtp_server *srv = s->srv;
  struct bufferevent *tbev;
  SSL *ssl;

  if (*arg) {
    smtp_reply(s, "501 5.5.4 STARTTLS takes no argument");
    return;
  }
  if (srv->tls_ctx == NULL) {
    smtp_reply(s, "502 5.5.1 STARTTLS not available");
    return;
  }
  if (s->tls) {
    smtp_reply(s, "503 5.5.1 TLS already active");
    return;
  }
  smtp_reply(s, "220 2.0.0 Ready to start TLS");
  /* Anything the client sent after STARTTLS in plaintext is discarded, so
   * it cannot be injected into the TLS session. */
  evbuffer_drain(bufferevent_get_input(s->bev),
                 evbuffer_get_length(bufferevent_get_input(s->bev)));
  ssl = SSL_new(srv->tls_ctx);
  tbev = bufferevent_openssl_filter_new(srv->base, s->bev, ssl,
                                        BUFFEREVENT_SSL_ACCEPTING,
                                        BEV_OPT_CLOSE_ON_FREE);
  if (tbev == NULL) {
    SSL_free(ssl);
    smtp_close_with(s, "454 4.7.0 TLS not available");
    return;
  }
  bufferevent_openssl_set_allow_dirty_shutdown(tbev, 1);
  s->bev = tbev;
  s->tls = 1;
  s->greeted = 0;
  s->authed = 0;
  s->camera = NULL;
  smtp_envelope_reset(s);
  smtp_session_setcb(s);
}

static void
smtp_command(struct smtp_session *s, const char *line)
{
  const char *arg;
  enum smtp_verb verb = smtp_proto_verb(line, &arg);

  switch (verb) {
  case SMTP_CMD_HELO:
  case SMTP_CMD_EHLO:
    smtp_ehlo(s, arg, verb == SMTP_CMD_EHLO);
    break;
  case SMTP_CMD_AUTH:
    smtp_cmd_auth(s, arg);
    break;
  case SMTP_CMD_MAIL:
    smtp_cmd_mail(s, arg);
    break;
  case SMTP_CMD_RCPT:
    smtp_cmd_rcpt(s, arg);
    break;
  case SMTP_CMD_DATA:
    smtp_cmd_data(s, arg);
    break;
  case SMTP_CMD_RSET:
    smtp_envelope_reset(s);
    smtp_reply(s, "250 2.0.0 Ok");
    break;
  case SMTP_CMD_NOOP:
    smtp_reply(s, "250 2.0.0 Ok");
    break;
  case SMTP_CMD_VRFY:
    smtp_reply(s, "252 2.5.0 Cannot verify, but will accept the message");
    break;
  case SMTP_CMD_EXPN:
    smtp_reply(s, "502 5.5.1 EXPN not supported");
    break;
  case SMTP_CMD_HELP:
    smtp_reply(s, "214 2.0.0 camgate takes camera alerts: EHLO AUTH MAIL "
               "RCPT DATA RSET NOOP QUIT");
    break;
  case SMTP_CMD_STARTTLS:
    smtp_cmd_starttls(s, arg);
    break;
  case SMTP_CMD_QUIT:
    smtp_close_with(s, "221 2.0.0 Bye");
    break;
  case SMTP_CMD_BDAT:
  case SMTP_CMD_UNKNOWN:
    smtp_reply(s, "500 5.5.2 Command not recognized");
    break;
  }
}

/* Routes one complete line by state. */
static void
smtp_line(struct smtp_session *s, const char *line, size_t n)
{
  switch (s->state) {
  case SMTP_ST_DATA:
    smtp_data_line(s, line, n);
    break;
  case SMTP_ST_AUTH_USER:
    smtp_auth_login_user(s, line);
    break;
  case SMTP_ST_AUTH_PASS:
    smtp_auth_login_pass(s, line);
    break;
  case SMTP_ST_AUTH_PLAIN:
    smtp_auth_plain(s, line);
    break;
  case SMTP_ST_COMMAND:
    if (memchr(line, '\0', n)) {
      smtp_reply(s, "500 5.5.2 NUL byte in command");
      break;
    }
    smtp_command(s, line);
    break;
  default:
    break;
  }
}

static int
smtp_ready(const struct smtp_session *s)
{
  return s->state != SMTP_ST_STORING && s->state != SMTP_ST_PAUSED &&
         s->state != SMTP_ST_CLOSING;
}

/* A TLS ClientHello (0x16 0x03) where a command belongs: the camera is
 * set to implicit TLS ("SSL") but points at the plaintext port. */
static int
smtp_tls_on_plain(struct smtp_session *s, struct evbuffer *in)
{
  unsigned char b[2];

  if (s->tls || s->seen_input || evbuffer_copyout(in, b, 2) < 1)
    return 0;
  s->seen_input = 1;
  if (b[0] != 0x16)
    return 0;
  log_warn("smtp", "session=%016" PRIx64 " remote=%s msg=\"TLS handshake "
           "on the plaintext port: %s\"", s->id, s->peer,
           s->srv->lis_tls ? "set the camera to STARTTLS or no encryption, "
                             "or point it at smtp.listen_tls"
                           : "set the camera to no encryption, or configure "
                             "tls and smtp.listen_tls for it");
  smtp_session_free(s);
  return 1;
}

static void
smtp_idle_reset(struct smtp_session *s)
{
  struct timeval idle = {s->cfg->smtp.idle_timeout, 0};

  evtimer_add(s->idle_timer, &idle);
}

/* DATA's lines straight from the input buffer's own memory: copying each
 * of a snapshot's thousands of base64 lines out into a fresh allocation
 * first was a tenth of camgate's CPU. Stops at a line that crosses two
 * chunks of the buffer (the caller reads that one the slow way), at the
 * end of DATA, or at a line over the cap. Returns the lines consumed. */
static int
smtp_data_fast(struct smtp_session *s, struct evbuffer *in)
{
  struct evbuffer_iovec vec[16];
  int nvec = evbuffer_peek(in, -1, NULL, vec, 16);
  size_t used = 0;
  int lines = 0;

  for (int i = 0; i < nvec && s->state == SMTP_ST_DATA; i++) {
    const char *p = vec[i].iov_base;
    size_t len = vec[i].iov_len;
    size_t off = 0;

    while (off < len && s->state == SMTP_ST_DATA) {
      const char *nl = memchr(p + off, '\n', len - off);
      size_t n;

      if (nl == NULL)
        break;
      n = (size_t)(nl - (p + off));
      if (n > SMTP_DATA_LINE_MAX)
        break;
      smtp_data_line(s, p + off, n > 0 && nl[-1] == '\r' ? n - 1 : n);
      off += n + 1;
      lines++;
    }
    used += off;
    if (off < len)
      break;
  }
  evbuffer_drain(in, used);
  return lines;
}

static void
smtp_process(struct smtp_session *s)
{
  int lines = 0;

  while (smtp_ready(s)) {
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t cap = s->state == SMTP_ST_DATA ? SMTP_DATA_LINE_MAX
                                          : SMTP_LINE_MAX;
    size_t n;
    char *line;

    /* A client that sends commands without reading the replies would
     * have them pile up here: read on once it has taken them. */
    if (smtp_unsent(s) > SMTP_UNSENT_MAX) {
      s->out_full = 1;
      bufferevent_disable(s->bev, EV_READ);
      return;
    }

    if (smtp_tls_on_plain(s, in))
      return;
    if (s->state == SMTP_ST_DATA) {
      int done = smtp_data_fast(s, in);

      if (done > 0) {
        if (lines == 0)
          smtp_idle_reset(s);
        lines += done;
        continue;
      }
    }
    line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (line == NULL) {
      if (evbuffer_get_length(in) > cap) {
        log_warn("smtp", "session=%016" PRIx64 " state=%s limit=%zu "
                 "msg=\"line too long, closing\"", s->id,
                 smtp_state_names[s->state], cap);
        smtp_close_with(s, "500 5.5.6 Line too long");
      }
      return;
    }
    if (n > cap) {
      free(line);
      smtp_close_with(s, "500 5.5.6 Line too long");
      return;
    }
    smtp_line(s, line, n);
    free(line);
    if (lines++ == 0)
      smtp_idle_reset(s);
    if (s->errors >= SMTP_MAX_ERRORS && s->state != SMTP_ST_CLOSING) {
      log_warn("smtp", "session=%016" PRIx64 " remote=%s errors=%d "
               "msg=\"too many refused commands, closing\"", s->id,
               s->peer, s->errors);
      smtp_close_with(s, "421 4.7.0 Too many errors, closing");
    }
  }
}

/* libevent 2.1 reads at most 4 KB per wakeup, so a 150 KB snapshot cost
 * some forty rounds of epoll_wait, FIONREAD and readv. During DATA on a
 * plain connection the rest of what the socket holds is read here, into
 * the bufferevent's own input buffer, up to SMTP_MAX_SINGLE_READ. An
 * error or the end of the stream is left for libevent's next read to
 * report. */
static void
smtp_read_more(struct smtp_session *s)
{
  struct evbuffer *in = bufferevent_get_input(s->bev);
  evutil_socket_t fd = bufferevent_getfd(s->bev);
  size_t total = 0;

  if (s->tls || s->state != SMTP_ST_DATA || fd < 0)
    return;
  /* A socket bufferevent keeps its input's end frozen outside its own
   * reads; this is one of them, on the loop thread. */
  evbuffer_unfreeze(in, 0);
  while (total < SMTP_MAX_SINGLE_READ) {
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    /* 64 KB at a time: a session that is sent little reserves little. */
    size_t want = SMTP_MAX_SINGLE_READ - total < 65536
                    ? SMTP_MAX_SINGLE_READ - total : 65536;
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    ssize_t r;
    size_t left;

    if (nv <= 0)
      break;
    for (int i = 0; i < nv; i++) {
      iov[i].iov_base = v[i].iov_base;
      iov[i].iov_len = v[i].iov_len;
    }
    do
      r = readv(fd, iov, nv);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
      evbuffer_commit_space(in, v, 0);
      break;
    }
    left = (size_t)r;
    for (int i = 0; i < nv; i++) {
      if (v[i].iov_len > left)
        v[i].iov_len = left;
      left -= v[i].iov_len;
    }
    evbuffer_commit_space(in, v, nv);
    total += (size_t)r;
  }
  evbuffer_freeze(in, 0);
}

static void
smtp_read_cb(struct bufferevent *bev, void *arg)
{
  (void)bev;
  smtp_read_more(arg);
  smtp_process(arg);
}

static void
smtp_write_cb(struct bufferevent *bev, void *arg)
{
  struct smtp_session *s = arg;

  (void)bev;
  if (s->state == SMTP_ST_CLOSING) {
    smtp_close_check(s);
    return;
  }
  if (s->out_full && smtp_unsent(s) <= SMTP_UNSENT_MAX) {
    s->out_full = 0;
    if (smtp_ready(s)) {
      bufferevent_enable(s->bev, EV_READ);
      smtp_process(s);
    }
  }
}

static void
smtp_tls_failure(struct smtp_session *s)
{
  unsigned long e = bufferevent_get_openssl_error(s->bev);
  char buf[256] = "connection closed during the handshake";

  if (e)
    ERR_error_string_n(e, buf, sizeof(buf));
  log_warn("smtp", "session=%016" PRIx64 " remote=%s tls=failed "
           "error=\"%s\" msg=\"TLS handshake failed: a client that is not "
           "speaking TLS, or whose TLS is older than tls.min_version or "
           "tls.ciphers allow\"", s->id, s->peer, buf);
}

static void
smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
  struct smtp_session *s = arg;

  (void)bev;
  if (what & BEV_EVENT_TIMEOUT) {
    log_info("smtp", "session=%016" PRIx64 " msg=\"idle timeout\"", s->id);
    smtp_close_with(s, "421 4.4.2 Idle timeout, closing");
    return;
  }
  if (what & BEV_EVENT_CONNECTED)
    return;
  if (s->tls && (what & BEV_EVENT_ERROR) && !s->greeted)
    smtp_tls_failure(s);
  if (s->state == SMTP_ST_DATA)
    log_warn("smtp", "session=%016" PRIx64 " received=%zu msg=\"connection "
             "lost inside DATA; the partial message is dropped\"", s->id,
             s->body.size);
  if (s->state == SMTP_ST_STORING) {
    s->dead = 1;
    return;
  }
  smtp_session_free(s);
}

/* A client that trickles bytes without ever ending a line is idle too. */
static void
smtp_idle_cb(evutil_socket_t fd, short what, void *arg)
{
  struct smtp_session *s = arg;

  (void)fd;
  (void)what;
  if (s->state == SMTP_ST_STORING || s->state == SMTP_ST_CLOSING)
    return;
  log_info("smtp", "session=%016" PRIx64 " remote=%s msg=\"idle timeout\"",
           s->id, s->peer);
  smtp_close_with(s, "421 4.4.2 Idle timeout, closing");
}

static void
smtp_total_cb(evutil_socket_t fd, short what, void *arg)
{
  struct smtp_session *s = arg;

  (void)fd;
  (void)what;
  if (s->state == SMTP_ST_STORING)
    return;
  log_info("smtp", "session=%016" PRIx64 " msg=\"session time limit\"",
           s->id);
  smtp_close_with(s, "421 4.4.2 Session too long, closing");
}

static void
smtp_session_setcb(struct smtp_session *s)
{
  struct timeval idle = {s->cfg->smtp.idle_timeout, 0};

  bufferevent_setcb(s->bev, smtp_read_cb, smtp_write_cb, smtp_event_cb, s);
  bufferevent_set_timeouts(s->bev, NULL, &idle);
  /* A snapshot arrives in one read, not in libevent's default 16 KB
   * slices, each with its own FIONREAD and readv; memory is taken only
   * for what the socket holds. */
  bufferevent_set_max_single_read(s->bev, SMTP_MAX_SINGLE_READ);
  bufferevent_enable(s->bev, EV_READ | EV_WRITE);
  smtp_idle_reset(s);
}

static void
smtp_session_free(struct smtp_session *s)
{
  struct smtp_server *srv = s->srv;

  if (s->state == SMTP_ST_STORING && !s->dead) {
    /* The spool still holds a pointer to s: free it when it answers. */
    s->dead = 1;
    if (s->bev) {
      bufferevent_free(s->bev);
      s->bev = NULL;
    }
    return;
  }
  log_debug("smtp", "session=%016" PRIx64 " closed", s->id);
  if (s->prev)
    s->prev->next = s->next;
  else
    srv->sessions = s->next;
  if (s->next)
    s->next->prev = s->prev;
  srv->nsessions--;
  auth_job_cancel(s->auth_job);
  if (s->bev)
    bufferevent_free(s->bev);
  event_free(s->total_timer);
  event_free(s->delay_timer);
  event_free(s->close_timer);
  event_free(s->idle_timer);
  smtp_envelope_reset(s);
  explicit_bzero(s->auth_user, sizeof(s->auth_user));
  config_unref(s->cfg);
  free(s);
}

static void
smtp_peer_string(const struct sockaddr *sa, char *buf, size_t bufsz)
{
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
              (socklen_t)bufsz);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
              (socklen_t)bufsz);
  else
    snprintf(buf, bufsz, "unknown");
}

static int
smtp_sessions_from(const struct smtp_server *srv, const char *peer)
{
  int n = 0;

  for (const struct smtp_session *s = srv->sessions; s; s = s->next)
    n += strcmp(s->peer, peer) == 0;
  return n;
}

/* Logs a refusal of peer for too many sessions, at most once a minute per
 * address; the line counts the refusals it stands for. */
static void
smtp_refused_log(struct smtp_server *srv, const char *peer, int open)
{
  struct smtp_refused *r = NULL;
  struct smtp_refused *oldest = &srv->refused[0];
  int64_t now = mono_ms();

  for (size_t i = 0; i < SMTP_REFUSED_SLOTS && r == NULL; i++) {
    struct smtp_refused *e = &srv->refused[i];

    if (e->logged != 0 && strcmp(e->addr, peer) == 0)
      r = e;
    else if (e->logged < oldest->logged)
      oldest = e;
  }
  if (r == NULL) {
    r = oldest;
    snprintf(r->addr, sizeof(r->addr), "%s", peer);
    r->logged = 0;
    r->since = 0;
  }
  r->since++;
  if (r->logged != 0 && now - r->logged < SMTP_REFUSED_LOG_MS)
    return;
  log_warn("smtp", "remote=%s sessions=%d max_per_address=%d refused=%lu "
           "msg=\"too many connections from one address refused; if it "
           "is a camera or NVR, raise smtp.max_sessions_per_address\"",
           peer, open, srv->cfg->smtp.max_sessions_per_address, r->since);
  r->logged = now > 0 ? now : 1;
  r->since = 0;
}

/* Refuses a connection from an address that already holds its share of
 * the sessions. Returns 1 when fd was answered and closed. */
static int
smtp_refuse_per_address(struct smtp_server *srv, evutil_socket_t fd,
                        const char *peer)
{
  static const char busy[] = "421 4.7.0 Too many connections from your "
                             "address\r\n";
  int open = smtp_sessions_from(srv, peer);

  if (open < srv->cfg->smtp.max_sessions_per_address)
    return 0;
  smtp_refused_log(srv, peer, open);
  if (write(fd, busy, sizeof(busy) - 1) < 0)
    log_debug("smtp", "error=\"%s\"", strerror(errno));
  evutil_closesocket(fd);
  return 1;
}

static void
smtp_accept(struct smtp_server *srv, evutil_socket_t fd,
            struct sockaddr *sa, int socklen, int implicit_tls)
{
  struct smtp_session *s;
  struct timeval total = {srv->cfg->smtp.session_timeout, 0};
  char peer[64];

  smtp_peer_string(sa, peer, sizeof(peer));
  if (!srv->shutting_down && smtp_refuse_per_address(srv, fd, peer))
    return;
  if (srv->shutting_down ||
      srv->nsessions >= srv->cfg->smtp.max_sessions) {
    static const char busy[] = "421 4.3.2 Too many connections, try later"
                               "\r\n";

    log_warn("smtp", "sessions=%d max=%d msg=\"connection refused\"",
             srv->nsessions, srv->cfg->smtp.max_sessions);
    if (write(fd, busy, sizeof(busy) - 1) < 0)
      log_debug("smtp", "error=\"%s\"", strerror(errno));
    evutil_closesocket(fd);
    return;
  }
  s = xcalloc(1, sizeof(*s));
  s->id = ++srv->next_id;
  s->srv = srv;
  s->cfg = config_ref(srv->cfg);
  memcpy(&s->peer_sa, sa, (size_t)socklen < sizeof(s->peer_sa)
                              ? (size_t)socklen : sizeof(s->peer_sa));
  snprintf(s->peer, sizeof(s->peer), "%s", peer);
  if (implicit_tls) {
    SSL *ssl = SSL_new(srv->tls_ctx);

    s->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl,
                                            BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (s->bev)
      bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    s->tls = 1;
  } else {
    s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
  }
  if (s->bev == NULL)
    fatal("smtp: cannot make a bufferevent");
  s->total_timer = evtimer_new(srv->base, smtp_total_cb, s);
  s->delay_timer = evtimer_new(srv->base, smtp_delay_cb, s);
  s->close_timer = evtimer_new(srv->base, smtp_close_timer_cb, s);
  s->idle_timer = evtimer_new(srv->base, smtp_idle_cb, s);
  evtimer_add(s->total_timer, &total);
  s->next = srv->sessions;
  if (srv->sessions)
    srv->sessions->prev = s;
  srv->sessions = s;
  srv->nsessions++;
  log_debug("smtp", "session=%016" PRIx64 " remote=%s tls=%d accepted",
            s->id, s->peer, s->tls);
  smtp_session_setcb(s);
  smtp_reply(s, "220 %s ESMTP camgate", s->cfg->smtp.hostname);
}

static void
smtp_accept_plain(struct evconnlistener *l, evutil_socket_t fd,
                  struct sockaddr *sa, int socklen, void *arg)
{
  (void)l;
  smtp_accept(arg, fd, sa, socklen, 0);
}

static void
smtp_accept_tls(struct evconnlistener *l, evutil_socket_t fd,
                struct sockaddr *sa, int socklen, void *arg)
{
  (void)l;
  smtp_accept(arg, fd, sa, socklen, 1);
}

static struct evconnlistener *
smtp_listen(struct smtp_server *srv, const struct endpoint *ep,
            evconnlistener_cb cb, char *err, size_t errsz)
{
  struct evutil_addrinfo hints = {0};
  struct evutil_addrinfo *ai = NULL;
  struct evconnlistener *l = NULL;
  char port[16];
  int r;

  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
  snprintf(port, sizeof(port), "%d", ep->port);
  r = evutil_getaddrinfo(ep->host, port, &hints, &ai);
  if (r != 0) {
    snprintf(err, errsz, "cannot resolve %s: %s", ep->host,
             evutil_gai_strerror(r));
    return NULL;
  }
  /* A deep backlog: after a restart or a network outage every camera of
   * a site reconnects at once, and with 128 the kernel drops the SYNs past
   * it, so those cameras wait seconds for their retransmits. */
  l = evconnlistener_new_bind(srv->base, cb, srv,
                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                LEV_OPT_CLOSE_ON_EXEC,
                              SOMAXCONN, ai->ai_addr, (int)ai->ai_addrlen);
  if (l == NULL)
    snprintf(err, errsz, "cannot listen on %s:%d: %s", ep->host, ep->port,
             strerror(errno));
  evutil_freeaddrinfo(ai);
  return l;
}

/* Message and picture files a previous run left behind when it was
 * killed: nothing refers to them (the spool lock makes this camgate the
 * only one on this spool). */
static void
smtp_clean_tmpdir(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;

  if (d == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "msg-", 4) == 0 ||
        strncmp(e->d_name, "pic-", 4) == 0) {
      char *p = xasprintf("%s/%s", dir, e->d_name);

      n += unlink(p) == 0;
      free(p);
    }
  }
  closedir(d);
  if (n > 0)
    log_info("smtp", "dir=%s removed=%d msg=\"unfinished files of an "
             "earlier run removed\"", dir, n);
}

struct smtp_server *
smtp_server_new(struct event_base *base, struct config *cfg,
                struct spool *sp, smtp_stored_fn stored, void *arg,
                char *err, size_t errsz)
{
  struct smtp_server *srv = xcalloc(1, sizeof(*srv));

  srv->base = base;
  srv->cfg = config_ref(cfg);
  srv->spool = sp;
  srv->stored = stored;
  srv->stored_arg = arg;
  snprintf(srv->tmpdir, sizeof(srv->tmpdir), "%s/tmp", cfg->spool_path);
  if (mkdir(srv->tmpdir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errsz, "cannot create %s: %s", srv->tmpdir,
             strerror(errno));
    goto fail;
  }
  smtp_clean_tmpdir(srv->tmpdir);
  mail_set_spill_dir(srv->tmpdir);
  if (cfg->tls.cert) {
    srv->tls_ctx = tls_server_ctx(&cfg->tls, err, errsz);
    if (srv->tls_ctx == NULL)
      goto fail;
  }
  srv->lis = smtp_listen(srv, &cfg->smtp.listen, smtp_accept_plain, err,
                         errsz);
  if (srv->lis == NULL)
    goto fail;
  if (cfg->smtp.listen_tls.host) {
    srv->lis_tls = smtp_listen(srv, &cfg->smtp.listen_tls, smtp_accept_tls,
                               err, errsz);
    if (srv->lis_tls == NULL)
      goto fail;
  }
  if (cfg->smtp.listen_tls.host)
    log_info("smtp", "listen=%s:%d tls_listen=%s:%d starttls=%s",
             cfg->smtp.listen.host, cfg->smtp.listen.port,
             cfg->smtp.listen_tls.host, cfg->smtp.listen_tls.port,
             srv->tls_ctx ? "yes" : "no");
  else
    log_info("smtp", "listen=%s:%d tls_listen=off starttls=%s",
             cfg->smtp.listen.host, cfg->smtp.listen.port,
             srv->tls_ctx ? "yes" : "no");
  return srv;
fail:
  smtp_server_free(srv);
  return NULL;
}

static int
smtp_endpoint_same(const struct endpoint *a, const struct endpoint *b)
{
  if (a->host == NULL || b->host == NULL)
    return a->host == b->host;
  return a->port == b->port && strcmp(a->host, b->host) == 0;
}

int
smtp_server_reload(struct smtp_server *srv, struct config *cfg, char *err,
                   size_t errsz)
{
  SSL_CTX *ctx = NULL;
  int locked;

  if (cfg->tls.cert) {
    ctx = tls_server_ctx(&cfg->tls, err, errsz);
    if (ctx == NULL)
      return -1;
  }
  if (!smtp_endpoint_same(&cfg->smtp.listen, &srv->cfg->smtp.listen) ||
      !smtp_endpoint_same(&cfg->smtp.listen_tls,
                          &srv->cfg->smtp.listen_tls))
    log_warn("smtp", "msg=\"listen addresses changed; they take effect "
             "after a restart\"");
  SSL_CTX_free(srv->tls_ctx);
  srv->tls_ctx = ctx;
  config_unref(srv->cfg);
  srv->cfg = config_ref(cfg);
  auth_cache_clear();
  locked = auth_throttle_clear();
  if (locked > 0)
    log_info("smtp", "addresses=%d msg=\"failed-login lockouts lifted by "
             "the reload\"", locked);
  return 0;
}

void
smtp_server_shutdown(struct smtp_server *srv)
{
  struct smtp_session *s = srv->sessions;

  srv->shutting_down = 1;
  if (srv->lis)
    evconnlistener_disable(srv->lis);
  if (srv->lis_tls)
    evconnlistener_disable(srv->lis_tls);
  while (s) {
    struct smtp_session *next = s->next;

    if (s->state != SMTP_ST_DATA && s->state != SMTP_ST_STORING &&
        s->state != SMTP_ST_CLOSING && !s->dead)
      smtp_close_with(s, "421 4.3.2 Service shutting down");
    s = next;
  }
}

int
smtp_server_sessions(const struct smtp_server *srv)
{
  return srv->nsessions;
}

void
smtp_server_free(struct smtp_server *srv)
{
  if (srv == NULL)
    return;
  while (srv->sessions) {
    struct smtp_session *s = srv->sessions;

    s->state = SMTP_ST_CLOSING;
    smtp_session_free(s);
  }
  if (srv->lis)
    evconnlistener_free(srv->lis);
  if (srv->lis_tls)
    evconnlistener_free(srv->lis_tls);
  SSL_CTX_free(srv->tls_ctx);
  config_unref(srv->cfg);
  free(srv);
}
