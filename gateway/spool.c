/* spool.c - see spool.h.
 *
 * Why one writer thread: SQLite serialises writers anyway, and an fsync
 * costs milliseconds. Letting every session commit on its own would cap
 * camgate at one acknowledged alert per fsync. The writer instead takes
 * everything that queued up while the previous fsync ran and commits it as
 * one transaction, so the cost of an fsync is shared by a whole batch. */
#include "gateway/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/log.h"
#include "gateway/notify.h"
#include "gateway/ratelimit.h"

/* Attachments larger than this go to a file beside the database, synced
 * with the batch that names them. Smaller ones are rows: creating and
 * deleting a file per snapshot cost the kernel more than the bytes'
 * second trip through the checkpoint. */
#define SPOOL_INLINE_MAX (1024 * 1024)
/* The WAL is copied into the database by a thread of its own once it
 * holds this many pages (4 MB at SQLite's default page size), so a commit
 * never waits for a checkpoint. That thread runs at a lower priority:
 * when the machine is saturated it falls behind, and past the second
 * figure the writer copies the WAL itself, as SQLite would have. */
#define SPOOL_CKPT_PAGES 1000
#define SPOOL_CKPT_FORCE_PAGES 4000
#define SPOOL_RAW_SEQ (-1)     /* attachments.seq of the camera's message */
#define SPOOL_OPEN_FILES 64    /* files a batch keeps open for its sync */
/* Rate-limit state untouched this long is forgotten: longer than any
 * cooldown, bucket period or day it could still matter for. */
#define SPOOL_RL_KEEP_MS (31LL * 86400 * 1000)

enum job_type { JOB_EVENT, JOB_UPDATE, JOB_PRUNE, JOB_ORPHANS };

/* A route as the writer needs it: strings copied, limits by value. */
struct job_route {
  char *backend;
  char *rule;
  int limited;
  struct rl_limits limits;
  struct rl_limits camera;
  int64_t id;                /* the delivery, once inserted */
};

struct job {
  enum job_type type;
  struct job *next;
  struct spool *sp;
  /* JOB_EVENT */
  struct cam_event *ev;
  struct job_route *routes;
  size_t nroutes;
  GTimeZone *tz;             /* for daily caps; NULL: UTC */
  spool_stored_fn stored;
  /* JOB_UPDATE */
  int64_t delivery_id;
  enum delivery_state st;
  int phase;
  int attempts;
  int64_t next_try;
  char *error;
  spool_written_fn written;
  /* JOB_PRUNE */
  int64_t retention_s;
  int64_t pruned_before;     /* by the jobs of the same prune before it */
  /* JOB_ORPHANS: the backends that stay */
  char **names;
  size_t nnames;
  /* JOB_PRUNE, JOB_ORPHANS: events removed, or deliveries given up */
  int64_t changed;
  /* completion */
  void *arg;
  int ok;
  int64_t event_id;
};

/* Statements are prepared once per connection and reused: parsing SQL
 * for every alert cost more than running it. Each cache belongs to one
 * connection and so to one thread. */
#define SPOOL_STMTS 48
/* The cache of just-stored events holds at most this many, and at most
 * this many bytes of pictures: a batch at 10 sessions fits. An event not
 * asked for within SPOOL_RECENT_AGE_MS (no rule matched it, its delivery
 * waits on a rate limit) makes room for newer ones. */
#define SPOOL_RECENT 64
#define SPOOL_RECENT_BYTES (2u << 20)
#define SPOOL_RECENT_AGE_MS 10000
/* Events one prune job removes at most: a larger prune goes on in more
 * jobs, queued behind the alerts that came meanwhile, so that no
 * camera's 250 waits for a long one. */
#define SPOOL_PRUNE_BATCH 256

struct stmt_cache {
  const char *sql[SPOOL_STMTS];  /* the literal's address is the key */
  sqlite3_stmt *st[SPOOL_STMTS];
  size_t n;
};

struct batch_file {
  int fd;
  char *path;
};

struct spool {
  char *dir;
  sqlite3 *wdb;              /* writer thread only */
  sqlite3 *rdb;              /* main thread only */
  struct notify *notify;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct job *head;
  struct job *tail;
  int stopping;
  char *fail_path;           /* CAMGATE_SPOOL_FAIL, for tests */
  /* Files this batch wrote under att/, still open: they are synced
   * together just before the commit. */
  struct batch_file *files;
  size_t nfiles, capfiles;
  int lock_fd;               /* flock on dir/lock: one camgate per spool */
  struct stmt_cache wcache;  /* writer thread's prepared statements */
  sqlite3 *cdb;              /* checkpointer thread only */
  pthread_t ckpt_thread;
  int ckpt_started;
  pthread_cond_t ckpt_cond;  /* wakes the checkpointer, with lock */
  /* Held around every checkpoint: SQLite answers a second concurrent one
   * with SQLITE_BUSY at once, so the writer waits here instead. */
  pthread_mutex_t ckpt_mutex;
  int ckpt_wanted;           /* under lock */
  int sync_full;             /* writer's synchronous is FULL now */
  /* Events just stored, kept for their first delivery so it need not read
   * back from the database what it had in memory a moment ago. The writer
   * puts them in just before its commit (the dispatcher may find a batch
   * in the database before the loop has heard of it); the main thread
   * takes them. Under recent_lock. */
  pthread_mutex_t recent_lock;
  struct cam_event *recent[SPOOL_RECENT];
  int64_t recent_at[SPOOL_RECENT];  /* mono_ms() when put */
  size_t nrecent;
  size_t recent_bytes;
  struct stmt_cache rcache;  /* main thread's */
};

static int
spool_prep(struct spool *sp, sqlite3 *db, const char *sql,
           sqlite3_stmt **out)
{
  struct stmt_cache *c = db == sp->wdb ? &sp->wcache : &sp->rcache;
  int rc;

  for (size_t i = 0; i < c->n; i++) {
    if (c->sql[i] == sql) {
      /* Reset here too: an early return may have left it mid-step. */
      sqlite3_reset(c->st[i]);
      sqlite3_clear_bindings(c->st[i]);
      *out = c->st[i];
      return SQLITE_OK;
    }
  }
  rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
                          NULL);
  if (rc == SQLITE_OK && c->n < SPOOL_STMTS) {
    c->sql[c->n] = sql;
    c->st[c->n++] = *out;
  } else if (rc == SQLITE_OK) {
    fatal("spool: more than %d distinct statements", SPOOL_STMTS);
  }
  return rc;
}

