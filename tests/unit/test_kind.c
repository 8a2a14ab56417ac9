/* test_kind.c - the kind and state that vendors' alert words give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "ingest/kind.h"

struct kind_case {
  const char *subject;
  const char *body;
  const char *kind;
  enum event_state state;
};

/* Subjects and bodies as the vendors' mails word them. */
static const struct kind_case cases[] = {
  /* Hikvision NVR and IPC */
  {"Network Video Recorder: Motion Detected On Channel D4",
   "EVENT TYPE:    Motion Detected\nEVENT TIME:    2024-05-01,12:30:45",
   "motion", EVENT_PULSE},
  {"IPCamera: Line Crossing Detection", NULL, "line_crossing", EVENT_PULSE},
  {"NVR alarm", "EVENT TYPE:    linedetection", "line_crossing",
   EVENT_PULSE},
  {"IPCamera: Intrusion Detection", NULL, "intrusion", EVENT_PULSE},
  {"NVR: Region Entrance Detection On Channel D2", NULL, "intrusion",
   EVENT_PULSE},
  {"IPCamera: Video Tampering Detected", NULL, "tamper", EVENT_PULSE},
  {"IPCamera: Scene Change Detection", NULL, "tamper", EVENT_PULSE},
  {"IPCamera: Defocus Detection", NULL, "tamper", EVENT_PULSE},
  {"NVR: Video Loss On Channel D3", NULL, "video_loss", EVENT_PULSE},
  {"NVR alarm", "EVENT TYPE:    videoloss", "video_loss", EVENT_PULSE},
  {"NVR: Video Loss Restored On Channel D3", NULL, "video_loss",
   EVENT_STOP},
  {"IPCamera: Human Detected", NULL, "person", EVENT_PULSE},
  /* Dahua, Amcrest: the state is on the "Alarm Event" line; the "Alarm
   * Start Time" line must not make a stop mail a start. */
  {"EZIP-GATE \xe6\x8a\xa5\xe8\xad\xa6 Alarm",
   "Alarm Event: Motion Detection Start\nAlarm Input Channel: 1\n"
   "Alarm Start Time(D/M/Y H:M:S): 01/05/2024 12:30:45",
   "motion", EVENT_START},
  {"EZIP-GATE Alarm",
   "Alarm Event: Motion Detection Stop\nAlarm Input Channel: 1\n"
   "Alarm Start Time(D/M/Y H:M:S): 01/05/2024 12:30:45",
   "motion", EVENT_STOP},
  {"Amcrest Alarm", "Alarm Event: Human Detection Start", "person",
   EVENT_START},
  {"Dahua Alarm", "Alarm Event: Video Blind Start", "tamper", EVENT_START},
  {"Dahua Alarm", "Alarm Event: Tripwire\nAlarm Input Channel: 2",
   "line_crossing", EVENT_PULSE},
  /* Reolink */
  {"Motion alert garden", NULL, "motion", EVENT_PULSE},
  {"Person alert from Front Door", NULL, "person", EVENT_PULSE},
  {"Vehicle alert from Driveway", NULL, "vehicle", EVENT_PULSE},
  {"Pet alert from Backyard", NULL, "animal", EVENT_PULSE},
  {"Visitor alert from Doorbell", NULL, "doorbell", EVENT_PULSE},
  /* Foscam, Axis */
  {"FI9821P alarm", "Your camera FI9821P has detected an MDAlarm.",
   "motion", EVENT_PULSE},
  {"Axis P1435: VMD alarm", NULL, "motion", EVENT_PULSE},
  {"AXIS M3106 Motion alarm started", NULL, "motion", EVENT_START},
  /* TP-Link Tapo, Uniview */
  {"Tapo C310: Person detected", NULL, "person", EVENT_PULSE},
  {"Tapo C200 detected motion", NULL, "motion", EVENT_PULSE},
  {"Tapo D230: Someone is at your door", NULL, "doorbell", EVENT_PULSE},
  {"Uniview IPC: Cross Line Detection Alarm", NULL, "line_crossing",
   EVENT_PULSE},
  {"Uniview IPC: Motion Detection Alarm Ended", NULL, "motion",
   EVENT_STOP},
  /* Synology Surveillance Station */
  {"Motion detected on camera Porch", NULL, "motion", EVENT_PULSE},
  {"Camera Porch: car detected", NULL, "vehicle", EVENT_PULSE},
  /* Blue Iris */
  {"Alert: FrontYard MOTION_A", NULL, "motion", EVENT_PULSE},
  {"Blue Iris alert", "Camera: FrontYard", "motion", EVENT_PULSE},
  {"Alert: Drive person", NULL, "person", EVENT_PULSE},
  /* ZoneMinder */
  {"ZoneMinder: Alarm - Garage-4711 (Motion)",
   "Monitor: Garage\nEvent: 4711\nCause: Motion", "motion", EVENT_PULSE},
  /* Doorbells and the rest */
  {"Front door", "Call button pressed", "doorbell", EVENT_PULSE},
  {"Doorbell Ring", NULL, "doorbell", EVENT_PULSE},
  {"Dog detected in garden", NULL, "animal", EVENT_PULSE},
  {"Cat detected on porch", NULL, "animal", EVENT_PULSE},
  {"Perimeter alarm began", NULL, "intrusion", EVENT_START},
  {"Motion alarm cleared", NULL, "motion", EVENT_STOP},
  /* The subject speaks first; the body only when the subject is silent. */
  {"Motion Alarm", "An AI box later said: person", "motion", EVENT_PULSE},
  {"Camera 3 alarm", "Motion Detection on camera 3", "motion",
   EVENT_PULSE},
  /* Words inside other words are not words. */
  {"Startup notice: carpet cleaning appended to monitoring", NULL, "alert",
   EVENT_PULSE},
  {"Test mail from camera", NULL, "alert", EVENT_PULSE},
  {"Alarm end", NULL, "alert", EVENT_STOP},
};

