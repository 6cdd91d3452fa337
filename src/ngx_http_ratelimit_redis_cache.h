
/*
 * The deny cache: keys that Redis rejected, remembered by this worker
 * until the moment Redis could admit them again.
 */


#ifndef _NGX_HTTP_RATELIMIT_REDIS_CACHE_H_INCLUDED_
#define _NGX_HTTP_RATELIMIT_REDIS_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


ngx_int_t ngx_http_ratelimit_redis_cache_init(ngx_cycle_t *cycle,
    ngx_uint_t nzones);
void ngx_http_ratelimit_redis_cache_free(void);

/* ms left until the key may pass again, or 0 */
ngx_msec_t ngx_http_ratelimit_redis_cache_lookup(ngx_uint_t zone,
    ngx_str_t *key);
/* until: in ngx_current_msec terms */
void ngx_http_ratelimit_redis_cache_insert(ngx_uint_t zone, ngx_str_t *key,
    ngx_msec_t until);


#endif /* _NGX_HTTP_RATELIMIT_REDIS_CACHE_H_INCLUDED_ */
