
/*
 * cache_redis: answering from an entry.  Headers that nginx's own filters
 * look at are set where they look (content type, ETag, Last-Modified,
 * Content-Encoding, Location, Date), so a HIT is treated as any response.
 */


#include "ngx_http_cache_redis_hit.h"


static ngx_table_elt_t *ngx_http_cache_redis_push(ngx_http_request_t *r,
    ngx_keyval_t *kv);


ngx_int_t
ngx_http_cache_redis_hit_headers(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    u_char                        *p;
    ngx_uint_t                     i;
    ngx_keyval_t                  *kv, age;
    ngx_table_elt_t               *h;
    ngx_http_cache_redis_entry_t  *e;

    e = &ctx->entry;

    r->headers_out.status = e->status;
    r->headers_out.content_length_n = e->body.len;
    r->headers_out.last_modified_time = -1;

    kv = e->headers;

    for (i = 0; i < e->nheaders; i++) {

        if (kv[i].key.len == sizeof("Content-Type") - 1
            && ngx_strncasecmp(kv[i].key.data, (u_char *) "Content-Type",
                               kv[i].key.len) == 0)
        {
            r->headers_out.content_type = kv[i].value;

            p = ngx_strlchr(kv[i].value.data,
                            kv[i].value.data + kv[i].value.len, ';');

            r->headers_out.content_type_len = p ? (size_t)
                                                  (p - kv[i].value.data)
                                                : kv[i].value.len;
            r->headers_out.content_type_lowcase = NULL;
            continue;
        }

        h = ngx_http_cache_redis_push(r, &kv[i]);
        if (h == NULL) {
            return NGX_ERROR;
        }

        switch (h->key.len) {

        case 4:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Date", 4) == 0) {
                r->headers_out.date = h;

            } else if (ngx_strncasecmp(h->key.data, (u_char *) "ETag", 4)
                       == 0)
            {
                r->headers_out.etag = h;
            }
            break;

        case 7:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Expires", 7) == 0) {
                r->headers_out.expires = h;
            }
            break;

        case 8:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Location", 8) == 0) {
                r->headers_out.location = h;
            }
            break;

        case 13:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Last-Modified", 13)
                == 0)
            {
                r->headers_out.last_modified = h;
                r->headers_out.last_modified_time =
                            ngx_parse_http_time(h->value.data, h->value.len);
            }
            break;

        case 16:
            if (ngx_strncasecmp(h->key.data, (u_char *) "Content-Encoding",
                                16)
                == 0)
            {
                r->headers_out.content_encoding = h;
            }
            break;
        }
    }

    ngx_str_set(&age.key, "Age");

    age.value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (age.value.data == NULL) {
        return NGX_ERROR;
    }

    age.value.len = ngx_sprintf(age.value.data, "%T", ctx->age)
                    - age.value.data;

    if (ngx_http_cache_redis_push(r, &age) == NULL) {
        return NGX_ERROR;
    }

    r->allow_ranges = (e->status == NGX_HTTP_OK);

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_redis_hit_send(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_cache_redis_hit_headers(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->entry.body.len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_cache_redis_hit_body(r, ctx);
}


ngx_int_t
ngx_http_cache_redis_hit_body(ngx_http_request_t *r,
    ngx_http_cache_redis_ctx_t *ctx)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->entry.body.data;
    b->last = ctx->entry.body.data + ctx->entry.body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_table_elt_t *
ngx_http_cache_redis_push(ngx_http_request_t *r, ngx_keyval_t *kv)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key = kv->key;
    h->value = kv->value;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return h;
}
