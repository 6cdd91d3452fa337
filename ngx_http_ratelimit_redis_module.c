
/*
 * ratelimit_redis: sliding-window request limits shared through Redis.
 *
 * Every zone that applies to a request is checked by one script in one
 * round trip; the request is counted only if all of them admit it.  Once
 * Redis rejects a key, this worker rejects that key locally until the
 * moment Redis could admit it again (the deny cache), so a flood against
 * one key does not become a flood against Redis.
 */


#include <ngx_sha1.h>
#include "ngx_http_ratelimit_redis.h"
#include "ngx_http_ratelimit_redis_batch.h"
#include "ngx_http_ratelimit_redis_cache.h"
#include "ngx_http_scale_redis.h"
#include "ngx_http_scale_metrics.h"


#define NGX_HTTP_RATELIMIT_REDIS_HEADERS_OFF       0
#define NGX_HTTP_RATELIMIT_REDIS_HEADERS_LEGACY    1
#define NGX_HTTP_RATELIMIT_REDIS_HEADERS_DRAFT     2

/* longer keys are replaced by their SHA-1: Redis memory stays bounded */
#define NGX_HTTP_RATELIMIT_REDIS_KEY_MAX           256

/* 2^53: the script's counts are Lua numbers (doubles), exact up to here */
#define NGX_HTTP_RATELIMIT_REDIS_RATE_MAX          ((uint64_t) 1 << 53)


typedef struct {
    ngx_array_t                      zones;        /* of zone_t * */
    ngx_uint_t                       enabled;
} ngx_http_ratelimit_redis_main_conf_t;


typedef struct {
    ngx_array_t                     *limits;       /* of limit_t */
    ngx_uint_t                       status_code;
    ngx_flag_t                       fail_open;
    ngx_uint_t                       headers;
    ngx_uint_t                       log_level;
} ngx_http_ratelimit_redis_loc_conf_t;


static ngx_int_t ngx_http_ratelimit_redis_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ratelimit_redis_start(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_loc_conf_t *lrcf);
static ngx_int_t ngx_http_ratelimit_redis_key(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_zone_t *zone, ngx_str_t *key);
static ngx_int_t ngx_http_ratelimit_redis_verdict(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx,
    ngx_http_ratelimit_redis_verdict_t *v);
static void ngx_http_ratelimit_redis_decide(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx, ngx_int_t rc,
    ngx_http_ratelimit_redis_verdict_t *v);
static ngx_int_t ngx_http_ratelimit_redis_failed(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx);
static ngx_int_t ngx_http_ratelimit_redis_reject(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_loc_conf_t *lrcf,
    ngx_http_ratelimit_redis_zone_t *zone, ngx_msec_t retry);
static ngx_int_t ngx_http_ratelimit_redis_headers(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_loc_conf_t *lrcf,
    ngx_http_ratelimit_redis_zone_t *zone, ngx_uint_t remaining,
    ngx_msec_t reset);
static ngx_int_t ngx_http_ratelimit_redis_status_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_ratelimit_redis_add_variables(ngx_conf_t *cf);
static void *ngx_http_ratelimit_redis_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ratelimit_redis_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ratelimit_redis_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_ratelimit_redis_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ratelimit_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_ratelimit_redis_add_series(ngx_conf_t *cf,
    ngx_http_ratelimit_redis_zone_t *zone);
