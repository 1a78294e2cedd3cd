/* status.c - thread-local error message buffer behind apb_fail(). */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char apb_msg[1024];

apb_status apb_fail(apb_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(apb_msg, sizeof apb_msg, fmt, ap);
    va_end(ap);
    return code;
}

apb_status apb_fail_context(apb_status code, const char *fmt, ...)
{
    char prefix[512], old[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, apb_msg, sizeof old);
    snprintf(apb_msg, sizeof apb_msg, "%s: %s", prefix, old);
    return code;
}

const char *apb_errmsg(void) { return apb_msg; }
void apb_clear_error(void) { apb_msg[0] = 0; }

const char *apb_status_name(apb_status s)
{
    switch (s) {
    case APB_OK: return "ok";
    case APB_EINVAL: return "invalid argument";
    case APB_EIO: return "I/O error";
    case APB_EFORMAT: return "bad file format";
    case APB_ENOMEM: return "out of memory";
    case APB_ESHAPE: return "shape mismatch";
    case APB_ENUMERIC: return "numerical error";
    case APB_EUNSUPPORTED: return "unsupported";
    case APB_ESTOPPED: return "stopped on request";
    }
    return "unknown status";
}
