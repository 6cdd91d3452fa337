
/*
 * The Redis client: hiredis's async API on nginx's event loop.
 *
 * hiredis owns the socket; an ngx_connection_t wraps its fd so nginx's
 * event module can watch it, and is freed (never closed) when hiredis lets
 * go.  Commands from all requests of a worker share the pool's connections
 * and are pipelined: everything sent in one event loop iteration leaves in
 * one write.  A waiting request is represented by a token allocated outside
 * r->pool; the request's pool cleanup detaches it, and hiredis keeps the
 * token until the reply (or the connection's end) arrives.
 */


#include "ngx_http_scale_redis.h"
#include "ngx_http_scale_metrics.h"
#include <sys/ioctl.h>


#define NGX_HTTP_SCALE_REDIS_PING_INTERVAL   1000
#define NGX_HTTP_SCALE_REDIS_BACKOFF_MIN     50
#define NGX_HTTP_SCALE_REDIS_BACKOFF_MAX     1000
/* output not yet written: more means Redis is not reading */
#define NGX_HTTP_SCALE_REDIS_OBUF_MAX        (4 * 1024 * 1024)
/* a PING unanswered this long means a dead connection: reconnect */
#define NGX_HTTP_SCALE_REDIS_PING_DEAD       3000


typedef struct ngx_http_scale_redis_token_s  ngx_http_scale_redis_token_t;

struct ngx_http_scale_redis_token_s {
    ngx_http_request_t              *request;      /* NULL once detached */
    ngx_pool_cleanup_t              *cleanup;
    ngx_http_scale_redis_pool_t     *pool;
    ngx_http_scale_redis_script_t   *script;
    int                              argc;
    const char                     **argv;
    const size_t                    *argvlen;
    ngx_http_scale_redis_handler_pt  handler;
    ngx_http_scale_redis_detached_pt detached;     /* NULL once called */
    void                            *data;
    ngx_event_t                      timer;
    uint64_t                         start_us;
    unsigned                         retried:1;
    ngx_http_scale_redis_token_t    *next;         /* free list */
};


