
/*
 * cache_redis store: a header + body filter that copies the response the
 * app sends and stores it with one command after its last buffer; and the
 * other writes (lock release, invalidation, purge) sent without a request
 * waiting for them.
 */


#ifndef _NGX_HTTP_CACHE_REDIS_STORE_H_INCLUDED_
#define _NGX_HTTP_CACHE_REDIS_STORE_H_INCLUDED_


#include "ngx_http_cache_redis.h"
#include "ngx_http_scale_redis.h"


ngx_int_t ngx_http_cache_redis_store_init(ngx_conf_t *cf);
/* the store's scripts run on every pool cache_redis uses */
ngx_int_t ngx_http_cache_redis_store_scripts(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);

/*
 * cache_redis_revalidate: the expired entry's validators on the request to
 * the app; its 304 then refreshes the entry (REVALIDATED)
 */
ngx_int_t ngx_http_cache_redis_conditional(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);

/* drops a lock this request holds and its unfinished copy */
void ngx_http_cache_redis_store_abort(ngx_http_cache_redis_ctx_t *ctx);

/* DEL of the request's entry, and of Location / Content-Location on it */
void ngx_http_cache_redis_invalidate(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);

/* a command no request waits for: argv copied, failures logged */
ngx_int_t ngx_http_cache_redis_send_detached(
    ngx_http_cache_redis_loc_conf_t *conf,
    ngx_http_scale_redis_script_t *script, int argc, ngx_str_t *argv,
    u_char *copy);


#endif /* _NGX_HTTP_CACHE_REDIS_STORE_H_INCLUDED_ */
