
/*
 * cache_redis: a response answered from an entry, sent through nginx's
 * normal output filters (gzip, Range, not_modified, HEAD, add_header).
 */


#ifndef _NGX_HTTP_CACHE_REDIS_HIT_H_INCLUDED_
#define _NGX_HTTP_CACHE_REDIS_HIT_H_INCLUDED_


#include "ngx_http_cache_redis.h"


/* r->headers_out from ctx->entry, with Age */
ngx_int_t ngx_http_cache_redis_hit_headers(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);

/* the whole answer; returns what ngx_http_finalize_request() takes */
ngx_int_t ngx_http_cache_redis_hit_send(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);

/* ctx->entry's body as the last buffer */
ngx_int_t ngx_http_cache_redis_hit_body(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);


#endif /* _NGX_HTTP_CACHE_REDIS_HIT_H_INCLUDED_ */
