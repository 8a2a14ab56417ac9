/* test_mqtt.c - the MQTT backend: its pure helpers, then the backend
 * against a real Mosquitto broker on a loopback port.
 *
 * Each broker test starts its own mosquitto from a two-line config in a
 * temporary directory and watches the traffic with a second client
 * subscribed to "#" (MQTT 5, retain-as-published, so retained publishes
 * are seen as such). The config structs are filled by hand, so these
 * tests do not depend on the YAML loader. Every wait is bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/mqtt.h"
#include "config/config.h"
#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/notify.h"

#ifndef FIXTURES_DIR
#define FIXTURES_DIR TESTS_DIR "/fixtures"
#endif

#define MOSQUITTO_BIN "/usr/sbin/mosquitto"
#define SNAPSHOT FIXTURES_DIR "/assets/snap_64x48.jpg"
#define DEVICE_MS INT64_C(1764780000123)
#define DEVICE_ISO "2025-12-03T16:40:00.123Z"
#define MAX_SEEN 1024

/* Pure helpers. */

static void
test_slug(void **state)
{
  static const struct {
    const char *in;
    const char *out;
  } cases[] = {
    {"front", "front"},
    {"Front-Door_2", "Front-Door_2"},
    {"front door/1", "front_door_1"},
    {"a+b#c", "a_b_c"},
    {"caf\xc3\xa9", "caf__"},
    {"", "_"},
  };
  char *s;

  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    s = mqtt_slug(cases[i].in);
    assert_string_equal(s, cases[i].out);
    free(s);
  }
  s = mqtt_slug(NULL);
  assert_string_equal(s, "_");
  free(s);
}

static void
test_kind_slug(void **state)
{
  static const struct {
    const char *in;
    const char *out;
  } cases[] = {
    {"motion", "motion"},
    {"line crossing", "line_crossing"},
    {"snapshot", "kind_snapshot"},
    {"event", "kind_event"},
    {"last_event", "kind_last_event"},
    {"events", "events"},
  };

  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *s = mqtt_kind_slug(cases[i].in);

    assert_string_equal(s, cases[i].out);
    free(s);
  }
}

static void
test_format_time(void **state)
{
  char buf[MQTT_TIME_LEN];
  char small[8];

  (void)state;
  mqtt_format_time(DEVICE_MS, buf, sizeof(buf));
  assert_string_equal(buf, DEVICE_ISO);
  mqtt_format_time(0, buf, sizeof(buf));
  assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
  mqtt_format_time(-1, buf, sizeof(buf));
  assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
  mqtt_format_time(DEVICE_MS, small, sizeof(small));
  assert_true(strlen(small) < sizeof(small));
}

static void
test_device_class(void **state)
{
  (void)state;
  assert_string_equal(mqtt_device_class("motion"), "motion");
  assert_string_equal(mqtt_device_class("person"), "occupancy");
  assert_string_equal(mqtt_device_class("doorbell"), "sound");
  assert_string_equal(mqtt_device_class("tamper"), "tamper");
  assert_string_equal(mqtt_device_class("video_loss"), "problem");
  assert_null(mqtt_device_class("something_else"));
  assert_null(mqtt_device_class(NULL));
}

static unsigned char *
read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  unsigned char *buf;
  long n;

  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  n = ftell(f);
  assert_true(n > 0);
  rewind(f);
  buf = xmalloc((size_t)n);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* A pulse of kind at camera "front" with a JPEG snapshot and a clip. */
static struct cam_event *
make_event(int64_t id, const char *kind, enum event_state st)
{
  struct cam_event *ev = cam_event_new();
  unsigned char *jpeg;
  size_t len;

  ev->id = id;
  cam_event_set(&ev->camera, "front");
  cam_event_set(&ev->camera_name, "Front door");
  cam_event_set(&ev->source, "smtp");
  cam_event_set(&ev->kind, kind);
  ev->state = st;
  ev->device_time = DEVICE_MS;
  ev->recv_time = DEVICE_MS + 1000;
  cam_event_set(&ev->title, "Motion Detection Alarm");
  cam_event_set(&ev->text, "Person at the \"gate\"");
  cam_event_add_attachment(ev, "clip.mp4", "video/mp4",
                           (const unsigned char *)"mp4", 3);
  jpeg = read_file(SNAPSHOT, &len);
  cam_event_add_attachment_owned(ev, "snap.jpg", "image/jpeg", jpeg, len);
  cam_event_add_label(ev, "channel", "1");
  cam_event_add_label(ev, "vendor", "hikvision");
  return ev;
}

