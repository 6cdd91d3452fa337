
/*
 * Internals of the shared counters, used by ngx_http_scale_module.c.
 */


#ifndef _NGX_HTTP_SCALE_METRICS_H_INCLUDED_
#define _NGX_HTTP_SCALE_METRICS_H_INCLUDED_


#include "ngx_http_scale_module.h"


/* a registration slot, as this configuration finds it in the zone */
typedef struct {
    ngx_atomic_t                    *value;        /* in the zone */
    ngx_uint_t                       type;         /* of the series */
} ngx_http_scale_metrics_slot_t;


typedef struct {
    ngx_array_t                      series;       /* of series_t */
    ngx_array_t                      families;     /* of series_t, declared */
    ngx_uint_t                       nslots;       /* registration slots */
    ngx_pool_t                      *pool;
    ngx_cycle_t                     *cycle;
    size_t                           zone_size;
    ngx_shm_zone_t                  *zone;

    /* set when the zone is initialised, for the processes of this cycle */
    ngx_http_scale_metrics_slot_t   *map;          /* by registration slot */
    ngx_atomic_t                    *overflow;
    ngx_uint_t                       nworkers;     /* words of worker gauges */
    ngx_atomic_uint_t                generation;   /* of this configuration */
} ngx_http_scale_metrics_conf_t;


ngx_http_scale_metrics_conf_t *ngx_http_scale_metrics_conf(ngx_conf_t *cf);
ngx_http_scale_metrics_conf_t *ngx_http_scale_metrics_cycle_conf(
    ngx_cycle_t *cycle);

ngx_int_t ngx_http_scale_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_scale_metrics_conf_t *mcf);
ngx_int_t ngx_http_scale_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_scale_metrics_conf_t *mcf);
/* takes this process' view of the zone from the cycle it runs */
void ngx_http_scale_metrics_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_SCALE_METRICS_H_INCLUDED_ */