/* Hands a cached statement back: ready for its next use. */
static void
spool_fin(sqlite3_stmt *st)
{
  if (st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
}

static void
spool_cache_free(struct stmt_cache *c)
{
  for (size_t i = 0; i < c->n; i++)
    sqlite3_finalize(c->st[i]);
  c->n = 0;
}

static const char spool_schema[] =
  "CREATE TABLE IF NOT EXISTS events("
  " id INTEGER PRIMARY KEY, camera TEXT NOT NULL, camera_name TEXT,"
  " source TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"
  " device_time INTEGER, recv_time INTEGER NOT NULL, title TEXT,"
  " text TEXT, labels TEXT);"
  "CREATE TABLE IF NOT EXISTS attachments("
  " id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL, seq INTEGER,"
  " name TEXT, content_type TEXT, size INTEGER, data BLOB, path TEXT);"
  "CREATE INDEX IF NOT EXISTS attachments_event ON attachments(event_id);"
  "CREATE TABLE IF NOT EXISTS deliveries("
  " id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL,"
  " backend TEXT NOT NULL, rule TEXT, state INTEGER NOT NULL DEFAULT 0,"
  " phase INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
  " next_try INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
  " updated INTEGER, folded INTEGER NOT NULL DEFAULT 0,"
  " folded_since INTEGER);"
  "CREATE INDEX IF NOT EXISTS deliveries_due"
  " ON deliveries(backend, state, next_try);"
  "CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);"
  "CREATE TABLE IF NOT EXISTS ratelimits("
  " camera TEXT NOT NULL, backend TEXT NOT NULL, last_sent INTEGER,"
  " tokens INTEGER, tokens_at INTEGER, day INTEGER, day_count INTEGER,"
  " held INTEGER, held_since INTEGER, sum_count INTEGER,"
  " sum_since INTEGER, sum_at INTEGER, sum_id INTEGER, warned INTEGER,"
  " updated INTEGER, PRIMARY KEY(camera, backend));";

/* Spools made before deliveries carried fold counts get the columns. */
static const char *const spool_migrations[][2] = {
  {"SELECT folded, folded_since FROM deliveries LIMIT 0",
   "ALTER TABLE deliveries ADD COLUMN folded INTEGER NOT NULL DEFAULT 0;"
   "ALTER TABLE deliveries ADD COLUMN folded_since INTEGER;"},
};

static int
spool_exec(sqlite3 *db, const char *sql)
{
  char *msg = NULL;

  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    log_error("spool", "sql=\"%.40s\" error=\"%s\"", sql,
              msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

/* Remembers a file of this batch for the sync before the commit (and for
 * removal on rollback). Past SPOOL_OPEN_FILES a file is synced and closed
 * at once, so a large batch cannot run out of descriptors. Returns a copy
 * of path, or NULL (fd closed, file removed) when that sync fails. */
static char *
spool_keep_file(struct spool *sp, int fd, const char *path)
{
  size_t open_fds = 0;

  for (size_t i = 0; i < sp->nfiles; i++)
    open_fds += sp->files[i].fd >= 0;
  if (open_fds >= SPOOL_OPEN_FILES) {
    if (fdatasync(fd) != 0) {
      log_error("spool", "file=%s error=\"%s\"", path, strerror(errno));
      close(fd);
      unlink(path);
      return NULL;
    }
    close(fd);
    fd = -1;
  }
  if (sp->nfiles == sp->capfiles) {
    sp->capfiles = sp->capfiles ? sp->capfiles * 2 : 16;
    sp->files = xrealloc(sp->files, sp->capfiles * sizeof(*sp->files));
  }
  sp->files[sp->nfiles].fd = fd;
  sp->files[sp->nfiles].path = xstrdup(path);
  sp->nfiles++;
  return xstrdup(path);
}

/* Writes data to dir/att/<event>-<seq>, kept open for the batch's sync
 * (spool_sync_files). Returns the path (caller frees) or NULL. */
static char *
spool_write_file(struct spool *sp, int64_t event_id, size_t seq,
                 const unsigned char *data, size_t len)
{
  char path[4096];
  size_t off = 0;
  int fd;

  snprintf(path, sizeof(path), "%s/att/%" PRId64 "-%zu", sp->dir, event_id,
           seq);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    log_error("spool", "file=%s error=\"%s\"", path, strerror(errno));
    return NULL;
  }
  while (off < len) {
    ssize_t w = write(fd, data + off, len - off);

    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  if (off != len) {
    log_error("spool", "file=%s error=\"%s\"", path,
              off < len && errno ? strerror(errno) : "short write");
    close(fd);
    unlink(path);
    return NULL;
  }
  return spool_keep_file(sp, fd, path);
}

/* Moves a picture the decoder left in tmp/ to dir/att/<event>-<seq>, kept
 * open for the batch's sync like a written one. Returns the new path
 * (caller frees) or NULL. */
static char *
spool_move_file(struct spool *sp, int64_t event_id, size_t seq,
                const char *from)
{
  char path[4096];
  int fd;

  snprintf(path, sizeof(path), "%s/att/%" PRId64 "-%zu", sp->dir, event_id,
           seq);
  if (rename(from, path) != 0) {
    log_error("spool", "file=%s to=%s error=\"%s\"", from, path,
              strerror(errno));
    return NULL;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    log_error("spool", "file=%s error=\"%s\"", path, strerror(errno));
    unlink(path);
    return NULL;
  }
  return spool_keep_file(sp, fd, path);
}

/* Forgets the batch's files from the mark-th on; unlinks them too when
 * what they belonged to was rolled back. */
static void
spool_drop_files(struct spool *sp, size_t mark, int remove)
{
  while (sp->nfiles > mark) {
    struct batch_file *f = &sp->files[--sp->nfiles];

    if (f->fd >= 0)
      close(f->fd);
    if (remove)
      unlink(f->path);
    free(f->path);
  }
}

/* Makes the batch's files durable before the commit that names them:
 * each file's data, then the directory holding their names. One pass
 * for the batch lets the file system write them out together. */
static int
spool_sync_files(struct spool *sp)
{
  char path[4096];
  int fd;
  int rc = 0;

  if (sp->nfiles == 0)
    return 0;
  for (size_t i = 0; i < sp->nfiles && rc == 0; i++)
    if (sp->files[i].fd >= 0 && fdatasync(sp->files[i].fd) != 0) {
      log_error("spool", "file=%s error=\"%s\"", sp->files[i].path,
                strerror(errno));
      rc = -1;
    }
  if (rc == 0) {
    snprintf(path, sizeof(path), "%s/att", sp->dir);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
      log_error("spool", "dir=%s error=\"%s\"", path, strerror(errno));
      rc = -1;
    }
    if (fd >= 0)
      close(fd);
  }
  return rc;
}

static char *
spool_labels_json(const struct cam_event *ev)
{
  json_t *obj = json_object();
  char *s;

  for (size_t i = 0; i < ev->nlabels; i++)
    json_object_set_new(obj, ev->labels[i].key,
                        json_string(ev->labels[i].value));
  s = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  return s;
}

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(st, i);
}

/* One attachments row; seq SPOOL_RAW_SEQ is the camera's own message
 * (ev->raw), whose file takes the name after the last attachment's. */
static int
spool_insert_attachment(struct spool *sp, sqlite3_stmt *st, int64_t id,
                        int64_t seq, size_t file_seq, struct attachment *a)
{
  sqlite3_reset(st);
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, seq);
  bind_text(st, 3, a->name);
  bind_text(st, 4, a->content_type);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)a->len);
  if (a->data == NULL && a->path && a->owns_file) {
    /* A large picture the decoder wrote to a file: the file moves into
     * the spool, the event keeps pointing at it. */
    char *path = spool_move_file(sp, id, file_seq, a->path);

    if (path == NULL)
      return -1;
    free(a->path);
    a->path = xstrdup(path);
    a->owns_file = 0;
    sqlite3_bind_null(st, 6);
    sqlite3_bind_text(st, 7, path, -1, free);
  } else if (attachment_data(a) == NULL) {
    return -1;
  } else if (a->len > SPOOL_INLINE_MAX) {
    char *path = spool_write_file(sp, id, file_seq, a->data, a->len);

    if (path == NULL)
      return -1;
    sqlite3_bind_null(st, 6);
    sqlite3_bind_text(st, 7, path, -1, free);
  } else {
    sqlite3_bind_blob(st, 6, a->len ? a->data : (const void *)"",
                      (int)a->len, SQLITE_STATIC);
    sqlite3_bind_null(st, 7);
  }
  return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