static const char *
jstr(json_t *obj, const char *key)
{
  json_t *v = json_object_get(obj, key);

  assert_true(json_is_string(v));
  return json_string_value(v);
}

static void
check_event_json(const char *text, const struct cam_event *ev)
{
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  json_t *labels;

  assert_non_null(root);
  assert_int_equal(json_integer_value(json_object_get(root, "id")), ev->id);
  assert_string_equal(jstr(root, "camera"), "front");
  assert_string_equal(jstr(root, "camera_name"), "Front door");
  assert_string_equal(jstr(root, "source"), "smtp");
  assert_string_equal(jstr(root, "kind"), ev->kind);
  assert_string_equal(jstr(root, "state"), event_state_name(ev->state));
  assert_string_equal(jstr(root, "device_time"), DEVICE_ISO);
  assert_string_equal(jstr(root, "recv_time"), "2025-12-03T16:40:01.123Z");
  assert_string_equal(jstr(root, "title"), "Motion Detection Alarm");
  assert_string_equal(jstr(root, "text"), "Person at the \"gate\"");
  labels = json_object_get(root, "labels");
  assert_true(json_is_object(labels));
  assert_int_equal(json_object_size(labels), 2);
  assert_string_equal(jstr(labels, "channel"), "1");
  assert_string_equal(jstr(labels, "vendor"), "hikvision");
  assert_int_equal(json_integer_value(json_object_get(root,
                                                      "snapshot_size")),
                   cam_event_snapshot(ev)->len);
  assert_int_equal(json_integer_value(json_object_get(root, "attachments")),
                   2);
  json_decref(root);
}

static void
test_event_json(void **state)
{
  struct cam_event *ev = make_event(7, "person", EVENT_PULSE);
  json_error_t jerr;
  json_t *root;
  char *s;

  (void)state;
  s = mqtt_event_json(ev);
  check_event_json(s, ev);
  free(s);

  /* Unknown device time, no snapshot, no text, text not UTF-8. */
  ev->device_time = 0;
  ev->natt = 1;
  cam_event_set(&ev->text, NULL);
  cam_event_set(&ev->title, "Bewegung \xff\xfe erkannt");
  s = mqtt_event_json(ev);
  ev->natt = 2;
  root = json_loads(s, 0, &jerr);
  assert_non_null(root);
  assert_true(json_is_null(json_object_get(root, "device_time")));
  assert_true(json_is_null(json_object_get(root, "text")));
  assert_string_equal(jstr(root, "title"), "Bewegung ?? erkannt");
  assert_int_equal(json_integer_value(json_object_get(root,
                                                      "snapshot_size")), 0);
  json_decref(root);
  free(s);
  cam_event_free(ev);
}

static void
fill_mqtt_conf(struct mqtt_conf *mc, int port)
{
  static char host[] = "127.0.0.1";
  static char client_id[] = "camgate-test";
  static char prefix[] = "camgate";
  static char disc[] = "homeassistant";

  memset(mc, 0, sizeof(*mc));
  mc->host = host;
  mc->port = port;
  mc->client_id = client_id;
  mc->keepalive = 10;
  mc->topic_prefix = prefix;
  mc->discovery = 1;
  mc->discovery_prefix = disc;
  mc->hold = 1;
  mc->start_timeout = 5;
}

static json_t *
jobj(json_t *obj, const char *key)
{
  json_t *v = json_object_get(obj, key);

  assert_true(json_is_object(v));
  return v;
}

/* Checks a camera "front" discovery document announcing at least the
 * given kinds. */
