
/*
 * redis_pool NAME { ... }: the directives inside, checked as nginx checks
 * its own, the TLS context, and the metric series of each pool.
 */


#include <ngx_sha1.h>
#include "ngx_http_scale_redis_pool.h"
#include "ngx_http_scale_metrics.h"


typedef struct ngx_http_scale_redis_pool_cmd_s
    ngx_http_scale_redis_pool_cmd_t;

typedef char *(*ngx_http_scale_redis_pool_set_pt)(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);

struct ngx_http_scale_redis_pool_cmd_s {
    ngx_str_t                          name;
    ngx_uint_t                         min_args;
    ngx_uint_t                         max_args;
    ngx_http_scale_redis_pool_set_pt   set;
    size_t                             offset;
};


static char *ngx_http_scale_redis_pool_directive(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_scale_redis_pool_check(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);
static char *ngx_http_scale_redis_set_server(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static char *ngx_http_scale_redis_set_sentinel(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static char *ngx_http_scale_redis_set_str(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static char *ngx_http_scale_redis_set_flag(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static char *ngx_http_scale_redis_set_msec(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static char *ngx_http_scale_redis_set_database(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static char *ngx_http_scale_redis_set_connections(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static char *ngx_http_scale_redis_set_protocols(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd);
static ngx_int_t ngx_http_scale_redis_parse_addr(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value, in_port_t port,
    ngx_http_scale_redis_addr_t *addr);
static ngx_int_t ngx_http_scale_redis_pool_resolver(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);
static ngx_int_t ngx_http_scale_redis_ssl_init(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);
static ngx_int_t ngx_http_scale_redis_add_series(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);


#define ngx_http_scale_redis_field(f)                                         \
    offsetof(ngx_http_scale_redis_pool_t, f)

static ngx_http_scale_redis_pool_cmd_t  ngx_http_scale_redis_pool_cmds[] = {
    { ngx_string("server"), 1, 2, ngx_http_scale_redis_set_server, 0 },
    { ngx_string("sentinel"), 1, 1, ngx_http_scale_redis_set_sentinel, 0 },
    { ngx_string("master"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(master) },
    { ngx_string("sentinel_username"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(sentinel_username) },
    { ngx_string("sentinel_password"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(sentinel_password) },
    { ngx_string("username"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(username) },
    { ngx_string("password"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(password) },
    { ngx_string("database"), 1, 1, ngx_http_scale_redis_set_database, 0 },
    { ngx_string("connections"), 1, 1, ngx_http_scale_redis_set_connections,
      0 },
    { ngx_string("timeout"), 1, 1, ngx_http_scale_redis_set_msec,
      ngx_http_scale_redis_field(timeout) },
    { ngx_string("connect_timeout"), 1, 1, ngx_http_scale_redis_set_msec,
      ngx_http_scale_redis_field(connect_timeout) },
    { ngx_string("ssl"), 1, 1, ngx_http_scale_redis_set_flag,
      ngx_http_scale_redis_field(ssl) },
    { ngx_string("ssl_verify"), 1, 1, ngx_http_scale_redis_set_flag,
      ngx_http_scale_redis_field(ssl_verify) },
    { ngx_string("ssl_trusted_certificate"), 1, 1,
      ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(ssl_trusted_certificate) },
    { ngx_string("ssl_server_name"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(ssl_server_name) },
    { ngx_string("ssl_certificate"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(ssl_certificate) },
    { ngx_string("ssl_certificate_key"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(ssl_certificate_key) },
    { ngx_string("ssl_protocols"), 1, 6, ngx_http_scale_redis_set_protocols,
      0 },
    { ngx_string("ssl_ciphers"), 1, 1, ngx_http_scale_redis_set_str,
      ngx_http_scale_redis_field(ssl_ciphers) },
    { ngx_null_string, 0, 0, NULL, 0 }
};


#if (NGX_SSL)

static ngx_conf_bitmask_t  ngx_http_scale_redis_ssl_protocols[] = {
    { ngx_string("SSLv2"), NGX_SSL_SSLv2 },
    { ngx_string("SSLv3"), NGX_SSL_SSLv3 },
    { ngx_string("TLSv1"), NGX_SSL_TLSv1 },
    { ngx_string("TLSv1.1"), NGX_SSL_TLSv1_1 },
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
    { ngx_null_string, 0 }
};

#endif


static const char  *ngx_http_scale_redis_kind_names[] = {
    "ok", "connect", "timeout", "reply", "protocol"
};

/* the families of every pool, declared also where no pool is defined */
enum {
    NGX_HTTP_SCALE_REDIS_UP = 0,
    NGX_HTTP_SCALE_REDIS_UP_WORKERS,
    NGX_HTTP_SCALE_REDIS_COMMANDS,
    NGX_HTTP_SCALE_REDIS_ERRORS,
    NGX_HTTP_SCALE_REDIS_DURATION,
    NGX_HTTP_SCALE_REDIS_NFAMILIES
};

static ngx_http_scale_series_t  ngx_http_scale_redis_families[] = {
    { ngx_string("nginx_redis_up"),
      ngx_string("1 while the connection of every worker process to the "
                 "pool answers PING, else 0."),
      ngx_null_string, NGX_HTTP_SCALE_WORKER_GAUGE, 0 },
    { ngx_string("nginx_redis_up_workers"),
      ngx_string("Worker processes whose connection to the pool answers "
                 "PING."),
      ngx_null_string, NGX_HTTP_SCALE_WORKER_COUNT, 0 },
    { ngx_string("nginx_redis_commands_total"),
      ngx_string("Commands sent to the pool."),
      ngx_null_string, NGX_HTTP_SCALE_COUNTER, 0 },
    { ngx_string("nginx_redis_errors_total"),
      ngx_string("Commands that failed, by kind of failure."),
      ngx_null_string, NGX_HTTP_SCALE_COUNTER, 0 },
    { ngx_string("nginx_redis_command_duration_seconds"),
      ngx_string("Round trip time of commands to the pool."),
      ngx_null_string, NGX_HTTP_SCALE_HISTOGRAM, 0 }
};


void
ngx_http_scale_redis_pool_state(ngx_http_scale_redis_pool_t *pool,
    ngx_http_scale_redis_state_t *state)
{
    state->up = pool->up;
    state->since = pool->since;
    state->latency = pool->latency;

    if (pool->down_reason) {
        state->error.data = (u_char *) pool->down_reason;
        state->error.len = ngx_strlen(pool->down_reason);

    } else {
        ngx_str_null(&state->error);
    }
}


ngx_str_t *
ngx_http_scale_redis_pool_name(ngx_http_scale_redis_pool_t *pool)
{
    return &pool->name;
}


ngx_uint_t
ngx_http_scale_redis_npools(ngx_cycle_t *cycle)
{
    ngx_http_scale_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_scale_module);

    return smcf ? smcf->redis_pools.nelts : 0;
}


ngx_http_scale_redis_pool_t *
ngx_http_scale_redis_pool_at(ngx_cycle_t *cycle, ngx_uint_t i)
{
    ngx_http_scale_main_conf_t    *smcf;
    ngx_http_scale_redis_pool_t  **pools;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_scale_module);
    pools = smcf->redis_pools.elts;

    return pools[i];
}


ngx_int_t
ngx_http_scale_redis_script_init(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_http_scale_redis_script_t *script)
{
    u_char                           digest[20];
    ngx_uint_t                       i;
    ngx_sha1_t                       sha1;
    ngx_http_scale_redis_script_t  **sp;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, script->body.data, script->body.len);
    ngx_sha1_final(digest, &sha1);

    ngx_hex_dump(script->sha1, digest, 20);

    if (pool->scripts == NULL) {
        pool->scripts = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_scale_redis_script_t *));
        if (pool->scripts == NULL) {
            return NGX_ERROR;
        }
    }

    sp = pool->scripts->elts;

    for (i = 0; i < pool->scripts->nelts; i++) {
        if (sp[i] == script) {
            return NGX_OK;
        }
    }

    sp = ngx_array_push(pool->scripts);
    if (sp == NULL) {
        return NGX_ERROR;
    }

    *sp = script;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "redis pool \"%V\" loads script %*s",
                   &pool->name, (size_t) 40, script->sha1);

    return NGX_OK;
}


void
ngx_http_scale_redis_pool_use(ngx_http_scale_redis_pool_t *pool)
{
    pool->used = 1;
}


ngx_uint_t
ngx_http_scale_redis_pool_in_use(ngx_http_scale_redis_pool_t *pool)
{
    return pool->used;
}


ngx_http_scale_redis_pool_t *
ngx_http_scale_redis_pool_get(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                     i;
    ngx_http_scale_main_conf_t    *smcf;
    ngx_http_scale_redis_pool_t  **pools, *pool, **pp;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_scale_module);
    pools = smcf->redis_pools.elts;

    for (i = 0; i < smcf->redis_pools.nelts; i++) {
        if (pools[i]->name.len == name->len
            && ngx_strncmp(pools[i]->name.data, name->data, name->len) == 0)
        {
            return pools[i];
        }
    }

    pool = ngx_pcalloc(cf->pool, sizeof(ngx_http_scale_redis_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->name = *name;
    pool->database = NGX_CONF_UNSET;
    pool->connect_timeout = NGX_CONF_UNSET_MSEC;
    pool->timeout = NGX_CONF_UNSET_MSEC;
    pool->nconnections = NGX_CONF_UNSET_UINT;
    pool->ssl = NGX_CONF_UNSET;
    pool->ssl_verify = NGX_CONF_UNSET;
    pool->ssl_protocols = NGX_CONF_UNSET_UINT;
    pool->file = cf->conf_file->file.name.data;
    pool->line = cf->conf_file->line;

    pp = ngx_array_push(&smcf->redis_pools);
    if (pp == NULL) {
        return NULL;
    }

    *pp = pool;

    return pool;
}


char *
ngx_http_scale_redis_pool_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char                         *rv;
    ngx_str_t                    *value;
    ngx_conf_t                    save;
    ngx_http_scale_redis_pool_t  *pool;

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis_pool name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    pool = ngx_http_scale_redis_pool_get(cf, &value[1]);
    if (pool == NULL) {
        return NGX_CONF_ERROR;
    }

    if (pool->defined) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate redis_pool \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    pool->defined = 1;

    save = *cf;
    cf->handler = ngx_http_scale_redis_pool_directive;
    cf->handler_conf = (void *) pool;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_http_scale_redis_pool_check(cf, pool);
}


/* what the directives leave to check together, and the defaults */

static char *
ngx_http_scale_redis_pool_check(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool)
{
    if (pool->server.len == 0 && pool->sentinels == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"server\" or \"sentinel\" in redis_pool \"%V\"",
                           &pool->name);
        return NGX_CONF_ERROR;
    }

    if (pool->sentinels && pool->master.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"master\" is defined for \"sentinel\" "
                           "in redis_pool \"%V\"", &pool->name);
        return NGX_CONF_ERROR;
    }

    if (pool->sentinels) {
        /* for log lines: the master the Sentinels name */
        pool->server = pool->master;
    }

    if (pool->master.len && pool->sentinels == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"master\" needs \"sentinel\" in redis_pool \"%V\"",
                           &pool->name);
        return NGX_CONF_ERROR;
    }

    /* AUTH is sent only with a password: a lone username would be ignored */

    if (pool->username.len && pool->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"password\" is defined for username \"%V\" "
                           "in redis_pool \"%V\"",
                           &pool->username, &pool->name);
        return NGX_CONF_ERROR;
    }

    if (pool->sentinel_username.len && pool->sentinel_password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"sentinel_password\" is defined for "
                           "sentinel_username \"%V\" in redis_pool \"%V\"",
                           &pool->sentinel_username, &pool->name);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_value(pool->database, 0);
    ngx_conf_init_msec_value(pool->connect_timeout, 1000);
    ngx_conf_init_msec_value(pool->timeout, 100);
    ngx_conf_init_uint_value(pool->nconnections, 1);
    ngx_conf_init_value(pool->ssl, 0);
    ngx_conf_init_value(pool->ssl_verify, 1);
#if (NGX_SSL)
    ngx_conf_init_uint_value(pool->ssl_protocols, NGX_CONF_BITMASK_SET
                                                  |NGX_SSL_TLSv1_2
                                                  |NGX_SSL_TLSv1_3);
#endif

    if (pool->ssl_ciphers.data == NULL) {
        ngx_str_set(&pool->ssl_ciphers, "DEFAULT");
    }

    if (pool->ssl && ngx_http_scale_redis_ssl_init(cf, pool) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The directives inside redis_pool { }: a custom handler, so nginx's
 * "is duplicate" and argument checks are spelled out here, naming the
 * directive and the pool.
 */

static char *
ngx_http_scale_redis_pool_directive(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_http_scale_redis_pool_t  *pool = conf;

    ngx_str_t                        *value;
    ngx_uint_t                        n;
    ngx_http_scale_redis_pool_cmd_t  *cmd;

    value = cf->args->elts;
    n = cf->args->nelts - 1;

    for (cmd = ngx_http_scale_redis_pool_cmds; cmd->name.len; cmd++) {
        if (cmd->name.len == value[0].len
            && ngx_strncmp(cmd->name.data, value[0].data, value[0].len) == 0)
        {
            break;
        }
    }

    if (cmd->name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown directive \"%V\" in redis_pool", &value[0]);
        return NGX_CONF_ERROR;
    }

    if (n < cmd->min_args || n > cmd->max_args) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"%V\" "
                           "directive of redis_pool", &value[0]);
        return NGX_CONF_ERROR;
    }

    return cmd->set(cf, pool, value, cmd);
}


static char *
ngx_http_scale_redis_duplicate(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *name)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive is duplicate in redis_pool \"%V\"",
                       name, &pool->name);
    return NGX_CONF_ERROR;
}


/* never echo a secret: only an empty value is refused here */

static char *
ngx_http_scale_redis_set_str(ngx_conf_t *cf, ngx_http_scale_redis_pool_t *pool,
    ngx_str_t *value, ngx_http_scale_redis_pool_cmd_t *cmd)
{
    ngx_str_t  *field;

    field = (ngx_str_t *) ((u_char *) pool + cmd->offset);

    if (field->data) {
        return ngx_http_scale_redis_duplicate(cf, pool, &value[0]);
    }

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %V \"\"", &value[0]);
        return NGX_CONF_ERROR;
    }

    *field = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_scale_redis_set_flag(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd)
{
    ngx_flag_t  *field;

    field = (ngx_flag_t *) ((u_char *) pool + cmd->offset);

    if (*field != NGX_CONF_UNSET) {
        return ngx_http_scale_redis_duplicate(cf, pool, &value[0]);
    }

    if (ngx_strcasecmp(value[1].data, (u_char *) "on") == 0) {
        *field = 1;

    } else if (ngx_strcasecmp(value[1].data, (u_char *) "off") == 0) {
        *field = 0;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be \"on\" or \"off\"", &value[1], &value[0]);
        return NGX_CONF_ERROR;
    }

#if !(NGX_SSL)

    if (*field && cmd->offset == ngx_http_scale_redis_field(ssl)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ssl\" in redis_pool \"%V\" needs nginx built "
                           "with OpenSSL", &pool->name);
        return NGX_CONF_ERROR;
    }

#endif

    return NGX_CONF_OK;
}


