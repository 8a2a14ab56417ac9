/* mqtt.c - the MQTT backend: events to a broker, for Home Assistant.
 *
 * libmosquitto runs its own network thread (mosquitto_loop_start) and
 * reconnects by itself with a 1 s to 60 s backoff. Its callbacks run on
 * that thread, so each one only posts a message to the main loop through
 * notify; the backend's state is read and written on the main loop alone.
 * Publishing from the main thread while the network thread runs is what
 * libmosquitto's threaded mode is made for.
 *
 * A delivery publishes its messages at QoS 1 and answers once the broker
 * has acknowledged every one of them. If the connection drops first, it
 * answers DELIVER_RETRY; libmosquitto may still resend the old messages
 * after it reconnects, so a consumer can see an event twice and should
 * key on its "id" (QoS 1 is at-least-once in any case). */
#include "backends/mqtt.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <mosquitto.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "gateway/log.h"
#include "gateway/notify.h"
#include "gateway/snapshot.h"

#ifndef CAMGATE_VERSION
#define CAMGATE_VERSION "unknown"
#endif

#define MQTT_WINDOW 32              /* deliveries in flight at most */
#define MQTT_MAX_MIDS 8             /* publishes of one delivery phase */
#define MQTT_PUBLISH_TIMEOUT_MS 30000
#define MQTT_RETRY_MAX_S 60         /* our own connect attempts' backoff */
#define MQTT_RESTART_MS 60000       /* after the network thread gave up */
#define MQTT_WATCHDOG_MS 120000     /* down this long: restart the thread */
#define MQTT_SHORT_MS 10000         /* a connection lost sooner is suspect */
#define MQTT_MAX_CAMERAS 4096
#define MQTT_MAX_KINDS 64
#define MQTT_ERR_LEN 160
/* Pictures published as the camera sent them up to this size; a larger
 * one would be read into memory and copied again by libmosquitto. */
#define MQTT_PICTURE_MAX (4u << 20)
/* MQTT's remaining-length limit, less room for the topic and header. */
#define MQTT_MAX_PAYLOAD (268435455 - 65536)

/* What a kind's binary_sensor looks like in Home Assistant. HA has no
 * class per detected object, so objects use "occupancy" (shown as
 * Detected / Clear: something of that type is in view) rather than
 * "presence" (Home / Away) or "moving" (the sensor itself moves). Line
 * crossing and intrusion are movement into a zone: "motion". A doorbell
 * has no class of its own; "sound" is what HA users pick for one. Video
 * loss and the catch-all "alert" are faults to look at: "problem". */
static const struct {
  const char *kind;
  const char *device_class;
} mqtt_classes[] = {
  {"motion", "motion"},
  {"line_crossing", "motion"},
  {"intrusion", "motion"},
  {"person", "occupancy"},
  {"vehicle", "occupancy"},
  {"animal", "occupancy"},
  {"face", "occupancy"},
  {"doorbell", "sound"},
  {"sound", "sound"},
  {"audio", "sound"},
  {"tamper", "tamper"},
  {"video_loss", "problem"},
  {"alert", "problem"},
};

/* The leaves under P/<camera>/ that a kind's state topic must not take. */
static const char *const mqtt_leaves[] = {"event", "snapshot", "last_event"};

struct mqtt_kind {
  char *name;
  int64_t last_id;          /* newest event whose state went out */
};

struct mqtt_cam {
  char *id;
  char *slug;
  char *name;
  struct mqtt_kind *kinds;
  size_t nkinds;
  unsigned disc_gen;        /* connection that has its discovery; 0: none */
  struct mqtt_cam *next;
};

struct mqtt;

struct mqtt_dlv {
  struct mqtt *m;
  struct event *timer;      /* the publish timeout, or the posted answer */
  int64_t ev_id;
  int phase;
  enum event_state state;
  int mids[MQTT_MAX_MIDS];  /* publishes still waiting for PUBACK */
  size_t nmids;
  int answered;             /* the answer below is decided */
  enum deliver_status st;
  int next_phase;
  int64_t delay_ms;
  char error[MQTT_ERR_LEN];
  deliver_done_fn done;
  void *ctx;
  struct mqtt_dlv *next;
};

struct mqtt {
  /* One reference for the backend, one per message posted to the loop:
   * messages can still be queued when close() has run. */
  atomic_int refs;
  const char *name;
  const struct mqtt_conf *mc;
  struct event_base *base;
  struct notify *notify;
  struct mosquitto *mosq;
  struct event *timer;      /* the next connect attempt, or watchdog */
  int retry_s;              /* > 0: that attempt is ours, after this */
  int port;
  char *status_topic;
  char *ha_status_topic;
  int connected;
  int64_t connected_at;     /* mono_ms() of the last connection */
  int closed;
  int warned_cap;
  unsigned gen;             /* connections so far */
  struct mqtt_cam *cams;
  size_t ncams;
  struct mqtt_dlv *dlvs;
  size_t ndlvs;
};

enum mqtt_msg_type {
  MQTT_MSG_CONNECT,
  MQTT_MSG_DISCONNECT,
  MQTT_MSG_PUBACK,
  MQTT_MSG_HA_ONLINE
};

/* A callback of the network thread, on its way to the main loop. */
struct mqtt_msg {
  struct mqtt *m;
  enum mqtt_msg_type type;
  int code;                 /* CONNACK code, disconnect reason or mid */
  int ends_loop;            /* the network thread is about to stop */
};

static pthread_once_t mqtt_lib_once = PTHREAD_ONCE_INIT;

static const char *
mqtt_prefix(const struct mqtt_conf *mc)
{
  return mc->topic_prefix ? mc->topic_prefix : "camgate";
}

static const char *
mqtt_disc_prefix(const struct mqtt_conf *mc)
{
  return mc->discovery_prefix ? mc->discovery_prefix : "homeassistant";
}

static const char *
mqtt_client_id(const struct mqtt_conf *mc)
{
  return mc->client_id ? mc->client_id : "camgate";
}

static int
mqtt_slug_ok(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-';
}

char *
mqtt_slug(const char *s)
{
  size_t n = s ? strlen(s) : 0;
  char *out;

  if (n == 0)
    return xstrdup("_");
  out = xmalloc(n + 1);
  for (size_t i = 0; i < n; i++)
    out[i] = mqtt_slug_ok((unsigned char)s[i]) ? s[i] : '_';
  out[n] = '\0';
  return out;
}

char *
mqtt_kind_slug(const char *kind)
{
  char *s = mqtt_slug(kind);
  char *p;

  for (size_t i = 0; i < sizeof(mqtt_leaves) / sizeof(mqtt_leaves[0]); i++) {
    if (strcmp(s, mqtt_leaves[i]) == 0) {
      p = xasprintf("kind_%s", s);
      free(s);
      return p;
    }
  }
  return s;
}