static void
check_discovery(const char *text, const char *const *kinds, size_t nkinds)
{
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  json_t *dev, *o, *cmps, *c, *types;

  assert_non_null(root);
  dev = jobj(root, "dev");
  assert_string_equal(json_string_value(json_array_get(
                        json_object_get(dev, "ids"), 0)), "camgate_front");
  assert_string_equal(jstr(dev, "name"), "Front door");
  assert_string_equal(jstr(dev, "mf"), "camgate");
  assert_string_equal(jstr(dev, "mdl"), "camera");
  assert_string_equal(jstr(dev, "via_device"),
                      "camgate_gateway_camgate-test");
  o = jobj(root, "o");
  assert_string_equal(jstr(o, "name"), "camgate");
  assert_non_null(json_object_get(o, "sw"));
  /* No project page to point at: no placeholder either. */
  assert_null(json_object_get(o, "url"));
  assert_string_equal(jstr(root, "availability_topic"), "camgate/status");
  cmps = jobj(root, "cmps");
  for (size_t i = 0; i < nkinds; i++) {
    char uid[64];
    char topic[64];

    snprintf(uid, sizeof(uid), "camgate_front_%s", kinds[i]);
    snprintf(topic, sizeof(topic), "camgate/front/%s", kinds[i]);
    c = jobj(cmps, kinds[i]);
    assert_string_equal(jstr(c, "p"), "binary_sensor");
    assert_string_equal(jstr(c, "unique_id"), uid);
    assert_string_equal(jstr(c, "state_topic"), topic);
    assert_string_equal(jstr(c, "payload_on"), "ON");
    assert_string_equal(jstr(c, "payload_off"), "OFF");
    assert_string_equal(jstr(c, "device_class"),
                        mqtt_device_class(kinds[i]));
  }
  c = jobj(cmps, "snapshot");
  assert_string_equal(jstr(c, "p"), "image");
  assert_string_equal(jstr(c, "unique_id"), "camgate_front_snapshot");
  assert_string_equal(jstr(c, "image_topic"), "camgate/front/snapshot");
  assert_string_equal(jstr(c, "content_type"), "image/jpeg");
  c = jobj(cmps, "event");
  assert_string_equal(jstr(c, "p"), "event");
  assert_string_equal(jstr(c, "unique_id"), "camgate_front_event");
  assert_string_equal(jstr(c, "state_topic"), "camgate/front/event");
  assert_string_equal(jstr(c, "value_template"),
                      "{{ {'event_type': value_json.kind} | tojson }}");
  types = json_object_get(c, "event_types");
  assert_true(json_array_size(types) >= nkinds);
  for (size_t i = 0; i < nkinds; i++)
    assert_string_equal(json_string_value(json_array_get(types, i)),
                        kinds[i]);
  c = jobj(cmps, "last_event");
  assert_string_equal(jstr(c, "p"), "sensor");
  assert_string_equal(jstr(c, "device_class"), "timestamp");
  assert_string_equal(jstr(c, "unique_id"), "camgate_front_last_event");
  assert_string_equal(jstr(c, "state_topic"), "camgate/front/last_event");
  json_decref(root);
}

static void
test_discovery_json(void **state)
{
  static const char *const kinds[] = {"motion", "person"};
  static const char *const odd[] = {"snapshot"};
  struct mqtt_conf mc;
  json_error_t jerr;
  json_t *root, *cmps, *c;
  char *s;

  (void)state;
  fill_mqtt_conf(&mc, 1883);
  s = mqtt_discovery_json(&mc, "front", "Front door", kinds, 2);
  check_discovery(s, kinds, 2);
  free(s);

  /* No kinds yet: no event entity, which HA would refuse. */
  s = mqtt_discovery_json(&mc, "front", NULL, NULL, 0);
  root = json_loads(s, 0, &jerr);
  assert_non_null(root);
  cmps = jobj(root, "cmps");
  assert_null(json_object_get(cmps, "event"));
  assert_non_null(json_object_get(cmps, "snapshot"));
  assert_string_equal(jstr(jobj(root, "dev"), "name"), "front");
  json_decref(root);
  free(s);

  /* A kind named like a camera leaf keeps off the image's topic. */
  s = mqtt_discovery_json(&mc, "front", NULL, odd, 1);
  root = json_loads(s, 0, &jerr);
  cmps = jobj(root, "cmps");
  c = jobj(cmps, "kind_snapshot");
  assert_string_equal(jstr(c, "state_topic"),
                      "camgate/front/kind_snapshot");
  assert_string_equal(jstr(jobj(cmps, "snapshot"), "p"), "image");
  json_decref(root);
  free(s);

  s = mqtt_gateway_json(&mc);
  root = json_loads(s, 0, &jerr);
  assert_non_null(root);
  assert_string_equal(json_string_value(json_array_get(json_object_get(
                        jobj(root, "dev"), "ids"), 0)),
                      "camgate_gateway_camgate-test");
  c = jobj(jobj(root, "cmps"), "connectivity");
  assert_string_equal(jstr(c, "p"), "binary_sensor");
  assert_string_equal(jstr(c, "device_class"), "connectivity");
  assert_string_equal(jstr(c, "state_topic"), "camgate/status");
  assert_string_equal(jstr(c, "payload_on"), "online");
  assert_string_equal(jstr(c, "payload_off"), "offline");
  assert_null(json_object_get(root, "availability_topic"));
  json_decref(root);
  free(s);
}

