
/*
 * Each worker's connections to its pools.  A connection is located (the
 * configured address, the resolver, the Sentinels), opened, and set up by
 * a handshake queued ahead of everything else: AUTH, SELECT, ROLE, the
 * pool's scripts, PING.  A PING (or ROLE) a second keeps the pool's state;
 * failures reconnect with capped exponential backoff.
 */


#include "ngx_http_scale_redis_worker.h"
#include "ngx_http_scale_redis_command.h"
#include "ngx_http_scale_redis_sentinel.h"
#include "ngx_http_scale_metrics.h"


#define NGX_HTTP_SCALE_REDIS_PING_INTERVAL   1000
#define NGX_HTTP_SCALE_REDIS_BACKOFF_MIN     50
#define NGX_HTTP_SCALE_REDIS_BACKOFF_MAX     1000
/*
 * with Sentinels each retry asks them where the master is: a replica
 * promoted meanwhile is found within this of its promotion, not a second
 */
#define NGX_HTTP_SCALE_REDIS_BACKOFF_SENTINEL_MAX  250
/* output not yet written: more means Redis is not reading */
#define NGX_HTTP_SCALE_REDIS_OBUF_MAX        (4 * 1024 * 1024)
/* a PING unanswered this long means a dead connection: reconnect */
#define NGX_HTTP_SCALE_REDIS_PING_DEAD       3000


