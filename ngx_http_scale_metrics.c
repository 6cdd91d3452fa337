
/*
 * Shared counters.  Every series is registered at configuration time and
 * gets fixed slots in one shared memory zone, so an update is a single
 * atomic add at a known index: no lookup, no lock.  Slot 0 is the overflow
 * series for a zone too small to hold them all.
 *
 * Zone layout: header, then a key per series (to carry values over a
 * reload that changes the set of series), then the slots.
 */


#include "ngx_http_scale_metrics.h"


typedef struct {
    uint32_t                         hash;         /* of family and labels */
    uint32_t                         nslots;
    ngx_uint_t                       slot;
} ngx_http_scale_metrics_key_t;


typedef struct {
    ngx_uint_t                       nseries;
    ngx_uint_t                       nslots;       /* that fit */
    ngx_http_scale_metrics_key_t    *keys;
    ngx_atomic_t                    *slots;
} ngx_http_scale_metrics_shctx_t;


static ngx_int_t ngx_http_scale_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_uint_t ngx_http_scale_metrics_same_layout(
    ngx_http_scale_metrics_conf_t *mcf, ngx_http_scale_metrics_shctx_t *octx);
static ngx_uint_t ngx_http_scale_series_nslots(ngx_http_scale_series_t *s);
static uint32_t ngx_http_scale_series_hash(ngx_http_scale_series_t *s);


const ngx_msec_t  ngx_http_scale_histogram_bounds_us[] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};


static ngx_atomic_t  *ngx_http_scale_slots;
static ngx_uint_t     ngx_http_scale_nslots;
static ngx_atomic_t   ngx_http_scale_no_slots[1];


