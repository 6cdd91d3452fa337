
/*
 * session_redis: stored sessions read as JSON.parse reads them, and values
 * rendered as JavaScript renders them.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <math.h>               /* isinf() */

#include "ngx_http_session_redis_json.h"


typedef struct {
    u_char                          *p;            /* NULL: count only */
    size_t                           n;
} ngx_http_session_redis_out_t;


static u_char *ngx_http_session_redis_json_ws(u_char *p, u_char *last);
static ngx_int_t ngx_http_session_redis_json_scan_string(u_char **pp,
    u_char *last, const char **err);
static ngx_int_t ngx_http_session_redis_json_scan_number(u_char **pp,
    u_char *last);
static u_char *ngx_http_session_redis_json_skip(u_char *p, u_char *last);
static u_char *ngx_http_session_redis_json_first(ngx_str_t *v);
static u_char *ngx_http_session_redis_json_next(u_char *p, u_char *last,
    ngx_uint_t object, ngx_str_t *key, ngx_str_t *value);
static uint32_t ngx_http_session_redis_json_char(u_char **pp, u_char *end);
static ngx_uint_t ngx_http_session_redis_json_key_is(ngx_str_t *key,
    u_char *name, size_t len);
static ngx_uint_t ngx_http_session_redis_json_keys_equal(ngx_str_t *a,
    ngx_str_t *b);
static int64_t ngx_http_session_redis_json_index(ngx_str_t *key);
static void ngx_http_session_redis_put(ngx_http_session_redis_out_t *out,
    u_char *data, size_t len);
static void ngx_http_session_redis_quote(ngx_http_session_redis_out_t *out,
    ngx_str_t *v);
static ngx_int_t ngx_http_session_redis_render_json(
    ngx_http_session_redis_out_t *out, ngx_str_t *v, ngx_uint_t depth);
static ngx_int_t ngx_http_session_redis_render_object(
    ngx_http_session_redis_out_t *out, ngx_str_t *v, ngx_uint_t depth);
static void ngx_http_session_redis_shortest(double d, u_char *digits,
    int *k, int *n);


#define ngx_http_session_redis_is_ws(c)                                       \
    ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

#define ngx_http_session_redis_is_digit(c)  ((c) >= '0' && (c) <= '9')


/* see the header */

ngx_int_t
ngx_http_session_redis_hex(u_char *p, ngx_uint_t n)
{
    u_char     c;
    ngx_int_t  v;

    for (v = 0; n; n--, p++) {
        c = *p;

        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');
            continue;
        }

        c |= 0x20;

        if (c >= 'a' && c <= 'f') {
            v = v * 16 + (c - 'a' + 10);
            continue;
        }

        return NGX_ERROR;
    }

    return v;
}


/*
 * JSON.parse's grammar: the stack has one bit per open container, set for
 * an object; an error names what was expected at *off.
 */

