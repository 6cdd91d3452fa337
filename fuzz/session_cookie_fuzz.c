
/*
 * libFuzzer target: what session_redis reads as express-session does
 * (src/ngx_http_session_redis_cookie.c).
 *
 * Every input is
 *   - split at '\n' into Cookie headers, read by the module's reader one
 *     header after another, and by a line-by-line port of cookie 0.7's
 *     parse() over the headers joined with "; " (as node joins them): the
 *     same value or none;
 *   - tried as a plain and as an express cookie, then used as a session id,
 *     signed and URL-encoded (encodeURIComponent), and sent raw (each byte
 *     a Latin-1 character to node): both must give the id back;
 *   - checked as a stored session, compared with jansson (whatever jansson
 *     reads, JSON.parse reads: jansson only stops short of it), walked, and
 *     JSON.stringify()-ed: the output must check again and be as long as
 *     measured;
 *   - read as a double (its first 8 bytes), written as JavaScript writes
 *     numbers: it must read back the same.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <math.h>
#include <jansson.h>

#include "../src/ngx_http_session_redis_cookie.h"
#include "../src/ngx_http_session_redis_json.h"


static ngx_str_t  secrets[] = {
    ngx_string("tobiiscool"),
    ngx_string("old secret"),
};

#define NSECRETS  (sizeof(secrets) / sizeof(secrets[0]))

static ngx_http_session_redis_key_t  keys[NSECRETS];

static ngx_str_t  name = ngx_string("sid");


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
    if (id->len == 0 || id->len > NGX_HTTP_SESSION_REDIS_ID_MAX
        || id->data < lo || id->data + id->len > hi)
    {
        abort();
    }
}


/* strict UTF-8: what encodeURIComponent()'s output decodes back to */

static int
valid_utf8(const uint8_t *p, size_t n)
{
    size_t    i, k, need;
    uint32_t  cp;

    for (i = 0; i < n; /* void */) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }

        if ((p[i] & 0xe0) == 0xc0) {
            need = 1;
            cp = p[i] & 0x1f;

        } else if ((p[i] & 0xf0) == 0xe0) {
            need = 2;
            cp = p[i] & 0x0f;

        } else if ((p[i] & 0xf8) == 0xf0) {
            need = 3;
            cp = p[i] & 0x07;

        } else {
            return 0;
        }

        for (k = 1; k <= need; k++) {
            if (i + k >= n || (p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800)
            || (need == 3 && cp < 0x10000) || cp > 0x10ffff
            || (cp >= 0xd800 && cp <= 0xdfff))
        {
            return 0;
        }

        i += need + 1;
    }

    return 1;
}


/* cookie 0.7.2 parse(), its indexOf / lastIndexOf steps as they are */

static int
reference_parse(const u_char *str, size_t len, ngx_str_t *value)
{
    size_t  index, eq, end, ks, ke, vs, ve, i;
    int     found;

    if (len < 2) {
        return 0;
    }

    index = 0;
    found = 0;

    do {
        for (eq = index; eq < len && str[eq] != '='; eq++) { /* void */ }

        if (eq == len) {
            break;
        }

        for (end = index; end < len && str[end] != ';'; end++) { /* void */ }

        if (end < len && eq > end) {
            /* backtrack on prior semicolon */
            for (i = eq; i > 0 && str[i - 1] != ';'; i--) { /* void */ }
            index = i;
            continue;
        }

        for (ks = index; ks < eq && (str[ks] == ' ' || str[ks] == '\t');
             ks++)
        { /* void */ }

        for (ke = eq; ke > ks && (str[ke - 1] == ' ' || str[ke - 1] == '\t');
             ke--)
        { /* void */ }

        if (!found && ke - ks == name.len
            && memcmp(str + ks, name.data, name.len) == 0)
        {
            for (vs = eq + 1;
                 vs < end && (str[vs] == ' ' || str[vs] == '\t');
                 vs++)
            { /* void */ }

            for (ve = end;
                 ve > vs && (str[ve - 1] == ' ' || str[ve - 1] == '\t');
                 ve--)
            { /* void */ }

            if (vs < len && str[vs] == '"' && ve > 0 && str[ve - 1] == '"'
                && ve > vs)
            {
                vs++;
                ve--;
            }

            value->data = (u_char *) str + vs;
            value->len = (ve > vs) ? ve - vs : 0;
            found = 1;
        }

        index = end + 1;

    } while (index < len);

    return found;
}


