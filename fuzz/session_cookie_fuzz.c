
/*
 * libFuzzer target: session_redis cookie parsing, signature checks and
 * the cookie.expires parser (ngx_http_session_redis_cookie.c).
 *
 * Every input is tried as a plain cookie, as an express cookie, and as a
 * date; then it is used as a session id, signed, URL-encoded and parsed
 * back, which must give the same id exactly when the id is acceptable.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "../ngx_http_session_redis_cookie.h"


static ngx_str_t  secrets[] = {
    ngx_string("tobiiscool"),
    ngx_string("old secret"),
};

#define NSECRETS  (sizeof(secrets) / sizeof(secrets[0]))

static ngx_http_session_redis_key_t  keys[NSECRETS];


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_uint_t  i;

    for (i = 0; i < NSECRETS; i++) {
        if (ngx_http_session_redis_key_init(&keys[i], &secrets[i]) != NGX_OK) {
            abort();
        }
    }

    return 0;
}


static void
check_id(ngx_str_t *id, u_char *lo, u_char *hi)
{
    size_t  i;

    if (id->len == 0 || id->len > NGX_HTTP_SESSION_REDIS_ID_MAX
        || id->data < lo || id->data + id->len > hi)
    {
        abort();
    }

    for (i = 0; i < id->len; i++) {
        if (id->data[i] <= ' ' || id->data[i] >= 0x7f) {
            abort();
        }
    }
}


static int
acceptable(const uint8_t *data, size_t size)
{
    size_t  i;

    if (size == 0 || size > NGX_HTTP_SESSION_REDIS_ID_MAX) {
        return 0;
    }

    for (i = 0; i < size; i++) {
        if (data[i] <= ' ' || data[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *buf, *p, sig[NGX_HTTP_SESSION_REDIS_SIG_LEN];
    size_t      i;
    int64_t     ms;
    ngx_int_t   rc;
    ngx_str_t   value, id, cookie;

    static const char  hex[] = "0123456789ABCDEF";

    /* exact-size copies: ASan sees any read past the end */

    value.len = size;
    value.data = malloc(size ? size : 1);
    if (value.data == NULL) {
        return 0;
    }

    memcpy(value.data, data, size);

    if (ngx_http_session_redis_plain_id(&value, &id) == NGX_OK) {
        check_id(&id, value.data, value.data + value.len);
    }

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        free(value.data);
        return 0;
    }

    if (ngx_http_session_redis_express_id(&value, buf, keys, NSECRETS, &id)
        == NGX_OK)
    {
        check_id(&id, buf, buf + size);
    }

    (void) ngx_http_session_redis_parse_time(value.data, value.len, &ms);

    free(buf);

    /* round trip: "s%3A" + encodeURIComponent(id) + "." + signature */

    if (ngx_http_session_redis_sign(&keys[size % NSECRETS],
                                    value.data, value.len, sig)
        != NGX_OK)
    {
        abort();
    }

    cookie.data = malloc(4 + 3 * size + 1 + 3 * NGX_HTTP_SESSION_REDIS_SIG_LEN);
    if (cookie.data == NULL) {
        free(value.data);
        return 0;
    }

    p = ngx_cpymem(cookie.data, "s%3A", 4);

    for (i = 0; i < size + 1 + NGX_HTTP_SESSION_REDIS_SIG_LEN; i++) {
        u_char  c;

        c = (i < size) ? data[i] : (i == size) ? '.' : sig[i - size - 1];

        if (i != size
            && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];

        } else {
            *p++ = c;
        }
    }

    cookie.len = p - cookie.data;

    buf = malloc(cookie.len);
    if (buf == NULL) {
        free(cookie.data);
        free(value.data);
        return 0;
    }

    rc = ngx_http_session_redis_express_id(&cookie, buf, keys, NSECRETS,
                                           &id);

    /* an id with a '.' is split at the last one: cannot round trip */

    if (acceptable(data, size) && memchr(data, '.', size) == NULL
        && cookie.len <= NGX_HTTP_SESSION_REDIS_VALUE_MAX)
    {
        if (rc != NGX_OK || id.len != size || memcmp(id.data, data, size))
        {
            abort();
        }

    } else if (rc == NGX_OK) {
        check_id(&id, buf, buf + cookie.len);

        if (memchr(data, '.', size) == NULL) {
            abort();
        }
    }

    free(buf);
    free(cookie.data);
    free(value.data);

    return 0;
}
