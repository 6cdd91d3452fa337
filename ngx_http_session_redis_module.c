
/*
 * session_redis: session cookies checked against sessions kept in Redis.
 *
 * The cookie names a session (plain), or names and signs it the way
 * express-session does (express); the session is the JSON document that
 * connect-redis stores under the key prefix and the id.  One GET, or one
 * script doing GET and PEXPIRE (session_redis_touch), per request checked.
 *
 * Statuses:
 *   VALID    the session exists and its cookie.expires is not past
 *   MISSING  no cookie (or an empty one), or Redis has no such session
 *   INVALID  a malformed or forged cookie (never sent to Redis), or a
 *            stored value that is not a JSON object
 *   EXPIRED  the session exists but its cookie.expires is past
 *   ERROR    Redis failed: unreachable, timeout, error reply, wrong type
 *
 * Of several cookies with the configured name the first one counts, as
 * with nginx's $cookie_NAME and express's cookie parser.
 */


#include "ngx_http_scale_module.h"
#include "ngx_http_session_redis_cookie.h"

#include <jansson.h>


#define NGX_HTTP_SESSION_REDIS_VALID       1
#define NGX_HTTP_SESSION_REDIS_MISSING     2
#define NGX_HTTP_SESSION_REDIS_INVALID     3
#define NGX_HTTP_SESSION_REDIS_EXPIRED     4
#define NGX_HTTP_SESSION_REDIS_ERROR       5
#define NGX_HTTP_SESSION_REDIS_NRESULTS    6

#define NGX_HTTP_SESSION_REDIS_PLAIN       0
#define NGX_HTTP_SESSION_REDIS_EXPRESS     1

/* segments of a session_redis_set path */
#define NGX_HTTP_SESSION_REDIS_PATH_MAX    16


typedef struct {
    ngx_int_t                        index;
    ngx_http_set_variable_pt         set_handler;
    ngx_uint_t                       nsegments;
    ngx_str_t                        segments[NGX_HTTP_SESSION_REDIS_PATH_MAX];
} ngx_http_session_redis_var_t;


typedef struct {
    ngx_uint_t                       enabled;
    ngx_uint_t                       touch;        /* used somewhere */
    ngx_uint_t                       slots[NGX_HTTP_SESSION_REDIS_NRESULTS];
} ngx_http_session_redis_main_conf_t;


typedef struct {
    ngx_http_scale_redis_pool_t     *pool;         /* NULL: off */
    ngx_str_t                        cookie;
    ngx_uint_t                       format;
    ngx_array_t                     *secrets;      /* of key_t */
    ngx_str_t                        prefix;
    ngx_flag_t                       required;
    ngx_flag_t                       fail_open;
    ngx_msec_t                       touch;        /* 0: off */
    ngx_str_t                        touch_arg;    /* ms, for the script */
    ngx_array_t                     *vars;         /* of var_t */
} ngx_http_session_redis_loc_conf_t;


typedef struct {
    ngx_uint_t                          status;
    ngx_int_t                           rc;        /* for the phase engine */
    unsigned                            waiting:1;
    unsigned                            done:1;
    ngx_str_t                           id;
    ngx_str_t                           key;
    ngx_http_session_redis_loc_conf_t  *conf;
    const char                         *argv[3];
    size_t                              argvlen[3];
} ngx_http_session_redis_ctx_t;


static ngx_int_t ngx_http_session_redis_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_session_redis_same_source(
    ngx_http_session_redis_loc_conf_t *one,
    ngx_http_session_redis_loc_conf_t *two);
static ngx_int_t ngx_http_session_redis_verdict(ngx_uint_t status,
    ngx_http_session_redis_loc_conf_t *slcf);
static ngx_int_t ngx_http_session_redis_start(ngx_http_request_t *r,
    ngx_http_session_redis_loc_conf_t *slcf);
static ngx_int_t ngx_http_session_redis_cookie(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx);
static void ngx_http_session_redis_reply(ngx_http_request_t *r, void *data,
    ngx_int_t rc, redisReply *reply);
