
/*
 * cache_redis: one response cache in Redis for the whole fleet.
 *
 * PRECONTENT: the key's entry is looked up with one GET (a second one for
 * a Vary variant); a fresh entry is answered here through the normal
 * output filters, anything else goes on to the content handler and the
 * store filter (src/ngx_http_cache_redis_store.c) copies the answer.
 * On a miss the first request of the fleet takes a short lock (SET NX
 * PX); the others poll for the entry on a timer, at most one command per
 * 50 ms each, until it appears or cache_redis_lock_timeout has passed.
 *
 * Redis keys: PREFIX KEY (the entry, or the Vary record of its variants
 * PREFIX KEY "#v" NONCE ":" MD5), PREFIX KEY "#lock", PREFIX "tag:" TAG
 * (a set of entry keys).
 */


#include "ngx_http_cache_redis.h"
#include "ngx_http_cache_redis_entry.h"
#include "ngx_http_cache_redis_rules.h"
#include "ngx_http_cache_redis_hit.h"
#include "ngx_http_cache_redis_store.h"
#include "ngx_http_scale_redis.h"
#include "ngx_http_scale_metrics.h"


#define NGX_HTTP_CACHE_REDIS_STALE_OFF     0x0001


static ngx_int_t ngx_http_cache_redis_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_redis_start(ngx_http_request_t *r,
    ngx_http_cache_redis_loc_conf_t *conf);
static ngx_http_cache_redis_ctx_t *ngx_http_cache_redis_create_ctx(
    ngx_http_request_t *r, ngx_http_cache_redis_loc_conf_t *conf);
