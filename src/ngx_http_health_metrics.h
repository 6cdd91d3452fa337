
/*
 * health_metrics: the Prometheus text of every series, and the per-peer
 * series of the upstreams it can read.
 */


#ifndef _NGX_HTTP_HEALTH_METRICS_H_INCLUDED_
#define _NGX_HTTP_HEALTH_METRICS_H_INCLUDED_


#include "ngx_http_health.h"


ngx_int_t ngx_http_health_metrics_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_health_metrics_init(ngx_conf_t *cf,
    ngx_http_health_main_conf_t *hmcf);


#endif /* _NGX_HTTP_HEALTH_METRICS_H_INCLUDED_ */
