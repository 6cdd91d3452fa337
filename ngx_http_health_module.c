
/*
 * health: liveness, readiness and Prometheus metrics responders.
 *
 * Readiness reads state this worker already keeps (the core's periodic
 * PING per redis_pool, nginx's passive upstream checks, a drain file
 * stat()ed at most once a second), so a probe never waits on anything.
 * Metrics and their LOG phase accounting live in ngx_http_health_metrics.c.
 */


#include "ngx_http_health.h"
#include "ngx_http_health_metrics.h"
#include "ngx_http_scale_redis.h"
#include "ngx_http_scale_metrics.h"

#if (NGX_HAVE_DLOPEN)
#include <dlfcn.h>
#endif


typedef struct {
    ngx_str_t                        kind;         /* "redis", "upstream" */
    ngx_str_t                        name;         /* pool, upstream, or "" */
    ngx_str_t                        type;         /* componentType */
    ngx_uint_t                       pass;
    ngx_int_t                        value;        /* observedValue */
    ngx_str_t                        unit;         /* "": no observedValue */
    ngx_pid_t                        id;           /* componentId, or 0 */
    time_t                           time;
    ngx_str_t                        output;       /* why it fails */
} ngx_http_health_check_t;


static ngx_int_t ngx_http_health_live_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_health_ready_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_health_checks(ngx_http_request_t *r,
    ngx_array_t *checks);
static ngx_uint_t ngx_http_health_draining(ngx_http_health_main_conf_t *hmcf);
static ngx_uint_t ngx_http_health_dir_has(ngx_http_health_main_conf_t *hmcf);
static ngx_int_t ngx_http_health_ready_json(ngx_http_request_t *r,
    ngx_array_t *checks, ngx_uint_t pass);
static ngx_int_t ngx_http_health_ready_text(ngx_http_request_t *r,
    ngx_array_t *checks, ngx_uint_t pass);
static u_char *ngx_http_health_json_str(u_char *p, ngx_str_t *s);
static u_char *ngx_http_health_iso8601(u_char *p, time_t t);
static ngx_uint_t ngx_http_health_arg_present(ngx_http_request_t *r,
    char *name, size_t len);

