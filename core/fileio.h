/* fileio.h - whole-file reads and atomic writes (temp file + fsync + rename).
 *
 * Checkpoints, exports and reports are written through apb_file_write_atomic so
 * an interrupted or failed write never replaces a good file with a bad one: a
 * failure (disk full, file-size limit, read-only folder) is reported with the
 * path and the OS error, the temporary file is removed and the previous file
 * stays as it was (docs/RELIABILITY.md).
 */
#ifndef APB_FILEIO_H
#define APB_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "status.h"

/* Reads the whole file into a malloc'd buffer (caller frees). Errors name the
 * path; a directory or a device is refused as such ("DIR: is a directory, not a file"). */
apb_status apb_file_read(const char *path, unsigned char **data, size_t *size);

/* Atomic writer: open a temp file beside `path`, write, then commit (fsync+rename)
 * or abort (unlink). */
typedef struct {
    FILE *f;
    char path[1024];
    char tmp[1040];
    int failed;
    int slot; /* in the table of pending temporary files, -1 when not in it */
} apb_atomic_file;

apb_status apb_atomic_open(apb_atomic_file *af, const char *path);
/* fwrite wrapper that remembers failure; returns APB_OK or APB_EIO. */
apb_status apb_atomic_write(apb_atomic_file *af, const void *data, size_t n);
apb_status apb_atomic_commit(apb_atomic_file *af);
void apb_atomic_abort(apb_atomic_file *af);

apb_status apb_file_write_atomic(const char *path, const void *data, size_t size);

/* Removes the temporary files of the atomic writes in progress. Async-signal-safe:
 * for a signal handler that exits at once (the previous files stay intact). */
void apb_atomic_unlink_pending(void);

/* Test hook: the nth apb_atomic_write from now (1: the next one) to a file
 * whose path ends with `suffix` (NULL: any file) fails as the OS would with
 * errno `err`; with sig > 0 it raises signal `sig` first (and, when the handler
 * returns and err is 0, writes normally). nth <= 0 disarms. The environment
 * variable APB_DEBUG_WRITE_FAIL=N[:ENOSPC|EFBIG|EIO|SIGINT|SIGTERM][@SUFFIX]
 * arms it when the process opens its first atomic file (default ENOSPC; a
 * signal is raised, not an error), for tests of the commands. */
void apb_fileio_fault(long nth, int err, int sig, const char *suffix);

/* mkdir -p (one level is enough for our DIR arguments, but parents are made too). */
apb_status apb_mkdirs(const char *path);
int apb_file_exists(const char *path);
/* 1 when `path` names a directory (following symbolic links). */
int apb_is_directory(const char *path);

#endif