/* The broker. */

struct broker {
  pid_t pid;
  int port;
  char dir[64];
  char conf[96];
  char log[96];
};

static int64_t
clock_ms(void)
{
  return mono_ms();
}

static void
sleep_ms(int ms)
{
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

  nanosleep(&ts, NULL);
}

static int
free_port(void)
{
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port;

  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

static int
port_open(int port)
{
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int ok;

  if (fd < 0)
    return 0;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return ok;
}

static void
broker_prepare(struct broker *b)
{
  FILE *f;

  memset(b, 0, sizeof(*b));
  snprintf(b->dir, sizeof(b->dir), "/tmp/camgate-mqtt-XXXXXX");
  assert_non_null(mkdtemp(b->dir));
  snprintf(b->conf, sizeof(b->conf), "%s/mosquitto.conf", b->dir);
  snprintf(b->log, sizeof(b->log), "%s/mosquitto.log", b->dir);
  b->port = free_port();
  f = fopen(b->conf, "w");
  assert_non_null(f);
  fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\n", b->port);
  fclose(f);
}

/* Starts mosquitto and waits, at most 5 s, until it takes connections.
 * The child dies with the test process, even on a crash. */
static void
broker_start(struct broker *b)
{
  int64_t end = clock_ms() + 5000;
  int fd;

  b->pid = fork();
  assert_true(b->pid >= 0);
  if (b->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execl(MOSQUITTO_BIN, "mosquitto", "-c", b->conf, (char *)NULL);
    _exit(127);
  }
  while (!port_open(b->port) && clock_ms() < end) {
    assert_int_equal(waitpid(b->pid, NULL, WNOHANG), 0);
    sleep_ms(20);
  }
  assert_true(port_open(b->port));
}

static void
broker_kill(struct broker *b, int sig)
{
  int64_t end = clock_ms() + 5000;

  if (b->pid <= 0)
    return;
  kill(b->pid, sig);
  while (waitpid(b->pid, NULL, WNOHANG) == 0 && clock_ms() < end)
    sleep_ms(10);
  if (clock_ms() >= end) {
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
  }
  b->pid = 0;
}

static void
broker_cleanup(struct broker *b)
{
  broker_kill(b, SIGTERM);
  if (b->dir[0] == '\0')
    return;
  unlink(b->conf);
  unlink(b->log);
  rmdir(b->dir);
  b->dir[0] = '\0';
}

/* The observer: a second client that records everything it sees. */

struct seen {
  char *topic;
  unsigned char *payload;
  int len;
  int retain;
};

struct observer {
  struct mosquitto *mosq;
  pthread_mutex_t lock;
  struct seen msgs[MAX_SEEN];
  size_t n;
  int subscribed;
};

static void
obs_on_connect(struct mosquitto *mosq, void *arg, int rc)
{
  (void)arg;
  if (rc == 0)
    mosquitto_subscribe_v5(mosq, NULL, "#", 1,
                           MQTT_SUB_OPT_RETAIN_AS_PUBLISHED, NULL);
}

static void
obs_on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n,
                 const int *qos)
{
  struct observer *o = arg;

  (void)mosq;
  (void)mid;
  (void)n;
  (void)qos;
  pthread_mutex_lock(&o->lock);
  o->subscribed = 1;
  pthread_mutex_unlock(&o->lock);
}