static ngx_int_t ngx_http_cache_redis_key(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static ngx_int_t ngx_http_cache_redis_send(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t state);
static void ngx_http_cache_redis_reply(ngx_http_request_t *r, void *data,
    ngx_int_t rc, redisReply *reply);
static void ngx_http_cache_redis_found(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, u_char *data, size_t len);
static void ngx_http_cache_redis_miss(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static void ngx_http_cache_redis_locked(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, redisReply *reply);
static void ngx_http_cache_redis_wait(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static void ngx_http_cache_redis_wake(ngx_event_t *ev);
static void ngx_http_cache_redis_pass(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status, ngx_uint_t store);
static void ngx_http_cache_redis_serve(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status);
static void ngx_http_cache_redis_error(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, const char *what);
static void ngx_http_cache_redis_count(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_cache_redis_purge_start(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static ngx_int_t ngx_http_cache_redis_purge_send(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static void ngx_http_cache_redis_cleanup(void *data);
static ngx_int_t ngx_http_cache_redis_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_cache_redis_age_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_cache_redis_add_variables(ngx_conf_t *cf);
static void *ngx_http_cache_redis_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_cache_redis_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_cache_redis_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_cache_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_cache_redis_valid_slot(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_cache_redis_purge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_cache_redis_add_series(ngx_conf_t *cf,
    ngx_http_cache_redis_main_conf_t *cmcf);
static ngx_int_t ngx_http_cache_redis_init(ngx_conf_t *cf);


static ngx_conf_bitmask_t  ngx_http_cache_redis_methods_mask[] = {
    { ngx_string("GET"), NGX_HTTP_GET },
    { ngx_string("HEAD"), NGX_HTTP_HEAD },
    { ngx_null_string, 0 }
};


static ngx_conf_bitmask_t  ngx_http_cache_redis_use_stale_mask[] = {
    { ngx_string("off"), NGX_HTTP_CACHE_REDIS_STALE_OFF },
    { ngx_string("updating"), NGX_HTTP_CACHE_REDIS_STALE_UPDATING },
    { ngx_string("error"), NGX_HTTP_CACHE_REDIS_STALE_ERROR },
    { ngx_string("timeout"), NGX_HTTP_CACHE_REDIS_STALE_TIMEOUT },
    { ngx_string("http_500"), NGX_HTTP_CACHE_REDIS_STALE_500 },
    { ngx_string("http_502"), NGX_HTTP_CACHE_REDIS_STALE_502 },
    { ngx_string("http_503"), NGX_HTTP_CACHE_REDIS_STALE_503 },
    { ngx_string("http_504"), NGX_HTTP_CACHE_REDIS_STALE_504 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_cache_redis_commands[] = {

    { ngx_string("cache_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_cache_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_redis_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, key),
      NULL },

    { ngx_string("cache_redis_key_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, prefix),
      NULL },

    { ngx_string("cache_redis_methods"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, methods),
      &ngx_http_cache_redis_methods_mask },

    { ngx_string("cache_redis_valid"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_cache_redis_valid_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, valid),
      NULL },

    { ngx_string("cache_redis_bypass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, bypass),
      NULL },

    { ngx_string("cache_redis_no_store"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, no_store),
      NULL },

    { ngx_string("cache_redis_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, max_size),
      NULL },

    { ngx_string("cache_redis_lock"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, lock),
      NULL },

    { ngx_string("cache_redis_lock_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, lock_timeout),
      NULL },

    { ngx_string("cache_redis_use_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, use_stale),
      &ngx_http_cache_redis_use_stale_mask },

    { ngx_string("cache_redis_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, stale),
      NULL },

    { ngx_string("cache_redis_revalidate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, revalidate),
      NULL },

    { ngx_string("cache_redis_tags"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, tags),
      NULL },

    { ngx_string("cache_redis_purge"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_cache_redis_purge,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_redis_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_cache_redis_loc_conf_t, header),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_cache_redis_module_ctx = {
    ngx_http_cache_redis_add_variables,    /* preconfiguration */
    ngx_http_cache_redis_init,             /* postconfiguration */

    ngx_http_cache_redis_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_cache_redis_create_loc_conf,  /* create location configuration */
    ngx_http_cache_redis_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_cache_redis_module = {
    NGX_MODULE_V1,
    &ngx_http_cache_redis_module_ctx,      /* module context */
    ngx_http_cache_redis_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * KEYS: entry, lock.  ARGV: token, lock ms, the head of the entry seen
 * ('' if none).  While the lock is held: 0; while the last answer was not
 * storable ("!pass"): 2.  Else an entry other than the one seen, or the
 * lock for this request (1), in one step: a fetch that stored between our
 * GET and this finds its entry, not a free lock.
 */

static ngx_http_scale_redis_script_t  ngx_http_cache_redis_lock_script = {
    ngx_string(
"local l = redis.call('GET', KEYS[2])\n"
"if l == '!pass' then\n"
"  return 2\n"
"end\n"
"if l then\n"
"  return 0\n"
"end\n"
"local v = redis.call('GET', KEYS[1])\n"
"if v and (ARGV[3] == '' or string.sub(v, 1, #ARGV[3]) ~= ARGV[3]) then\n"
"  return v\n"
"end\n"
"if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
"  return 1\n"
"end\n"
"return 0\n"),
    { 0 }
};


/* KEYS: tag sets.  Every entry of those tags, and the sets, deleted */

static ngx_http_scale_redis_script_t  ngx_http_cache_redis_purge_script = {
    ngx_string(
"local n = 0\n"
"for i = 1, #KEYS do\n"
"  local m = redis.call('SMEMBERS', KEYS[i])\n"
"  for j = 1, #m, 500 do\n"
"    n = n + redis.call('DEL', unpack(m, j, math.min(j + 499, #m)))\n"
"  end\n"
"  redis.call('DEL', KEYS[i])\n"
"end\n"
"return n\n"),
    { 0 }
};


static ngx_str_t  ngx_http_cache_redis_status_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("BYPASS"),
    ngx_string("EXPIRED"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("REVALIDATED"),
    ngx_string("ERROR")
};


/* the families, declared also where cache_redis is not used */
#define NGX_HTTP_CACHE_REDIS_REQUESTS      0
#define NGX_HTTP_CACHE_REDIS_STORED        1
#define NGX_HTTP_CACHE_REDIS_STORED_BYTES  2

static ngx_http_scale_series_t  ngx_http_cache_redis_families[] = {
    { ngx_string("nginx_cache_redis_requests_total"),
      ngx_string("Requests looked up by cache_redis, by result."),
      ngx_null_string, NGX_HTTP_SCALE_COUNTER, 0 },
    { ngx_string("nginx_cache_redis_stored_total"),
      ngx_string("Responses stored by cache_redis."),
      ngx_null_string, NGX_HTTP_SCALE_COUNTER, 0 },
    { ngx_string("nginx_cache_redis_stored_bytes_total"),
      ngx_string("Bytes of the entries cache_redis stored."),
      ngx_null_string, NGX_HTTP_SCALE_COUNTER, 0 }
};


static ngx_http_variable_t  ngx_http_cache_redis_vars[] = {

    { ngx_string("cache_redis_status"), NULL,
      ngx_http_cache_redis_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("cache_redis_age"), NULL,
      ngx_http_cache_redis_age_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_cache_redis_handler(ngx_http_request_t *r)
{
    ngx_http_cache_redis_ctx_t       *ctx;
    ngx_http_cache_redis_loc_conf_t  *conf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_scale_get_ctx(r, &ngx_http_cache_redis_module);

    if (ctx) {
        switch (ctx->state) {

        case NGX_HTTP_CACHE_REDIS_LOOKUP:
        case NGX_HTTP_CACHE_REDIS_LOCKING:
        case NGX_HTTP_CACHE_REDIS_SLEEPING:
        case NGX_HTTP_CACHE_REDIS_POLLING:
        case NGX_HTTP_CACHE_REDIS_PURGING:
            return NGX_AGAIN;

        case NGX_HTTP_CACHE_REDIS_SEND:
            ctx->state = NGX_HTTP_CACHE_REDIS_DONE;
            ngx_http_finalize_request(r, ngx_http_cache_redis_hit_send(r, ctx));
            return NGX_DONE;

        case NGX_HTTP_CACHE_REDIS_PURGED:
            ctx->state = NGX_HTTP_CACHE_REDIS_DONE;
            ngx_http_finalize_request(r,
                                      ngx_http_cache_redis_purge_send(r, ctx));
            return NGX_DONE;

        default:
            /* looked up once: internal redirects go on as they are */
            return NGX_DECLINED;
        }
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_cache_redis_module);

    if (conf->pool == NULL) {
        return NGX_DECLINED;
    }

    return ngx_http_cache_redis_start(r, conf);
}


static ngx_int_t
ngx_http_cache_redis_start(ngx_http_request_t *r,
    ngx_http_cache_redis_loc_conf_t *conf)
{
    ngx_http_cache_redis_ctx_t  *ctx;

    if (conf->purge
        && r->method_name.len == sizeof("PURGE") - 1
        && ngx_strncmp(r->method_name.data, "PURGE", 5) == 0)
    {
        ctx = ngx_http_cache_redis_create_ctx(r, conf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_cache_redis_purge_start(r, ctx);
    }

    if (!(r->method & conf->methods)) {

        if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH
                           |NGX_HTTP_DELETE)))
        {
            return NGX_DECLINED;
        }

        /* its 2xx or 3xx answer invalidates the URL's entry */

        ctx = ngx_http_cache_redis_create_ctx(r, conf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->invalidate = 1;
        ctx->state = NGX_HTTP_CACHE_REDIS_DONE;

        return NGX_DECLINED;
    }

    ctx = ngx_http_cache_redis_create_ctx(r, conf);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (conf->bypass) {
        switch (ngx_http_test_predicates(r, conf->bypass)) {

        case NGX_ERROR:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;

        case NGX_DECLINED:
            ngx_http_cache_redis_pass(r, ctx, NGX_HTTP_CACHE_REDIS_BYPASS, 1);
            return NGX_DECLINED;

        default: /* NGX_OK */
            break;
        }
    }

    if (ngx_http_cache_redis_send(r, ctx, NGX_HTTP_CACHE_REDIS_LOOKUP)
        == NGX_AGAIN)
    {
        return NGX_AGAIN;
    }

    /* Redis failed at once: the state is PASS */
    return NGX_DECLINED;
}


static ngx_http_cache_redis_ctx_t *
ngx_http_cache_redis_create_ctx(ngx_http_request_t *r,
    ngx_http_cache_redis_loc_conf_t *conf)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_cache_redis_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_redis_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_cache_redis_cleanup;
    cln->data = ctx;

    if (ngx_http_scale_set_ctx(r, ctx, &ngx_http_cache_redis_module)
        != NGX_OK)
    {
        return NULL;
    }

    ctx->request = r;
    ctx->conf = conf;
    ctx->expect = -1;

    /* headers set before the response are not the origin's */
    ctx->part = r->headers_out.headers.last;
    ctx->nelts = ctx->part->nelts;

    ctx->sleep.handler = ngx_http_cache_redis_wake;
    ctx->sleep.data = ctx;
    ctx->sleep.log = r->connection->log;

    ctx->token_len = ngx_snprintf(ctx->token, NGX_HTTP_CACHE_REDIS_TOKEN_LEN,
                                  "%P:%08xD:%M", ngx_pid,
                                  (uint32_t) ngx_random(), ngx_current_msec)
                     - ctx->token;

    if (ngx_http_cache_redis_key(r, ctx) != NGX_OK) {
        return NULL;
    }

    return ctx;
}


static ngx_int_t
ngx_http_cache_redis_key(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    u_char                            *p;
    ngx_str_t                          key;
    ngx_http_variable_value_t         *id, *st;
    ngx_http_cache_redis_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_cache_redis_module);

    if (ngx_http_complex_value(r, ctx->conf->key ? ctx->conf->key
                                                 : &cmcf->default_key,
                               &key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * Where session_redis checked the request, the default key is the
     * user's own: one user's entry never answers another.  Only a VALID
     * session counts (any other cookie would make entries at will); when
     * session_redis could not check, the app may tell users apart itself:
     * nothing is stored.
     */

    if (ctx->conf->key == NULL && cmcf->session_status_index != NGX_ERROR) {
        st = ngx_http_get_indexed_variable(r, cmcf->session_status_index);

        if (st && !st->not_found && st->len) {
            if (st->len == sizeof("ERROR") - 1
                && ngx_strncmp(st->data, "ERROR", st->len) == 0)
            {
                ctx->no_store = 1;
            }

            id = (st->len == sizeof("VALID") - 1
                  && ngx_strncmp(st->data, "VALID", st->len) == 0)
                 ? ngx_http_get_indexed_variable(r, cmcf->session_index)
                 : NULL;

            if (id && !id->not_found && id->len) {
                ctx->user.len = sizeof("#s:") - 1 + id->len;
                ctx->user.data = ngx_pnalloc(r->pool, ctx->user.len);
                if (ctx->user.data == NULL) {
                    return NGX_ERROR;
                }

                p = ngx_cpymem(ctx->user.data, "#s:", 3);
                ngx_memcpy(p, id->data, id->len);
            }
        }
    }

    ctx->base.len = ctx->conf->prefix.len + key.len + ctx->user.len;
    ctx->base.data = ngx_pnalloc(r->pool, ctx->base.len
                                          + sizeof("#lock") - 1);
    if (ctx->base.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->base.data, ctx->conf->prefix.data,
                   ctx->conf->prefix.len);
    p = ngx_cpymem(p, key.data, key.len);
    p = ngx_cpymem(p, ctx->user.data, ctx->user.len);

    ctx->key = ctx->base;

    ctx->lock.len = ctx->base.len + sizeof("#lock") - 1;
    ctx->lock.data = ctx->base.data;
    ngx_memcpy(p, "#lock", sizeof("#lock") - 1);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: key \"%V\"", &ctx->base);

    return NGX_OK;
}


/* returns NGX_AGAIN, or a failure handled (the state is PASS) */

static ngx_int_t
ngx_http_cache_redis_send(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t state)
{
    int                             argc;
    u_char                         *p;
    ngx_int_t                       rc;
    ngx_http_scale_redis_script_t  *script;

    script = NULL;

    switch (state) {

    case NGX_HTTP_CACHE_REDIS_LOOKUP:
        ctx->argv[0] = "GET";
        ctx->argvlen[0] = 3;
        ctx->argv[1] = (const char *) ctx->key.data;
        ctx->argvlen[1] = ctx->key.len;
        argc = 2;
        break;

    default: /* NGX_HTTP_CACHE_REDIS_LOCKING, NGX_HTTP_CACHE_REDIS_POLLING */
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            ngx_http_cache_redis_error(r, ctx, "allocation");
            return NGX_ERROR;
        }

        script = &ngx_http_cache_redis_lock_script;
        ctx->argv[0] = "2";
        ctx->argvlen[0] = 1;
        ctx->argv[1] = (const char *) ctx->key.data;
        ctx->argvlen[1] = ctx->key.len;
        ctx->argv[2] = (const char *) ctx->lock.data;
        ctx->argvlen[2] = ctx->lock.len;
        ctx->argv[3] = (const char *) ctx->token;
        ctx->argvlen[3] = ctx->token_len;
        ctx->argv[4] = (const char *) p;
        ctx->argvlen[4] = ngx_sprintf(p, "%M", ctx->conf->lock_timeout) - p;
        ctx->argv[5] = (const char *) ctx->seen.data;
        ctx->argvlen[5] = ctx->seen.len;
        argc = 6;

        break;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: state %ui, sending %s \"%V\"",
                   state, script ? "script" : ctx->argv[0], &ctx->key);

    rc = ngx_http_scale_redis_send(r, ctx->conf->pool, script, argc,
                                   ctx->argv, ctx->argvlen,
                                   ngx_http_cache_redis_reply, ctx);

    if (rc == NGX_AGAIN) {
        ctx->state = state;
        return NGX_AGAIN;
    }

    ngx_http_cache_redis_error(r, ctx, "unreachable");

    return NGX_ERROR;
}


static void
ngx_http_cache_redis_reply(ngx_http_request_t *r, void *data, ngx_int_t rc,
    redisReply *reply)
{
    ngx_http_cache_redis_ctx_t  *ctx = data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: state %ui, reply rc %i type %d",
                   ctx->state, rc, reply ? reply->type : -1);

    if (ctx->state == NGX_HTTP_CACHE_REDIS_PURGING) {
        if (rc == NGX_HTTP_SCALE_REDIS_OK
            && reply->type == REDIS_REPLY_INTEGER)
        {
            ctx->purged = (ngx_uint_t) reply->integer;
            ctx->rc = ctx->purged ? NGX_HTTP_OK : NGX_HTTP_NOT_FOUND;

        } else {
            ctx->rc = NGX_HTTP_SERVICE_UNAVAILABLE;
        }

        ctx->state = NGX_HTTP_CACHE_REDIS_PURGED;
        return;
    }

    if (rc != NGX_HTTP_SCALE_REDIS_OK) {
        ngx_http_cache_redis_error(r, ctx,
                                   rc == NGX_HTTP_SCALE_REDIS_TIMEOUT
                                   ? "timed out" : "failed");
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_cache_redis_error(r, ctx, "answered an error");
        return;
    }

    switch (ctx->state) {

    case NGX_HTTP_CACHE_REDIS_LOOKUP:

        if (reply->type == REDIS_REPLY_NIL) {
            ngx_http_cache_redis_miss(r, ctx);

        } else if (reply->type == REDIS_REPLY_STRING) {
            ngx_http_cache_redis_found(r, ctx, (u_char *) reply->str,
                                       reply->len);

        } else {
            ngx_http_scale_redis_count_error(ctx->conf->pool,
                                             NGX_HTTP_SCALE_REDIS_PROTOCOL);
            ngx_http_cache_redis_error(r, ctx, "answered a wrong type");
        }

        return;

    default: /* NGX_HTTP_CACHE_REDIS_LOCKING, NGX_HTTP_CACHE_REDIS_POLLING */
        ngx_http_cache_redis_locked(r, ctx, reply);
        return;
    }
}


static void
ngx_http_cache_redis_found(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, u_char *data, size_t len)
{
    u_char                            *copy;
    time_t                             age;
    ngx_int_t                          rc, skipped;
    ngx_http_cache_redis_entry_t       e;
    ngx_http_cache_redis_main_conf_t  *cmcf;

    /* the reply is freed when we return */

    copy = ngx_pnalloc(r->pool, len);
    if (copy == NULL) {
        ngx_http_cache_redis_error(r, ctx, "allocation");
        return;
    }

    ngx_memcpy(copy, data, len);

    /* the value as a lock attempt will tell it from a newer one */
    ctx->seen.data = copy;
    ctx->seen.len = ngx_min(len, NGX_HTTP_CACHE_REDIS_SEEN);

    rc = ngx_http_cache_redis_entry_parse(r->pool, copy, len, &e);

    if (rc == NGX_ERROR) {
        ngx_http_cache_redis_error(r, ctx, "allocation");
        return;
    }

    if (rc == NGX_DECLINED
        || (e.kind == NGX_HTTP_CACHE_REDIS_KIND_VARY && ctx->followed))
    {
        cmcf = ngx_http_get_module_main_conf(r, ngx_http_cache_redis_module);

        skipped = ngx_http_scale_log_burst(&cmcf->burst);

        if (skipped != NGX_DECLINED) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "\"%V\" in redis pool \"%V\" is not "
                          "a cache entry, %i similar errors not logged",
                          &ctx->key,
                          ngx_http_scale_redis_pool_name(ctx->conf->pool),
                          skipped);
        }

        /* a MISS: the answer will be stored over it */
        ngx_http_cache_redis_miss(r, ctx);
        return;
    }

    if (e.kind == NGX_HTTP_CACHE_REDIS_KIND_VARY) {
        ngx_str_null(&ctx->seen);
        ctx->followed = 1;
        ctx->nonce = e.nonce;
        ctx->vary = e.vary;

        if (ngx_http_cache_redis_variant_key(r, &ctx->base, e.nonce, &e.vary,
                                             &ctx->key)
            != NGX_OK)
        {
            ngx_http_cache_redis_error(r, ctx, "allocation");
            return;
        }

        ctx->lock.len = ctx->key.len + sizeof("#lock") - 1;
        ctx->lock.data = ngx_pnalloc(r->pool, ctx->lock.len);
        if (ctx->lock.data == NULL) {
            ngx_http_cache_redis_error(r, ctx, "allocation");
            return;
        }

        ngx_sprintf(ctx->lock.data, "%V#lock", &ctx->key);

        (void) ngx_http_cache_redis_send(r, ctx, NGX_HTTP_CACHE_REDIS_LOOKUP);
        return;
    }

    age = ngx_http_cache_redis_current_age(&e, ngx_time());

    ctx->entry = e;
    ctx->age = age;
    ctx->has_entry = 1;

    if (age < e.lifetime) {
        ngx_http_cache_redis_serve(r, ctx, NGX_HTTP_CACHE_REDIS_HIT);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: expired, age %T of %T", age, e.lifetime);

    ctx->stale_ok = (age < e.lifetime + ctx->conf->stale
                     && !(e.flags & NGX_HTTP_CACHE_REDIS_MUST_REVALIDATE));

    if (!ctx->stale_ok && !ctx->conf->revalidate) {
        ctx->has_entry = 0;
        ctx->status = NGX_HTTP_CACHE_REDIS_EXPIRED;
    }

    ngx_http_cache_redis_miss(r, ctx);
}


static void
ngx_http_cache_redis_miss(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_uint_t  status;

    status = (ctx->has_entry || ctx->status == NGX_HTTP_CACHE_REDIS_EXPIRED)
             ? NGX_HTTP_CACHE_REDIS_EXPIRED : NGX_HTTP_CACHE_REDIS_MISS;

    ctx->status = 0;

    if (!ctx->conf->lock || r->method != NGX_HTTP_GET || ctx->no_store) {
        /* HEAD is not stored: the app's answer has no body */
        ngx_http_cache_redis_pass(r, ctx, status,
                                  r->method == NGX_HTTP_GET);
        return;
    }

    ctx->rc = status;

    (void) ngx_http_cache_redis_send(r, ctx, NGX_HTTP_CACHE_REDIS_LOCKING);
}


static void
ngx_http_cache_redis_locked(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_STRING) {
        /* stored meanwhile */
        ngx_http_cache_redis_found(r, ctx, (u_char *) reply->str, reply->len);
        return;
    }

    if (reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_cache_redis_error(r, ctx, "answered a wrong type");
        return;
    }

    if (reply->integer == 1) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache_redis: lock \"%V\" taken", &ctx->lock);

        ctx->lock_held = 1;
        ngx_http_cache_redis_pass(r, ctx, ctx->rc, 1);
        return;
    }

    if (reply->integer == 2) {
        /* the last answer was not storable: no queueing for the lock */
        ngx_http_cache_redis_pass(r, ctx, ctx->rc, 1);
        return;
    }

    if (ctx->has_entry && ctx->stale_ok
        && (ctx->conf->use_stale & NGX_HTTP_CACHE_REDIS_STALE_UPDATING))
    {
        ngx_http_cache_redis_serve(r, ctx, NGX_HTTP_CACHE_REDIS_UPDATING);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: lock \"%V\" busy, waiting", &ctx->lock);

    if (ctx->wait_start == 0) {
        ctx->wait_start = ngx_current_msec;
    }

    ngx_http_cache_redis_wait(r, ctx);
}


static void
ngx_http_cache_redis_wait(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    if (ngx_current_msec - ctx->wait_start >= ctx->conf->lock_timeout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "cache lock \"%V\" still held after %M ms, "
                      "fetching unstored", &ctx->lock,
                      ctx->conf->lock_timeout);

        ngx_http_cache_redis_pass(r, ctx, ctx->rc, 0);
        return;
    }

    ctx->state = NGX_HTTP_CACHE_REDIS_SLEEPING;

    /* spread out, so that the waiters of a burst do not poll in step */
    ngx_add_timer(&ctx->sleep, NGX_HTTP_CACHE_REDIS_POLL
                               + ngx_random() % NGX_HTTP_CACHE_REDIS_POLL);

    /* a client that goes away while it waits is noticed */
    r->read_event_handler = ngx_http_test_reading;
}


static void
ngx_http_cache_redis_wake(ngx_event_t *ev)
{
    ngx_http_cache_redis_ctx_t *ctx = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "cache_redis: polling \"%V\"", &ctx->key);

    if (ngx_http_cache_redis_send(r, ctx, NGX_HTTP_CACHE_REDIS_POLLING)
        == NGX_AGAIN)
    {
        return;
    }

    ngx_http_scale_resume(r);
}


static void
ngx_http_cache_redis_pass(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status, ngx_uint_t store)
{
    ctx->state = NGX_HTTP_CACHE_REDIS_PASS;
    ctx->store = store && r->method == NGX_HTTP_GET && !ctx->no_store;

    ngx_http_cache_redis_count(r, ctx, status);

    if (ctx->store && ctx->has_entry && ctx->conf->revalidate
        && ngx_http_cache_redis_conditional(r, ctx) != NGX_OK)
    {
        ctx->store = 0;
    }

    if (!ctx->store) {
        ngx_http_cache_redis_store_abort(ctx);
    }
}


static void
ngx_http_cache_redis_serve(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status)
{
    ctx->state = NGX_HTTP_CACHE_REDIS_SEND;
    ctx->store = 0;

    ngx_http_cache_redis_count(r, ctx, status);
}


static void
ngx_http_cache_redis_error(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, const char *what)
{
    ngx_int_t                          skipped;
    ngx_http_cache_redis_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_cache_redis_module);

    skipped = ngx_http_scale_log_burst(&cmcf->burst);

    if (skipped != NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "redis pool \"%V\" %s, passing to the "
                      "app unstored, %i similar errors not logged",
                      ngx_http_scale_redis_pool_name(ctx->conf->pool), what,
                      skipped);
    }

    ctx->has_entry = 0;

    ngx_http_cache_redis_pass(r, ctx, NGX_HTTP_CACHE_REDIS_ERROR, 0);
}


static void
ngx_http_cache_redis_count(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status)
{
    ngx_http_cache_redis_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_cache_redis_module);

    ctx->status = status;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: %V \"%V\"",
                   &ngx_http_cache_redis_status_names[status], &ctx->key);

    ngx_http_scale_counter_add(cmcf->slots[status], 1);
}


static ngx_int_t
ngx_http_cache_redis_purge_start(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    u_char                         *p, *last, *t;
    ngx_int_t                       rc;
    ngx_uint_t                      i, n;
    ngx_str_t                       value;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_scale_redis_script_t  *script;

    ngx_str_null(&value);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Cache-Tag") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Tag",
                               h[i].key.len) == 0)
        {
            value = h[i].value;
            break;
        }
    }

    if (value.len == 0) {
        /* the request's own key (other variants go with their record) */
        script = NULL;
        ctx->argv[0] = "DEL";
        ctx->argvlen[0] = 3;
        ctx->argv[1] = (const char *) ctx->base.data;
        ctx->argvlen[1] = ctx->base.len;
        n = 1;

    } else {
        script = &ngx_http_cache_redis_purge_script;
        n = 0;
        p = value.data;
        last = value.data + value.len;

        while (p < last && n < NGX_HTTP_CACHE_REDIS_ARGS - 1) {
            while (p < last && (*p == ' ' || *p == ',')) {
                p++;
            }

            t = p;

            while (p < last && *p != ' ' && *p != ',') {
                p++;
            }

            if (p == t) {
                continue;
            }

            value.len = ctx->conf->prefix.len + sizeof("tag:") - 1 + (p - t);
            value.data = ngx_pnalloc(r->pool, value.len);
            if (value.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_sprintf(value.data, "%Vtag:%*s", &ctx->conf->prefix,
                        (size_t) (p - t), t);

            n++;
            ctx->argv[n] = (const char *) value.data;
            ctx->argvlen[n] = value.len;
        }

        if (n == 0) {
            return NGX_HTTP_BAD_REQUEST;
        }

        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->argv[0] = (const char *) p;
        ctx->argvlen[0] = ngx_sprintf(p, "%ui", n) - p;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: purge of %ui %s", n,
                   script ? "tags" : "key");

    rc = ngx_http_scale_redis_send(r, ctx->conf->pool, script, (int) n + 1,
                                   ctx->argv, ctx->argvlen,
                                   ngx_http_cache_redis_reply, ctx);

    if (rc == NGX_AGAIN) {
        ctx->state = NGX_HTTP_CACHE_REDIS_PURGING;
        return NGX_AGAIN;
    }

    ctx->state = NGX_HTTP_CACHE_REDIS_DONE;

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


static ngx_int_t
ngx_http_cache_redis_purge_send(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (ctx->rc >= NGX_HTTP_SPECIAL_RESPONSE && ctx->rc != NGX_HTTP_NOT_FOUND)
    {
        return ctx->rc;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, sizeof("{\"purged\":}\n") + NGX_INT_T_LEN);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->pos, "{\"purged\":%ui}\n", ctx->purged);
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = ctx->rc;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static void
ngx_http_cache_redis_cleanup(void *data)
{
    ngx_http_cache_redis_ctx_t  *ctx = data;

    if (ctx->sleep.timer_set) {
        ngx_del_timer(&ctx->sleep);
    }

    ngx_http_cache_redis_store_abort(ctx);
}


static ngx_int_t
ngx_http_cache_redis_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_cache_redis_ctx_t  *ctx;

    ctx = ngx_http_scale_get_ctx(r->main, &ngx_http_cache_redis_module);

    if (ctx == NULL || ctx->status == 0
        || ctx->state == NGX_HTTP_CACHE_REDIS_LOCKING)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_cache_redis_status_names[ctx->status].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = ngx_http_cache_redis_status_names[ctx->status].data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_redis_age_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                      *p;
    ngx_http_cache_redis_ctx_t  *ctx;

    ctx = ngx_http_scale_get_ctx(r->main, &ngx_http_cache_redis_module);

    if (ctx == NULL
        || (ctx->status != NGX_HTTP_CACHE_REDIS_HIT
            && ctx->status != NGX_HTTP_CACHE_REDIS_STALE
            && ctx->status != NGX_HTTP_CACHE_REDIS_UPDATING
            && ctx->status != NGX_HTTP_CACHE_REDIS_REVALIDATED))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* since it was stored here; Age also counts the upstream's */
    v->len = ngx_sprintf(p, "%T", ngx_max(ngx_time() - ctx->entry.stored, 0))
             - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


/* configuration */

static ngx_int_t
ngx_http_cache_redis_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_cache_redis_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_cache_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_cache_redis_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_redis_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    cmcf->session_index = NGX_ERROR;
    cmcf->session_status_index = NGX_ERROR;

    return cmcf;
}


static void *
ngx_http_cache_redis_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_cache_redis_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_redis_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->key = NULL;
     *     conf->tags = NULL;
     *     conf->prefix = { 0, NULL };
     *     conf->methods = 0;
     *     conf->use_stale = 0;
     */

    conf->pool = NGX_CONF_UNSET_PTR;
    conf->valid = NGX_CONF_UNSET_PTR;
    conf->bypass = NGX_CONF_UNSET_PTR;
    conf->no_store = NGX_CONF_UNSET_PTR;
    conf->max_size = NGX_CONF_UNSET_SIZE;
    conf->lock = NGX_CONF_UNSET;
    conf->lock_timeout = NGX_CONF_UNSET_MSEC;
    conf->stale = NGX_CONF_UNSET;
    conf->revalidate = NGX_CONF_UNSET;
    conf->purge = NGX_CONF_UNSET;
    conf->header = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_cache_redis_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_cache_redis_loc_conf_t *prev = parent;
    ngx_http_cache_redis_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->pool, prev->pool, NULL);

    if (conf->key == NULL) {
        conf->key = prev->key;
    }

    ngx_conf_merge_str_value(conf->prefix, prev->prefix, "cache:");

    ngx_conf_merge_bitmask_value(conf->methods, prev->methods,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_HTTP_GET|NGX_HTTP_HEAD));

    ngx_conf_merge_ptr_value(conf->valid, prev->valid, NULL);
    ngx_conf_merge_ptr_value(conf->bypass, prev->bypass, NULL);
    ngx_conf_merge_ptr_value(conf->no_store, prev->no_store, NULL);
    ngx_conf_merge_size_value(conf->max_size, prev->max_size, 1024 * 1024);
    ngx_conf_merge_value(conf->lock, prev->lock, 1);
    ngx_conf_merge_msec_value(conf->lock_timeout, prev->lock_timeout, 5000);

    ngx_conf_merge_bitmask_value(conf->use_stale, prev->use_stale,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_HTTP_CACHE_REDIS_STALE_OFF));

    if (conf->use_stale & NGX_HTTP_CACHE_REDIS_STALE_OFF) {
        conf->use_stale = NGX_CONF_BITMASK_SET|NGX_HTTP_CACHE_REDIS_STALE_OFF;
    }

    ngx_conf_merge_sec_value(conf->stale, prev->stale, 0);
    ngx_conf_merge_value(conf->revalidate, prev->revalidate, 0);

    if (conf->tags == NULL) {
        conf->tags = prev->tags;
    }

    ngx_conf_merge_value(conf->purge, prev->purge, 0);
    ngx_conf_merge_value(conf->header, prev->header, 0);

    if (conf->lock_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"cache_redis_lock_timeout\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (conf->purge && conf->pool == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"cache_redis_purge\" needs \"cache_redis\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_cache_redis_loc_conf_t *clcf = conf;

    ngx_str_t                         *value;
    ngx_http_cache_redis_main_conf_t  *cmcf;

    if (clcf->pool != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        clcf->pool = NULL;
        return NGX_CONF_OK;
    }

    clcf->pool = ngx_http_scale_redis_pool_get(cf, &value[1]);
    if (clcf->pool == NULL) {
        return NGX_CONF_ERROR;
    }

    /* health_ready checks it; its connections load the cache's scripts */

    ngx_http_scale_redis_pool_use(clcf->pool);

    if (ngx_http_scale_redis_script_init(cf, clcf->pool,
                                         &ngx_http_cache_redis_lock_script)
        != NGX_OK
        || ngx_http_scale_redis_script_init(cf, clcf->pool,
                                         &ngx_http_cache_redis_purge_script)
           != NGX_OK
        || ngx_http_cache_redis_store_scripts(cf, clcf->pool) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_redis_module);
    cmcf->enabled = 1;

    return NGX_CONF_OK;
}


/* as proxy_cache_valid: [code ... | any] time; no code: 200 301 302 */

static char *
ngx_http_cache_redis_valid_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_cache_redis_loc_conf_t *clcf = conf;

    time_t                         valid;
    ngx_str_t                     *value;
    ngx_int_t                      status;
    ngx_uint_t                     i, n;
    ngx_http_cache_redis_valid_t  *v;

    static ngx_uint_t  statuses[] = { 200, 301, 302 };

    if (clcf->valid == NGX_CONF_UNSET_PTR) {
        clcf->valid = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_cache_redis_valid_t));
        if (clcf->valid == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;
    n = cf->args->nelts - 1;

    valid = ngx_parse_time(&value[n], 1);
    if (valid == (time_t) NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time value \"%V\"", &value[n]);
        return NGX_CONF_ERROR;
    }

    if (n == 1) {
        for (i = 0; i < 3; i++) {
            v = ngx_array_push(clcf->valid);
            if (v == NULL) {
                return NGX_CONF_ERROR;
            }

            v->status = statuses[i];
            v->valid = valid;
        }

        return NGX_CONF_OK;
    }

    for (i = 1; i < n; i++) {

        if (ngx_strcmp(value[i].data, "any") == 0) {
            status = 0;

        } else {
            status = ngx_atoi(value[i].data, value[i].len);
            if (status < 100 || status > 599) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid status \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        v = ngx_array_push(clcf->valid);
        if (v == NULL) {
            return NGX_CONF_ERROR;
        }

        v->status = status;
        v->valid = valid;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_redis_purge(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_cache_redis_loc_conf_t *clcf = conf;

    if (clcf->purge != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf->purge = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_cache_redis_add_series(ngx_conf_t *cf,
    ngx_http_cache_redis_main_conf_t *cmcf)
{
    u_char                   *p;
    ngx_int_t                 slot;
    ngx_str_t                 labels, name, *s;
    ngx_uint_t                i;
    ngx_http_scale_series_t  *f;

    static ngx_str_t  none = ngx_null_string;

    f = ngx_http_cache_redis_families;

    for (i = NGX_HTTP_CACHE_REDIS_HIT; i < NGX_HTTP_CACHE_REDIS_NRESULTS; i++)
    {
        s = &ngx_http_cache_redis_status_names[i];

        name.data = ngx_pnalloc(cf->pool, s->len);
        if (name.data == NULL) {
            return NGX_ERROR;
        }

        name.len = s->len;
        ngx_strlow(name.data, s->data, s->len);

        labels.data = ngx_pnalloc(cf->pool, 32);
        if (labels.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(labels.data, "result=\"%V\"", &name);
        labels.len = p - labels.data;

        slot = ngx_http_scale_series_add(cf,
                   &f[NGX_HTTP_CACHE_REDIS_REQUESTS].family,
                   &f[NGX_HTTP_CACHE_REDIS_REQUESTS].help,
                   NGX_HTTP_SCALE_COUNTER, &labels);
        if (slot == NGX_ERROR) {
            return NGX_ERROR;
        }

        cmcf->slots[i] = slot;
    }

    slot = ngx_http_scale_series_add(cf,
                                     &f[NGX_HTTP_CACHE_REDIS_STORED].family,
                                     &f[NGX_HTTP_CACHE_REDIS_STORED].help,
                                     NGX_HTTP_SCALE_COUNTER, &none);
    if (slot == NGX_ERROR) {
        return NGX_ERROR;
    }

    cmcf->stored_slot = slot;

    slot = ngx_http_scale_series_add(cf,
               &f[NGX_HTTP_CACHE_REDIS_STORED_BYTES].family,
               &f[NGX_HTTP_CACHE_REDIS_STORED_BYTES].help,
               NGX_HTTP_SCALE_COUNTER, &none);
    if (slot == NGX_ERROR) {
        return NGX_ERROR;
    }

    cmcf->stored_bytes_slot = slot;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_redis_init(ngx_conf_t *cf)
{
    ngx_uint_t                          i;
    ngx_http_handler_pt                *h;
    ngx_http_scale_series_t            *f;
    ngx_http_core_main_conf_t          *cmcf;
    ngx_http_compile_complex_value_t    ccv;
    ngx_http_cache_redis_main_conf_t   *crmcf;

    static ngx_str_t  session_id = ngx_string("session_redis_id");
    static ngx_str_t  session_status = ngx_string("session_redis_status");
    static ngx_str_t  default_key = ngx_string("$scheme$host$request_uri");

    f = ngx_http_cache_redis_families;

    for (i = 0; i < sizeof(ngx_http_cache_redis_families)
                    / sizeof(ngx_http_scale_series_t); i++)
    {
        if (ngx_http_scale_family_add(cf, &f[i].family, &f[i].help, f[i].type)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    crmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_redis_module);

    if (!crmcf->enabled) {
        return NGX_OK;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &default_key;
    ccv.complex_value = &crmcf->default_key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_ERROR;
    }

    crmcf->session_index = ngx_http_get_variable_index(cf, &session_id);
    crmcf->session_status_index = ngx_http_get_variable_index(cf,
                                                              &session_status);

    if (ngx_http_cache_redis_add_series(cf, crmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_cache_redis_store_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_cache_redis_handler;

    return NGX_OK;
}