static void ngx_http_scale_redis_connect(ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_handshake(ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_handshake_send(ngx_http_scale_redis_conn_t *rc,
    ngx_uint_t step, int argc, const char **argv, const size_t *lens);
static void ngx_http_scale_redis_handshake_reply(
    ngx_http_scale_redis_conn_t *rc, void *data, redisReply *reply);
static void ngx_http_scale_redis_handshake_done(
    ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_lost(ngx_http_scale_redis_conn_t *rc,
    const char *reason);
static void ngx_http_scale_redis_schedule(ngx_http_scale_redis_conn_t *rc,
    const char *reason);
static ngx_uint_t ngx_http_scale_redis_conn_usable(
    ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_timer_handler(ngx_event_t *ev);
static void ngx_http_scale_redis_ping_handler(ngx_event_t *ev);
static void ngx_http_scale_redis_ping_reply(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply);
static void ngx_http_scale_redis_pool_update(ngx_http_scale_redis_pool_t *pool,
    const char *reason);


static ngx_uint_t  ngx_http_scale_redis_is_exiting;

/* what a handshake reply answers (its data points here) */
#define NGX_HTTP_SCALE_REDIS_STEP_SETUP      0     /* AUTH, SELECT */
#define NGX_HTTP_SCALE_REDIS_STEP_ROLE       1
#define NGX_HTTP_SCALE_REDIS_STEP_SCRIPT     2     /* SCRIPT LOAD */
#define NGX_HTTP_SCALE_REDIS_STEP_PING       3     /* the last one */

static u_char  ngx_http_scale_redis_steps[4];


ngx_int_t
ngx_http_scale_redis_init_process(ngx_cycle_t *cycle,
    ngx_array_t *all)
{
    ngx_uint_t                     i, k;
    ngx_http_scale_redis_conn_t   *rc;
    ngx_http_scale_redis_pool_t  **pools, *pool;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ngx_http_scale_redis_is_exiting = 0;

    pools = all->elts;

    for (i = 0; i < all->nelts; i++) {
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
        pool->down_logged = 0;
        pool->was_up = 0;
        pool->failures = 0;
        ngx_http_scale_gauge_set(pool->up_slot, 0);

        if (pool->sentinels
            && ngx_http_scale_redis_sentinel_init(pool, cycle) != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (k = 0; k < pool->nconnections; k++) {
            rc = &pool->conns[k];

            if (ngx_http_scale_redis_conn_init(rc, cycle->log, &pool->name)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            rc->pool = pool;
            rc->lost = ngx_http_scale_redis_lost;
#if (NGX_SSL)
            rc->tls = pool->tls;
#endif
            rc->timer.handler = ngx_http_scale_redis_timer_handler;
            rc->timer.data = rc;
            rc->timer.log = cycle->log;
            rc->timer.cancelable = 1;
            rc->starting = 1;

            ngx_http_scale_redis_connect(rc);
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
    ngx_array_t *all)
{
    ngx_uint_t                     i, k;
    ngx_http_scale_redis_conn_t   *rc;
    ngx_http_scale_redis_pool_t  **pools, *pool;

    ngx_http_scale_redis_is_exiting = 1;

    pools = all->elts;

    for (i = 0; i < all->nelts; i++) {
        pool = pools[i];

        if (pool->conns == NULL) {
            continue;
        }

        if (pool->ping.timer_set) {
            ngx_del_timer(&pool->ping);
        }

        for (k = 0; k < pool->nconnections; k++) {
            rc = &pool->conns[k];

            if (rc->timer.timer_set) {
                ngx_del_timer(&rc->timer);
            }

            ngx_http_scale_redis_locate_cancel(rc);
            ngx_http_scale_redis_conn_free(rc);
        }

        if (pool->sentinels) {
            ngx_http_scale_redis_sentinel_exit(pool);
        }

#if (NGX_SSL)
        if (pool->tls && pool->tls->session) {
            ngx_ssl_free_session(pool->tls->session);
            pool->tls->session = NULL;
        }
#endif
    }

    ngx_http_scale_redis_command_exit();
}


ngx_uint_t
ngx_http_scale_redis_exiting(void)
{
    return ngx_http_scale_redis_is_exiting;
}


/*
 * Round robin over the usable connections.  A connection whose PING is
 * overdue (Redis stalled) or whose output has piled up is skipped, so its
 * callers fail at once instead of each waiting for the timeout.
 */

ngx_http_scale_redis_conn_t *
ngx_http_scale_redis_pick(ngx_http_scale_redis_pool_t *pool)
{
    ngx_uint_t                    k;
    ngx_http_scale_redis_conn_t  *rc;

    if (ngx_http_scale_redis_is_exiting || pool->conns == NULL) {
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
    if (rc->ready) {
        return !(rc->ping_pending
                 && ngx_current_msec - rc->ping_sent > rc->pool->timeout)
               && ngx_http_scale_redis_conn_unsent(rc)
                  <= NGX_HTTP_SCALE_REDIS_OBUF_MAX;
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

    if (ngx_http_scale_redis_is_exiting || pool->conns == NULL) {
        return 0;
    }

    for (k = 0; k < pool->nconnections; k++) {
        if (ngx_http_scale_redis_conn_usable(&pool->conns[k])) {
            return 1;
        }
    }

    return 0;
}


/*
 * The handshake is queued first, so that it goes ahead of the commands a
 * starting worker queues; then the locator says where to connect.
 */

static void
ngx_http_scale_redis_connect(ngx_http_scale_redis_conn_t *rc)
{
    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rc->pool->log, 0,
                   "redis pool \"%V\" connecting", &rc->pool->name);

    ngx_http_scale_redis_handshake(rc);

    ngx_add_timer(&rc->timer, rc->pool->connect_timeout);

    ngx_http_scale_redis_locate(rc);
}


void
ngx_http_scale_redis_open(ngx_http_scale_redis_conn_t *rc,
    ngx_http_scale_redis_addr_t *addr, const char *reason)
{
    if (addr == NULL) {
        ngx_http_scale_redis_drop(rc, reason, NGX_HTTP_SCALE_REDIS_CONNECT);
        return;
    }

    if (ngx_http_scale_redis_conn_open(rc, addr) != NGX_OK) {
        ngx_http_scale_redis_drop(rc, "connect failed",
                                  NGX_HTTP_SCALE_REDIS_CONNECT);
    }
}


static void
ngx_http_scale_redis_handshake(ngx_http_scale_redis_conn_t *rc)
{
    int                             argc;
    size_t                          lens[3];
    u_char                          db[NGX_INT_T_LEN];
    ngx_uint_t                      i;
    const char                     *argv[3];
    ngx_http_scale_redis_pool_t    *pool;
    ngx_http_scale_redis_script_t **scripts;

    pool = rc->pool;

    /* ROLE comes after AUTH and SELECT: a replica is not the master */

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

        ngx_http_scale_redis_handshake_send(rc, NGX_HTTP_SCALE_REDIS_STEP_SETUP,
                                            argc, argv, lens);
    }

    if (pool->database) {
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = (const char *) db;
        lens[1] = ngx_sprintf(db, "%i", pool->database) - db;

        ngx_http_scale_redis_handshake_send(rc, NGX_HTTP_SCALE_REDIS_STEP_SETUP,
                                            2, argv, lens);
    }

    argv[0] = "ROLE";
    lens[0] = 4;
    ngx_http_scale_redis_handshake_send(rc, NGX_HTTP_SCALE_REDIS_STEP_ROLE,
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

            ngx_http_scale_redis_handshake_send(rc,
                                            NGX_HTTP_SCALE_REDIS_STEP_SCRIPT,
                                            3, argv, lens);
        }
    }

    argv[0] = "PING";
    lens[0] = 4;
    ngx_http_scale_redis_handshake_send(rc, NGX_HTTP_SCALE_REDIS_STEP_PING,
                                        1, argv, lens);
}


static void
ngx_http_scale_redis_handshake_send(ngx_http_scale_redis_conn_t *rc,
    ngx_uint_t step, int argc, const char **argv, const size_t *lens)
{
    /* out of memory shows as a handshake that does not end: timed out */

    (void) ngx_http_scale_redis_conn_send(rc, argc, argv, lens,
                                          ngx_http_scale_redis_handshake_reply,
                                          &ngx_http_scale_redis_steps[step]);
}


static void
ngx_http_scale_redis_handshake_reply(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply)
{
    ngx_int_t                     skipped;
    ngx_uint_t                    step;
    const char                   *role, *reason;
    ngx_http_scale_redis_pool_t  *pool;

    if (reply == NULL) {
        return;
    }

    pool = rc->pool;
    step = (u_char *) data - ngx_http_scale_redis_steps;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" handshake step %ui answered",
                   &pool->name, step);

    if (step == NGX_HTTP_SCALE_REDIS_STEP_ROLE) {

        if (reply->type == REDIS_REPLY_ERROR) {
            /* an ACL user may not be allowed ROLE: -READONLY will tell */
            ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                          "redis pool \"%V\" cannot check the role of %V: "
                          "%*s", &pool->name, &rc->peer_name,
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
                          &pool->name, &rc->peer_name, role, skipped);
        }

        ngx_http_scale_counter_add(
                          pool->errors_slot[NGX_HTTP_SCALE_REDIS_CONNECT], 1);

        rc->failover = 1;
        ngx_http_scale_redis_drop(rc, ngx_strcmp(role, "slave") == 0
                                      ? "ROLE: server is a replica"
                                      : "ROLE: server is not the master",
                                  NGX_HTTP_SCALE_REDIS_CONNECT);
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
                          &pool->name, &rc->peer_name,
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

        ngx_http_scale_redis_drop(rc, reason, NGX_HTTP_SCALE_REDIS_CONNECT);
        return;
    }

    if (step == NGX_HTTP_SCALE_REDIS_STEP_PING) {
        ngx_http_scale_redis_handshake_done(rc);
    }
}


/* the final PING: ready */

static void
ngx_http_scale_redis_handshake_done(ngx_http_scale_redis_conn_t *rc)
{
    ngx_http_scale_redis_pool_t  *pool;

    pool = rc->pool;

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    rc->ready = 1;
    rc->starting = 0;
    rc->ping_pending = 0;
    rc->ready_at = ngx_current_msec;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" ready on %V",
                   &pool->name, &rc->peer_name);

    if (rc->failover) {
        /*
         * Reconnected after a failover to a server whose role cannot be
         * asked: usable, but up (and the backoff reset) only after a PING
         * interval without -READONLY.
         */
        ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                      "redis pool \"%V\" reconnected to %V, role unknown",
                      &pool->name, &rc->peer_name);
        return;
    }

    rc->backoff = 0;

    if (!pool->up) {
        ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                      "redis pool \"%V\" connected to %V",
                      &pool->name, &rc->peer_name);
    }

    ngx_http_scale_redis_pool_update(pool, NULL);
}


/* the transport failed: connect, TLS, read or write */

static void
ngx_http_scale_redis_lost(ngx_http_scale_redis_conn_t *rc, const char *reason)
{
    ngx_int_t  skipped;

    /* a Redis that drops them all does so for each of the connections */

    if (!ngx_http_scale_redis_is_exiting) {
        if (!rc->ready) {
            ngx_log_error(NGX_LOG_INFO, rc->pool->log, 0,
                          "redis pool \"%V\" lost connection to %V: %s",
                          &rc->pool->name, &rc->peer_name, reason);

        } else {
            skipped = ngx_http_scale_log_burst(&rc->pool->log_burst);

            if (skipped != NGX_DECLINED) {
                ngx_log_error(NGX_LOG_ERR, rc->pool->log, 0,
                              "redis pool \"%V\" lost connection to %V: %s, "
                              "%i similar errors not logged",
                              &rc->pool->name, &rc->peer_name, reason,
                              skipped);
            }
        }
    }

    ngx_http_scale_redis_drop(rc, reason, NGX_HTTP_SCALE_REDIS_PROTOCOL);
}


/*
 * The master moved, or the server is not it (any more).  Every connection
 * of the pool goes to it: all are made unusable first, so that the callers
 * their failed commands resume send nothing to it, then dropped.
 */

void
ngx_http_scale_redis_failover(ngx_http_scale_redis_pool_t *pool,
    const char *reason, ngx_uint_t now)
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

        if (now) {
            /* a new master is known: no backoff to wait out */
            rc->backoff = 0;
        }

        if (rc->connection || rc->locating || now) {
            ngx_http_scale_redis_drop(rc, reason,
                                      NGX_HTTP_SCALE_REDIS_PROTOCOL);
        }

        if (now && rc->timer.timer_set) {
            ngx_del_timer(&rc->timer);
            ngx_add_timer(&rc->timer, 1);
        }
    }
}