static ngx_int_t ngx_http_ratelimit_redis_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_ratelimit_redis_init_process(ngx_cycle_t *cycle);
static void ngx_http_ratelimit_redis_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_ratelimit_redis_headers_values[] = {
    { ngx_string("off"), NGX_HTTP_RATELIMIT_REDIS_HEADERS_OFF },
    { ngx_string("legacy"), NGX_HTTP_RATELIMIT_REDIS_HEADERS_LEGACY },
    { ngx_string("draft"), NGX_HTTP_RATELIMIT_REDIS_HEADERS_DRAFT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_ratelimit_redis_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_ratelimit_redis_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_command_t  ngx_http_ratelimit_redis_commands[] = {

    { ngx_string("ratelimit_redis_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_ratelimit_redis_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratelimit_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_ratelimit_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratelimit_redis_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_redis_loc_conf_t, status_code),
      &ngx_http_ratelimit_redis_status_bounds },

    { ngx_string("ratelimit_redis_fail_open"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_redis_loc_conf_t, fail_open),
      NULL },

    { ngx_string("ratelimit_redis_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_redis_loc_conf_t, headers),
      &ngx_http_ratelimit_redis_headers_values },

    { ngx_string("ratelimit_redis_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_redis_loc_conf_t, log_level),
      &ngx_http_ratelimit_redis_log_levels },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ratelimit_redis_module_ctx = {
    ngx_http_ratelimit_redis_add_variables,    /* preconfiguration */
    ngx_http_ratelimit_redis_init,             /* postconfiguration */

    ngx_http_ratelimit_redis_create_main_conf, /* create main configuration */
    NULL,                                      /* init main configuration */

    NULL,                                      /* create server configuration */
    NULL,                                      /* merge server configuration */

    ngx_http_ratelimit_redis_create_loc_conf,  /* create location configuration */
    ngx_http_ratelimit_redis_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_ratelimit_redis_module = {
    NGX_MODULE_V1,
    &ngx_http_ratelimit_redis_module_ctx,      /* module context */
    ngx_http_ratelimit_redis_commands,         /* module directives */
    NGX_HTTP_MODULE,                           /* module type */
    NULL,                                      /* init master */
    NULL,                                      /* init module */
    ngx_http_ratelimit_redis_init_process,     /* init process */
    NULL,                                      /* init thread */
    NULL,                                      /* exit thread */
    ngx_http_ratelimit_redis_exit_process,     /* exit process */
    NULL,                                      /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_ratelimit_redis_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("REJECTED"),
    ngx_string("REJECTED_DRY_RUN"),
    ngx_string("FAILED_OPEN"),
    ngx_string("FAILED_CLOSED")
};


static ngx_str_t  ngx_http_ratelimit_redis_results[] = {
    ngx_null_string,
    ngx_string("passed"),
    ngx_string("rejected"),
    ngx_string("rejected_dry_run"),
    ngx_string("failed_open"),
    ngx_string("failed_closed")
};


static ngx_str_t  ngx_http_ratelimit_redis_family =
    ngx_string("nginx_ratelimit_redis_requests_total");
static ngx_str_t  ngx_http_ratelimit_redis_help =
    ngx_string("Requests checked by ratelimit_redis, by zone and result.");


static ngx_int_t
ngx_http_ratelimit_redis_handler(ngx_http_request_t *r)
{
    ngx_http_ratelimit_redis_ctx_t       *ctx;
    ngx_http_ratelimit_redis_loc_conf_t  *lrcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_scale_get_ctx(r, &ngx_http_ratelimit_redis_module);

    if (ctx) {
        if (ctx->waiting) {
            return NGX_AGAIN;
        }

        if (!ctx->done) {
            /* the verdict that the reply brought, returned once */
            ctx->done = 1;
            return ctx->rc;
        }

        /* after an internal redirect: limited once already */
        return NGX_DECLINED;
    }

    lrcf = ngx_http_get_module_loc_conf(r, ngx_http_ratelimit_redis_module);

    if (lrcf->limits == NULL) {
        return NGX_DECLINED;
    }

    return ngx_http_ratelimit_redis_start(r, lrcf);
}


static ngx_int_t
ngx_http_ratelimit_redis_start(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_loc_conf_t *lrcf)
{
    ngx_int_t                          rc, skipped;
    ngx_str_t                          key;
    ngx_uint_t                         i, n;
    ngx_msec_t                         retry;
    ngx_http_ratelimit_redis_ctx_t    *ctx;
    ngx_http_ratelimit_redis_zone_t   *zone;
    ngx_http_ratelimit_redis_limit_t  *limits;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ratelimit_redis_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    limits = lrcf->limits->elts;
    n = 0;

    for (i = 0; i < lrcf->limits->nelts; i++) {
        zone = limits[i].zone;

        if (ngx_http_ratelimit_redis_key(r, zone, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            continue;
        }

        if (!limits[i].dry_run) {
            retry = ngx_http_ratelimit_redis_cache_lookup(zone->index, &key);

            if (retry) {
                /* Redis said no a moment ago and would say it again */
                ngx_http_scale_counter_add(
                        zone->slots[NGX_HTTP_RATELIMIT_REDIS_REJECTED], 1);

                /* a flood must not become a flood of the error log */
                skipped = ngx_http_scale_log_burst(&zone->cached_log);

                if (skipped != NGX_DECLINED) {
                    ngx_log_error(lrcf->log_level, r->connection->log, 0,
                                  "limiting requests by zone \"%V\", "
                                  "retry after %M ms (cached, %i more "
                                  "rejected from the cache since the last "
                                  "line)", &zone->name, retry, skipped);
                }

                ctx->status = NGX_HTTP_RATELIMIT_REDIS_REJECTED;
                ctx->done = 1;

                if (ngx_http_scale_set_ctx(r, ctx,
                                           &ngx_http_ratelimit_redis_module)
                    != NGX_OK)
                {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                return ngx_http_ratelimit_redis_reject(r, lrcf, zone, retry);
            }
        }

        ctx->limits[n] = &limits[i];
        ctx->keys[n] = key;
        n++;
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    if (ngx_http_scale_set_ctx(r, ctx, &ngx_http_ratelimit_redis_module)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->nzones = n;
    ctx->sent = ngx_current_msec;

    rc = ngx_http_ratelimit_redis_batch_add(r, ctx);

    if (rc == NGX_AGAIN) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ratelimit_redis: %ui zones, waiting for zone \"%V\"'s"
                       " batch", n, &ctx->limits[0]->zone->name);
        ctx->waiting = 1;
        return NGX_AGAIN;
    }

    ctx->done = 1;

    return ngx_http_ratelimit_redis_failed(r, ctx);
}


/*
 * The key as the script gets it: the value as it is (binary-safe), or for
 * a long one "sha1:" and its hex SHA-1; it names a field of the zone's
 * hashes, "rl:{ZONE}:GENERATION_START", whose names the script builds
 */

static ngx_int_t
ngx_http_ratelimit_redis_key(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_zone_t *zone, ngx_str_t *key)
{
    u_char      *p, digest[20];
    ngx_str_t    value;
    ngx_sha1_t   sha1;

    if (ngx_http_complex_value(r, &zone->key, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (value.len <= NGX_HTTP_RATELIMIT_REDIS_KEY_MAX) {
        /* the value lives as long as the request */
        *key = value;
        return NGX_OK;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, value.data, value.len);
    ngx_sha1_final(digest, &sha1);

    key->data = ngx_pnalloc(r->pool, sizeof("sha1:") - 1 + 40);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, "sha1:", sizeof("sha1:") - 1);
    p = ngx_hex_dump(p, digest, 20);
    key->len = p - key->data;

    return NGX_OK;
}


/* Redis' answer for one request of a batch, or why there is none */

static void
ngx_http_ratelimit_redis_decide(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx, ngx_int_t rc,
    ngx_http_ratelimit_redis_verdict_t *v)
{
    ctx->waiting = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ratelimit_redis: batch answered, rc %i, admitted %ui",
                   rc, v ? v[0].admitted : 0);

    if (rc != NGX_HTTP_SCALE_REDIS_OK) {
        ctx->rc = ngx_http_ratelimit_redis_failed(r, ctx);
        return;
    }

    ctx->rc = ngx_http_ratelimit_redis_verdict(r, ctx, v);
}


static ngx_int_t
ngx_http_ratelimit_redis_verdict(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx, ngx_http_ratelimit_redis_verdict_t *v)
{
    ngx_uint_t                            i, result, least, rejected;
    ngx_http_ratelimit_redis_zone_t      *zone;
    ngx_http_ratelimit_redis_loc_conf_t  *lrcf;

    lrcf = ngx_http_get_module_loc_conf(r, ngx_http_ratelimit_redis_module);

    ctx->status = NGX_HTTP_RATELIMIT_REDIS_PASSED;
    rejected = ctx->nzones;
    least = 0;

    for (i = 0; i < ctx->nzones; i++) {
        zone = ctx->limits[i]->zone;

        /* a sliding window never asks to wait longer than two windows */
        v[i].retry = ngx_min(v[i].retry, 2 * zone->window);
        v[i].reset = ngx_min(v[i].reset, zone->window);

        if (v[i].admitted) {
            result = NGX_HTTP_RATELIMIT_REDIS_PASSED;

        } else if (ctx->limits[i]->dry_run) {
            result = NGX_HTTP_RATELIMIT_REDIS_REJECTED_DRY_RUN;

            ngx_log_error(lrcf->log_level, r->connection->log, 0,
                          "limiting requests, dry run, by zone \"%V\"",
                          &zone->name);

            if (ctx->status == NGX_HTTP_RATELIMIT_REDIS_PASSED) {
                ctx->status = result;
            }

        } else {
            result = NGX_HTTP_RATELIMIT_REDIS_REJECTED;

            ngx_log_error(lrcf->log_level, r->connection->log, 0,
                          "limiting requests by zone \"%V\", "
                          "retry after %M ms", &zone->name, v[i].retry);

            ngx_http_ratelimit_redis_cache_insert(zone->index, &ctx->keys[i],
                                                  ctx->sent + v[i].retry);

            ctx->status = result;

            if (rejected == ctx->nzones || v[i].retry > v[rejected].retry) {
                rejected = i;
            }
        }

        ngx_http_scale_counter_add(zone->slots[result], 1);

        if (v[i].remaining < v[least].remaining) {
            least = i;
        }
    }

    if (rejected < ctx->nzones) {
        return ngx_http_ratelimit_redis_reject(r, lrcf,
                                               ctx->limits[rejected]->zone,
                                               v[rejected].retry);
    }

    if (ngx_http_ratelimit_redis_headers(r, lrcf, ctx->limits[least]->zone,
                                         v[least].remaining, v[least].reset)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_ratelimit_redis_failed(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_ctx_t *ctx)
{
    ngx_uint_t                            i, result;
    ngx_http_ratelimit_redis_loc_conf_t  *lrcf;

    lrcf = ngx_http_get_module_loc_conf(r, ngx_http_ratelimit_redis_module);

    result = lrcf->fail_open ? NGX_HTTP_RATELIMIT_REDIS_FAILED_OPEN
                             : NGX_HTTP_RATELIMIT_REDIS_FAILED_CLOSED;

    ctx->status = result;

    for (i = 0; i < ctx->nzones; i++) {
        ngx_http_scale_counter_add(ctx->limits[i]->zone->slots[result], 1);
    }

    return lrcf->fail_open ? NGX_DECLINED : NGX_HTTP_SERVICE_UNAVAILABLE;
}


static ngx_int_t
ngx_http_ratelimit_redis_reject(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_loc_conf_t *lrcf,
    ngx_http_ratelimit_redis_zone_t *zone, ngx_msec_t retry)
{
    u_char     *p;
    ngx_str_t   name;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&name, "Retry-After");

    if (ngx_http_scale_add_header(r, &name, p,
                                  ngx_sprintf(p, "%M", (retry + 999) / 1000) - p)
        != NGX_OK
        || ngx_http_ratelimit_redis_headers(r, lrcf, zone, 0, retry) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return lrcf->status_code;
}


/* reset: ms until the quota grows again */

static ngx_int_t
ngx_http_ratelimit_redis_headers(ngx_http_request_t *r,
    ngx_http_ratelimit_redis_loc_conf_t *lrcf,
    ngx_http_ratelimit_redis_zone_t *zone, ngx_uint_t remaining,
    ngx_msec_t reset)
{
    u_char      *p, *last;
    ngx_str_t    name;
    ngx_msec_t   seconds;

    static ngx_str_t  limit_name = ngx_string("X-RateLimit-Limit");
    static ngx_str_t  remaining_name = ngx_string("X-RateLimit-Remaining");
    static ngx_str_t  reset_name = ngx_string("X-RateLimit-Reset");

    if (lrcf->headers == NGX_HTTP_RATELIMIT_REDIS_HEADERS_OFF) {
        return NGX_OK;
    }

    seconds = (reset + 999) / 1000;

    p = ngx_pnalloc(r->pool, 2 * zone->name.len + 4 * NGX_INT_T_LEN + 32);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (lrcf->headers == NGX_HTTP_RATELIMIT_REDIS_HEADERS_LEGACY) {
        last = ngx_sprintf(p, "%ui", zone->limit);
        if (ngx_http_scale_add_header(r, &limit_name, p, last - p)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = last;
        last = ngx_sprintf(p, "%ui", remaining);
        if (ngx_http_scale_add_header(r, &remaining_name, p, last - p)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = last;
        last = ngx_sprintf(p, "%M", seconds);

        return ngx_http_scale_add_header(r, &reset_name, p, last - p);
    }

    /* draft-ietf-httpapi-ratelimit-headers: structured fields */

    ngx_str_set(&name, "RateLimit-Policy");
    last = ngx_sprintf(p, "\"%V\";q=%ui;w=%M", &zone->name, zone->limit,
                       zone->window / 1000);
    if (ngx_http_scale_add_header(r, &name, p, last - p) != NGX_OK) {
        return NGX_ERROR;
    }

    p = last;
    ngx_str_set(&name, "RateLimit");
    last = ngx_sprintf(p, "\"%V\";r=%ui;t=%M", &zone->name, remaining,
                       seconds);

    return ngx_http_scale_add_header(r, &name, p, last - p);
}


static ngx_int_t
ngx_http_ratelimit_redis_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ratelimit_redis_ctx_t  *ctx;

    ctx = ngx_http_scale_get_ctx(r->main, &ngx_http_ratelimit_redis_module);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_ratelimit_redis_status_names[ctx->status].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = ngx_http_ratelimit_redis_status_names[ctx->status].data;

    return NGX_OK;
}


/* configuration */

static ngx_int_t
ngx_http_ratelimit_redis_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  name = ngx_string("ratelimit_redis_status");

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_ratelimit_redis_status_variable;

    return NGX_OK;
}


static void *
ngx_http_ratelimit_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ratelimit_redis_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratelimit_redis_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->zones, cf->pool, 4,
                       sizeof(ngx_http_ratelimit_redis_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return rmcf;
}


static void *
ngx_http_ratelimit_redis_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ratelimit_redis_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratelimit_redis_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->limits = NULL;
     */

    conf->status_code = NGX_CONF_UNSET_UINT;
    conf->fail_open = NGX_CONF_UNSET;
    conf->headers = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_ratelimit_redis_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_ratelimit_redis_loc_conf_t *prev = parent;
    ngx_http_ratelimit_redis_loc_conf_t *conf = child;

    ngx_uint_t                         i;
    ngx_http_ratelimit_redis_limit_t  *limits;

    if (conf->limits == NULL) {
        conf->limits = prev->limits;
    }

    ngx_conf_merge_uint_value(conf->status_code, prev->status_code,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_value(conf->fail_open, prev->fail_open, 1);
    ngx_conf_merge_uint_value(conf->headers, prev->headers,
                              NGX_HTTP_RATELIMIT_REDIS_HEADERS_OFF);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_ERR);

    if (conf->limits == NULL) {
        return NGX_CONF_OK;
    }

    /* one round trip checks all zones: they must share a pool */

    limits = conf->limits->elts;

    for (i = 1; i < conf->limits->nelts; i++) {
        if (limits[i].zone->pool != limits[0].zone->pool) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ratelimit_redis zones \"%V\" and \"%V\" "
                               "use different redis pools",
                               &limits[0].zone->name, &limits[i].zone->name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* ratelimit_redis_zone KEY zone=NAME rate=N r/s|r/m|r/h pool=POOL */

static char *
ngx_http_ratelimit_redis_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratelimit_redis_main_conf_t  *rmcf = conf;

    u_char                            *p;
    size_t                             len;
    ngx_int_t                          rate;
    ngx_str_t                         *value, s, name, pool;
    ngx_uint_t                         i;
    ngx_msec_t                         window;
    ngx_http_ratelimit_redis_zone_t   *zone, **zp;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratelimit_redis_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &zone->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&name);
    ngx_str_null(&pool);
    rate = 0;
    window = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            if (name.data) {
                goto duplicate;
            }

            name.data = value[i].data + 5;
            name.len = value[i].len - 5;

            for (p = name.data; p < name.data + name.len; p++) {
                if (*p == '{' || *p == '}' || *p == ':' || *p == '"'
                    || *p <= ' ')
                {
                    break;
                }
            }

            if (name.len == 0 || p != name.data + name.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone name \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            if (window) {
                goto duplicate;
            }

            len = value[i].len;
            p = value[i].data + len - 3;

            if (len > 8 && ngx_strncmp(p, "r/s", 3) == 0) {
                window = 1000;

            } else if (len > 8 && ngx_strncmp(p, "r/m", 3) == 0) {
                window = 60 * 1000;

            } else if (len > 8 && ngx_strncmp(p, "r/h", 3) == 0) {
                window = 60 * 60 * 1000;

            } else {
                goto invalid_rate;
            }

            rate = ngx_atoi(value[i].data + 5, len - 8);

            if (rate == NGX_ERROR) {
                for (p = value[i].data + 5; p < value[i].data + len - 3; p++) {
                    if (*p < '0' || *p > '9') {
                        goto invalid_rate;
                    }
                }

                /* all digits: too large for ngx_int_t */
                goto too_large;
            }

            if (rate == 0) {
                goto invalid_rate;
            }

            /* the script counts in Lua numbers, doubles: exact up to 2^53 */

            if ((uint64_t) rate > NGX_HTTP_RATELIMIT_REDIS_RATE_MAX) {
                goto too_large;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            if (pool.data) {
                goto duplicate;
            }

            pool.data = value[i].data + 5;
            pool.len = value[i].len - 5;

            if (pool.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid pool \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0 || rate == 0 || pool.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\", \"rate\" and \"pool\" "
                           "parameters", &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* an empty key is not limited: a constant one would limit nothing */

    if (zone->key.lengths == NULL && zone->key.value.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty key in ratelimit_redis_zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    zp = rmcf->zones.elts;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        if (zp[i]->name.len == name.len
            && ngx_strncmp(zp[i]->name.data, name.data, name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate zone \"%V\"", &name);
            return NGX_CONF_ERROR;
        }
    }

    zone->name = name;
    zone->limit = rate;
    zone->window = window;
    zone->index = rmcf->zones.nelts;

    zone->pool = ngx_http_scale_redis_pool_get(cf, &pool);
    if (zone->pool == NULL) {
        return NGX_CONF_ERROR;
    }

    s.data = ngx_pnalloc(cf->pool, 2 * NGX_INT_T_LEN);
    if (s.data == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->limit_arg.data = s.data;
    zone->limit_arg.len = ngx_sprintf(s.data, "%ui", zone->limit) - s.data;
    zone->window_arg.data = s.data + zone->limit_arg.len;
    zone->window_arg.len = ngx_sprintf(zone->window_arg.data, "%M", window)
                           - zone->window_arg.data;

    /* the hash tag keeps a zone's windows in one slot */

    zone->prefix.len = sizeof("rl:{}:") - 1 + name.len;
    zone->prefix.data = ngx_pnalloc(cf->pool, zone->prefix.len);
    if (zone->prefix.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(zone->prefix.data, "rl:{%V}:", &name);

    zp = ngx_array_push(&rmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = zone;

    if (ngx_http_ratelimit_redis_add_series(cf, zone) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"%V\"",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;

invalid_rate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid rate \"%V\"", &value[i]);
    return NGX_CONF_ERROR;

too_large:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid rate \"%V\", at most %uL%*s",
                       &value[i], NGX_HTTP_RATELIMIT_REDIS_RATE_MAX,
                       (size_t) 3, value[i].data + value[i].len - 3);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_ratelimit_redis_add_series(ngx_conf_t *cf,
    ngx_http_ratelimit_redis_zone_t *zone)
{
    ngx_int_t   slot;
    ngx_str_t   name, labels;
    ngx_uint_t  i;

    if (ngx_http_scale_label_escape(cf->pool, &zone->name, &name) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = NGX_HTTP_RATELIMIT_REDIS_PASSED;
         i < NGX_HTTP_RATELIMIT_REDIS_NRESULTS;
         i++)
    {
        labels.data = ngx_pnalloc(cf->pool, name.len + 64);
        if (labels.data == NULL) {
            return NGX_ERROR;
        }

        labels.len = ngx_sprintf(labels.data, "zone=\"%V\",result=\"%V\"",
                                 &name, &ngx_http_ratelimit_redis_results[i])
                     - labels.data;

        slot = ngx_http_scale_series_add(cf, &ngx_http_ratelimit_redis_family,
                                         &ngx_http_ratelimit_redis_help,
                                         NGX_HTTP_SCALE_COUNTER, &labels);
        if (slot == NGX_ERROR) {
            return NGX_ERROR;
        }

        zone->slots[i] = slot;
    }

    return NGX_OK;
}


/* ratelimit_redis zone=NAME [dry_run] */

static char *
ngx_http_ratelimit_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratelimit_redis_loc_conf_t  *lrcf = conf;

    ngx_str_t                             *value, name;
    ngx_uint_t                             i, dry_run;
    ngx_http_ratelimit_redis_zone_t      **zp, *zone;
    ngx_http_ratelimit_redis_limit_t      *limit, *limits;
    ngx_http_ratelimit_redis_main_conf_t  *rmcf;

    value = cf->args->elts;

    ngx_str_null(&name);
    dry_run = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            if (name.data) {
                goto duplicate;
            }

            name.data = value[i].data + 5;
            name.len = value[i].len - 5;
            continue;
        }

        if (ngx_strcmp(value[i].data, "dry_run") == 0) {
            if (dry_run) {
                goto duplicate;
            }

            dry_run = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter", &cmd->name);
        return NGX_CONF_ERROR;
    }

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_ratelimit_redis_module);

    zone = NULL;
    zp = rmcf->zones.elts;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        if (zp[i]->name.len == name.len
            && ngx_strncmp(zp[i]->name.data, name.data, name.len) == 0)
        {
            zone = zp[i];
            break;
        }
    }

    if (zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown ratelimit_redis zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    if (lrcf->limits == NULL) {
        lrcf->limits = ngx_array_create(cf->pool, 2,
                                     sizeof(ngx_http_ratelimit_redis_limit_t));
        if (lrcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    limits = lrcf->limits->elts;

    for (i = 0; i < lrcf->limits->nelts; i++) {
        if (limits[i].zone == zone) {
            return "is duplicate";
        }
    }

    if (lrcf->limits->nelts == NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many ratelimit_redis zones, at most %d",
                           NGX_HTTP_RATELIMIT_REDIS_ZONES_MAX);
        return NGX_CONF_ERROR;
    }

    limit = ngx_array_push(lrcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    limit->zone = zone;
    limit->dry_run = dry_run;

    /* a zone applied somewhere: its pool is in use and runs the script */

    ngx_http_scale_redis_pool_use(zone->pool);

    if (ngx_http_ratelimit_redis_batch_script(cf, zone->pool) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    rmcf->enabled = 1;

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"%V\"",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_ratelimit_redis_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt                   *h;
    ngx_http_core_main_conf_t             *cmcf;
    ngx_http_ratelimit_redis_main_conf_t  *rmcf;

    if (ngx_http_scale_family_add(cf, &ngx_http_ratelimit_redis_family,
                                  &ngx_http_ratelimit_redis_help,
                                  NGX_HTTP_SCALE_COUNTER)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_ratelimit_redis_module);
    if (!rmcf->enabled) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_ratelimit_redis_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratelimit_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_ratelimit_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_ratelimit_redis_module);
    if (rmcf == NULL || !rmcf->enabled) {
        return NGX_OK;
    }

    if (ngx_http_ratelimit_redis_cache_init(cycle, rmcf->zones.nelts)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_ratelimit_redis_batch_init(cycle, &rmcf->zones,
                                               ngx_http_ratelimit_redis_decide);
}


static void
ngx_http_ratelimit_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_ratelimit_redis_batch_exit();
    ngx_http_ratelimit_redis_cache_free();
}
