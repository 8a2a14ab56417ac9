/* event.h - the normalized camera event.
 *
 * Every ingest builds one of these; the spool stores it; the router and the
 * backends read it. Ingest and backends meet only here and at the spool.
 * The names carry a cam_ prefix because libevent owns `struct event`,
 * event_new() and event_free(). */
#ifndef CAMGATE_EVENT_H
#define CAMGATE_EVENT_H

#include <stddef.h>
#include <stdint.h>

enum event_state { EVENT_PULSE, EVENT_START, EVENT_STOP };

/* The camera id of camgate's own notices; no camera may take it. */
#define EVENT_CAMERA_SELF "camgate"

struct attachment {
  char *name;           /* file name as the camera gave it, or made up */
  char *content_type;   /* "image/jpeg", "image/png", ... */
  unsigned char *data;  /* NULL for a file not read yet: attachment_data() */
  size_t len;
  /* A large picture stays in a file instead of memory: the decoder writes
   * it under the spool's tmp/, the spool moves it to att/. */
  char *path;
  int owns_file;        /* the event removes path when freed */
};

struct label {
  char *key;
  char *value;
};

struct cam_event {
  int64_t id;             /* spool id; 0 until stored */
  char *camera;           /* camera id (config id, or channel-derived) */
  char *camera_name;      /* display name */
  char *source;           /* "smtp", "ftp", "onvif", "http" */
  char *kind;             /* "motion", "person", ..., "alert" */
  enum event_state state;
  int64_t device_time;    /* ms since epoch as the device said; 0 unknown */
  int64_t recv_time;      /* ms since epoch when camgate received it */
  char *title;
  char *text;
  struct attachment *att;
  size_t natt;
  struct label *labels;
  size_t nlabels;
  /* The message as the camera sent it (CRLF lines), kept only while a
   * backend re-sends it as it is (e-mail mode forward); else NULL. */
  unsigned char *raw;
  size_t raw_len;
  /* Filled by the delivery scheduler for the backend at hand. */
  char *rule;             /* name of the rule that sent it there */
  int folded;             /* later events held back by rate limits and
                           * folded into this notification */
  int64_t folded_since;   /* ms since epoch of the first of those */
};

/* Returns a zeroed event; never NULL. Free with cam_event_free(). */
struct cam_event *cam_event_new(void);
/* Frees ev and everything it owns; NULL is fine. */
void cam_event_free(struct cam_event *ev);

/* Replaces *field with a copy of value (NULL clears it). */
void cam_event_set(char **field, const char *value);

/* Copies name, content_type and data into a new attachment. */
void cam_event_add_attachment(struct cam_event *ev, const char *name,
                          const char *content_type,
                          const unsigned char *data, size_t len);
/* Takes ownership of data (malloc'd). */
void cam_event_add_attachment_owned(struct cam_event *ev, const char *name,
                                const char *content_type,
                                unsigned char *data, size_t len);
/* A picture of len bytes in the file at path, which the event now owns
 * (removed with it unless the spool has taken it over). */
void cam_event_add_attachment_file(struct cam_event *ev, const char *name,
                                   const char *content_type,
                                   const char *path, size_t len);
/* The attachment's bytes, read from its file on first use and kept with
 * the attachment (a's event is then no longer const in fact: callers own
 * the event for as long as they use it). NULL when the file cannot be
 * read (logged). */
const unsigned char *attachment_data(const struct attachment *a);
void cam_event_add_label(struct cam_event *ev, const char *key, const char *value);
/* Replaces ev->raw with a copy of len bytes of data. */
void cam_event_set_raw(struct cam_event *ev, const void *data, size_t len);
/* Replaces ev->raw with the file at path (at most max bytes). Returns 0,
 * or -1 (ev->raw unset) when it cannot be read or is larger. */
int cam_event_set_raw_file(struct cam_event *ev, const char *path,
                           size_t max);
/* Returns the value of the first label named key, or NULL. */
const char *cam_event_label(const struct cam_event *ev, const char *key);

const char *event_state_name(enum event_state st);
/* Returns 0 and sets *out for "pulse", "start", "stop"; -1 otherwise. */
int event_state_parse(const char *name, enum event_state *out);

/* Returns the first image attachment (JPEG or PNG), or NULL. */
const struct attachment *cam_event_snapshot(const struct cam_event *ev);

/* Milliseconds since the epoch, wall clock. */
int64_t now_ms(void);
/* Monotonic milliseconds. */
int64_t mono_ms(void);

#endif