static void
test_vendor_lines(void **state)
{
  (void)state;
  assert_true(sizeof(cases) / sizeof(cases[0]) >= 25);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *kind = NULL;
    enum event_state st = (enum event_state)-1;

    kind_classify(NULL, 0, cases[i].subject, cases[i].body, &kind, &st);
    if (kind == NULL || strcmp(kind, cases[i].kind) != 0 ||
        st != cases[i].state)
      fail_msg("case %zu \"%s\": got %s/%s, want %s/%s", i,
               cases[i].subject, kind ? kind : "(null)",
               event_state_name(st), cases[i].kind,
               event_state_name(cases[i].state));
  }
}

static void
test_null_texts(void **state)
{
  const char *kind = NULL;
  enum event_state st = EVENT_STOP;

  (void)state;
  kind_classify(NULL, 0, NULL, NULL, &kind, &st);
  assert_string_equal(kind, "alert");
  assert_int_equal(st, EVENT_PULSE);
  kind_classify(NULL, 0, NULL, "Person detected", &kind, &st);
  assert_string_equal(kind, "person");
}

/* The "alert" fallback keeps nothing else: no state from a body whose
 * kind it could not name. */
static void
test_alert_fallback(void **state)
{
  const char *kind = NULL;
  enum event_state st = EVENT_STOP;

  (void)state;
  kind_classify(NULL, 0, "Camera notice", "Recording started at 12:00",
                &kind, &st);
  assert_string_equal(kind, "alert");
  assert_int_equal(st, EVENT_PULSE);
}

static GRegex *
compile(const char *pattern)
{
  GRegex *re = g_regex_new(pattern, G_REGEX_CASELESS, 0, NULL);

  assert_non_null(re);
  return re;
}

static void
test_user_patterns(void **state)
{
  char garage[] = "garage_door";
  char drive[] = "driveway";
  char beep[] = "beep";
  char start[] = "start";
  char stop[] = "stop";
  struct kind_pattern pats[3] = {
    {KIND_SUBJECT, compile("Channel D4"), drive, start},
    {KIND_BODY, compile("garage door (opened|closed)"), garage, NULL},
    {KIND_ANY, compile("beep"), beep, stop},
  };
  const char *kind = NULL;
  enum event_state st = EVENT_PULSE;

  (void)state;
  /* Overrides the built-in motion, and its state wins over the words. */
  kind_classify(pats, 3, "NVR: Motion Detected On Channel D4 ended", NULL,
                &kind, &st);
  assert_string_equal(kind, "driveway");
  assert_int_equal(st, EVENT_START);
  assert_ptr_equal(kind, drive);

  /* Field body: the subject does not count. */
  kind_classify(pats, 3, "garage door opened", "Motion detected", &kind,
                &st);
  assert_string_equal(kind, "motion");

  /* No state set: the words decide. */
  kind_classify(pats, 3, "Sensor", "Garage door closed, alarm ended",
                &kind, &st);
  assert_string_equal(kind, "garage_door");
  assert_int_equal(st, EVENT_STOP);

  /* Any field; the first user pattern that matches wins. */
  kind_classify(pats, 3, "Person", "beep at Channel D4", &kind, &st);
  assert_string_equal(kind, "beep");
  assert_int_equal(st, EVENT_STOP);
  kind_classify(pats, 3, "Channel D4 beep", NULL, &kind, &st);
  assert_string_equal(kind, "driveway");

  /* Nothing user-defined matches: the built-ins still apply. */
  kind_classify(pats, 3, "Person alert", NULL, &kind, &st);
  assert_string_equal(kind, "person");
  assert_int_equal(st, EVENT_PULSE);

  for (size_t i = 0; i < 3; i++)
    g_regex_unref(pats[i].re);
}

static void
test_is_builtin(void **state)
{
  static const char *const yes[] = {
    "motion", "person", "vehicle", "animal", "doorbell", "line_crossing",
    "intrusion", "tamper", "video_loss", "alert"};
  static const char *const no[] = {"garage_door", "", "Motion", "alerts"};

  (void)state;
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
    assert_true(kind_is_builtin(yes[i]));
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
    assert_false(kind_is_builtin(no[i]));
  assert_false(kind_is_builtin(NULL));
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_vendor_lines),
    cmocka_unit_test(test_null_texts),
    cmocka_unit_test(test_alert_fallback),
    cmocka_unit_test(test_user_patterns),
    cmocka_unit_test(test_is_builtin),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