static void ngx_http_scale_redis_connect(ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_drop(ngx_http_scale_redis_conn_t *rc,
    const char *reason);
static void ngx_http_scale_redis_schedule(ngx_http_scale_redis_conn_t *rc,
    const char *reason);
static ngx_uint_t ngx_http_scale_redis_conn_usable(
    ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_timer_handler(ngx_event_t *ev);
static void ngx_http_scale_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_scale_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_scale_redis_handshake_send(redisAsyncContext *ac,
    ngx_uint_t step, int argc, const char **argv, const size_t *lens);
static void ngx_http_scale_redis_handshake_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_scale_redis_ping_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_scale_redis_ping_handler(ngx_event_t *ev);
static void ngx_http_scale_redis_pool_update(ngx_http_scale_redis_pool_t *pool,
    const char *reason);
static const char *ngx_http_scale_redis_not_master(redisReply *reply);
static const char *ngx_http_scale_redis_role(redisReply *reply);
static void ngx_http_scale_redis_failover(ngx_http_scale_redis_pool_t *pool,
    const char *reason);

static ngx_int_t ngx_http_scale_redis_attach(ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_add_read(void *privdata);
static void ngx_http_scale_redis_del_read(void *privdata);
static void ngx_http_scale_redis_add_write(void *privdata);
static void ngx_http_scale_redis_del_write(void *privdata);
static void ngx_http_scale_redis_cleanup(void *privdata);
static void ngx_http_scale_redis_read_handler(ngx_event_t *rev);
static void ngx_http_scale_redis_write_handler(ngx_event_t *wev);

static ngx_http_scale_redis_conn_t *ngx_http_scale_redis_pick(
    ngx_http_scale_redis_pool_t *pool);
static ngx_int_t ngx_http_scale_redis_queue(ngx_http_scale_redis_pool_t *pool,
    ngx_http_scale_redis_script_t *script, int argc, const char **argv,
    const size_t *argvlen, ngx_http_scale_redis_token_t *t);
static void ngx_http_scale_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_uint_t ngx_http_scale_redis_wanted(ngx_http_scale_redis_token_t *t);
static void ngx_http_scale_redis_deliver(ngx_http_scale_redis_token_t *t,
    ngx_int_t rc, redisReply *reply);
static void ngx_http_scale_redis_command_timeout(ngx_event_t *ev);
static void ngx_http_scale_redis_request_cleanup(void *data);
static ngx_http_scale_redis_token_t *ngx_http_scale_redis_token_alloc(void);
static void ngx_http_scale_redis_token_free(ngx_http_scale_redis_token_t *t);

static char *ngx_http_scale_redis_pool_directive(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_scale_redis_parse_server(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value);
static ngx_int_t ngx_http_scale_redis_add_series(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool);


static ngx_http_scale_redis_token_t  *ngx_http_scale_redis_free_tokens;
static ngx_uint_t                     ngx_http_scale_redis_exiting;

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

/* what a handshake reply answers (its privdata points here) */
#define NGX_HTTP_SCALE_REDIS_STEP_SETUP      0     /* AUTH, SELECT */
#define NGX_HTTP_SCALE_REDIS_STEP_ROLE       1
#define NGX_HTTP_SCALE_REDIS_STEP_SCRIPT     2     /* SCRIPT LOAD */
#define NGX_HTTP_SCALE_REDIS_STEP_PING       3     /* the last one */

static u_char  ngx_http_scale_redis_steps[4];


/* runtime: sending a command */

ngx_int_t
ngx_http_scale_redis_send(ngx_http_request_t *r,
    ngx_http_scale_redis_pool_t *pool, ngx_http_scale_redis_script_t *script,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_scale_redis_handler_pt handler, void *data)
{
    ngx_int_t                      rc;
    ngx_pool_cleanup_t            *cln;
    ngx_http_scale_redis_token_t  *t;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    t = ngx_http_scale_redis_token_alloc();
    if (t == NULL) {
        return NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    t->handler = handler;
    t->data = data;
    t->timer.log = r->connection->log;

    rc = ngx_http_scale_redis_queue(pool, script, argc, argv, argvlen, t);

    if (rc != NGX_AGAIN) {
        ngx_http_scale_redis_token_free(t);
        return rc;
    }

    t->request = r;
    t->cleanup = cln;

    cln->handler = ngx_http_scale_redis_request_cleanup;
    cln->data = t;

    /* a client that goes away while we wait is noticed */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


ngx_int_t
ngx_http_scale_redis_send_detached(ngx_http_scale_redis_pool_t *pool,
    ngx_http_scale_redis_script_t *script, int argc, const char **argv,
    const size_t *argvlen, ngx_http_scale_redis_detached_pt handler,
    void *data, ngx_http_scale_redis_cmd_t **cmd)
{
    ngx_int_t                      rc;
    ngx_http_scale_redis_token_t  *t;

    t = ngx_http_scale_redis_token_alloc();
    if (t == NULL) {
        return NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    t->detached = handler;
    t->data = data;
    t->timer.log = pool->log;

    rc = ngx_http_scale_redis_queue(pool, script, argc, argv, argvlen, t);

    if (rc != NGX_AGAIN) {
        t->detached = NULL;
        ngx_http_scale_redis_token_free(t);
        return rc;
    }

    *cmd = t;

    return NGX_AGAIN;
}


/* nobody waits any more: the token stays with hiredis until its reply */

void
ngx_http_scale_redis_abandon(ngx_http_scale_redis_cmd_t *t)
{
    t->detached = NULL;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }
}


/*
 * Round robin over the usable connections.  A connection whose PING is
 * overdue (Redis stalled) or whose output has piled up is skipped, so its
 * callers fail at once instead of each waiting for the timeout.
 */

static ngx_http_scale_redis_conn_t *
ngx_http_scale_redis_pick(ngx_http_scale_redis_pool_t *pool)
{
    ngx_uint_t                    k;
    ngx_http_scale_redis_conn_t  *rc;

    if (ngx_http_scale_redis_exiting || pool->conns == NULL) {
        return NULL;
    }

    for (k = 0; k < pool->nconnections; k++) {
        rc = &pool->conns[(pool->next + k) % pool->nconnections];

        if (ngx_http_scale_redis_conn_usable(rc)) {
            pool->next = (pool->next + k + 1) % pool->nconnections;
            return rc;
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_http_scale_redis_conn_usable(ngx_http_scale_redis_conn_t *rc)
{
    if (rc->ac == NULL) {
        return 0;
    }

    if (rc->ready) {
        return !(rc->ping_pending
                 && ngx_current_msec - rc->ping_sent > rc->pool->timeout)
               && sdslen(rc->ac->c.obuf) <= NGX_HTTP_SCALE_REDIS_OBUF_MAX;
    }

    /*
     * A worker that has just started is not down: its commands follow
     * the handshake on the connection being made, bounded by timeout.
     */

    return rc->starting;
}


ngx_uint_t
ngx_http_scale_redis_usable(ngx_http_scale_redis_pool_t *pool)
{
    ngx_uint_t  k;

    if (ngx_http_scale_redis_exiting || pool->conns == NULL) {
        return 0;
    }

    for (k = 0; k < pool->nconnections; k++) {
        if (ngx_http_scale_redis_conn_usable(&pool->conns[k])) {
            return 1;
        }
    }

    return 0;
}


/* picks a connection, sends, arms the command's timeout */

static ngx_int_t
ngx_http_scale_redis_queue(ngx_http_scale_redis_pool_t *pool,
    ngx_http_scale_redis_script_t *script, int argc, const char **argv,
    const size_t *argvlen, ngx_http_scale_redis_token_t *t)
{
    int                            n, i, rv;
    size_t                         lens_buf[32], *lens;
    const char                    *args_buf[32], **args;
    ngx_http_scale_redis_conn_t   *rc;

    rc = ngx_http_scale_redis_pick(pool);

    if (rc == NULL) {
        ngx_http_scale_counter_add(
                            pool->errors_slot[NGX_HTTP_SCALE_REDIS_CONNECT], 1);
        return NGX_HTTP_SCALE_REDIS_CONNECT;
    }

    n = argc + (script ? 2 : 0);

    if (n <= 32) {
        args = args_buf;
        lens = lens_buf;

    } else {
        args = ngx_alloc(n * (sizeof(char *) + sizeof(size_t)), pool->log);
        if (args == NULL) {
            return NGX_HTTP_SCALE_REDIS_PROTOCOL;
        }

        lens = (size_t *) (args + n);
    }

    n = 0;

    if (script) {
        args[n] = "EVALSHA";
        lens[n++] = sizeof("EVALSHA") - 1;
        args[n] = (const char *) script->sha1;
        lens[n++] = 40;
    }

    for (i = 0; i < argc; i++) {
        args[n] = argv[i];
        lens[n++] = argvlen[i];
    }

    /* hiredis formats the command now: args need not outlive the call */
    rv = redisAsyncCommandArgv(rc->ac, ngx_http_scale_redis_reply, t, n,
                               args, lens);

    if (args != args_buf) {
        ngx_free(args);
    }

    if (rv != REDIS_OK) {
        ngx_http_scale_counter_add(
                           pool->errors_slot[NGX_HTTP_SCALE_REDIS_PROTOCOL], 1);
        return NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    t->pool = pool;
    t->script = script;
    t->argc = argc;
    t->argv = argv;
    t->argvlen = argvlen;
    t->start_us = ngx_http_scale_now_us();

    /*
     * Not cancelable: a request waits on it, and a worker that shuts down
     * answers its requests first.  When the last of them goes (the client,
     * worker_shutdown_timeout), the request's cleanup or
     * ngx_http_scale_redis_abandon() removes the timer.
     */

    t->timer.handler = ngx_http_scale_redis_command_timeout;
    t->timer.data = t;
    t->timer.cancelable = 0;
    ngx_add_timer(&t->timer, pool->timeout);

    ngx_http_scale_counter_add(pool->commands_slot, 1);

    return NGX_AGAIN;
}


static void
ngx_http_scale_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                    *reply = r;
    ngx_http_scale_redis_token_t  *t = privdata;

    int                            n, i;
    size_t                        *lens;
    ngx_int_t                      skipped;
    const char                    *reason;
    const char                   **args;
    ngx_http_scale_redis_conn_t   *rc;
    ngx_http_scale_redis_pool_t   *pool;

    pool = t->pool;

    if (reply == NULL) {
        /* the connection is gone */
        if (ngx_http_scale_redis_wanted(t) && !ngx_http_scale_redis_exiting) {
            ngx_http_scale_counter_add(
                           pool->errors_slot[NGX_HTTP_SCALE_REDIS_PROTOCOL], 1);
            ngx_http_scale_redis_deliver(t, NGX_HTTP_SCALE_REDIS_PROTOCOL,
                                         NULL);
        }

        ngx_http_scale_redis_token_free(t);
        return;
    }

    ngx_http_scale_histogram_observe(pool->duration_slot,
                                     ngx_http_scale_now_us() - t->start_us);

    if (reply->type == REDIS_REPLY_ERROR
        && t->script && !t->retried && ngx_http_scale_redis_wanted(t)
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /* the script cache was flushed: EVAL loads it again */

        n = t->argc + 2;
        args = ngx_alloc(n * (sizeof(char *) + sizeof(size_t)), pool->log);

        if (args) {
            lens = (size_t *) (args + n);

            args[0] = "EVAL";
            lens[0] = 4;
            args[1] = (const char *) t->script->body.data;
            lens[1] = t->script->body.len;

            for (i = 0; i < t->argc; i++) {
                args[i + 2] = t->argv[i];
                lens[i + 2] = t->argvlen[i];
            }

            t->retried = 1;

            i = redisAsyncCommandArgv(ac, ngx_http_scale_redis_reply, t, n,
                                      args, lens);
            ngx_free(args);

            if (i == REDIS_OK) {
                ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                              "redis pool \"%V\" lost its scripts, "
                              "loading again", &pool->name);
                return;
            }
        }
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_scale_counter_add(
                              pool->errors_slot[NGX_HTTP_SCALE_REDIS_REPLY], 1);

        if (ngx_http_scale_redis_wanted(t)) {
            skipped = ngx_http_scale_log_burst(&pool->log_burst);

            if (skipped != NGX_DECLINED) {
                ngx_log_error(NGX_LOG_ERR, t->timer.log, 0,
                              "redis pool \"%V\" error: %*s, "
                              "%i similar errors not logged", &pool->name,
                              (size_t) reply->len, reply->str, skipped);
            }
        }

        /*
         * A replica (or a server still loading): find the master again
         * before the caller is resumed, so that what it sends next fails
         * at once instead of going to the same server.
         */

        reason = ngx_http_scale_redis_not_master(reply);
        rc = ac->data;

        if (reason && rc->ac == ac) {
            ngx_http_scale_redis_failover(pool, reason);
        }

        if (ngx_http_scale_redis_wanted(t)) {
            ngx_http_scale_redis_deliver(t, NGX_HTTP_SCALE_REDIS_REPLY, reply);
        }

    } else if (ngx_http_scale_redis_wanted(t)) {
        ngx_http_scale_redis_deliver(t, NGX_HTTP_SCALE_REDIS_OK, reply);
    }

    ngx_http_scale_redis_token_free(t);
}


static ngx_uint_t
ngx_http_scale_redis_wanted(ngx_http_scale_redis_token_t *t)
{
    return t->request != NULL || t->detached != NULL;
}


/* hands the outcome over, once: to a request (then resumed) or a caller */

static void
ngx_http_scale_redis_deliver(ngx_http_scale_redis_token_t *t, ngx_int_t rc,
    redisReply *reply)
{
    ngx_http_request_t                 *r;
    ngx_http_scale_redis_detached_pt    detached;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }

    if (t->detached) {
        detached = t->detached;
        t->detached = NULL;
        detached(t->data, rc, reply);
        return;
    }

    r = t->request;

    t->request = NULL;
    t->cleanup->handler = NULL;

    t->handler(r, t->data, rc, reply);

    ngx_http_scale_resume(r);
}


static void
ngx_http_scale_redis_command_timeout(ngx_event_t *ev)
{
    ngx_http_scale_redis_token_t  *t = ev->data;

    ngx_int_t                      skipped;

    skipped = ngx_http_scale_log_burst(&t->pool->log_burst);

    if (skipped != NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "redis pool \"%V\" timed out after %M ms, "
                      "%i similar errors not logged",
                      &t->pool->name, t->pool->timeout, skipped);
    }

    ngx_http_scale_counter_add(
                         t->pool->errors_slot[NGX_HTTP_SCALE_REDIS_TIMEOUT], 1);

    /* the token stays with hiredis until the late reply arrives */
    ngx_http_scale_redis_deliver(t, NGX_HTTP_SCALE_REDIS_TIMEOUT, NULL);
}


static void
ngx_http_scale_redis_request_cleanup(void *data)
{
    ngx_http_scale_redis_token_t  *t = data;

    t->request = NULL;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }
}


static ngx_http_scale_redis_token_t *
ngx_http_scale_redis_token_alloc(void)
{
    ngx_http_scale_redis_token_t  *t;

    t = ngx_http_scale_redis_free_tokens;

    if (t) {
        ngx_http_scale_redis_free_tokens = t->next;

    } else {
        t = ngx_alloc(sizeof(ngx_http_scale_redis_token_t), ngx_cycle->log);
        if (t == NULL) {
            return NULL;
        }
    }

    ngx_memzero(t, sizeof(ngx_http_scale_redis_token_t));

    return t;
}


static void
ngx_http_scale_redis_token_free(ngx_http_scale_redis_token_t *t)
{
    if (t->request) {
        /* not delivered (worker exiting): the request must not find it */
        t->cleanup->handler = NULL;
        t->request = NULL;
    }

    t->detached = NULL;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }

    if (ngx_http_scale_redis_exiting) {
        ngx_free(t);
        return;
    }

    t->next = ngx_http_scale_redis_free_tokens;
    ngx_http_scale_redis_free_tokens = t;
}


void
ngx_http_scale_redis_count_error(ngx_http_scale_redis_pool_t *pool,
    ngx_uint_t kind)
{
    if (kind > NGX_HTTP_SCALE_REDIS_OK && kind < NGX_HTTP_SCALE_REDIS_NKINDS) {
        ngx_http_scale_counter_add(pool->errors_slot[kind], 1);
    }
}


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
    ngx_http_scale_redis_conf_t  *rcf;

    rcf = ngx_http_scale_redis_cycle_conf(cycle);

    return rcf ? rcf->pools.nelts : 0;
}


ngx_http_scale_redis_pool_t *
ngx_http_scale_redis_pool_at(ngx_cycle_t *cycle, ngx_uint_t i)
{
    ngx_http_scale_redis_conf_t   *rcf;
    ngx_http_scale_redis_pool_t  **pools;

    rcf = ngx_http_scale_redis_cycle_conf(cycle);
    pools = rcf->pools.elts;

    return pools[i];
}


/* connections: connect, handshake, keepalive PING, backoff */

ngx_int_t
ngx_http_scale_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_scale_redis_conf_t *rcf)
{
    ngx_uint_t                     i, k;
    ngx_http_scale_redis_pool_t  **pools, *pool;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ngx_http_scale_redis_exiting = 0;

    pools = rcf->pools.elts;

    for (i = 0; i < rcf->pools.nelts; i++) {
        pool = pools[i];

        pool->log = cycle->log;
        pool->conns = ngx_pcalloc(cycle->pool, pool->nconnections
                                  * sizeof(ngx_http_scale_redis_conn_t));
        if (pool->conns == NULL) {
            return NGX_ERROR;
        }

        pool->up = 0;
        pool->since = ngx_current_msec;
        pool->down_reason = "connecting";
        ngx_http_scale_gauge_set(pool->up_slot, 0);

        for (k = 0; k < pool->nconnections; k++) {
            pool->conns[k].pool = pool;
            pool->conns[k].timer.handler = ngx_http_scale_redis_timer_handler;
            pool->conns[k].timer.data = &pool->conns[k];
            pool->conns[k].timer.log = cycle->log;
            pool->conns[k].timer.cancelable = 1;
            pool->conns[k].starting = 1;

            ngx_http_scale_redis_connect(&pool->conns[k]);
        }

        pool->ping.handler = ngx_http_scale_redis_ping_handler;
        pool->ping.data = pool;
        pool->ping.log = cycle->log;
        pool->ping.cancelable = 1;
        ngx_add_timer(&pool->ping, NGX_HTTP_SCALE_REDIS_PING_INTERVAL);
    }

    return NGX_OK;
}


void
ngx_http_scale_redis_exit_process(ngx_cycle_t *cycle,
    ngx_http_scale_redis_conf_t *rcf)
{
    ngx_uint_t                     i, k;
    redisAsyncContext             *ac;
    ngx_http_scale_redis_pool_t  **pools, *pool;
    ngx_http_scale_redis_token_t  *t;

    ngx_http_scale_redis_exiting = 1;

    pools = rcf->pools.elts;

    for (i = 0; i < rcf->pools.nelts; i++) {
        pool = pools[i];

        if (pool->conns == NULL) {
            continue;
        }

        if (pool->ping.timer_set) {
            ngx_del_timer(&pool->ping);
        }

        for (k = 0; k < pool->nconnections; k++) {
            if (pool->conns[k].timer.timer_set) {
                ngx_del_timer(&pool->conns[k].timer);
            }

            ac = pool->conns[k].ac;
            if (ac) {
                pool->conns[k].ac = NULL;
                redisAsyncFree(ac);
            }
        }
    }

    while (ngx_http_scale_redis_free_tokens) {
        t = ngx_http_scale_redis_free_tokens;
        ngx_http_scale_redis_free_tokens = t->next;
        ngx_free(t);
    }
}


static void
ngx_http_scale_redis_connect(ngx_http_scale_redis_conn_t *rc)
{
    int                             argc;
    size_t                          lens[3];
    u_char                          db[NGX_INT_T_LEN];
    ngx_uint_t                      i;
    const char                     *argv[3];
    redisAsyncContext              *ac;
    ngx_http_scale_redis_pool_t    *pool;
    ngx_http_scale_redis_script_t **scripts;

    pool = rc->pool;

    if (pool->unix_path) {
        ac = redisAsyncConnectUnix((char *) pool->unix_path);

    } else {
        ac = redisAsyncConnect((char *) pool->host, pool->port);
    }

    if (ac == NULL) {
        ngx_http_scale_redis_schedule(rc, "out of memory");
        return;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                      "redis pool \"%V\" connect to %V failed: %s",
                      &pool->name, &pool->server, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_scale_redis_schedule(rc, "connect failed");
        return;
    }

    rc->ac = ac;
    ac->data = rc;

    if (ngx_http_scale_redis_attach(rc) != NGX_OK) {
        ngx_http_scale_redis_drop(rc, "no free connections");
        return;
    }

    redisAsyncSetDisconnectCallback(ac, ngx_http_scale_redis_disconnected);
    redisAsyncSetConnectCallback(ac, ngx_http_scale_redis_connected);

    /*
     * Queued now, sent once connected; the last reply (PING) completes
     * the handshake.  ROLE comes after AUTH and SELECT: a replica is not
     * the master that the pool is for.
     */

    rc->role = 0;

    if (pool->password.len) {
        argc = 0;
        argv[argc] = "AUTH";
        lens[argc++] = 4;

        if (pool->username.len) {
            argv[argc] = (const char *) pool->username.data;
            lens[argc++] = pool->username.len;
        }

        argv[argc] = (const char *) pool->password.data;
        lens[argc++] = pool->password.len;

        ngx_http_scale_redis_handshake_send(ac, NGX_HTTP_SCALE_REDIS_STEP_SETUP,
                                            argc, argv, lens);
    }

    if (pool->database) {
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = (const char *) db;
        lens[1] = ngx_sprintf(db, "%i", pool->database) - db;

        ngx_http_scale_redis_handshake_send(ac, NGX_HTTP_SCALE_REDIS_STEP_SETUP,
                                            2, argv, lens);
    }

    argv[0] = "ROLE";
    lens[0] = 4;
    ngx_http_scale_redis_handshake_send(ac, NGX_HTTP_SCALE_REDIS_STEP_ROLE,
                                        1, argv, lens);

    /* the scripts this pool runs, no others */

    if (pool->scripts) {
        scripts = pool->scripts->elts;

        for (i = 0; i < pool->scripts->nelts; i++) {
            argv[0] = "SCRIPT";
            lens[0] = 6;
            argv[1] = "LOAD";
            lens[1] = 4;
            argv[2] = (const char *) scripts[i]->body.data;
            lens[2] = scripts[i]->body.len;

            ngx_http_scale_redis_handshake_send(ac,
                                            NGX_HTTP_SCALE_REDIS_STEP_SCRIPT,
                                            3, argv, lens);
        }
    }

    argv[0] = "PING";
    lens[0] = 4;
    ngx_http_scale_redis_handshake_send(ac, NGX_HTTP_SCALE_REDIS_STEP_PING,
                                        1, argv, lens);

    ngx_add_timer(&rc->timer, pool->connect_timeout);
}


static void
ngx_http_scale_redis_handshake_send(redisAsyncContext *ac, ngx_uint_t step,
    int argc, const char **argv, const size_t *lens)
{
    redisAsyncCommandArgv(ac, ngx_http_scale_redis_handshake_reply,
                          &ngx_http_scale_redis_steps[step], argc, argv, lens);
}


static void
ngx_http_scale_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_scale_redis_conn_t  *rc = ac->data;

    if (status == REDIS_OK) {
        return;
    }

    /* hiredis frees ac after this callback */

    ngx_log_error(NGX_LOG_INFO, rc->pool->log, 0,
                  "redis pool \"%V\" connect to %V failed: %s",
                  &rc->pool->name, &rc->pool->server, ac->errstr);

    rc->ac = NULL;
    ngx_http_scale_redis_schedule(rc, "connect failed");
}


static void
ngx_http_scale_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_uint_t                    level;
    ngx_http_scale_redis_conn_t  *rc = ac->data;

    if (rc->ac != ac) {
        /* freed by us, the caller has already taken care */
        return;
    }

    if (!ngx_http_scale_redis_exiting) {
        level = rc->ready ? NGX_LOG_ERR : NGX_LOG_INFO;
        ngx_log_error(level, rc->pool->log, 0,
                      "redis pool \"%V\" lost connection to %V: %s",
                      &rc->pool->name, &rc->pool->server,
                      ac->errstr ? ac->errstr : "closed");
    }

    rc->ac = NULL;
    ngx_http_scale_redis_schedule(rc, "connection lost");
}


