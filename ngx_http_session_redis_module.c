
/*
 * session_redis: session cookies checked against sessions kept in Redis.
 *
 * The cookie names a session (plain), or names and signs it the way
 * express-session does (express); the session is the JSON document that
 * connect-redis stores under the key prefix and the id.  One GET, or one
 * script doing GET and PEXPIRE (session_redis_touch), per request checked.
 * The verdict is express-session's on the same request: the cookie is read
 * as its parser reads it (ngx_http_session_redis_cookie.c), Redis's TTL is
 * the authority on expiry (with rolling sessions the stored cookie.expires
 * lags behind it), and the stored value is read as JSON.parse reads it.
 *
 * Statuses:
 *   VALID    Redis has the session, and express-session would use it
 *   MISSING  no cookie (or an empty one), or Redis has no such session
 *            (or holds "", null, false, 0: express finds none either)
 *   INVALID  a malformed or forged cookie, never sent to Redis
 *   EXPIRED  not set: Redis drops an expired session, that is MISSING
 *   ERROR    Redis failed (unreachable, timeout, error reply, wrong type),
 *            or what it holds cannot be a session (not JSON, not an
 *            object, no "cookie" object): express fails the request too
 */


#include "ngx_http_scale_module.h"
#include "ngx_http_session_redis_cookie.h"
#include "ngx_http_session_redis_json.h"
#include "ngx_http_scale_redis.h"
#include "ngx_http_scale_metrics.h"


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

/* objects and arrays a variable takes: JSON text and nesting, at most */
#define NGX_HTTP_SESSION_REDIS_RENDER_MAX  4096
#define NGX_HTTP_SESSION_REDIS_RENDER_DEPTH  64


typedef struct {
    ngx_int_t                        index;
    ngx_http_set_variable_pt         set_handler;
    ngx_uint_t                       nsegments;
    ngx_str_t                        segments[NGX_HTTP_SESSION_REDIS_PATH_MAX];
} ngx_http_session_redis_var_t;


typedef struct {
    ngx_uint_t                       enabled;
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
    ngx_uint_t                          status;    /* 0: no verdict yet */
    ngx_int_t                           rc;        /* for the phase engine */
    unsigned                            waiting:1;
    unsigned                            done:1;
    unsigned                            read:1;    /* cookie_status, id */
    ngx_uint_t                          cookie_status;   /* 0: well-formed */
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
    ngx_http_session_redis_loc_conf_t *slcf,
    ngx_http_session_redis_ctx_t *ctx);