static char *
ngx_http_scale_redis_set_msec(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd)
{
    ngx_msec_t  *field, ms;

    field = (ngx_msec_t *) ((u_char *) pool + cmd->offset);

    if (*field != NGX_CONF_UNSET_MSEC) {
        return ngx_http_scale_redis_duplicate(cf, pool, &value[0]);
    }

    ms = ngx_parse_time(&value[1], 0);
    if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %V \"%V\"", &value[0], &value[1]);
        return NGX_CONF_ERROR;
    }

    *field = ms;

    return NGX_CONF_OK;
}


/* SELECT takes a C int */

static char *
ngx_http_scale_redis_set_database(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd)
{
    ngx_int_t  n;

    if (pool->database != NGX_CONF_UNSET) {
        return ngx_http_scale_redis_duplicate(cf, pool, &value[0]);
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n > NGX_MAX_INT32_VALUE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid database \"%V\", must be 0 to %i",
                           &value[1], (ngx_int_t) NGX_MAX_INT32_VALUE);
        return NGX_CONF_ERROR;
    }

    pool->database = n;

    return NGX_CONF_OK;
}


static char *
ngx_http_scale_redis_set_connections(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd)
{
    ngx_int_t  n;

    if (pool->nconnections != NGX_CONF_UNSET_UINT) {
        return ngx_http_scale_redis_duplicate(cf, pool, &value[0]);
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n < 1 || n > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid connections \"%V\", must be 1 to 64",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    pool->nconnections = n;

    return NGX_CONF_OK;
}


static char *
ngx_http_scale_redis_set_protocols(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd)
{
#if (NGX_SSL)
    ngx_uint_t           i, m;
    ngx_conf_bitmask_t  *mask;

    if (pool->ssl_protocols != NGX_CONF_UNSET_UINT) {
        return ngx_http_scale_redis_duplicate(cf, pool, &value[0]);
    }

    pool->ssl_protocols = NGX_CONF_BITMASK_SET;
    mask = ngx_http_scale_redis_ssl_protocols;

    for (i = 1; i < cf->args->nelts; i++) {
        for (m = 0; mask[m].name.len; m++) {
            if (mask[m].name.len == value[i].len
                && ngx_strcmp(mask[m].name.data, value[i].data) == 0)
            {
                pool->ssl_protocols |= mask[m].mask;
                break;
            }
        }

        if (mask[m].name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"ssl_protocols\" "
                               "directive of redis_pool", &value[i]);
            return NGX_CONF_ERROR;
        }
    }
#endif

    return NGX_CONF_OK;
}