static void
ngx_http_scale_redis_handshake_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                   *reply = r;
    ngx_int_t                     skipped;
    ngx_uint_t                    step;
    const char                   *role, *reason;
    ngx_http_scale_redis_conn_t  *rc;
    ngx_http_scale_redis_pool_t  *pool;

    rc = ac->data;

    if (reply == NULL || rc->ac != ac) {
        return;
    }

    pool = rc->pool;
    step = (u_char *) privdata - ngx_http_scale_redis_steps;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" handshake step %ui answered",
                   &pool->name, step);

    if (step == NGX_HTTP_SCALE_REDIS_STEP_ROLE) {

        if (reply->type == REDIS_REPLY_ERROR) {
            /* an ACL user may not be allowed ROLE: -READONLY will tell */
            ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                          "redis pool \"%V\" cannot check the role of %V: "
                          "%*s", &pool->name, &pool->server,
                          (size_t) reply->len, reply->str);
            return;
        }

        role = ngx_http_scale_redis_role(reply);

        if (role == NULL) {
            rc->role = 1;
            rc->failover = 0;
            return;
        }

        skipped = ngx_http_scale_log_burst(&pool->log_burst);

        if (skipped != NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" handshake with %V failed: "
                          "ROLE is \"%s\", not master, "
                          "%i similar errors not logged",
                          &pool->name, &pool->server, role, skipped);
        }

        ngx_http_scale_counter_add(
                          pool->errors_slot[NGX_HTTP_SCALE_REDIS_CONNECT], 1);

        rc->failover = 1;
        ngx_http_scale_redis_drop(rc, ngx_strcmp(role, "slave") == 0
                                      ? "ROLE: server is a replica"
                                      : "ROLE: server is not the master");
        return;
    }

    if (step == NGX_HTTP_SCALE_REDIS_STEP_SCRIPT) {

        if (reply->type == REDIS_REPLY_ERROR) {
            /* EVALSHA will get NOSCRIPT, and EVAL loads it */
            ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                          "redis pool \"%V\" could not load a script: %*s, "
                          "EVALSHA falls back to EVAL", &pool->name,
                          (size_t) reply->len, reply->str);
        }

        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        skipped = ngx_http_scale_log_burst(&pool->log_burst);

        if (skipped != NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" handshake with %V failed: %*s, "
                          "%i similar errors not logged",
                          &pool->name, &pool->server,
                          (size_t) reply->len, reply->str, skipped);
        }

        ngx_http_scale_counter_add(
                          pool->errors_slot[NGX_HTTP_SCALE_REDIS_CONNECT], 1);

        reason = ngx_http_scale_redis_not_master(reply);

        if (reason) {
            rc->failover = 1;

        } else {
            reason = "handshake failed";
        }

        /* hiredis frees it once this callback returns */
        ngx_http_scale_redis_drop(rc, reason);
        return;
    }

    if (step != NGX_HTTP_SCALE_REDIS_STEP_PING) {
        return;
    }

    /* the final PING: ready */

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    rc->ready = 1;
    rc->starting = 0;
    rc->ping_pending = 0;
    rc->ready_at = ngx_current_msec;

    if (rc->failover) {
        /*
         * Reconnected after a failover to a server whose role cannot be
         * asked: usable, but up (and the backoff reset) only after a PING
         * interval without -READONLY.
         */
        ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                      "redis pool \"%V\" reconnected to %V, role unknown",
                      &pool->name, &pool->server);
        return;
    }

    rc->backoff = 0;

    if (!pool->up) {
        ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                      "redis pool \"%V\" connected to %V",
                      &pool->name, &pool->server);
    }

    ngx_http_scale_redis_pool_update(pool, NULL);
}


