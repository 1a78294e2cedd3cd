/* status.h - error reporting for library code.
 *
 * Library functions return an apb_status; on failure they record a message in a
 * thread-local buffer that names the file, shape or value that is wrong. Only the
 * CLI mains turn that into text and a non-zero exit. Library code never exits.
 */
#ifndef APB_STATUS_H
#define APB_STATUS_H

typedef enum {
    APB_OK = 0,
    APB_EINVAL,      /* bad argument or option value */
    APB_EIO,         /* open/read/write/rename failed */
    APB_EFORMAT,     /* file contents are not what the format says */
    APB_ENOMEM,      /* allocation failed */
    APB_ESHAPE,      /* tensor shapes do not fit together */
    APB_ENUMERIC,    /* NaN / infinity where a finite number is required */
    APB_EUNSUPPORTED, /* valid request that this build/machine cannot do */
    APB_ESTOPPED     /* stopped on request (stop.h), after saving what resumes the job */
} apb_status;

/* Records a printf-style message and returns `code`, so callers can write
 * `return apb_fail(APB_EFORMAT, "%s: truncated at byte %ld", path, off);` */
apb_status apb_fail(apb_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with more context ("loading x.apb: " + old). */
apb_status apb_fail_context(apb_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message of the last failure on this thread ("" when none). */
const char *apb_errmsg(void);
const char *apb_status_name(apb_status s);
void apb_clear_error(void);

#define APB_TRY(expr)                      \
    do {                                   \
        apb_status apb_try_s_ = (expr);    \
        if (apb_try_s_ != APB_OK)          \
            return apb_try_s_;             \
    } while (0)

#endif