/*
 * server HOST:PORT | unix:PATH: resolved once, here (a name with
 * "resolve": before every connect, through nginx's resolver).
 * ngx_parse_url also refuses a unix path longer than sun_path, and reads
 * "unix:" in any case, as nginx does.
 */

static char *
ngx_http_scale_redis_set_server(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd)
{
    ngx_url_t  u;

    if (pool->server.len) {
        return ngx_http_scale_redis_duplicate(cf, pool, &value[0]);
    }

    if (pool->sentinels) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"server\" and \"sentinel\" cannot both be "
                           "in redis_pool \"%V\"", &pool->name);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (ngx_strcmp(value[2].data, "resolve") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" of redis_pool "
                               "server", &value[2]);
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = value[1];
        u.default_port = 6379;
        u.no_resolve = 1;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.family == AF_UNIX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in redis_pool server \"%V\"",
                               u.err ? u.err : "cannot resolve a unix socket",
                               &value[1]);
            return NGX_CONF_ERROR;
        }

        pool->server = value[1];
        pool->host = u.host;
        pool->port = u.port;
        pool->resolve = 1;

        return NGX_CONF_OK;
    }

    if (ngx_http_scale_redis_parse_addr(cf, pool, &value[1], 6379,
                                        &pool->addr)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    pool->server = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_scale_redis_set_sentinel(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value,
    ngx_http_scale_redis_pool_cmd_t *cmd)
{
    ngx_http_scale_redis_addr_t  *addr;

    if (pool->server.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"server\" and \"sentinel\" cannot both be "
                           "in redis_pool \"%V\"", &pool->name);
        return NGX_CONF_ERROR;
    }

    if (pool->sentinels == NULL) {
        pool->sentinels = ngx_array_create(cf->pool, 3,
                                        sizeof(ngx_http_scale_redis_addr_t));
        if (pool->sentinels == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    addr = ngx_array_push(pool->sentinels);
    if (addr == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_scale_redis_parse_addr(cf, pool, &value[1], 26379, addr)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_scale_redis_parse_addr(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value, in_port_t port,
    ngx_http_scale_redis_addr_t *addr)
{
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in redis_pool %V \"%V\"",
                               u.err, &((ngx_str_t *) cf->args->elts)[0],
                               value);
        }

        return NGX_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for redis_pool %V \"%V\"",
                           &((ngx_str_t *) cf->args->elts)[0], value);
        return NGX_ERROR;
    }

    addr->sockaddr = u.addrs[0].sockaddr;
    addr->socklen = u.addrs[0].socklen;
    addr->name = u.addrs[0].name;
    addr->host = u.host;

    return NGX_OK;
}