/*
 * A reply that says the server is not a master to write to: the reason
 * to show, or NULL.  Older Redis versions wrap an error raised inside a
 * script: "ERR Error running script ...: -READONLY ...".
 */

static const char *
ngx_http_scale_redis_not_master(redisReply *reply)
{
    ngx_uint_t  i;

    static struct {
        const char  *code;
        size_t       len;
        const char  *wrapped;
        const char  *reason;
    } codes[] = {
        { "READONLY ", 9, " -READONLY ", "READONLY: server is a replica" },
        { "MASTERDOWN ", 11, " -MASTERDOWN ",
          "MASTERDOWN: replica without its master" },
        { "LOADING ", 8, " -LOADING ", "LOADING: server is loading data" }
    };

    if (reply->type != REDIS_REPLY_ERROR || reply->str == NULL) {
        return NULL;
    }

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if ((reply->len >= codes[i].len
             && ngx_strncmp(reply->str, codes[i].code, codes[i].len) == 0)
            || (reply->len > 4 && ngx_strncmp(reply->str, "ERR ", 4) == 0
                && ngx_strnstr((u_char *) reply->str,
                               (char *) codes[i].wrapped, reply->len)))
        {
            return codes[i].reason;
        }
    }

    return NULL;
}


/* NULL for a master; else the role ROLE answered ("slave", "sentinel") */