void
mqtt_format_time(int64_t ms, char *buf, size_t bufsz)
{
  time_t sec = (time_t)(ms / 1000);
  int milli = (int)(ms % 1000);
  struct tm tm;
  size_t n;

  if (bufsz == 0)
    return;
  buf[0] = '\0';
  if (milli < 0) {
    milli += 1000;
    sec--;
  }
  if (gmtime_r(&sec, &tm) == NULL)
    return;
  n = strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%S", &tm);
  if (n == 0) {
    buf[0] = '\0';
    return;
  }
  snprintf(buf + n, bufsz - n, ".%03dZ", milli);
}

const char *
mqtt_device_class(const char *kind)
{
  if (kind == NULL)
    return NULL;
  for (size_t i = 0; i < sizeof(mqtt_classes) / sizeof(mqtt_classes[0]);
       i++)
    if (strcmp(kind, mqtt_classes[i].kind) == 0)
      return mqtt_classes[i].device_class;
  return NULL;
}

/* Camera text is not always UTF-8 and jansson takes nothing else: such a
 * string keeps its ASCII and loses the rest, rather than the event. */
static json_t *
mqtt_json_text(const char *s)
{
  json_t *j;
  char *copy;

  if (s == NULL)
    return json_null();
  j = json_string(s);
  if (j)
    return j;
  copy = xstrdup(s);
  for (char *p = copy; *p; p++)
    if ((unsigned char)*p >= 0x80)
      *p = '?';
  j = json_string(copy);
  free(copy);
  return j ? j : json_null();
}

static void
mqtt_json_set(json_t *obj, const char *key, const char *value)
{
  json_object_set_new(obj, key, mqtt_json_text(value));
}

/* Returns the compact text of root and drops root. */
static char *
mqtt_json_dump(json_t *root)
{
  char *s = json_dumps(root, JSON_COMPACT);

  json_decref(root);
  if (s == NULL)
    fatal("mqtt: out of memory writing JSON");
  return s;
}

static json_t *
mqtt_json_time(int64_t ms)
{
  char buf[MQTT_TIME_LEN];

  if (ms == 0)
    return json_null();
  mqtt_format_time(ms, buf, sizeof(buf));
  return json_string(buf);
}

static json_t *
mqtt_json_labels(const struct cam_event *ev)
{
  json_t *labels = json_object();

  for (size_t i = 0; i < ev->nlabels; i++) {
    json_t *key = mqtt_json_text(ev->labels[i].key);

    if (json_is_string(key))
      json_object_set_new(labels, json_string_value(key),
                          mqtt_json_text(ev->labels[i].value));
    json_decref(key);
  }
  return labels;
}

char *
mqtt_event_json(const struct cam_event *ev)
{
  const struct attachment *snap = cam_event_snapshot(ev);
  json_t *root = json_object();

  json_object_set_new(root, "id", json_integer(ev->id));
  mqtt_json_set(root, "camera", ev->camera);
  mqtt_json_set(root, "camera_name", ev->camera_name);
  mqtt_json_set(root, "source", ev->source);
  mqtt_json_set(root, "kind", ev->kind);
  mqtt_json_set(root, "state", event_state_name(ev->state));
  json_object_set_new(root, "device_time", mqtt_json_time(ev->device_time));
  json_object_set_new(root, "recv_time", mqtt_json_time(ev->recv_time));
  mqtt_json_set(root, "title", ev->title);
  mqtt_json_set(root, "text", ev->text);
  json_object_set_new(root, "labels", mqtt_json_labels(ev));
  json_object_set_new(root, "snapshot_size",
                      json_integer(snap ? (json_int_t)snap->len : 0));
  json_object_set_new(root, "attachments",
                      json_integer((json_int_t)ev->natt));
  return mqtt_json_dump(root);
}

static json_t *
mqtt_json_origin(void)
{
  json_t *o = json_object();

  mqtt_json_set(o, "name", "camgate");
  mqtt_json_set(o, "sw", CAMGATE_VERSION);
  return o;
}

static json_t *
mqtt_json_device(const char *id, const char *name, const char *model,
                 const char *via)
{
  json_t *dev = json_object();
  json_t *ids = json_array();

  json_array_append_new(ids, mqtt_json_text(id));
  json_object_set_new(dev, "ids", ids);
  mqtt_json_set(dev, "name", name);
  mqtt_json_set(dev, "mf", "camgate");
  mqtt_json_set(dev, "mdl", model);
  if (via)
    mqtt_json_set(dev, "via_device", via);
  else
    mqtt_json_set(dev, "sw", CAMGATE_VERSION);
  return dev;
}

/* Adds to cmps, under key, a component of platform p whose unique id
 * is "<dev>_<key>", and returns it (cmps holds the reference). */
static json_t *
mqtt_json_component(json_t *cmps, const char *p, const char *dev,
                    const char *key, const char *name)
{
  json_t *c = json_object();
  char *uid = xasprintf("%s_%s", dev, key);

  mqtt_json_set(c, "p", p);
  mqtt_json_set(c, "name", name);
  mqtt_json_set(c, "unique_id", uid);
  json_object_set_new(cmps, key, c);
  free(uid);
  return c;
}

/* "line_crossing" reads "Line crossing" in Home Assistant. */
static char *
mqtt_kind_title(const char *kind)
{
  char *t = xstrdup(kind);

  for (char *p = t; *p; p++)
    if (*p == '_')
      *p = ' ';
  if (t[0] >= 'a' && t[0] <= 'z')
    t[0] = (char)(t[0] - 'a' + 'A');
  return t;
}

static void
mqtt_json_kind(json_t *cmps, const struct mqtt_conf *mc, const char *dev,
               const char *cam_slug, const char *kind)
{
  char *kslug = mqtt_kind_slug(kind);
  char *title = mqtt_kind_title(kind);
  char *topic = xasprintf("%s/%s/%s", mqtt_prefix(mc), cam_slug, kslug);
  const char *cls = mqtt_device_class(kind);
  json_t *c = mqtt_json_component(cmps, "binary_sensor", dev, kslug, title);

  mqtt_json_set(c, "state_topic", topic);
  mqtt_json_set(c, "payload_on", "ON");
  mqtt_json_set(c, "payload_off", "OFF");
  if (cls)
    mqtt_json_set(c, "device_class", cls);
  free(topic);
  free(title);
  free(kslug);
}

