
/*
 * session_redis: stored sessions (connect-redis's JSON.parse) read as
 * express-session reads them, and values rendered as JavaScript renders
 * them.
 *
 * Pure functions on ngx_str_t: no request, no pool, no logging, so the
 * fuzzer links them without the rest of nginx.
 */


#ifndef _NGX_HTTP_SESSION_REDIS_JSON_H_INCLUDED_
#define _NGX_HTTP_SESSION_REDIS_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


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


/* text helpers, shared with the cookie reader */

/* the value of n hex digits at p, or NGX_ERROR */
ngx_int_t ngx_http_session_redis_hex(u_char *p, ngx_uint_t n);
/* code point cp in UTF-8 at p (at most 4 bytes); returns the length */
size_t ngx_http_session_redis_utf8(uint32_t cp, u_char *p);


#endif /* _NGX_HTTP_SESSION_REDIS_JSON_H_INCLUDED_ */