/*
 * Closes a connection that failed.  It is unusable first: the commands
 * still waiting on it fail, and the requests they resume may send again.
 */

void
ngx_http_scale_redis_drop(ngx_http_scale_redis_conn_t *rc,
    const char *reason, ngx_uint_t kind)
{
    rc->ready = 0;
    rc->starting = 0;
    rc->ping_pending = 0;

    ngx_http_scale_redis_locate_cancel(rc);
    ngx_http_scale_redis_conn_close(rc, kind);

    ngx_http_scale_redis_schedule(rc, reason);
}


/* after a failure: retry later, with capped exponential backoff */

static void
ngx_http_scale_redis_schedule(ngx_http_scale_redis_conn_t *rc,
    const char *reason)
{
    ngx_msec_t                    max;
    ngx_http_scale_redis_pool_t  *pool = rc->pool;

    if (ngx_http_scale_redis_is_exiting) {
        return;
    }

    if (pool->up) {
        ngx_http_scale_counter_add(
                          pool->errors_slot[NGX_HTTP_SCALE_REDIS_CONNECT], 1);
    }

    pool->failures++;

    ngx_http_scale_redis_pool_update(pool, reason);

    max = pool->sentinels ? NGX_HTTP_SCALE_REDIS_BACKOFF_SENTINEL_MAX
                          : NGX_HTTP_SCALE_REDIS_BACKOFF_MAX;

    rc->backoff = rc->backoff ? ngx_min(rc->backoff * 2, max)
                              : NGX_HTTP_SCALE_REDIS_BACKOFF_MIN;

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" reconnect in %M ms: %s",
                   &pool->name, rc->backoff, reason);

    ngx_add_timer(&rc->timer, rc->backoff);
}