static void
mqtt_json_media(json_t *cmps, const struct mqtt_conf *mc, const char *dev,
                const char *cam_slug, const char *const *kinds,
                size_t nkinds)
{
  const char *p = mqtt_prefix(mc);
  char *topic = xasprintf("%s/%s/snapshot", p, cam_slug);
  json_t *c = mqtt_json_component(cmps, "image", dev, "snapshot",
                                  "Snapshot");
  json_t *types;

  mqtt_json_set(c, "image_topic", topic);
  mqtt_json_set(c, "content_type", "image/jpeg");
  free(topic);

  /* HA refuses an event entity without event types; a camera that has
   * no kind yet gets one when its first event republishes this. */
  if (nkinds) {
    topic = xasprintf("%s/%s/event", p, cam_slug);
    c = mqtt_json_component(cmps, "event", dev, "event", "Event");
    types = json_array();
    for (size_t i = 0; i < nkinds; i++)
      json_array_append_new(types, mqtt_json_text(kinds[i]));
    mqtt_json_set(c, "state_topic", topic);
    json_object_set_new(c, "event_types", types);
    mqtt_json_set(c, "value_template",
                  "{{ {'event_type': value_json.kind} | tojson }}");
    free(topic);
  }

  topic = xasprintf("%s/%s/last_event", p, cam_slug);
  c = mqtt_json_component(cmps, "sensor", dev, "last_event", "Last event");
  mqtt_json_set(c, "state_topic", topic);
  mqtt_json_set(c, "device_class", "timestamp");
  free(topic);
}

char *
mqtt_discovery_json(const struct mqtt_conf *mc, const char *camera,
                    const char *camera_name, const char *const *kinds,
                    size_t nkinds)
{
  char *slug = mqtt_slug(camera);
  char *cid = mqtt_slug(mqtt_client_id(mc));
  char *dev = xasprintf("camgate_%s", slug);
  char *via = xasprintf("camgate_gateway_%s", cid);
  char *status = xasprintf("%s/status", mqtt_prefix(mc));
  json_t *root = json_object();
  json_t *cmps = json_object();

  json_object_set_new(root, "dev",
                      mqtt_json_device(dev, camera_name ? camera_name
                                                        : camera,
                                       "camera", via));
  json_object_set_new(root, "o", mqtt_json_origin());
  for (size_t i = 0; i < nkinds; i++)
    mqtt_json_kind(cmps, mc, dev, slug, kinds[i]);
  mqtt_json_media(cmps, mc, dev, slug, kinds, nkinds);
  json_object_set_new(root, "cmps", cmps);
  /* Shared by every component: all go unavailable with the gateway. */
  mqtt_json_set(root, "availability_topic", status);
  mqtt_json_set(root, "payload_available", "online");
  mqtt_json_set(root, "payload_not_available", "offline");
  json_object_set_new(root, "qos", json_integer(1));
  free(status);
  free(via);
  free(dev);
  free(cid);
  free(slug);
  return mqtt_json_dump(root);
}

char *
mqtt_gateway_json(const struct mqtt_conf *mc)
{
  char *cid = mqtt_slug(mqtt_client_id(mc));
  char *dev = xasprintf("camgate_gateway_%s", cid);
  char *name = xasprintf("camgate %s", mqtt_client_id(mc));
  char *status = xasprintf("%s/status", mqtt_prefix(mc));
  json_t *root = json_object();
  json_t *cmps = json_object();
  json_t *c;

  json_object_set_new(root, "dev",
                      mqtt_json_device(dev, name, "gateway", NULL));
  json_object_set_new(root, "o", mqtt_json_origin());
  /* No availability here: this sensor must read Disconnected, not
   * Unavailable, when the gateway is gone. */
  c = mqtt_json_component(cmps, "binary_sensor", dev, "connectivity",
                          "Connectivity");
  mqtt_json_set(c, "state_topic", status);
  mqtt_json_set(c, "payload_on", "online");
  mqtt_json_set(c, "payload_off", "offline");
  mqtt_json_set(c, "device_class", "connectivity");
  json_object_set_new(root, "cmps", cmps);
  json_object_set_new(root, "qos", json_integer(1));
  free(status);
  free(name);
  free(dev);
  free(cid);
  return mqtt_json_dump(root);
}

/* The backend proper. Everything below runs on the main loop, except the
 * mqtt_on_* callbacks and mqtt_post(). */

static void
mqtt_unref(struct mqtt *m)
{
  if (atomic_fetch_sub(&m->refs, 1) != 1)
    return;
  free(m->status_topic);
  free(m->ha_status_topic);
  free(m);
}

static void
mqtt_cams_free(struct mqtt *m)
{
  while (m->cams) {
    struct mqtt_cam *c = m->cams;

    m->cams = c->next;
    for (size_t i = 0; i < c->nkinds; i++)
      free(c->kinds[i].name);
    free(c->kinds);
    free(c->id);
    free(c->slug);
    free(c->name);
    free(c);
  }
  m->ncams = 0;
}

static void
mqtt_cap_warn(struct mqtt *m, const char *what)
{
  if (m->warned_cap)
    return;
  m->warned_cap = 1;
  log_warn("mqtt", "backend=%s msg=\"too many %s; the rest get no Home "
           "Assistant discovery\"", m->name, what);
}

static struct mqtt_cam *
mqtt_cam_find(const struct mqtt *m, const char *id)
{
  for (struct mqtt_cam *c = m->cams; c; c = c->next)
    if (strcmp(c->id, id) == 0)
      return c;
  return NULL;
}

/* Returns the camera id, made known when new; NULL past the cap. A new
 * display name makes its discovery due again. */
static struct mqtt_cam *
mqtt_cam_get(struct mqtt *m, const char *id, const char *name)
{
  struct mqtt_cam *c = mqtt_cam_find(m, id);

  if (c) {
    if (name && strcmp(c->name, name) != 0) {
      free(c->name);
      c->name = xstrdup(name);
      c->disc_gen = 0;
    }
    return c;
  }
  if (m->ncams >= MQTT_MAX_CAMERAS) {
    mqtt_cap_warn(m, "cameras");
    return NULL;
  }
  c = xcalloc(1, sizeof(*c));
  c->id = xstrdup(id);
  c->slug = mqtt_slug(id);
  c->name = xstrdup(name ? name : id);
  c->next = m->cams;
  m->cams = c;
  m->ncams++;
  return c;
}

static struct mqtt_kind *
mqtt_kind_find(const struct mqtt_cam *c, const char *kind)
{
  for (size_t i = 0; i < c->nkinds; i++)
    if (strcmp(c->kinds[i].name, kind) == 0)
      return &c->kinds[i];
  return NULL;
}

/* Returns the camera's entry for kind, added (and *added set) when new;
 * NULL past the cap. */
