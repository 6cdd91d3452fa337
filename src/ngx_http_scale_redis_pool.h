
/*
 * redis_pool { }: what a pool is and how it is configured.  Its runtime
 * lives in ngx_http_scale_redis_worker.c (connections), _command.c and
 * _sentinel.c (where the master is).
 */


#ifndef _NGX_HTTP_SCALE_REDIS_POOL_H_INCLUDED_
#define _NGX_HTTP_SCALE_REDIS_POOL_H_INCLUDED_


#include "ngx_http_scale_module.h"
#include "ngx_http_scale_redis.h"
#include "ngx_http_scale_redis_conn.h"


typedef struct ngx_http_scale_redis_sentinel_s
    ngx_http_scale_redis_sentinel_t;


struct ngx_http_scale_redis_pool_s {
    ngx_str_t                        name;
    ngx_str_t                        server;       /* as written, for logs */

    /* server HOST:PORT, or unix:PATH: resolved once, at configuration */
    ngx_http_scale_redis_addr_t      addr;

    /* server NAME:PORT resolve: looked up on every connect */
    ngx_str_t                        host;
    in_port_t                        port;
    ngx_resolver_t                  *resolver;
    ngx_msec_t                       resolver_timeout;
    unsigned                         resolve:1;

    /* sentinel HOST:PORT ...; master NAME */
    ngx_array_t                     *sentinels;    /* of addr_t */
    ngx_str_t                        master;
    ngx_str_t                        sentinel_username;
    ngx_str_t                        sentinel_password;

    ngx_str_t                        username;
    ngx_str_t                        password;
    ngx_int_t                        database;
    ngx_msec_t                       connect_timeout;
    ngx_msec_t                       timeout;
    ngx_uint_t                       nconnections;

    ngx_flag_t                       ssl;
    ngx_flag_t                       ssl_verify;
    ngx_str_t                        ssl_trusted_certificate;
    ngx_str_t                        ssl_server_name;
    ngx_str_t                        ssl_certificate;
    ngx_str_t                        ssl_certificate_key;
    ngx_uint_t                       ssl_protocols;
    ngx_str_t                        ssl_ciphers;
#if (NGX_SSL)
    ngx_http_scale_redis_tls_t      *tls;
#endif

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
    ngx_http_scale_redis_sentinel_t *sentinel;
    ngx_uint_t                       next;
    ngx_event_t                      ping;
    ngx_log_t                       *log;
    ngx_uint_t                       up;
    ngx_msec_t                       since;
    ngx_msec_t                       latency;
    const char                      *down_reason;
    ngx_uint_t                       failures;     /* connects that failed */
    unsigned                         down_logged:1;
    unsigned                         was_up:1;
    ngx_http_scale_log_burst_t       log_burst;    /* failure log throttle */
};


/* configuration: the block, then at postconfiguration the checks */
char *ngx_http_scale_redis_pool_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_scale_redis_init_conf(ngx_conf_t *cf, ngx_array_t *pools);


#endif /* _NGX_HTTP_SCALE_REDIS_POOL_H_INCLUDED_ */