static ngx_int_t ngx_http_session_redis_read(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx);
static ngx_int_t ngx_http_session_redis_find(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static void ngx_http_session_redis_reply(ngx_http_request_t *r, void *data,
    ngx_int_t rc, redisReply *reply);
static ngx_uint_t ngx_http_session_redis_session(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx, u_char *data, size_t len);
static const char *ngx_http_session_redis_express(ngx_str_t *session);
static ngx_int_t ngx_http_session_redis_set_vars(ngx_http_request_t *r,
    ngx_http_session_redis_loc_conf_t *slcf, ngx_str_t *session);
static ngx_int_t ngx_http_session_redis_render(ngx_http_request_t *r,
    ngx_str_t *node, ngx_str_t *value);
static ngx_uint_t ngx_http_session_redis_header_safe(u_char *p, size_t len);
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

    if (ctx && ctx->waiting) {
        return NGX_AGAIN;
    }

    if (ctx && ctx->status) {
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

    if (ctx && ctx->status
        && ngx_http_session_redis_same_source(ctx->conf, slcf))
    {
        /*
         * An internal redirect (try_files, X-Accel-Redirect) to a location
         * that looks at the same session: its own rules decide.
         */
        return ngx_http_session_redis_verdict(ctx->status, slcf);
    }

    /* a ctx without a verdict: $session_redis_id read the cookie already */
    return ngx_http_session_redis_start(r, slcf, ctx);
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
    ngx_http_session_redis_loc_conf_t *slcf, ngx_http_session_redis_ctx_t *ctx)
{
    u_char     *p;
    ngx_int_t   rc;

    if (ctx == NULL || ctx->status) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_session_redis_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_http_scale_set_ctx(r, ctx, &ngx_http_session_redis_module)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (!ctx->read || !ngx_http_session_redis_same_source(ctx->conf, slcf)) {
        ctx->conf = slcf;

        if (ngx_http_session_redis_read(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->conf = slcf;
    ctx->done = 1;

    if (ctx->cookie_status) {
        /* MISSING or INVALID: Redis is not asked */
        return ngx_http_session_redis_done(r, ctx, ctx->cookie_status);
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


/*
 * The cookie as express-session reads it, and its id: cookie_status is 0
 * for a well-formed (and, with express, signed) cookie, else MISSING or
 * INVALID.  NGX_ERROR on an allocation failure.
 */

static ngx_int_t
ngx_http_session_redis_read(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx)
{
    u_char                             *p;
    u_char                              buf[NGX_HTTP_SESSION_REDIS_DECODED_MAX];
    ngx_int_t                           rc;
    ngx_str_t                           value;
    ngx_http_session_redis_loc_conf_t  *slcf;

    slcf = ctx->conf;

    ctx->read = 1;
    ngx_str_null(&ctx->id);

    if (ngx_http_session_redis_find(r, &slcf->cookie, &value) != NGX_OK
        || value.len == 0)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "session_redis: no \"%V\" cookie", &slcf->cookie);

        ctx->cookie_status = NGX_HTTP_SESSION_REDIS_MISSING;
        return NGX_OK;
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
                /* not read: id pointed to the stack */
                ctx->read = 0;
                ngx_str_null(&ctx->id);
                return NGX_ERROR;
            }

            ngx_memcpy(p, ctx->id.data, ctx->id.len);
            ctx->id.data = p;
        }
    }

    if (rc != NGX_OK) {
        ngx_str_null(&ctx->id);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "client sent invalid session cookie \"%V\"",
                      &slcf->cookie);

        ctx->cookie_status = NGX_HTTP_SESSION_REDIS_INVALID;
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "session_redis: \"%V\" cookie names a session of %uz "
                   "bytes", &slcf->cookie, ctx->id.len);

    ctx->cookie_status = 0;

    return NGX_OK;
}


/*
 * The first cookie of that name in all Cookie headers, in order: node
 * joins several headers with "; ", nginx joins HTTP/2 crumbs so too
 */

static ngx_int_t
ngx_http_session_redis_find(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
#if (nginx_version >= 1023000)
    ngx_table_elt_t   *h;

    for (h = r->headers_in.cookie; h; h = h->next) {
        if (ngx_http_session_redis_cookie_value(&h->value, name, value)
            == NGX_OK)
        {
            return NGX_OK;
        }
    }
#else
    ngx_uint_t         i;
    ngx_table_elt_t  **h;

    h = r->headers_in.cookies.elts;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        if (ngx_http_session_redis_cookie_value(&h[i]->value, name, value)
            == NGX_OK)
        {
            return NGX_OK;
        }
    }
#endif

    return NGX_DECLINED;
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
                      "unexpected reply to a session lookup from "
                      "redis pool \"%V\"",
                      ngx_http_scale_redis_pool_name(ctx->conf->pool));

        ngx_http_scale_redis_count_error(ctx->conf->pool,
                                         NGX_HTTP_SCALE_REDIS_PROTOCOL);

        status = NGX_HTTP_SESSION_REDIS_ERROR;
    }

    if (status == 0) {
        /* out of memory: a verdict all the same, never a second lookup */
        ctx->status = NGX_HTTP_SESSION_REDIS_ERROR;
        ctx->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return;
    }

    ctx->rc = ngx_http_session_redis_done(r, ctx, status);
}


/*
 * What connect-redis's get() and express-session's createSession() make of
 * the stored value (plain: any JSON object); returns a status, or 0 on an
 * allocation failure.
 */

