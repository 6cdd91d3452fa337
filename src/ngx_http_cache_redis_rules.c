
/*
 * cache_redis: RFC 9111 for a shared cache.
 *
 * Not stored: a status that is not final, 206, 304; Cache-Control
 * no-store, private or no-cache; Set-Cookie; Vary: *; a request with
 * Authorization unless the response says public, s-maxage or
 * must-revalidate (RFC 9111 3.5); a request with Cache-Control: no-store;
 * a Range request (the body that passes us may be a part).
 *
 * Lifetime: X-Accel-Expires, then s-maxage, max-age, Expires - Date, then
 * cache_redis_valid, then 10% of Date - Last-Modified (at most a day) for
 * the heuristically cacheable statuses (RFC 9110 15.1).
 */


#include "ngx_http_cache_redis_rules.h"

#include <ngx_md5.h>


#define NGX_HTTP_CACHE_REDIS_HEURISTIC_MAX  86400


typedef struct {
    unsigned                         no_store:1;
    unsigned                         no_cache:1;
    unsigned                         private:1;
    unsigned                         public:1;
    unsigned                         must_revalidate:1;
    time_t                           max_age;
    time_t                           s_maxage;
} ngx_http_cache_redis_cc_t;


static void ngx_http_cache_redis_cc_parse(ngx_str_t *value,
    ngx_http_cache_redis_cc_t *cc);
static time_t ngx_http_cache_redis_delta(u_char *p, u_char *end);
static ngx_uint_t ngx_http_cache_redis_heuristic(ngx_uint_t status);
static time_t ngx_http_cache_redis_valid(ngx_http_cache_redis_loc_conf_t *conf,
    ngx_uint_t status);
static ngx_int_t ngx_http_cache_redis_vary_names(ngx_http_request_t *r,
    ngx_str_t *value, ngx_str_t *names);


static ngx_str_t  ngx_http_cache_redis_dropped[] = {
    ngx_string("Connection"),
    ngx_string("Keep-Alive"),
    ngx_string("Proxy-Connection"),
    ngx_string("TE"),
    ngx_string("Trailer"),
    ngx_string("Transfer-Encoding"),
    ngx_string("Upgrade"),
    ngx_string("Proxy-Authenticate"),
    ngx_string("Proxy-Authentication-Info"),
    ngx_string("Set-Cookie"),
    ngx_string("Age"),
    ngx_string("Date"),
    ngx_string("Server"),
    ngx_string("Content-Length"),
    ngx_string("Content-Range"),
    ngx_string("Accept-Ranges"),
    ngx_string("Content-Type"),
    ngx_string("X-Accel-Expires"),
    ngx_string("X-Accel-Redirect"),
    ngx_string("X-Accel-Limit-Rate"),
    ngx_string("X-Accel-Buffering"),
    ngx_string("X-Accel-Charset"),
    ngx_null_string
};


void
ngx_http_cache_redis_origin_headers(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_http_cache_redis_iter_t *it)
{
    ngx_list_part_t  *first;

    first = &r->headers_out.headers.part;

    if (ctx->part == NULL
        || (ctx->part == first && first->nelts < ctx->nelts))
    {
        /* the headers were cleared since (a special response) */
        it->part = first;
        it->i = 0;
        return;
    }

    it->part = ctx->part;
    it->i = ctx->nelts;
}


ngx_table_elt_t *
ngx_http_cache_redis_header_next(ngx_http_cache_redis_iter_t *it)
{
    ngx_table_elt_t  *h;

    for ( ;; ) {
        if (it->part == NULL) {
            return NULL;
        }

        if (it->i >= it->part->nelts) {
            it->part = it->part->next;
            it->i = 0;
            continue;
        }

        h = it->part->elts;
        h = &h[it->i++];

        if (h->hash == 0) {
            continue;
        }

        return h;
    }
}


ngx_table_elt_t *
ngx_http_cache_redis_find_origin(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, const char *name)
{
    size_t                        len;
    ngx_table_elt_t              *h;
    ngx_http_cache_redis_iter_t   it;

    len = ngx_strlen(name);

    ngx_http_cache_redis_origin_headers(r, ctx, &it);

    while ((h = ngx_http_cache_redis_header_next(&it))) {
        if (h->key.len == len
            && ngx_strncasecmp(h->key.data, (u_char *) name, len) == 0)
        {
            return h;
        }
    }

    return NULL;
}


