
/*
 * cache_redis entry format: writing and checked reading.
 */


#include "ngx_http_cache_redis_entry.h"


#define NGX_HTTP_CACHE_REDIS_MAGIC     "NXC"
#define NGX_HTTP_CACHE_REDIS_PREAMBLE  5
#define NGX_HTTP_CACHE_REDIS_FIXED     (2 + 8 + 4 + 4 + 4 + 2)


static u_char *ngx_http_cache_redis_put(u_char *p, uint64_t v, size_t n);
static ngx_int_t ngx_http_cache_redis_get(u_char **p, u_char *end, size_t n,
    uint64_t *v);
static ngx_int_t ngx_http_cache_redis_get_str(u_char **p, u_char *end,
    size_t n, ngx_str_t *s);


size_t
ngx_http_cache_redis_entry_head_len(ngx_http_cache_redis_entry_t *e)
{
    size_t      len;
    ngx_uint_t  i;

    len = NGX_HTTP_CACHE_REDIS_PREAMBLE + NGX_HTTP_CACHE_REDIS_FIXED;

    for (i = 0; i < e->nheaders; i++) {
        len += 2 + e->headers[i].key.len + 4 + e->headers[i].value.len;
    }

    return len + 4 + e->tags.len + 4;
}


u_char *
ngx_http_cache_redis_entry_write_head(u_char *p,
    ngx_http_cache_redis_entry_t *e)
{
    ngx_uint_t  i;

    p = ngx_cpymem(p, NGX_HTTP_CACHE_REDIS_MAGIC, 3);
    *p++ = NGX_HTTP_CACHE_REDIS_VERSION;
    *p++ = NGX_HTTP_CACHE_REDIS_KIND_ENTRY;

    p = ngx_http_cache_redis_put(p, e->status, 2);
    p = ngx_http_cache_redis_put(p, (uint64_t) e->stored, 8);
    p = ngx_http_cache_redis_put(p, e->initial_age, 4);
    p = ngx_http_cache_redis_put(p, e->lifetime, 4);
    p = ngx_http_cache_redis_put(p, e->flags, 4);
    p = ngx_http_cache_redis_put(p, e->nheaders, 2);

    for (i = 0; i < e->nheaders; i++) {
        p = ngx_http_cache_redis_put(p, e->headers[i].key.len, 2);
        p = ngx_cpymem(p, e->headers[i].key.data, e->headers[i].key.len);
        p = ngx_http_cache_redis_put(p, e->headers[i].value.len, 4);
        p = ngx_cpymem(p, e->headers[i].value.data, e->headers[i].value.len);
    }

    p = ngx_http_cache_redis_put(p, e->tags.len, 4);
    p = ngx_cpymem(p, e->tags.data, e->tags.len);

    /* the body length, set when the body is complete */
    return ngx_http_cache_redis_put(p, 0, 4);
}


void
ngx_http_cache_redis_entry_set_body_len(u_char *body, size_t len)
{
    (void) ngx_http_cache_redis_put(body - 4, len, 4);
}


size_t
ngx_http_cache_redis_vary_len(ngx_str_t *names)
{
    return NGX_HTTP_CACHE_REDIS_PREAMBLE + 4 + 2 + names->len;
}


u_char *
ngx_http_cache_redis_vary_write(u_char *p, uint32_t nonce, ngx_str_t *names)
{
    p = ngx_cpymem(p, NGX_HTTP_CACHE_REDIS_MAGIC, 3);
    *p++ = NGX_HTTP_CACHE_REDIS_VERSION;
    *p++ = NGX_HTTP_CACHE_REDIS_KIND_VARY;

    p = ngx_http_cache_redis_put(p, nonce, 4);
    p = ngx_http_cache_redis_put(p, names->len, 2);

    return ngx_cpymem(p, names->data, names->len);
}


