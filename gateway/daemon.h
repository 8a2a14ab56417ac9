/* daemon.h - `camgate run`: the event loop and its life cycle.
 *
 * Wires config, spool, SMTP ingest and delivery together on one libevent
 * loop. SIGTERM or SIGINT: stop accepting, let messages being received
 * and deliveries in flight finish (at most shutdown_grace seconds), exit
 * 0. SIGHUP: load the config again; when it is bad, keep the old one and
 * log why. */
#ifndef CAMGATE_DAEMON_H
#define CAMGATE_DAEMON_H

/* Runs until a stop signal. Returns the process exit code. */
int daemon_run(const char *config_path);

#endif