static struct mqtt_kind *
mqtt_kind_get(struct mqtt *m, struct mqtt_cam *c, const char *kind,
              int *added)
{
  struct mqtt_kind *k = mqtt_kind_find(c, kind);

  if (k)
    return k;
  if (c->nkinds >= MQTT_MAX_KINDS) {
    mqtt_cap_warn(m, "kinds");
    return NULL;
  }
  c->kinds = xrealloc(c->kinds, (c->nkinds + 1) * sizeof(*c->kinds));
  k = &c->kinds[c->nkinds++];
  k->name = xstrdup(kind);
  k->last_id = 0;
  if (added)
    *added = 1;
  return k;
}

/* Channel ids of an NVR are only known once its events name them, so
 * only plain cameras are announced up front. */
static void
mqtt_cams_configured(struct mqtt *m, const struct config *cfg)
{
  for (size_t i = 0; cfg && i < cfg->ncameras; i++) {
    const struct camera_conf *cc = &cfg->cameras[i];
    struct mqtt_cam *c;

    if (cc->channel_re || cc->id == NULL)
      continue;
    c = mqtt_cam_get(m, cc->id, cc->name);
    for (size_t j = 0; c && j < cc->nkinds; j++)
      mqtt_kind_get(m, c, cc->kinds[j], NULL);
  }
}

/* Publishes at QoS 1. With d, the message id joins what d waits for. */
static int
mqtt_pub(struct mqtt *m, struct mqtt_dlv *d, const char *topic,
         const void *payload, size_t len, int retain)
{
  int mid = 0;
  int rc;

  if (len > MQTT_MAX_PAYLOAD)
    return MOSQ_ERR_PAYLOAD_SIZE;
  if (d && d->nmids == MQTT_MAX_MIDS)
    fatal("mqtt: more than %d publishes in one delivery", MQTT_MAX_MIDS);
  rc = mosquitto_publish(m->mosq, &mid, topic, (int)len, payload, 1,
                         retain != 0);
  if (rc != MOSQ_ERR_SUCCESS) {
    log_warn("mqtt", "backend=%s topic=%s error=\"%s\" msg=\"publish "
             "failed\"", m->name, topic, mosquitto_strerror(rc));
    return rc;
  }
  log_debug("mqtt", "backend=%s topic=%s bytes=%zu mid=%d retain=%d",
            m->name, topic, len, mid, retain);
  if (d)
    d->mids[d->nmids++] = mid;
  return MOSQ_ERR_SUCCESS;
}

static int
mqtt_pub_text(struct mqtt *m, struct mqtt_dlv *d, const char *topic,
              const char *text, int retain)
{
  return mqtt_pub(m, d, topic, text, strlen(text), retain);
}

/* Publishes cam's discovery document; with d, as part of d. */
static int
mqtt_announce(struct mqtt *m, struct mqtt_cam *cam, struct mqtt_dlv *d)
{
  const char **kinds = xcalloc(cam->nkinds, sizeof(*kinds));
  char *json;
  char *topic;
  int rc;

  for (size_t i = 0; i < cam->nkinds; i++)
    kinds[i] = cam->kinds[i].name;
  json = mqtt_discovery_json(m->mc, cam->id, cam->name, kinds, cam->nkinds);
  topic = xasprintf("%s/device/%s/config", mqtt_disc_prefix(m->mc),
                      cam->slug);
  rc = mqtt_pub_text(m, d, topic, json, 1);
  if (rc == MOSQ_ERR_SUCCESS)
    cam->disc_gen = m->gen;
  free(topic);
  free(json);
  free(kinds);
  return rc;
}

static void
mqtt_announce_all(struct mqtt *m)
{
  char *cid = mqtt_slug(mqtt_client_id(m->mc));
  char *topic = xasprintf("%s/device/camgate_gateway_%s/config",
                            mqtt_disc_prefix(m->mc), cid);
  char *json = mqtt_gateway_json(m->mc);

  mqtt_pub_text(m, NULL, topic, json, 1);
  for (struct mqtt_cam *c = m->cams; c; c = c->next)
    mqtt_announce(m, c, NULL);
  log_info("mqtt", "backend=%s cameras=%zu msg=\"discovery published\"",
           m->name, m->ncams);
  free(json);
  free(topic);
  free(cid);
}

static void
mqtt_dlv_unlink(struct mqtt *m, struct mqtt_dlv *d)
{
  struct mqtt_dlv **pp = &m->dlvs;

  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = d->next;
    m->ndlvs--;
  }
}

/* Frees d, then gives its answer: done() may start the next delivery. */
static void
mqtt_finish(struct mqtt_dlv *d, enum deliver_status st, int next_phase,
            int64_t delay_ms, const char *error)
{
  deliver_done_fn done = d->done;
  void *ctx = d->ctx;
  char err[MQTT_ERR_LEN];

  snprintf(err, sizeof(err), "%s", error ? error : "");
  mqtt_dlv_unlink(d->m, d);
  event_free(d->timer);
  free(d);
  done(ctx, st, next_phase, delay_ms, err[0] ? err : NULL);
}

static void
mqtt_dlv_timer(evutil_socket_t fd, short what, void *arg)
{
  struct mqtt_dlv *d = arg;

  (void)fd;
  (void)what;
  if (d->answered) {
    mqtt_finish(d, d->st, d->next_phase, d->delay_ms, d->error);
    return;
  }
  log_warn("mqtt", "backend=%s event=%" PRId64 " phase=%d pending=%zu "
           "msg=\"no PUBACK in time\"", d->m->name, d->ev_id, d->phase,
           d->nmids);
  mqtt_finish(d, DELIVER_RETRY, 0, 0, "publish timed out");
}

static struct mqtt_dlv *
mqtt_dlv_new(struct mqtt *m, const struct cam_event *ev, int phase,
             deliver_done_fn done, void *ctx)
{
  struct mqtt_dlv *d = xcalloc(1, sizeof(*d));

  d->m = m;
  d->ev_id = ev->id;
  d->phase = phase;
  d->state = ev->state;
  d->done = done;
  d->ctx = ctx;
  d->timer = evtimer_new(m->base, mqtt_dlv_timer, d);
  if (d->timer == NULL)
    fatal("mqtt: evtimer_new failed");
  d->next = m->dlvs;
  m->dlvs = d;
  m->ndlvs++;
  return d;
}

/* Answers d on a later turn of the loop, never inside deliver(). The
 * timer rather than a notify post keeps d in the list, where close()
 * can still answer it. */
static void
mqtt_dlv_answer(struct mqtt_dlv *d, enum deliver_status st, int next_phase,
                int64_t delay_ms, const char *error)
{
  struct timeval now = {0, 0};

  d->answered = 1;
  d->nmids = 0;
  d->st = st;
  d->next_phase = next_phase;
  d->delay_ms = delay_ms;
  snprintf(d->error, sizeof(d->error), "%s", error ? error : "");
  evtimer_add(d->timer, &now);
}

