
/*
 * Shared counters.  Every series is registered at configuration time; the
 * zone gives it slots once and for all, found again by a hash of its name
 * and labels after a reload.  A series' slots never move, so workers of
 * the old and the new configuration may update them side by side.  An
 * update is one atomic add at an index known in advance: no lookup, no
 * lock.  Slot 0 is the overflow series for a zone that is full.
 */


#include "ngx_http_scale_metrics.h"


typedef struct {
    uint32_t                         hash;         /* of family and labels */
    uint32_t                         nslots;
    ngx_uint_t                       slot;         /* in the zone */
} ngx_http_scale_metrics_key_t;


typedef struct {
    ngx_uint_t                       nkeys;
    ngx_uint_t                       keys_max;
    ngx_uint_t                       nslots;
    ngx_uint_t                       slots_max;
    ngx_http_scale_metrics_key_t    *keys;
    ngx_atomic_t                    *slots;
} ngx_http_scale_metrics_shctx_t;


static ngx_int_t ngx_http_scale_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_scale_metrics_shctx_t *ngx_http_scale_metrics_create(
    ngx_slab_pool_t *shpool);
static ngx_uint_t ngx_http_scale_metrics_place(
    ngx_http_scale_metrics_shctx_t *ctx, ngx_http_scale_series_t *s);
static ngx_uint_t ngx_http_scale_series_nslots(ngx_http_scale_series_t *s);
static uint32_t ngx_http_scale_series_hash(ngx_http_scale_series_t *s);


const ngx_msec_t  ngx_http_scale_histogram_bounds_us[] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};


/* this process' view: registration slot -> zone slot */
static ngx_atomic_t  *ngx_http_scale_slots;
static ngx_uint_t    *ngx_http_scale_map;
static ngx_uint_t     ngx_http_scale_nmap;
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
    mcf->pool = cf->pool;

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

    ngx_uint_t                       i, k, slot, n, lost;
    ngx_slab_pool_t                 *shpool;
    ngx_http_scale_series_t         *series;
    ngx_http_scale_metrics_shctx_t  *ctx;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data) {
        /* a reload: the series that still exist keep their slots */
        ctx = shpool->data;

    } else {
        ctx = ngx_http_scale_metrics_create(shpool);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        shpool->data = ctx;
    }

    mcf->map = ngx_pcalloc(mcf->pool, mcf->nslots * sizeof(ngx_uint_t));
    if (mcf->map == NULL) {
        return NGX_ERROR;
    }

    series = mcf->series.elts;
    lost = 0;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < mcf->series.nelts; i++) {
        slot = ngx_http_scale_metrics_place(ctx, &series[i]);
        n = ngx_http_scale_series_nslots(&series[i]);

        if (slot == 0) {
            lost++;
        }

        for (k = 0; k < n; k++) {
            mcf->map[series[i].slot + k] = slot ? slot + k : 0;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (lost) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "health_zone is too small for %ui of %ui series, "
                      "they are counted in nginx_scale_metrics_overflow_total",
                      lost, mcf->series.nelts);
    }

    ngx_http_scale_slots = ctx->slots;
    ngx_http_scale_map = mcf->map;
    ngx_http_scale_nmap = mcf->nslots;

    return NGX_OK;
}


/* a quarter of the zone for the keys, the rest for the slots */

static ngx_http_scale_metrics_shctx_t *
ngx_http_scale_metrics_create(ngx_slab_pool_t *shpool)
{
    size_t                           avail;
    ngx_http_scale_metrics_shctx_t  *ctx;

    shpool->log_nomem = 0;

    ctx = ngx_slab_calloc(shpool, sizeof(ngx_http_scale_metrics_shctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    avail = shpool->end - shpool->start;

    ctx->keys_max = avail / 4 / sizeof(ngx_http_scale_metrics_key_t);
    ctx->keys = ngx_slab_calloc(shpool, ctx->keys_max
                                        * sizeof(ngx_http_scale_metrics_key_t));
    if (ctx->keys == NULL) {
        return NULL;
    }

    for (ctx->slots_max = avail / 2 / sizeof(ngx_atomic_t);
         ctx->slots_max > 1;
         ctx->slots_max /= 2)
    {
        ctx->slots = ngx_slab_calloc(shpool,
                                     ctx->slots_max * sizeof(ngx_atomic_t));
        if (ctx->slots) {
            break;
        }
    }

    if (ctx->slots == NULL) {
        return NULL;
    }

    ctx->nslots = 1;                       /* 0: the overflow series */

    return ctx;
}


/* the series' first slot in the zone, given now or before; 0: no room */

static ngx_uint_t
ngx_http_scale_metrics_place(ngx_http_scale_metrics_shctx_t *ctx,
    ngx_http_scale_series_t *s)
{
    uint32_t                       hash;
    ngx_uint_t                     i, n;
    ngx_http_scale_metrics_key_t  *key;

    hash = ngx_http_scale_series_hash(s);
    n = ngx_http_scale_series_nslots(s);

    for (i = 0; i < ctx->nkeys; i++) {
        if (ctx->keys[i].hash == hash && ctx->keys[i].nslots == n) {
            return ctx->keys[i].slot;
        }
    }

    if (ctx->nkeys == ctx->keys_max || ctx->nslots + n > ctx->slots_max) {
        return 0;
    }

    key = &ctx->keys[ctx->nkeys++];
    key->hash = hash;
    key->nslots = n;
    key->slot = ctx->nslots;

    ctx->nslots += n;

    return key->slot;
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

    return &ngx_http_scale_slots[slot < ngx_http_scale_nmap
                                 ? ngx_http_scale_map[slot] : 0];
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
    return ngx_http_scale_slots != NULL && slot < ngx_http_scale_nmap
           && ngx_http_scale_map[slot] != 0;
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
