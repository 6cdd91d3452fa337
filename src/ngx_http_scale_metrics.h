
/*
 * Metrics: counters, gauges and histograms registered at configuration
 * time and kept in one shared memory zone, updated with atomics; and the
 * zone's life, driven by ngx_http_scale_module.c.
 */


#ifndef _NGX_HTTP_SCALE_METRICS_H_INCLUDED_
#define _NGX_HTTP_SCALE_METRICS_H_INCLUDED_


#include "ngx_http_scale_module.h"


typedef enum {
    NGX_HTTP_SCALE_COUNTER = 0,
    NGX_HTTP_SCALE_GAUGE,
    NGX_HTTP_SCALE_HISTOGRAM,
    NGX_HTTP_SCALE_WORKER_GAUGE,        /* by ngx_http_scale_worker_gauge_add */
    NGX_HTTP_SCALE_WORKER_COUNT         /* its count of workers */
} ngx_http_scale_metric_type_e;


/* histogram upper bounds, microseconds; +Inf is implicit */
#define NGX_HTTP_SCALE_HISTOGRAM_BUCKETS  14

extern const ngx_msec_t  ngx_http_scale_histogram_bounds_us[];


/*
 * One time series.  Counters and gauges take one slot, histograms
 * NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 1 (+Inf) bucket counts (not
 * cumulative), then count, then the sum in microseconds.  A worker gauge
 * takes one slot, and its count the next one; the zone keeps a value per
 * worker behind them.
 */
typedef struct {
    ngx_str_t                        family;
    ngx_str_t                        help;
    ngx_str_t                        labels;     /* pool="main",kind="timeout" */
    ngx_uint_t                       type;
    ngx_uint_t                       slot;
} ngx_http_scale_series_t;


/*
 * Registers a series at configuration time; returns its slot (a handle for
 * the update functions below) or NGX_ERROR.  Registering the same family and
 * labels twice returns the same slot.
 */
ngx_int_t ngx_http_scale_series_add(ngx_conf_t *cf, ngx_str_t *family,
    ngx_str_t *help, ngx_uint_t type, ngx_str_t *labels);

/*
 * Declares a family a module serves, whether or not it has series in this
 * configuration (a module not configured, no upstream yet): /metrics names
 * every family (HELP and TYPE), so dashboards and alert rules written for
 * the whole module always refer to served families.
 */
ngx_int_t ngx_http_scale_family_add(ngx_conf_t *cf, ngx_str_t *family,
    ngx_str_t *help, ngx_uint_t type);

/*
 * A gauge each worker process sets for itself, for state that is per
 * worker (its connection to a Redis pool).  family shows the lowest value
 * among the workers of the running configuration, a worker that has not
 * set it counting as 0; count_family shows how many of them have it above
 * 0.  Values are 0 .. 65535.  Set it with ngx_http_scale_gauge_set(); a
 * worker that is shutting down no longer sets it.
 */
ngx_int_t ngx_http_scale_worker_gauge_add(ngx_conf_t *cf, ngx_str_t *family,
    ngx_str_t *help, ngx_str_t *count_family, ngx_str_t *count_help,
    ngx_str_t *labels);

void ngx_http_scale_counter_add(ngx_uint_t slot, ngx_atomic_int_t n);
void ngx_http_scale_gauge_set(ngx_uint_t slot, ngx_atomic_int_t value);
void ngx_http_scale_histogram_observe(ngx_uint_t slot, uint64_t us);

/* reading, for the renderer */
ngx_array_t *ngx_http_scale_series(ngx_cycle_t *cycle);   /* of series_t */
/* of series_t with neither labels nor slot (0): the declared families */
ngx_array_t *ngx_http_scale_families(ngx_cycle_t *cycle);
/* a worker gauge's slot reads as the lowest value, its count's as the count */
ngx_atomic_int_t ngx_http_scale_slot_value(ngx_uint_t slot);
/* 0 for the slots of series that did not fit the zone */
ngx_uint_t ngx_http_scale_slot_fits(ngx_uint_t slot);

/* health_zone SIZE */
char *ngx_http_scale_metrics_zone_size(ngx_conf_t *cf, size_t size);

/* microseconds from a monotonic clock, for durations */
uint64_t ngx_http_scale_now_us(void);


/* escapes a label value for the Prometheus text format into pool memory */
ngx_int_t ngx_http_scale_label_escape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);


/* a registration slot, as this configuration finds it in the zone */
typedef struct {
    ngx_atomic_t                    *value;        /* in the zone */
    ngx_uint_t                       type;         /* of the series */
} ngx_http_scale_metrics_slot_t;


struct ngx_http_scale_metrics_conf_s {
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
};


ngx_http_scale_metrics_conf_t *ngx_http_scale_metrics_create_conf(
    ngx_conf_t *cf);
ngx_int_t ngx_http_scale_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_scale_metrics_conf_t *mcf);
/* takes this process' view of the zone from the cycle it runs */
void ngx_http_scale_metrics_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_SCALE_METRICS_H_INCLUDED_ */
