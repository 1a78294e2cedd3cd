/* stop.h - a graceful stop asked for from outside (SIGINT, SIGTERM).
 *
 * Long jobs (training, the report sweep) poll apb_stop_requested() between
 * steps: when it is set they finish the step, write what resumes them and
 * return APB_ESTOPPED. The library installs no signal handler; the commands do
 * (cli/signals.c) and call apb_stop_request from it, which is async-signal-safe.
 */
#ifndef APB_STOP_H
#define APB_STOP_H

/* Records that signal `sig` (> 0) asked for a stop; the first one is kept. */
void apb_stop_request(int sig);
/* The signal of the pending request, 0 when none. */
int apb_stop_requested(void);
/* Forgets a request (tests, and a library user that handled one). */
void apb_stop_clear(void);

#endif
