
/*
 * session_redis: session cookie parsing and signature checks.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_http_session_redis_cookie.h"


static ngx_int_t ngx_http_session_redis_unescape(ngx_str_t *value,
    u_char *buf, size_t *len);
static ngx_int_t ngx_http_session_redis_digits(u_char *p, ngx_uint_t n);


/* express-session ids are uid-safe base64url; custom genid may use more */

ngx_int_t
ngx_http_session_redis_plain_id(ngx_str_t *value, ngx_str_t *id)
{
    u_char  *p, *last, c;

    if (value->len == 0 || value->len > NGX_HTTP_SESSION_REDIS_ID_MAX) {
        return NGX_DECLINED;
    }

    last = value->data + value->len;

    for (p = value->data; p < last; p++) {
        c = *p;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_')
        {
            continue;
        }

        return NGX_DECLINED;
    }

    *id = *value;

    return NGX_OK;
}


/*
 * "s%3A<id>.<signature>": the whole value is URL-decoded first (signatures
 * carry '+' and '/'), then split at the last '.'.
 */

ngx_int_t
ngx_http_session_redis_express_id(ngx_str_t *value, u_char *buf,
    ngx_http_session_redis_key_t *keys, ngx_uint_t nkeys, ngx_str_t *id)
{
    u_char      *p, *dot, *last, sig[NGX_HTTP_SESSION_REDIS_SIG_LEN];
    size_t       len;
    ngx_uint_t   i, ok;

    if (value->len > NGX_HTTP_SESSION_REDIS_VALUE_MAX) {
        return NGX_DECLINED;
    }

    if (ngx_http_session_redis_unescape(value, buf, &len) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (len < 2 || buf[0] != 's' || buf[1] != ':') {
        return NGX_DECLINED;
    }

    last = buf + len;
    dot = NULL;

    for (p = buf + 2; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return NGX_DECLINED;
        }

        if (*p == '.') {
            dot = p;
        }
    }

    if (dot == NULL
        || dot == buf + 2
        || (size_t) (dot - (buf + 2)) > NGX_HTTP_SESSION_REDIS_ID_MAX
        || last - (dot + 1) != NGX_HTTP_SESSION_REDIS_SIG_LEN)
    {
        return NGX_DECLINED;
    }

    id->data = buf + 2;
    id->len = dot - id->data;

    ok = 0;

    for (i = 0; i < nkeys; i++) {
        if (ngx_http_session_redis_sign(&keys[i], id->data, id->len, sig)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }

        /* every secret is tried: the time taken does not tell which one */
        ok |= (CRYPTO_memcmp(sig, dot + 1, NGX_HTTP_SESSION_REDIS_SIG_LEN)
               == 0);
    }

    return ok ? NGX_OK : NGX_DECLINED;
}


/* HMAC (RFC 2104) with SHA-256: 64-byte blocks */

ngx_int_t
ngx_http_session_redis_key_init(ngx_http_session_redis_key_t *key,
    ngx_str_t *secret)
{
    u_char         block[64], pad[64];
    ngx_uint_t     i;
    unsigned int   len;
    const EVP_MD  *sha256;

    key->secret = *secret;
    sha256 = EVP_sha256();

    ngx_memzero(block, sizeof(block));

    if (secret->len > sizeof(block)) {
        if (EVP_Digest(secret->data, secret->len, block, &len, sha256, NULL)
            != 1)
        {
            return NGX_ERROR;
        }

    } else {
        ngx_memcpy(block, secret->data, secret->len);
    }

    key->inner = EVP_MD_CTX_new();
    key->outer = EVP_MD_CTX_new();
    key->work = EVP_MD_CTX_new();

    if (key->inner == NULL || key->outer == NULL || key->work == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < sizeof(block); i++) {
        pad[i] = block[i] ^ 0x36;
    }

    if (EVP_DigestInit_ex(key->inner, sha256, NULL) != 1
        || EVP_DigestUpdate(key->inner, pad, sizeof(pad)) != 1)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < sizeof(block); i++) {
        pad[i] = block[i] ^ 0x5c;
    }

    if (EVP_DigestInit_ex(key->outer, sha256, NULL) != 1
        || EVP_DigestUpdate(key->outer, pad, sizeof(pad)) != 1)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_session_redis_key_free(void *data)
{
    ngx_http_session_redis_key_t  *key = data;

    EVP_MD_CTX_free(key->inner);
    EVP_MD_CTX_free(key->outer);
    EVP_MD_CTX_free(key->work);
}