static void
mqtt_dlv_acked(struct mqtt_dlv *d)
{
  const struct mqtt_conf *mc = d->m->mc;

  if (d->phase != 0 || d->state == EVENT_STOP)
    mqtt_finish(d, DELIVER_DONE, 0, 0, NULL);
  else if (d->state == EVENT_PULSE)
    mqtt_finish(d, DELIVER_LATER, 1, (int64_t)mc->hold * 1000, NULL);
  else
    mqtt_finish(d, DELIVER_LATER, 1, (int64_t)mc->start_timeout * 1000,
                NULL);
}

static void
mqtt_puback(struct mqtt *m, int mid)
{
  for (struct mqtt_dlv *d = m->dlvs; d; d = d->next) {
    if (d->answered)
      continue;
    for (size_t i = 0; i < d->nmids; i++) {
      if (d->mids[i] != mid)
        continue;
      d->mids[i] = d->mids[--d->nmids];
      if (d->nmids == 0)
        mqtt_dlv_acked(d);
      return;
    }
  }
}

/* Answers every delivery still waiting for the broker. Each answer may
 * start another delivery, so the walk starts over after each. */
static void
mqtt_fail_waiting(struct mqtt *m, const char *why)
{
  struct mqtt_dlv *d = m->dlvs;

  while (d) {
    if (d->answered) {
      d = d->next;
      continue;
    }
    mqtt_finish(d, DELIVER_RETRY, 0, 0, why);
    d = m->dlvs;
  }
}

static void
mqtt_timer_arm(struct mqtt *m, int64_t ms)
{
  struct timeval tv;

  tv.tv_sec = (time_t)(ms / 1000);
  tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
  evtimer_add(m->timer, &tv);
}

static void
mqtt_handle_connect(struct mqtt *m, int rc)
{
  if (rc != 0) {
    log_warn("mqtt", "backend=%s host=%s port=%d reason=\"%s\" "
             "msg=\"broker refused the connection\"", m->name,
             m->mc->host, m->port, mosquitto_connack_string(rc));
    return;
  }
  m->connected = 1;
  m->connected_at = mono_ms();
  m->gen++;
  if (m->gen == 0)
    m->gen = 1;
  m->retry_s = 0;
  evtimer_del(m->timer);
  log_info("mqtt", "backend=%s host=%s port=%d msg=\"connected\"", m->name,
           m->mc->host, m->port);
  mqtt_pub_text(m, NULL, m->status_topic, "online", 1);
  if (!m->mc->discovery)
    return;
  rc = mosquitto_subscribe(m->mosq, NULL, m->ha_status_topic, 1);
  if (rc != MOSQ_ERR_SUCCESS)
    log_warn("mqtt", "backend=%s topic=%s error=\"%s\" msg=\"subscribe "
             "failed\"", m->name, m->ha_status_topic,
             mosquitto_strerror(rc));
  mqtt_announce_all(m);
}

static void
mqtt_handle_disconnect(struct mqtt *m, int rc, int ends_loop)
{
  /* A broker drops the older of two clients with one client id at
   * once; both reconnect and drop each other in turn. */
  if (m->connected && mono_ms() - m->connected_at < MQTT_SHORT_MS)
    log_warn("mqtt", "backend=%s host=%s port=%d client_id=%s "
             "connected_ms=%" PRId64 " reason=\"%s\" msg=\"disconnected "
             "right after connecting; reconnecting. If this repeats, "
             "another client may use the same client_id (give each its "
             "own), or the broker refuses what camgate publishes (see its "
             "log)\"", m->name, m->mc->host, m->port,
             mqtt_client_id(m->mc), mono_ms() - m->connected_at,
             mosquitto_strerror(rc));
  else if (m->connected)
    log_warn("mqtt", "backend=%s host=%s port=%d reason=\"%s\" "
             "msg=\"disconnected; reconnecting\"", m->name, m->mc->host,
             m->port, mosquitto_strerror(rc));
  m->connected = 0;
  mqtt_fail_waiting(m, "broker connection lost");
  if (ends_loop) {
    log_error("mqtt", "backend=%s reason=\"%s\" restart_in_s=%d "
              "msg=\"network thread stopped\"", m->name,
              mosquitto_strerror(rc), MQTT_RESTART_MS / 1000);
    m->retry_s = 0;
    mqtt_timer_arm(m, MQTT_RESTART_MS);
  } else if (!evtimer_pending(m->timer, NULL)) {
    mqtt_timer_arm(m, MQTT_WATCHDOG_MS);
  }
}

static void
mqtt_msg_run(void *arg)
{
  struct mqtt_msg *msg = arg;
  struct mqtt *m = msg->m;

  if (!m->closed) {
    switch (msg->type) {
    case MQTT_MSG_CONNECT:
      mqtt_handle_connect(m, msg->code);
      break;
    case MQTT_MSG_DISCONNECT:
      mqtt_handle_disconnect(m, msg->code, msg->ends_loop);
      break;
    case MQTT_MSG_PUBACK:
      mqtt_puback(m, msg->code);
      break;
    case MQTT_MSG_HA_ONLINE:
      log_info("mqtt", "backend=%s msg=\"Home Assistant is online\"",
               m->name);
      if (m->connected)
        mqtt_announce_all(m);
      break;
    }
  }
  free(msg);
  mqtt_unref(m);
}

/* Network thread. Cancellation is held off while the post takes the
 * notify and libevent locks, since close() may cancel this thread; errno
 * is kept because libmosquitto reads it after the callback returns. */
static void
mqtt_post(struct mqtt *m, enum mqtt_msg_type type, int code, int ends_loop)
{
  struct mqtt_msg *msg;
  int saved = errno;
  int cs;

  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
  msg = xmalloc(sizeof(*msg));
  msg->m = m;
  msg->type = type;
  msg->code = code;
  msg->ends_loop = ends_loop;
  atomic_fetch_add(&m->refs, 1);
  notify_post(m->notify, mqtt_msg_run, msg);
  pthread_setcancelstate(cs, NULL);
  errno = saved;
}

/* Whether mosquitto_loop_forever() gives up after this error instead of
 * reconnecting: the same list it keeps. */
static int
mqtt_rc_ends_loop(int rc, int err)
{
  switch (rc) {
  case MOSQ_ERR_NOMEM:
  case MOSQ_ERR_PROTOCOL:
  case MOSQ_ERR_INVAL:
  case MOSQ_ERR_NOT_FOUND:
  case MOSQ_ERR_TLS:
  case MOSQ_ERR_PAYLOAD_SIZE:
  case MOSQ_ERR_NOT_SUPPORTED:
  case MOSQ_ERR_AUTH:
  case MOSQ_ERR_ACL_DENIED:
  case MOSQ_ERR_UNKNOWN:
  case MOSQ_ERR_EAI:
  case MOSQ_ERR_PROXY:
    return 1;
  default:
    return err == EPROTO;
  }
}

