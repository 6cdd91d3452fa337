
/*
 * Shared counters.  Every series is registered at configuration time; the
 * zone gives it slots once and for all, found again by its name and labels
 * after a reload.  A series' slots never move, so workers of the old and
 * the new configuration may update them side by side.  An update is one
 * atomic add at an address known in advance: no lookup, no lock.
 * Registration slot 0 is the overflow series for a zone that is full.
 *
 * The zone is one arena taken from its slab pool.  Series are only ever
 * added, by the master while it reads a configuration: a node holds the
 * slots and the name ("family{labels"), chained in a bucket by the name's
 * CRC32 and always compared in full.
 *
 * A process counts for the configuration of the cycle it runs, taken in
 * init_process: the zone's init runs in the master for a configuration
 * that may yet fail to load, and whose memory is then freed.
 */


#include "ngx_http_scale_metrics.h"


/* a worker gauge's word: the generation above, the value below */
#define NGX_HTTP_SCALE_WORKER_SHIFT  (4 * sizeof(ngx_atomic_uint_t))
#define NGX_HTTP_SCALE_WORKER_MASK                                            \
    (((ngx_atomic_uint_t) 1 << NGX_HTTP_SCALE_WORKER_SHIFT) - 1)


typedef struct ngx_http_scale_metrics_node_s  ngx_http_scale_metrics_node_t;

struct ngx_http_scale_metrics_node_s {
    ngx_http_scale_metrics_node_t   *next;         /* in its bucket */
    uint32_t                         hash;         /* CRC32 of the name */
    uint32_t                         type;
    uint32_t                         nslots;
    uint32_t                         len;          /* of the name */
    ngx_atomic_t                     slots[1];     /* nslots, then the name */
};


typedef struct {
    ngx_atomic_t                     overflow;     /* registration slot 0 */
    ngx_atomic_uint_t                generation;   /* configurations placed */
    ngx_uint_t                       nseries;
    ngx_uint_t                       nbuckets;     /* a power of 2 */
    ngx_http_scale_metrics_node_t  **buckets;
    u_char                          *free;         /* the arena's unused end */
    u_char                          *end;
} ngx_http_scale_metrics_shctx_t;


/* this process' view: the configuration it counts for */
typedef struct {
    ngx_http_scale_metrics_slot_t   *map;
    ngx_uint_t                       nmap;
    ngx_uint_t                       nworkers;
    ngx_atomic_uint_t                generation;
    ngx_http_scale_metrics_slot_t    none;         /* slots beyond the map */
} ngx_http_scale_metrics_view_t;


static ngx_int_t ngx_http_scale_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_scale_metrics_shctx_t *ngx_http_scale_metrics_create(
    ngx_slab_pool_t *shpool);
static ngx_http_scale_metrics_node_t *ngx_http_scale_metrics_place(
    ngx_http_scale_metrics_shctx_t *ctx, ngx_http_scale_series_t *s,
    ngx_uint_t nslots);
static ngx_uint_t ngx_http_scale_series_nslots(ngx_http_scale_series_t *s);
static uint32_t ngx_http_scale_series_hash(ngx_http_scale_series_t *s);
static ngx_atomic_int_t ngx_http_scale_workers_value(
    ngx_http_scale_metrics_slot_t *s);


const ngx_msec_t  ngx_http_scale_histogram_bounds_us[] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};


/* until init_process, updates go nowhere */
static ngx_atomic_t                   ngx_http_scale_no_slot;
static ngx_http_scale_metrics_view_t  ngx_http_scale_view = {
    NULL, 0, 0, 0, { &ngx_http_scale_no_slot, NGX_HTTP_SCALE_COUNTER }
};


ngx_http_scale_metrics_conf_t *
ngx_http_scale_metrics_create_conf(ngx_conf_t *cf)
{
    ngx_http_scale_metrics_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_scale_metrics_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mcf->series, cf->pool, 32,
                       sizeof(ngx_http_scale_series_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&mcf->families, cf->pool, 16,
                       sizeof(ngx_http_scale_series_t))
        != NGX_OK)
    {
        return NULL;
    }

    mcf->nslots = 1;                       /* the overflow slot */
    mcf->zone_size = NGX_CONF_UNSET_SIZE;
    mcf->pool = cf->pool;
    mcf->cycle = cf->cycle;

    return mcf;
}


static ngx_http_scale_metrics_conf_t *
ngx_http_scale_metrics_conf(ngx_conf_t *cf)
{
    ngx_http_scale_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_scale_module);

    return smcf->metrics;
}


static ngx_http_scale_metrics_conf_t *
ngx_http_scale_metrics_cycle_conf(ngx_cycle_t *cycle)
{
    ngx_http_scale_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_scale_module);

    return smcf ? smcf->metrics : NULL;
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