ngx_int_t
ngx_http_session_redis_sign(ngx_http_session_redis_key_t *key, u_char *data,
    size_t len, u_char *sig)
{
    u_char         md[EVP_MAX_MD_SIZE], b64[48];
    EVP_MD_CTX    *ctx;
    unsigned int   mdlen;

    ctx = key->work;

    if (EVP_MD_CTX_copy_ex(ctx, key->inner) != 1
        || EVP_DigestUpdate(ctx, data, len) != 1
        || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1
        || EVP_MD_CTX_copy_ex(ctx, key->outer) != 1
        || EVP_DigestUpdate(ctx, md, mdlen) != 1
        || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1
        || mdlen != 32)
    {
        return NGX_ERROR;
    }

    /* 32 bytes: 43 characters and one '=' */
    if (EVP_EncodeBlock(b64, md, 32) != 44) {
        return NGX_ERROR;
    }

    ngx_memcpy(sig, b64, NGX_HTTP_SESSION_REDIS_SIG_LEN);

    return NGX_OK;
}


/* strict: '%' must be followed by two hex digits; '+' stays '+' */

static ngx_int_t
ngx_http_session_redis_unescape(ngx_str_t *value, u_char *buf, size_t *len)
{
    u_char      *p, *last, *d, c, ch;
    ngx_uint_t   i;

    p = value->data;
    last = p + value->len;
    d = buf;

    while (p < last) {

        if (*p != '%') {
            *d++ = *p++;
            continue;
        }

        if (last - p < 3) {
            return NGX_DECLINED;
        }

        ch = 0;

        for (i = 1; i <= 2; i++) {
            c = p[i];

            if (c >= '0' && c <= '9') {
                ch = (u_char) (ch * 16 + (c - '0'));

            } else {
                c |= 0x20;

                if (c >= 'a' && c <= 'f') {
                    ch = (u_char) (ch * 16 + (c - 'a' + 10));

                } else {
                    return NGX_DECLINED;
                }
            }
        }

        *d++ = ch;
        p += 3;
    }

    *len = d - buf;

    return NGX_OK;
}


/* "2026-11-27T01:57:37.589Z", fraction optional, "Z" or "+HH:MM" */

ngx_int_t
ngx_http_session_redis_parse_time(u_char *p, size_t len, int64_t *ms)
{
    u_char     *last;
    int64_t     days, frac, scale;
    ngx_int_t   year, month, day, hour, min, sec, off, oh, om, y;

    static ngx_int_t  mdays[] = { 31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31 };

    last = p + len;

    if (len < 20
        || p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != 't')
        || p[13] != ':' || p[16] != ':')
    {
        return NGX_DECLINED;
    }

    year = ngx_http_session_redis_digits(p, 4);
    month = ngx_http_session_redis_digits(p + 5, 2);
    day = ngx_http_session_redis_digits(p + 8, 2);
    hour = ngx_http_session_redis_digits(p + 11, 2);
    min = ngx_http_session_redis_digits(p + 14, 2);
    sec = ngx_http_session_redis_digits(p + 17, 2);

    if (year < 1 || month < 1 || month > 12 || day < 1
        || day > mdays[month - 1] || hour < 0 || hour > 23
        || min < 0 || min > 59 || sec < 0 || sec > 60)
    {
        return NGX_DECLINED;
    }

    if (month == 2 && day == 29
        && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
    {
        return NGX_DECLINED;
    }

    p += 19;
    frac = 0;

    if (p < last && *p == '.') {
        p++;

        if (p == last || *p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        for (scale = 100; p < last && *p >= '0' && *p <= '9'; p++) {
            frac += (*p - '0') * scale;
            scale /= 10;
        }
    }

    if (p == last) {
        return NGX_DECLINED;
    }

    off = 0;

    if ((*p == 'Z' || *p == 'z') && last - p == 1) {
        /* UTC */

    } else if ((*p == '+' || *p == '-') && last - p == 6 && p[3] == ':') {
        oh = ngx_http_session_redis_digits(p + 1, 2);
        om = ngx_http_session_redis_digits(p + 4, 2);

        if (oh < 0 || oh > 23 || om < 0 || om > 59) {
            return NGX_DECLINED;
        }

        off = (oh * 60 + om) * 60;

        if (*p == '+') {
            off = -off;
        }

    } else {
        return NGX_DECLINED;
    }

    /* days since 1970-01-01, proleptic Gregorian; year >= 1 keeps y >= 0 */

    y = year - (month <= 2);

    days = (int64_t) (y / 400) * 146097;
    y %= 400;
    days += y * 365 + y / 4 - y / 100
            + (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5
            + day - 1 - 719468;

    *ms = ((days * 86400 + hour * 3600 + min * 60 + sec + off) * 1000)
          + frac;

    return NGX_OK;
}


static ngx_int_t
ngx_http_session_redis_digits(u_char *p, ngx_uint_t n)
{
    ngx_int_t  v;

    for (v = 0; n; n--, p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        v = v * 10 + (*p - '0');
    }

    return v;
}