static void
ngx_http_scale_redis_timer_handler(ngx_event_t *ev)
{
    ngx_int_t                     skipped;
    ngx_http_scale_redis_conn_t  *rc = ev->data;

    if (ngx_http_scale_redis_is_exiting || ngx_exiting || ngx_quit) {
        return;
    }

    if (rc->connection == NULL && !rc->locating) {
        /* backoff over */
        ngx_http_scale_redis_connect(rc);
        return;
    }

    /* locating, connect or handshake took too long */

    if (rc->resolving) {
        skipped = ngx_http_scale_log_burst(&rc->pool->log_burst);

        if (skipped != NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, rc->pool->log, 0,
                          "redis pool \"%V\" could not resolve \"%V\" "
                          "in %M ms, %i similar errors not logged",
                          &rc->pool->name, &rc->pool->host,
                          rc->pool->connect_timeout, skipped);
        }

        ngx_http_scale_redis_drop(rc, "resolver did not answer in time",
                                  NGX_HTTP_SCALE_REDIS_TIMEOUT);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rc->pool->log, 0,
                  "redis pool \"%V\" connect to %V timed out",
                  &rc->pool->name,
                  rc->connection ? &rc->peer_name : &rc->pool->server);

    ngx_http_scale_redis_drop(rc, "connect timed out",
                              NGX_HTTP_SCALE_REDIS_TIMEOUT);
}


