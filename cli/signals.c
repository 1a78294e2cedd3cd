/* signals.c - SIGINT / SIGTERM for the apb command.
 *
 * Every command: a signal removes the temporary files of the writes in progress
 * and then ends the process as the signal would have, so an interrupted export
 * or dump leaves its previous file and no PATH.tmpPID behind.
 *
 * The long commands (train, report) stop gracefully instead: the first signal
 * asks the library to stop (apb_stop_request), the job finishes its step, saves
 * what resumes it and returns APB_ESTOPPED, and the command prints how to go on
 * and exits 128 + the signal (130 for Ctrl-C, 143 for SIGTERM). A second signal
 * means "now": temporary files are removed and the process exits at once, so
 * the files written before (the previous checkpoint) stay as they were.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fileio.h"
#include "stop.h"

static char first_msg[256], second_msg[256];
static size_t first_len, second_len;

static void on_signal(int sig)
{
    ssize_t w;
    if (apb_stop_requested()) {
        apb_atomic_unlink_pending();
        w = write(2, second_msg, second_len);
        (void)w;
        _exit(128 + sig);
    }
    apb_stop_request(sig);
    w = write(2, first_msg, first_len);
    (void)w;
}

static void on_signal_now(int sig)
{
    apb_atomic_unlink_pending();
    signal(sig, SIG_DFL);
    raise(sig);
}

void apb_cli_signals_default(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal_now;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void apb_cli_signals_install(const char *cmd, const char *what)
{
    first_msg[0] = second_msg[0] = 0;
    if (what) {
        snprintf(first_msg, sizeof first_msg,
                 "\napb %s: stopping after the current step, saving %s (signal again to stop at once)\n",
                 cmd, what);
        snprintf(second_msg, sizeof second_msg,
                 "\napb %s: stopped at once; files written before are intact\n", cmd);
    }
    first_len = strlen(first_msg);
    second_len = strlen(second_msg);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* file reads and waits go on after the first signal */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int apb_cli_stop_status(void)
{
    int sig = apb_stop_requested();
    return 128 + (sig > 0 ? sig : SIGINT);
}