static ngx_uint_t
ngx_http_session_redis_session(ngx_http_request_t *r,
    ngx_http_session_redis_ctx_t *ctx, u_char *data, size_t len)
{
    u_char      *stack;
    size_t       off;
    ngx_str_t    session;
    const char  *err;

    if (len == 0) {
        /* connect-redis: no data, no session */
        return NGX_HTTP_SESSION_REDIS_MISSING;
    }

    /* one bit per open container: any depth JSON.parse reads */
    stack = ngx_pnalloc(r->pool, len / 8 + 1);
    if (stack == NULL) {
        return 0;
    }

    if (ngx_http_session_redis_json_check(data, len, stack, &session, &err,
                                          &off)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "session in redis pool \"%V\" "
                      "cannot be decoded: %s at byte %uz",
                      ngx_http_scale_redis_pool_name(ctx->conf->pool),
                      err, off);

        return NGX_HTTP_SESSION_REDIS_ERROR;
    }

    if (!ngx_http_session_redis_json_truthy(&session)) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "session_redis: stored session is \"%*s\": none",
                       session.len, session.data);

        return NGX_HTTP_SESSION_REDIS_MISSING;
    }

    if (ctx->conf->format == NGX_HTTP_SESSION_REDIS_EXPRESS) {
        err = ngx_http_session_redis_express(&session);

    } else {
        err = (ngx_http_session_redis_json_type(&session)
               == NGX_HTTP_SESSION_REDIS_JSON_OBJECT)
              ? NULL : "not an object";
    }

    if (err) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "session in redis pool \"%V\" "
                      "is not a session: %s",
                      ngx_http_scale_redis_pool_name(ctx->conf->pool), err);

        return NGX_HTTP_SESSION_REDIS_ERROR;
    }

    if (ngx_http_session_redis_set_vars(r, ctx->conf, &session) != NGX_OK) {
        return 0;
    }

    return NGX_HTTP_SESSION_REDIS_VALID;
}


/*
 * createSession() reads sess.cookie.expires and builds new Cookie(
 * sess.cookie), whose maxAge setter takes numbers only: what throws there
 * is a 500 from the app.  Returns why, or NULL.
 */

static const char *
ngx_http_session_redis_express(ngx_str_t *session)
{
    ngx_str_t   cookie, max_age;
    ngx_uint_t  type;

    if (ngx_http_session_redis_json_type(session)
        != NGX_HTTP_SESSION_REDIS_JSON_OBJECT)
    {
        return "not an object";
    }

    if (ngx_http_session_redis_json_member(session, (u_char *) "cookie", 6,
                                           &cookie)
        != NGX_OK
        || ngx_http_session_redis_json_type(&cookie)
           == NGX_HTTP_SESSION_REDIS_JSON_NULL)
    {
        return "no \"cookie\"";
    }

    type = ngx_http_session_redis_json_type(&cookie);

    if (type != NGX_HTTP_SESSION_REDIS_JSON_OBJECT) {
        if (type == NGX_HTTP_SESSION_REDIS_JSON_ARRAY
            || !ngx_http_session_redis_json_truthy(&cookie))
        {
            return NULL;
        }

        return "\"cookie\" is not an object";
    }

    if (ngx_http_session_redis_json_member(&cookie, (u_char *) "maxAge", 6,
                                           &max_age)
        == NGX_OK
        && ngx_http_session_redis_json_truthy(&max_age)
        && ngx_http_session_redis_json_type(&max_age)
           != NGX_HTTP_SESSION_REDIS_JSON_NUMBER)
    {
        return "\"cookie.maxAge\" is not a number";
    }

    return NULL;
}