ngx_int_t
ngx_http_scale_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_scale_metrics_conf_t *mcf)
{
    if (ngx_array_init(&mcf->series, cf->pool, 32,
                       sizeof(ngx_http_scale_series_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    mcf->nslots = 1;                       /* the overflow slot */
    mcf->zone_size = NGX_CONF_UNSET_SIZE;

    return NGX_OK;
}


char *
ngx_http_scale_metrics_zone_size(ngx_conf_t *cf, size_t size)
{
    ngx_http_scale_metrics_conf_t  *mcf;

    mcf = ngx_http_scale_metrics_conf(cf);

    if (mcf->zone_size != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    if (size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "health_zone of %uz bytes is too small, "
                           "at least %uz", size, 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    mcf->zone_size = size;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_scale_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_scale_metrics_conf_t *mcf)
{
    static ngx_str_t  name = ngx_string("nginx_scale_metrics");

    ngx_conf_init_size_value(mcf->zone_size, 1024 * 1024);

    mcf->zone = ngx_shared_memory_add(cf, &name, mcf->zone_size,
                                      &ngx_http_scale_module);
    if (mcf->zone == NULL) {
        return NGX_ERROR;
    }

    mcf->zone->init = ngx_http_scale_metrics_init_zone;
    mcf->zone->data = mcf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_scale_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_scale_metrics_conf_t   *mcf = shm_zone->data;

    size_t                           avail;
    ngx_uint_t                       i, j, n, nold, onslots, k;
    ngx_slab_pool_t                 *shpool;
    ngx_atomic_uint_t               *old;
    ngx_http_scale_series_t         *series;
    ngx_http_scale_metrics_key_t    *okeys;
    ngx_http_scale_metrics_shctx_t  *ctx, *octx;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    shpool->log_nomem = 0;

    /* data is the previous cycle's conf when the zone is reused */
    octx = data ? shpool->data : NULL;
    series = mcf->series.elts;

    old = NULL;
    okeys = NULL;
    nold = 0;
    onslots = 0;

    if (octx && ngx_http_scale_metrics_same_layout(mcf, octx)) {
        /* a reload that changed no series: old and new workers share slots */
        ngx_http_scale_slots = octx->slots;
        ngx_http_scale_nslots = octx->nslots;
        return NGX_OK;
    }

    if (octx) {
        /* reload: keep the values of the series that still exist */

        ctx = octx;
        nold = ctx->nseries;
        onslots = ctx->nslots;

        okeys = ngx_alloc(nold * sizeof(ngx_http_scale_metrics_key_t)
                          + ctx->nslots * sizeof(ngx_atomic_t),
                          ngx_cycle->log);
        if (okeys == NULL) {
            return NGX_ERROR;
        }

        if (nold) {
            ngx_memcpy(okeys, ctx->keys,
                       nold * sizeof(ngx_http_scale_metrics_key_t));
        }
        old = (ngx_atomic_uint_t *) (okeys + nold);
        for (i = 0; i < onslots; i++) {
            old[i] = ctx->slots[i];
        }

        if (ctx->keys) {
            ngx_slab_free(shpool, ctx->keys);
        }

        ngx_slab_free(shpool, (void *) ctx->slots);

    } else {
        ctx = ngx_slab_alloc(shpool, sizeof(ngx_http_scale_metrics_shctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        shpool->data = ctx;
    }

    /* without room for the keys, a reload only loses the old values */
    ctx->nseries = mcf->series.nelts;
    ctx->keys = ngx_slab_calloc(shpool, (ctx->nseries + 1)
                                       * sizeof(ngx_http_scale_metrics_key_t));
    if (ctx->keys == NULL) {
        ctx->nseries = 0;
    }

    /* what is left of the zone holds the slots */

    avail = (shpool->end - shpool->start) / 2;
    n = mcf->nslots;

    while (n > 1 && n * sizeof(ngx_atomic_t) > avail) {
        n /= 2;
    }

    for ( ;; ) {
        ctx->slots = ngx_slab_calloc(shpool, n * sizeof(ngx_atomic_t));
        if (ctx->slots || n <= 1) {
            break;
        }

        n /= 2;
    }

    if (ctx->slots == NULL) {
        ngx_free(okeys);
        return NGX_ERROR;
    }

    ctx->nslots = n;

    if (n < mcf->nslots) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "health_zone is too small for %ui series, "
                      "the rest are counted in "
                      "nginx_scale_metrics_overflow_total", mcf->series.nelts);
    }

    for (i = 0; i < ctx->nseries; i++) {
        ctx->keys[i].hash = ngx_http_scale_series_hash(&series[i]);
        ctx->keys[i].nslots = ngx_http_scale_series_nslots(&series[i]);
        ctx->keys[i].slot = series[i].slot;

        for (j = 0; j < nold; j++) {
            if (okeys[j].hash != ctx->keys[i].hash
                || okeys[j].nslots != ctx->keys[i].nslots)
            {
                continue;
            }

            for (k = 0; k < ctx->keys[i].nslots; k++) {
                if (okeys[j].slot + k < onslots
                    && series[i].slot + k < n)
                {
                    ctx->slots[series[i].slot + k] = old[okeys[j].slot + k];
                }
            }

            break;
        }
    }

    ngx_free(okeys);

    ngx_http_scale_slots = ctx->slots;
    ngx_http_scale_nslots = n;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_scale_metrics_same_layout(ngx_http_scale_metrics_conf_t *mcf,
    ngx_http_scale_metrics_shctx_t *octx)
{
    ngx_uint_t                i;
    ngx_http_scale_series_t  *series;

    if (octx->nseries != mcf->series.nelts || octx->keys == NULL) {
        return 0;
    }

    series = mcf->series.elts;

    for (i = 0; i < mcf->series.nelts; i++) {
        if (octx->keys[i].hash != ngx_http_scale_series_hash(&series[i])
            || octx->keys[i].nslots != ngx_http_scale_series_nslots(&series[i])
            || octx->keys[i].slot != series[i].slot)
        {
            return 0;
        }
    }

    return 1;
}


ngx_int_t
ngx_http_scale_series_add(ngx_conf_t *cf, ngx_str_t *family, ngx_str_t *help,
    ngx_uint_t type, ngx_str_t *labels)
{
    ngx_uint_t                      i;
    ngx_http_scale_series_t        *s;
    ngx_http_scale_metrics_conf_t  *mcf;

    mcf = ngx_http_scale_metrics_conf(cf);
    s = mcf->series.elts;

    for (i = 0; i < mcf->series.nelts; i++) {
        if (s[i].family.len == family->len
            && s[i].labels.len == labels->len
            && ngx_strncmp(s[i].family.data, family->data, family->len) == 0
            && ngx_strncmp(s[i].labels.data, labels->data, labels->len) == 0)
        {
            return s[i].slot;
        }
    }

    s = ngx_array_push(&mcf->series);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->family = *family;
    s->help = *help;
    s->labels = *labels;
    s->type = type;
    s->slot = mcf->nslots;

    mcf->nslots += ngx_http_scale_series_nslots(s);

    return s->slot;
}


static ngx_uint_t
ngx_http_scale_series_nslots(ngx_http_scale_series_t *s)
{
    if (s->type == NGX_HTTP_SCALE_HISTOGRAM) {
        /* buckets, +Inf, count, sum */
        return NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 3;
    }

    return 1;
}


static uint32_t
ngx_http_scale_series_hash(ngx_http_scale_series_t *s)
{
    uint32_t  crc;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, s->family.data, s->family.len);
    ngx_crc32_update(&crc, (u_char *) "{", 1);
    ngx_crc32_update(&crc, s->labels.data, s->labels.len);
    ngx_crc32_final(crc);

    return crc;
}


/* runtime */

static ngx_inline ngx_atomic_t *
ngx_http_scale_slot(ngx_uint_t slot)
{
    if (ngx_http_scale_slots == NULL) {
        return ngx_http_scale_no_slots;
    }

    return &ngx_http_scale_slots[slot < ngx_http_scale_nslots ? slot : 0];
}


void
ngx_http_scale_counter_add(ngx_uint_t slot, ngx_atomic_int_t n)
{
    (void) ngx_atomic_fetch_add(ngx_http_scale_slot(slot), n);
}


void
ngx_http_scale_gauge_set(ngx_uint_t slot, ngx_atomic_int_t value)
{
    /* a gauge that did not fit must not overwrite the overflow counter */
    if (ngx_http_scale_slot_fits(slot)) {
        *ngx_http_scale_slot(slot) = value;
    }
}


ngx_uint_t
ngx_http_scale_slot_fits(ngx_uint_t slot)
{
    return ngx_http_scale_slots != NULL && slot < ngx_http_scale_nslots;
}


void
ngx_http_scale_histogram_observe(ngx_uint_t slot, uint64_t us)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_SCALE_HISTOGRAM_BUCKETS; i++) {
        if (us <= ngx_http_scale_histogram_bounds_us[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(ngx_http_scale_slot(slot + i), 1);
    (void) ngx_atomic_fetch_add(
                ngx_http_scale_slot(slot + NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 1),
                1);
    (void) ngx_atomic_fetch_add(
                ngx_http_scale_slot(slot + NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 2),
                us);
}


ngx_array_t *
ngx_http_scale_series(ngx_cycle_t *cycle)
{
    ngx_http_scale_metrics_conf_t  *mcf;

    mcf = ngx_http_scale_metrics_cycle_conf(cycle);

    return mcf ? &mcf->series : NULL;
}


ngx_atomic_int_t
ngx_http_scale_slot_value(ngx_uint_t slot)
{
    return (ngx_atomic_int_t) *ngx_http_scale_slot(slot);
}


uint64_t
ngx_http_scale_now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


ngx_int_t
ngx_http_scale_label_escape(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char      *p;
    ngx_uint_t   i;

    dst->data = ngx_pnalloc(pool, src->len * 2 + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    p = dst->data;

    for (i = 0; i < src->len; i++) {
        switch (src->data[i]) {
        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = src->data[i];
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        default:
            *p++ = src->data[i];
        }
    }

    dst->len = p - dst->data;

    return NGX_OK;
}
