
/*
 * ratelimit_redis internals shared by the module (directives, verdicts)
 * and the batcher (one script call for the requests of a loop iteration).
 */


#ifndef _NGX_HTTP_RATELIMIT_REDIS_H_INCLUDED_
#define _NGX_HTTP_RATELIMIT_REDIS_H_INCLUDED_


#include "ngx_http_scale_module.h"
#include "ngx_http_scale_redis.h"


#define NGX_HTTP_RATELIMIT_REDIS_PASSED            1
#define NGX_HTTP_RATELIMIT_REDIS_REJECTED          2
#define NGX_HTTP_RATELIMIT_REDIS_REJECTED_DRY_RUN  3
#define NGX_HTTP_RATELIMIT_REDIS_FAILED_OPEN       4
#define NGX_HTTP_RATELIMIT_REDIS_FAILED_CLOSED     5
#define NGX_HTTP_RATELIMIT_REDIS_NRESULTS          6

/* zones applied to one location */
#define NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX         8


typedef struct ngx_http_ratelimit_redis_batcher_s
    ngx_http_ratelimit_redis_batcher_t;
typedef struct ngx_http_ratelimit_redis_batch_s
    ngx_http_ratelimit_redis_batch_t;


typedef struct {
    ngx_str_t                        name;
    ngx_http_complex_value_t         key;
    ngx_uint_t                       limit;        /* requests per window */
    ngx_msec_t                       window;
    ngx_str_t                        limit_arg;    /* script arguments */
    ngx_str_t                        window_arg;
    ngx_str_t                        prefix;       /* "rl:{NAME}:" */
    ngx_uint_t                       batch_gen;    /* this worker's: */
    ngx_uint_t                       batch_slot;   /* place in KEYS */
    ngx_uint_t                       index;        /* in the deny cache */
    ngx_http_scale_redis_pool_t     *pool;
    ngx_http_ratelimit_redis_batcher_t  *batcher;  /* this worker's */
    ngx_uint_t                       slots[NGX_HTTP_RATELIMIT_REDIS_NRESULTS];
    ngx_http_scale_log_burst_t       cached_log;   /* this worker's */
} ngx_http_ratelimit_redis_zone_t;


typedef struct {
    ngx_http_ratelimit_redis_zone_t *zone;
    ngx_uint_t                       dry_run;
} ngx_http_ratelimit_redis_limit_t;


/* what the script said of one zone */
typedef struct {
    ngx_uint_t                       admitted;
    ngx_uint_t                       remaining;
    ngx_msec_t                       retry;        /* ms until admitted */
    ngx_msec_t                       reset;        /* ms until window end */
} ngx_http_ratelimit_redis_verdict_t;


typedef struct {
    ngx_http_request_t              *request;
    ngx_uint_t                       status;
    ngx_int_t                        rc;           /* for the phase engine */
    unsigned                         waiting:1;
    unsigned                         done:1;
    ngx_msec_t                       sent;
    ngx_uint_t                       nzones;
    ngx_http_ratelimit_redis_limit_t *limits[NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX];
    ngx_str_t                        keys[NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX];

    /* batching */
    ngx_queue_t                      queue;        /* waiting for the flush */
    ngx_http_ratelimit_redis_batcher_t  *batcher;
    ngx_http_ratelimit_redis_batch_t    *batch;    /* sent, not answered */
    ngx_uint_t                       index;        /* in the batch */
} ngx_http_ratelimit_redis_ctx_t;


/* the batcher: ngx_http_ratelimit_redis_batch.c */
ngx_int_t ngx_http_ratelimit_redis_batch_script(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);
ngx_int_t ngx_http_ratelimit_redis_batch_init(ngx_cycle_t *cycle,
    ngx_array_t *zones);
void ngx_http_ratelimit_redis_batch_exit(void);
ngx_int_t ngx_http_ratelimit_redis_batch_add(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx);

/* the module: called once per batched request with Redis' answer */
void ngx_http_ratelimit_redis_decide(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx, ngx_int_t rc,
    ngx_http_ratelimit_redis_verdict_t *v);


#endif /* _NGX_HTTP_RATELIMIT_REDIS_H_INCLUDED_ */