static int
spool_insert_attachments(struct spool *sp, struct job *j)
{
  const char *sql = "INSERT INTO attachments(event_id, seq, name,"
                    " content_type, size, data, path)"
                    " VALUES(?,?,?,?,?,?,?)";
  struct cam_event *ev = j->ev;
  sqlite3_stmt *st = NULL;
  int rc = -1;

  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    goto out;
  for (size_t i = 0; i < ev->natt; i++)
    if (spool_insert_attachment(sp, st, j->event_id, (int64_t)i, i,
                                &ev->att[i]) != 0)
      goto out;
  if (ev->raw) {
    struct attachment raw = {(char *)"raw.eml", (char *)"message/rfc822",
                             ev->raw, ev->raw_len, NULL, 0};

    if (spool_insert_attachment(sp, st, j->event_id, SPOOL_RAW_SEQ,
                                ev->natt, &raw) != 0)
      goto out;
  }
  rc = 0;
out:
  if (rc != 0)
    log_error("spool", "attachments error=\"%s\"", sqlite3_errmsg(sp->wdb));
  spool_fin(st);
  return rc;
}

static int
spool_insert_routes(struct spool *sp, struct job *j)
{
  const char *sql = "INSERT INTO deliveries(event_id, backend, rule,"
                    " next_try) VALUES(?,?,?,0)";
  sqlite3_stmt *st = NULL;
  int rc = -1;

  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    goto out;
  for (size_t i = 0; i < j->nroutes; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, j->event_id);
    bind_text(st, 2, j->routes[i].backend);
    bind_text(st, 3, j->routes[i].rule);
    if (sqlite3_step(st) != SQLITE_DONE)
      goto out;
    j->routes[i].id = sqlite3_last_insert_rowid(sp->wdb);
  }
  rc = 0;
out:
  if (rc != 0)
    log_error("spool", "deliveries error=\"%s\"", sqlite3_errmsg(sp->wdb));
  spool_fin(st);
  return rc;
}

/* ---- rate limits, in the writer's transaction ---- */

static int
spool_rl_load(struct spool *sp, const char *camera, const char *backend,
              struct rl_state *rs)
{
  const char *sql = "SELECT last_sent, tokens, tokens_at, day, day_count,"
                    " held, held_since, sum_count, sum_since, sum_at,"
                    " sum_id, warned FROM ratelimits"
                    " WHERE camera=? AND backend=?";
  sqlite3_stmt *st = NULL;
  int r;

  memset(rs, 0, sizeof(*rs));
  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    return -1;
  bind_text(st, 1, camera);
  bind_text(st, 2, backend);
  r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    rs->last_sent = sqlite3_column_int64(st, 0);
    rs->tokens = sqlite3_column_int64(st, 1);
    rs->tokens_at = sqlite3_column_int64(st, 2);
    rs->day = sqlite3_column_int64(st, 3);
    rs->day_count = sqlite3_column_int(st, 4);
    rs->held = sqlite3_column_int(st, 5);
    rs->held_since = sqlite3_column_int64(st, 6);
    rs->sum_count = sqlite3_column_int(st, 7);
    rs->sum_since = sqlite3_column_int64(st, 8);
    rs->sum_at = sqlite3_column_int64(st, 9);
    rs->sum_id = sqlite3_column_int64(st, 10);
    rs->warned = sqlite3_column_int(st, 11);
  }
  spool_fin(st);
  return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : -1;
}

static int
spool_rl_save(struct spool *sp, const char *camera, const char *backend,
              const struct rl_state *rs, int64_t now)
{
  const char *sql = "INSERT OR REPLACE INTO ratelimits(camera, backend,"
                    " last_sent, tokens, tokens_at, day, day_count, held,"
                    " held_since, sum_count, sum_since, sum_at, sum_id,"
                    " warned, updated) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
  const int64_t vals[] = {
    rs->last_sent, rs->tokens, rs->tokens_at, rs->day, rs->day_count,
    rs->held, rs->held_since, rs->sum_count, rs->sum_since, rs->sum_at,
    rs->sum_id, rs->warned, now
  };
  sqlite3_stmt *st = NULL;
  int rc = -1;

  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    return -1;
  bind_text(st, 1, camera);
  bind_text(st, 2, backend);
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
    sqlite3_bind_int64(st, (int)i + 3, vals[i]);
  if (sqlite3_step(st) == SQLITE_DONE)
    rc = 0;
  spool_fin(st);
  return rc;
}

/* Sets what the limiter decided on delivery id; a demoted summary (only
 * if still pending) goes back to held. */
static int
spool_rl_mark(struct spool *sp, int64_t id, const struct rl_decision *d)
{
  const char *sql = "UPDATE deliveries SET state=?, next_try=?, folded=?,"
                    " folded_since=? WHERE id=?";
  const char *demote = "UPDATE deliveries SET state=?, folded=0,"
                       " folded_since=NULL WHERE id=? AND state=0";
  sqlite3_stmt *st = NULL;
  int rc = -1;

  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    return -1;
  sqlite3_bind_int(st, 1, d->verdict == RL_HOLD ? DELIVERY_HELD
                                                : DELIVERY_PENDING);
  sqlite3_bind_int64(st, 2, d->verdict == RL_SUMMARY ? d->due : 0);
  sqlite3_bind_int(st, 3, d->folded);
  if (d->folded)
    sqlite3_bind_int64(st, 4, d->folded_since);
  else
    sqlite3_bind_null(st, 4);
  sqlite3_bind_int64(st, 5, id);
  if (sqlite3_step(st) == SQLITE_DONE)
    rc = 0;
  spool_fin(st);
  if (rc != 0 || d->demoted == 0)
    return rc;
  if (spool_prep(sp, sp->wdb, demote, &st) != SQLITE_OK)
    return -1;
  sqlite3_bind_int(st, 1, DELIVERY_HELD);
  sqlite3_bind_int64(st, 2, d->demoted);
  rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
  spool_fin(st);
  return rc;
}

/* One line when a key starts holding back, one when a notification
 * carries what was held: a flooding camera is reported, not echoed. */
static void
spool_rl_log(const char *camera, const struct job_route *r,
             const struct rl_decision *d, int64_t now)
{
  if (d->verdict == RL_SEND && d->folded > 0)
    log_info("ratelimit", "camera=%s backend=%s delivery=%" PRId64
             " folded=%d since_s=%" PRId64 " msg=\"notification carries "
             "what was held back\"", camera, r->backend, r->id, d->folded,
             (now - d->folded_since) / 1000);
  if (d->verdict == RL_SEND || !d->first_hold)
    return;
  log_warn("ratelimit", "camera=%s backend=%s delivery=%" PRId64
           " reason=%s msg=\"holding notifications back; %s\"", camera,
           r->backend, r->id, d->reason,
           d->verdict == RL_SUMMARY ? "a summary goes out when the limit "
                                      "allows"
                                    : "they are folded into the next one");
}

static int
spool_limit_route(struct spool *sp, const char *camera,
                  const struct job_route *r, const struct rl_clock *clk,
                  int64_t cam_release, int64_t *charge)
{
  struct rl_decision d;
  struct rl_state rs;

  if (spool_rl_load(sp, camera, r->backend, &rs) != 0)
    return -1;
  ratelimit_decide(&rs, &r->limits, cam_release, clk, r->id, &d);
  if (d.verdict != RL_SEND || d.folded)
    if (spool_rl_mark(sp, r->id, &d) != 0)
      return -1;
  spool_rl_log(camera, r, &d, clk->now);
  if (d.charge_at > *charge)
    *charge = d.charge_at;
  return spool_rl_save(sp, camera, r->backend, &rs, clk->now);
}

