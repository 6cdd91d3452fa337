
/*
 * health: what ngx_http_health_module.c (directives, live and ready) and
 * ngx_http_health_metrics.c (accounting, /metrics) share.
 */


#ifndef _NGX_HTTP_HEALTH_H_INCLUDED_
#define _NGX_HTTP_HEALTH_H_INCLUDED_


#include "ngx_http_scale_module.h"
#include "ngx_http_scale_metrics.h"


#define NGX_HTTP_HEALTH_BUF_SIZE  16384


/* health_ready_upstream NAME [min=N] */
typedef struct {
    ngx_str_t                        name;
    ngx_uint_t                       min;
    ngx_http_upstream_srv_conf_t    *upstream;
    u_char                          *file;
    ngx_uint_t                       line;
} ngx_http_health_upstream_t;


/* an upstream peer known at configuration time, with its series */
typedef struct {
    ngx_http_upstream_srv_conf_t    *upstream;
    ngx_str_t                        name;         /* peer->name; "": the
                                                      upstream's own count */
    ngx_uint_t                       requests_slot;
    ngx_uint_t                       up_slot;
} ngx_http_health_peer_t;


typedef struct {
    ngx_array_t                      upstreams;    /* of upstream_t */
    ngx_str_t                        drain_file;   /* null-terminated */
    ngx_str_t                        drain_name;   /* its last component */
    int                              drain_dir;    /* opened by the master */
    ngx_uint_t                       metrics;      /* health_metrics is used */

    /* series, registered only when health_metrics is used */
    ngx_uint_t                       info_slot;
    ngx_uint_t                       connections_slot[4];
    ngx_uint_t                       accepted_slot;
    ngx_uint_t                       handled_slot;
    ngx_uint_t                       requests_slot[5];   /* 1xx .. 5xx */
    ngx_uint_t                       duration_slot;

    u_char                          *readable;     /* by upstream: peers */
    ngx_array_t                      peers;        /* of peer_t */
    ngx_http_health_peer_t         **peers_hash;   /* open addressing */
    ngx_uint_t                       peers_mask;

    /* this worker's state */
    time_t                           drain_checked;
    time_t                           drain_since;
    ngx_uint_t                       draining;

    ngx_http_scale_series_t        **order;        /* series by family */
    ngx_uint_t                       norder;
} ngx_http_health_main_conf_t;


/* response bodies built in r->pool, one buffer after another */
typedef struct {
    ngx_pool_t                      *pool;
    ngx_chain_t                     *first;
    ngx_chain_t                    **last;
    ngx_buf_t                       *buf;
} ngx_http_health_out_t;


extern ngx_module_t  ngx_http_health_module;


void ngx_http_health_out_init(ngx_http_health_out_t *out, ngx_pool_t *pool);
u_char *ngx_http_health_out_reserve(ngx_http_health_out_t *out, size_t size);
ngx_int_t ngx_http_health_method(ngx_http_request_t *r);
ngx_int_t ngx_http_health_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_http_health_out_t *out);
ngx_uint_t ngx_http_health_peer_is_up(ngx_http_upstream_rr_peer_t *peer,
    time_t now);
ngx_uint_t ngx_http_health_peers_readable(ngx_http_upstream_srv_conf_t *uscf);



#endif /* _NGX_HTTP_HEALTH_H_INCLUDED_ */