static void
ngx_http_scale_redis_ping_handler(ngx_event_t *ev)
{
    size_t                        len;
    ngx_uint_t                    k;
    const char                   *cmd;
    ngx_http_scale_redis_conn_t  *rc;
    ngx_http_scale_redis_pool_t  *pool = ev->data;

    if (ngx_http_scale_redis_is_exiting || ngx_exiting || ngx_quit) {
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

            ngx_http_scale_redis_drop(rc, "not answering",
                                      NGX_HTTP_SCALE_REDIS_TIMEOUT);
            continue;
        }

        /* ROLE where allowed: a master demoted while idle is noticed */

        cmd = rc->role ? "ROLE" : "PING";
        len = 4;

        if (ngx_http_scale_redis_conn_send(rc, 1, &cmd, &len,
                                           ngx_http_scale_redis_ping_reply,
                                           NULL)
            == NGX_OK)
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
ngx_http_scale_redis_ping_reply(ngx_http_scale_redis_conn_t *rc, void *data,
    redisReply *reply)
{
    ngx_int_t                     skipped;
    const char                   *role, *reason;
    ngx_http_scale_redis_pool_t  *pool;

    if (reply == NULL) {
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
            ngx_http_scale_redis_failover(pool, reason, 0);

        } else {
            ngx_http_scale_redis_drop(rc, "PING failed",
                                      NGX_HTTP_SCALE_REDIS_REPLY);
        }

        return;
    }

    if (rc->role) {
        role = ngx_http_scale_redis_role(reply);

        if (role) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" %V is no longer the master: "
                          "ROLE is \"%s\", reconnecting",
                          &pool->name, &rc->peer_name, role);

            ngx_http_scale_redis_failover(pool,
                                          ngx_strcmp(role, "slave") == 0
                                          ? "ROLE: server is a replica"
                                          : "ROLE: server is not the master",
                                          0);
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
                          &pool->name, &rc->peer_name);
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

    /*
     * Down: said once.  A new worker that has not connected yet says so
     * when its second attempt fails too: a first one that only took too
     * long (a slow start) is not an error.
     */

    if (!up && !pool->down_logged && ngx_strcmp(reason, "connecting") != 0
        && (pool->was_up || pool->failures > 1))
    {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "redis pool \"%V\" is down: %s", &pool->name, reason);
        pool->down_logged = 1;
    }

    if (up != pool->up) {
        pool->up = up;
        pool->since = ngx_current_msec;
        pool->down_logged = 0;

        if (up) {
            pool->was_up = 1;
        }
    }

    pool->down_reason = up ? NULL : reason;

    ngx_http_scale_gauge_set(pool->up_slot, up);
}