/* Runs the limiter over the event's notification deliveries in the
 * transaction that stores the event, so what it holds back and the state
 * it keeps commit, or roll back, with the event, in event order. */
static int
spool_limit(struct spool *sp, struct job *j)
{
  const char *camera = j->ev->camera ? j->ev->camera : "";
  const struct rl_limits *camlim = NULL;
  int64_t cam_release = 0;
  int64_t charge = 0;
  struct rl_clock clk;
  struct rl_state cam;
  size_t i = 0;

  while (i < j->nroutes && !j->routes[i].limited)
    i++;
  if (i == j->nroutes)
    return 0;
  /* Every route of the event is for the same camera: one camera limit. */
  if (ratelimit_active(&j->routes[i].camera))
    camlim = &j->routes[i].camera;
  ratelimit_clock(&clk, j->tz, j->ev->recv_time > now_ms()
                                 ? j->ev->recv_time : now_ms());
  if (camlim) {
    if (spool_rl_load(sp, camera, "", &cam) != 0)
      return -1;
    cam_release = ratelimit_release(&cam, camlim, &clk, NULL);
    if (cam_release <= clk.now)
      cam_release = 0;
  }
  for (; i < j->nroutes; i++)
    if (j->routes[i].limited &&
        spool_limit_route(sp, camera, &j->routes[i], &clk, cam_release,
                          &charge) != 0)
      return -1;
  if (camlim == NULL || charge == 0)
    return 0;
  ratelimit_charge(&cam, camlim, &clk, charge);
  return spool_rl_save(sp, camera, "", &cam, clk.now);
}

static int
spool_write_event(struct spool *sp, struct job *j)
{
  const char *sql = "INSERT INTO events(camera, camera_name, source, kind,"
                    " state, device_time, recv_time, title, text, labels)"
                    " VALUES(?,?,?,?,?,?,?,?,?,?)";
  const struct cam_event *ev = j->ev;
  sqlite3_stmt *st = NULL;
  char *labels = spool_labels_json(ev);
  int rc = -1;

  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    goto out;
  bind_text(st, 1, ev->camera);
  bind_text(st, 2, ev->camera_name);
  bind_text(st, 3, ev->source);
  bind_text(st, 4, ev->kind);
  bind_text(st, 5, event_state_name(ev->state));
  sqlite3_bind_int64(st, 6, ev->device_time);
  sqlite3_bind_int64(st, 7, ev->recv_time);
  bind_text(st, 8, ev->title);
  bind_text(st, 9, ev->text);
  bind_text(st, 10, labels);
  if (sqlite3_step(st) != SQLITE_DONE)
    goto out;
  j->event_id = sqlite3_last_insert_rowid(sp->wdb);
  if (spool_insert_attachments(sp, j) != 0 ||
      spool_insert_routes(sp, j) != 0 || spool_limit(sp, j) != 0)
    goto out;
  rc = 0;
out:
  if (rc != 0)
    log_error("spool", "event error=\"%s\"", sqlite3_errmsg(sp->wdb));
  spool_fin(st);
  free(labels);
  return rc;
}

static int
spool_write_update(struct spool *sp, struct job *j)
{
  const char *sql = "UPDATE deliveries SET state=?, phase=?, attempts=?,"
                    " next_try=?, last_error=?, updated=? WHERE id=?";
  sqlite3_stmt *st = NULL;
  int rc = -1;

  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    goto out;
  sqlite3_bind_int(st, 1, (int)j->st);
  sqlite3_bind_int(st, 2, j->phase);
  sqlite3_bind_int(st, 3, j->attempts);
  sqlite3_bind_int64(st, 4, j->next_try);
  bind_text(st, 5, j->error);
  sqlite3_bind_int64(st, 6, now_ms());
  sqlite3_bind_int64(st, 7, j->delivery_id);
  if (sqlite3_step(st) == SQLITE_DONE)
    rc = 0;
out:
  if (rc != 0)
    log_error("spool", "update error=\"%s\"", sqlite3_errmsg(sp->wdb));
  spool_fin(st);
  return rc;
}

/* Removes the files of the events about to be pruned, then the rows. */
static int
spool_write_prune(struct spool *sp, struct job *j)
{
  static const char *const stmts[] = {
    "CREATE TEMP TABLE IF NOT EXISTS prune(id INTEGER PRIMARY KEY)",
    "DELETE FROM prune",
    "INSERT INTO prune SELECT e.id FROM events e WHERE e.recv_time < ?1"
    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id"
    " AND d.state = 0)"
    " ORDER BY e.id LIMIT " G_STRINGIFY(SPOOL_PRUNE_BATCH),
    NULL,
    "DELETE FROM attachments WHERE event_id IN (SELECT id FROM prune)",
    "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM prune)",
    "DELETE FROM events WHERE id IN (SELECT id FROM prune)",
  };
  int64_t cutoff = now_ms() - j->retention_s * 1000;

  for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
    sqlite3_stmt *st = NULL;
    const char *sql = stmts[i] ? stmts[i]
                               : "SELECT path FROM attachments WHERE path"
                                 " IS NOT NULL AND event_id IN"
                                 " (SELECT id FROM prune)";
    int r;

    if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
      return -1;
    if (sqlite3_bind_parameter_count(st) > 0)
      sqlite3_bind_int64(st, 1, cutoff);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
      const char *path = (const char *)sqlite3_column_text(st, 0);

      if (path)
        unlink(path);
    }
    if (i == 2)
      j->changed = sqlite3_changes(sp->wdb);
    spool_fin(st);
    if (r != SQLITE_DONE)
      return -1;
  }
  return 0;
}

/* Gives up the pending deliveries of backends not in j->names. */
static int
spool_write_orphans(struct spool *sp, struct job *j)
{
  GString *sql = g_string_new("UPDATE deliveries SET state = ");
  sqlite3_stmt *st = NULL;
  int rc;

  g_string_append_printf(sql, "%d, last_error = 'backend removed from the "
                         "config', updated = %" PRId64 " WHERE state = %d",
                         DELIVERY_FAILED, now_ms(), DELIVERY_PENDING);
  if (j->nnames > 0) {
    g_string_append(sql, " AND backend NOT IN (");
    for (size_t i = 0; i < j->nnames; i++) {
      char *q = sqlite3_mprintf("%s%Q", i ? "," : "", j->names[i]);

      g_string_append(sql, q);
      sqlite3_free(q);
    }
    g_string_append_c(sql, ')');
  }
  rc = sqlite3_prepare_v2(sp->wdb, sql->str, -1, &st, NULL) == SQLITE_OK &&
       sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
  if (rc == 0)
    j->changed = sqlite3_changes(sp->wdb);
  else
    log_error("spool", "error=\"%s\" msg=\"could not give up the "
              "deliveries of removed backends\"", sqlite3_errmsg(sp->wdb));
  sqlite3_finalize(st);
  g_string_free(sql, TRUE);
  return rc;
}

/* Forgets rate-limit state nothing has touched for a month. */
static int
spool_prune_limits(struct spool *sp)
{
  const char *sql = "DELETE FROM ratelimits WHERE updated < ?1"
                    " AND sum_at < ?1";
  sqlite3_stmt *st = NULL;
  int rc;

  if (spool_prep(sp, sp->wdb, sql, &st) != SQLITE_OK)
    return -1;
  sqlite3_bind_int64(st, 1, now_ms() - SPOOL_RL_KEEP_MS);
  rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
  spool_fin(st);
  return rc;
}

/* For tests: while the file CAMGATE_SPOOL_FAIL names exists, every batch
 * fails, at its start, or at its commit (after every job was written)
 * when the file holds "commit". */