static void
mqtt_on_connect(struct mosquitto *mosq, void *arg, int rc)
{
  (void)mosq;
  mqtt_post(arg, MQTT_MSG_CONNECT, rc, 0);
}

static void
mqtt_on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
  int ends_loop = mqtt_rc_ends_loop(rc, errno);

  (void)mosq;
  mqtt_post(arg, MQTT_MSG_DISCONNECT, rc, ends_loop);
}

static void
mqtt_on_publish(struct mosquitto *mosq, void *arg, int mid)
{
  (void)mosq;
  mqtt_post(arg, MQTT_MSG_PUBACK, mid, 0);
}

/* A retained "online" is an old birth message, not a restart of Home
 * Assistant; only a live one asks for discovery again. */
static void
mqtt_on_message(struct mosquitto *mosq, void *arg,
                const struct mosquitto_message *msg)
{
  (void)mosq;
  if (!msg->retain && msg->payloadlen == 6 &&
      memcmp(msg->payload, "online", 6) == 0)
    mqtt_post(arg, MQTT_MSG_HA_ONLINE, 0, 0);
}

/* Runs on either thread, under libmosquitto's log lock: no cancelling
 * in the middle of a write to stderr. */
static void
mqtt_on_log(struct mosquitto *mosq, void *arg, int level, const char *str)
{
  struct mqtt *m = arg;
  char esc[256];
  int saved = errno;
  int cs;

  (void)mosq;
  if ((level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)) == 0)
    return;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
  log_escape(esc, sizeof(esc), str, strlen(str));
  log_warn("mqtt", "backend=%s libmosquitto=%s", m->name, esc);
  pthread_setcancelstate(cs, NULL);
  errno = saved;
}

/* Asks for a connection from the main loop. When that fails at once
 * (refused, name unknown), libmosquitto's thread goes on waiting for a
 * state that only another attempt brings (mosquitto issue #1903), so the
 * attempts go on from here, with a backoff of their own. */
static void
mqtt_connect_now(struct mqtt *m)
{
  int rc = mosquitto_reconnect_async(m->mosq);

  if (rc == MOSQ_ERR_SUCCESS) {
    m->retry_s = 0;
    mqtt_timer_arm(m, MQTT_WATCHDOG_MS);
    return;
  }
  m->retry_s = m->retry_s ? m->retry_s * 2 : 1;
  if (m->retry_s > MQTT_RETRY_MAX_S)
    m->retry_s = MQTT_RETRY_MAX_S;
  log_msg(m->retry_s == 1 ? LOGL_WARN : LOGL_DEBUG, "mqtt",
          "backend=%s host=%s port=%d error=\"%s\" retry_in_s=%d "
          "msg=\"connect failed\"", m->name, m->mc->host, m->port,
          mosquitto_strerror(rc), m->retry_s);
  mqtt_timer_arm(m, (int64_t)m->retry_s * 1000);
}

/* Either our own next connect attempt, or the watchdog: a thread that
 * libmosquitto let stop, or one stuck where its backoff cannot help, is
 * replaced. While the broker is merely down, this only restarts the
 * backoff. */
static void
mqtt_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  struct mqtt *m = arg;
  int rc;

  (void)fd;
  (void)what;
  if (m->connected || m->closed)
    return;
  if (m->retry_s > 0) {
    mqtt_connect_now(m);
    return;
  }
  log_warn("mqtt", "backend=%s host=%s port=%d msg=\"still not connected; "
           "restarting the network thread\"", m->name, m->mc->host,
           m->port);
  mosquitto_loop_stop(m->mosq, true);
  mqtt_connect_now(m);
  rc = mosquitto_loop_start(m->mosq);
  if (rc != MOSQ_ERR_SUCCESS)
    log_error("mqtt", "backend=%s error=\"%s\" msg=\"cannot start the "
              "network thread\"", m->name, mosquitto_strerror(rc));
}

static void
mqtt_lib_init(void)
{
  mosquitto_lib_init();
}

/* OpenSSL's CA directory, where it would look for the OS store. */
static const char *
mqtt_ca_dir(void)
{
  const char *dir = getenv(X509_get_default_cert_dir_env());

  return dir && dir[0] ? dir : X509_get_default_cert_dir();
}

static int
mqtt_setup_tls(struct mqtt *m, const char **what)
{
  const struct mqtt_conf *mc = m->mc;
  int rc;

  *what = "tls";
  if (mc->ca_file) {
    rc = mosquitto_tls_set(m->mosq, mc->ca_file, NULL, NULL, NULL, NULL);
  } else {
    rc = mosquitto_int_option(m->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
    /* libmosquitto 2.0.11 forgets the OS store when it reconnects and
     * then refuses to connect at all without a CA file or directory:
     * naming the system's directory as well keeps reconnects working. */
    if (rc == MOSQ_ERR_SUCCESS)
      rc = mosquitto_tls_set(m->mosq, NULL, mqtt_ca_dir(), NULL, NULL,
                             NULL);
  }
  if (rc == MOSQ_ERR_SUCCESS && mc->tls_insecure)
    rc = mosquitto_tls_insecure_set(m->mosq, true);
  return rc;
}

static int
mqtt_setup(struct mqtt *m, char *err, size_t errsz)
{
  const struct mqtt_conf *mc = m->mc;
  const char *what = "will";
  int rc;

  mosquitto_connect_callback_set(m->mosq, mqtt_on_connect);
  mosquitto_disconnect_callback_set(m->mosq, mqtt_on_disconnect);
  mosquitto_publish_callback_set(m->mosq, mqtt_on_publish);
  mosquitto_message_callback_set(m->mosq, mqtt_on_message);
  mosquitto_log_callback_set(m->mosq, mqtt_on_log);
  mosquitto_reconnect_delay_set(m->mosq, 1, 60, true);
  /* Without it, small publishes meet Nagle and delayed ACKs, and each
   * PUBACK comes tens of milliseconds late. */
  mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
  rc = mosquitto_will_set(m->mosq, m->status_topic, 7, "offline", 1, true);
  if (rc == MOSQ_ERR_SUCCESS && mc->user) {
    what = "user";
    rc = mosquitto_username_pw_set(m->mosq, mc->user, mc->password);
  }
  if (rc == MOSQ_ERR_SUCCESS && mc->tls)
    rc = mqtt_setup_tls(m, &what);
  if (rc != MOSQ_ERR_SUCCESS) {
    snprintf(err, errsz, "mqtt %s: %s", what, mosquitto_strerror(rc));
    return -1;
  }
  return 0;
}

/* Starts connecting. The broker being down is no error: the attempts go
 * on, on the network thread or from here. */
static int
mqtt_start(struct mqtt *m, char *err, size_t errsz)
{
  const struct mqtt_conf *mc = m->mc;
  int port = mc->port > 0 ? mc->port : mc->tls ? 8883 : 1883;
  int keepalive = mc->keepalive > 0 ? mc->keepalive : 60;
  int rc;

  m->port = port;
  rc = mosquitto_connect_async(m->mosq, mc->host, port, keepalive);
  /* Bad settings end here; a TLS failure may be the broker's to fix
   * (an expired certificate), so it is retried like a refusal. */
  if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_NOT_SUPPORTED) {
    snprintf(err, errsz, "mqtt connect: %s", mosquitto_strerror(rc));
    return -1;
  }
  if (mosquitto_loop_start(m->mosq) != MOSQ_ERR_SUCCESS) {
    snprintf(err, errsz, "mqtt: cannot start the network thread");
    return -1;
  }
  if (rc == MOSQ_ERR_SUCCESS) {
    mqtt_timer_arm(m, MQTT_WATCHDOG_MS);
  } else {
    m->retry_s = 1;
    log_warn("mqtt", "backend=%s host=%s port=%d error=\"%s\" "
             "retry_in_s=1 msg=\"connect failed\"", m->name, mc->host,
             port, mosquitto_strerror(rc));
    mqtt_timer_arm(m, 1000);
  }
  log_info("mqtt", "backend=%s host=%s port=%d tls=%d client_id=%s "
           "msg=\"connecting\"", m->name, mc->host, port, mc->tls,
           mqtt_client_id(mc));
  return 0;
}

