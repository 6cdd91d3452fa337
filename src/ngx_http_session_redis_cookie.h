
/*
 * session_redis: the Cookie header (cookie 0.7's parse) and the signed
 * session id (decodeURIComponent, cookie-signature), read as
 * express-session reads them.  Stored sessions: ngx_http_session_redis_json.h.
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


#endif /* _NGX_HTTP_SESSION_REDIS_COOKIE_H_INCLUDED_ */