static int
spool_fail_injected(const struct spool *sp, int at_commit)
{
  char buf[8] = "";
  FILE *fp;
  int commit;

  if (sp->fail_path == NULL || (fp = fopen(sp->fail_path, "r")) == NULL)
    return 0;
  commit = fgets(buf, sizeof(buf), fp) && strncmp(buf, "commit", 6) == 0;
  fclose(fp);
  return commit == at_commit;
}

static int
spool_write_job(struct spool *sp, struct job *j)
{
  switch (j->type) {
  case JOB_EVENT:
    return spool_write_event(sp, j);
  case JOB_UPDATE:
    return spool_write_update(sp, j);
  case JOB_PRUNE:
    return spool_write_prune(sp, j) == 0 ? spool_prune_limits(sp) : -1;
  case JOB_ORPHANS:
    return spool_write_orphans(sp, j);
  }
  return -1;
}

static void
spool_job_free(struct job *j)
{
  cam_event_free(j->ev);
  for (size_t i = 0; i < j->nroutes; i++) {
    free(j->routes[i].backend);
    free(j->routes[i].rule);
  }
  free(j->routes);
  if (j->tz)
    g_time_zone_unref(j->tz);
  free(j->error);
  for (size_t i = 0; i < j->nnames; i++)
    free(j->names[i]);
  free(j->names);
  free(j);
}

static size_t
spool_event_bytes(const struct cam_event *ev)
{
  size_t n = ev->raw_len;

  for (size_t i = 0; i < ev->natt; i++)
    n += ev->att[i].data ? ev->att[i].len : 0;
  return n;
}

static void
spool_recent_drop(struct spool *sp, size_t i, int free_it)
{
  sp->recent_bytes -= spool_event_bytes(sp->recent[i]);
  if (free_it)
    cam_event_free(sp->recent[i]);
  memmove(sp->recent + i, sp->recent + i + 1,
          (sp->nrecent - i - 1) * sizeof(sp->recent[0]));
  memmove(sp->recent_at + i, sp->recent_at + i + 1,
          (sp->nrecent - i - 1) * sizeof(sp->recent_at[0]));
  sp->nrecent--;
}

/* Keeps ev for its first delivery, or frees it. Deliveries start in the
 * order events were stored, so when the cache is full the events already
 * in it are the next ones asked for: the newcomer is the one not kept
 * (evicting the oldest would make every lookup miss once deliveries fall
 * behind by more than the cache holds). Only events nobody asked for in
 * SPOOL_RECENT_AGE_MS make room. */
static void
spool_recent_put(struct spool *sp, struct cam_event *ev)
{
  size_t bytes = spool_event_bytes(ev);
  int64_t now = mono_ms();

  while (sp->nrecent > 0 &&
         now - sp->recent_at[0] > SPOOL_RECENT_AGE_MS)
    spool_recent_drop(sp, 0, 1);
  if (sp->nrecent == SPOOL_RECENT ||
      sp->recent_bytes + bytes > SPOOL_RECENT_BYTES) {
    cam_event_free(ev);
    return;
  }
  sp->recent_at[sp->nrecent] = now;
  sp->recent[sp->nrecent++] = ev;
  sp->recent_bytes += bytes;
}

static void
spool_recent_prune(struct spool *sp, int64_t cutoff)
{
  for (size_t i = sp->nrecent; i-- > 0;)
    if (sp->recent[i]->recv_time < cutoff)
      spool_recent_drop(sp, i, 1);
}

/* Returns the event and forgets it (the caller owns it), or NULL. */
static struct cam_event *
spool_recent_take(struct spool *sp, int64_t id)
{
  for (size_t i = 0; i < sp->nrecent; i++) {
    struct cam_event *ev = sp->recent[i];

    if (ev->id == id) {
      spool_recent_drop(sp, i, 0);
      return ev;
    }
  }
  return NULL;
}

/* Writer thread. keep: the events of the batch's stored jobs go into the
 * cache (the jobs no longer own them). !keep: the commit failed, the jobs
 * take back those still there. */
static void
spool_recent_keep(struct spool *sp, struct job *batch, int keep)
{
  pthread_mutex_lock(&sp->recent_lock);
  for (struct job *j = batch; j; j = j->next) {
    if (j->type != JOB_EVENT || !j->ok)
      continue;
    if (keep && j->ev) {
      j->ev->id = j->event_id;
      spool_recent_put(sp, j->ev);
      j->ev = NULL;
    } else if (!keep && j->ev == NULL) {
      j->ev = spool_recent_take(sp, j->event_id);
    }
  }
  pthread_mutex_unlock(&sp->recent_lock);
}

static void spool_prune_from(struct spool *sp, int64_t retention_s,
                             int64_t before);

static int
spool_stopping(struct spool *sp)
{
  int stopping;

  pthread_mutex_lock(&sp->lock);
  stopping = sp->stopping;
  pthread_mutex_unlock(&sp->lock);
  return stopping;
}

/* Runs on the main loop when a batch is committed (or failed): tells each
 * submitter how its job went, in order. */
static void
spool_batch_done(void *arg)
{
  struct job *batch = arg;

  while (batch) {
    struct job *j = batch;

    batch = j->next;
    /* Pruned events must not come back from the cache. Dropping every
     * cached event past the cutoff may drop one still pending; it is
     * then read from the database. */
    if (j->type == JOB_PRUNE && j->ok) {
      pthread_mutex_lock(&j->sp->recent_lock);
      spool_recent_prune(j->sp, now_ms() - j->retention_s * 1000);
      pthread_mutex_unlock(&j->sp->recent_lock);
      if (j->changed == SPOOL_PRUNE_BATCH && !spool_stopping(j->sp))
        spool_prune_from(j->sp, j->retention_s,
                         j->pruned_before + j->changed);
      else if (j->pruned_before + j->changed > 0)
        log_info("spool", "pruned=%" PRId64 " retention_s=%" PRId64
                 " msg=\"alerts past spool.retention removed\"",
                 j->pruned_before + j->changed, j->retention_s);
    }
    if (j->type == JOB_ORPHANS && j->ok && j->changed > 0)
      log_warn("spool", "deliveries=%" PRId64 " msg=\"alerts not yet "
               "delivered to backends no longer in the config given up\"",
               j->changed);
    if (j->type == JOB_EVENT && j->stored)
      j->stored(j->arg, j->ok, j->ok ? j->event_id : 0);
    else if (j->type == JOB_UPDATE && j->written)
      j->written(j->arg, j->ok);
    spool_job_free(j);
  }
}

/* Runs one statement on the writer connection from the cache. */
static int
spool_wexec(struct spool *sp, const char *sql)
{
  sqlite3_stmt *st = NULL;
  int rc = spool_prep(sp, sp->wdb, sql, &st) == SQLITE_OK &&
           sqlite3_step(st) == SQLITE_DONE ? 0 : -1;

  if (rc != 0)
    log_error("spool", "sql=\"%s\" error=\"%s\"", sql,
              sqlite3_errmsg(sp->wdb));
  spool_fin(st);
  return rc;
}

/* Only a batch that stores events must reach the disk before it is
 * answered: that is what a camera's 250 promises. A batch of delivery
 * updates commits without its own fsync (the next event batch's fsync
 * covers it); losing one to a power cut only sends an alert twice. */
static void
spool_set_sync(struct spool *sp, const struct job *batch)
{
  int full = 0;

  for (const struct job *j = batch; j && !full; j = j->next)
    full = j->type == JOB_EVENT;
  if (full != sp->sync_full) {
    spool_exec(sp->wdb, full ? "PRAGMA synchronous=FULL"
                             : "PRAGMA synchronous=NORMAL");
    sp->sync_full = full;
  }
}