static void
mqtt_discard(struct mqtt *m)
{
  if (m->mosq)
    mosquitto_destroy(m->mosq);
  if (m->timer)
    event_free(m->timer);
  mqtt_cams_free(m);
  mqtt_unref(m);
}

static void *
mqtt_open(const struct backend_conf *bc, const struct config *cfg,
          struct event_base *base, struct notify *n, char *err,
          size_t errsz)
{
  const struct mqtt_conf *mc = &bc->u.mqtt;
  struct mqtt *m;

  if (mc->host == NULL) {
    snprintf(err, errsz, "mqtt: no host");
    return NULL;
  }
  pthread_once(&mqtt_lib_once, mqtt_lib_init);
  m = xcalloc(1, sizeof(*m));
  atomic_init(&m->refs, 1);
  m->name = bc->name ? bc->name : "mqtt";
  m->mc = mc;
  m->base = base;
  m->notify = n;
  m->status_topic = xasprintf("%s/status", mqtt_prefix(mc));
  m->ha_status_topic = xasprintf("%s/status", mqtt_disc_prefix(mc));
  m->timer = evtimer_new(base, mqtt_timer_cb, m);
  m->mosq = mosquitto_new(mqtt_client_id(mc), true, m);
  if (m->timer == NULL || m->mosq == NULL) {
    snprintf(err, errsz, "mqtt: cannot create the client");
    mqtt_discard(m);
    return NULL;
  }
  mqtt_cams_configured(m, cfg);
  if (mqtt_setup(m, err, errsz) < 0 || mqtt_start(m, err, errsz) < 0) {
    mqtt_discard(m);
    return NULL;
  }
  return m;
}

static int
mqtt_capacity(void *b)
{
  struct mqtt *m = b;

  if (!m->connected || m->closed || m->ndlvs >= MQTT_WINDOW)
    return 0;
  return MQTT_WINDOW - (int)m->ndlvs;
}

static int
mqtt_idle(void *b)
{
  struct mqtt *m = b;

  return m->dlvs == NULL;
}

static int
mqtt_pub_state(struct mqtt *m, struct mqtt_dlv *d,
               const struct cam_event *ev, const char *cam_slug,
               struct mqtt_kind *k)
{
  const char *kind = ev->kind ? ev->kind : "alert";
  char *kslug;
  char *topic;
  int rc;

  /* A retried older event must not turn back a state that a newer one
   * has set; its OFF phase then finds the newer id and stays quiet. */
  if (k && k->last_id > ev->id) {
    log_info("mqtt", "backend=%s event=%" PRId64 " later_event=%" PRId64
             " msg=\"state not published; a later event set it\"",
             m->name, ev->id, k->last_id);
    return MOSQ_ERR_SUCCESS;
  }
  if (k)
    k->last_id = ev->id;
  kslug = mqtt_kind_slug(kind);
  topic = xasprintf("%s/%s/%s", mqtt_prefix(m->mc), cam_slug, kslug);
  rc = mqtt_pub_text(m, d, topic, ev->state == EVENT_STOP ? "OFF" : "ON",
                     1);
  free(topic);
  free(kslug);
  return rc;
}

static int
mqtt_pub_event(struct mqtt *m, struct mqtt_dlv *d,
               const struct cam_event *ev, const char *cam_slug)
{
  char *json = mqtt_event_json(ev);
  char *topic = xasprintf("%s/%s/event", mqtt_prefix(m->mc), cam_slug);
  int rc;

  rc = mqtt_pub_text(m, d, topic, json, 0);
  free(topic);
  free(json);
  return rc;
}

/* The retained snapshot: the camera's bytes as they came (the first
 * picture whose header reads), unless the config asks for a checked
 * picture ("full") or a thumbnail ("WxH"), which the shared snapshot
 * cache makes once per event and size. An alert that came with pictures
 * but has none to show clears it, so that the previous alert's picture
 * is not shown with this one. */
static int
mqtt_pub_snapshot(struct mqtt *m, struct mqtt_dlv *d,
                  const struct cam_event *ev, const char *topic)
{
  struct snapshot *s;
  int w = 0, h = 0;
  int rc;

  if (m->mc->snapshot == NULL) {
    const struct attachment *att = cam_event_snapshot(ev);
    const unsigned char *bytes;

    /* A picture that is not sent clears the retained one, so that the
     * previous alert's picture is not shown with this alert. Too large
     * a one is not even read. */
    if (att && att->len > MQTT_PICTURE_MAX) {
      log_info("mqtt", "backend=%s event=%" PRId64 " bytes=%zu "
               "msg=\"picture over 4 MB not published (the retained "
               "snapshot is cleared); snapshot: WxH publishes a thumbnail "
               "of it\"", m->name, ev->id, att->len);
      return mqtt_pub(m, d, topic, NULL, 0, 1);
    }
    /* An alert without a picture leaves the retained one alone; one
     * whose pictures are all unusable (each logged) clears it. */
    if (att == NULL)
      return MOSQ_ERR_SUCCESS;
    att = snapshot_first_readable(ev);
    if (att == NULL || att->len > MQTT_PICTURE_MAX)
      return mqtt_pub(m, d, topic, NULL, 0, 1);
    bytes = attachment_data(att);
    return mqtt_pub(m, d, topic, bytes, bytes ? att->len : 0, 1);
  }
  if (config_parse_snapshot(m->mc->snapshot, &w, &h) < 0 || w < 0)
    return MOSQ_ERR_SUCCESS;
  s = snapshot_get(ev, w, h, m->mc->quality);
  if (s == NULL)
    return cam_event_snapshot(ev) ? mqtt_pub(m, d, topic, NULL, 0, 1)
                                  : MOSQ_ERR_SUCCESS;
  /* QoS 1 copies the payload at once: the reference can go now. */
  rc = mqtt_pub(m, d, topic, s->data, s->len, 1);
  snapshot_unref(s);
  return rc;
}

