
/*
 * The batcher: the requests of one event loop iteration that limit
 * through one pool go in one script call; the verdict of each is handed
 * to the callback given at init.
 */


#ifndef _NGX_HTTP_RATELIMIT_REDIS_BATCH_H_INCLUDED_
#define _NGX_HTTP_RATELIMIT_REDIS_BATCH_H_INCLUDED_


#include "ngx_http_ratelimit_redis.h"


/*
 * Called once per batched request with Redis' answer (v NULL unless rc is
 * NGX_HTTP_SCALE_REDIS_OK); the batcher resumes the request after it.
 */
typedef void (*ngx_http_ratelimit_redis_decide_pt)(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx, ngx_int_t rc,
    ngx_http_ratelimit_redis_verdict_t *v);


/* the pool of a zone that some location applies runs the script */
ngx_int_t ngx_http_ratelimit_redis_batch_script(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);

/* per worker: a batcher for each pool the zones use */
ngx_int_t ngx_http_ratelimit_redis_batch_init(ngx_cycle_t *cycle,
    ngx_array_t *zones, ngx_http_ratelimit_redis_decide_pt decide);
void ngx_http_ratelimit_redis_batch_exit(void);

/* NGX_AGAIN: the request waits for its batch; else a failure kind */
ngx_int_t ngx_http_ratelimit_redis_batch_add(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx);


#endif /* _NGX_HTTP_RATELIMIT_REDIS_BATCH_H_INCLUDED_ */
