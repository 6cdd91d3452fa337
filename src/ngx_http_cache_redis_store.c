
/*
 * cache_redis store filter.
 *
 * The header filter decides (RFC 9111, cache_redis_no_store, max_size),
 * writes the entry's head into one buffer and asks the filters before it
 * for in-memory buffers (the copy filter reads temp files for us); the
 * body filter appends every buffer that passes and, after the last one
 * went on to the client, sends one script: SET with PX, the Vary record,
 * the tags, and the release of the lock this request holds.  A response
 * that ends without its last buffer, or shorter than its Content-Length,
 * is not stored.
 */


#include "ngx_http_cache_redis_store.h"
#include "ngx_http_cache_redis_rules.h"
#include "ngx_http_cache_redis_hit.h"
#include "ngx_http_scale_redis.h"
#include "ngx_http_scale_metrics.h"


typedef struct {
    ngx_http_scale_redis_pool_t     *pool;
    ngx_http_cache_redis_main_conf_t *cmcf;
    const char                      *what;
    size_t                           bytes;        /* stored, for metrics */
    u_char                          *copy;         /* freed with the command */
    int                              argc;
    const char                     **argv;
    size_t                          *argvlen;
} ngx_http_cache_redis_cmd_t;


static ngx_int_t ngx_http_cache_redis_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_redis_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_uint_t ngx_http_cache_redis_use_stale(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static ngx_int_t ngx_http_cache_redis_replace(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_cache_redis_replace_body(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_cache_redis_refresh(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static ngx_int_t ngx_http_cache_redis_decide(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static ngx_int_t ngx_http_cache_redis_cache_status(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static ngx_int_t ngx_http_cache_redis_no_store(ngx_http_request_t *r,
    ngx_http_cache_redis_loc_conf_t *conf);
static ngx_int_t ngx_http_cache_redis_start_copy(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_http_cache_redis_fresh_t *f);
static ngx_int_t ngx_http_cache_redis_append(ngx_http_cache_redis_ctx_t *ctx,
    u_char *p, size_t len);
static void ngx_http_cache_redis_store(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx);
static void ngx_http_cache_redis_detached_done(void *data, ngx_int_t rc,
    redisReply *reply);
static ngx_int_t ngx_http_cache_redis_location_key(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_table_elt_t *h, ngx_str_t *key);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/*
 * KEYS: entry, lock, base (the Vary record's key), tag sets...
 * ARGV: entry, px, lock token ('' if none), Vary record ('' if none)
 */

static ngx_http_scale_redis_script_t  ngx_http_cache_redis_store_script = {
    ngx_string(
"local px = tonumber(ARGV[2])\n"
"redis.call('SET', KEYS[1], ARGV[1], 'PX', px)\n"
"if ARGV[4] ~= '' then\n"
"  redis.call('SET', KEYS[3], ARGV[4], 'PX',\n"
"             math.max(redis.call('PTTL', KEYS[3]), px))\n"
"end\n"
"if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then\n"
"  redis.call('DEL', KEYS[2])\n"
"end\n"
"for i = 4, #KEYS do\n"
"  redis.call('SADD', KEYS[i], KEYS[1])\n"
"  if redis.call('PTTL', KEYS[i]) < px then\n"
"    redis.call('PEXPIRE', KEYS[i], px)\n"
"  end\n"
"end\n"
"return 1\n"),
    { 0 }
};


/*
 * KEYS: the lock.  ARGV: the token (only the holder releases it), and ms
 * to leave "!pass" in its place ('': none): the answer was not storable,
 * so for that long the others go to the app at once instead of queueing
 * for the lock one after the other.
 */

static ngx_http_scale_redis_script_t  ngx_http_cache_redis_release_script = {
    ngx_string(
"if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
"  if ARGV[2] ~= '' then\n"
"    return redis.call('SET', KEYS[1], '!pass', 'PX', ARGV[2])\n"
"  end\n"
"  return redis.call('DEL', KEYS[1])\n"
"end\n"
"return 0\n"),
    { 0 }
};


ngx_int_t
ngx_http_cache_redis_store_scripts(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool)
{
    if (ngx_http_scale_redis_script_init(cf, pool,
                                         &ngx_http_cache_redis_store_script)
        != NGX_OK
        || ngx_http_scale_redis_script_init(cf, pool,
                                        &ngx_http_cache_redis_release_script)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_redis_store_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_cache_redis_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_cache_redis_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_redis_header_filter(ngx_http_request_t *r)
{
    ngx_http_cache_redis_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_scale_get_ctx(r, &ngx_http_cache_redis_module);

    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->replace) {
        /* a second header: an error page after the first */
        return ngx_http_next_header_filter(r);
    }

    if (ctx->revalidating && r->headers_out.status == NGX_HTTP_NOT_MODIFIED)
    {
        return ngx_http_cache_redis_refresh(r, ctx);
    }

    if (ctx->has_entry && ctx->stale_ok
        && ctx->status == NGX_HTTP_CACHE_REDIS_EXPIRED
        && ngx_http_cache_redis_use_stale(r, ctx))
    {
        ngx_http_cache_redis_store_abort(ctx);
        return ngx_http_cache_redis_replace(r, ctx,
                                            NGX_HTTP_CACHE_REDIS_STALE);
    }

    if (ctx->invalidate) {
        ctx->invalidate = 0;

        if (r->headers_out.status >= 200 && r->headers_out.status < 400) {
            ngx_http_cache_redis_invalidate(r, ctx);
        }

    } else if (ctx->store) {
        if (ngx_http_cache_redis_decide(r, ctx) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    /* after the copy of the headers: the entry does not keep it */

    if (ctx->conf->header && ctx->status
        && ngx_http_cache_redis_cache_status(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_cache_redis_decide(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_http_cache_redis_fresh_t   f;

    ctx->store = 0;

    rc = ngx_http_cache_redis_storable(r, ctx, &f);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_cache_redis_no_store(r, ctx->conf);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        f.reason = "cache_redis_no_store";
    }

    if (rc == NGX_OK
        && r->headers_out.content_length_n > (off_t) ctx->conf->max_size)
    {
        f.reason = "cache_redis_max_size";
        rc = NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache_redis: %ui not stored: %s",
                       r->headers_out.status, f.reason);

        ctx->pass = 1;
        ngx_http_cache_redis_store_abort(ctx);
        return NGX_OK;
    }

    if (ngx_http_cache_redis_start_copy(r, ctx, &f) != NGX_OK) {
        ngx_http_cache_redis_store_abort(ctx);
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: copying %ui, lifetime %T, age %T",
                   r->headers_out.status, f.lifetime, f.initial_age);

    r->filter_need_in_memory = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_redis_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                    rc;
    ngx_uint_t                   last;
    ngx_chain_t                 *cl;
    ngx_http_cache_redis_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_scale_get_ctx(r, &ngx_http_cache_redis_module);

    if (ctx && ctx->replace) {
        return ngx_http_cache_redis_replace_body(r, ctx, in);
    }

    if (ctx == NULL || !ctx->storing || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            if (ngx_http_cache_redis_append(ctx, cl->buf->pos,
                                            cl->buf->last - cl->buf->pos)
                != NGX_OK)
            {
                ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "cache_redis: not stored: "
                               "cache_redis_max_size");

                ctx->pass = 1;
                ngx_http_cache_redis_store_abort(ctx);
                return ngx_http_next_body_filter(r, in);
            }

        } else if (!ngx_buf_special(cl->buf)) {
            /* a file buffer the copy filter left alone */
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "cache_redis: not stored: file buffer");

            ngx_http_cache_redis_store_abort(ctx);
            return ngx_http_next_body_filter(r, in);
        }

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    rc = ngx_http_next_body_filter(r, in);

    if (!last) {
        return rc;
    }

    if (rc == NGX_ERROR || r->connection->error) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache_redis: not stored: client gone");

        ngx_http_cache_redis_store_abort(ctx);
        return rc;
    }

    ngx_http_cache_redis_store(r, ctx);

    return rc;
}


/*
 * use_stale: "error" and "timeout" when the app gave no answer (nginx's
 * 502 and 504), http_5xx for those answers from it.
 */

static ngx_uint_t
ngx_http_cache_redis_use_stale(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_uint_t  status, answered, mask;

    status = r->err_status ? r->err_status : r->headers_out.status;
    answered = r->upstream && r->upstream->headers_in.status_n;
    mask = ctx->conf->use_stale;

    switch (status) {

    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        return (mask & NGX_HTTP_CACHE_REDIS_STALE_500) != 0;

    case NGX_HTTP_BAD_GATEWAY:
        return answered ? (mask & NGX_HTTP_CACHE_REDIS_STALE_502) != 0
                        : (mask & NGX_HTTP_CACHE_REDIS_STALE_ERROR) != 0;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return (mask & NGX_HTTP_CACHE_REDIS_STALE_503) != 0;

    case NGX_HTTP_GATEWAY_TIME_OUT:
        return answered ? (mask & NGX_HTTP_CACHE_REDIS_STALE_504) != 0
                        : (mask & NGX_HTTP_CACHE_REDIS_STALE_TIMEOUT) != 0;
    }

    return 0;
}


/* the entry instead of what the app sent: STALE, or REVALIDATED */

static ngx_int_t
ngx_http_cache_redis_replace(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_uint_t status)
{
    ngx_http_cache_redis_main_conf_t  *cmcf;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: answering from the entry instead of %ui",
                   r->headers_out.status);

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_cache_redis_module);

    /* counted once: as what it became */
    ngx_http_scale_counter_add(cmcf->slots[ctx->status], -1);
    ngx_http_scale_counter_add(cmcf->slots[status], 1);
    ctx->status = status;

    ngx_memzero(&r->headers_out.status,
                sizeof(ngx_http_headers_out_t)
                - offsetof(ngx_http_headers_out_t, status));

    r->headers_out.headers.part.nelts = 0;
    r->headers_out.headers.part.next = NULL;
    r->headers_out.headers.last = &r->headers_out.headers.part;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->err_status = 0;

    ctx->age = ngx_http_cache_redis_current_age(&ctx->entry, ngx_time());

    if (ngx_http_cache_redis_hit_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->replace = 1;

    if (ctx->conf->header
        && ngx_http_cache_redis_cache_status(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_cache_redis_replace_body(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, out;

    /* what the app sends is dropped */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->stale_sent) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->stale_sent = 1;

    if (r->header_only || r->method == NGX_HTTP_HEAD) {
        return NGX_OK;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->entry.body.data;
    b->last = ctx->entry.body.data + ctx->entry.body.len;
    b->memory = (ctx->entry.body.len != 0);
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


ngx_int_t
ngx_http_cache_redis_conditional(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_uint_t        i, n;
    ngx_keyval_t     *kv;
    ngx_table_elt_t  *h;

    if (r->headers_in.if_none_match || r->headers_in.if_modified_since
        || r->headers_in.if_match || r->headers_in.if_unmodified_since
        || r->headers_in.range)
    {
        /* the client's own conditions go to the app as they are */
        return NGX_OK;
    }

    kv = ctx->entry.headers;
    n = 0;

    for (i = 0; i < ctx->entry.nheaders; i++) {

        if (kv[i].key.len == 4
            && ngx_strncasecmp(kv[i].key.data, (u_char *) "ETag", 4) == 0)
        {
            h = ngx_list_push(&r->headers_in.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }

            ngx_str_set(&h->key, "If-None-Match");

        } else if (kv[i].key.len == 13
                   && ngx_strncasecmp(kv[i].key.data,
                                      (u_char *) "Last-Modified", 13) == 0)
        {
            h = ngx_list_push(&r->headers_in.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }

            ngx_str_set(&h->key, "If-Modified-Since");

        } else {
            continue;
        }

        h->hash = 1;
        h->value = kv[i].value;
        h->lowcase_key = ngx_pnalloc(r->pool, h->key.len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(h->lowcase_key, h->key.data, h->key.len);
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
        n++;
    }

    if (n) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache_redis: revalidating \"%V\"", &ctx->key);

        ctx->revalidating = 1;
    }

    return NGX_OK;
}


/*
 * A 304 to our conditional request: the entry's headers updated with the
 * 304's (RFC 9111 4.3.4), fresh again, stored and answered.
 */

static ngx_int_t
ngx_http_cache_redis_refresh(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    u_char                        *p;
    size_t                         len;
    ngx_uint_t                     i, n, found;
    ngx_keyval_t                  *kv;
    ngx_table_elt_t               *h;
    ngx_http_cache_redis_entry_t  *e;
    ngx_http_cache_redis_fresh_t   f;
    ngx_http_cache_redis_iter_t    it;

    e = &ctx->entry;
    ctx->revalidating = 0;

    /* the freshness the 304 gives, as if it were the stored status */

    r->headers_out.status = e->status;

    if (ngx_http_cache_redis_storable(r, ctx, &f) != NGX_OK) {
        f.lifetime = e->lifetime;
        f.initial_age = 0;
        f.flags = e->flags;
    }

    n = 0;
    ngx_http_cache_redis_origin_headers(r, ctx, &it);

    while (ngx_http_cache_redis_header_next(&it)) {
        n++;
    }

    kv = ngx_palloc(r->pool, (e->nheaders + n) * sizeof(ngx_keyval_t));
    if (kv == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(kv, e->headers, e->nheaders * sizeof(ngx_keyval_t));
    n = e->nheaders;

    ngx_http_cache_redis_origin_headers(r, ctx, &it);

    while ((h = ngx_http_cache_redis_header_next(&it))) {
        if (!ngx_http_cache_redis_keep_header(&h->key)
            || (h->key.len == sizeof("Content-Encoding") - 1
                && ngx_strncasecmp(h->key.data, (u_char *) "Content-Encoding",
                                   h->key.len) == 0))
        {
            continue;
        }

        found = 0;

        for (i = 0; i < n; i++) {
            if (kv[i].key.len == h->key.len
                && ngx_strncasecmp(kv[i].key.data, h->key.data, h->key.len)
                   == 0)
            {
                kv[i].value = h->value;
                found = 1;
            }
        }

        if (!found) {
            kv[n].key = h->key;
            kv[n].value = h->value;
            n++;
        }
    }

    e->headers = kv;
    e->nheaders = n;
    e->stored = ngx_time();
    e->initial_age = f.initial_age;
    e->lifetime = f.lifetime;
    e->flags = f.flags;

    /* stored again: the copy is the new entry */

    len = ngx_http_cache_redis_entry_head_len(e);

    ctx->copy_size = len + e->body.len;
    ctx->copy = ngx_alloc(ctx->copy_size, r->connection->log);

    if (ctx->copy) {
        p = ngx_http_cache_redis_entry_write_head(ctx->copy, e);
        ctx->body_start = p - ctx->copy;
        ngx_memcpy(p, e->body.data, e->body.len);
        ctx->copy_len = ctx->body_start + e->body.len;
        ctx->expect = e->body.len;
        ctx->lifetime = f.lifetime - f.initial_age;
        ngx_http_cache_redis_store(r, ctx);
    }

    return ngx_http_cache_redis_replace(r, ctx,
                                        NGX_HTTP_CACHE_REDIS_REVALIDATED);
}


/* RFC 9211 */

static ngx_int_t
ngx_http_cache_redis_cache_status(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    u_char  *p;
    size_t   len;
    time_t   ttl;

    static ngx_str_t  name = ngx_string("Cache-Status");

    len = sizeof("cache_redis; fwd=uri-miss; detail=redis-error") - 1
          + sizeof("; ttl=-") - 1 + NGX_TIME_T_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ttl = ctx->entry.lifetime - ctx->age;

    switch (ctx->status) {

    case NGX_HTTP_CACHE_REDIS_HIT:
    case NGX_HTTP_CACHE_REDIS_STALE:
    case NGX_HTTP_CACHE_REDIS_UPDATING:
        len = ngx_sprintf(p, "cache_redis; hit; ttl=%T", ttl) - p;
        break;

    case NGX_HTTP_CACHE_REDIS_EXPIRED:
        len = ngx_sprintf(p, "cache_redis; fwd=stale") - p;
        break;

    case NGX_HTTP_CACHE_REDIS_REVALIDATED:
        len = ngx_sprintf(p, "cache_redis; fwd=stale; fwd-status=304") - p;
        break;

    case NGX_HTTP_CACHE_REDIS_BYPASS:
        len = ngx_sprintf(p, "cache_redis; fwd=bypass") - p;
        break;

    case NGX_HTTP_CACHE_REDIS_ERROR:
        len = ngx_sprintf(p, "cache_redis; fwd=uri-miss; detail=redis-error")
              - p;
        break;

    default: /* MISS */
        len = ngx_sprintf(p, "cache_redis; fwd=%s",
                          ctx->followed ? "vary-miss" : "uri-miss")
              - p;
    }

    return ngx_http_scale_add_header(r, &name, p, len);
}


static ngx_int_t
ngx_http_cache_redis_no_store(ngx_http_request_t *r,
    ngx_http_cache_redis_loc_conf_t *conf)
{
    if (conf->no_store == NULL) {
        return NGX_OK;
    }

    switch (ngx_http_test_predicates(r, conf->no_store)) {

    case NGX_ERROR:
        return NGX_ERROR;

    case NGX_DECLINED:
        return NGX_DECLINED;

    default: /* NGX_OK */
        return NGX_OK;
    }
}


static ngx_int_t
ngx_http_cache_redis_start_copy(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_http_cache_redis_fresh_t *f)
{
    u_char                        *p;
    size_t                         len;
    ngx_uint_t                     n;
    ngx_str_t                      tags;
    ngx_keyval_t                  *kv;
    ngx_table_elt_t               *h;
    ngx_http_cache_redis_entry_t  *e;
    ngx_http_cache_redis_iter_t    it;

    e = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_redis_entry_t));
    if (e == NULL) {
        return NGX_ERROR;
    }

    /* count: the origin's headers, Content-Type, Date */

    n = 2;
    ngx_http_cache_redis_origin_headers(r, ctx, &it);

    while (ngx_http_cache_redis_header_next(&it)) {
        n++;
    }

    e->headers = ngx_palloc(r->pool, n * sizeof(ngx_keyval_t));
    if (e->headers == NULL) {
        return NGX_ERROR;
    }

    kv = e->headers;

    if (r->headers_out.content_type.len) {
        ngx_str_set(&kv->key, "Content-Type");
        kv->value = r->headers_out.content_type;

        if (r->headers_out.charset.len) {
            len = kv->value.len + sizeof("; charset=") - 1
                  + r->headers_out.charset.len;

            p = ngx_pnalloc(r->pool, len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            kv->value.data = p;
            kv->value.len = len;

            p = ngx_cpymem(p, r->headers_out.content_type.data,
                           r->headers_out.content_type.len);
            p = ngx_cpymem(p, "; charset=", sizeof("; charset=") - 1);
            ngx_memcpy(p, r->headers_out.charset.data,
                       r->headers_out.charset.len);
        }

        kv++;
    }

    /* Date as the origin sent it (RFC 9110 6.6.1: one is added if none) */

    ngx_str_set(&kv->key, "Date");
    kv->value.data = ngx_pnalloc(r->pool,
                                 sizeof("Mon, 28 Sep 1970 06:00:00 GMT"));
    if (kv->value.data == NULL) {
        return NGX_ERROR;
    }

    kv->value.len = ngx_http_time(kv->value.data, f->date) - kv->value.data;
    kv++;

    ngx_http_cache_redis_origin_headers(r, ctx, &it);

    while ((h = ngx_http_cache_redis_header_next(&it))) {
        if (!ngx_http_cache_redis_keep_header(&h->key)) {
            continue;
        }

        kv->key = h->key;
        kv->value = h->value;
        kv++;
    }

    e->nheaders = kv - e->headers;
    e->status = r->headers_out.status;
    e->stored = ngx_time();
    e->initial_age = f->initial_age;
    e->lifetime = f->lifetime;
    e->flags = f->flags;

    ngx_str_null(&tags);

    if (ctx->conf->tags) {
        if (ngx_http_complex_value(r, ctx->conf->tags, &tags) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    e->tags = tags;

    /* where it goes: a variant when the response varies */

    if (f->vary.len) {
        if (!(ctx->followed
              && ctx->vary.len == f->vary.len
              && ngx_strncmp(ctx->vary.data, f->vary.data, f->vary.len) == 0))
        {
            ctx->nonce = (uint32_t) ngx_random();
            ctx->vary = f->vary;
        }

        if (ngx_http_cache_redis_variant_key(r, &ctx->base, ctx->nonce,
                                             &ctx->vary, &ctx->key)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->followed = 1;

    } else {
        ctx->key = ctx->base;
        ctx->followed = 0;
    }

    ctx->expect = r->headers_out.content_length_n;
    ctx->lifetime = f->lifetime - f->initial_age;

    len = ngx_http_cache_redis_entry_head_len(e);

    ctx->copy_size = len + (ctx->expect >= 0 ? (size_t) ctx->expect : 4096);
    ctx->copy = ngx_alloc(ctx->copy_size, r->connection->log);
    if (ctx->copy == NULL) {
        return NGX_ERROR;
    }

    ctx->copy_len = ngx_http_cache_redis_entry_write_head(ctx->copy, e)
                    - ctx->copy;
    ctx->body_start = ctx->copy_len;
    ctx->storing = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_redis_append(ngx_http_cache_redis_ctx_t *ctx, u_char *p,
    size_t len)
{
    u_char  *copy;
    size_t   size;

    if (len == 0) {
        return NGX_OK;
    }

    if (ctx->copy_len - ctx->body_start + len > ctx->conf->max_size) {
        return NGX_DECLINED;
    }

    if (ctx->copy_len + len > ctx->copy_size) {
        size = ngx_max(ctx->copy_size * 2, ctx->copy_len + len);
        size = ngx_min(size, ctx->body_start + ctx->conf->max_size);

        copy = realloc(ctx->copy, size);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        ctx->copy = copy;
        ctx->copy_size = size;
    }

    ngx_memcpy(ctx->copy + ctx->copy_len, p, len);
    ctx->copy_len += len;

    return NGX_OK;
}


static void
ngx_http_cache_redis_store(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    u_char                           *p, *t, *end;
    size_t                            body, len;
    time_t                            keep;
    ngx_int_t                         rc;
    ngx_str_t                        *argv, tags;
    ngx_uint_t                        n, nkeys;
    ngx_http_cache_redis_entry_t      e;

    body = ctx->copy_len - ctx->body_start;

    if (ctx->expect >= 0 && (off_t) body != ctx->expect) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache_redis: not stored: %uz bytes of %O",
                       body, ctx->expect);

        ngx_http_cache_redis_store_abort(ctx);
        return;
    }

    ngx_http_cache_redis_entry_set_body_len(ctx->copy + ctx->body_start, body);

    /* the tags, again from the head just written */

    ngx_str_null(&tags);
    n = 0;

    if (ngx_http_cache_redis_entry_parse(r->pool, ctx->copy, ctx->copy_len, &e)
        == NGX_OK)
    {
        tags = e.tags;

        for (p = tags.data, end = tags.data + tags.len; p < end; p++) {
            if (*p != ' ' && *p != ','
                && (p == tags.data || p[-1] == ' ' || p[-1] == ','))
            {
                n++;
            }
        }
    }

    argv = ngx_palloc(r->pool, (8 + n) * sizeof(ngx_str_t));
    if (argv == NULL) {
        ngx_http_cache_redis_store_abort(ctx);
        return;
    }

    nkeys = 3 + n;

    argv[0].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (argv[0].data == NULL) {
        ngx_http_cache_redis_store_abort(ctx);
        return;
    }

    argv[0].len = ngx_sprintf(argv[0].data, "%ui", nkeys) - argv[0].data;
    argv[1] = ctx->key;
    argv[2] = ctx->lock;
    argv[3] = ctx->base;

    n = 4;

    for (p = tags.data, end = tags.data + tags.len; p < end; /* void */) {
        while (p < end && (*p == ' ' || *p == ',')) {
            p++;
        }

        t = p;

        while (p < end && *p != ' ' && *p != ',') {
            p++;
        }

        if (p == t) {
            continue;
        }

        len = ctx->conf->prefix.len + sizeof("tag:") - 1 + (p - t);

        argv[n].data = ngx_pnalloc(r->pool, len);
        if (argv[n].data == NULL) {
            ngx_http_cache_redis_store_abort(ctx);
            return;
        }

        argv[n].len = len;
        ngx_sprintf(argv[n].data, "%Vtag:%*s", &ctx->conf->prefix,
                    (size_t) (p - t), t);
        n++;
    }

    argv[n].data = ctx->copy;
    argv[n].len = ctx->copy_len;
    n++;

    argv[n].data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 3);
    if (argv[n].data == NULL) {
        ngx_http_cache_redis_store_abort(ctx);
        return;
    }

    /* kept past freshness for use_stale and revalidation */
    keep = ctx->conf->stale;

    if (ctx->conf->revalidate) {
        keep = ngx_max(keep, ctx->lifetime);
    }

    argv[n].len = ngx_sprintf(argv[n].data, "%T000", ctx->lifetime + keep)
                  - argv[n].data;
    n++;

    if (ctx->lock_held) {
        argv[n].data = ctx->token;
        argv[n].len = ctx->token_len;

    } else {
        ngx_str_null(&argv[n]);
    }

    n++;

    ngx_str_null(&argv[n]);

    if (ctx->followed) {
        len = ngx_http_cache_redis_vary_len(&ctx->vary);

        argv[n].data = ngx_pnalloc(r->pool, len);
        if (argv[n].data == NULL) {
            ngx_http_cache_redis_store_abort(ctx);
            return;
        }

        argv[n].len = ngx_http_cache_redis_vary_write(argv[n].data,
                                                      ctx->nonce, &ctx->vary)
                      - argv[n].data;
    }

    n++;

    rc = ngx_http_cache_redis_send_detached(ctx->conf,
                                            &ngx_http_cache_redis_store_script,
                                            (int) n, argv, ctx->copy);

    /* the copy belongs to the command now, or is freed */
    ctx->copy = NULL;
    ctx->storing = 0;
    ctx->lock_held = 0;

    if (rc != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache_redis: \"%V\" not stored", &ctx->key);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: storing \"%V\", %uz bytes", &ctx->key, body);
}


void
ngx_http_cache_redis_store_abort(ngx_http_cache_redis_ctx_t *ctx)
{
    u_char     ms[NGX_INT_T_LEN];
    ngx_str_t  argv[4];

    if (ctx->copy) {
        ngx_free(ctx->copy);
        ctx->copy = NULL;
    }

    ctx->storing = 0;
    ctx->store = 0;

    if (!ctx->lock_held) {
        return;
    }

    ctx->lock_held = 0;

    ngx_str_set(&argv[0], "1");
    argv[1] = ctx->lock;
    argv[2].data = ctx->token;
    argv[2].len = ctx->token_len;
    argv[3].data = ms;
    argv[3].len = ctx->pass ? (size_t) (ngx_sprintf(ms, "%M",
                                                    ctx->conf->lock_timeout)
                                        - ms)
                            : 0;

    (void) ngx_http_cache_redis_send_detached(ctx->conf,
                                        &ngx_http_cache_redis_release_script,
                                        4, argv, NULL);
}


void
ngx_http_cache_redis_invalidate(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_str_t         argv[4];
    ngx_uint_t        n;
    ngx_table_elt_t  *h;

    ngx_str_set(&argv[0], "DEL");
    argv[1] = ctx->base;
    n = 2;

    /* RFC 9111 4.4: Location and Content-Location on the same host */

    h = r->headers_out.location;

    if (h && ngx_http_cache_redis_location_key(r, ctx, h, &argv[n]) == NGX_OK)
    {
        n++;
    }

    h = ngx_http_cache_redis_find_origin(r, ctx, "Content-Location");

    if (h && ngx_http_cache_redis_location_key(r, ctx, h, &argv[n]) == NGX_OK)
    {
        n++;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache_redis: %V invalidates \"%V\"",
                   &r->method_name, &ctx->base);

    (void) ngx_http_cache_redis_send_detached(ctx->conf, NULL, (int) n, argv,
                                              NULL);
}


/*
 * The default key of a URL on the request's own host: only the default
 * key can be worked out for another URL.
 */

static ngx_int_t
ngx_http_cache_redis_location_key(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_table_elt_t *h, ngx_str_t *key)
{
    u_char     *p, *uri, *last;
    size_t      len;
    ngx_str_t   scheme;

    if (ctx->conf->key || h->value.len == 0) {
        return NGX_DECLINED;
    }

    p = h->value.data;
    last = p + h->value.len;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https");
    } else
#endif
    {
        ngx_str_set(&scheme, "http");
    }

    if (*p == '/' && (last - p < 2 || p[1] != '/')) {
        uri = p;

    } else {
        len = scheme.len + sizeof("://") - 1 + r->headers_in.server.len;

        if ((size_t) (last - p) <= len
            || ngx_strncasecmp(p, scheme.data, scheme.len) != 0
            || ngx_strncmp(p + scheme.len, "://", 3) != 0
            || ngx_strncasecmp(p + scheme.len + 3, r->headers_in.server.data,
                               r->headers_in.server.len) != 0)
        {
            return NGX_DECLINED;
        }

        uri = p + len;

        if (*uri == ':') {
            /* the key has $host, without the port */
            while (uri < last && *uri != '/') {
                uri++;
            }
        }

        if (uri == last || *uri != '/') {
            return NGX_DECLINED;
        }
    }

    key->len = ctx->conf->prefix.len + scheme.len + r->headers_in.server.len
               + (last - uri) + ctx->user.len;
    key->data = ngx_pnalloc(r->pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "%V%V%V%*s%V", &ctx->conf->prefix, &scheme,
                &r->headers_in.server, (size_t) (last - uri), uri,
                &ctx->user);

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_redis_send_detached(ngx_http_cache_redis_loc_conf_t *conf,
    ngx_http_scale_redis_script_t *script, int argc, ngx_str_t *argv,
    u_char *copy)
{
    u_char                      *p;
    size_t                       size;
    ngx_int_t                    rc;
    ngx_uint_t                   i;
    ngx_http_cache_redis_cmd_t  *cmd;
    ngx_http_scale_redis_cmd_t  *sent;

    size = sizeof(ngx_http_cache_redis_cmd_t)
           + argc * (sizeof(const char *) + sizeof(size_t));

    for (i = 0; i < (ngx_uint_t) argc; i++) {
        if (copy == NULL || argv[i].data != copy) {
            size += argv[i].len;
        }
    }

    cmd = ngx_alloc(size, ngx_cycle->log);
    if (cmd == NULL) {
        if (copy) {
            ngx_free(copy);
        }

        return NGX_ERROR;
    }

    cmd->pool = conf->pool;
    cmd->cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                ngx_http_cache_redis_module);
    cmd->what = script ? "store" : "invalidation";
    cmd->bytes = 0;
    cmd->copy = copy;
    cmd->argc = argc;
    cmd->argv = (const char **) (cmd + 1);
    cmd->argvlen = (size_t *) (cmd->argv + argc);

    p = (u_char *) (cmd->argvlen + argc);

    for (i = 0; i < (ngx_uint_t) argc; i++) {
        if (copy && argv[i].data == copy) {
            cmd->argv[i] = (const char *) copy;
            cmd->bytes = argv[i].len;

        } else {
            cmd->argv[i] = (const char *) p;
            p = ngx_cpymem(p, argv[i].data, argv[i].len);
        }

        cmd->argvlen[i] = argv[i].len;
    }

    /* never abandoned: a write in flight ends within the pool's timeout */

    rc = ngx_http_scale_redis_send_detached(conf->pool, script, argc,
                                            cmd->argv, cmd->argvlen,
                                            ngx_http_cache_redis_detached_done,
                                            cmd, &sent);
    if (rc == NGX_AGAIN) {
        return NGX_OK;
    }

    ngx_http_cache_redis_detached_done(cmd, rc, NULL);

    return NGX_ERROR;
}


static void
ngx_http_cache_redis_detached_done(void *data, ngx_int_t rc,
    redisReply *reply)
{
    ngx_http_cache_redis_cmd_t  *cmd = data;

    ngx_int_t  skipped;

    if (rc == NGX_HTTP_SCALE_REDIS_OK && reply->type != REDIS_REPLY_ERROR) {
        if (cmd->copy && cmd->cmcf) {
            ngx_http_scale_counter_add(cmd->cmcf->stored_slot, 1);
            ngx_http_scale_counter_add(cmd->cmcf->stored_bytes_slot,
                                       cmd->bytes);
        }

    } else if (cmd->cmcf) {
        skipped = ngx_http_scale_log_burst(&cmd->cmcf->burst);

        if (skipped != NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "cache %s failed in redis pool \"%V\", "
                          "%i similar errors not logged",
                          cmd->what, ngx_http_scale_redis_pool_name(cmd->pool),
                          skipped);
        }
    }

    if (cmd->copy) {
        ngx_free(cmd->copy);
    }

    ngx_free(cmd);
}