ngx_uint_t
ngx_http_cache_redis_keep_header(ngx_str_t *name)
{
    ngx_str_t  *d;

    for (d = ngx_http_cache_redis_dropped; d->len; d++) {
        if (d->len == name->len
            && ngx_strncasecmp(d->data, name->data, name->len) == 0)
        {
            return 0;
        }
    }

    return 1;
}


ngx_int_t
ngx_http_cache_redis_storable(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx, ngx_http_cache_redis_fresh_t *f)
{
    time_t                        now, age, expires, lm, xae;
    ngx_int_t                     rc;
    ngx_uint_t                    status, has_xae, i;
    ngx_list_part_t              *part;
    ngx_table_elt_t              *h, *date, *hexpires, *hxae, *hlm;
    ngx_http_cache_redis_cc_t     cc, rcc;
    ngx_http_cache_redis_iter_t   it;

    ngx_memzero(f, sizeof(ngx_http_cache_redis_fresh_t));

    status = r->headers_out.status;

    if (status < 200 || status == NGX_HTTP_PARTIAL_CONTENT
        || status == NGX_HTTP_NOT_MODIFIED)
    {
        f->reason = "status";
        return NGX_DECLINED;
    }

    if (r->headers_in.range) {
        f->reason = "Range request";
        return NGX_DECLINED;
    }

    /* the request's Cache-Control: only no-store binds a cache */

    ngx_memzero(&rcc, sizeof(ngx_http_cache_redis_cc_t));

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

        if (h[i].key.len == sizeof("Cache-Control") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               sizeof("Cache-Control") - 1) == 0)
        {
            ngx_http_cache_redis_cc_parse(&h[i].value, &rcc);
        }
    }

    if (rcc.no_store) {
        f->reason = "request Cache-Control: no-store";
        return NGX_DECLINED;
    }

    ngx_memzero(&cc, sizeof(ngx_http_cache_redis_cc_t));
    cc.max_age = -1;
    cc.s_maxage = -1;

    date = r->upstream ? r->upstream->headers_in.date : NULL;
    hexpires = NULL;
    hlm = NULL;
    hxae = r->upstream ? r->upstream->headers_in.x_accel_expires : NULL;
    age = 0;

    ngx_http_cache_redis_origin_headers(r, ctx, &it);

    while ((h = ngx_http_cache_redis_header_next(&it))) {

        switch (h->key.len) {

        case 3:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Age", 3) == 0) {
                age = ngx_http_cache_redis_delta(h->value.data,
                                                 h->value.data + h->value.len);
                if (age < 0) {
                    age = 0;
                }
            }
            break;

        case 4:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Vary", 4) == 0) {
                rc = ngx_http_cache_redis_vary_names(r, &h->value, &f->vary);

                if (rc == NGX_ERROR) {
                    return NGX_ERROR;
                }

                if (rc == NGX_DECLINED) {
                    f->reason = "Vary: *";
                    return NGX_DECLINED;
                }

            } else if (ngx_strncasecmp(h->key.data, (u_char *) "Date", 4)
                       == 0)
            {
                date = h;
            }
            break;

        case 7:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Expires", 7) == 0) {
                hexpires = h;
            }
            break;

        case 10:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Set-Cookie", 10)
                == 0)
            {
                f->reason = "Set-Cookie";
                return NGX_DECLINED;
            }
            break;

        case 13:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Cache-Control", 13)
                == 0)
            {
                ngx_http_cache_redis_cc_parse(&h->value, &cc);

            } else if (ngx_strncasecmp(h->key.data,
                                       (u_char *) "Last-Modified", 13)
                       == 0)
            {
                hlm = h;
            }
            break;

        case 15:
            if (ngx_strncasecmp(h->key.data, (u_char *) "X-Accel-Expires",
                                15)
                == 0)
            {
                hxae = h;
            }
            break;
        }
    }

    if (cc.no_store) {
        f->reason = "Cache-Control: no-store";
        return NGX_DECLINED;
    }

    if (cc.private) {
        f->reason = "Cache-Control: private";
        return NGX_DECLINED;
    }

    if (cc.no_cache) {
        f->reason = "Cache-Control: no-cache";
        return NGX_DECLINED;
    }

    if (r->headers_in.authorization
        && !cc.public && cc.s_maxage < 0 && !cc.must_revalidate)
    {
        f->reason = "Authorization";
        return NGX_DECLINED;
    }

    if (cc.must_revalidate || cc.s_maxage >= 0) {
        f->flags |= NGX_HTTP_CACHE_REDIS_MUST_REVALIDATE;
    }

    /* RFC 9111 4.2.3 */

    now = ngx_time();

    f->date = now;

    if (date) {
        f->date = ngx_parse_http_time(date->value.data, date->value.len);

        if (f->date == NGX_ERROR) {
            f->date = now;
        }
    }

    f->initial_age = ngx_max(ngx_max(now - f->date, 0),
                             age + ngx_max(now - r->start_sec, 0));

    has_xae = 0;
    xae = 0;

    if (hxae) {
        if (hxae->value.len && hxae->value.data[0] == '@') {
            xae = ngx_atotm(hxae->value.data + 1, hxae->value.len - 1);
            if (xae != NGX_ERROR) {
                xae -= now;
                has_xae = 1;
            }

        } else {
            xae = ngx_atotm(hxae->value.data, hxae->value.len);
            has_xae = (xae != NGX_ERROR);
        }

        if (has_xae && xae <= 0) {
            f->reason = "X-Accel-Expires";
            return NGX_DECLINED;
        }
    }

    if (has_xae) {
        /* seconds from now, as nginx reads it */
        f->lifetime = f->initial_age + xae;

    } else if (cc.s_maxage >= 0) {
        f->lifetime = cc.s_maxage;

    } else if (cc.max_age >= 0) {
        f->lifetime = cc.max_age;

    } else if (hexpires) {
        expires = ngx_parse_http_time(hexpires->value.data,
                                      hexpires->value.len);

        /* an invalid Expires is in the past (RFC 9111 5.3) */
        f->lifetime = (expires == NGX_ERROR) ? 0 : expires - f->date;

    } else {
        f->lifetime = ngx_http_cache_redis_valid(ctx->conf, status);

        if (f->lifetime == NGX_ERROR) {
            f->lifetime = 0;

            if (hlm && ngx_http_cache_redis_heuristic(status)) {
                lm = ngx_parse_http_time(hlm->value.data, hlm->value.len);

                if (lm != NGX_ERROR && lm < f->date) {
                    f->lifetime = ngx_min((f->date - lm) / 10,
                                          NGX_HTTP_CACHE_REDIS_HEURISTIC_MAX);
                }
            }

            if (f->lifetime == 0) {
                f->reason = "no freshness information";
                return NGX_DECLINED;
            }
        }
    }

    if (f->lifetime <= f->initial_age) {
        f->reason = "stale already";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


time_t
ngx_http_cache_redis_current_age(ngx_http_cache_redis_entry_t *e, time_t now)
{
    return e->initial_age + ngx_max(now - e->stored, 0);
}


ngx_int_t
ngx_http_cache_redis_variant_key(ngx_http_request_t *r, ngx_str_t *base,
    uint32_t nonce, ngx_str_t *names, ngx_str_t *key)
{
    u_char           *p, *last, *s, *e;
    u_char            digest[16];
    ngx_md5_t         md5;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_md5_init(&md5);

    p = names->data;
    last = names->data + names->len;

    while (p < last) {
        e = ngx_strlchr(p, last, ',');
        if (e == NULL) {
            e = last;
        }

        ngx_md5_update(&md5, p, e - p);
        ngx_md5_update(&md5, ":", 1);

        part = &r->headers_in.headers.part;
        h = part->elts;
        n = 0;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len != (size_t) (e - p)
                || ngx_strncasecmp(h[i].key.data, p, e - p) != 0)
            {
                continue;
            }

            if (n++) {
                ngx_md5_update(&md5, ",", 1);
            }

            /* "gzip, br" and "gzip,br" are one variant */
            for (s = h[i].value.data; s < h[i].value.data + h[i].value.len;
                 s++)
            {
                if (*s != ' ' && *s != '\t') {
                    ngx_md5_update(&md5, s, 1);
                }
            }
        }

        ngx_md5_update(&md5, "\n", 1);
        p = e + 1;
    }

    ngx_md5_final(digest, &md5);

    key->len = base->len + sizeof("#v") - 1 + 8 + 1 + 32;
    key->data = ngx_pnalloc(r->pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, base->data, base->len);
    p = ngx_sprintf(p, "#v%08xD:", nonce);
    ngx_hex_dump(p, digest, 16);

    return NGX_OK;
}