static ngx_int_t
ngx_http_session_redis_set_vars(ngx_http_request_t *r,
    ngx_http_session_redis_loc_conf_t *slcf, ngx_str_t *session)
{
    ngx_int_t                       n;
    ngx_str_t                       node, value, *seg;
    ngx_uint_t                      i, j, type;
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
        node = *session;

        for (j = 0; j < sv[i].nsegments; j++) {
            seg = &sv[i].segments[j];
            type = ngx_http_session_redis_json_type(&node);

            if (type == NGX_HTTP_SESSION_REDIS_JSON_OBJECT) {
                n = ngx_http_session_redis_json_member(&node, seg->data,
                                                       seg->len, &node);

            } else if (type == NGX_HTTP_SESSION_REDIS_JSON_ARRAY) {
                /* a canonical index, as JavaScript's array[path] */
                n = (seg->len > 1 && seg->data[0] == '0')
                    ? NGX_ERROR : ngx_atoi(seg->data, seg->len);

                if (n != NGX_ERROR) {
                    n = ngx_http_session_redis_json_element(&node, n, &node);
                }

            } else {
                n = NGX_ERROR;
            }

            if (n != NGX_OK) {
                break;
            }
        }

        if (j < sv[i].nsegments
            || ngx_http_session_redis_json_type(&node)
               == NGX_HTTP_SESSION_REDIS_JSON_NULL)
        {
            /* the variable stays empty */
            continue;
        }

        if (ngx_http_session_redis_render(r, &node, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        if (value.data == NULL) {
            continue;
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


/*
 * As JavaScript has them: strings as they are (UTF-8), numbers as
 * String() writes them, objects and arrays as JSON.stringify() does.
 * value->data is NULL for a value that is not used.
 */

static ngx_int_t
ngx_http_session_redis_render(ngx_http_request_t *r, ngx_str_t *node,
    ngx_str_t *value)
{
    u_char  buf[NGX_HTTP_SESSION_REDIS_NUMBER_LEN];

    ngx_str_null(value);

    switch (ngx_http_session_redis_json_type(node)) {

    case NGX_HTTP_SESSION_REDIS_JSON_STRING:
        value->len = ngx_http_session_redis_json_string(node, NULL);
        break;

    case NGX_HTTP_SESSION_REDIS_JSON_NUMBER:
        value->len = ngx_http_session_redis_js_number(
                         ngx_http_session_redis_json_number(node), buf)
                     - buf;
        break;

    case NGX_HTTP_SESSION_REDIS_JSON_TRUE:
        ngx_str_set(value, "true");
        return NGX_OK;

    case NGX_HTTP_SESSION_REDIS_JSON_FALSE:
        /* not node: the reply is freed when the callback returns */
        ngx_str_set(value, "false");
        return NGX_OK;

    default: /* OBJECT, ARRAY */
        if (node->len > NGX_HTTP_SESSION_REDIS_RENDER_MAX
            || ngx_http_session_redis_json_stringify(node, NULL, &value->len,
                                       NGX_HTTP_SESSION_REDIS_RENDER_DEPTH)
               != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "a session value is larger than "
                          "%d bytes or deeper than %d levels, not used",
                          NGX_HTTP_SESSION_REDIS_RENDER_MAX,
                          NGX_HTTP_SESSION_REDIS_RENDER_DEPTH);
            return NGX_OK;
        }
    }

    value->data = ngx_pnalloc(r->pool, value->len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    switch (ngx_http_session_redis_json_type(node)) {

    case NGX_HTTP_SESSION_REDIS_JSON_STRING:
        (void) ngx_http_session_redis_json_string(node, value->data);
        break;

    case NGX_HTTP_SESSION_REDIS_JSON_NUMBER:
        ngx_memcpy(value->data, buf, value->len);
        break;

    default:
        (void) ngx_http_session_redis_json_stringify(node, value->data,
                                       &value->len,
                                       NGX_HTTP_SESSION_REDIS_RENDER_DEPTH);
    }

    /* the value may end up in a header: no CR, LF or other controls */

    if (!ngx_http_session_redis_header_safe(value->data, value->len)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "a session value holds "
                      "control characters, not used");
        ngx_str_null(value);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_session_redis_header_safe(u_char *p, size_t len)
{
    u_char  *last;

    for (last = p + len; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return 0;
        }
    }

    return 1;
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


/*
 * Available from the preaccess phase on, so that ratelimit_redis can key
 * on it: read then, the cookie is read once.  Empty for a cookie that is
 * malformed, forged, or names an id with control characters.
 */

static ngx_int_t
ngx_http_session_redis_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_session_redis_ctx_t       *ctx;
    ngx_http_session_redis_loc_conf_t  *slcf;

    ctx = ngx_http_scale_get_ctx(r->main, &ngx_http_session_redis_module);

    if (ctx == NULL && r == r->main) {
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_session_redis_module);

        if (slcf->pool) {
            ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_session_redis_ctx_t));
            if (ctx == NULL) {
                return NGX_ERROR;
            }

            if (ngx_http_scale_set_ctx(r, ctx, &ngx_http_session_redis_module)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            ctx->conf = slcf;

            if (ngx_http_session_redis_read(r, ctx) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    if (ctx == NULL || ctx->id.len == 0
        || !ngx_http_session_redis_header_safe(ctx->id.data, ctx->id.len))
    {
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

    ngx_str_t   *value;
    ngx_msec_t   ms;

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
