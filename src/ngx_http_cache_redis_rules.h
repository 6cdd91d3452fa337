
/*
 * cache_redis: the shared-cache rules of RFC 9111 (what may be stored,
 * for how long, how old an entry is) and Vary variants.
 */


#ifndef _NGX_HTTP_CACHE_REDIS_RULES_H_INCLUDED_
#define _NGX_HTTP_CACHE_REDIS_RULES_H_INCLUDED_


#include "ngx_http_cache_redis.h"


typedef struct {
    time_t                           lifetime;     /* freshness lifetime, s */
    time_t                           initial_age;  /* corrected initial age */
    time_t                           date;         /* the origin's Date */
    ngx_uint_t                       flags;
    ngx_str_t                        vary;         /* names, lower case */
    const char                      *reason;       /* why not stored */
} ngx_http_cache_redis_fresh_t;


typedef struct {
    ngx_list_part_t                 *part;
    ngx_uint_t                       i;
} ngx_http_cache_redis_iter_t;


/* the response headers the origin sent, not those set before it */
void ngx_http_cache_redis_origin_headers(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_http_cache_redis_iter_t *it);
ngx_table_elt_t *ngx_http_cache_redis_header_next(
    ngx_http_cache_redis_iter_t *it);

/* the first origin header of that name */
ngx_table_elt_t *ngx_http_cache_redis_find_origin(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, const char *name);

/* NGX_OK: storable, f filled in; NGX_DECLINED: f->reason; NGX_ERROR */
ngx_int_t ngx_http_cache_redis_storable(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_http_cache_redis_fresh_t *f);

/* a header the entry keeps (not hop-by-hop, not per response) */
ngx_uint_t ngx_http_cache_redis_keep_header(ngx_str_t *name);

time_t ngx_http_cache_redis_current_age(ngx_http_cache_redis_entry_t *e,
    time_t now);

/* base + "#v" nonce ":" md5 of the request's values of the Vary names */
ngx_int_t ngx_http_cache_redis_variant_key(ngx_http_request_t *r,
    ngx_str_t *base, uint32_t nonce, ngx_str_t *names, ngx_str_t *key);


#endif /* _NGX_HTTP_CACHE_REDIS_RULES_H_INCLUDED_ */
