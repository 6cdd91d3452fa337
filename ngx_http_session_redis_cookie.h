
/*
 * session_redis: what express-session reads, read the way it reads it:
 * the Cookie header (cookie 0.7's parse), the signed session id
 * (decodeURIComponent, cookie-signature) and the stored session
 * (connect-redis's JSON.parse), and values rendered as JavaScript
 * renders them.
 *
 * Pure functions on ngx_str_t: no request, no pool, no logging, so the
 * fuzzer links them without the rest of nginx.
 */


#ifndef _NGX_HTTP_SESSION_REDIS_COOKIE_H_INCLUDED_
#define _NGX_HTTP_SESSION_REDIS_COOKIE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <openssl/evp.h>


/* longer cookie values are invalid without being looked at */
#define NGX_HTTP_SESSION_REDIS_VALUE_MAX  4096
/* such a value decoded: each byte may become two */
#define NGX_HTTP_SESSION_REDIS_DECODED_MAX  8192
/* session ids, after URL decoding, in UTF-8 bytes */
#define NGX_HTTP_SESSION_REDIS_ID_MAX     128


/*
 * The value of cookie NAME in one Cookie header, as cookie 0.7's parse()
 * reads it: pairs split at ';' only, the name before the first '=' matched
 * exactly, name and value trimmed of spaces and tabs, one pair of
 * surrounding double quotes stripped.  NGX_OK with value pointing into
 * the header, or NGX_DECLINED.  Several headers (and HTTP/2 crumbs) read
 * one after the other give what parse() gives for them joined with "; ":
 * the first pair of that name wins, even an empty one.
 */
ngx_int_t ngx_http_session_redis_cookie_value(ngx_str_t *header,
    ngx_str_t *name, ngx_str_t *value);


/*
 * A secret, keyed once: the SHA-256 states after the HMAC key's inner and
 * outer pad blocks, so signing an id costs two copies and two short
 * digests instead of a full HMAC setup.
 */
typedef struct {
    ngx_str_t                        secret;
    EVP_MD_CTX                      *inner;
    EVP_MD_CTX                      *outer;
    EVP_MD_CTX                      *work;         /* scratch, per process */
} ngx_http_session_redis_key_t;

ngx_int_t ngx_http_session_redis_key_init(ngx_http_session_redis_key_t *key,
    ngx_str_t *secret);
void ngx_http_session_redis_key_free(void *data);


/*
 * Both return NGX_OK with id set, or NGX_DECLINED for a cookie that is
 * malformed or forged.  The express parser decodes into buf, which must
 * hold 2 * value->len bytes; id points into buf and holds the UTF-8 bytes
 * of the id as JavaScript sees it: any bytes, NUL included.
 */
ngx_int_t ngx_http_session_redis_plain_id(ngx_str_t *value, ngx_str_t *id);
ngx_int_t ngx_http_session_redis_express_id(ngx_str_t *value, u_char *buf,
    ngx_http_session_redis_key_t *keys, ngx_uint_t nkeys, ngx_str_t *id);

/* cookie-signature: base64 (standard, no '=') of HMAC-SHA256(secret, id) */
#define NGX_HTTP_SESSION_REDIS_SIG_LEN    43

ngx_int_t ngx_http_session_redis_sign(ngx_http_session_redis_key_t *key,
    u_char *data, size_t len, u_char *sig);


/*
 * Stored sessions: JSON as JSON.parse reads it, over the bytes node-redis
 * decodes as UTF-8 (an invalid sequence is U+FFFD: fine in a string, an
 * error elsewhere).  No depth limit, no size limit on numbers, strings
 * may hold \u0000 and lone surrogates.
 *
 * json_check() validates p[0 .. len) (stack: (len + 7) / 8 bytes, one bit
 * per open container) and sets root to the value without the whitespace
 * around it; on NGX_DECLINED, err and *off say what is wrong and where.
 * p[len] must be readable and end a number (hiredis ends replies with
 * NUL).  The other functions take values of a checked document.
 */

#define NGX_HTTP_SESSION_REDIS_JSON_NULL      0
#define NGX_HTTP_SESSION_REDIS_JSON_FALSE     1
#define NGX_HTTP_SESSION_REDIS_JSON_TRUE      2
#define NGX_HTTP_SESSION_REDIS_JSON_NUMBER    3
#define NGX_HTTP_SESSION_REDIS_JSON_STRING    4
#define NGX_HTTP_SESSION_REDIS_JSON_ARRAY     5
#define NGX_HTTP_SESSION_REDIS_JSON_OBJECT    6

ngx_int_t ngx_http_session_redis_json_check(u_char *p, size_t len,
    u_char *stack, ngx_str_t *root, const char **err, size_t *off);
ngx_uint_t ngx_http_session_redis_json_type(ngx_str_t *v);
/* JavaScript's truthiness: false for null, false, 0, -0 and "" */
ngx_uint_t ngx_http_session_redis_json_truthy(ngx_str_t *v);
double ngx_http_session_redis_json_number(ngx_str_t *v);

/* the last member of that name (JSON.parse keeps the last), NGX_DECLINED */
ngx_int_t ngx_http_session_redis_json_member(ngx_str_t *object,
    u_char *name, size_t len, ngx_str_t *value);
ngx_int_t ngx_http_session_redis_json_element(ngx_str_t *array,
    ngx_uint_t n, ngx_str_t *value);

/*
 * A string's UTF-8 bytes, a lone surrogate as U+FFFD (as Buffer.from()
 * writes it); dst NULL: only the length.  At most 3 bytes per byte of v.
 */
size_t ngx_http_session_redis_json_string(ngx_str_t *v, u_char *dst);

/*
 * JSON.stringify() of an array or object: JavaScript's member order
 * (array indexes first, ascending), shortest numbers, its escapes.
 * dst NULL: only the length.  NGX_ERROR past depth levels of nesting.
 */
ngx_int_t ngx_http_session_redis_json_stringify(ngx_str_t *v, u_char *dst,
    size_t *len, ngx_uint_t depth);

/* Number.prototype.toString(): at most 25 bytes */
#define NGX_HTTP_SESSION_REDIS_NUMBER_LEN  25

u_char *ngx_http_session_redis_js_number(double d, u_char *p);


#endif /* _NGX_HTTP_SESSION_REDIS_COOKIE_H_INCLUDED_ */