static int
mqtt_pub_media(struct mqtt *m, struct mqtt_dlv *d,
               const struct cam_event *ev, const char *cam_slug)
{
  const char *p = mqtt_prefix(m->mc);
  char when[MQTT_TIME_LEN];
  char *topic;
  int rc;

  topic = xasprintf("%s/%s/snapshot", p, cam_slug);
  rc = mqtt_pub_snapshot(m, d, ev, topic);
  free(topic);
  if (rc != MOSQ_ERR_SUCCESS)
    return rc;
  /* Camera clocks drift and many never see NTP; the time camgate got
   * the alert is the one to trust. */
  mqtt_format_time(ev->recv_time ? ev->recv_time : now_ms(), when,
                   sizeof(when));
  topic = xasprintf("%s/%s/last_event", p, cam_slug);
  rc = mqtt_pub_text(m, d, topic, when, 1);
  free(topic);
  return rc;
}

/* Phase 0: discovery when due, the event, its state, the snapshot and
 * the time, all at QoS 1. */
static int
mqtt_deliver_start(struct mqtt *m, struct mqtt_dlv *d,
                   const struct cam_event *ev)
{
  const char *camera = ev->camera ? ev->camera : "unknown";
  const char *kind = ev->kind ? ev->kind : "alert";
  struct mqtt_cam *cam = mqtt_cam_get(m, camera, ev->camera_name);
  struct mqtt_kind *k = NULL;
  char *slug = mqtt_slug(camera);
  int added = 0;
  int rc = MOSQ_ERR_SUCCESS;

  if (cam)
    k = mqtt_kind_get(m, cam, kind, &added);
  /* A new kind first: HA drops an event whose type it was not told. */
  if (cam && m->mc->discovery && (added || cam->disc_gen != m->gen))
    rc = mqtt_announce(m, cam, d);
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mqtt_pub_event(m, d, ev, slug);
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mqtt_pub_state(m, d, ev, slug, k);
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mqtt_pub_media(m, d, ev, slug);
  free(slug);
  return rc;
}

/* Phase 1: the OFF that ends a pulse or a start that never saw its
 * stop, unless a later event of the same camera and kind owns the state
 * now. */
static int
mqtt_deliver_end(struct mqtt *m, struct mqtt_dlv *d,
                 const struct cam_event *ev)
{
  const char *camera = ev->camera ? ev->camera : "unknown";
  const char *kind = ev->kind ? ev->kind : "alert";
  struct mqtt_cam *cam = mqtt_cam_find(m, camera);
  struct mqtt_kind *k = cam ? mqtt_kind_find(cam, kind) : NULL;
  char *slug;
  char *kslug;
  char *topic;
  int rc;

  if (k && k->last_id > ev->id) {
    log_info("mqtt", "backend=%s event=%" PRId64 " later_event=%" PRId64
             " msg=\"OFF skipped; a later event holds the state\"",
             m->name, ev->id, k->last_id);
    mqtt_dlv_answer(d, DELIVER_DONE, 0, 0, NULL);
    return MOSQ_ERR_SUCCESS;
  }
  slug = mqtt_slug(camera);
  kslug = mqtt_kind_slug(kind);
  topic = xasprintf("%s/%s/%s", mqtt_prefix(m->mc), slug, kslug);
  rc = mqtt_pub_text(m, d, topic, "OFF", 1);
  free(topic);
  free(kslug);
  free(slug);
  return rc;
}

static void
mqtt_deliver(void *b, const struct cam_event *ev, int phase,
             deliver_done_fn done, void *ctx)
{
  struct mqtt *m = b;
  struct mqtt_dlv *d = mqtt_dlv_new(m, ev, phase, done, ctx);
  struct timeval tv = {MQTT_PUBLISH_TIMEOUT_MS / 1000, 0};
  int rc;

  if (m->closed || !m->connected) {
    mqtt_dlv_answer(d, DELIVER_RETRY, 0, 0, "broker not connected");
    return;
  }
  if (phase == 0) {
    rc = mqtt_deliver_start(m, d, ev);
  } else if (phase == 1) {
    rc = mqtt_deliver_end(m, d, ev);
  } else {
    mqtt_dlv_answer(d, DELIVER_FAILED, 0, 0, "unknown delivery phase");
    return;
  }
  if (rc != MOSQ_ERR_SUCCESS)
    mqtt_dlv_answer(d, DELIVER_RETRY, 0, 0, mosquitto_strerror(rc));
  else if (!d->answered)
    evtimer_add(d->timer, &tv);
}

static void
mqtt_close(void *b)
{
  struct mqtt *m = b;
  int was_connected = m->connected;

  m->closed = 1;
  m->connected = 0;
  evtimer_del(m->timer);
  /* Connected, the offline state and the DISCONNECT leave in that order
   * and the thread ends after them. Otherwise it may sleep in its
   * reconnect backoff for up to a minute: cancel it. */
  if (was_connected)
    mqtt_pub_text(m, NULL, m->status_topic, "offline", 1);
  mosquitto_disconnect(m->mosq);
  mosquitto_loop_stop(m->mosq, !was_connected);
  while (m->dlvs) {
    struct mqtt_dlv *d = m->dlvs;

    if (d->answered)
      mqtt_finish(d, d->st, d->next_phase, d->delay_ms, d->error);
    else
      mqtt_finish(d, DELIVER_RETRY, 0, 0, "backend closing");
  }
  log_info("mqtt", "backend=%s msg=\"closed\"", m->name);
  mosquitto_destroy(m->mosq);
  m->mosq = NULL;
  event_free(m->timer);
  m->timer = NULL;
  mqtt_cams_free(m);
  mqtt_unref(m);
}

const struct backend_ops mqtt_backend_ops = {
  .type = "mqtt",
  .open = mqtt_open,
  .capacity = mqtt_capacity,
  .deliver = mqtt_deliver,
  .idle = mqtt_idle,
  .close = mqtt_close,
};