/*
 * In the master, for a configuration being read: places its series and
 * fills its map.  Nothing here may touch what processes already running
 * use, or outlive the configuration if it fails to load.
 */

static ngx_int_t
ngx_http_scale_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_scale_metrics_conf_t   *mcf = shm_zone->data;

    ngx_uint_t                       i, k, n, lost;
    ngx_core_conf_t                 *ccf;
    ngx_slab_pool_t                 *shpool;
    ngx_http_scale_series_t         *series;
    ngx_http_scale_metrics_slot_t   *map;
    ngx_http_scale_metrics_node_t   *node;
    ngx_http_scale_metrics_shctx_t  *ctx;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data) {
        /* a reload: the series that still exist keep their slots */
        ctx = shpool->data;

    } else {
        ctx = ngx_http_scale_metrics_create(shpool);
        if (ctx == NULL) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "health_zone of %uz bytes has no room",
                          shm_zone->shm.size);
            return NGX_ERROR;
        }

        shpool->data = ctx;
    }

    /* a worker gauge keeps a word per worker process */

    ccf = (ngx_core_conf_t *) ngx_get_conf(mcf->cycle->conf_ctx,
                                           ngx_core_module);

    mcf->nworkers = ccf->master ? (ngx_uint_t) ccf->worker_processes : 1;

    mcf->map = ngx_palloc(mcf->pool,
                          mcf->nslots * sizeof(ngx_http_scale_metrics_slot_t));
    if (mcf->map == NULL) {
        return NGX_ERROR;
    }

    map = mcf->map;
    series = mcf->series.elts;
    lost = 0;

    ngx_shmtx_lock(&shpool->mutex);

    mcf->generation = ++ctx->generation;
    mcf->overflow = &ctx->overflow;

    map[0].value = &ctx->overflow;
    map[0].type = NGX_HTTP_SCALE_COUNTER;

    for (i = 0; i < mcf->series.nelts; i++) {
        k = series[i].slot;

        if (series[i].type == NGX_HTTP_SCALE_WORKER_COUNT) {
            /* reads the values of the worker gauge in the slot before */
            map[k].value = map[k - 1].value;
            map[k].type = (map[k].value == &ctx->overflow)
                          ? NGX_HTTP_SCALE_COUNTER
                          : NGX_HTTP_SCALE_WORKER_COUNT;
            continue;
        }

        n = (series[i].type == NGX_HTTP_SCALE_WORKER_GAUGE)
            ? mcf->nworkers : ngx_http_scale_series_nslots(&series[i]);

        node = ngx_http_scale_metrics_place(ctx, &series[i], n);

        if (node == NULL) {
            lost++;
        }

        for (n = 0; n < ngx_http_scale_series_nslots(&series[i]); n++) {
            if (node) {
                map[k + n].value = &node->slots[n];
                map[k + n].type = series[i].type;

            } else {
                /* counted in the overflow series, never set */
                map[k + n].value = &ctx->overflow;
                map[k + n].type = NGX_HTTP_SCALE_COUNTER;
            }
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_CORE, shm_zone->shm.log, 0,
                   "health_zone: %ui series, %ui in the zone, "
                   "%uz bytes free, generation %uA",
                   mcf->series.nelts, ctx->nseries,
                   (size_t) (ctx->end - ctx->free), mcf->generation);

    if (lost) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "health_zone is too small for %ui of %ui series, "
                      "they are counted in nginx_scale_metrics_overflow_total",
                      lost, mcf->series.nelts);
    }

    return NGX_OK;
}


/* every free page as one arena: the buckets, then the nodes */

static ngx_http_scale_metrics_shctx_t *
ngx_http_scale_metrics_create(ngx_slab_pool_t *shpool)
{
    u_char                          *p;
    size_t                           size;
    ngx_uint_t                       pages;
    ngx_http_scale_metrics_shctx_t  *ctx;

    shpool->log_nomem = 0;

    p = NULL;

    for (pages = shpool->pfree; pages > 0; pages--) {
        p = ngx_slab_alloc(shpool, pages << ngx_pagesize_shift);
        if (p) {
            break;
        }
    }

    if (p == NULL) {
        return NULL;
    }

    size = pages << ngx_pagesize_shift;

    ctx = (ngx_http_scale_metrics_shctx_t *) p;
    ngx_memzero(ctx, sizeof(ngx_http_scale_metrics_shctx_t));

    /* about one bucket per 4 series of 64 bytes */

    for (ctx->nbuckets = 16; ctx->nbuckets * 512 <= size; ctx->nbuckets *= 2)
    {
        /* void */
    }

    ctx->buckets = (ngx_http_scale_metrics_node_t **)
                       ngx_align_ptr(p + sizeof(ngx_http_scale_metrics_shctx_t),
                                     NGX_ALIGNMENT);
    ngx_memzero(ctx->buckets,
                ctx->nbuckets * sizeof(ngx_http_scale_metrics_node_t *));

    ctx->free = (u_char *) &ctx->buckets[ctx->nbuckets];
    ctx->end = p + size;

    return ctx;
}


