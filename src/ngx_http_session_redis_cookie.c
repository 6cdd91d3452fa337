
/*
 * session_redis: the Cookie header and the signed session id, read the
 * way express-session reads them.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_http_session_redis_cookie.h"
#include "ngx_http_session_redis_json.h"


static ngx_int_t ngx_http_session_redis_uri_decode(ngx_str_t *value,
    u_char *buf, size_t *len);
static size_t ngx_http_session_redis_latin1(ngx_str_t *value, u_char *buf);


/* cookie 0.7 parse(): see the header */

ngx_int_t
ngx_http_session_redis_cookie_value(ngx_str_t *header, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char  *p, *last, *end, *eq, *start, *stop;

    p = header->data;
    last = p + header->len;

    while (p < last) {
        end = ngx_strlchr(p, last, ';');
        if (end == NULL) {
            end = last;
        }

        /* a pair without '=' is no cookie */
        eq = ngx_strlchr(p, end, '=');

        if (eq) {
            for (start = p;
                 start < eq && (*start == ' ' || *start == '\t');
                 start++)
            { /* void */ }

            for (stop = eq;
                 stop > start && (stop[-1] == ' ' || stop[-1] == '\t');
                 stop--)
            { /* void */ }

            if ((size_t) (stop - start) == name->len
                && ngx_strncmp(start, name->data, name->len) == 0)
            {
                for (start = eq + 1;
                     start < end && (*start == ' ' || *start == '\t');
                     start++)
                { /* void */ }

                for (stop = end;
                     stop > start && (stop[-1] == ' ' || stop[-1] == '\t');
                     stop--)
                { /* void */ }

                /* a lone '"' is both quotes: the value is empty */
                if (stop > start && *start == '"' && stop[-1] == '"') {
                    start++;
                    stop = (stop > start) ? stop - 1 : start;
                }

                value->data = start;
                value->len = stop - start;

                return NGX_OK;
            }
        }

        p = end + 1;
    }

    return NGX_DECLINED;
}


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
 * express-session: the value is decodeURIComponent()ed when it holds a '%'
 * and kept as it is when that throws; header bytes are Latin-1 characters
 * to node.  Then "s:" <id> "." <signature>, split at the last '.', the
 * signature over the id's UTF-8 bytes.
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

    if (ngx_strlchr(value->data, value->data + value->len, '%') == NULL
        || ngx_http_session_redis_uri_decode(value, buf, &len) != NGX_OK)
    {
        len = ngx_http_session_redis_latin1(value, buf);
    }

    if (len < 2 || buf[0] != 's' || buf[1] != ':') {
        return NGX_DECLINED;
    }

    last = buf + len;
    dot = NULL;

    for (p = last - 1; p >= buf + 2; p--) {
        if (*p == '.') {
            dot = p;
            break;
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


/*
 * decodeURIComponent() (ECMA-262 Decode): "%XX" must be two hex digits;
 * the bytes of a multi-byte sequence must all be percent-encoded and make
 * a valid UTF-8 code point (no overlong form, no surrogate, at most
 * U+10FFFF); '+' stays '+'.  Anything else throws: NGX_DECLINED.
 */

static ngx_int_t
ngx_http_session_redis_uri_decode(ngx_str_t *value, u_char *buf,
    size_t *len)
{
    u_char      *p, *last, *d;
    uint32_t     cp;
    ngx_int_t    b;
    ngx_uint_t   n, i;

    static uint32_t  min[] = { 0, 0, 0x80, 0x800, 0x10000 };

    p = value->data;
    last = p + value->len;
    d = buf;

    while (p < last) {

        if (*p != '%') {
            if (*p < 0x80) {
                *d++ = *p++;

            } else {
                d += ngx_http_session_redis_utf8(*p++, d);
            }

            continue;
        }

        if (last - p < 3
            || (b = ngx_http_session_redis_hex(p + 1, 2)) == NGX_ERROR)
        {
            return NGX_DECLINED;
        }

        p += 3;

        if (b < 0x80) {
            *d++ = (u_char) b;
            continue;
        }

        if ((b & 0xe0) == 0xc0) {
            n = 2;
            cp = b & 0x1f;

        } else if ((b & 0xf0) == 0xe0) {
            n = 3;
            cp = b & 0x0f;

        } else if ((b & 0xf8) == 0xf0) {
            n = 4;
            cp = b & 0x07;

        } else {
            return NGX_DECLINED;
        }

        for (i = 1; i < n; i++) {
            if (last - p < 3 || *p != '%'
                || (b = ngx_http_session_redis_hex(p + 1, 2)) == NGX_ERROR
                || (b & 0xc0) != 0x80)
            {
                return NGX_DECLINED;
            }

            cp = (cp << 6) | (b & 0x3f);
            p += 3;
        }

        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return NGX_DECLINED;
        }

        d += ngx_http_session_redis_utf8(cp, d);
    }

    *len = d - buf;

    return NGX_OK;
}


/* the value as it is: each byte a Latin-1 character, in UTF-8 */

static size_t
ngx_http_session_redis_latin1(ngx_str_t *value, u_char *buf)
{
    u_char  *p, *last, *d;

    d = buf;
    last = value->data + value->len;

    for (p = value->data; p < last; p++) {
        if (*p < 0x80) {
            *d++ = *p;

        } else {
            d += ngx_http_session_redis_utf8(*p, d);
        }
    }

    return d - buf;
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