/* Writes a batch in one transaction. Each job gets a savepoint, so one bad
 * job fails alone while the rest of the batch commits. */
static void
spool_write_batch(struct spool *sp, struct job *batch)
{
  int ok;
  size_t n = 0;

  spool_set_sync(sp, batch);
  ok = !spool_fail_injected(sp, 0) &&
       spool_wexec(sp, "BEGIN IMMEDIATE") == 0;
  for (struct job *j = batch; j; j = j->next)
    n++;
  for (struct job *j = batch; ok && j; j = j->next) {
    size_t mark = sp->nfiles;

    spool_wexec(sp, "SAVEPOINT job");
    j->ok = spool_write_job(sp, j) == 0;
    if (!j->ok) {
      spool_wexec(sp, "ROLLBACK TO job");
      spool_drop_files(sp, mark, 1);
    }
    spool_wexec(sp, "RELEASE job");
  }
  /* The batch's events go into the cache before the commit makes them
   * visible: whoever finds one in the database finds it in memory too. */
  if (ok)
    spool_recent_keep(sp, batch, 1);
  if (ok && (spool_fail_injected(sp, 1) || spool_sync_files(sp) != 0)) {
    spool_wexec(sp, "ROLLBACK");
    ok = 0;
  } else if (ok && spool_wexec(sp, "COMMIT") != 0) {
    spool_wexec(sp, "ROLLBACK");
    ok = 0;
  }
  spool_drop_files(sp, 0, !ok);
  if (!ok) {
    log_error("spool", "batch=%zu commit=failed msg=\"nothing in this "
              "batch is acknowledged; cameras get 451 and send again; "
              "check the disk under the spool path\"", n);
    spool_recent_keep(sp, batch, 0);
    for (struct job *j = batch; j; j = j->next)
      j->ok = 0;
  } else {
    log_debug("spool", "batch=%zu committed", n);
  }
  notify_post(sp->notify, spool_batch_done, batch);
}

/* After each commit on the writer's connection: wakes the checkpointer
 * once the WAL is big enough to be worth copying. */
static int
spool_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
  struct spool *sp = arg;

  (void)db;
  (void)name;
  if (pages >= SPOOL_CKPT_FORCE_PAGES) {
    int logged = 0;
    int copied = 0;
    int rc;

    pthread_mutex_lock(&sp->ckpt_mutex);
    rc = sqlite3_wal_checkpoint_v2(sp->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                   &logged, &copied);
    pthread_mutex_unlock(&sp->ckpt_mutex);
    if (rc != SQLITE_OK)
      log_warn("spool", "checkpoint=writer wal_pages=%d error=\"%s\"",
               pages, sqlite3_errmsg(sp->wdb));
    else
      log_debug("spool", "checkpoint=writer wal_pages=%d copied=%d", logged,
                copied);
  } else if (pages >= SPOOL_CKPT_PAGES) {
    pthread_mutex_lock(&sp->lock);
    sp->ckpt_wanted = 1;
    pthread_cond_signal(&sp->ckpt_cond);
    pthread_mutex_unlock(&sp->lock);
  }
  return SQLITE_OK;
}

/* Copies the WAL into the database while the writer goes on committing
 * (a passive checkpoint takes no lock a writer needs). */
static void *
spool_checkpointer(void *arg)
{
  struct spool *sp = arg;

  /* Copying pages can wait; the loop and the writer, which answer
   * cameras and publish alerts, go first on a small machine. */
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
  pthread_mutex_lock(&sp->lock);
  for (;;) {
    int rc;
    int logged = 0;
    int copied = 0;

    while (!sp->ckpt_wanted && !sp->stopping)
      pthread_cond_wait(&sp->ckpt_cond, &sp->lock);
    if (sp->stopping)
      break;
    sp->ckpt_wanted = 0;
    pthread_mutex_unlock(&sp->lock);
    pthread_mutex_lock(&sp->ckpt_mutex);
    rc = sqlite3_wal_checkpoint_v2(sp->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                   &logged, &copied);
    pthread_mutex_unlock(&sp->ckpt_mutex);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
      log_error("spool", "checkpoint error=\"%s\"", sqlite3_errmsg(sp->cdb));
    else
      log_debug("spool", "checkpoint wal_pages=%d copied=%d", logged,
                copied);
    pthread_mutex_lock(&sp->lock);
  }
  pthread_mutex_unlock(&sp->lock);
  return NULL;
}

static void *
spool_writer(void *arg)
{
  struct spool *sp = arg;

  for (;;) {
    struct job *batch;

    pthread_mutex_lock(&sp->lock);
    while (sp->head == NULL && !sp->stopping)
      pthread_cond_wait(&sp->cond, &sp->lock);
    batch = sp->head;
    sp->head = sp->tail = NULL;
    pthread_mutex_unlock(&sp->lock);
    if (batch == NULL)
      break;
    spool_write_batch(sp, batch);
  }
  return NULL;
}

static void
spool_enqueue(struct spool *sp, struct job *j)
{
  pthread_mutex_lock(&sp->lock);
  if (sp->tail)
    sp->tail->next = j;
  else
    sp->head = j;
  sp->tail = j;
  pthread_cond_signal(&sp->cond);
  pthread_mutex_unlock(&sp->lock);
}