static const char *
ngx_http_scale_redis_role(redisReply *reply)
{
    redisReply  *e;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        return "unknown";
    }

    e = reply->element[0];

    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS) {
        return "unknown";
    }

    if (e->len == 6 && ngx_strncmp(e->str, "master", 6) == 0) {
        return NULL;
    }

    if (e->len == 5 && ngx_strncmp(e->str, "slave", 5) == 0) {
        return "slave";
    }

    if (e->len == 8 && ngx_strncmp(e->str, "sentinel", 8) == 0) {
        return "sentinel";
    }

    return "unknown";
}


/*
 * The server is not the master (any more).  Every connection of the pool
 * goes to it: all are made unusable first, so that the callers their
 * failed commands resume send nothing to it, then dropped.  They connect
 * again with backoff and count as up once the server answers as master.
 */

static void
ngx_http_scale_redis_failover(ngx_http_scale_redis_pool_t *pool,
    const char *reason)
{
    ngx_uint_t                    k;
    ngx_http_scale_redis_conn_t  *rc;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" failover: %s", &pool->name, reason);

    for (k = 0; k < pool->nconnections; k++) {
        rc = &pool->conns[k];

        rc->failover = 1;
        rc->ready = 0;
        rc->starting = 0;
    }

    for (k = 0; k < pool->nconnections; k++) {
        rc = &pool->conns[k];

        if (rc->ac) {
            ngx_http_scale_redis_drop(rc, reason);
        }
    }
}