/* the series' node, placed now or before; NULL: no room */

static ngx_http_scale_metrics_node_t *
ngx_http_scale_metrics_place(ngx_http_scale_metrics_shctx_t *ctx,
    ngx_http_scale_series_t *s, ngx_uint_t nslots)
{
    u_char                          *name;
    size_t                           len, size;
    uint32_t                         hash;
    ngx_http_scale_metrics_node_t   *node, **bucket;

    hash = ngx_http_scale_series_hash(s);
    len = s->family.len + 1 + s->labels.len;

    bucket = &ctx->buckets[hash & (ctx->nbuckets - 1)];

    for (node = *bucket; node; node = node->next) {

        if (node->hash != hash
            || node->type != s->type
            || node->nslots != nslots
            || node->len != len)
        {
            continue;
        }

        name = (u_char *) &node->slots[nslots];

        if (ngx_memcmp(name, s->family.data, s->family.len) == 0
            && name[s->family.len] == '{'
            && ngx_memcmp(name + s->family.len + 1, s->labels.data,
                          s->labels.len)
               == 0)
        {
            return node;
        }
    }

    size = offsetof(ngx_http_scale_metrics_node_t, slots)
           + nslots * sizeof(ngx_atomic_t) + len;
    size = ngx_align(size, NGX_ALIGNMENT);

    if ((size_t) (ctx->end - ctx->free) < size) {
        return NULL;
    }

    node = (ngx_http_scale_metrics_node_t *) ctx->free;
    ctx->free += size;

    ngx_memzero(node, size);

    node->hash = hash;
    node->type = (uint32_t) s->type;
    node->nslots = (uint32_t) nslots;
    node->len = (uint32_t) len;

    name = (u_char *) &node->slots[nslots];
    name = ngx_cpymem(name, s->family.data, s->family.len);
    *name++ = '{';
    ngx_memcpy(name, s->labels.data, s->labels.len);

    node->next = *bucket;
    *bucket = node;

    ctx->nseries++;

    return node;
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


ngx_int_t
ngx_http_scale_family_add(ngx_conf_t *cf, ngx_str_t *family, ngx_str_t *help,
    ngx_uint_t type)
{
    ngx_uint_t                      i;
    ngx_http_scale_series_t        *s;
    ngx_http_scale_metrics_conf_t  *mcf;

    mcf = ngx_http_scale_metrics_conf(cf);
    s = mcf->families.elts;

    for (i = 0; i < mcf->families.nelts; i++) {
        if (s[i].family.len == family->len
            && ngx_strncmp(s[i].family.data, family->data, family->len) == 0)
        {
            return NGX_OK;
        }
    }

    s = ngx_array_push(&mcf->families);
    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(s, sizeof(ngx_http_scale_series_t));

    s->family = *family;
    s->help = *help;
    s->type = type;

    return NGX_OK;
}


ngx_int_t
ngx_http_scale_worker_gauge_add(ngx_conf_t *cf, ngx_str_t *family,
    ngx_str_t *help, ngx_str_t *count_family, ngx_str_t *count_help,
    ngx_str_t *labels)
{
    ngx_int_t  slot, count;

    slot = ngx_http_scale_series_add(cf, family, help,
                                     NGX_HTTP_SCALE_WORKER_GAUGE, labels);
    if (slot == NGX_ERROR) {
        return NGX_ERROR;
    }

    count = ngx_http_scale_series_add(cf, count_family, count_help,
                                      NGX_HTTP_SCALE_WORKER_COUNT, labels);
    if (count == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* the count reads the gauge's values: its slot is the next one */

    if (count != slot + 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "series \"%V{%V}\" is already registered",
                           count_family, labels);
        return NGX_ERROR;
    }

    return slot;
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

void
ngx_http_scale_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_http_scale_metrics_conf_t  *mcf;
    ngx_http_scale_metrics_view_t  *view;

    view = &ngx_http_scale_view;
    mcf = ngx_http_scale_metrics_cycle_conf(cycle);

    view->none.type = NGX_HTTP_SCALE_COUNTER;

    if (mcf == NULL || mcf->map == NULL) {
        view->map = NULL;
        view->nmap = 0;
        view->nworkers = 0;
        view->generation = 0;
        view->none.value = &ngx_http_scale_no_slot;
        return;
    }

    view->map = mcf->map;
    view->nmap = mcf->nslots;
    view->nworkers = mcf->nworkers;
    view->generation = mcf->generation;
    view->none.value = mcf->overflow;

    ngx_log_debug3(NGX_LOG_DEBUG_CORE, cycle->log, 0,
                   "health_zone: %ui slots, %ui workers, generation %uA",
                   view->nmap, view->nworkers, view->generation);
}


static ngx_inline ngx_http_scale_metrics_slot_t *
ngx_http_scale_slot(ngx_uint_t slot)
{
    if (slot >= ngx_http_scale_view.nmap) {
        return &ngx_http_scale_view.none;
    }

    return &ngx_http_scale_view.map[slot];
}


void
ngx_http_scale_counter_add(ngx_uint_t slot, ngx_atomic_int_t n)
{
    (void) ngx_atomic_fetch_add(ngx_http_scale_slot(slot)->value, n);
}


void
ngx_http_scale_gauge_set(ngx_uint_t slot, ngx_atomic_int_t value)
{
    ngx_atomic_uint_t               v;
    ngx_http_scale_metrics_slot_t  *s;

    s = ngx_http_scale_slot(slot);

    /* a gauge that did not fit must not overwrite the overflow counter */
    if (s->value == ngx_http_scale_view.none.value) {
        return;
    }

    if (s->type != NGX_HTTP_SCALE_WORKER_GAUGE) {
        *s->value = value;
        return;
    }

    /*
     * Each worker its own word, marked with its configuration's generation.
     * A worker shutting down after a reload leaves the word to the worker
     * that took its place.
     */

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || ngx_worker >= ngx_http_scale_view.nworkers
        || ngx_quit || ngx_terminate || ngx_exiting)
    {
        return;
    }

    v = (value < 0) ? 0 : ngx_min((ngx_atomic_uint_t) value,
                                  NGX_HTTP_SCALE_WORKER_MASK);

    s->value[ngx_worker] =
        (ngx_http_scale_view.generation << NGX_HTTP_SCALE_WORKER_SHIFT) | v;
}