ngx_int_t
ngx_http_session_redis_json_check(u_char *p, size_t len, u_char *stack,
    ngx_str_t *root, const char **err, size_t *off)
{
    u_char      *start, *last, *end, c;
    size_t       depth;
    ngx_uint_t   object;

    start = p;
    last = p + len;
    depth = 0;

    p = ngx_http_session_redis_json_ws(p, last);
    root->data = p;

value:

    if (p == last) {
        *err = "unexpected end";
        goto failed;
    }

    switch (*p) {

    case '{':
    case '[':
        c = *p;

        if (c == '{') {
            stack[depth >> 3] |= (u_char) (1 << (depth & 7));

        } else {
            stack[depth >> 3] &= (u_char) ~(1 << (depth & 7));
        }

        depth++;
        p = ngx_http_session_redis_json_ws(p + 1, last);

        if (p < last && *p == (c == '{' ? '}' : ']')) {
            p++;
            depth--;
            goto next;
        }

        if (c == '[') {
            goto value;
        }

        goto member;

    case '"':
        if (ngx_http_session_redis_json_scan_string(&p, last, err) != NGX_OK)
        {
            goto failed;
        }

        goto next;

    case 't':
        if (last - p >= 4 && ngx_strncmp(p, "true", 4) == 0) {
            p += 4;
            goto next;
        }

        break;

    case 'f':
        if (last - p >= 5 && ngx_strncmp(p, "false", 5) == 0) {
            p += 5;
            goto next;
        }

        break;

    case 'n':
        if (last - p >= 4 && ngx_strncmp(p, "null", 4) == 0) {
            p += 4;
            goto next;
        }

        break;

    default:
        if (*p == '-' || ngx_http_session_redis_is_digit(*p)) {
            if (ngx_http_session_redis_json_scan_number(&p, last) != NGX_OK) {
                *err = "invalid number";
                goto failed;
            }

            goto next;
        }
    }

    *err = "unexpected character";
    goto failed;

member:

    if (p == last || *p != '"') {
        *err = "expected a member name";
        goto failed;
    }

    if (ngx_http_session_redis_json_scan_string(&p, last, err) != NGX_OK) {
        goto failed;
    }

    p = ngx_http_session_redis_json_ws(p, last);

    if (p == last || *p != ':') {
        *err = "expected ':'";
        goto failed;
    }

    p = ngx_http_session_redis_json_ws(p + 1, last);
    goto value;

next:

    end = p;
    p = ngx_http_session_redis_json_ws(p, last);

    if (depth == 0) {
        if (p != last) {
            *err = "unexpected data after the value";
            goto failed;
        }

        root->len = end - root->data;
        return NGX_OK;
    }

    object = stack[(depth - 1) >> 3] & (1 << ((depth - 1) & 7));

    if (p < last && *p == ',') {
        p = ngx_http_session_redis_json_ws(p + 1, last);

        if (object) {
            goto member;
        }

        goto value;
    }

    if (p < last && *p == (object ? '}' : ']')) {
        p++;
        depth--;
        goto next;
    }

    *err = object ? "expected ',' or '}'" : "expected ',' or ']'";

failed:

    *off = p - start;

    return NGX_DECLINED;
}


static u_char *
ngx_http_session_redis_json_ws(u_char *p, u_char *last)
{
    while (p < last && ngx_http_session_redis_is_ws(*p)) {
        p++;
    }

    return p;
}


/* any byte from 0x20 up: invalid UTF-8 is U+FFFD, a character */

