
/*
 * Commands from all requests of a worker share the pool's connections
 * and are pipelined: everything sent in one event loop iteration leaves in
 * one write.  A waiting request is represented by a token allocated outside
 * r->pool; the request's pool cleanup detaches it, and the connection keeps
 * the token until the reply (or the connection's end) arrives.
 */


#include "ngx_http_scale_redis_command.h"
#include "ngx_http_scale_redis_worker.h"
#include "ngx_http_scale_redis_sentinel.h"
#include "ngx_http_scale_metrics.h"


typedef struct ngx_http_scale_redis_token_s  ngx_http_scale_redis_token_t;

struct ngx_http_scale_redis_token_s {
    ngx_http_request_t              *request;      /* NULL once detached */
    ngx_pool_cleanup_t              *cleanup;
    ngx_http_scale_redis_pool_t     *pool;
    ngx_http_scale_redis_conn_t     *conn;         /* sent on, while */
    ngx_uint_t                       generation;   /* it is the same one */
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


static ngx_int_t ngx_http_scale_redis_queue(ngx_http_scale_redis_pool_t *pool,
    ngx_http_scale_redis_script_t *script, int argc, const char **argv,
    const size_t *argvlen, ngx_http_scale_redis_token_t *t);
static void ngx_http_scale_redis_reply(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_scale_redis_retry_eval(
    ngx_http_scale_redis_conn_t *rc, ngx_http_scale_redis_token_t *t);
static ngx_uint_t ngx_http_scale_redis_wanted(ngx_http_scale_redis_token_t *t);
static void ngx_http_scale_redis_deliver(ngx_http_scale_redis_token_t *t,
    ngx_int_t rc, redisReply *reply);
static void ngx_http_scale_redis_command_timeout(ngx_event_t *ev);
static void ngx_http_scale_redis_request_cleanup(void *data);
static ngx_http_scale_redis_token_t *ngx_http_scale_redis_token_alloc(void);
static void ngx_http_scale_redis_token_free(ngx_http_scale_redis_token_t *t);


static ngx_http_scale_redis_token_t  *ngx_http_scale_redis_free_tokens;


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

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "redis pool \"%V\" request waits, command %p",
                   &pool->name, t);

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


/* nobody waits any more: the token stays queued until its reply */

void
ngx_http_scale_redis_abandon(ngx_http_scale_redis_cmd_t *t)
{
    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, t->pool->log, 0,
                   "redis command %p abandoned", t);

    t->detached = NULL;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }
}


/* picks a connection, queues, arms the command's timeout */