/*
 * Closes a connection that failed.  It is marked unusable first: hiredis
 * fails the commands still waiting on it, and the requests they resume may
 * send again.
 */

static void
ngx_http_scale_redis_drop(ngx_http_scale_redis_conn_t *rc, const char *reason)
{
    redisAsyncContext  *ac;

    ac = rc->ac;

    rc->ready = 0;
    rc->starting = 0;
    rc->ping_pending = 0;
    rc->ac = NULL;

    if (ac) {
        redisAsyncFree(ac);
    }

    ngx_http_scale_redis_schedule(rc, reason);
}


/* after a failure: retry later, with capped exponential backoff */

static void
ngx_http_scale_redis_schedule(ngx_http_scale_redis_conn_t *rc,
    const char *reason)
{
    ngx_http_scale_redis_pool_t  *pool = rc->pool;

    rc->ready = 0;
    rc->starting = 0;
    rc->ping_pending = 0;

    if (ngx_http_scale_redis_exiting) {
        return;
    }

    if (pool->up) {
        ngx_http_scale_counter_add(
                          pool->errors_slot[NGX_HTTP_SCALE_REDIS_CONNECT], 1);
    }

    ngx_http_scale_redis_pool_update(pool, reason);

    rc->backoff = rc->backoff ? ngx_min(rc->backoff * 2,
                                        NGX_HTTP_SCALE_REDIS_BACKOFF_MAX)
                              : NGX_HTTP_SCALE_REDIS_BACKOFF_MIN;

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    ngx_add_timer(&rc->timer, rc->backoff);
}


static void
ngx_http_scale_redis_timer_handler(ngx_event_t *ev)
{
    ngx_http_scale_redis_conn_t  *rc = ev->data;

    if (ngx_http_scale_redis_exiting || ngx_exiting || ngx_quit) {
        return;
    }

    if (rc->ac == NULL) {
        /* backoff over */
        ngx_http_scale_redis_connect(rc);
        return;
    }

    /* connect or handshake took too long */

    ngx_log_error(NGX_LOG_INFO, rc->pool->log, 0,
                  "redis pool \"%V\" connect to %V timed out",
                  &rc->pool->name, &rc->pool->server);

    ngx_http_scale_redis_drop(rc, "connect timed out");
}


static void
ngx_http_scale_redis_ping_handler(ngx_event_t *ev)
{
    ngx_uint_t                    k;
    ngx_http_scale_redis_conn_t  *rc;
    ngx_http_scale_redis_pool_t  *pool = ev->data;

    if (ngx_http_scale_redis_exiting || ngx_exiting || ngx_quit) {
        return;
    }

    for (k = 0; k < pool->nconnections; k++) {
        rc = &pool->conns[k];

        if (!rc->ready) {
            continue;
        }

        if (rc->ping_pending) {
            if (ngx_current_msec - rc->ping_sent
                < ngx_max(NGX_HTTP_SCALE_REDIS_PING_DEAD, 3 * pool->timeout))
            {
                continue;
            }

            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" did not answer PING for %M ms, "
                          "reconnecting", &pool->name,
                          ngx_current_msec - rc->ping_sent);

            ngx_http_scale_redis_drop(rc, "not answering");
            continue;
        }

        /* ROLE where allowed: a master demoted while idle is noticed */

        if (redisAsyncCommand(rc->ac, ngx_http_scale_redis_ping_reply, rc,
                              rc->role ? "ROLE" : "PING")
            == REDIS_OK)
        {
            rc->ping_pending = 1;
            rc->ping_sent = ngx_current_msec;
            rc->ping_sent_us = ngx_http_scale_now_us();
        }
    }

    ngx_http_scale_redis_pool_update(pool, NULL);

    ngx_add_timer(&pool->ping, NGX_HTTP_SCALE_REDIS_PING_INTERVAL);
}