static void
fuzz_headers(const uint8_t *data, size_t size)
{
    u_char     *joined, *p;
    size_t      i, start;
    ngx_str_t   h, v, want;
    ngx_int_t   rc;
    int         found;

    joined = malloc(2 * size + 2);
    if (joined == NULL) {
        return;
    }

    p = joined;
    rc = NGX_DECLINED;

    for (start = 0, i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n') {
            continue;
        }

        /* an exact-size copy of each header: ASan sees any overread */
        h.len = i - start;
        h.data = malloc(h.len ? h.len : 1);
        if (h.data == NULL) {
            abort();
        }

        memcpy(h.data, data + start, h.len);

        if (rc != NGX_OK) {
            rc = ngx_http_session_redis_cookie_value(&h, &name, &v);

            if (rc == NGX_OK) {
                if (v.len > h.len || (v.len && (v.data < h.data
                                      || v.data + v.len > h.data + h.len)))
                {
                    abort();
                }

                /* compared below, by content */
                want.len = v.len;
                want.data = malloc(v.len ? v.len : 1);
                if (want.data == NULL) {
                    abort();
                }

                memcpy(want.data, v.data, v.len);
            }
        }

        free(h.data);

        if (p != joined) {
            p = ngx_cpymem(p, "; ", 2);
        }

        p = ngx_cpymem(p, data + start, i - start);
        start = i + 1;
    }

    found = reference_parse(joined, p - joined, &v);

    if (found != (rc == NGX_OK)) {
        abort();
    }

    if (found) {
        if (v.len != want.len || memcmp(v.data, want.data, v.len) != 0) {
            abort();
        }

        free(want.data);
    }

    free(joined);
}


