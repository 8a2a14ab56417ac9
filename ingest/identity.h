/* identity.h - which camera an alert belongs to.
 *
 * A login or an allowed address names a configured camera. An NVR's one
 * login covers many channels; a camera with a `channel` pattern takes the
 * channel from a recipient, the sender, the subject or the body, and each
 * channel becomes its own camera downstream ("nvr-D4"). Shared by every
 * ingest. */
#ifndef CAMGATE_IDENTITY_H
#define CAMGATE_IDENTITY_H

#include <stddef.h>

#include "config/config.h"

/* Sets *id and *name (caller frees both) for an alert from cam. texts are
 * the candidates for the camera's channel source, tried in order (for
 * CHANNEL_RCPT, every recipient). A channel id that names another camera
 * of cfg, or camgate's own, is refused (logged) and the next candidate
 * tried: a camera speaks only for itself and its channels. Without a
 * channel pattern, or when none matches, the camera's own id and name
 * are used. */
void identity_resolve(const struct config *cfg,
                      const struct camera_conf *cam,
                      const char *const *texts, size_t ntexts, char **id,
                      char **name);

/* Replaces, in place, every byte of s outside [A-Za-z0-9_.-] with '_'. */
void identity_sanitize(char *s);

#endif
