/* kind.c - see kind.h. */
#include "ingest/kind.h"

#include <pthread.h>
#include <string.h>

#include "gateway/log.h"

struct kind_builtin {
  const char *kind;
  const char *pattern;
};

/* Most specific first: an AI camera's "Motion alarm: human" is a person,
 * and only what no finer pattern claims falls through to motion. */
static const struct kind_builtin kind_builtins[] = {
  {"person", "\\b(persons?|humans?|pedestrians?|people)\\b"},
  {"vehicle", "\\b(vehicles?|car detected|car alert)\\b"},
  {"animal", "\\b(animals?|pets?|dogs?|cat detected)\\b"},
  {"doorbell", "\\b(door ?bell|visitors?|someone is at (the|your) door"
               "|call button|ring(ing)?)\\b"},
  {"line_crossing", "\\b(line ?crossing|tripwire|cross ?line"
                    "|line ?detection)"},
  {"intrusion", "\\b(intrusion|region entrance|region exiting"
                "|field ?detection|perimeter)"},
  {"tamper", "\\b(tamper(ing|ed)?|video blind|scene ?change"
             "|video blocked|defocus)"},
  {"video_loss", "\\b(video ?loss|video lost)\\b"},
  /* Blue Iris names its triggers MOTION_A..MOTION_H, hence no \b after
   * "motion"; ZoneMinder writes "Alarm - Monitor-Event (Motion)". */
  {"motion", "\\b(motion|movement|md ?alarm|vmd\\b|blue ?iris alert)"},
};

#define KIND_NBUILTIN (sizeof(kind_builtins) / sizeof(kind_builtins[0]))

static const char *const kind_extra[] = {"alert"};

static GRegex *kind_res[KIND_NBUILTIN];
static GRegex *kind_stop_re;
static GRegex *kind_start_re;
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;

static GRegex *
kind_compile(const char *pattern)
{
  GError *err = NULL;
  /* No G_REGEX_OPTIMIZE: PCRE's JIT reads past the end of the subject in
   * wide loads, which valgrind reports on every match, and the texts are
   * short enough that the interpreter costs nothing noticeable. */
  GRegex *re = g_regex_new(pattern, G_REGEX_CASELESS, 0, &err);

  if (re == NULL)
    fatal("kind: bad built-in pattern %s: %s", pattern, err->message);
  return re;
}

static void
kind_init(void)
{
  for (size_t i = 0; i < KIND_NBUILTIN; i++)
    kind_res[i] = kind_compile(kind_builtins[i].pattern);
  kind_stop_re = kind_compile("\\b(stop|stops|stopped|end|ends|ended"
                              "|finish|finished|cleared|restored)\\b");
  kind_start_re = kind_compile("\\b(start|starts|started|begin|begins"
                               "|began)\\b");
}

/* Finds re in s; on a match sets [*lb, *le) to the line that holds it. */
static int
kind_find(const GRegex *re, const char *s, size_t *lb, size_t *le)
{
  GMatchInfo *mi = NULL;
  int start = 0;
  int found;

  if (s == NULL)
    return 0;
  found = g_regex_match(re, s, 0, &mi) && g_match_info_fetch_pos(mi, 0,
                                                                 &start,
                                                                 NULL);
  g_match_info_free(mi);
  if (!found)
    return 0;
  *lb = (size_t)start;
  while (*lb > 0 && s[*lb - 1] != '\n')
    (*lb)--;
  *le = (size_t)start;
  while (s[*le] != '\0' && s[*le] != '\n')
    (*le)++;
  return 1;
}

/* Stop words win: "alarm ended (started 12:00:00)" reports an end. */
static int
kind_state_in(const char *s, size_t lb, size_t le, enum event_state *state)
{
  if (s == NULL)
    return 0;
  if (g_regex_match_full(kind_stop_re, s, (gssize)le, (int)lb, 0, NULL,
                         NULL)) {
    *state = EVENT_STOP;
    return 1;
  }
  if (g_regex_match_full(kind_start_re, s, (gssize)le, (int)lb, 0, NULL,
                         NULL)) {
    *state = EVENT_START;
    return 1;
  }
  return 0;
}

/* The state words that count are on the line that named the kind ("Alarm
 * Event: Motion Detection Start"), else in the subject. A body's other
 * lines are not read: Dahua's "Alarm Start Time" is not a state. */
static enum event_state
kind_state(const char *matched, size_t lb, size_t le, const char *subject)
{
  enum event_state st = EVENT_PULSE;

  if (matched != NULL && kind_state_in(matched, lb, le, &st))
    return st;
  if (subject != NULL && matched != subject)
    kind_state_in(subject, 0, strlen(subject), &st);
  return st;
}

static int
kind_user_match(const struct kind_pattern *p, const char *subject,
                const char *body, const char **matched, size_t *lb,
                size_t *le)
{
  if (p->re == NULL || p->kind == NULL)
    return 0;
  if (p->field != KIND_BODY && kind_find(p->re, subject, lb, le)) {
    *matched = subject;
    return 1;
  }
  if (p->field != KIND_SUBJECT && kind_find(p->re, body, lb, le)) {
    *matched = body;
    return 1;
  }
  return 0;
}

static int
kind_user(const struct kind_pattern *user, size_t nuser,
          const char *subject, const char *body, const char **kind,
          enum event_state *state)
{
  for (size_t i = 0; i < nuser; i++) {
    const char *matched = NULL;
    size_t lb = 0, le = 0;

    if (!kind_user_match(&user[i], subject, body, &matched, &lb, &le))
      continue;
    *kind = user[i].kind;
    if (user[i].state == NULL ||
        event_state_parse(user[i].state, state) != 0)
      *state = kind_state(matched, lb, le, subject);
    return 1;
  }
  return 0;
}

void
kind_classify(const struct kind_pattern *user, size_t nuser,
              const char *subject, const char *body, const char **kind,
              enum event_state *state)
{
  const char *texts[2] = {subject, body};

  pthread_once(&kind_once, kind_init);
  if (kind_user(user, nuser, subject, body, kind, state))
    return;

  for (size_t t = 0; t < 2; t++) {
    for (size_t i = 0; i < KIND_NBUILTIN; i++) {
      size_t lb = 0, le = 0;

      if (!kind_find(kind_res[i], texts[t], &lb, &le))
        continue;
      *kind = kind_builtins[i].kind;
      *state = kind_state(texts[t], lb, le, subject);
      return;
    }
  }
  *kind = "alert";
  *state = kind_state(NULL, 0, 0, subject);
}

int
kind_is_builtin(const char *kind)
{
  if (kind == NULL)
    return 0;
  for (size_t i = 0; i < KIND_NBUILTIN; i++)
    if (strcmp(kind, kind_builtins[i].kind) == 0)
      return 1;
  for (size_t i = 0; i < sizeof(kind_extra) / sizeof(kind_extra[0]); i++)
    if (strcmp(kind, kind_extra[i]) == 0)
      return 1;
  return 0;
}