ngx_uint_t
ngx_http_scale_slot_fits(ngx_uint_t slot)
{
    return ngx_http_scale_slot(slot)->value
           != ngx_http_scale_view.none.value;
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

    (void) ngx_atomic_fetch_add(ngx_http_scale_slot(slot + i)->value, 1);
    (void) ngx_atomic_fetch_add(
        ngx_http_scale_slot(slot + NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 1)->value,
        1);
    (void) ngx_atomic_fetch_add(
        ngx_http_scale_slot(slot + NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 2)->value,
        us);
}


ngx_array_t *
ngx_http_scale_series(ngx_cycle_t *cycle)
{
    ngx_http_scale_metrics_conf_t  *mcf;

    mcf = ngx_http_scale_metrics_cycle_conf(cycle);

    return mcf ? &mcf->series : NULL;
}


ngx_array_t *
ngx_http_scale_families(ngx_cycle_t *cycle)
{
    ngx_http_scale_metrics_conf_t  *mcf;

    mcf = ngx_http_scale_metrics_cycle_conf(cycle);

    return mcf ? &mcf->families : NULL;
}


ngx_atomic_int_t
ngx_http_scale_slot_value(ngx_uint_t slot)
{
    ngx_http_scale_metrics_slot_t  *s;

    s = ngx_http_scale_slot(slot);

    if (s->type == NGX_HTTP_SCALE_WORKER_GAUGE
        || s->type == NGX_HTTP_SCALE_WORKER_COUNT)
    {
        return ngx_http_scale_workers_value(s);
    }

    return (ngx_atomic_int_t) *s->value;
}


/*
 * Over the workers of this process' configuration: the lowest value, or
 * how many are above 0.  A word another configuration wrote (a worker not
 * started yet, or one of the old configuration) counts as 0.
 */

static ngx_atomic_int_t
ngx_http_scale_workers_value(ngx_http_scale_metrics_slot_t *s)
{
    ngx_uint_t         w, up;
    ngx_atomic_uint_t  word, value, min, generation;

    generation = ngx_http_scale_view.generation & NGX_HTTP_SCALE_WORKER_MASK;
    min = NGX_HTTP_SCALE_WORKER_MASK;
    up = 0;

    for (w = 0; w < ngx_http_scale_view.nworkers; w++) {
        word = s->value[w];

        value = ((word >> NGX_HTTP_SCALE_WORKER_SHIFT) == generation)
                ? (word & NGX_HTTP_SCALE_WORKER_MASK) : 0;

        min = ngx_min(min, value);

        if (value) {
            up++;
        }
    }

    if (s->type == NGX_HTTP_SCALE_WORKER_COUNT) {
        return (ngx_atomic_int_t) up;
    }

    return (ngx_atomic_int_t) (ngx_http_scale_view.nworkers ? min : 0);
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
