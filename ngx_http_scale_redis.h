
/*
 * Internals of the Redis client, shared by ngx_http_scale_module.c
 * (configuration, process hooks) and ngx_http_scale_redis.c (runtime).
 */


#ifndef _NGX_HTTP_SCALE_REDIS_H_INCLUDED_
#define _NGX_HTTP_SCALE_REDIS_H_INCLUDED_


#include "ngx_http_scale_module.h"
#include <hiredis/async.h>


typedef struct ngx_http_scale_redis_conn_s  ngx_http_scale_redis_conn_t;


struct ngx_http_scale_redis_conn_s {
    ngx_http_scale_redis_pool_t     *pool;
    redisAsyncContext               *ac;
    ngx_connection_t                *connection;   /* wraps ac's fd */

    unsigned                         ready:1;      /* handshake done */
    unsigned                         starting:1;   /* first connect of the worker */
    unsigned                         role:1;       /* ROLE allowed: checked */
    /*
     * Dropped because the server was not the master: not counted up, and
     * the backoff goes on growing, until it answers as the master (ROLE,
     * or without ROLE a PING interval with no -READONLY).
     */
    unsigned                         failover:1;
    ngx_event_t                      timer;        /* connect timeout, backoff */
    ngx_msec_t                       backoff;
    ngx_msec_t                       ready_at;     /* ngx_current_msec */

    ngx_uint_t                       ping_pending;
    ngx_msec_t                       ping_sent;    /* ngx_current_msec */
    uint64_t                         ping_sent_us;
};


struct ngx_http_scale_redis_pool_s {
    ngx_str_t                        name;
    ngx_str_t                        server;       /* as written, for logs */
    u_char                          *host;         /* numeric address, or */
    u_char                          *unix_path;    /* a socket path */
    int                              port;

    ngx_str_t                        username;
    ngx_str_t                        password;
    ngx_int_t                        database;
    ngx_msec_t                       connect_timeout;
    ngx_msec_t                       timeout;
    ngx_uint_t                       nconnections;

    u_char                          *file;         /* first reference, for */
    ngx_uint_t                       line;         /* "unknown pool" errors */
    unsigned                         defined:1;
    unsigned                         used:1;       /* by some location */
    ngx_array_t                     *scripts;      /* of script_t *, loaded */

    ngx_uint_t                       up_slot;
    ngx_uint_t                       commands_slot;
    ngx_uint_t                       duration_slot;
    ngx_uint_t                       errors_slot[NGX_HTTP_SCALE_REDIS_NKINDS];

    /* this worker's state */
    ngx_http_scale_redis_conn_t     *conns;
    ngx_uint_t                       next;
    ngx_event_t                      ping;
    ngx_log_t                       *log;
    ngx_uint_t                       up;
    ngx_msec_t                       since;
    ngx_msec_t                       latency;
    const char                      *down_reason;
    ngx_http_scale_log_burst_t       log_burst;    /* failure log throttle */
};


typedef struct {
    ngx_array_t                      pools;        /* of pool_t * */
} ngx_http_scale_redis_conf_t;


ngx_http_scale_redis_conf_t *ngx_http_scale_redis_conf(ngx_conf_t *cf);
ngx_http_scale_redis_conf_t *ngx_http_scale_redis_cycle_conf(
    ngx_cycle_t *cycle);

char *ngx_http_scale_redis_pool_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_scale_redis_init_conf(ngx_conf_t *cf,
    ngx_http_scale_redis_conf_t *rcf);
ngx_int_t ngx_http_scale_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_scale_redis_conf_t *rcf);
void ngx_http_scale_redis_exit_process(ngx_cycle_t *cycle,
    ngx_http_scale_redis_conf_t *rcf);


#endif /* _NGX_HTTP_SCALE_REDIS_H_INCLUDED_ */
