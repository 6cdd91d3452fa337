
/*
 * health metrics: the series health registers, the LOG phase accounting
 * that updates them, and the Prometheus / OpenMetrics text rendering of
 * every series in the core's registry.
 *
 * The LOG handler is registered only when health_metrics is used: without
 * a scrape location nobody could read what it counts.  It does a few
 * atomic adds and one small hash lookup: no allocation, no formatting.
 *
 * Gauges that describe the present (connections, upstream peers, info)
 * are read when scraped, not kept in the zone.
 */


#include "ngx_http_health.h"
#include "ngx_http_health_metrics.h"
#include "ngx_http_scale_metrics.h"


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_health_out_t            out;
    ngx_atomic_int_t                *values;       /* by slot */
    ngx_uint_t                       openmetrics;
} ngx_http_health_render_t;


static ngx_int_t ngx_http_health_log_handler(ngx_http_request_t *r);
static ngx_http_health_peer_t *ngx_http_health_peer_find(
    ngx_http_health_main_conf_t *hmcf, ngx_http_upstream_srv_conf_t *uscf,
    ngx_str_t *name);
static ngx_uint_t ngx_http_health_openmetrics(ngx_http_request_t *r);
static ngx_http_scale_series_t **ngx_http_health_order(
    ngx_http_health_main_conf_t *hmcf, ngx_array_t *series,
    ngx_array_t *families);
static ngx_int_t ngx_http_health_cmp_series(const void *one,
    const void *two);
static ngx_int_t ngx_http_health_values(ngx_http_health_render_t *ctx,
    ngx_http_health_main_conf_t *hmcf, ngx_array_t *series);
static ngx_int_t ngx_http_health_render_family(ngx_http_health_render_t *ctx,
    ngx_http_scale_series_t *s);
static ngx_int_t ngx_http_health_render_series(ngx_http_health_render_t *ctx,
    ngx_http_scale_series_t *s);
static u_char *ngx_http_health_seconds(u_char *p, uint64_t us);
static ngx_int_t ngx_http_health_add(ngx_conf_t *cf, char *family,
    char *help, ngx_uint_t type, ngx_str_t *labels, ngx_uint_t *slot);
static ngx_int_t ngx_http_health_add_peers(ngx_conf_t *cf,
    ngx_http_health_main_conf_t *hmcf);
static ngx_uint_t ngx_http_health_peer_hash(
    ngx_http_upstream_srv_conf_t *uscf, ngx_str_t *name);


static ngx_str_t  ngx_http_health_prometheus_type =
    ngx_string("text/plain; version=0.0.4; charset=utf-8");
static ngx_str_t  ngx_http_health_openmetrics_type =
    ngx_string("application/openmetrics-text; version=1.0.0; charset=utf-8");

/* the name of an upstream's own entry among the peers */
static ngx_str_t  ngx_http_health_upstream = ngx_string("");


/* upstream families, declared also where there is no upstream yet */

#define NGX_HTTP_HEALTH_UPSTREAM_REQUESTS  "nginx_upstream_requests_total"
#define NGX_HTTP_HEALTH_UPSTREAM_REQUESTS_HELP                                \
    "Requests passed to this upstream."
#define NGX_HTTP_HEALTH_PEER_REQUESTS  "nginx_upstream_peer_requests_total"
#define NGX_HTTP_HEALTH_PEER_REQUESTS_HELP                                    \
    "Requests whose last attempt went to this upstream peer."
#define NGX_HTTP_HEALTH_PEER_UP  "nginx_upstream_peer_up"
#define NGX_HTTP_HEALTH_PEER_UP_HELP                                          \
    "Whether nginx's passive checks in this worker see the peer up (1) "      \
    "or down (0)."

static ngx_http_scale_series_t  ngx_http_health_upstream_families[] = {
    { ngx_string(NGX_HTTP_HEALTH_UPSTREAM_REQUESTS),
      ngx_string(NGX_HTTP_HEALTH_UPSTREAM_REQUESTS_HELP),
      ngx_null_string, NGX_HTTP_SCALE_COUNTER, 0 },
    { ngx_string(NGX_HTTP_HEALTH_PEER_REQUESTS),
      ngx_string(NGX_HTTP_HEALTH_PEER_REQUESTS_HELP),
      ngx_null_string, NGX_HTTP_SCALE_COUNTER, 0 },
    { ngx_string(NGX_HTTP_HEALTH_PEER_UP),
      ngx_string(NGX_HTTP_HEALTH_PEER_UP_HELP),
      ngx_null_string, NGX_HTTP_SCALE_GAUGE, 0 }
};

