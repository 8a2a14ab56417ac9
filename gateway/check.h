/* check.h - `camgate check -c FILE --event key=value ...`: what the rules
 * would do with a sample event, without running anything.
 *
 * Keys: camera (required), kind (alert), source (smtp), state (pulse),
 * title, text, time (ISO 8601 like 2026-12-03T23:30, in the config's
 * zone unless it names an offset; default now), snapshot (yes or no) and
 * label.NAME for each label. */
#ifndef CAMGATE_CHECK_H
#define CAMGATE_CHECK_H

#include <stddef.h>
#include <stdio.h>

#include "config/config.h"
#include "gateway/event.h"

/* Builds the sample event from n "key=value" arguments. Returns it (the
 * caller frees it with cam_event_free), or NULL with the reason in err. */
struct cam_event *check_event_parse(const struct config *cfg, int n,
                                    char *const *args, char *err,
                                    size_t errsz);

/* Prints, one line each: the event; every rule, whether it matches (and
 * which key it fails) or is not reached; every route with the action
 * merged for it; the camera-wide limit when there is one. */
void check_event_print(const struct config *cfg, const struct cam_event *ev,
                       FILE *f);

/* Prints a "warning: FILE: KEY: ..." line for each kind a rule matches
 * or a camera announces that no alert can have (a typo such as
 * "persn"). Returns how many. */
int check_print_kind_warnings(const struct config *cfg, FILE *f);

#endif