ngx_int_t
ngx_http_cache_redis_entry_parse(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_http_cache_redis_entry_t *e)
{
    u_char      *p, *end;
    uint64_t     v, n;
    ngx_uint_t   i;

    ngx_memzero(e, sizeof(ngx_http_cache_redis_entry_t));

    if (len < NGX_HTTP_CACHE_REDIS_PREAMBLE
        || ngx_memcmp(data, NGX_HTTP_CACHE_REDIS_MAGIC, 3) != 0
        || data[3] != NGX_HTTP_CACHE_REDIS_VERSION)
    {
        return NGX_DECLINED;
    }

    p = data + NGX_HTTP_CACHE_REDIS_PREAMBLE;
    end = data + len;

    e->kind = data[4];

    if (e->kind == NGX_HTTP_CACHE_REDIS_KIND_VARY) {
        if (ngx_http_cache_redis_get(&p, end, 4, &v) != NGX_OK
            || ngx_http_cache_redis_get_str(&p, end, 2, &e->vary) != NGX_OK
            || p != end || e->vary.len == 0)
        {
            return NGX_DECLINED;
        }

        e->nonce = (uint32_t) v;
        return NGX_OK;
    }

    if (e->kind != NGX_HTTP_CACHE_REDIS_KIND_ENTRY) {
        return NGX_DECLINED;
    }

    if (ngx_http_cache_redis_get(&p, end, 2, &v) != NGX_OK
        || v < 100 || v > 999)
    {
        return NGX_DECLINED;
    }

    e->status = (ngx_uint_t) v;

    if (ngx_http_cache_redis_get(&p, end, 8, &v) != NGX_OK
        || v > NGX_MAX_INT32_VALUE * 4ULL)
    {
        return NGX_DECLINED;
    }

    e->stored = (time_t) v;

    if (ngx_http_cache_redis_get(&p, end, 4, &v) != NGX_OK) {
        return NGX_DECLINED;
    }

    e->initial_age = (time_t) v;

    if (ngx_http_cache_redis_get(&p, end, 4, &v) != NGX_OK) {
        return NGX_DECLINED;
    }

    e->lifetime = (time_t) v;

    if (ngx_http_cache_redis_get(&p, end, 4, &v) != NGX_OK) {
        return NGX_DECLINED;
    }

    e->flags = (ngx_uint_t) v;

    if (ngx_http_cache_redis_get(&p, end, 2, &n) != NGX_OK
        || n * 6 > (uint64_t) (end - p))
    {
        return NGX_DECLINED;
    }

    e->nheaders = (ngx_uint_t) n;

    if (n) {
        e->headers = ngx_palloc(pool, n * sizeof(ngx_keyval_t));
        if (e->headers == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < e->nheaders; i++) {
        if (ngx_http_cache_redis_get_str(&p, end, 2, &e->headers[i].key)
            != NGX_OK
            || e->headers[i].key.len == 0
            || ngx_http_cache_redis_get_str(&p, end, 4, &e->headers[i].value)
               != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    if (ngx_http_cache_redis_get_str(&p, end, 4, &e->tags) != NGX_OK
        || ngx_http_cache_redis_get_str(&p, end, 4, &e->body) != NGX_OK
        || p != end)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static u_char *
ngx_http_cache_redis_put(u_char *p, uint64_t v, size_t n)
{
    size_t  i;

    for (i = n; i > 0; i--) {
        p[i - 1] = (u_char) (v & 0xff);
        v >>= 8;
    }

    return p + n;
}


static ngx_int_t
ngx_http_cache_redis_get(u_char **p, u_char *end, size_t n, uint64_t *v)
{
    size_t  i;

    if ((size_t) (end - *p) < n) {
        return NGX_DECLINED;
    }

    *v = 0;

    for (i = 0; i < n; i++) {
        *v = (*v << 8) | (*p)[i];
    }

    *p += n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_redis_get_str(u_char **p, u_char *end, size_t n, ngx_str_t *s)
{
    uint64_t  len;

    if (ngx_http_cache_redis_get(p, end, n, &len) != NGX_OK
        || len > (uint64_t) (end - *p))
    {
        return NGX_DECLINED;
    }

    s->len = (size_t) len;
    s->data = *p;
    *p += len;

    return NGX_OK;
}