static void
ngx_http_scale_redis_ping_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                   *reply = r;
    ngx_int_t                     skipped;
    const char                   *role, *reason;
    ngx_http_scale_redis_conn_t  *rc = privdata;
    ngx_http_scale_redis_pool_t  *pool;

    if (reply == NULL || rc->ac != ac) {
        return;
    }

    pool = rc->pool;

    rc->ping_pending = 0;
    pool->latency = (ngx_msec_t)
                     ((ngx_http_scale_now_us() - rc->ping_sent_us + 999) / 1000);

    if (reply->type == REDIS_REPLY_ERROR) {
        skipped = ngx_http_scale_log_burst(&pool->log_burst);

        if (skipped != NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" %s failed: %*s, "
                          "%i similar errors not logged", &pool->name,
                          rc->role ? "ROLE" : "PING",
                          (size_t) reply->len, reply->str, skipped);
        }

        /* LOADING, MASTERDOWN and the like: not usable */
        reason = ngx_http_scale_redis_not_master(reply);

        if (reason) {
            ngx_http_scale_redis_failover(pool, reason);

        } else {
            ngx_http_scale_redis_drop(rc, "PING failed");
        }

        return;
    }

    if (rc->role) {
        role = ngx_http_scale_redis_role(reply);

        if (role) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" %V is no longer the master: "
                          "ROLE is \"%s\", reconnecting",
                          &pool->name, &pool->server, role);

            ngx_http_scale_redis_failover(pool,
                                          ngx_strcmp(role, "slave") == 0
                                          ? "ROLE: server is a replica"
                                          : "ROLE: server is not the master");
            return;
        }
    }

    if (rc->failover
        && ngx_current_msec - rc->ready_at
           >= NGX_HTTP_SCALE_REDIS_PING_INTERVAL)
    {
        /* no -READONLY for a PING interval: taken for the master again */

        rc->failover = 0;
        rc->backoff = 0;

        if (!pool->up) {
            ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                          "redis pool \"%V\" connected to %V",
                          &pool->name, &pool->server);
        }
    }

    ngx_http_scale_redis_pool_update(pool, NULL);
}


/*
 * The pool is up while one of its connections is ready, is not waiting
 * to be seen as the master again, and answers PING within the command
 * timeout.  Without a new reason a pool that stays down keeps its old one.
 */

static void
ngx_http_scale_redis_pool_update(ngx_http_scale_redis_pool_t *pool,
    const char *reason)
{
    ngx_uint_t                    k, up;
    ngx_http_scale_redis_conn_t  *rc;

    up = 0;

    for (k = 0; k < pool->nconnections; k++) {
        rc = &pool->conns[k];

        if (rc->ready
            && !rc->failover
            && (!rc->ping_pending
                || ngx_current_msec - rc->ping_sent <= pool->timeout))
        {
            up = 1;
            break;
        }
    }

    if (!up && reason == NULL) {
        reason = pool->down_reason ? pool->down_reason : "not answering";
    }

    if (up != pool->up) {
        if (!up) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" is down: %s",
                          &pool->name, reason);
        }

        pool->up = up;
        pool->since = ngx_current_msec;
    }

    pool->down_reason = up ? NULL : reason;

    ngx_http_scale_gauge_set(pool->up_slot, up);
}


/* the event adapter: hiredis's hooks on an ngx_connection_t */

static ngx_int_t
ngx_http_scale_redis_attach(ngx_http_scale_redis_conn_t *rc)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(rc->ac->c.fd, rc->pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = rc;
    c->read->handler = ngx_http_scale_redis_read_handler;
    c->write->handler = ngx_http_scale_redis_write_handler;
    c->read->log = rc->pool->log;
    c->write->log = rc->pool->log;

    rc->connection = c;

    rc->ac->ev.data = rc;
    rc->ac->ev.addRead = ngx_http_scale_redis_add_read;
    rc->ac->ev.delRead = ngx_http_scale_redis_del_read;
    rc->ac->ev.addWrite = ngx_http_scale_redis_add_write;
    rc->ac->ev.delWrite = ngx_http_scale_redis_del_write;
    rc->ac->ev.cleanup = ngx_http_scale_redis_cleanup;

    return NGX_OK;
}


static void
ngx_http_scale_redis_add_event(ngx_event_t *ev, ngx_int_t event)
{
    if (ev->active) {
        return;
    }

    if (ngx_add_event(ev, event,
                      (ngx_event_flags & NGX_USE_CLEAR_EVENT)
                      ? NGX_CLEAR_EVENT : NGX_LEVEL_EVENT)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "redis: adding event failed");
    }
}


static void
ngx_http_scale_redis_del_event(ngx_event_t *ev, ngx_int_t event)
{
    /* edge-triggered events stay registered: no syscall per command */

    if (!ev->active || (ngx_event_flags & NGX_USE_CLEAR_EVENT)) {
        return;
    }

    ngx_del_event(ev, event, 0);
}


static void
ngx_http_scale_redis_add_read(void *privdata)
{
    ngx_http_scale_redis_conn_t  *rc = privdata;

    ngx_http_scale_redis_add_event(rc->connection->read, NGX_READ_EVENT);
}


static void
ngx_http_scale_redis_del_read(void *privdata)
{
    ngx_http_scale_redis_conn_t  *rc = privdata;

    ngx_http_scale_redis_del_event(rc->connection->read, NGX_READ_EVENT);
}


static void
ngx_http_scale_redis_add_write(void *privdata)
{
    ngx_event_t                  *wev;
    ngx_http_scale_redis_conn_t  *rc = privdata;

    wev = rc->connection->write;

    /*
     * An edge-triggered socket that is already writable will not report
     * it again: write at the end of this event loop iteration, together
     * with whatever else is sent until then.
     */

    if (wev->ready && (ngx_event_flags & NGX_USE_CLEAR_EVENT)) {
        ngx_post_event(wev, &ngx_posted_events);
        return;
    }

    ngx_http_scale_redis_add_event(wev, NGX_WRITE_EVENT);
}


static void
ngx_http_scale_redis_del_write(void *privdata)
{
    ngx_http_scale_redis_conn_t  *rc = privdata;

    ngx_http_scale_redis_del_event(rc->connection->write, NGX_WRITE_EVENT);
}


/* hiredis closes the fd right after this */

static void
ngx_http_scale_redis_cleanup(void *privdata)
{
    ngx_connection_t             *c;
    ngx_http_scale_redis_conn_t  *rc = privdata;

    c = rc->connection;
    if (c == NULL) {
        return;
    }

    rc->connection = NULL;
    rc->ready = 0;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ngx_del_conn) {
        ngx_del_conn(c, NGX_CLOSE_EVENT);

    } else {
        if (c->read->active || c->read->disabled) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active || c->write->disabled) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static void
