
/*
 * Each worker's connections to a pool: connect (where the locator says),
 * handshake (AUTH, SELECT, ROLE, SCRIPT LOAD), keepalive PING or ROLE,
 * capped backoff, failover, and whether the pool is up.
 */


#ifndef _NGX_HTTP_SCALE_REDIS_WORKER_H_INCLUDED_
#define _NGX_HTTP_SCALE_REDIS_WORKER_H_INCLUDED_


#include "ngx_http_scale_redis_pool.h"


ngx_int_t ngx_http_scale_redis_init_process(ngx_cycle_t *cycle,
    ngx_array_t *pools);
void ngx_http_scale_redis_exit_process(ngx_cycle_t *cycle,
    ngx_array_t *pools);

/* set from exit_process on: nothing is delivered or reconnected */
ngx_uint_t ngx_http_scale_redis_exiting(void);

/* a connection commands may be sent on now, round robin; or NULL */
ngx_http_scale_redis_conn_t *ngx_http_scale_redis_pick(
    ngx_http_scale_redis_pool_t *pool);

/* the locator found where to connect, or (addr NULL) could not */
void ngx_http_scale_redis_open(ngx_http_scale_redis_conn_t *rc,
    ngx_http_scale_redis_addr_t *addr, const char *reason);

/* closes a failed connection; it connects again after a backoff */
void ngx_http_scale_redis_drop(ngx_http_scale_redis_conn_t *rc,
    const char *reason, ngx_uint_t kind);

/*
 * The master moved: every connection of the pool is dropped; with now,
 * they connect again at once (Sentinel said where), else after backoff.
 */
void ngx_http_scale_redis_failover(ngx_http_scale_redis_pool_t *pool,
    const char *reason, ngx_uint_t now);


#endif /* _NGX_HTTP_SCALE_REDIS_WORKER_H_INCLUDED_ */
