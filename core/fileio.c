/* fileio.c - whole-file read, atomic write (temp + fsync + rename), mkdir -p.
 *
 * The temporary files being written are listed in a small fixed table that a
 * signal handler can walk without locks or allocation, so a process stopped at
 * once (a second Ctrl-C) leaves no PATH.tmpPID behind.
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define APB_PENDING_MAX 8

/* state: 0 free, 1 being filled in, 2 holds a temporary path */
static struct {
    int state;
    char tmp[1040];
} pending[APB_PENDING_MAX];

static int pending_add(const char *tmp)
{
    for (int i = 0; i < APB_PENDING_MAX; i++) {
        int expect = 0;
        if (__atomic_compare_exchange_n(&pending[i].state, &expect, 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            memcpy(pending[i].tmp, tmp, strlen(tmp) + 1);
            __atomic_store_n(&pending[i].state, 2, __ATOMIC_RELEASE);
            return i;
        }
    }
    return -1; /* more writers than slots: only the signal-time cleanup misses it */
}

static void pending_remove(apb_atomic_file *af)
{
    if (af->slot >= 0)
        __atomic_store_n(&pending[af->slot].state, 0, __ATOMIC_RELEASE);
    af->slot = -1;
}

void apb_atomic_unlink_pending(void)
{
    for (int i = 0; i < APB_PENDING_MAX; i++)
        if (__atomic_load_n(&pending[i].state, __ATOMIC_ACQUIRE) == 2)
            unlink(pending[i].tmp);
}

/* Injected failures (apb_fileio_fault): matching writes left before the failing one. */
static long fault_left = -1;
static int fault_err, fault_sig, fault_env_read;
static char fault_suffix[256];

void apb_fileio_fault(long nth, int err, int sig, const char *suffix)
{
    fault_env_read = 1; /* an explicit call wins over the environment */
    fault_err = err;
    fault_sig = sig;
    snprintf(fault_suffix, sizeof fault_suffix, "%s", suffix ? suffix : "");
    __atomic_store_n(&fault_left, nth > 0 ? nth : -1, __ATOMIC_SEQ_CST);
}

static void fault_from_env(void)
{
    if (fault_env_read)
        return;
    fault_env_read = 1;
    const char *e = getenv("APB_DEBUG_WRITE_FAIL");
    if (!e || !*e)
        return;
    char *end;
    long n = strtol(e, &end, 10);
    int err = ENOSPC, sig = 0;
    if (*end == ':') {
        const char *name = end + 1;
        size_t len = strcspn(name, "@");
        if (!strncmp(name, "SIGINT", len) || !strncmp(name, "SIGTERM", len))
            err = 0, sig = name[3] == 'I' ? SIGINT : SIGTERM;
        else
            err = !strncmp(name, "EFBIG", len) ? EFBIG : !strncmp(name, "EIO", len) ? EIO : ENOSPC;
        end = (char *)name + len;
    }
    apb_fileio_fault(n, err, sig, *end == '@' ? end + 1 : NULL);
}

/* 0, or the errno the current write to `path` must fail with. */
static int fault_take(const char *path)
{
    if (__atomic_load_n(&fault_left, __ATOMIC_SEQ_CST) <= 0)
        return 0;
    size_t pl = strlen(path), sl = strlen(fault_suffix);
    if (sl > pl || strcmp(path + pl - sl, fault_suffix) != 0)
        return 0;
    if (__atomic_sub_fetch(&fault_left, 1, __ATOMIC_SEQ_CST) != 0)
        return 0;
    if (fault_sig > 0)
        raise(fault_sig);
    return fault_err;
}

/* Why `path` cannot be read as a file, or NULL when it is a regular file. */
static const char *not_a_file(const struct stat *st)
{
    if (S_ISDIR(st->st_mode))
        return "is a directory, not a file";
    if (!S_ISREG(st->st_mode))
        return "is not a regular file (a device, pipe or socket)";
    return NULL;
}

apb_status apb_file_read(const char *path, unsigned char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    /* Checked before opening: fopen would block on a FIFO, and succeeds on a
     * directory, whose size then reads as LONG_MAX (an absurd allocation failure). */
    struct stat st;
    const char *why;
    if (stat(path, &st) == 0 && (why = not_a_file(&st)))
        return apb_fail(APB_EIO, "%s: %s", path, why);
    FILE *f = fopen(path, "rb");
    if (!f)
        return apb_fail(APB_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || (why = not_a_file(&st))) {
        apb_status s = why ? apb_fail(APB_EIO, "%s: %s", path, why)
                           : apb_fail(APB_EIO, "%s: cannot stat: %s", path, strerror(errno));
        fclose(f);
        return s;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return apb_fail(APB_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    if (n > 0 && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return apb_fail(APB_EIO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *size = n;
    return APB_OK;
}

apb_status apb_atomic_open(apb_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    af->slot = -1;
    fault_from_env();
    if (strlen(path) >= sizeof af->path)
        return apb_fail(APB_EINVAL, "%s: path too long", path);
    strcpy(af->path, path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp%ld", path, (long)getpid());
    /* listed before it exists: a signal between the two finds nothing to unlink */
    af->slot = pending_add(af->tmp);
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        int e = errno;
        pending_remove(af);
        return apb_fail(APB_EIO, "%s: cannot create temporary file %s: %s (nothing was written)",
                        path, af->tmp, strerror(e));
    }
    return APB_OK;
}

/* The one wording of a failed write: the file the user asked for, the OS error,
 * and what became of the files. */
static apb_status write_failed(const apb_atomic_file *af, int e)
{
    return apb_fail(APB_EIO, "%s: cannot write: %s (temporary file removed; any previous %s is unchanged)",
                    af->path, strerror(e), af->path);
}

apb_status apb_atomic_write(apb_atomic_file *af, const void *data, size_t n)
{
    if (af->failed)
        return APB_EIO;
    int e = fault_take(af->path);
    if (e) {
        af->failed = 1;
        return write_failed(af, e);
    }
    if (n && fwrite(data, 1, n, af->f) != n) {
        af->failed = 1;
        return write_failed(af, errno);
    }
    return APB_OK;
}

apb_status apb_atomic_commit(apb_atomic_file *af)
{
    if (af->failed) {
        apb_atomic_abort(af);
        return apb_fail(APB_EIO, "%s: not written (an earlier write failed; any previous %s is unchanged)",
                        af->path, af->path);
    }
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        int e = errno;
        apb_atomic_abort(af);
        return write_failed(af, e);
    }
    if (fclose(af->f) != 0) {
        int e = errno;
        af->f = NULL;
        apb_atomic_abort(af);
        return write_failed(af, e);
    }
    af->f = NULL;
    if (rename(af->tmp, af->path) != 0) {
        int e = errno;
        apb_atomic_abort(af);
        return apb_fail(APB_EIO, "%s: cannot replace it with %s: %s (temporary file removed; any previous %s is unchanged)",
                        af->path, af->tmp, strerror(e), af->path);
    }
    pending_remove(af);
    /* make the rename itself durable */
    char dir[sizeof af->path];
    memcpy(dir, af->path, sizeof dir);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return APB_OK;
}

void apb_atomic_abort(apb_atomic_file *af)
{
    if (af->f)
        fclose(af->f);
    af->f = NULL;
    unlink(af->tmp);
    pending_remove(af);
}

apb_status apb_file_write_atomic(const char *path, const void *data, size_t size)
{
    apb_atomic_file af;
    APB_TRY(apb_atomic_open(&af, path));
    apb_status s = apb_atomic_write(&af, data, size);
    if (s != APB_OK) {
        apb_atomic_abort(&af);
        return s;
    }
    return apb_atomic_commit(&af);
}

apb_status apb_mkdirs(const char *path)
{
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return apb_fail(APB_EINVAL, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return apb_fail(APB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    return APB_OK;
}

int apb_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int apb_is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
