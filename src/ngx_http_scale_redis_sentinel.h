
/*
 * Where a pool's master is: the address written in the configuration, a
 * name looked up through nginx's resolver on every connect, or whatever
 * the Sentinels name (asked in turn, followed on +switch-master).  And how
 * a reply or a role says the server is not the master.
 */


#ifndef _NGX_HTTP_SCALE_REDIS_SENTINEL_H_INCLUDED_
#define _NGX_HTTP_SCALE_REDIS_SENTINEL_H_INCLUDED_


#include "ngx_http_scale_redis_pool.h"


/* per worker, for a pool with Sentinels */
ngx_int_t ngx_http_scale_redis_sentinel_init(ngx_http_scale_redis_pool_t *pool,
    ngx_cycle_t *cycle);
void ngx_http_scale_redis_sentinel_exit(ngx_http_scale_redis_pool_t *pool);

/*
 * Finds where rc connects and calls ngx_http_scale_redis_open(), now or
 * later: a name is looked up again each time, the Sentinels are asked
 * again unless their last answer is fresh.
 */
void ngx_http_scale_redis_locate(ngx_http_scale_redis_conn_t *rc);

/* rc no longer waits for the locator (closed, timed out, exiting) */
void ngx_http_scale_redis_locate_cancel(ngx_http_scale_redis_conn_t *rc);

/* the reason to show when a reply says "not the master", or NULL */
const char *ngx_http_scale_redis_not_master(redisReply *reply);

/* NULL for a master; else the role ROLE answered ("slave", "sentinel") */
const char *ngx_http_scale_redis_role(redisReply *reply);


#endif /* _NGX_HTTP_SCALE_REDIS_SENTINEL_H_INCLUDED_ */