static void
obs_on_message(struct mosquitto *mosq, void *arg,
               const struct mosquitto_message *msg)
{
  struct observer *o = arg;
  struct seen *s;

  (void)mosq;
  pthread_mutex_lock(&o->lock);
  if (o->n < MAX_SEEN) {
    s = &o->msgs[o->n++];
    s->topic = xstrdup(msg->topic);
    s->payload = xmalloc((size_t)msg->payloadlen + 1);
    memcpy(s->payload, msg->payload, (size_t)msg->payloadlen);
    s->payload[msg->payloadlen] = '\0';
    s->len = msg->payloadlen;
    s->retain = msg->retain;
  }
  pthread_mutex_unlock(&o->lock);
}

static void
obs_clear(struct observer *o)
{
  pthread_mutex_lock(&o->lock);
  for (size_t i = 0; i < o->n; i++) {
    free(o->msgs[i].topic);
    free(o->msgs[i].payload);
  }
  o->n = 0;
  pthread_mutex_unlock(&o->lock);
}

/* Returns how many messages came on topic; *last gets a copy of the last
 * one (the caller frees its payload) when last is not NULL. */
static int
obs_get(struct observer *o, const char *topic, struct seen *last)
{
  int count = 0;

  if (last)
    memset(last, 0, sizeof(*last));
  pthread_mutex_lock(&o->lock);
  for (size_t i = 0; i < o->n; i++) {
    const struct seen *s = &o->msgs[i];

    if (strcmp(s->topic, topic) != 0)
      continue;
    count++;
    if (last) {
      free(last->payload);
      last->payload = xmalloc((size_t)s->len + 1);
      memcpy(last->payload, s->payload, (size_t)s->len + 1);
      last->len = s->len;
      last->retain = s->retain;
    }
  }
  pthread_mutex_unlock(&o->lock);
  return count;
}

static int
obs_count(struct observer *o, const char *topic)
{
  return obs_get(o, topic, NULL);
}

/* Returns 1 when the last message on topic is payload, retained. */
static int
obs_last_is(struct observer *o, const char *topic, const char *payload)
{
  struct seen last;
  int ok;

  if (obs_get(o, topic, &last) == 0)
    return 0;
  ok = last.retain && strcmp((char *)last.payload, payload) == 0;
  free(last.payload);
  return ok;
}

static int
obs_subscribed(struct observer *o)
{
  int s;

  pthread_mutex_lock(&o->lock);
  s = o->subscribed;
  pthread_mutex_unlock(&o->lock);
  return s;
}

/* A test's world: broker, loop, observer, backend. */

struct answer {
  int calls;
  enum deliver_status st;
  int next_phase;
  int64_t delay_ms;
  char error[160];
};

struct world {
  struct broker broker;
  struct event_base *base;
  struct notify *notify;
  struct observer obs;
  GRegex *nvr_re;
  struct camera_conf cams[2];
  char *front_kinds[1];
  struct backend_conf bc;
  struct config cfg;
  void *be;
  struct answer ans;
};

static void
record_done(void *ctx, enum deliver_status st, int next_phase,
            int64_t delay_ms, const char *error)
{
  struct answer *a = ctx;

  a->calls++;
  a->st = st;
  a->next_phase = next_phase;
  a->delay_ms = delay_ms;
  snprintf(a->error, sizeof(a->error), "%s", error ? error : "");
}

static void
loop_for(struct event_base *base, int ms)
{
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

  event_base_loopexit(base, &tv);
  event_base_dispatch(base);
}

/* Runs the loop in 20 ms slices until cond holds or ms have passed. */
#define RUN_UNTIL(w, cond, ms)                                           \
  do {                                                                   \
    int64_t end_ = clock_ms() + (ms);                                    \
    while (!(cond) && clock_ms() < end_)                                 \
      loop_for((w)->base, 20);                                           \
  } while (0)