/* by ngx_http_scale_metric_type_e */
static char  *ngx_http_health_types[] = {
    "counter", "gauge", "histogram", "gauge", "gauge"
};


/* LOG phase */

static ngx_int_t
ngx_http_health_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                     status;
    ngx_time_t                    *tp;
    ngx_msec_int_t                 ms;
    ngx_http_health_peer_t        *peer;
    ngx_http_upstream_state_t     *state;
    ngx_http_health_main_conf_t   *hmcf;
    ngx_http_upstream_srv_conf_t  *uscf;

    if (r != r->main) {
        /* log_subrequest on: a subrequest is part of its main request */
        return NGX_OK;
    }

    hmcf = ngx_http_get_module_main_conf(r, ngx_http_health_module);

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status >= 100 && status < 600) {
        ngx_http_scale_counter_add(hmcf->requests_slot[status / 100 - 1], 1);
    }

    /* as $request_time */

    tp = ngx_timeofday();

    ms = (ngx_msec_int_t)
             ((tp->sec - r->start_sec) * 1000 + (tp->msec - r->start_msec));
    ms = ngx_max(ms, 0);

    ngx_http_scale_histogram_observe(hmcf->duration_slot, (uint64_t) ms * 1000);

    if (hmcf->peers_hash == NULL
        || r->upstream == NULL
        || r->upstream->upstream == NULL)
    {
        return NGX_OK;
    }

    uscf = r->upstream->upstream;

    peer = ngx_http_health_peer_find(hmcf, uscf, &ngx_http_health_upstream);

    if (peer) {
        ngx_http_scale_counter_add(peer->requests_slot, 1);
    }

    /* the peer that served the last attempt */

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return NGX_OK;
    }

    state = r->upstream_states->elts;
    state = &state[r->upstream_states->nelts - 1];

    if (state->peer == NULL || state->peer->len == 0) {
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "health: upstream \"%V\" peer \"%V\"",
                   &uscf->host, state->peer);

    peer = ngx_http_health_peer_find(hmcf, uscf, state->peer);

    if (peer) {
        ngx_http_scale_counter_add(peer->requests_slot, 1);
    }

    return NGX_OK;
}


static ngx_http_health_peer_t *
ngx_http_health_peer_find(ngx_http_health_main_conf_t *hmcf,
    ngx_http_upstream_srv_conf_t *uscf, ngx_str_t *name)
{
    ngx_uint_t               i;
    ngx_http_health_peer_t  *peer;

    i = ngx_http_health_peer_hash(uscf, name) & hmcf->peers_mask;

    for ( ;; ) {
        peer = hmcf->peers_hash[i];

        if (peer == NULL) {
            return NULL;
        }

        if (peer->upstream == uscf
            && peer->name.len == name->len
            && ngx_memcmp(peer->name.data, name->data, name->len) == 0)
        {
            return peer;
        }

        i = (i + 1) & hmcf->peers_mask;
    }
}


/* health_metrics: GET and HEAD, and never 503 */