static ngx_int_t
ngx_http_session_redis_json_scan_string(u_char **pp, u_char *last,
    const char **err)
{
    u_char  *p;

    for (p = *pp + 1; p < last; p++) {

        if (*p == '"') {
            *pp = p + 1;
            return NGX_OK;
        }

        if (*p < 0x20) {
            *err = "control character in a string";
            goto failed;
        }

        if (*p != '\\') {
            continue;
        }

        if (++p == last) {
            break;
        }

        switch (*p) {

        case '"': case '\\': case '/':
        case 'b': case 'f': case 'n': case 'r': case 't':
            continue;

        case 'u':
            if (last - p > 4
                && ngx_http_session_redis_hex(p + 1, 4) != NGX_ERROR)
            {
                p += 4;
                continue;
            }

            /* fall through */

        default:
            *err = "invalid escape";
            goto failed;
        }
    }

    *err = "unterminated string";

failed:

    *pp = p;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_session_redis_json_scan_number(u_char **pp, u_char *last)
{
    u_char  *p;

    p = *pp;

    if (*p == '-') {
        p++;
    }

    if (p == last || !ngx_http_session_redis_is_digit(*p)) {
        goto failed;
    }

    if (*p++ != '0') {
        while (p < last && ngx_http_session_redis_is_digit(*p)) {
            p++;
        }
    }

    if (p < last && *p == '.') {
        if (++p == last || !ngx_http_session_redis_is_digit(*p)) {
            goto failed;
        }

        while (p < last && ngx_http_session_redis_is_digit(*p)) {
            p++;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        if (++p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || !ngx_http_session_redis_is_digit(*p)) {
            goto failed;
        }

        while (p < last && ngx_http_session_redis_is_digit(*p)) {
            p++;
        }
    }

    *pp = p;

    return NGX_OK;

failed:

    *pp = p;

    return NGX_DECLINED;
}


/* the end of the checked value at p */

static u_char *
ngx_http_session_redis_json_skip(u_char *p, u_char *last)
{
    size_t  depth;

    if (*p != '{' && *p != '[' && *p != '"') {
        while (p < last
               && (ngx_http_session_redis_is_digit(*p)
                   || (*p >= 'a' && *p <= 'z') || *p == 'E'
                   || *p == '.' || *p == '+' || *p == '-'))
        {
            p++;
        }

        return p;
    }

    depth = 0;

    while (p < last) {

        switch (*p) {

        case '"':
            for (p++; p < last && *p != '"'; p++) {
                if (*p == '\\') {
                    p++;
                }
            }

            break;

        case '{':
        case '[':
            depth++;
            break;

        case '}':
        case ']':
            depth--;
            break;
        }

        p++;

        if (depth == 0) {
            return p;
        }
    }

    return p;
}


/* the first member or element of a checked container, NULL if none */

static u_char *
ngx_http_session_redis_json_first(ngx_str_t *v)
{
    u_char  *p;

    p = ngx_http_session_redis_json_ws(v->data + 1, v->data + v->len);

    return (*p == '}' || *p == ']') ? NULL : p;
}


/* the member (or element) at p; the next one, NULL after the last */

static u_char *
ngx_http_session_redis_json_next(u_char *p, u_char *last, ngx_uint_t object,
    ngx_str_t *key, ngx_str_t *value)
{
    if (object) {
        key->data = p;
        p = ngx_http_session_redis_json_skip(p, last);
        key->len = p - key->data;

        p = ngx_http_session_redis_json_ws(p, last) + 1;
        p = ngx_http_session_redis_json_ws(p, last);
    }

    value->data = p;
    p = ngx_http_session_redis_json_skip(p, last);
    value->len = p - value->data;

    p = ngx_http_session_redis_json_ws(p, last);

    if (p < last && *p == ',') {
        return ngx_http_session_redis_json_ws(p + 1, last);
    }

    return NULL;
}


ngx_uint_t
ngx_http_session_redis_json_type(ngx_str_t *v)
{
    switch (v->data[0]) {
    case 'n':
        return NGX_HTTP_SESSION_REDIS_JSON_NULL;
    case 'f':
        return NGX_HTTP_SESSION_REDIS_JSON_FALSE;
    case 't':
        return NGX_HTTP_SESSION_REDIS_JSON_TRUE;
    case '"':
        return NGX_HTTP_SESSION_REDIS_JSON_STRING;
    case '[':
        return NGX_HTTP_SESSION_REDIS_JSON_ARRAY;
    case '{':
        return NGX_HTTP_SESSION_REDIS_JSON_OBJECT;
    default:
        return NGX_HTTP_SESSION_REDIS_JSON_NUMBER;
    }
}


ngx_uint_t
ngx_http_session_redis_json_truthy(ngx_str_t *v)
{
    switch (ngx_http_session_redis_json_type(v)) {

    case NGX_HTTP_SESSION_REDIS_JSON_NULL:
    case NGX_HTTP_SESSION_REDIS_JSON_FALSE:
        return 0;

    case NGX_HTTP_SESSION_REDIS_JSON_NUMBER:
        /* 1e-400 is 0 too */
        return ngx_http_session_redis_json_number(v) != 0;

    case NGX_HTTP_SESSION_REDIS_JSON_STRING:
        return v->len > 2;

    default:
        return 1;
    }
}


/* correctly rounded, out of range as +-Infinity, as JSON.parse */

double
ngx_http_session_redis_json_number(ngx_str_t *v)
{
    return strtod((char *) v->data, NULL);
}


ngx_int_t
ngx_http_session_redis_json_member(ngx_str_t *object, u_char *name,
    size_t len, ngx_str_t *value)
{
    u_char     *p, *last;
    ngx_str_t   k, v;
    ngx_uint_t  found;

    last = object->data + object->len;
    found = 0;

    for (p = ngx_http_session_redis_json_first(object); p; /* void */) {
        p = ngx_http_session_redis_json_next(p, last, 1, &k, &v);

        if (ngx_http_session_redis_json_key_is(&k, name, len)) {
            *value = v;
            found = 1;
        }
    }

    return found ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_session_redis_json_element(ngx_str_t *array, ngx_uint_t n,
    ngx_str_t *value)
{
    u_char     *p, *last;
    ngx_str_t   k;
    ngx_uint_t  i;

    last = array->data + array->len;

    for (i = 0, p = ngx_http_session_redis_json_first(array); p; i++) {
        p = ngx_http_session_redis_json_next(p, last, 0, &k, value);

        if (i == n) {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * One character of a checked string at *pp (not its closing quote at
 * end): escapes decoded, a surrogate pair joined, a lone surrogate
 * returned as it is (0xd800 .. 0xdfff); raw bytes decoded as the WHATWG
 * Encoding Standard (and node) does, an invalid sequence U+FFFD.
 */

static uint32_t
ngx_http_session_redis_json_char(u_char **pp, u_char *end)
{
    u_char      *p, c, lower, upper;
    uint32_t     cp, lo;
    ngx_uint_t   need, i;

    p = *pp;
    c = *p++;

    if (c == '\\') {
        c = *p++;

        switch (c) {
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;

        case 'u':
            cp = ngx_http_session_redis_hex(p, 4);
            p += 4;

            if (cp >= 0xd800 && cp <= 0xdbff
                && end - p >= 6 && p[0] == '\\' && p[1] == 'u')
            {
                lo = ngx_http_session_redis_hex(p + 2, 4);

                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }

            break;

        default:
            /* '"', '\\', '/' */
            cp = c;
        }

        *pp = p;
        return cp;
    }

    if (c < 0x80) {
        *pp = p;
        return c;
    }

    lower = 0x80;
    upper = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        cp = c & 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        cp = c & 0x0f;
        lower = (c == 0xe0) ? 0xa0 : 0x80;
        upper = (c == 0xed) ? 0x9f : 0xbf;

    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        cp = c & 0x07;
        lower = (c == 0xf0) ? 0x90 : 0x80;
        upper = (c == 0xf4) ? 0x8f : 0xbf;

    } else {
        *pp = p;
        return 0xfffd;
    }

    for (i = 0; i < need; i++) {
        if (p == end || *p < lower || *p > upper) {
            /* the maximal subpart is one U+FFFD; *p is read again */
            *pp = p;
            return 0xfffd;
        }

        cp = (cp << 6) | (*p++ & 0x3f);
        lower = 0x80;
        upper = 0xbf;
    }

    *pp = p;

    return cp;
}


size_t
ngx_http_session_redis_utf8(uint32_t cp, u_char *p)
{
    if (cp < 0x80) {
        p[0] = (u_char) cp;
        return 1;
    }

    if (cp < 0x800) {
        p[0] = (u_char) (0xc0 | (cp >> 6));
        p[1] = (u_char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        p[0] = (u_char) (0xe0 | (cp >> 12));
        p[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        p[2] = (u_char) (0x80 | (cp & 0x3f));
        return 3;
    }

    p[0] = (u_char) (0xf0 | (cp >> 18));
    p[1] = (u_char) (0x80 | ((cp >> 12) & 0x3f));
    p[2] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
    p[3] = (u_char) (0x80 | (cp & 0x3f));
    return 4;
}


/* a name with a lone surrogate is no UTF-8 string: it matches none */

static ngx_uint_t
ngx_http_session_redis_json_key_is(ngx_str_t *key, u_char *name, size_t len)
{
    u_char    *p, *end, buf[4];
    size_t     n;
    uint32_t   cp;

    p = key->data + 1;
    end = key->data + key->len - 1;

    while (p < end) {
        cp = ngx_http_session_redis_json_char(&p, end);

        if (cp >= 0xd800 && cp <= 0xdfff) {
            return 0;
        }

        n = ngx_http_session_redis_utf8(cp, buf);

        if (n > len || ngx_memcmp(buf, name, n) != 0) {
            return 0;
        }

        name += n;
        len -= n;
    }

    return len == 0;
}


static ngx_uint_t
ngx_http_session_redis_json_keys_equal(ngx_str_t *a, ngx_str_t *b)
{
    u_char  *p, *q, *pe, *qe;

    p = a->data + 1;
    pe = a->data + a->len - 1;
    q = b->data + 1;
    qe = b->data + b->len - 1;

    while (p < pe && q < qe) {
        if (ngx_http_session_redis_json_char(&p, pe)
            != ngx_http_session_redis_json_char(&q, qe))
        {
            return 0;
        }
    }

    return p == pe && q == qe;
}


/* an array index (canonical, 0 .. 2^32 - 2), or -1 */

static int64_t
ngx_http_session_redis_json_index(ngx_str_t *key)
{
    u_char      *p, *end;
    int64_t      n;
    uint32_t     cp;
    ngx_uint_t   digits;

    p = key->data + 1;
    end = key->data + key->len - 1;
    n = 0;

    for (digits = 0; p < end; digits++) {
        cp = ngx_http_session_redis_json_char(&p, end);

        if (cp < '0' || cp > '9' || digits == 10 || (digits && n == 0)) {
            return -1;
        }

        n = n * 10 + (cp - '0');
    }

    return (digits && n <= 4294967294LL) ? n : -1;
}


size_t
ngx_http_session_redis_json_string(ngx_str_t *v, u_char *dst)
{
    u_char    *p, *end, buf[4];
    size_t     n, len;
    uint32_t   cp;

    p = v->data + 1;
    end = v->data + v->len - 1;
    len = 0;

    while (p < end) {
        cp = ngx_http_session_redis_json_char(&p, end);

        if (cp >= 0xd800 && cp <= 0xdfff) {
            cp = 0xfffd;
        }

        n = ngx_http_session_redis_utf8(cp, dst ? dst + len : buf);
        len += n;
    }

    return len;
}


ngx_int_t
ngx_http_session_redis_json_stringify(ngx_str_t *v, u_char *dst,
    size_t *len, ngx_uint_t depth)
{
    ngx_http_session_redis_out_t  out;

    out.p = dst;
    out.n = 0;

    if (ngx_http_session_redis_render_json(&out, v, depth) != NGX_OK) {
        return NGX_ERROR;
    }

    *len = out.n;

    return NGX_OK;
}


static void
ngx_http_session_redis_put(ngx_http_session_redis_out_t *out, u_char *data,
    size_t len)
{
    if (out->p) {
        out->p = ngx_cpymem(out->p, data, len);
    }

    out->n += len;
}


/* JSON.stringify's QuoteJSONString */

static void
ngx_http_session_redis_quote(ngx_http_session_redis_out_t *out, ngx_str_t *v)
{
    u_char    *p, *end, buf[8];
    size_t     n;
    uint32_t   cp;

    static u_char  hex[] = "0123456789abcdef";

    p = v->data + 1;
    end = v->data + v->len - 1;

    ngx_http_session_redis_put(out, (u_char *) "\"", 1);

    while (p < end) {
        cp = ngx_http_session_redis_json_char(&p, end);

        switch (cp) {
        case '"':
            ngx_http_session_redis_put(out, (u_char *) "\\\"", 2);
            continue;
        case '\\':
            ngx_http_session_redis_put(out, (u_char *) "\\\\", 2);
            continue;
        case '\b':
            ngx_http_session_redis_put(out, (u_char *) "\\b", 2);
            continue;
        case '\f':
            ngx_http_session_redis_put(out, (u_char *) "\\f", 2);
            continue;
        case '\n':
            ngx_http_session_redis_put(out, (u_char *) "\\n", 2);
            continue;
        case '\r':
            ngx_http_session_redis_put(out, (u_char *) "\\r", 2);
            continue;
        case '\t':
            ngx_http_session_redis_put(out, (u_char *) "\\t", 2);
            continue;
        }

        if (cp < 0x20 || (cp >= 0xd800 && cp <= 0xdfff)) {
            buf[0] = '\\';
            buf[1] = 'u';
            buf[2] = hex[(cp >> 12) & 0xf];
            buf[3] = hex[(cp >> 8) & 0xf];
            buf[4] = hex[(cp >> 4) & 0xf];
            buf[5] = hex[cp & 0xf];
            ngx_http_session_redis_put(out, buf, 6);
            continue;
        }

        n = ngx_http_session_redis_utf8(cp, buf);
        ngx_http_session_redis_put(out, buf, n);
    }

    ngx_http_session_redis_put(out, (u_char *) "\"", 1);
}


static ngx_int_t
ngx_http_session_redis_render_json(ngx_http_session_redis_out_t *out,
    ngx_str_t *v, ngx_uint_t depth)
{
    u_char     *p, *last, buf[NGX_HTTP_SESSION_REDIS_NUMBER_LEN];
    double      d;
    ngx_str_t   k, e;

    switch (ngx_http_session_redis_json_type(v)) {

    case NGX_HTTP_SESSION_REDIS_JSON_STRING:
        ngx_http_session_redis_quote(out, v);
        return NGX_OK;

    case NGX_HTTP_SESSION_REDIS_JSON_NUMBER:
        d = ngx_http_session_redis_json_number(v);

        if (isinf(d)) {
            ngx_http_session_redis_put(out, (u_char *) "null", 4);

        } else {
            p = ngx_http_session_redis_js_number(d, buf);
            ngx_http_session_redis_put(out, buf, p - buf);
        }

        return NGX_OK;

    case NGX_HTTP_SESSION_REDIS_JSON_ARRAY:
        break;

    case NGX_HTTP_SESSION_REDIS_JSON_OBJECT:
        return ngx_http_session_redis_render_object(out, v, depth);

    default:
        /* true, false, null */
        ngx_http_session_redis_put(out, v->data, v->len);
        return NGX_OK;
    }

    if (depth == 0) {
        return NGX_ERROR;
    }

    last = v->data + v->len;

    ngx_http_session_redis_put(out, (u_char *) "[", 1);

    for (p = ngx_http_session_redis_json_first(v); p; /* void */) {
        p = ngx_http_session_redis_json_next(p, last, 0, &k, &e);

        if (ngx_http_session_redis_render_json(out, &e, depth - 1) != NGX_OK) {
            return NGX_ERROR;
        }

        if (p) {
            ngx_http_session_redis_put(out, (u_char *) ",", 1);
        }
    }

    ngx_http_session_redis_put(out, (u_char *) "]", 1);

    return NGX_OK;
}


/*
 * A JavaScript object's own keys: array indexes ascending, then the other
 * names in the order they first appear; a repeated name keeps its first
 * place and its last value (JSON.parse).
 */

static ngx_int_t
ngx_http_session_redis_render_object(ngx_http_session_redis_out_t *out,
    ngx_str_t *v, ngx_uint_t depth)
{
    u_char      *p, *q, *at, *last, buf[NGX_INT64_LEN + 2];
    int64_t      prev, best, n;
    ngx_str_t    k, e, k2, e2, value;
    ngx_uint_t   comma, seen;

    if (depth == 0) {
        return NGX_ERROR;
    }

    last = v->data + v->len;
    comma = 0;

    ngx_http_session_redis_put(out, (u_char *) "{", 1);

    for (prev = -1; /* void */; prev = best) {
        best = -1;

        for (p = ngx_http_session_redis_json_first(v); p; /* void */) {
            p = ngx_http_session_redis_json_next(p, last, 1, &k, &e);
            n = ngx_http_session_redis_json_index(&k);

            if (n > prev && (best == -1 || n <= best)) {
                best = n;
                value = e;
            }
        }

        if (best == -1) {
            break;
        }

        if (comma++) {
            ngx_http_session_redis_put(out, (u_char *) ",", 1);
        }

        n = snprintf((char *) buf, sizeof(buf), "\"%lld\":", (long long) best);
        ngx_http_session_redis_put(out, buf, n);

        if (ngx_http_session_redis_render_json(out, &value, depth - 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (p = ngx_http_session_redis_json_first(v); p; /* void */) {
        at = p;
        p = ngx_http_session_redis_json_next(p, last, 1, &k, &e);

        if (ngx_http_session_redis_json_index(&k) != -1) {
            continue;
        }

        seen = 0;

        for (q = ngx_http_session_redis_json_first(v); q != at; /* void */) {
            q = ngx_http_session_redis_json_next(q, last, 1, &k2, &e2);

            if (ngx_http_session_redis_json_keys_equal(&k, &k2)) {
                seen = 1;
                break;
            }
        }

        if (seen) {
            continue;
        }

        value = e;

        for (q = p; q; /* void */) {
            q = ngx_http_session_redis_json_next(q, last, 1, &k2, &e2);

            if (ngx_http_session_redis_json_keys_equal(&k, &k2)) {
                value = e2;
            }
        }

        if (comma++) {
            ngx_http_session_redis_put(out, (u_char *) ",", 1);
        }

        ngx_http_session_redis_quote(out, &k);
        ngx_http_session_redis_put(out, (u_char *) ":", 1);

        if (ngx_http_session_redis_render_json(out, &value, depth - 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_http_session_redis_put(out, (u_char *) "}", 1);

    return NGX_OK;
}


/*
 * Number.prototype.toString() (ECMA-262 Number::toString): the shortest
 * digits that read back as d, the closest of them to d; plain notation
 * for 1e-7 < |d| < 1e21, exponent notation with a sign outside.
 */

u_char *
ngx_http_session_redis_js_number(double d, u_char *p)
{
    u_char  digits[24];
    int     k, n, i;

    if (d != d) {
        return ngx_cpymem(p, "NaN", 3);
    }

    if (d == 0) {
        /* -0 too */
        *p++ = '0';
        return p;
    }

    if (d < 0) {
        *p++ = '-';
        d = -d;
    }

    if (isinf(d)) {
        return ngx_cpymem(p, "Infinity", 8);
    }

    ngx_http_session_redis_shortest(d, digits, &k, &n);

    if (k <= n && n <= 21) {
        p = ngx_cpymem(p, digits, k);

        for (i = k; i < n; i++) {
            *p++ = '0';
        }

        return p;
    }

    if (0 < n && n <= 21) {
        p = ngx_cpymem(p, digits, n);
        *p++ = '.';
        return ngx_cpymem(p, digits + n, k - n);
    }

    if (-6 < n && n <= 0) {
        *p++ = '0';
        *p++ = '.';

        for (i = n; i < 0; i++) {
            *p++ = '0';
        }

        return ngx_cpymem(p, digits, k);
    }

    *p++ = digits[0];

    if (k > 1) {
        *p++ = '.';
        p = ngx_cpymem(p, digits + 1, k - 1);
    }

    *p++ = 'e';
    *p++ = (n - 1 < 0) ? '-' : '+';

    return p + snprintf((char *) p, 8, "%d", abs(n - 1));
}


/*
 * d > 0, finite: the digits (k of them, no trailing zero) and n such that
 * d reads back from 0.DIGITS * 10^n.  For each length, the correctly
 * rounded digits (glibc printf is exact), or, when they miss, their
 * neighbour on the other side of d: rounding boundaries are asymmetric
 * at powers of two.
 */

static void
ngx_http_session_redis_shortest(double d, u_char *digits, int *k, int *n)
{
    char      buf[40], *e;
    int       prec, q, len;
    double    v;
    uint64_t  m, m2;

    m = 0;
    q = 0;

    if (d < 9007199254740992.0 && d == (double) (uint64_t) d) {
        m = (uint64_t) d;
        goto done;
    }

    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);

        m = 0;

        for (e = buf; *e != 'e'; e++) {
            if (*e != '.') {
                m = m * 10 + (*e - '0');
            }
        }

        q = atoi(e + 1) - (prec - 1);

        v = strtod(buf, NULL);

        if (v == d) {
            goto done;
        }

        m2 = (v < d) ? m + 1 : m - 1;

        snprintf(buf, sizeof(buf), "%llue%d", (unsigned long long) m2, q);

        if (m2 && strtod(buf, NULL) == d) {
            m = m2;
            goto done;
        }
    }

done:

    while (m % 10 == 0) {
        m /= 10;
        q++;
    }

    len = snprintf((char *) digits, 24, "%llu", (unsigned long long) m);

    *k = len;
    *n = q + len;
}