static int
obs_start(struct world *w)
{
  struct observer *o = &w->obs;
  int64_t end = clock_ms() + 5000;

  pthread_mutex_init(&o->lock, NULL);
  o->mosq = mosquitto_new("camgate-observer", true, o);
  assert_non_null(o->mosq);
  mosquitto_int_option(o->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_connect_callback_set(o->mosq, obs_on_connect);
  mosquitto_subscribe_callback_set(o->mosq, obs_on_subscribe);
  mosquitto_message_callback_set(o->mosq, obs_on_message);
  mosquitto_reconnect_delay_set(o->mosq, 1, 1, false);
  assert_int_equal(mosquitto_connect(o->mosq, "127.0.0.1", w->broker.port,
                                     10), MOSQ_ERR_SUCCESS);
  assert_int_equal(mosquitto_loop_start(o->mosq), MOSQ_ERR_SUCCESS);
  while (!obs_subscribed(o) && clock_ms() < end)
    sleep_ms(10);
  return obs_subscribed(o);
}

static void
obs_stop(struct observer *o)
{
  if (o->mosq == NULL)
    return;
  mosquitto_disconnect(o->mosq);
  mosquitto_loop_stop(o->mosq, true);
  mosquitto_destroy(o->mosq);
  o->mosq = NULL;
  obs_clear(o);
  pthread_mutex_destroy(&o->lock);
}

static void
world_config(struct world *w)
{
  static char name[] = "ha";
  static char front[] = "front";
  static char front_name[] = "Front door";
  static char nvr[] = "nvr";
  static char motion[] = "motion";

  w->front_kinds[0] = motion;
  w->cams[0].id = front;
  w->cams[0].name = front_name;
  w->cams[0].kinds = w->front_kinds;
  w->cams[0].nkinds = 1;
  w->nvr_re = g_regex_new("CH(\\d+)", 0, 0, NULL);
  w->cams[1].id = nvr;
  w->cams[1].name = nvr;
  w->cams[1].channel_from = CHANNEL_SUBJECT;
  w->cams[1].channel_re = w->nvr_re;
  w->cfg.cameras = w->cams;
  w->cfg.ncameras = 2;
  w->bc.name = name;
  w->bc.type = BACKEND_MQTT;
  fill_mqtt_conf(&w->bc.u.mqtt, w->broker.port);
  w->cfg.backends = &w->bc;
  w->cfg.nbackends = 1;
}

static void
world_open(struct world *w)
{
  char err[256] = "";

  w->be = mqtt_backend_ops.open(&w->bc, &w->cfg, w->base, w->notify, err,
                                sizeof(err));
  if (w->be == NULL)
    fail_msg("open: %s", err);
}

static int
world_setup(void **state)
{
  struct world *w = xcalloc(1, sizeof(*w));

  if (access(MOSQUITTO_BIN, X_OK) != 0) {
    free(w);
    skip();
  }
  *state = w;
  broker_prepare(&w->broker);
  world_config(w);
  w->base = event_base_new();
  assert_non_null(w->base);
  w->notify = notify_new(w->base);
  return 0;
}

static int
world_teardown(void **state)
{
  struct world *w = *state;

  if (w == NULL)
    return 0;
  if (w->be)
    mqtt_backend_ops.close(w->be);
  obs_stop(&w->obs);
  notify_free(w->notify);
  event_base_free(w->base);
  broker_cleanup(&w->broker);
  g_regex_unref(w->nvr_re);
  free(w);
  return 0;
}

static int
connected(struct world *w)
{
  return mqtt_backend_ops.capacity(w->be) > 0;
}

static void
deliver(struct world *w, const struct cam_event *ev, int phase)
{
  memset(&w->ans, 0, sizeof(w->ans));
  mqtt_backend_ops.deliver(w->be, ev, phase, record_done, &w->ans);
  /* Never answered from inside deliver(). */
  assert_int_equal(w->ans.calls, 0);
  RUN_UNTIL(w, w->ans.calls > 0, 10000);
  assert_int_equal(w->ans.calls, 1);
}

static void
check_pulse_published(struct world *w, const struct cam_event *ev)
{
  static const char *const kinds[] = {"motion", "person"};
  const struct attachment *snap = cam_event_snapshot(ev);
  struct seen last;
  char iso[MQTT_TIME_LEN];

  RUN_UNTIL(w, obs_count(&w->obs, "camgate/front/last_event") > 0, 5000);

  assert_int_equal(obs_get(&w->obs, "camgate/front/event", &last), 1);
  assert_false(last.retain);
  check_event_json((char *)last.payload, ev);
  free(last.payload);

  assert_true(obs_last_is(&w->obs, "camgate/front/person", "ON"));

  assert_int_equal(obs_get(&w->obs, "camgate/front/snapshot", &last), 1);
  assert_true(last.retain);
  assert_int_equal(last.len, snap->len);
  assert_memory_equal(last.payload, snap->data, snap->len);
  free(last.payload);

  mqtt_format_time(ev->recv_time, iso, sizeof(iso));
  assert_true(obs_last_is(&w->obs, "camgate/front/last_event", iso));

  assert_true(obs_get(&w->obs, "homeassistant/device/front/config",
                      &last) >= 2);
  assert_true(last.retain);
  check_discovery((char *)last.payload, kinds, 2);
  free(last.payload);
}

static void
test_broker_deliver(void **state)
{
  struct world *w = *state;
  struct cam_event *ev = make_event(7, "person", EVENT_PULSE);
  struct cam_event *later = make_event(8, "person", EVENT_START);
  struct cam_event *chan = make_event(9, "motion", EVENT_STOP);
  int n;

  broker_start(&w->broker);
  assert_true(obs_start(w));
  world_open(w);
  RUN_UNTIL(w, connected(w), 5000);
  assert_true(connected(w));
  RUN_UNTIL(w, obs_count(&w->obs, "homeassistant/device/front/config") > 0,
            5000);
  assert_true(obs_last_is(&w->obs, "camgate/status", "online"));
  assert_int_equal(obs_count(&w->obs, "homeassistant/device/camgate_gateway_"
                                      "camgate-test/config"), 1);
  /* The NVR's channels are not known before their events. */
  assert_int_equal(obs_count(&w->obs, "homeassistant/device/nvr/config"), 0);

  deliver(w, ev, 0);
  assert_int_equal(w->ans.st, DELIVER_LATER);
  assert_int_equal(w->ans.next_phase, 1);
  assert_int_equal(w->ans.delay_ms, 1000);
  check_pulse_published(w, ev);

  deliver(w, ev, 1);
  assert_int_equal(w->ans.st, DELIVER_DONE);
  RUN_UNTIL(w, obs_last_is(&w->obs, "camgate/front/person", "OFF"), 5000);
  assert_true(obs_last_is(&w->obs, "camgate/front/person", "OFF"));

  /* A later start owns the state: the older pulse's OFF stays home. */
  deliver(w, later, 0);
  assert_int_equal(w->ans.st, DELIVER_LATER);
  assert_int_equal(w->ans.delay_ms, 5000);
  RUN_UNTIL(w, obs_last_is(&w->obs, "camgate/front/person", "ON"), 5000);
  n = obs_count(&w->obs, "camgate/front/person");
  deliver(w, ev, 1);
  assert_int_equal(w->ans.st, DELIVER_DONE);
  loop_for(w->base, 200);
  assert_int_equal(obs_count(&w->obs, "camgate/front/person"), n);
  deliver(w, later, 1);
  assert_int_equal(w->ans.st, DELIVER_DONE);
  RUN_UNTIL(w, obs_last_is(&w->obs, "camgate/front/person", "OFF"), 5000);
  assert_true(obs_last_is(&w->obs, "camgate/front/person", "OFF"));

  /* A channel of the NVR is announced with its first event; a stop is
   * done in one phase. */
  cam_event_set(&chan->camera, "nvr-3");
  cam_event_set(&chan->camera_name, "NVR 3");
  deliver(w, chan, 0);
  assert_int_equal(w->ans.st, DELIVER_DONE);
  RUN_UNTIL(w, obs_count(&w->obs, "homeassistant/device/nvr-3/config") > 0,
            5000);
  assert_true(obs_last_is(&w->obs, "camgate/nvr-3/motion", "OFF"));

  /* Home Assistant came back: everything is announced again. */
  n = obs_count(&w->obs, "homeassistant/device/front/config");
  mosquitto_publish(w->obs.mosq, NULL, "homeassistant/status", 6, "online",
                    1, false);
  RUN_UNTIL(w, obs_count(&w->obs, "homeassistant/device/nvr-3/config") > 1,
            5000);
  assert_int_equal(obs_count(&w->obs, "homeassistant/device/front/config"),
                   n + 1);

  /* A clean close says offline, and the will is not needed. */
  assert_true(mqtt_backend_ops.idle(w->be));
  mqtt_backend_ops.close(w->be);
  w->be = NULL;
  RUN_UNTIL(w, obs_last_is(&w->obs, "camgate/status", "offline"), 5000);
  assert_true(obs_last_is(&w->obs, "camgate/status", "offline"));

  cam_event_free(chan);
  cam_event_free(later);
  cam_event_free(ev);
}

static void
test_broker_outage(void **state)
{
  struct world *w = *state;
  struct cam_event *ev = make_event(11, "motion", EVENT_PULSE);

  broker_start(&w->broker);
  assert_true(obs_start(w));
  world_open(w);
  RUN_UNTIL(w, connected(w), 5000);
  assert_true(connected(w));

  /* The broker hangs, then dies, with the publishes unacknowledged. */
  kill(w->broker.pid, SIGSTOP);
  memset(&w->ans, 0, sizeof(w->ans));
  mqtt_backend_ops.deliver(w->be, ev, 0, record_done, &w->ans);
  loop_for(w->base, 300);
  assert_int_equal(w->ans.calls, 0);
  assert_false(mqtt_backend_ops.idle(w->be));
  broker_kill(&w->broker, SIGKILL);
  RUN_UNTIL(w, w->ans.calls > 0, 5000);
  assert_int_equal(w->ans.calls, 1);
  assert_int_equal(w->ans.st, DELIVER_RETRY);
  assert_string_equal(w->ans.error, "broker connection lost");
  assert_int_equal(mqtt_backend_ops.capacity(w->be), 0);

  /* Down: no room, and a delivery is turned away, later. */
  deliver(w, ev, 0);
  assert_int_equal(w->ans.st, DELIVER_RETRY);
  assert_string_equal(w->ans.error, "broker not connected");
  assert_int_equal(mqtt_backend_ops.capacity(w->be), 0);

  /* Back on the same port: reconnected, online again, delivering. */
  obs_clear(&w->obs);
  broker_start(&w->broker);
  RUN_UNTIL(w, connected(w), 15000);
  assert_true(connected(w));
  RUN_UNTIL(w, obs_last_is(&w->obs, "camgate/status", "online"), 5000);
  assert_true(obs_last_is(&w->obs, "camgate/status", "online"));
  deliver(w, ev, 0);
  assert_int_equal(w->ans.st, DELIVER_LATER);
  cam_event_free(ev);
}

/* Closing while the network thread sleeps in its reconnect backoff, or
 * waits for a first connection, does not wait for it. */
static void
test_broker_close_down(void **state)
{
  struct world *w = *state;
  int64_t t;

  broker_start(&w->broker);
  world_open(w);
  RUN_UNTIL(w, connected(w), 5000);
  assert_true(connected(w));
  broker_kill(&w->broker, SIGTERM);
  RUN_UNTIL(w, !connected(w), 5000);
  loop_for(w->base, 1500);
  t = clock_ms();
  mqtt_backend_ops.close(w->be);
  w->be = NULL;
  assert_true(clock_ms() - t < 1000);

  world_open(w);
  loop_for(w->base, 100);
  t = clock_ms();
  mqtt_backend_ops.close(w->be);
  w->be = NULL;
  assert_true(clock_ms() - t < 1000);
}

/* The daemon may start before its broker. */
static void
test_broker_late(void **state)
{
  struct world *w = *state;

  world_open(w);
  loop_for(w->base, 300);
  assert_int_equal(mqtt_backend_ops.capacity(w->be), 0);
  broker_start(&w->broker);
  RUN_UNTIL(w, connected(w), 15000);
  assert_true(connected(w));
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_slug),
    cmocka_unit_test(test_kind_slug),
    cmocka_unit_test(test_format_time),
    cmocka_unit_test(test_device_class),
    cmocka_unit_test(test_event_json),
    cmocka_unit_test(test_discovery_json),
    cmocka_unit_test_setup_teardown(test_broker_deliver, world_setup,
                                    world_teardown),
    cmocka_unit_test_setup_teardown(test_broker_outage, world_setup,
                                    world_teardown),
    cmocka_unit_test_setup_teardown(test_broker_close_down, world_setup,
                                    world_teardown),
    cmocka_unit_test_setup_teardown(test_broker_late, world_setup,
                                    world_teardown),
  };

  signal(SIGPIPE, SIG_IGN);
  evthread_use_pthreads();
  mosquitto_lib_init();
  log_set_level(LOGL_WARN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