ngx_int_t
ngx_http_health_metrics_handler(ngx_http_request_t *r)
{
    u_char                       *p;
    ngx_int_t                     rc;
    ngx_str_t                    *type;
    ngx_uint_t                    i;
    ngx_array_t                  *series, *families;
    ngx_http_scale_series_t     **order;
    ngx_http_health_render_t      ctx;
    ngx_http_health_main_conf_t  *hmcf;

    rc = ngx_http_health_method(r);
    if (rc != NGX_OK) {
        return rc;
    }

    hmcf = ngx_http_get_module_main_conf(r, ngx_http_health_module);

    ctx.request = r;
    ctx.openmetrics = ngx_http_health_openmetrics(r);
    ngx_http_health_out_init(&ctx.out, r->pool);

    series = ngx_http_scale_series((ngx_cycle_t *) ngx_cycle);
    families = ngx_http_scale_families((ngx_cycle_t *) ngx_cycle);

    if (series && families) {
        order = ngx_http_health_order(hmcf, series, families);
        if (order == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_http_health_values(&ctx, hmcf, series) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (i = 0; i < hmcf->norder; i++) {
            if (i == 0
                || order[i]->family.len != order[i - 1]->family.len
                || ngx_strncmp(order[i]->family.data,
                               order[i - 1]->family.data,
                               order[i]->family.len)
                   != 0)
            {
                if (ngx_http_health_render_family(&ctx, order[i]) != NGX_OK) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }
            }

            /* a declared family without series, or updates that went to
             * the overflow series */
            if (order[i]->slot == 0
                || !ngx_http_scale_slot_fits(order[i]->slot))
            {
                continue;
            }

            if (ngx_http_health_render_series(&ctx, order[i]) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    /* slot 0: updates to series that did not fit in health_zone */

    p = ngx_http_health_out_reserve(&ctx.out, 256);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(p, "# HELP nginx_scale_metrics_overflow%s Updates to "
                    "series that did not fit in health_zone.\n"
                    "# TYPE nginx_scale_metrics_overflow%s counter\n"
                    "nginx_scale_metrics_overflow_total %A\n",
                    ctx.openmetrics ? "" : "_total",
                    ctx.openmetrics ? "" : "_total",
                    ngx_http_scale_slot_value(0));

    if (ctx.openmetrics) {
        p = ngx_cpymem(p, "# EOF\n", sizeof("# EOF\n") - 1);
        type = &ngx_http_health_openmetrics_type;

    } else {
        type = &ngx_http_health_prometheus_type;
    }

    ctx.out.buf->last = p;

    return ngx_http_health_send(r, NGX_HTTP_OK, type, &ctx.out);
}


static ngx_uint_t
ngx_http_health_openmetrics(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1)
               == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "application/openmetrics-text",
                                sizeof("application/openmetrics-text") - 2)
               != NULL)
        {
            return 1;
        }
    }
}


/*
 * The registry holds series in registration order; a family's series must
 * be rendered together.  Sorted once per worker by family name, stable, so
 * series keep their order within a family.  A declared family that has no
 * series is listed by its declaration (slot 0), for its HELP and TYPE.
 */

static ngx_http_scale_series_t **
ngx_http_health_order(ngx_http_health_main_conf_t *hmcf, ngx_array_t *series,
    ngx_array_t *families)
{
    ngx_uint_t                 i, k, n;
    ngx_http_scale_series_t   *s, *f, **order;

    if (hmcf->order) {
        return hmcf->order;
    }

    order = ngx_palloc(ngx_cycle->pool, (series->nelts + families->nelts)
                                        * sizeof(ngx_http_scale_series_t *));
    if (order == NULL) {
        return NULL;
    }

    s = series->elts;

    for (n = 0; n < series->nelts; n++) {
        order[n] = &s[n];
    }

    f = families->elts;

    for (i = 0; i < families->nelts; i++) {

        for (k = 0; k < series->nelts; k++) {
            if (s[k].family.len == f[i].family.len
                && ngx_strncmp(s[k].family.data, f[i].family.data,
                               f[i].family.len)
                   == 0)
            {
                break;
            }
        }

        if (k == series->nelts) {
            order[n++] = &f[i];
        }
    }

    ngx_sort(order, n, sizeof(ngx_http_scale_series_t *),
             ngx_http_health_cmp_series);

    hmcf->order = order;
    hmcf->norder = n;

    return order;
}


static ngx_int_t
ngx_http_health_cmp_series(const void *one, const void *two)
{
    ngx_int_t                 rc;
    ngx_http_scale_series_t  *first, *second;

    first = *(ngx_http_scale_series_t **) one;
    second = *(ngx_http_scale_series_t **) two;

    rc = ngx_strncmp(first->family.data, second->family.data,
                     ngx_min(first->family.len, second->family.len));

    if (rc == 0) {
        rc = (ngx_int_t) first->family.len - (ngx_int_t) second->family.len;
    }

    return rc;
}


/* a snapshot of every slot, with the gauges read now */

