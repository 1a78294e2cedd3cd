/* fileio.c - whole-file read, atomic write (temp + fsync + rename), mkdir -p. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    if (strlen(path) >= sizeof af->path)
        return apb_fail(APB_EINVAL, "%s: path too long", path);
    strcpy(af->path, path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f)
        return apb_fail(APB_EIO, "%s: cannot create temporary file %s: %s", path, af->tmp,
                        strerror(errno));
    return APB_OK;
}

apb_status apb_atomic_write(apb_atomic_file *af, const void *data, size_t n)
{
    if (af->failed)
        return APB_EIO;
    if (n && fwrite(data, 1, n, af->f) != n) {
        af->failed = 1;
        return apb_fail(APB_EIO, "%s: write failed: %s", af->tmp, strerror(errno));
    }
    return APB_OK;
}

apb_status apb_atomic_commit(apb_atomic_file *af)
{
    if (af->failed) {
        apb_atomic_abort(af);
        return apb_fail(APB_EIO, "%s: not written (an earlier write failed)", af->path);
    }
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        apb_atomic_abort(af);
        return apb_fail(APB_EIO, "%s: flush failed: %s", af->path, strerror(errno));
    }
    if (fclose(af->f) != 0) {
        af->f = NULL;
        unlink(af->tmp);
        return apb_fail(APB_EIO, "%s: close failed: %s", af->path, strerror(errno));
    }
    af->f = NULL;
    if (rename(af->tmp, af->path) != 0) {
        int e = errno;
        unlink(af->tmp);
        return apb_fail(APB_EIO, "%s: rename from %s failed: %s", af->path, af->tmp, strerror(e));
    }
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
}

apb_status apb_file_write_atomic(const char *path, const void *data, size_t size)
{
    apb_atomic_file af;
    APB_TRY(apb_atomic_open(&af, path));
    if (apb_atomic_write(&af, data, size) != APB_OK) {
        apb_atomic_abort(&af);
        return APB_EIO;
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