/* the TLS context of a pool: as proxy_ssl_* sets up nginx's own */

static ngx_int_t
ngx_http_scale_redis_ssl_init(ngx_conf_t *cf, ngx_http_scale_redis_pool_t *pool)
{
#if (NGX_SSL)
    ngx_pool_cleanup_t          *cln;
    ngx_http_scale_redis_tls_t  *tls;

    if (pool->ssl_certificate.len && pool->ssl_certificate_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"ssl_certificate_key\" is defined for "
                           "certificate \"%V\" in redis_pool \"%V\"",
                           &pool->ssl_certificate, &pool->name);
        return NGX_ERROR;
    }

    if (pool->ssl_certificate_key.len && pool->ssl_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"ssl_certificate\" is defined for "
                           "key \"%V\" in redis_pool \"%V\"",
                           &pool->ssl_certificate_key, &pool->name);
        return NGX_ERROR;
    }

    tls = ngx_pcalloc(cf->pool, sizeof(ngx_http_scale_redis_tls_t));
    if (tls == NULL) {
        return NGX_ERROR;
    }

    tls->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (tls->ssl == NULL) {
        return NGX_ERROR;
    }

    tls->ssl->log = cf->log;
    tls->verify = pool->ssl_verify;
    tls->server_name = pool->ssl_server_name;

    if (ngx_ssl_create(tls->ssl, pool->ssl_protocols, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(tls->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = tls->ssl;

    /* one buffer for pipelined commands, written as it grows */
    SSL_CTX_set_mode(tls->ssl->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                                    |SSL_MODE_ENABLE_PARTIAL_WRITE);

    if (ngx_ssl_ciphers(cf, tls->ssl, &pool->ssl_ciphers, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (pool->ssl_certificate.len
        && ngx_ssl_certificate(cf, tls->ssl, &pool->ssl_certificate,
                               &pool->ssl_certificate_key, NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (pool->ssl_verify) {
        if (pool->ssl_trusted_certificate.len) {
            if (ngx_ssl_trusted_certificate(cf, tls->ssl,
                                            &pool->ssl_trusted_certificate,
                                            9)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (SSL_CTX_set_default_verify_paths(tls->ssl->ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "SSL_CTX_set_default_verify_paths() failed "
                          "for redis_pool \"%V\"", &pool->name);
            return NGX_ERROR;

        } else {
            SSL_CTX_set_verify_depth(tls->ssl->ctx, 9);
        }
    }

    if (ngx_ssl_client_session_cache(cf, tls->ssl, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    pool->tls = tls;
#endif

    return NGX_OK;
}


ngx_int_t
ngx_http_scale_redis_init_conf(ngx_conf_t *cf, ngx_array_t *all)
{
    ngx_uint_t                     i;
    ngx_http_scale_series_t       *f;
    ngx_http_scale_redis_pool_t  **pools;

    f = ngx_http_scale_redis_families;

    for (i = 0; i < NGX_HTTP_SCALE_REDIS_NFAMILIES; i++) {
        if (ngx_http_scale_family_add(cf, &f[i].family, &f[i].help, f[i].type)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    pools = all->elts;

    for (i = 0; i < all->nelts; i++) {
        if (!pools[i]->defined) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown redis_pool \"%V\" in %s:%ui",
                          &pools[i]->name, pools[i]->file, pools[i]->line);
            return NGX_ERROR;
        }

        if (pools[i]->resolve
            && ngx_http_scale_redis_pool_resolver(cf, pools[i]) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_http_scale_redis_add_series(cf, pools[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* "resolve" uses the resolver of the http {} level, as upstreams do */

static ngx_int_t
ngx_http_scale_redis_pool_resolver(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->resolver == NULL || clcf->resolver->connections.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "no resolver defined to resolve \"%V\" "
                      "in redis_pool \"%V\"", &pool->host, &pool->name);
        return NGX_ERROR;
    }

    pool->resolver = clcf->resolver;
    pool->resolver_timeout = clcf->resolver_timeout == NGX_CONF_UNSET_MSEC
                             ? 30000 : clcf->resolver_timeout;

    return NGX_OK;
}


static ngx_int_t
ngx_http_scale_redis_add_series(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool)
{
    ngx_int_t                 slot;
    ngx_str_t                 name, labels;
    ngx_uint_t                k;
    ngx_http_scale_series_t  *f;

    if (ngx_http_scale_label_escape(cf->pool, &pool->name, &name) != NGX_OK) {
        return NGX_ERROR;
    }

    labels.data = ngx_pnalloc(cf->pool, name.len + sizeof("pool=\"\""));
    if (labels.data == NULL) {
        return NGX_ERROR;
    }

    labels.len = ngx_sprintf(labels.data, "pool=\"%V\"", &name) - labels.data;

    f = ngx_http_scale_redis_families;

    /* each worker sets its own; nginx_redis_up is 1 when all of them are */

    slot = ngx_http_scale_worker_gauge_add(cf,
               &f[NGX_HTTP_SCALE_REDIS_UP].family,
               &f[NGX_HTTP_SCALE_REDIS_UP].help,
               &f[NGX_HTTP_SCALE_REDIS_UP_WORKERS].family,
               &f[NGX_HTTP_SCALE_REDIS_UP_WORKERS].help, &labels);
    if (slot == NGX_ERROR) {
        return NGX_ERROR;
    }

    pool->up_slot = slot;

    slot = ngx_http_scale_series_add(cf,
                                     &f[NGX_HTTP_SCALE_REDIS_COMMANDS].family,
                                     &f[NGX_HTTP_SCALE_REDIS_COMMANDS].help,
                                     NGX_HTTP_SCALE_COUNTER, &labels);
    if (slot == NGX_ERROR) {
        return NGX_ERROR;
    }

    pool->commands_slot = slot;

    slot = ngx_http_scale_series_add(cf,
                                     &f[NGX_HTTP_SCALE_REDIS_DURATION].family,
                                     &f[NGX_HTTP_SCALE_REDIS_DURATION].help,
                                     NGX_HTTP_SCALE_HISTOGRAM, &labels);
    if (slot == NGX_ERROR) {
        return NGX_ERROR;
    }

    pool->duration_slot = slot;

    for (k = NGX_HTTP_SCALE_REDIS_CONNECT; k < NGX_HTTP_SCALE_REDIS_NKINDS; k++)
    {
        labels.data = ngx_pnalloc(cf->pool, name.len + 64);
        if (labels.data == NULL) {
            return NGX_ERROR;
        }

        labels.len = ngx_sprintf(labels.data, "pool=\"%V\",kind=\"%s\"",
                                 &name, ngx_http_scale_redis_kind_names[k])
                     - labels.data;

        slot = ngx_http_scale_series_add(cf,
                                         &f[NGX_HTTP_SCALE_REDIS_ERRORS].family,
                                         &f[NGX_HTTP_SCALE_REDIS_ERRORS].help,
                                         NGX_HTTP_SCALE_COUNTER, &labels);
        if (slot == NGX_ERROR) {
            return NGX_ERROR;
        }

        pool->errors_slot[k] = slot;
    }

    return NGX_OK;
}