static ngx_int_t
ngx_http_health_values(ngx_http_health_render_t *ctx,
    ngx_http_health_main_conf_t *hmcf, ngx_array_t *series)
{
    time_t                          now;
    ngx_uint_t                      i, n, end;
    ngx_atomic_int_t               *v;
    ngx_http_scale_series_t        *s;
    ngx_http_health_peer_t         *peer;
    ngx_http_upstream_rr_peer_t    *p;
    ngx_http_upstream_rr_peers_t   *peers, *list;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    s = series->elts;
    n = 1;

    for (i = 0; i < series->nelts; i++) {
        end = s[i].slot + (s[i].type == NGX_HTTP_SCALE_HISTOGRAM
                           ? NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 3 : 1);
        n = ngx_max(n, end);
    }

    v = ngx_palloc(ctx->request->pool, n * sizeof(ngx_atomic_int_t));
    if (v == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        v[i] = ngx_http_scale_slot_value(i);
    }

    ctx->values = v;

    v[hmcf->info_slot] = 1;

#if (NGX_STAT_STUB)
    v[hmcf->connections_slot[0]] = *ngx_stat_active;
    v[hmcf->connections_slot[1]] = *ngx_stat_reading;
    v[hmcf->connections_slot[2]] = *ngx_stat_writing;
    v[hmcf->connections_slot[3]] = *ngx_stat_waiting;
    v[hmcf->accepted_slot] = *ngx_stat_accepted;
    v[hmcf->handled_slot] = *ngx_stat_handled;
#endif

    if (hmcf->peers_hash == NULL) {
        return NGX_OK;
    }

    now = ngx_time();
    umcf = ngx_http_get_module_main_conf(ctx->request,
                                         ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (!hmcf->readable[i]) {
            continue;
        }

        peers = uscfp[i]->peer.data;

        ngx_http_upstream_rr_peers_rlock(peers);

        for (list = peers; list; list = list->next) {
            for (p = list->peer; p; p = p->next) {
                peer = ngx_http_health_peer_find(hmcf, uscfp[i], &p->name);

                if (peer) {
                    v[peer->up_slot] = ngx_http_health_peer_is_up(p, now);
                }
            }
        }

        ngx_http_upstream_rr_peers_unlock(peers);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_health_render_family(ngx_http_health_render_t *ctx,
    ngx_http_scale_series_t *s)
{
    u_char      *p;
    char        *type;
    ngx_str_t    name;
    ngx_uint_t   i;

    name = s->family;
    type = ngx_http_health_types[s->type];

    /* OpenMetrics names a counter family without its "_total" */

    if (ctx->openmetrics && s->type == NGX_HTTP_SCALE_COUNTER) {
        if (name.len > sizeof("_total") - 1
            && ngx_strncmp(name.data + name.len - (sizeof("_total") - 1),
                           "_total", sizeof("_total") - 1)
               == 0)
        {
            name.len -= sizeof("_total") - 1;

        } else {
            type = "unknown";
        }
    }

    p = ngx_http_health_out_reserve(&ctx->out,
                                    2 * name.len + 2 * s->help.len + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "# HELP %V ", &name);

    for (i = 0; i < s->help.len; i++) {
        switch (s->help.data[i]) {
        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        default:
            *p++ = s->help.data[i];
        }
    }

    ctx->out.buf->last = ngx_sprintf(p, "\n# TYPE %V %s\n", &name, type);

    return NGX_OK;
}


static ngx_int_t
ngx_http_health_render_series(ngx_http_health_render_t *ctx,
    ngx_http_scale_series_t *s)
{
    u_char            *p, *last, le[32];
    size_t             len;
    ngx_uint_t         i;
    ngx_atomic_int_t  *v, cumulative;

    v = &ctx->values[s->slot];
    len = s->family.len + s->labels.len + 32 + NGX_ATOMIC_T_LEN;

    if (s->type != NGX_HTTP_SCALE_HISTOGRAM) {
        p = ngx_http_health_out_reserve(&ctx->out, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (s->labels.len) {
            p = ngx_sprintf(p, "%V{%V} %A\n", &s->family, &s->labels, v[0]);

        } else {
            p = ngx_sprintf(p, "%V %A\n", &s->family, v[0]);
        }

        ctx->out.buf->last = p;

        return NGX_OK;
    }

    /* buckets hold plain counts, then +Inf, count, sum in microseconds */

    p = ngx_http_health_out_reserve(&ctx->out,
                                    (NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 3)
                                    * (len + sizeof(le)));
    if (p == NULL) {
        return NGX_ERROR;
    }

    cumulative = 0;

    for (i = 0; i <= NGX_HTTP_SCALE_HISTOGRAM_BUCKETS; i++) {
        cumulative += v[i];

        if (i < NGX_HTTP_SCALE_HISTOGRAM_BUCKETS) {
            last = ngx_http_health_seconds(le,
                                        ngx_http_scale_histogram_bounds_us[i]);

        } else {
            last = ngx_cpymem(le, "+Inf", sizeof("+Inf") - 1);
        }

        p = ngx_sprintf(p, "%V_bucket{%V%sle=\"%*s\"} %A\n",
                        &s->family, &s->labels, s->labels.len ? "," : "",
                        (size_t) (last - le), le, cumulative);
    }

    last = ngx_http_health_seconds(le,
                   (uint64_t) v[NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 2]);

    if (s->labels.len) {
        p = ngx_sprintf(p, "%V_sum{%V} %*s\n%V_count{%V} %A\n",
                        &s->family, &s->labels, (size_t) (last - le), le,
                        &s->family, &s->labels, cumulative);

    } else {
        p = ngx_sprintf(p, "%V_sum %*s\n%V_count %A\n",
                        &s->family, (size_t) (last - le), le,
                        &s->family, cumulative);
    }

    ctx->out.buf->last = p;

    return NGX_OK;
}


/* microseconds as decimal seconds: 500 -> 0.0005, 2500000 -> 2.5 */

static u_char *
ngx_http_health_seconds(u_char *p, uint64_t us)
{
    u_char  *last;

    p = ngx_sprintf(p, "%uL", us / 1000000);

    us %= 1000000;

    if (us == 0) {
        return p;
    }

    last = ngx_sprintf(p, ".%06uL", us);

    while (last[-1] == '0') {
        last--;
    }

    return last;
}


/* configuration: called from postconfiguration when health_metrics is used */

ngx_int_t
ngx_http_health_metrics_init(ngx_conf_t *cf,
    ngx_http_health_main_conf_t *hmcf)
{
    ngx_uint_t                  i;
    ngx_str_t                   labels;
    ngx_http_handler_pt        *h;
    ngx_http_scale_series_t    *f;
    ngx_http_core_main_conf_t  *cmcf;

    static ngx_str_t  classes[] = {
        ngx_string("status=\"1xx\""), ngx_string("status=\"2xx\""),
        ngx_string("status=\"3xx\""), ngx_string("status=\"4xx\""),
        ngx_string("status=\"5xx\"")
    };

#if (NGX_STAT_STUB)
    static ngx_str_t  states[] = {
        ngx_string("state=\"active\""), ngx_string("state=\"reading\""),
        ngx_string("state=\"writing\""), ngx_string("state=\"waiting\"")
    };
#endif

    ngx_str_set(&labels, "version=\"" NGX_HTTP_SCALE_VERSION "\"");

    if (ngx_http_health_add(cf, "nginx_scale_info",
                            "nginx-scale module version, always 1.",
                            NGX_HTTP_SCALE_GAUGE, &labels, &hmcf->info_slot)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

#if (NGX_STAT_STUB)

    for (i = 0; i < 4; i++) {
        if (ngx_http_health_add(cf, "nginx_connections",
                                "Client connections by state.",
                                NGX_HTTP_SCALE_GAUGE, &states[i],
                                &hmcf->connections_slot[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_str_null(&labels);

    if (ngx_http_health_add(cf, "nginx_connections_accepted_total",
                            "Client connections accepted.",
                            NGX_HTTP_SCALE_COUNTER, &labels,
                            &hmcf->accepted_slot)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_health_add(cf, "nginx_connections_handled_total",
                            "Client connections handled.",
                            NGX_HTTP_SCALE_COUNTER, &labels,
                            &hmcf->handled_slot)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

#endif

    for (i = 0; i < 5; i++) {
        if (ngx_http_health_add(cf, "nginx_http_requests_total",
                                "HTTP requests by status class.",
                                NGX_HTTP_SCALE_COUNTER, &classes[i],
                                &hmcf->requests_slot[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_str_null(&labels);

    if (ngx_http_health_add(cf, "nginx_http_request_duration_seconds",
                            "Request processing time, as $request_time.",
                            NGX_HTTP_SCALE_HISTOGRAM, &labels,
                            &hmcf->duration_slot)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    f = ngx_http_health_upstream_families;

    for (i = 0; i < sizeof(ngx_http_health_upstream_families)
                    / sizeof(ngx_http_scale_series_t); i++)
    {
        if (ngx_http_scale_family_add(cf, &f[i].family, &f[i].help, f[i].type)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_health_add_peers(cf, hmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_health_log_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_health_add(ngx_conf_t *cf, char *family, char *help,
    ngx_uint_t type, ngx_str_t *labels, ngx_uint_t *slot)
{
    ngx_int_t  n;
    ngx_str_t  f, h;

    f.data = (u_char *) family;
    f.len = ngx_strlen(family);
    h.data = (u_char *) help;
    h.len = ngx_strlen(help);

    n = ngx_http_scale_series_add(cf, &f, &h, type, labels);
    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    *slot = n;

    return NGX_OK;
}


/*
 * Every peer of every upstream whose peers health reads, backups included,
 * as configured: the upstream module's init_main_conf has built the peer
 * lists by now.
 */

static ngx_int_t
ngx_http_health_add_peers(ngx_conf_t *cf, ngx_http_health_main_conf_t *hmcf)
{
    u_char                         *p;
    ngx_str_t                       upstream, name, labels;
    ngx_uint_t                      i, k, size;
    ngx_http_health_peer_t         *peer;
    ngx_http_upstream_rr_peer_t    *rp;
    ngx_http_upstream_rr_peers_t   *peers;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        if (ngx_http_scale_label_escape(cf->pool, &uscfp[i]->host, &upstream)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* every upstream{} block: its own count, whatever its balancer */

        if (uscfp[i]->srv_conf) {
            peer = ngx_array_push(&hmcf->peers);
            if (peer == NULL) {
                return NGX_ERROR;
            }

            peer->upstream = uscfp[i];
            peer->name = ngx_http_health_upstream;
            peer->up_slot = 0;

            p = ngx_pnalloc(cf->pool, upstream.len + sizeof("upstream=\"\""));
            if (p == NULL) {
                return NGX_ERROR;
            }

            labels.data = p;
            labels.len = ngx_sprintf(p, "upstream=\"%V\"", &upstream) - p;

            if (ngx_http_health_add(cf, NGX_HTTP_HEALTH_UPSTREAM_REQUESTS,
                                    NGX_HTTP_HEALTH_UPSTREAM_REQUESTS_HELP,
                                    NGX_HTTP_SCALE_COUNTER, &labels,
                                    &peer->requests_slot)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (!hmcf->readable[i]) {
            continue;
        }

        for (peers = uscfp[i]->peer.data; peers; peers = peers->next) {
            for (rp = peers->peer; rp; rp = rp->next) {

                peer = ngx_array_push(&hmcf->peers);
                if (peer == NULL) {
                    return NGX_ERROR;
                }

                peer->upstream = uscfp[i];
                peer->name = rp->name;

                if (ngx_http_scale_label_escape(cf->pool, &rp->name, &name)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                p = ngx_pnalloc(cf->pool, upstream.len + name.len
                                          + sizeof("upstream=\"\",peer=\"\""));
                if (p == NULL) {
                    return NGX_ERROR;
                }

                labels.data = p;
                labels.len = ngx_sprintf(p, "upstream=\"%V\",peer=\"%V\"",
                                         &upstream, &name)
                             - p;

                if (ngx_http_health_add(cf, NGX_HTTP_HEALTH_PEER_REQUESTS,
                                        NGX_HTTP_HEALTH_PEER_REQUESTS_HELP,
                                        NGX_HTTP_SCALE_COUNTER, &labels,
                                        &peer->requests_slot)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                if (ngx_http_health_add(cf, NGX_HTTP_HEALTH_PEER_UP,
                                        NGX_HTTP_HEALTH_PEER_UP_HELP,
                                        NGX_HTTP_SCALE_GAUGE, &labels,
                                        &peer->up_slot)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    if (hmcf->peers.nelts == 0) {
        return NGX_OK;
    }

    /* open addressing, at most half full */

    for (size = 8; size < 2 * hmcf->peers.nelts; size *= 2) {
        /* void */
    }

    hmcf->peers_hash = ngx_pcalloc(cf->pool,
                                   size * sizeof(ngx_http_health_peer_t *));
    if (hmcf->peers_hash == NULL) {
        return NGX_ERROR;
    }

    hmcf->peers_mask = size - 1;
    peer = hmcf->peers.elts;

    for (k = 0; k < hmcf->peers.nelts; k++) {
        i = ngx_http_health_peer_hash(peer[k].upstream, &peer[k].name)
            & hmcf->peers_mask;

        while (hmcf->peers_hash[i]) {
            i = (i + 1) & hmcf->peers_mask;
        }

        hmcf->peers_hash[i] = &peer[k];
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_health_peer_hash(ngx_http_upstream_srv_conf_t *uscf, ngx_str_t *name)
{
    return ngx_hash_key(name->data, name->len)
           + (ngx_uint_t) ((uintptr_t) uscf >> 4);
}
