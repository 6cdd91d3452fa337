
/*
 * nginx-scale core: redis_pool blocks and the shared counters zone.
 * The Redis client lives in src/ngx_http_scale_redis_*.c, the counters in
 * src/ngx_http_scale_metrics.c; this file ties them to nginx's life cycle.
 */


#include "ngx_http_scale_redis_pool.h"
#include "ngx_http_scale_redis_worker.h"
#include "ngx_http_scale_metrics.h"
#include "ngx_http_scale_redis.h"


typedef struct {
    ngx_http_request_t              *request;
    ngx_uint_t                       index;        /* module's ctx_index */
    void                            *ctx;
} ngx_http_scale_ctx_link_t;


static void ngx_http_scale_ctx_marker(void *data);
static void *ngx_http_scale_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_scale_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_scale_init_process(ngx_cycle_t *cycle);
static void ngx_http_scale_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_scale_commands[] = {

    { ngx_string("redis_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_scale_redis_pool_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_scale_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_scale_postconfiguration,      /* postconfiguration */

    ngx_http_scale_create_main_conf,       /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_scale_module = {
    NGX_MODULE_V1,
    &ngx_http_scale_module_ctx,            /* module context */
    ngx_http_scale_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_scale_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_scale_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_scale_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_scale_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_scale_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&smcf->redis_pools, cf->pool, 2,
                       sizeof(ngx_http_scale_redis_pool_t *))
        != NGX_OK)
    {
        return NULL;
    }

    smcf->metrics = ngx_http_scale_metrics_create_conf(cf);
    if (smcf->metrics == NULL) {
        return NULL;
    }

    return smcf;
}


static ngx_int_t
ngx_http_scale_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_scale_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_scale_module);

    if (ngx_http_scale_redis_init_conf(cf, &smcf->redis_pools) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_scale_metrics_add_zone(cf, smcf->metrics);
}


static ngx_int_t
ngx_http_scale_init_process(ngx_cycle_t *cycle)
{
    ngx_http_scale_main_conf_t  *smcf;

    ngx_http_scale_metrics_init_process(cycle);

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_scale_module);
    if (smcf == NULL) {
        return NGX_OK;
    }

    return ngx_http_scale_redis_init_process(cycle, &smcf->redis_pools);
}


static void
ngx_http_scale_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_scale_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_scale_module);
    if (smcf == NULL) {
        return;
    }

    ngx_http_scale_redis_exit_process(cycle, &smcf->redis_pools);
}


/* request helpers for the modules */

ngx_int_t
ngx_http_scale_set_ctx(ngx_http_request_t *r, void *ctx, ngx_module_t *module)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_scale_ctx_link_t  *link;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_scale_ctx_link_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    link = cln->data;
    link->request = r;
    link->index = module->ctx_index;
    link->ctx = ctx;

    cln->handler = ngx_http_scale_ctx_marker;

    r->ctx[module->ctx_index] = ctx;

    return NGX_OK;
}


void *
ngx_http_scale_get_ctx(ngx_http_request_t *r, ngx_module_t *module)
{
    void                       *ctx;
    ngx_pool_cleanup_t         *cln;
    ngx_http_scale_ctx_link_t  *link;

    ctx = r->ctx[module->ctx_index];

    if (ctx || !r->internal) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_scale_ctx_marker) {
            continue;
        }

        link = cln->data;

        if (link->request == r && link->index == module->ctx_index) {
            r->ctx[module->ctx_index] = link->ctx;
            return link->ctx;
        }
    }

    return NULL;
}


static void
ngx_http_scale_ctx_marker(void *data)
{
    /* nothing to free: the entry only finds the ctx again */
}


ngx_int_t
ngx_http_scale_add_header(ngx_http_request_t *r, ngx_str_t *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value.data = value;
    h->value.len = len;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


void
ngx_http_scale_resume(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


/* the first of a burst, then at most one a second */

ngx_int_t
ngx_http_scale_log_burst(ngx_http_scale_log_burst_t *burst)
{
    ngx_int_t  skipped;

    /* 0: nothing logged yet, whatever the clock (32-bit ngx_msec_t) says */

    if (burst->quiet_until != 0
        && (ngx_msec_int_t) (ngx_current_msec - burst->quiet_until) < 0)
    {
        burst->suppressed++;
        return NGX_DECLINED;
    }

    burst->quiet_until = ngx_current_msec + 1000;

    if (burst->quiet_until == 0) {
        burst->quiet_until = 1;
    }

    skipped = burst->suppressed;
    burst->suppressed = 0;

    return skipped;
}
