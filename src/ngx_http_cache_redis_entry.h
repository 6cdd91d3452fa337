
/*
 * cache_redis entries as Redis holds them: binary-safe, versioned.
 *
 *   "NXC" VERSION(1) KIND(1)
 *   KIND 'E', a response:
 *     status u16, stored u64 (unix s), initial age u32, lifetime u32,
 *     flags u32, nheaders u16, { name u16+bytes, value u32+bytes } ...,
 *     tags u32+bytes, body u32+bytes
 *   KIND 'V', the record a response with Vary leaves under its URL's key:
 *     nonce u32, header names u16+bytes ("accept-encoding,accept-language")
 *
 * Integers are big-endian.  Anything else under a key is foreign.
 */


#ifndef _NGX_HTTP_CACHE_REDIS_ENTRY_H_INCLUDED_
#define _NGX_HTTP_CACHE_REDIS_ENTRY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_CACHE_REDIS_VERSION        1

#define NGX_HTTP_CACHE_REDIS_KIND_ENTRY     'E'
#define NGX_HTTP_CACHE_REDIS_KIND_VARY      'V'

/* flags */
#define NGX_HTTP_CACHE_REDIS_MUST_REVALIDATE  0x01


typedef struct {
    ngx_uint_t                       kind;

    ngx_uint_t                       status;
    time_t                           stored;
    time_t                           initial_age;
    time_t                           lifetime;
    ngx_uint_t                       flags;
    ngx_keyval_t                    *headers;
    ngx_uint_t                       nheaders;
    ngx_str_t                        tags;
    ngx_str_t                        body;

    uint32_t                         nonce;
    ngx_str_t                        vary;
} ngx_http_cache_redis_entry_t;


/* a response entry up to its body length field; the body follows */
size_t ngx_http_cache_redis_entry_head_len(ngx_http_cache_redis_entry_t *e);
u_char *ngx_http_cache_redis_entry_write_head(u_char *p,
    ngx_http_cache_redis_entry_t *e);
void ngx_http_cache_redis_entry_set_body_len(u_char *body, size_t len);

size_t ngx_http_cache_redis_vary_len(ngx_str_t *names);
u_char *ngx_http_cache_redis_vary_write(u_char *p, uint32_t nonce,
    ngx_str_t *names);

/* NGX_OK, NGX_DECLINED for a corrupt or foreign value, NGX_ERROR */
ngx_int_t ngx_http_cache_redis_entry_parse(ngx_pool_t *pool, u_char *data,
    size_t len, ngx_http_cache_redis_entry_t *e);


#endif /* _NGX_HTTP_CACHE_REDIS_ENTRY_H_INCLUDED_ */