static void *ngx_http_health_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_health_handler_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_health_ready_upstream(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_health_drain_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_health_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_health_upstream_peers(
    ngx_http_upstream_srv_conf_t *uscf);
static ngx_int_t ngx_http_health_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_health_init_module(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_health_commands[] = {

    { ngx_string("health_live"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_health_handler_set,
      0,
      0,
      ngx_http_health_live_handler },

    { ngx_string("health_ready"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_health_handler_set,
      0,
      0,
      ngx_http_health_ready_handler },

    { ngx_string("health_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_health_handler_set,
      0,
      0,
      ngx_http_health_metrics_handler },

    { ngx_string("health_ready_upstream"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_health_ready_upstream,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("health_drain_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_health_drain_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("health_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_health_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_health_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_health_init,                  /* postconfiguration */

    ngx_http_health_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_health_module = {
    NGX_MODULE_V1,
    &ngx_http_health_module_ctx,           /* module context */
    ngx_http_health_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_health_init_module,           /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* when the master started; survives reloads, the module stays loaded */
static time_t  ngx_http_health_start;

static ngx_str_t  ngx_http_health_json_type =
    ngx_string("application/health+json");
static ngx_str_t  ngx_http_health_text_type =
    ngx_string("text/plain; charset=utf-8");


static ngx_int_t
ngx_http_health_live_handler(ngx_http_request_t *r)
{
    u_char                 *p;
    ngx_int_t               rc;
    ngx_http_health_out_t   out;

    rc = ngx_http_health_method(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_health_out_init(&out, r->pool);

    p = ngx_http_health_out_reserve(&out, 128 + sizeof(NGINX_VERSION)
                                    + sizeof(NGX_HTTP_SCALE_VERSION)
                                    + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.buf->last = ngx_sprintf(p, "{\"status\":\"pass\",\"version\":\""
                                NGX_HTTP_SCALE_VERSION "\",\"nginx\":\""
                                NGINX_VERSION "\",\"uptime_seconds\":%T}\n",
                                ngx_time() - ngx_http_health_start);

    return ngx_http_health_send(r, NGX_HTTP_OK, &ngx_http_health_json_type,
                                &out);
}


static ngx_int_t
ngx_http_health_ready_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_uint_t                i, pass;
    ngx_array_t               checks;
    ngx_http_health_check_t  *check;

    rc = ngx_http_health_method(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_array_init(&checks, r->pool, 8, sizeof(ngx_http_health_check_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_health_checks(r, &checks) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pass = 1;
    check = checks.elts;

    for (i = 0; i < checks.nelts; i++) {
        if (!check[i].pass) {
            pass = 0;
        }
    }

    if (ngx_http_health_arg_present(r, "verbose", sizeof("verbose") - 1)) {
        return ngx_http_health_ready_text(r, &checks, pass);
    }

    return ngx_http_health_ready_json(r, &checks, pass);
}


static ngx_int_t
ngx_http_health_checks(ngx_http_request_t *r, ngx_array_t *checks)
{
    time_t                          now;
    u_char                         *p;
    ngx_uint_t                      i, n, up, total;
    ngx_cycle_t                    *cycle;
    ngx_http_health_check_t        *check;
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers, *list;
    ngx_http_health_upstream_t     *u;
    ngx_http_scale_redis_pool_t    *pool;
    ngx_http_health_main_conf_t    *hmcf;
    ngx_http_scale_redis_state_t    state;

    hmcf = ngx_http_get_module_main_conf(r, ngx_http_health_module);
    cycle = (ngx_cycle_t *) ngx_cycle;
    now = ngx_time();

    n = ngx_http_scale_redis_npools(cycle);

    for (i = 0; i < n; i++) {
        pool = ngx_http_scale_redis_pool_at(cycle, i);

        /* a pool only defined, or named by a zone nobody applies: no check */
        if (!ngx_http_scale_redis_pool_in_use(pool)) {
            continue;
        }

        ngx_http_scale_redis_pool_state(pool, &state);

        check = ngx_array_push(checks);
        if (check == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(check, sizeof(ngx_http_health_check_t));

        ngx_str_set(&check->kind, "redis");
        check->name = *ngx_http_scale_redis_pool_name(pool);
        ngx_str_set(&check->type, "datastore");
        check->pass = state.up;
        check->value = state.latency;
        ngx_str_set(&check->unit, "ms");

        /* "since" is ngx_current_msec: a monotonic clock */
        check->time = now - (time_t) ((ngx_current_msec - state.since) / 1000);

        if (!state.up) {
            check->output = state.error;

            if (check->output.len == 0) {
                ngx_str_set(&check->output, "down");
            }
        }
    }

    u = hmcf->upstreams.elts;

    for (i = 0; i < hmcf->upstreams.nelts; i++) {
        up = 0;
        total = 0;
        peers = u[i].upstream->peer.data;

        if (peers) {
            ngx_http_upstream_rr_peers_rlock(peers);

            for (list = peers; list; list = list->next) {
                for (peer = list->peer; peer; peer = peer->next) {
                    total++;
                    up += ngx_http_health_peer_is_up(peer, now);
                }
            }

            ngx_http_upstream_rr_peers_unlock(peers);
        }

        check = ngx_array_push(checks);
        if (check == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(check, sizeof(ngx_http_health_check_t));

        ngx_str_set(&check->kind, "upstream");
        check->name = u[i].name;
        ngx_str_set(&check->type, "component");
        check->pass = (up >= u[i].min);
        check->value = up;
        ngx_str_set(&check->unit, "peers");
        check->time = now;

        if (!check->pass) {
            p = ngx_pnalloc(r->pool, 3 * NGX_INT_T_LEN + 32);
            if (p == NULL) {
                return NGX_ERROR;
            }

            check->output.data = p;
            check->output.len = ngx_sprintf(p, "%ui of %ui peers up, min=%ui",
                                            up, total, u[i].min)
                                - p;
        }
    }

    if (hmcf->drain_file.len) {
        check = ngx_array_push(checks);
        if (check == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(check, sizeof(ngx_http_health_check_t));

        ngx_str_set(&check->kind, "drain");
        ngx_str_set(&check->type, "system");
        check->pass = !ngx_http_health_draining(hmcf);
        check->time = hmcf->drain_since;

        if (!check->pass) {
            ngx_str_set(&check->output, "drain file exists");
        }
    }

    check = ngx_array_push(checks);
    if (check == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(check, sizeof(ngx_http_health_check_t));

    ngx_str_set(&check->kind, "worker");
    ngx_str_set(&check->type, "system");
    check->pass = !(ngx_exiting || ngx_quit || ngx_terminate);
    check->id = ngx_pid;
    check->time = now;

    if (!check->pass) {
        ngx_str_set(&check->output, "worker is shutting down");
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_health_draining(ngx_http_health_main_conf_t *hmcf)
{
    time_t           now;
    ngx_uint_t       draining;
    ngx_file_info_t  fi;

    now = ngx_time();

    if (hmcf->drain_checked == now) {
        return hmcf->draining;
    }

    hmcf->drain_checked = now;

    if (ngx_file_info(hmcf->drain_file.data, &fi) != NGX_FILE_ERROR) {
        draining = 1;

    } else if (ngx_errno == NGX_EACCES && hmcf->drain_dir != -1) {
        draining = ngx_http_health_dir_has(hmcf);

    } else {
        draining = 0;
    }

    if (draining != hmcf->draining || hmcf->drain_since == 0) {
        hmcf->draining = draining;
        hmcf->drain_since = now;
    }

    return draining;
}


/*
 * A worker that runs as "user" may not search the directory; the master
 * opened it, and reading an open directory needs no permission.
 */

static ngx_uint_t
ngx_http_health_dir_has(ngx_http_health_main_conf_t *hmcf)
{
    int             fd;
    DIR            *dir;
    size_t          len;
    ngx_uint_t      found;
    struct dirent  *de;

    fd = dup(hmcf->drain_dir);
    if (fd == -1) {
        return 0;
    }

    dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return 0;
    }

    rewinddir(dir);

    found = 0;
    len = hmcf->drain_name.len;

    while ((de = readdir(dir)) != NULL) {
        if (ngx_strlen(de->d_name) == len
            && ngx_strncmp(de->d_name, hmcf->drain_name.data, len) == 0)
        {
            found = 1;
            break;
        }
    }

    closedir(dir);

    return found;
}


static ngx_int_t
ngx_http_health_ready_json(ngx_http_request_t *r, ngx_array_t *checks,
    ngx_uint_t pass)
{
    u_char                   *p;
    size_t                    len;
    ngx_uint_t                i;
    ngx_http_health_out_t     out;
    ngx_http_health_check_t  *check;

    ngx_http_health_out_init(&out, r->pool);

    p = ngx_http_health_out_reserve(&out, 64);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.buf->last = ngx_sprintf(p, "{\"status\":\"%s\",\"checks\":{",
                                pass ? "pass" : "fail");

    check = checks->elts;

    for (i = 0; i < checks->nelts; i++) {
        len = 256 + check[i].kind.len
              + 6 * (check[i].name.len + check[i].output.len);

        p = ngx_http_health_out_reserve(&out, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (i) {
            *p++ = ',';
        }

        *p++ = '"';
        p = ngx_cpymem(p, check[i].kind.data, check[i].kind.len);

        if (check[i].name.len) {
            *p++ = ':';
            p = (u_char *) ngx_escape_json(p, check[i].name.data,
                                           check[i].name.len);
        }

        p = ngx_sprintf(p, "\":[{\"componentType\":\"%V\",\"status\":\"%s\"",
                        &check[i].type, check[i].pass ? "pass" : "fail");

        if (check[i].id) {
            p = ngx_sprintf(p, ",\"componentId\":\"%P\"", check[i].id);
        }

        if (check[i].unit.len) {
            p = ngx_sprintf(p, ",\"observedValue\":%i,\"observedUnit\":\"%V\"",
                            check[i].value, &check[i].unit);
        }

        p = ngx_cpymem(p, ",\"time\":\"", sizeof(",\"time\":\"") - 1);
        p = ngx_http_health_iso8601(p, check[i].time);
        *p++ = '"';

        if (check[i].output.len) {
            p = ngx_cpymem(p, ",\"output\":", sizeof(",\"output\":") - 1);
            p = ngx_http_health_json_str(p, &check[i].output);
        }

        *p++ = '}';
        *p++ = ']';

        out.buf->last = p;
    }

    p = ngx_http_health_out_reserve(&out, 4);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.buf->last = ngx_cpymem(p, "}}\n", 3);

    return ngx_http_health_send(r, pass ? NGX_HTTP_OK
                                        : NGX_HTTP_SERVICE_UNAVAILABLE,
                                &ngx_http_health_json_type, &out);
}


/* kube-apiserver's /readyz?verbose */

static ngx_int_t
ngx_http_health_ready_text(ngx_http_request_t *r, ngx_array_t *checks,
    ngx_uint_t pass)
{
    u_char                   *p;
    ngx_uint_t                i;
    ngx_http_health_out_t     out;
    ngx_http_health_check_t  *check;

    ngx_http_health_out_init(&out, r->pool);

    check = checks->elts;

    for (i = 0; i < checks->nelts; i++) {
        p = ngx_http_health_out_reserve(&out, 32 + check[i].kind.len
                                              + check[i].name.len
                                              + check[i].output.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(p, check[i].pass ? "[+]" : "[-]", 3);
        p = ngx_cpymem(p, check[i].kind.data, check[i].kind.len);

        if (check[i].name.len) {
            *p++ = ':';
            p = ngx_cpymem(p, check[i].name.data, check[i].name.len);
        }

        if (check[i].pass) {
            p = ngx_cpymem(p, " ok\n", sizeof(" ok\n") - 1);

        } else {
            p = ngx_sprintf(p, " failed: %V\n", &check[i].output);
        }

        out.buf->last = p;
    }

    p = ngx_http_health_out_reserve(&out, 32);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.buf->last = ngx_sprintf(p, "readyz check %s\n",
                                pass ? "passed" : "failed");

    return ngx_http_health_send(r, pass ? NGX_HTTP_OK
                                        : NGX_HTTP_SERVICE_UNAVAILABLE,
                                &ngx_http_health_text_type, &out);
}


/* needs 6 * s->len + 2 bytes */

static u_char *
ngx_http_health_json_str(u_char *p, ngx_str_t *s)
{
    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, s->data, s->len);
    *p++ = '"';

    return p;
}


static u_char *
ngx_http_health_iso8601(u_char *p, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/* "?verbose", "?a=1&verbose=1": ngx_http_arg() wants a "=" */

static ngx_uint_t
ngx_http_health_arg_present(ngx_http_request_t *r, char *name, size_t len)
{
    u_char  *p, *last;

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        if ((size_t) (last - p) >= len
            && ngx_strncmp(p, name, len) == 0
            && (p + len == last || p[len] == '&' || p[len] == '='))
        {
            return 1;
        }

        p = ngx_strlchr(p, last, '&');
        if (p == NULL) {
            break;
        }

        p++;
    }

    return 0;
}


ngx_int_t
ngx_http_health_method(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    static ngx_str_t  allow = ngx_string("Allow");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_scale_add_header(r, &allow, (u_char *) "GET, HEAD",
                                      sizeof("GET, HEAD") - 1)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return NGX_OK;
}


void
ngx_http_health_out_init(ngx_http_health_out_t *out, ngx_pool_t *pool)
{
    out->pool = pool;
    out->first = NULL;
    out->last = &out->first;
    out->buf = NULL;
}


/* room for size bytes at out->buf->last; the caller moves last */

u_char *
ngx_http_health_out_reserve(ngx_http_health_out_t *out, size_t size)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (out->buf && (size_t) (out->buf->end - out->buf->last) >= size) {
        return out->buf->last;
    }

    b = ngx_create_temp_buf(out->pool, ngx_max(size, NGX_HTTP_HEALTH_BUF_SIZE));
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(out->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *out->last = cl;
    out->last = &cl->next;
    out->buf = b;

    return b->last;
}


ngx_int_t
ngx_http_health_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_http_health_out_t *out)
{
    off_t         len;
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    static ngx_str_t  cache_control = ngx_string("Cache-Control");

    len = 0;

    for (cl = out->first; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;
    }

    if (out->buf) {
        out->buf->last_buf = (r == r->main) ? 1 : 0;
        out->buf->last_in_chain = 1;
    }

    if (ngx_http_scale_add_header(r, &cache_control, (u_char *) "no-store",
                                  sizeof("no-store") - 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || out->first == NULL)
    {
        return rc;
    }

    return ngx_http_output_filter(r, out->first);
}


/* passive checks, as ngx_http_upstream_get_peer() sees them */

ngx_uint_t
ngx_http_health_peer_is_up(ngx_http_upstream_rr_peer_t *peer, time_t now)
{
    if (peer->down) {
        return 0;
    }

    if (peer->max_fails
        && peer->fails >= peer->max_fails
        && now - peer->checked <= peer->fail_timeout)
    {
        return 0;
    }

    return 1;
}


/*
 * Whether the upstream's peer.data is nginx's round-robin peers, the only
 * peers health reads.  nginx's own balancers (round robin, hash, ip_hash,
 * least_conn, random, and keepalive or zone on top of them) all keep them;
 * a third-party balancer keeps whatever it likes.  Known at configuration
 * time, once nginx's upstream module has initialised every upstream:
 *
 *   - no balancer directive, or init_round_robin itself: round robin;
 *   - a balancer whose code is not in nginx's own executable (a module
 *     loaded with load_module): not;
 *   - a balancer that does not take max_conns=: not; nginx keeps max_conns
 *     in the round-robin peers, and all its own balancers take it;
 *   - peers whose name is not the upstream's: not; init_round_robin points
 *     it there, and this catches keepalive on top of a third-party
 *     balancer, whose init keepalive calls.
 *
 * A balancer compiled into nginx that passes these and keeps other data
 * is not recognised.
 */

ngx_uint_t
ngx_http_health_peers_readable(ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_http_upstream_init_pt      init;
    ngx_http_upstream_rr_peers_t  *peers;
#if (NGX_HAVE_DLOPEN)
    Dl_info                        balancer, nginx;
#endif

    init = uscf->peer.init_upstream;
    peers = uscf->peer.data;

    if (peers == NULL) {
        return 0;
    }

    if (init == NULL || init == ngx_http_upstream_init_round_robin) {
        return 1;
    }

#if (NGX_HAVE_DLOPEN)

    if (dladdr((void *) (uintptr_t) init, &balancer) == 0
        || dladdr((void *) (uintptr_t) ngx_http_upstream_init_round_robin,
                  &nginx)
           == 0
        || balancer.dli_fbase != nginx.dli_fbase)
    {
        return 0;
    }

#endif

    if (!(uscf->flags & NGX_HTTP_UPSTREAM_MAX_CONNS)) {
        return 0;
    }

    return peers->name == &uscf->host;
}


static void *
ngx_http_health_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_health_main_conf_t  *hmcf;

    hmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_health_main_conf_t));
    if (hmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     hmcf->drain_file = { 0, NULL };
     *     hmcf->metrics = 0;
     *     hmcf->peers_hash = NULL;
     *     hmcf->order = NULL;
     */

    hmcf->drain_dir = -1;

    if (ngx_array_init(&hmcf->upstreams, cf->pool, 2,
                       sizeof(ngx_http_health_upstream_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&hmcf->peers, cf->pool, 8,
                       sizeof(ngx_http_health_peer_t))
        != NGX_OK)
    {
        return NULL;
    }

    return hmcf;
}


/* health_live, health_ready, health_metrics: cmd->post is the handler */

static char *
ngx_http_health_handler_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_health_main_conf_t  *hmcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_health_live_handler
        || clcf->handler == ngx_http_health_ready_handler
        || clcf->handler == ngx_http_health_metrics_handler)
    {
        return "is duplicate";
    }

    clcf->handler = (ngx_http_handler_pt) cmd->post;

    if (clcf->handler == ngx_http_health_metrics_handler) {
        hmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_health_module);
        hmcf->metrics = 1;
    }

    return NGX_CONF_OK;
}


/* health_ready_upstream NAME [min=N] */

static char *
ngx_http_health_ready_upstream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_health_main_conf_t *hmcf = conf;

    ngx_int_t                    n;
    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_http_health_upstream_t  *u;

    value = cf->args->elts;

    u = hmcf->upstreams.elts;

    for (i = 0; i < hmcf->upstreams.nelts; i++) {
        if (u[i].name.len == value[1].len
            && ngx_strncmp(u[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate health_ready_upstream \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    u = ngx_array_push(&hmcf->upstreams);
    if (u == NULL) {
        return NGX_CONF_ERROR;
    }

    u->name = value[1];
    u->min = 1;
    u->upstream = NULL;
    u->file = cf->conf_file->file.name.data;
    u->line = cf->conf_file->line;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "min=", 4) == 0) {
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);
            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid min \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            u->min = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_health_drain_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_health_main_conf_t *hmcf = conf;

    int                       fd;
    u_char                   *p, *last;
    ngx_str_t                *value, name;
    ngx_pool_cleanup_t       *cln;
    ngx_pool_cleanup_file_t  *clnf;

    if (hmcf->drain_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_drain_file \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &name, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, name.len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    hmcf->drain_file.len = name.len;
    hmcf->drain_file.data = p;

    *ngx_cpymem(p, name.data, name.len) = '\0';

    /* the directory, for workers that may not search it */

    for (last = p + name.len - 1; last > p && *last != '/'; last--) {
        /* void */
    }

    if (last == p) {
        return NGX_CONF_OK;
    }

    hmcf->drain_name.data = last + 1;
    hmcf->drain_name.len = p + name.len - (last + 1);

    *last = '\0';
    fd = open((char *) p, O_RDONLY|O_DIRECTORY);
    *last = '/';

    if (fd == -1) {
        return NGX_CONF_OK;
    }

    cln = ngx_pool_cleanup_add(cf->pool, sizeof(ngx_pool_cleanup_file_t));
    if (cln == NULL) {
        close(fd);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_pool_cleanup_file;
    clnf = cln->data;

    clnf->fd = fd;
    clnf->name = p;
    clnf->log = cf->log;

    hmcf->drain_dir = fd;

    return NGX_CONF_OK;
}


static char *
ngx_http_health_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t     size;
    ngx_str_t  *value;

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_scale_metrics_zone_size(cf, size);
}


/* the peers as configured, backup and down ones too; NGX_DECLINED: unknown */

static ngx_int_t
ngx_http_health_upstream_peers(ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_int_t                    n;
    ngx_uint_t                   i;
    ngx_http_upstream_server_t  *server;

    if (uscf->servers == NULL) {
        return NGX_DECLINED;
    }

    n = 0;
    server = uscf->servers->elts;

    for (i = 0; i < uscf->servers->nelts; i++) {
        if (server[i].naddrs == 0) {
            /* resolved at run time */
            return NGX_DECLINED;
        }

        n += server[i].naddrs;
    }

    return n;
}


static ngx_int_t
ngx_http_health_init(ngx_conf_t *cf)
{
    ngx_int_t                       n;
    ngx_uint_t                      i, j;
    ngx_http_health_upstream_t     *u;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_health_main_conf_t    *hmcf;
    ngx_http_upstream_main_conf_t  *umcf;

    hmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_health_module);
    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    uscfp = umcf->upstreams.elts;

    hmcf->readable = ngx_pcalloc(cf->pool, umcf->upstreams.nelts + 1);
    if (hmcf->readable == NULL) {
        return NGX_ERROR;
    }

    for (j = 0; j < umcf->upstreams.nelts; j++) {
        hmcf->readable[j] = (u_char) ngx_http_health_peers_readable(uscfp[j]);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                       "health: upstream \"%V\" peers %s", &uscfp[j]->host,
                       hmcf->readable[j] ? "read" : "not read");
    }

    u = hmcf->upstreams.elts;

    for (i = 0; i < hmcf->upstreams.nelts; i++) {

        for (j = 0; j < umcf->upstreams.nelts; j++) {
            if (uscfp[j]->srv_conf
                && uscfp[j]->host.len == u[i].name.len
                && ngx_strncmp(uscfp[j]->host.data, u[i].name.data,
                               u[i].name.len)
                   == 0)
            {
                u[i].upstream = uscfp[j];
                break;
            }
        }

        if (u[i].upstream == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown upstream \"%V\" in health_ready_upstream "
                          "in %s:%ui", &u[i].name, u[i].file, u[i].line);
            return NGX_ERROR;
        }

        if (!hmcf->readable[j]) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "upstream \"%V\" in health_ready_upstream uses "
                          "a load balancer other than nginx's own, whose "
                          "peers health cannot read, in %s:%ui",
                          &u[i].name, u[i].file, u[i].line);
            return NGX_ERROR;
        }

        /*
         * more than all peers: never ready.  Peers marked down count, as
         * they do at run time: marking one down must not fail a reload.
         */

        n = ngx_http_health_upstream_peers(u[i].upstream);

        if (n != NGX_DECLINED && u[i].min > (ngx_uint_t) n) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "health_ready_upstream \"%V\" min=%ui is more "
                          "than the %i peers of upstream \"%V\" in %s:%ui",
                          &u[i].name, u[i].min, n, &u[i].name,
                          u[i].file, u[i].line);
            return NGX_ERROR;
        }
    }

    if (!hmcf->metrics) {
        return NGX_OK;
    }

    return ngx_http_health_metrics_init(cf, hmcf);
}


static ngx_int_t
ngx_http_health_init_module(ngx_cycle_t *cycle)
{
    if (ngx_http_health_start == 0) {
        ngx_http_health_start = ngx_time();
    }

    return NGX_OK;
}