ngx_http_scale_redis_read_handler(ngx_event_t *rev)
{
    int                           n;
    ngx_connection_t             *c = rev->data;
    ngx_http_scale_redis_conn_t  *rc = c->data;
    redisAsyncContext            *ac = rc->ac;

    if (ac == NULL) {
        return;
    }

    /* hiredis reads 16 KiB at a time; edge-triggered means read it all */

    for ( ;; ) {
        redisAsyncHandleRead(ac);

        if (rc->ac != ac || rc->connection != c) {
            return;
        }

        if (!(ngx_event_flags & NGX_USE_CLEAR_EVENT)) {
            return;
        }

        if (ioctl(c->fd, FIONREAD, &n) == -1 || n <= 0) {

            /* data and the peer's FIN came together: read the FIN too */
            if (!rev->pending_eof) {
                return;
            }

            rev->pending_eof = 0;
        }
    }
}


static void
ngx_http_scale_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t             *c = wev->data;
    ngx_http_scale_redis_conn_t  *rc = c->data;
    redisAsyncContext            *ac = rc->ac;

    if (ac == NULL) {
        return;
    }

    /*
     * Writable again only once everything left: after a partial write
     * add_write() must wait for the next notification, not post again.
     */

    wev->ready = 0;

    redisAsyncHandleWrite(ac);

    if (rc->ac == ac && rc->connection == c && sdslen(ac->c.obuf) == 0) {
        wev->ready = 1;
    }
}


/* configuration */

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
    ngx_http_scale_redis_conf_t   *rcf;
    ngx_http_scale_redis_pool_t  **pools, *pool, **pp;

    rcf = ngx_http_scale_redis_conf(cf);
    pools = rcf->pools.elts;

    for (i = 0; i < rcf->pools.nelts; i++) {
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
    pool->file = cf->conf_file->file.name.data;
    pool->line = cf->conf_file->line;

    pp = ngx_array_push(&rcf->pools);
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

    if (pool->server.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"server\" in redis_pool \"%V\"", &pool->name);
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

    ngx_conf_init_value(pool->database, 0);
    ngx_conf_init_msec_value(pool->connect_timeout, 1000);
    ngx_conf_init_msec_value(pool->timeout, 100);
    ngx_conf_init_uint_value(pool->nconnections, 1);

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

    ngx_int_t    n;
    ngx_str_t   *value, *name;
    ngx_msec_t   ms, *msp;
    ngx_uint_t   set;

    value = cf->args->elts;
    name = &value[0];

    if (ngx_strcmp(name->data, "server") == 0) {
        set = (pool->server.len != 0);

    } else if (ngx_strcmp(name->data, "username") == 0) {
        set = (pool->username.data != NULL);

    } else if (ngx_strcmp(name->data, "password") == 0) {
        set = (pool->password.data != NULL);

    } else if (ngx_strcmp(name->data, "database") == 0) {
        set = (pool->database != NGX_CONF_UNSET);

    } else if (ngx_strcmp(name->data, "connections") == 0) {
        set = (pool->nconnections != NGX_CONF_UNSET_UINT);

    } else if (ngx_strcmp(name->data, "timeout") == 0) {
        set = (pool->timeout != NGX_CONF_UNSET_MSEC);

    } else if (ngx_strcmp(name->data, "connect_timeout") == 0) {
        set = (pool->connect_timeout != NGX_CONF_UNSET_MSEC);

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown directive \"%V\" in redis_pool", name);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts != 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"%V\" "
                           "directive of redis_pool", name);
        return NGX_CONF_ERROR;
    }

    if (set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive is duplicate in redis_pool \"%V\"",
                           name, &pool->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_strcmp(name->data, "server") == 0) {
        return ngx_http_scale_redis_parse_server(cf, pool, &value[1]);
    }

    /* never echo a password: only an empty one is refused here */

    if (ngx_strcmp(name->data, "username") == 0) {
        if (value[1].len == 0) {
            goto empty;
        }

        pool->username = value[1];
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(name->data, "password") == 0) {
        if (value[1].len == 0) {
            goto empty;
        }

        pool->password = value[1];
        return NGX_CONF_OK;
    }

    /* SELECT takes a C int */

    if (ngx_strcmp(name->data, "database") == 0) {
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

    if (ngx_strcmp(name->data, "connections") == 0) {
        n = ngx_atoi(value[1].data, value[1].len);
        if (n == NGX_ERROR || n < 1 || n > 64) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid connections \"%V\", "
                               "must be 1 to 64", &value[1]);
            return NGX_CONF_ERROR;
        }

        pool->nconnections = n;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(name->data, "timeout") == 0) {
        msp = &pool->timeout;

    } else {
        msp = &pool->connect_timeout;
    }

    ms = ngx_parse_time(&value[1], 0);
    if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %V \"%V\"", name, &value[1]);
        return NGX_CONF_ERROR;
    }

    *msp = ms;

    return NGX_CONF_OK;

empty:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %V \"\"", name);

    return NGX_CONF_ERROR;
}


/*
 * "host:port" or "unix:/path", resolved once, here.  ngx_parse_url also
 * refuses a unix path longer than sun_path (hiredis would cut it short and
 * connect to another socket) and reads "unix:" in any case, as nginx does.
 */

static char *
ngx_http_scale_redis_parse_server(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_str_t *value)
{
    size_t      len;
    u_char     *host;
    ngx_url_t   u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in redis_pool server \"%V\"", u.err, value);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for redis_pool server \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    pool->server = *value;

#if (NGX_HAVE_UNIX_DOMAIN)

    if (u.family == AF_UNIX) {
        pool->unix_path = ngx_pnalloc(cf->pool, u.host.len + 1);
        if (pool->unix_path == NULL) {
            return NGX_CONF_ERROR;
        }

        (void) ngx_cpystrn(pool->unix_path, u.host.data, u.host.len + 1);
        return NGX_CONF_OK;
    }

#endif

    host = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (host == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, host,
                        NGX_SOCKADDR_STRLEN, 0);
    host[len] = '\0';

    /* hiredis wants a bare IPv6 address */
    if (host[0] == '[') {
        host[len - 1] = '\0';
        host++;
    }

    pool->host = host;
    pool->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_scale_redis_init_conf(ngx_conf_t *cf, ngx_http_scale_redis_conf_t *rcf)
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

    pools = rcf->pools.elts;

    for (i = 0; i < rcf->pools.nelts; i++) {
        if (!pools[i]->defined) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown redis_pool \"%V\" in %s:%ui",
                          &pools[i]->name, pools[i]->file, pools[i]->line);
            return NGX_ERROR;
        }

        if (ngx_http_scale_redis_add_series(cf, pools[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

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