static void
fuzz_ids(const uint8_t *data, size_t size)
{
    u_char     *buf, *p, sig[NGX_HTTP_SESSION_REDIS_SIG_LEN];
    u_char     *utf8;
    size_t      i, n;
    ngx_int_t   rc;
    ngx_str_t   value, id, cookie;

    static const char  hex[] = "0123456789ABCDEF";

    /* exact-size copies: ASan sees any read past the end */

    value.len = size;
    value.data = malloc(size ? size : 1);
    buf = malloc(2 * size + 1);
    if (value.data == NULL || buf == NULL) {
        abort();
    }

    memcpy(value.data, data, size);

    if (ngx_http_session_redis_plain_id(&value, &id) == NGX_OK) {
        check_id(&id, value.data, value.data + value.len);
    }

    if (ngx_http_session_redis_express_id(&value, buf, keys, NSECRETS, &id)
        == NGX_OK)
    {
        check_id(&id, buf, buf + 2 * size);
    }

    free(buf);

    /* encoded: "s%3A" + encodeURIComponent(id) + "." + signature */

    if (ngx_http_session_redis_sign(&keys[size % NSECRETS],
                                    value.data, value.len, sig)
        != NGX_OK)
    {
        abort();
    }

    cookie.data = malloc(4 + 3 * size + 1 + 3 * NGX_HTTP_SESSION_REDIS_SIG_LEN);
    if (cookie.data == NULL) {
        abort();
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

    buf = malloc(2 * cookie.len);
    if (buf == NULL) {
        abort();
    }

    rc = ngx_http_session_redis_express_id(&cookie, buf, keys, NSECRETS,
                                           &id);

    if (size > 0 && size <= NGX_HTTP_SESSION_REDIS_ID_MAX
        && valid_utf8(data, size)
        && cookie.len <= NGX_HTTP_SESSION_REDIS_VALUE_MAX)
    {
        if (rc != NGX_OK || id.len != size || memcmp(id.data, data, size)) {
            abort();
        }

    } else if (rc == NGX_OK) {
        /* invalid UTF-8 throws in decodeURIComponent: kept raw, no "s:" */
        abort();
    }

    free(buf);
    free(cookie.data);

    /* raw: "s:" + id + "." + the signature of its Latin-1 reading */

    if (size <= NGX_HTTP_SESSION_REDIS_ID_MAX
        && memchr(data, '%', size) == NULL)
    {
        utf8 = malloc(2 * size + 1);
        cookie.data = malloc(3 + size + NGX_HTTP_SESSION_REDIS_SIG_LEN);
        buf = malloc(2 * (3 + size + NGX_HTTP_SESSION_REDIS_SIG_LEN));
        if (utf8 == NULL || cookie.data == NULL || buf == NULL) {
            abort();
        }

        for (n = 0, i = 0; i < size; i++) {
            if (data[i] < 0x80) {
                utf8[n++] = data[i];

            } else {
                utf8[n++] = 0xc0 | (data[i] >> 6);
                utf8[n++] = 0x80 | (data[i] & 0x3f);
            }
        }

        if (ngx_http_session_redis_sign(&keys[0], utf8, n, sig) != NGX_OK) {
            abort();
        }

        p = ngx_cpymem(cookie.data, "s:", 2);
        p = ngx_cpymem(p, data, size);
        *p++ = '.';
        p = ngx_cpymem(p, sig, NGX_HTTP_SESSION_REDIS_SIG_LEN);
        cookie.len = p - cookie.data;

        rc = ngx_http_session_redis_express_id(&cookie, buf, keys, NSECRETS,
                                               &id);

        if (n > 0 && n <= NGX_HTTP_SESSION_REDIS_ID_MAX) {
            if (rc != NGX_OK || id.len != n || memcmp(id.data, utf8, n)) {
                abort();
            }

        } else if (rc == NGX_OK) {
            abort();
        }

        free(buf);
        free(cookie.data);
        free(utf8);
    }

    free(value.data);
}


static void
walk(ngx_str_t *v, ngx_uint_t depth)
{
    u_char      *out;
    size_t       len, n;
    ngx_str_t    e, root;
    ngx_uint_t   i, type;
    u_char      *stack;
    const char  *err;

    type = ngx_http_session_redis_json_type(v);
    (void) ngx_http_session_redis_json_truthy(v);

    if (type == NGX_HTTP_SESSION_REDIS_JSON_STRING) {
        n = ngx_http_session_redis_json_string(v, NULL);

        if (n > 3 * v->len) {
            abort();
        }

        out = malloc(n ? n : 1);
        if (out == NULL) {
            abort();
        }

        if (ngx_http_session_redis_json_string(v, out) != n) {
            abort();
        }

        free(out);
    }

    if (type == NGX_HTTP_SESSION_REDIS_JSON_OBJECT) {
        (void) ngx_http_session_redis_json_member(v, (u_char *) "cookie", 6,
                                                  &e);
        (void) ngx_http_session_redis_json_member(v, (u_char *) "", 0, &e);
    }

    if (type == NGX_HTTP_SESSION_REDIS_JSON_ARRAY
        || type == NGX_HTTP_SESSION_REDIS_JSON_OBJECT)
    {
        for (i = 0; depth && i < 4; i++) {
            if (type == NGX_HTTP_SESSION_REDIS_JSON_ARRAY
                && ngx_http_session_redis_json_element(v, i, &e) == NGX_OK)
            {
                walk(&e, depth - 1);
            }
        }

        if (v->len > 4096
            || ngx_http_session_redis_json_stringify(v, NULL, &len, 16)
               != NGX_OK)
        {
            return;
        }

        /* JSON.stringify's output is JSON, and as long as measured */

        out = malloc(len + 1);
        stack = malloc(len / 8 + 1);
        if (out == NULL || stack == NULL) {
            abort();
        }

        if (ngx_http_session_redis_json_stringify(v, out, &n, 16) != NGX_OK
            || n != len)
        {
            abort();
        }

        out[len] = '\0';

        if (ngx_http_session_redis_json_check(out, len, stack, &root, &err,
                                              &n)
            != NGX_OK)
        {
            abort();
        }

        free(stack);
        free(out);
    }
}


static void
fuzz_json(const uint8_t *data, size_t size)
{
    u_char        *copy, *stack;
    size_t         off;
    json_t        *j;
    ngx_int_t      rc;
    ngx_str_t      root;
    const char    *err;
    json_error_t   jerr;

    copy = malloc(size + 1);
    stack = malloc(size / 8 + 1);
    if (copy == NULL || stack == NULL) {
        abort();
    }

    memcpy(copy, data, size);
    copy[size] = '\0';

    rc = ngx_http_session_redis_json_check(copy, size, stack, &root, &err,
                                           &off);

    if (rc == NGX_OK) {
        if (root.data < copy || root.data + root.len > copy + size
            || root.len == 0)
        {
            abort();
        }

        walk(&root, 8);

    } else if (off > size) {
        abort();
    }

    /* jansson takes a raw NUL for the end: JSON.parse does not */
    j = memchr(data, '\0', size) ? NULL
        : json_loadb((const char *) data, size,
                     JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (j) {
        if (rc != NGX_OK) {
            abort();
        }

        json_decref(j);
    }

    free(stack);
    free(copy);
}


static void
fuzz_number(const uint8_t *data, size_t size)
{
    u_char  buf[NGX_HTTP_SESSION_REDIS_NUMBER_LEN + 1], *p;
    double  d, back;

    if (size < 8) {
        return;
    }

    memcpy(&d, data, 8);

    p = ngx_http_session_redis_js_number(d, buf);

    if (p - buf > NGX_HTTP_SESSION_REDIS_NUMBER_LEN) {
        abort();
    }

    *p = '\0';

    if (isnan(d) || isinf(d)) {
        return;
    }

    back = strtod((char *) buf, NULL);

    if (back != d && !(d == 0 && back == 0)) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_headers(data, size);
    fuzz_ids(data, size);
    fuzz_json(data, size);
    fuzz_number(data, size);

    return 0;
}