static void
ngx_http_cache_redis_cc_parse(ngx_str_t *value, ngx_http_cache_redis_cc_t *cc)
{
    u_char  *p, *last, *name, *end;
    size_t   len;
    time_t   n;

    p = value->data;
    last = value->data + value->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        name = p;

        while (p < last && *p != '=' && *p != ',' && *p != ' '
               && *p != '\t')
        {
            p++;
        }

        len = p - name;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        end = NULL;
        n = -1;

        if (p < last && *p == '=') {
            p++;

            if (p < last && *p == '"') {
                /* a quoted string: a field list, or a quoted number */
                p++;
                end = p;

                while (end < last && *end != '"') {
                    end++;
                }

                n = ngx_http_cache_redis_delta(p, end);
                p = (end < last) ? end + 1 : end;

            } else {
                end = p;

                while (end < last && *end != ',' && *end != ' '
                       && *end != '\t')
                {
                    end++;
                }

                n = ngx_http_cache_redis_delta(p, end);
                p = end;
            }
        }

        while (p < last && *p != ',') {
            p++;
        }

#define ngx_http_cache_redis_is(s)                                           \
        (len == sizeof(s) - 1 && ngx_strncasecmp(name, (u_char *) s, len) == 0)

        if (ngx_http_cache_redis_is("no-store")) {
            cc->no_store = 1;

        } else if (ngx_http_cache_redis_is("no-cache")) {
            cc->no_cache = 1;

        } else if (ngx_http_cache_redis_is("private")) {
            cc->private = 1;

        } else if (ngx_http_cache_redis_is("public")) {
            cc->public = 1;

        } else if (ngx_http_cache_redis_is("must-revalidate")
                   || ngx_http_cache_redis_is("proxy-revalidate"))
        {
            cc->must_revalidate = 1;

        } else if (ngx_http_cache_redis_is("max-age")) {
            /* an invalid value makes the response stale (RFC 9111 4.2.1) */
            cc->max_age = (n < 0) ? 0 : n;

        } else if (ngx_http_cache_redis_is("s-maxage")) {
            cc->s_maxage = (n < 0) ? 0 : n;
        }

#undef ngx_http_cache_redis_is
    }
}