static sqlite3 *
spool_db_open(const char *path, int flags, const char *pragmas, char *err,
              size_t errsz)
{
  sqlite3 *db = NULL;

  if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    snprintf(err, errsz, "cannot open %s: %s", path,
             db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 10000);
  if (spool_exec(db, pragmas) != 0) {
    snprintf(err, errsz, "cannot set up %s: %s", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return NULL;
  }
  return db;
}

static int
spool_migrate(sqlite3 *db)
{
  for (size_t i = 0; i < sizeof(spool_migrations) /
                         sizeof(spool_migrations[0]); i++) {
    sqlite3_stmt *st = NULL;
    int have = sqlite3_prepare_v2(db, spool_migrations[i][0], -1, &st,
                                  NULL) == SQLITE_OK;

    sqlite3_finalize(st);
    if (!have && spool_exec(db, spool_migrations[i][1]) != 0)
      return -1;
  }
  return 0;
}

static int
spool_mkdir(const char *path, char *err, size_t errsz)
{
  if (mkdir(path, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errsz, "cannot create %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* Two camgates on one spool would both deliver every event: the second
 * is refused. The lock goes with the process, even on kill -9. */
static int
spool_lock(struct spool *sp, char *err, size_t errsz)
{
  char path[4096];

  snprintf(path, sizeof(path), "%s/lock", sp->dir);
  sp->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (sp->lock_fd < 0) {
    snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    snprintf(err, errsz, "%s is in use by another camgate; give each "
             "instance its own spool.path", sp->dir);
    return -1;
  }
  return 0;
}

struct spool *
spool_open(const char *dir, struct notify *n, char *err, size_t errsz)
{
  struct spool *sp = xcalloc(1, sizeof(*sp));
  char path[4096];
  const char *fail = getenv("CAMGATE_SPOOL_FAIL");

  sp->dir = xstrdup(dir);
  sp->notify = n;
  sp->lock_fd = -1;
  sp->sync_full = 1;
  if (fail && *fail)
    sp->fail_path = xstrdup(fail);
  pthread_mutex_init(&sp->lock, NULL);
  pthread_cond_init(&sp->cond, NULL);
  pthread_cond_init(&sp->ckpt_cond, NULL);
  pthread_mutex_init(&sp->ckpt_mutex, NULL);
  pthread_mutex_init(&sp->recent_lock, NULL);
  snprintf(path, sizeof(path), "%s/att", dir);
  if (spool_mkdir(dir, err, errsz) != 0 || spool_lock(sp, err, errsz) ||
      spool_mkdir(path, err, errsz))
    goto fail;
  snprintf(path, sizeof(path), "%s/spool.db", dir);
  sp->wdb = spool_db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                          "PRAGMA journal_mode=WAL;"
                          "PRAGMA synchronous=FULL;"
                          "PRAGMA foreign_keys=OFF;"
                          /* Debian's SQLite zeroes every freed page by
                           * default: a prune of 1,000 pictures wrote
                           * 100 MB through the WAL. FAST zeroes deleted
                           * rows where that costs no extra writes. */
                          "PRAGMA secure_delete=FAST;"
                          /* The WAL is cut back to this after a
                           * checkpoint lets it start over. */
                          "PRAGMA journal_size_limit=33554432;",
                          err, errsz);
  if (sp->wdb == NULL)
    goto fail;
  if (spool_exec(sp->wdb, spool_schema) != 0 ||
      spool_migrate(sp->wdb) != 0) {
    snprintf(err, errsz, "cannot create tables in %s", path);
    goto fail;
  }
  /* The loop's reads touch a few index pages per alert, the checkpointer
   * copies pages without needing a cache: small page caches each. */
  sp->rdb = spool_db_open(path, SQLITE_OPEN_READONLY, "PRAGMA query_only=1;"
                          "PRAGMA cache_size=-512;", err, errsz);
  if (sp->rdb == NULL)
    goto fail;
  sp->cdb = spool_db_open(path, SQLITE_OPEN_READWRITE,
                          "PRAGMA synchronous=FULL;PRAGMA cache_size=-64;",
                          err, errsz);
  if (sp->cdb == NULL)
    goto fail;
  sqlite3_wal_hook(sp->wdb, spool_wal_hook, sp);
  if (pthread_create(&sp->ckpt_thread, NULL, spool_checkpointer, sp) != 0) {
    snprintf(err, errsz, "cannot start the spool checkpointer");
    goto fail;
  }
  sp->ckpt_started = 1;
  if (pthread_create(&sp->thread, NULL, spool_writer, sp) != 0) {
    snprintf(err, errsz, "cannot start the spool writer");
    goto fail;
  }
  return sp;
fail:
  if (sp->ckpt_started) {
    pthread_mutex_lock(&sp->lock);
    sp->stopping = 1;
    pthread_cond_signal(&sp->ckpt_cond);
    pthread_mutex_unlock(&sp->lock);
    pthread_join(sp->ckpt_thread, NULL);
  }
  spool_cache_free(&sp->rcache);
  spool_cache_free(&sp->wcache);
  sqlite3_close(sp->rdb);
  sqlite3_close(sp->cdb);
  sqlite3_close(sp->wdb);
  if (sp->lock_fd >= 0)
    close(sp->lock_fd);
  free(sp->fail_path);
  free(sp->dir);
  free(sp);
  return NULL;
}

void
spool_close(struct spool *sp)
{
  if (sp == NULL)
    return;
  pthread_mutex_lock(&sp->lock);
  sp->stopping = 1;
  pthread_cond_signal(&sp->cond);
  pthread_cond_signal(&sp->ckpt_cond);
  pthread_mutex_unlock(&sp->lock);
  pthread_join(sp->thread, NULL);
  if (sp->ckpt_started)
    pthread_join(sp->ckpt_thread, NULL);
  /* The writer's last answers reach their sessions while sp lives. */
  notify_run_pending(sp->notify);
  while (sp->nrecent)
    spool_recent_drop(sp, sp->nrecent - 1, 1);
  spool_cache_free(&sp->rcache);
  spool_cache_free(&sp->wcache);
  sqlite3_close(sp->rdb);
  sqlite3_close(sp->cdb);
  sqlite3_close(sp->wdb);
  pthread_mutex_destroy(&sp->lock);
  pthread_cond_destroy(&sp->cond);
  pthread_cond_destroy(&sp->ckpt_cond);
  pthread_mutex_destroy(&sp->ckpt_mutex);
  pthread_mutex_destroy(&sp->recent_lock);
  if (sp->lock_fd >= 0)
    close(sp->lock_fd);
  free(sp->files);
  free(sp->fail_path);
  free(sp->dir);
  free(sp);
}

void
spool_submit(struct spool *sp, struct cam_event *ev, const struct route *routes,
             size_t nroutes, spool_stored_fn stored, void *arg)
{
  struct job *j = xcalloc(1, sizeof(*j));

  j->sp = sp;
  j->type = JOB_EVENT;
  j->ev = ev;
  j->nroutes = nroutes;
  j->routes = xcalloc(nroutes + 1, sizeof(*j->routes));
  for (size_t i = 0; i < nroutes; i++) {
    struct job_route *r = &j->routes[i];

    r->backend = xstrdup(routes[i].backend);
    r->rule = xstrdup(routes[i].rule ? routes[i].rule : "");
    r->limited = routes[i].limited;
    r->limits = routes[i].limits;
    r->camera = routes[i].camera;
    if (routes[i].tz && j->tz == NULL)
      j->tz = g_time_zone_ref(routes[i].tz);
  }
  j->stored = stored;
  j->arg = arg;
  spool_enqueue(sp, j);
}

void
spool_update_delivery(struct spool *sp, int64_t delivery_id,
                      enum delivery_state st, int phase, int attempts,
                      int64_t next_try_ms, const char *error,
                      spool_written_fn written, void *arg)
{
  struct job *j = xcalloc(1, sizeof(*j));

  j->sp = sp;
  j->type = JOB_UPDATE;
  j->delivery_id = delivery_id;
  j->st = st;
  j->phase = phase;
  j->attempts = attempts;
  j->next_try = next_try_ms;
  j->error = error ? xstrdup(error) : NULL;
  j->written = written;
  j->arg = arg;
  spool_enqueue(sp, j);
}

static void
spool_prune_from(struct spool *sp, int64_t retention_s, int64_t before)
{
  struct job *j = xcalloc(1, sizeof(*j));

  j->sp = sp;
  j->type = JOB_PRUNE;
  j->retention_s = retention_s;
  j->pruned_before = before;
  spool_enqueue(sp, j);
}

void
spool_prune(struct spool *sp, int64_t retention_s)
{
  spool_prune_from(sp, retention_s, 0);
}

void
spool_drop_backends_except(struct spool *sp, const char *const *names,
                           size_t n)
{
  struct job *j = xcalloc(1, sizeof(*j));

  j->sp = sp;
  j->type = JOB_ORPHANS;
  j->names = xcalloc(n ? n : 1, sizeof(*j->names));
  for (size_t i = 0; i < n; i++)
    j->names[i] = xstrdup(names[i]);
  j->nnames = n;
  spool_enqueue(sp, j);
}

static int
spool_is_busy(int64_t id, const int64_t *busy, size_t nbusy)
{
  for (size_t i = 0; i < nbusy; i++)
    if (busy[i] == id)
      return 1;
  return 0;
}

int
spool_due(struct spool *sp, const char *backend, int64_t now,
          const int64_t *busy, size_t nbusy, struct delivery *out,
          size_t max)
{
  const char *sql = "SELECT id, event_id, phase, attempts FROM deliveries"
                    " WHERE backend=? AND state=0 AND next_try<=?"
                    " ORDER BY event_id, id LIMIT ?";
  sqlite3_stmt *st = NULL;
  int n = 0;
  int r;

  if (spool_prep(sp, sp->rdb, sql, &st) != SQLITE_OK)
    return -1;
  sqlite3_bind_text(st, 1, backend, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, now);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)(max + nbusy));
  while ((size_t)n < max && (r = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);

    if (spool_is_busy(id, busy, nbusy))
      continue;
    out[n].id = id;
    out[n].event_id = sqlite3_column_int64(st, 1);
    out[n].phase = sqlite3_column_int(st, 2);
    out[n].attempts = sqlite3_column_int(st, 3);
    n++;
  }
  spool_fin(st);
  return n;
}

int64_t
spool_next_due(struct spool *sp, const char *backend)
{
  const char *sql = "SELECT min(next_try) FROM deliveries"
                    " WHERE backend=? AND state=0";
  sqlite3_stmt *st = NULL;
  int64_t t = INT64_MAX;

  if (spool_prep(sp, sp->rdb, sql, &st) != SQLITE_OK)
    return t;
  sqlite3_bind_text(st, 1, backend, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW &&
      sqlite3_column_type(st, 0) != SQLITE_NULL)
    t = sqlite3_column_int64(st, 0);
  spool_fin(st);
  return t;
}

long
spool_pending(struct spool *sp, const char *backend)
{
  const char *sql = backend ? "SELECT count(*) FROM deliveries"
                              " WHERE state=0 AND backend=?"
                            : "SELECT count(*) FROM deliveries"
                              " WHERE state=0";
  sqlite3_stmt *st = NULL;
  long n = -1;

  if (spool_prep(sp, sp->rdb, sql, &st) != SQLITE_OK)
    return -1;
  if (backend)
    sqlite3_bind_text(st, 1, backend, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW)
    n = (long)sqlite3_column_int64(st, 0);
  spool_fin(st);
  return n;
}

static unsigned char *
spool_read_file(const char *path, size_t want)
{
  unsigned char *buf = xmalloc(want);
  FILE *f = fopen(path, "rb");
  size_t got = 0;

  if (f) {
    got = fread(buf, 1, want, f);
    fclose(f);
  }
  if (got != want) {
    log_error("spool", "file=%s error=\"short or missing attachment\"",
              path);
    free(buf);
    return NULL;
  }
  return buf;
}

static void
spool_load_attachments(struct spool *sp, struct cam_event *ev)
{
  const char *sql = "SELECT name, content_type, size, data, path, seq"
                    " FROM attachments WHERE event_id=? ORDER BY seq";
  sqlite3_stmt *st = NULL;

  if (spool_prep(sp, sp->rdb, sql, &st) != SQLITE_OK)
    return;
  sqlite3_bind_int64(st, 1, ev->id);
  while (sqlite3_step(st) == SQLITE_ROW) {
    size_t len = (size_t)sqlite3_column_int64(st, 2);
    const char *path = (const char *)sqlite3_column_text(st, 4);
    int is_raw = sqlite3_column_int64(st, 5) == SPOOL_RAW_SEQ;
    unsigned char *data;

    if (path && !is_raw) {
      /* Read when a backend needs the bytes (attachment_data). */
      cam_event_add_attachment_owned(ev,
                                     (const char *)sqlite3_column_text(st, 0),
                                     (const char *)sqlite3_column_text(st, 1),
                                     NULL, len);
      ev->att[ev->natt - 1].path = xstrdup(path);
      continue;
    }
    if (path) {
      data = spool_read_file(path, len);
      if (data == NULL)
        continue;
    } else {
      const void *blob = sqlite3_column_blob(st, 3);

      len = (size_t)sqlite3_column_bytes(st, 3);
      data = xmalloc(len);
      if (len)
        memcpy(data, blob, len);
    }
    if (is_raw) {
      free(ev->raw);
      ev->raw = data;
      ev->raw_len = len;
      continue;
    }
    cam_event_add_attachment_owned(ev, (const char *)sqlite3_column_text(st, 0),
                               (const char *)sqlite3_column_text(st, 1),
                               data, len);
  }
  spool_fin(st);
}

static void
spool_load_labels(struct cam_event *ev, const char *text)
{
  json_t *obj = text ? json_loads(text, 0, NULL) : NULL;
  const char *key;
  json_t *val;

  if (!json_is_object(obj)) {
    json_decref(obj);
    return;
  }
  json_object_foreach(obj, key, val) {
    if (json_is_string(val))
      cam_event_add_label(ev, key, json_string_value(val));
  }
  json_decref(obj);
}

/* With media 0 the event comes without its attachments and raw mail:
 * for a delivery phase that only needs the event's fields. */
static struct cam_event *
spool_load_event_opt(struct spool *sp, int64_t id, int media)
{
  const char *sql = "SELECT camera, camera_name, source, kind, state,"
                    " device_time, recv_time, title, text, labels"
                    " FROM events WHERE id=?";
  sqlite3_stmt *st = NULL;
  struct cam_event *ev;

  pthread_mutex_lock(&sp->recent_lock);
  ev = spool_recent_take(sp, id);
  pthread_mutex_unlock(&sp->recent_lock);
  if (ev)
    return ev;
  if (spool_prep(sp, sp->rdb, sql, &st) != SQLITE_OK)
    return NULL;
  sqlite3_bind_int64(st, 1, id);
  if (sqlite3_step(st) == SQLITE_ROW) {
    ev = cam_event_new();
    ev->id = id;
    cam_event_set(&ev->camera, (const char *)sqlite3_column_text(st, 0));
    cam_event_set(&ev->camera_name, (const char *)sqlite3_column_text(st, 1));
    cam_event_set(&ev->source, (const char *)sqlite3_column_text(st, 2));
    cam_event_set(&ev->kind, (const char *)sqlite3_column_text(st, 3));
    event_state_parse((const char *)sqlite3_column_text(st, 4), &ev->state);
    ev->device_time = sqlite3_column_int64(st, 5);
    ev->recv_time = sqlite3_column_int64(st, 6);
    cam_event_set(&ev->title, (const char *)sqlite3_column_text(st, 7));
    cam_event_set(&ev->text, (const char *)sqlite3_column_text(st, 8));
    spool_load_labels(ev, (const char *)sqlite3_column_text(st, 9));
  }
  spool_fin(st);
  if (ev && media)
    spool_load_attachments(sp, ev);
  return ev;
}

struct cam_event *
spool_load_event(struct spool *sp, int64_t id)
{
  return spool_load_event_opt(sp, id, 1);
}

struct cam_event *
spool_load_delivery(struct spool *sp, int64_t delivery_id, int media)
{
  const char *sql = "SELECT event_id, rule, folded, folded_since"
                    " FROM deliveries WHERE id=?";
  sqlite3_stmt *st = NULL;
  struct cam_event *ev = NULL;
  char *rule = NULL;
  int64_t event_id = 0;
  int64_t since = 0;
  int folded = 0;

  if (spool_prep(sp, sp->rdb, sql, &st) != SQLITE_OK)
    return NULL;
  sqlite3_bind_int64(st, 1, delivery_id);
  if (sqlite3_step(st) == SQLITE_ROW) {
    const char *r = (const char *)sqlite3_column_text(st, 1);

    event_id = sqlite3_column_int64(st, 0);
    rule = r && *r ? xstrdup(r) : NULL;
    folded = sqlite3_column_int(st, 2);
    since = sqlite3_column_int64(st, 3);
  }
  spool_fin(st);
  if (event_id != 0)
    ev = spool_load_event_opt(sp, event_id, media);
  if (ev == NULL) {
    free(rule);
    return NULL;
  }
  ev->rule = rule;
  ev->folded = folded;
  ev->folded_since = folded ? since : 0;
  return ev;
}