static ngx_int_t
ngx_http_scale_redis_queue(ngx_http_scale_redis_pool_t *pool,
    ngx_http_scale_redis_script_t *script, int argc, const char **argv,
    const size_t *argvlen, ngx_http_scale_redis_token_t *t)
{
    int                            n, i;
    size_t                         lens_buf[32], *lens;
    ngx_int_t                      rv;
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

    /* formatted now: args need not outlive the call */
    rv = ngx_http_scale_redis_conn_send(rc, n, args, lens,
                                        ngx_http_scale_redis_reply, t);

    if (args != args_buf) {
        ngx_free(args);
    }

    if (rv != NGX_OK) {
        ngx_http_scale_counter_add(
                           pool->errors_slot[NGX_HTTP_SCALE_REDIS_PROTOCOL], 1);
        return NGX_HTTP_SCALE_REDIS_PROTOCOL;
    }

    t->pool = pool;
    t->conn = rc;
    t->generation = rc->generation;
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
ngx_http_scale_redis_reply(ngx_http_scale_redis_conn_t *rc, void *data,
    redisReply *reply)
{
    ngx_http_scale_redis_token_t  *t = data;

    ngx_int_t                      skipped;
    const char                    *reason;
    ngx_http_scale_redis_pool_t   *pool;

    pool = t->pool;

    if (reply == NULL) {
        /* the connection is gone, or timed out */

        if (ngx_http_scale_redis_wanted(t) && !ngx_http_scale_redis_exiting())
        {
            ngx_http_scale_redis_count_error(pool, rc->close_kind);
            ngx_http_scale_redis_deliver(t, rc->close_kind
                                            ? rc->close_kind
                                            : NGX_HTTP_SCALE_REDIS_PROTOCOL,
                                         NULL);
        }

        ngx_http_scale_redis_token_free(t);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" command %p answered, type %d",
                   &pool->name, t, reply->type);

    ngx_http_scale_histogram_observe(pool->duration_slot,
                                     ngx_http_scale_now_us() - t->start_us);

    if (reply->type == REDIS_REPLY_ERROR
        && t->script && !t->retried && ngx_http_scale_redis_wanted(t)
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0
        && ngx_http_scale_redis_retry_eval(rc, t) == NGX_OK)
    {
        return;
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

        if (reason) {
            ngx_http_scale_redis_failover(pool, reason, 0);
        }

        if (ngx_http_scale_redis_wanted(t)) {
            ngx_http_scale_redis_deliver(t, NGX_HTTP_SCALE_REDIS_REPLY, reply);
        }

    } else if (ngx_http_scale_redis_wanted(t)) {
        ngx_http_scale_redis_deliver(t, NGX_HTTP_SCALE_REDIS_OK, reply);
    }

    ngx_http_scale_redis_token_free(t);
}


/* the script cache was flushed: EVAL loads it again */

static ngx_int_t
ngx_http_scale_redis_retry_eval(ngx_http_scale_redis_conn_t *rc,
    ngx_http_scale_redis_token_t *t)
{
    int                           n, i;
    size_t                       *lens;
    ngx_int_t                     rv;
    const char                  **args;
    ngx_http_scale_redis_pool_t  *pool;

    pool = t->pool;
    n = t->argc + 2;

    args = ngx_alloc(n * (sizeof(char *) + sizeof(size_t)), pool->log);
    if (args == NULL) {
        return NGX_ERROR;
    }

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

    rv = ngx_http_scale_redis_conn_send(rc, n, args, lens,
                                        ngx_http_scale_redis_reply, t);
    ngx_free(args);

    if (rv != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                  "redis pool \"%V\" lost its scripts, loading again",
                  &pool->name);

    return NGX_OK;
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

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "redis command %p delivered: %i, resuming request",
                   t, rc);

    t->handler(r, t->data, rc, reply);

    ngx_http_scale_resume(r);
}


/*
 * No reply within the timeout.  On a connection that is set up this means
 * Redis stalls it: the connection is dropped, and every command still
 * waiting on it fails now instead of each at its own timeout.
 */

static void
ngx_http_scale_redis_command_timeout(ngx_event_t *ev)
{
    ngx_http_scale_redis_token_t  *t = ev->data;

    ngx_int_t                      skipped;
    ngx_uint_t                     generation, stalled;
    ngx_http_scale_redis_conn_t   *rc;

    skipped = ngx_http_scale_log_burst(&t->pool->log_burst);

    if (skipped != NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "redis pool \"%V\" timed out after %M ms, "
                      "%i similar errors not logged",
                      &t->pool->name, t->pool->timeout, skipped);
    }

    ngx_http_scale_counter_add(
                         t->pool->errors_slot[NGX_HTTP_SCALE_REDIS_TIMEOUT], 1);

    rc = t->conn;
    generation = t->generation;
    stalled = (rc->generation == generation && rc->ready);

    /*
     * Unusable before the caller resumes: what it sends next goes to
     * another connection (or fails at once), not to this one, which the
     * drop below fails.  The token stays queued until the close.
     */

    if (stalled) {
        rc->ready = 0;
    }

    ngx_http_scale_redis_deliver(t, NGX_HTTP_SCALE_REDIS_TIMEOUT, NULL);

    if (stalled && rc->generation == generation) {
        ngx_http_scale_redis_drop(rc, "command timed out",
                                  NGX_HTTP_SCALE_REDIS_TIMEOUT);
    }
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

    if (ngx_http_scale_redis_exiting()) {
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
ngx_http_scale_redis_command_exit(void)
{
    ngx_http_scale_redis_token_t  *t;

    while (ngx_http_scale_redis_free_tokens) {
        t = ngx_http_scale_redis_free_tokens;
        ngx_http_scale_redis_free_tokens = t->next;
        ngx_free(t);
    }
}