/* delta-seconds; -1 if invalid; large values capped (RFC 9111 1.2.2) */

static time_t
ngx_http_cache_redis_delta(u_char *p, u_char *end)
{
    time_t  n;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    if (p == end) {
        return -1;
    }

    n = 0;

    for ( /* void */ ; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        if (n < NGX_MAX_INT32_VALUE / 10) {
            n = n * 10 + (*p - '0');

        } else {
            n = NGX_MAX_INT32_VALUE;
        }
    }

    return n;
}


static ngx_uint_t
ngx_http_cache_redis_heuristic(ngx_uint_t status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return 1;
    }

    return 0;
}


/* NGX_ERROR when no cache_redis_valid applies */

static time_t
ngx_http_cache_redis_valid(ngx_http_cache_redis_loc_conf_t *conf,
    ngx_uint_t status)
{
    ngx_uint_t                     i;
    ngx_http_cache_redis_valid_t  *v;

    if (conf->valid == NULL) {
        return NGX_ERROR;
    }

    v = conf->valid->elts;

    for (i = 0; i < conf->valid->nelts; i++) {
        if (v[i].status == 0 || v[i].status == status) {
            return v[i].valid;
        }
    }

    return NGX_ERROR;
}


/* NGX_DECLINED for "*" */

static ngx_int_t
ngx_http_cache_redis_vary_names(ngx_http_request_t *r, ngx_str_t *value,
    ngx_str_t *names)
{
    u_char  *p, *last, *s, *e, *d;
    size_t   len;

    p = value->data;
    last = value->data + value->len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        s = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        e = p;

        while (p < last && *p != ',') {
            p++;
        }

        if (s == e) {
            continue;
        }

        if (e - s == 1 && *s == '*') {
            return NGX_DECLINED;
        }

        len = names->len + (names->len ? 1 : 0) + (e - s);

        d = ngx_pnalloc(r->pool, len);
        if (d == NULL) {
            return NGX_ERROR;
        }

        if (names->len) {
            ngx_memcpy(d, names->data, names->len);
            d[names->len] = ',';
        }

        ngx_strlow(d + len - (e - s), s, e - s);

        names->data = d;
        names->len = len;
    }

    return NGX_OK;
}