static ngx_uint_t ngx_http_session_redis_session(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx, u_char *data, size_t len);
static ngx_int_t ngx_http_session_redis_set_vars(ngx_http_request_t *r,
    ngx_http_session_redis_loc_conf_t *slcf, json_t *session);
static ngx_int_t ngx_http_session_redis_render(ngx_http_request_t *r,
    json_t *node, ngx_str_t *value);
static ngx_int_t ngx_http_session_redis_done(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_session_redis_status_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_session_redis_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_session_redis_set_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_session_redis_add_variables(ngx_conf_t *cf);
static void *ngx_http_session_redis_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_session_redis_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_session_redis_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_session_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_session_redis_cookie_name(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_session_redis_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_session_redis_key_prefix(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_session_redis_touch(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_session_redis_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_session_redis_add_series(ngx_conf_t *cf,
    ngx_http_session_redis_main_conf_t *smcf);
static ngx_int_t ngx_http_session_redis_init(ngx_conf_t *cf);


static ngx_conf_enum_t  ngx_http_session_redis_formats[] = {
    { ngx_string("plain"), NGX_HTTP_SESSION_REDIS_PLAIN },
    { ngx_string("express"), NGX_HTTP_SESSION_REDIS_EXPRESS },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_session_redis_commands[] = {

    { ngx_string("session_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_session_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("session_redis_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_session_redis_cookie_name,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_session_redis_loc_conf_t, cookie),
      NULL },

    { ngx_string("session_redis_format"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_session_redis_loc_conf_t, format),
      &ngx_http_session_redis_formats },

    { ngx_string("session_redis_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_session_redis_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("session_redis_key_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_session_redis_key_prefix,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_session_redis_loc_conf_t, prefix),
      NULL },

    { ngx_string("session_redis_required"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_session_redis_loc_conf_t, required),
      NULL },

    { ngx_string("session_redis_fail_open"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_session_redis_loc_conf_t, fail_open),
      NULL },

    { ngx_string("session_redis_touch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_session_redis_touch,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("session_redis_set"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_session_redis_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_session_redis_module_ctx = {
    ngx_http_session_redis_add_variables,    /* preconfiguration */
    ngx_http_session_redis_init,             /* postconfiguration */

    ngx_http_session_redis_create_main_conf, /* create main configuration */
    NULL,                                    /* init main configuration */

    NULL,                                    /* create server configuration */
    NULL,                                    /* merge server configuration */

    ngx_http_session_redis_create_loc_conf,  /* create location configuration */
    ngx_http_session_redis_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_session_redis_module = {
    NGX_MODULE_V1,
    &ngx_http_session_redis_module_ctx,        /* module context */
    ngx_http_session_redis_commands,           /* module directives */
    NGX_HTTP_MODULE,                           /* module type */
    NULL,                                      /* init master */
    NULL,                                      /* init module */
    NULL,                                      /* init process */
    NULL,                                      /* init thread */
    NULL,                                      /* exit thread */
    NULL,                                      /* exit process */
    NULL,                                      /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * KEYS: the session key.  ARGV: the TTL in ms.  The TTL is refreshed
 * whenever the key exists; a session found EXPIRED by its cookie.expires
 * stays EXPIRED however long Redis keeps it.
 */

static ngx_http_scale_redis_script_t  ngx_http_session_redis_touch_script = {
    ngx_string(
"local v = redis.call('GET', KEYS[1])\n"
"if v then\n"
"  redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
"end\n"
"return v\n"),
    { 0 }
};


static ngx_str_t  ngx_http_session_redis_status_names[] = {
    ngx_null_string,
    ngx_string("VALID"),
    ngx_string("MISSING"),
    ngx_string("INVALID"),
    ngx_string("EXPIRED"),
    ngx_string("ERROR")
};


static ngx_str_t  ngx_http_session_redis_results[] = {
    ngx_null_string,
    ngx_string("valid"),
    ngx_string("missing"),
    ngx_string("invalid"),
    ngx_string("expired"),
    ngx_string("error")
};


static ngx_str_t  ngx_http_session_redis_family =
    ngx_string("nginx_session_redis_requests_total");
static ngx_str_t  ngx_http_session_redis_help =
    ngx_string("Requests checked by session_redis, by result.");


static ngx_http_variable_t  ngx_http_session_redis_vars[] = {

    { ngx_string("session_redis_status"), NULL,
      ngx_http_session_redis_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("session_redis_id"), NULL,
      ngx_http_session_redis_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_session_redis_handler(ngx_http_request_t *r)
{
    ngx_http_session_redis_ctx_t       *ctx;
    ngx_http_session_redis_loc_conf_t  *slcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_scale_get_ctx(r, &ngx_http_session_redis_module);

    if (ctx) {
        if (ctx->waiting) {
            return NGX_AGAIN;
        }

        if (!ctx->done) {
            /* the verdict that the reply brought, returned once */
            ctx->done = 1;
            return ctx->rc;
        }

        if (r->error_page) {
            /* the page that tells of our own 401 or 503 */
            return NGX_DECLINED;
        }
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_session_redis_module);

    if (slcf->pool == NULL) {
        return NGX_DECLINED;
    }

    if (ctx && ngx_http_session_redis_same_source(ctx->conf, slcf)) {
        /*
         * An internal redirect (try_files, X-Accel-Redirect) to a location
         * that looks at the same session: its own rules decide.
         */
        return ngx_http_session_redis_verdict(ctx->status, slcf);
    }

    return ngx_http_session_redis_start(r, slcf);
}


static ngx_uint_t
ngx_http_session_redis_same_source(ngx_http_session_redis_loc_conf_t *one,
    ngx_http_session_redis_loc_conf_t *two)
{
    return one == two
           || (one->pool == two->pool
               && one->format == two->format
               && one->secrets == two->secrets
               && one->cookie.len == two->cookie.len
               && ngx_strncmp(one->cookie.data, two->cookie.data,
                              one->cookie.len) == 0
               && one->prefix.len == two->prefix.len
               && ngx_strncmp(one->prefix.data, two->prefix.data,
                              one->prefix.len) == 0);
}


static ngx_int_t
ngx_http_session_redis_start(ngx_http_request_t *r,
    ngx_http_session_redis_loc_conf_t *slcf)
{
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_http_session_redis_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_session_redis_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_scale_set_ctx(r, ctx, &ngx_http_session_redis_module)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->conf = slcf;
    ctx->done = 1;

    rc = ngx_http_session_redis_cookie(r, ctx);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        /* MISSING or INVALID: Redis is not asked */
        return ngx_http_session_redis_done(r, ctx, rc);
    }

    ctx->key.len = slcf->prefix.len + ctx->id.len;
    ctx->key.data = ngx_pnalloc(r->pool, ctx->key.len);
    if (ctx->key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(ctx->key.data, slcf->prefix.data, slcf->prefix.len);
    ngx_memcpy(p, ctx->id.data, ctx->id.len);

    if (slcf->touch) {
        ctx->argv[0] = "1";
        ctx->argvlen[0] = 1;
        ctx->argv[1] = (const char *) ctx->key.data;
        ctx->argvlen[1] = ctx->key.len;
        ctx->argv[2] = (const char *) slcf->touch_arg.data;
        ctx->argvlen[2] = slcf->touch_arg.len;

        rc = ngx_http_scale_redis_send(r, slcf->pool,
                                       &ngx_http_session_redis_touch_script,
                                       3, ctx->argv, ctx->argvlen,
                                       ngx_http_session_redis_reply, ctx);

    } else {
        ctx->argv[0] = "GET";
        ctx->argvlen[0] = 3;
        ctx->argv[1] = (const char *) ctx->key.data;
        ctx->argvlen[1] = ctx->key.len;

        rc = ngx_http_scale_redis_send(r, slcf->pool, NULL,
                                       2, ctx->argv, ctx->argvlen,
                                       ngx_http_session_redis_reply, ctx);
    }

    if (rc == NGX_AGAIN) {
        ctx->waiting = 1;
        ctx->done = 0;
        return NGX_AGAIN;
    }

    return ngx_http_session_redis_done(r, ctx, NGX_HTTP_SESSION_REDIS_ERROR);
}


/* returns NGX_OK with ctx->id, a status, or NGX_ERROR */

static ngx_int_t
ngx_http_session_redis_cookie(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx)
{
    u_char                             *p;
    u_char                              buf[NGX_HTTP_SESSION_REDIS_VALUE_MAX];
    ngx_int_t                           rc;
    ngx_str_t                           value;
    ngx_http_session_redis_loc_conf_t  *slcf;

    slcf = ctx->conf;

#if (nginx_version >= 1023000)
    if (ngx_http_parse_multi_header_lines(r, r->headers_in.cookie,
                                          &slcf->cookie, &value)
        == NULL)
    {
        return NGX_HTTP_SESSION_REDIS_MISSING;
    }
#else
    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                          &slcf->cookie, &value)
        == NGX_DECLINED)
    {
        return NGX_HTTP_SESSION_REDIS_MISSING;
    }
#endif

    if (value.len == 0) {
        return NGX_HTTP_SESSION_REDIS_MISSING;
    }

    if (slcf->format == NGX_HTTP_SESSION_REDIS_PLAIN) {
        rc = ngx_http_session_redis_plain_id(&value, &ctx->id);

    } else if (value.len > NGX_HTTP_SESSION_REDIS_VALUE_MAX) {
        rc = NGX_DECLINED;

    } else {
        /* decoded on the stack: only the id (128 bytes at most) is kept */
        rc = ngx_http_session_redis_express_id(&value, buf,
                                               slcf->secrets->elts,
                                               slcf->secrets->nelts,
                                               &ctx->id);

        if (rc == NGX_OK) {
            p = ngx_pnalloc(r->pool, ctx->id.len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(p, ctx->id.data, ctx->id.len);
            ctx->id.data = p;
        }
    }

    if (rc != NGX_OK) {
        ngx_str_null(&ctx->id);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "session_redis: client sent invalid \"%V\" cookie",
                      &slcf->cookie);

        return NGX_HTTP_SESSION_REDIS_INVALID;
    }

    return NGX_OK;
}


static void
ngx_http_session_redis_reply(ngx_http_request_t *r, void *data,
    ngx_int_t rc, redisReply *reply)
{
    ngx_http_session_redis_ctx_t  *ctx = data;

    ngx_uint_t  status;

    ctx->waiting = 0;

    if (rc != NGX_HTTP_SCALE_REDIS_OK) {
        status = NGX_HTTP_SESSION_REDIS_ERROR;

    } else if (reply->type == REDIS_REPLY_NIL) {
        status = NGX_HTTP_SESSION_REDIS_MISSING;

    } else if (reply->type == REDIS_REPLY_STRING) {
        status = ngx_http_session_redis_session(r, ctx, (u_char *) reply->str,
                                                reply->len);

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "session_redis: unexpected reply from redis pool "
                      "\"%V\"",
                      ngx_http_scale_redis_pool_name(ctx->conf->pool));

        ngx_http_scale_redis_count_error(ctx->conf->pool,
                                         NGX_HTTP_SCALE_REDIS_PROTOCOL);

        status = NGX_HTTP_SESSION_REDIS_ERROR;
    }

    if (status == 0) {
        ctx->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return;
    }

    ctx->rc = ngx_http_session_redis_done(r, ctx, status);
}


/* returns a status, or 0 on an allocation failure */

static ngx_uint_t
ngx_http_session_redis_session(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx, u_char *data, size_t len)
{
    json_t        *session, *cookie, *expires;
    int64_t        ms, now;
    ngx_uint_t     status;
    ngx_time_t    *tp;
    json_error_t   err;

    session = json_loadb((const char *) data, len, 0, &err);

    if (session == NULL || !json_is_object(session)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "session_redis: session in redis pool \"%V\" "
                      "is not a JSON object",
                      ngx_http_scale_redis_pool_name(ctx->conf->pool));

        if (session) {
            json_decref(session);
        }

        return NGX_HTTP_SESSION_REDIS_INVALID;
    }

    status = NGX_HTTP_SESSION_REDIS_VALID;

    /*
     * express-session refreshes the TTL on use but rewrites cookie.expires
     * only when rolling: the date decides only when present and past
     */

    cookie = json_object_get(session, "cookie");
    expires = json_is_object(cookie) ? json_object_get(cookie, "expires")
                                     : NULL;

    if (json_is_string(expires)
        && ngx_http_session_redis_parse_time((u_char *)
                                             json_string_value(expires),
                                             json_string_length(expires), &ms)
           == NGX_OK)
    {
        tp = ngx_timeofday();
        now = (int64_t) tp->sec * 1000 + tp->msec;

        if (ms <= now) {
            status = NGX_HTTP_SESSION_REDIS_EXPIRED;
        }
    }

    if (status == NGX_HTTP_SESSION_REDIS_VALID
        && ngx_http_session_redis_set_vars(r, ctx->conf, session) != NGX_OK)
    {
        status = 0;
    }

    json_decref(session);

    return status;
}


static ngx_int_t
ngx_http_session_redis_set_vars(ngx_http_request_t *r,
    ngx_http_session_redis_loc_conf_t *slcf, json_t *session)
{
    json_t                         *node;
    ngx_int_t                       n;
    ngx_str_t                       value;
    ngx_uint_t                      i, j;
    ngx_http_variable_t            *v;
    ngx_http_variable_value_t      *vv;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_session_redis_var_t   *sv;

    if (slcf->vars == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);
    v = cmcf->variables.elts;

    sv = slcf->vars->elts;

    for (i = 0; i < slcf->vars->nelts; i++) {
        node = session;

        for (j = 0; node && j < sv[i].nsegments; j++) {

            if (json_is_object(node)) {
                node = json_object_get(node,
                                       (const char *) sv[i].segments[j].data);

            } else if (json_is_array(node)) {
                n = ngx_atoi(sv[i].segments[j].data, sv[i].segments[j].len);
                node = (n == NGX_ERROR) ? NULL : json_array_get(node, n);

            } else {
                node = NULL;
            }
        }

        if (node == NULL || json_is_null(node)) {
            /* the variable stays empty */
            continue;
        }

        if (ngx_http_session_redis_render(r, node, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        /* set explicitly, so that it survives internal redirects */

        vv = &r->variables[sv[i].index];

        vv->valid = 1;
        vv->no_cacheable = 0;
        vv->not_found = 0;
        vv->len = value.len;
        vv->data = value.data;

        if (sv[i].set_handler) {
            sv[i].set_handler(r, vv, v[sv[i].index].data);
        }
    }

    return NGX_OK;
}


/* strings raw, numbers as JSON writes them, objects and arrays compact */

static ngx_int_t
ngx_http_session_redis_render(ngx_http_request_t *r, json_t *node,
    ngx_str_t *value)
{
    int      n;
    u_char   buf[32], c;
    size_t   len, i;
    double   d;

    switch (json_typeof(node)) {

    case JSON_STRING:
        value->len = json_string_length(node);

        /* the value may end up in a header: no CR, LF or other controls */
        for (i = 0; i < value->len; i++) {
            c = (u_char) json_string_value(node)[i];

            if (c < 0x20 || c == 0x7f) {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "session_redis: a session value holds "
                              "control characters, not used");
                ngx_str_null(value);
                return NGX_OK;
            }
        }

        value->data = ngx_pnalloc(r->pool, value->len);
        if (value->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(value->data, json_string_value(node), value->len);
        return NGX_OK;

    case JSON_INTEGER:
        value->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (value->data == NULL) {
            return NGX_ERROR;
        }

        value->len = ngx_sprintf(value->data, "%L",
                                 (int64_t) json_integer_value(node))
                     - value->data;
        return NGX_OK;

    case JSON_REAL:
        d = json_real_value(node);

        if (d > -9007199254740992.0 && d < 9007199254740992.0
            && d == (double) (int64_t) d)
        {
            /* as JavaScript writes 3.0: "3" */
            n = snprintf((char *) buf, sizeof(buf), "%lld", (long long) d);

        } else {
            /* the shortest of 15 and 17 digits that reads back the same */
            n = snprintf((char *) buf, sizeof(buf), "%.15g", d);

            if (strtod((char *) buf, NULL) != d) {
                n = snprintf((char *) buf, sizeof(buf), "%.17g", d);
            }
        }

        if (n <= 0 || (size_t) n >= sizeof(buf)) {
            return NGX_ERROR;
        }

        value->len = n;
        value->data = ngx_pnalloc(r->pool, n);
        if (value->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(value->data, buf, n);
        return NGX_OK;

    case JSON_TRUE:
        ngx_str_set(value, "true");
        return NGX_OK;

    case JSON_FALSE:
        ngx_str_set(value, "false");
        return NGX_OK;

    default: /* JSON_OBJECT, JSON_ARRAY */
        len = json_dumpb(node, NULL, 0, JSON_COMPACT|JSON_ENCODE_ANY);
        if (len == 0) {
            return NGX_ERROR;
        }

        value->data = ngx_pnalloc(r->pool, len);
        if (value->data == NULL) {
            return NGX_ERROR;
        }

        value->len = json_dumpb(node, (char *) value->data, len,
                                JSON_COMPACT|JSON_ENCODE_ANY);

        return (value->len == len) ? NGX_OK : NGX_ERROR;
    }
}


/*
 * Failure semantics (DESIGN.md): with session_redis_fail_open off a Redis
 * failure is 503; with it on the request is treated as having no session:
 * 401 while session_redis_required is on, passed through when it is off.
 * The status is ERROR either way.
 */

static ngx_int_t
ngx_http_session_redis_done(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx, ngx_uint_t status)
{
    ngx_http_session_redis_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_session_redis_module);

    ctx->status = status;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "session_redis: %V",
                   &ngx_http_session_redis_status_names[status]);

    ngx_http_scale_counter_add(smcf->slots[status], 1);

    return ngx_http_session_redis_verdict(status, ctx->conf);
}


static ngx_int_t
ngx_http_session_redis_verdict(ngx_uint_t status,
    ngx_http_session_redis_loc_conf_t *slcf)
{
    if (status == NGX_HTTP_SESSION_REDIS_VALID) {
        return NGX_OK;
    }

    if (status == NGX_HTTP_SESSION_REDIS_ERROR && !slcf->fail_open) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return slcf->required ? NGX_HTTP_UNAUTHORIZED : NGX_DECLINED;
}


static ngx_int_t
ngx_http_session_redis_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_session_redis_ctx_t  *ctx;

    ctx = ngx_http_scale_get_ctx(r->main, &ngx_http_session_redis_module);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_session_redis_status_names[ctx->status].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = ngx_http_session_redis_status_names[ctx->status].data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_session_redis_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_session_redis_ctx_t  *ctx;

    ctx = ngx_http_scale_get_ctx(r->main, &ngx_http_session_redis_module);

    if (ctx == NULL || ctx->id.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ctx->id.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = ctx->id.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_session_redis_set_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->not_found = 1;

    return NGX_OK;
}


/* configuration */

static ngx_int_t
ngx_http_session_redis_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_session_redis_vars; v->name.len; v++) {
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
ngx_http_session_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_session_redis_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_session_redis_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->enabled = 0;
     *     smcf->touch = 0;
     */

    return smcf;
}


static void *
ngx_http_session_redis_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_session_redis_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_session_redis_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->cookie = { 0, NULL };
     *     conf->prefix = { 0, NULL };
     *     conf->touch_arg = { 0, NULL };
     */

    conf->pool = NGX_CONF_UNSET_PTR;
    conf->format = NGX_CONF_UNSET_UINT;
    conf->secrets = NGX_CONF_UNSET_PTR;
    conf->required = NGX_CONF_UNSET;
    conf->fail_open = NGX_CONF_UNSET;
    conf->touch = NGX_CONF_UNSET_MSEC;
    conf->vars = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_session_redis_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_session_redis_loc_conf_t *prev = parent;
    ngx_http_session_redis_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->pool, prev->pool, NULL);
    ngx_conf_merge_str_value(conf->cookie, prev->cookie, "sid");
    ngx_conf_merge_uint_value(conf->format, prev->format,
                              NGX_HTTP_SESSION_REDIS_PLAIN);
    ngx_conf_merge_ptr_value(conf->secrets, prev->secrets, NULL);
    ngx_conf_merge_str_value(conf->prefix, prev->prefix, "sess:");
    ngx_conf_merge_value(conf->required, prev->required, 1);
    ngx_conf_merge_value(conf->fail_open, prev->fail_open, 0);
    ngx_conf_merge_ptr_value(conf->vars, prev->vars, NULL);

    if (conf->touch == NGX_CONF_UNSET_MSEC) {
        conf->touch = prev->touch;
        conf->touch_arg = prev->touch_arg;
    }

    ngx_conf_merge_msec_value(conf->touch, prev->touch, 0);

    /* the touch script runs on the pools that touch, and only there */

    if (conf->pool != NULL
        && conf->touch
        && ngx_http_scale_redis_script_init(cf, conf->pool,
                                        &ngx_http_session_redis_touch_script)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->pool != NULL
        && conf->format == NGX_HTTP_SESSION_REDIS_EXPRESS
        && conf->secrets == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"session_redis_secret\" is defined for "
                           "the \"express\" session_redis_format");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* session_redis POOL | off */

static char *
ngx_http_session_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_session_redis_loc_conf_t  *slcf = conf;

    ngx_str_t                           *value;
    ngx_http_session_redis_main_conf_t  *smcf;

    if (slcf->pool != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        slcf->pool = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis pool \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    slcf->pool = ngx_http_scale_redis_pool_get(cf, &value[1]);
    if (slcf->pool == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_http_scale_redis_pool_use(slcf->pool);

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_session_redis_module);

    if (!smcf->enabled) {
        if (ngx_http_session_redis_add_series(cf, smcf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        smcf->enabled = 1;
    }

    return NGX_CONF_OK;
}


/* a cookie name is an RFC 6265 token */

static char *
ngx_http_session_redis_cookie_name(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    u_char     *p, *last;
    ngx_str_t  *value;

    value = cf->args->elts;

    last = value[1].data + value[1].len;

    for (p = value[1].data; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f
            || ngx_strchr("()<>@,;:\\\"/[]?={}", *p) != NULL)
        {
            break;
        }
    }

    if (value[1].len == 0 || p != last) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid cookie name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_str_slot(cf, cmd, conf);
}


/* session_redis_secret SECRET: repeatable, every one verifies */

static char *
ngx_http_session_redis_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_session_redis_loc_conf_t  *slcf = conf;

    ngx_str_t                     *value;
    ngx_pool_cleanup_t            *cln;
    ngx_http_session_redis_key_t  *key;

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty session_redis_secret");
        return NGX_CONF_ERROR;
    }

    if (value[1].len > INT_MAX) {
        return "is too long";
    }

    if (slcf->secrets == NGX_CONF_UNSET_PTR) {
        slcf->secrets = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_http_session_redis_key_t));
        if (slcf->secrets == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    key = ngx_array_push(slcf->secrets);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_http_session_redis_key_t));

    if (ngx_http_session_redis_key_init(key, &value[1]) != NGX_OK) {
        ngx_http_session_redis_key_free(key);
        return NGX_CONF_ERROR;
    }

    /* the array may move: the cleanup frees copies of the pointers */
    cln = ngx_pool_cleanup_add(cf->pool, sizeof(ngx_http_session_redis_key_t));
    if (cln == NULL) {
        ngx_http_session_redis_key_free(key);
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(cln->data, key, sizeof(ngx_http_session_redis_key_t));
    cln->handler = ngx_http_session_redis_key_free;

    return NGX_CONF_OK;
}


static char *
ngx_http_session_redis_key_prefix(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (value[1].len > 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key prefix \"%V\" is too long", &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_str_slot(cf, cmd, conf);
}


/* session_redis_touch off | TIME */

static char *
ngx_http_session_redis_touch(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_session_redis_loc_conf_t  *slcf = conf;

    ngx_str_t                           *value;
    ngx_msec_t                           ms;
    ngx_http_session_redis_main_conf_t  *smcf;

    if (slcf->touch != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        slcf->touch = 0;
        return NGX_CONF_OK;
    }

    ms = ngx_parse_time(&value[1], 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    slcf->touch = ms;

    slcf->touch_arg.data = ngx_pnalloc(cf->pool, NGX_INT_T_LEN);
    if (slcf->touch_arg.data == NULL) {
        return NGX_CONF_ERROR;
    }

    slcf->touch_arg.len = ngx_sprintf(slcf->touch_arg.data, "%M", ms)
                          - slcf->touch_arg.data;

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_session_redis_module);
    smcf->touch = 1;

    return NGX_CONF_OK;
}


/* session_redis_set $VARIABLE JSON.PATH */

static char *
ngx_http_session_redis_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_session_redis_loc_conf_t  *slcf = conf;

    u_char                        *p, *last, *start;
    ngx_str_t                     *value, *seg;
    ngx_http_variable_t           *v;
    ngx_http_session_redis_var_t  *sv;

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].data[0] != '$') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variable name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    value[1].len--;
    value[1].data++;

    if (slcf->vars == NGX_CONF_UNSET_PTR) {
        slcf->vars = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_session_redis_var_t));
        if (slcf->vars == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    sv = ngx_array_push(slcf->vars);
    if (sv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(sv, sizeof(ngx_http_session_redis_var_t));

    /* "user.roles.0": object keys and array indexes, NUL-terminated */

    start = value[2].data;
    last = value[2].data + value[2].len;

    for (p = start; p <= last; p++) {

        if (p < last && *p != '.') {
            continue;
        }

        if (p == start || sv->nsegments == NGX_HTTP_SESSION_REDIS_PATH_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid JSON path \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        seg = &sv->segments[sv->nsegments++];

        seg->len = p - start;
        seg->data = ngx_pnalloc(cf->pool, seg->len + 1);
        if (seg->data == NULL) {
            return NGX_CONF_ERROR;
        }

        (void) ngx_cpystrn(seg->data, start, seg->len + 1);

        start = p + 1;
    }

    v = ngx_http_add_variable(cf, &value[1], NGX_HTTP_VAR_CHANGEABLE);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    sv->index = ngx_http_get_variable_index(cf, &value[1]);
    if (sv->index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (v->get_handler == NULL) {
        v->get_handler = ngx_http_session_redis_set_variable;
    }

    sv->set_handler = v->set_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_session_redis_add_series(ngx_conf_t *cf,
    ngx_http_session_redis_main_conf_t *smcf)
{
    ngx_int_t   slot;
    ngx_str_t   labels;
    ngx_uint_t  i;

    for (i = NGX_HTTP_SESSION_REDIS_VALID;
         i < NGX_HTTP_SESSION_REDIS_NRESULTS;
         i++)
    {
        labels.data = ngx_pnalloc(cf->pool, 32);
        if (labels.data == NULL) {
            return NGX_ERROR;
        }

        labels.len = ngx_sprintf(labels.data, "result=\"%V\"",
                                 &ngx_http_session_redis_results[i])
                     - labels.data;

        slot = ngx_http_scale_series_add(cf, &ngx_http_session_redis_family,
                                         &ngx_http_session_redis_help,
                                         NGX_HTTP_SCALE_COUNTER, &labels);
        if (slot == NGX_ERROR) {
            return NGX_ERROR;
        }

        smcf->slots[i] = slot;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_session_redis_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt                 *h;
    ngx_http_core_main_conf_t           *cmcf;
    ngx_http_session_redis_main_conf_t  *smcf;

    if (ngx_http_scale_family_add(cf, &ngx_http_session_redis_family,
                                  &ngx_http_session_redis_help,
                                  NGX_HTTP_SCALE_COUNTER)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_session_redis_module);
    if (!smcf->enabled) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_session_redis_handler;

    return NGX_OK;
}
