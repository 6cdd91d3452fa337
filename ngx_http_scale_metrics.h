
/*
 * Internals of the shared counters, used by ngx_http_scale_module.c.
 */


#ifndef _NGX_HTTP_SCALE_METRICS_H_INCLUDED_
#define _NGX_HTTP_SCALE_METRICS_H_INCLUDED_


#include "ngx_http_scale_module.h"


typedef struct {
    ngx_array_t                      series;       /* of series_t */
    ngx_uint_t                       nslots;       /* registration slots */
    ngx_uint_t                      *map;          /* to the zone's slots */
    ngx_pool_t                      *pool;
    size_t                           zone_size;
    ngx_shm_zone_t                  *zone;
} ngx_http_scale_metrics_conf_t;


ngx_http_scale_metrics_conf_t *ngx_http_scale_metrics_conf(ngx_conf_t *cf);
ngx_http_scale_metrics_conf_t *ngx_http_scale_metrics_cycle_conf(
    ngx_cycle_t *cycle);

ngx_int_t ngx_http_scale_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_scale_metrics_conf_t *mcf);
ngx_int_t ngx_http_scale_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_scale_metrics_conf_t *mcf);


#endif /* _NGX_HTTP_SCALE_METRICS_H_INCLUDED_ */
