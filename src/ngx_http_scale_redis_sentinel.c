
/*
 * Where to connect.  A fixed address is used as is; a name with "resolve"
 * is looked up through nginx's resolver before every connect; with
 * Sentinels, each worker asks them in turn for the master's address
 * (SENTINEL get-master-addr-by-name), keeps one more connection to one of
 * them SUBSCRIBEd to +switch-master, and moves every connection of the
 * pool the moment the master switches.
 */


#include "ngx_http_scale_redis_sentinel.h"
#include "ngx_http_scale_redis_worker.h"


/* an answer this recent is used by connections that reconnect */
#define NGX_HTTP_SCALE_REDIS_SENTINEL_FRESH        250
#define NGX_HTTP_SCALE_REDIS_SENTINEL_BACKOFF_MIN  50
#define NGX_HTTP_SCALE_REDIS_SENTINEL_BACKOFF_MAX  1000


struct ngx_http_scale_redis_sentinel_s {
    ngx_http_scale_redis_pool_t     *pool;

    ngx_http_scale_redis_conn_t      query;        /* asks for the master */
    ngx_uint_t                       next;         /* Sentinel asked next */
    ngx_uint_t                       failed;       /* in a row */
    ngx_event_t                      query_timer;
    ngx_http_scale_redis_conn_t     *waiting;      /* for the answer */

    ngx_http_scale_redis_conn_t      watch;        /* +switch-master */
    ngx_uint_t                       watch_next;
    ngx_msec_t                       watch_backoff;
    ngx_event_t                      watch_timer;

    ngx_http_scale_redis_addr_t      master;
    ngx_sockaddr_t                   master_sockaddr;
    u_char                           master_name[NGX_SOCKADDR_STRLEN];
    u_char                           master_host[NGX_SOCKADDR_STRLEN];
    ngx_msec_t                       learned_at;

#if (NGX_SSL)
    ngx_http_scale_redis_tls_t      *tls;
#endif

    unsigned                         known:1;
    unsigned                         asking:1;
    unsigned                         subscribed:1;
    unsigned                         doubted:1;    /* the master known
                                                      failed a connection */
};


static void ngx_http_scale_redis_resolve(ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_resolved(ngx_resolver_ctx_t *ctx);

static void ngx_http_scale_redis_sentinel_locate(
    ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_sentinel_ask(
    ngx_http_scale_redis_sentinel_t *s);
static ngx_int_t ngx_http_scale_redis_sentinel_open(
    ngx_http_scale_redis_sentinel_t *s, ngx_http_scale_redis_conn_t *rc,
    ngx_uint_t i);
static void ngx_http_scale_redis_sentinel_answer(
    ngx_http_scale_redis_conn_t *rc, void *data, redisReply *reply);
static void ngx_http_scale_redis_sentinel_auth_reply(
    ngx_http_scale_redis_conn_t *rc, void *data, redisReply *reply);
static void ngx_http_scale_redis_sentinel_query_lost(
    ngx_http_scale_redis_conn_t *rc, const char *reason);
static void ngx_http_scale_redis_sentinel_query_failed(
    ngx_http_scale_redis_sentinel_t *s, const char *reason);
static void ngx_http_scale_redis_sentinel_query_timeout(ngx_event_t *ev);
static void ngx_http_scale_redis_sentinel_wake(
    ngx_http_scale_redis_sentinel_t *s, ngx_uint_t found);
static void ngx_http_scale_redis_sentinel_ask_next(
    ngx_http_scale_redis_sentinel_t *s);
static ngx_uint_t ngx_http_scale_redis_sentinel_names_master(
    ngx_http_scale_redis_sentinel_t *s, redisReply *host, redisReply *port);
static ngx_int_t ngx_http_scale_redis_sentinel_parse(u_char *host,
    size_t hlen, u_char *port, size_t plen, ngx_sockaddr_t *sa,
    socklen_t *socklen);
static ngx_int_t ngx_http_scale_redis_sentinel_set_master(
    ngx_http_scale_redis_sentinel_t *s, u_char *host, size_t hlen,
    u_char *port, size_t plen);

static void ngx_http_scale_redis_sentinel_watch(ngx_event_t *ev);
static void ngx_http_scale_redis_sentinel_subscribed(
    ngx_http_scale_redis_conn_t *rc, void *data, redisReply *reply);
static void ngx_http_scale_redis_sentinel_message(
    ngx_http_scale_redis_conn_t *rc, void *data, redisReply *reply);
static void ngx_http_scale_redis_sentinel_watch_lost(
    ngx_http_scale_redis_conn_t *rc, const char *reason);


void
ngx_http_scale_redis_locate(ngx_http_scale_redis_conn_t *rc)
{
    ngx_http_scale_redis_pool_t  *pool = rc->pool;

    if (pool->sentinels) {
        ngx_http_scale_redis_sentinel_locate(rc);
        return;
    }

    if (pool->resolve) {
        ngx_http_scale_redis_resolve(rc);
        return;
    }

    ngx_http_scale_redis_open(rc, &pool->addr, NULL);
}


void
ngx_http_scale_redis_locate_cancel(ngx_http_scale_redis_conn_t *rc)
{
    ngx_http_scale_redis_conn_t     **wp;
    ngx_http_scale_redis_sentinel_t  *s;

    if (!rc->locating) {
        return;
    }

    rc->locating = 0;

    if (rc->resolving) {
        ngx_resolve_name_done(rc->resolving);
        rc->resolving = NULL;
        return;
    }

    s = rc->pool->sentinel;

    if (s == NULL) {
        return;
    }

    for (wp = &s->waiting; *wp; wp = &(*wp)->next_waiting) {
        if (*wp == rc) {
            *wp = rc->next_waiting;
            rc->next_waiting = NULL;
            return;
        }
    }
}


/* server NAME:PORT resolve */

static void
ngx_http_scale_redis_resolve(ngx_http_scale_redis_conn_t *rc)
{
    ngx_resolver_ctx_t           *ctx;
    ngx_http_scale_redis_pool_t  *pool = rc->pool;

    ctx = ngx_resolve_start(pool->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_http_scale_redis_open(rc, NULL, "resolver failed");
        return;
    }

    ctx->name = pool->host;
    ctx->handler = ngx_http_scale_redis_resolved;
    ctx->data = rc;
    ctx->timeout = pool->resolver_timeout;

    rc->resolving = ctx;
    rc->locating = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" resolving \"%V\"",
                   &pool->name, &pool->host);

    /* the handler may run right away, with a cached answer */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        rc->resolving = NULL;
        rc->locating = 0;
        ngx_http_scale_redis_open(rc, NULL, "resolver failed");
    }
}


static void
ngx_http_scale_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    size_t                        len;
    u_char                        text[NGX_SOCKADDR_STRLEN];
    ngx_uint_t                    i;
    ngx_sockaddr_t                sa;
    ngx_http_scale_redis_addr_t   addr;
    ngx_http_scale_redis_conn_t  *rc = ctx->data;
    ngx_http_scale_redis_pool_t  *pool = rc->pool;

    rc->resolving = NULL;
    rc->locating = 0;

    if (ctx->state) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "redis pool \"%V\" could not resolve \"%V\" (%i: %s)",
                      &pool->name, &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        ngx_http_scale_redis_open(rc, NULL, "could not resolve the server");
        return;
    }

    /* several addresses: each reconnect tries the next one */

    i = rc->generation % ctx->naddrs;

    ngx_memcpy(&sa, ctx->addrs[i].sockaddr, ctx->addrs[i].socklen);
    ngx_inet_set_port(&sa.sockaddr, pool->port);

    len = ngx_sock_ntop(&sa.sockaddr, ctx->addrs[i].socklen, text,
                        NGX_SOCKADDR_STRLEN, 1);

    addr.sockaddr = &sa.sockaddr;
    addr.socklen = ctx->addrs[i].socklen;
    addr.name.data = text;
    addr.name.len = len;
    addr.host = pool->host;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" resolved \"%V\" to %V",
                   &pool->name, &ctx->name, &addr.name);

    ngx_resolve_name_done(ctx);

    ngx_http_scale_redis_open(rc, &addr, NULL);
}


/* Sentinel */

ngx_int_t
ngx_http_scale_redis_sentinel_init(ngx_http_scale_redis_pool_t *pool,
    ngx_cycle_t *cycle)
{
    ngx_http_scale_redis_sentinel_t  *s;

    s = ngx_pcalloc(cycle->pool, sizeof(ngx_http_scale_redis_sentinel_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->pool = pool;
    pool->sentinel = s;

    if (ngx_http_scale_redis_conn_init(&s->query, cycle->log, &pool->name)
        != NGX_OK
        || ngx_http_scale_redis_conn_init(&s->watch, cycle->log, &pool->name)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->query.pool = pool;
    s->query.lost = ngx_http_scale_redis_sentinel_query_lost;
    s->query.data = s;

    s->watch.pool = pool;
    s->watch.lost = ngx_http_scale_redis_sentinel_watch_lost;
    s->watch.push = ngx_http_scale_redis_sentinel_message;
    s->watch.data = s;

#if (NGX_SSL)
    if (pool->tls) {
        /* the Sentinels' TLS session is theirs, not the master's */
        s->tls = ngx_palloc(cycle->pool, sizeof(ngx_http_scale_redis_tls_t));
        if (s->tls == NULL) {
            return NGX_ERROR;
        }

        *s->tls = *pool->tls;
        s->tls->session = NULL;

        s->query.tls = s->tls;
        s->watch.tls = s->tls;
    }
#endif

    s->query_timer.handler = ngx_http_scale_redis_sentinel_query_timeout;
    s->query_timer.data = s;
    s->query_timer.log = cycle->log;
    s->query_timer.cancelable = 1;

    s->watch_timer.handler = ngx_http_scale_redis_sentinel_watch;
    s->watch_timer.data = s;
    s->watch_timer.log = cycle->log;
    s->watch_timer.cancelable = 1;

    s->master.sockaddr = &s->master_sockaddr.sockaddr;
    s->master.name.data = s->master_name;
    s->master.host.data = s->master_host;

    return NGX_OK;
}


void
ngx_http_scale_redis_sentinel_exit(ngx_http_scale_redis_pool_t *pool)
{
    ngx_http_scale_redis_sentinel_t  *s = pool->sentinel;

    if (s == NULL) {
        return;
    }

    if (s->query_timer.timer_set) {
        ngx_del_timer(&s->query_timer);
    }

    if (s->watch_timer.timer_set) {
        ngx_del_timer(&s->watch_timer);
    }

    s->waiting = NULL;

    ngx_http_scale_redis_conn_free(&s->query);
    ngx_http_scale_redis_conn_free(&s->watch);

#if (NGX_SSL)
    if (s->tls && s->tls->session) {
        ngx_ssl_free_session(s->tls->session);
        s->tls->session = NULL;
    }
#endif
}


static void
ngx_http_scale_redis_sentinel_locate(ngx_http_scale_redis_conn_t *rc)
{
    ngx_http_scale_redis_sentinel_t  *s = rc->pool->sentinel;

    if (s->known
        && ngx_current_msec - s->learned_at
           < NGX_HTTP_SCALE_REDIS_SENTINEL_FRESH)
    {
        ngx_http_scale_redis_open(rc, &s->master, NULL);
        return;
    }

    rc->locating = 1;
    rc->next_waiting = s->waiting;
    s->waiting = rc;

    if (!s->asking) {
        s->failed = 0;

        /*
         * a connection to the master known failed (a connection that
         * works is not located again): a Sentinel that names it once more
         * may be behind, as all but the leader are during a failover,
         * for a second or more; the next ones are asked before it is
         * believed
         */
        s->doubted = s->known;

        ngx_http_scale_redis_sentinel_ask(s);
    }
}


/* asks the next Sentinel where the master is */

static void
ngx_http_scale_redis_sentinel_ask(ngx_http_scale_redis_sentinel_t *s)
{
    size_t                        lens[3];
    const char                   *argv[3];
    ngx_http_scale_redis_pool_t  *pool = s->pool;

    s->asking = 1;

    /* one in its TLS handshake is neither open nor connecting: not a new one */

    if (s->query.connection == NULL) {
        if (ngx_http_scale_redis_sentinel_open(s, &s->query, s->next)
            != NGX_OK)
        {
            ngx_http_scale_redis_sentinel_query_failed(s, "connect failed");
            return;
        }
    }

    argv[0] = "SENTINEL";
    lens[0] = 8;
    argv[1] = "get-master-addr-by-name";
    lens[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = (const char *) pool->master.data;
    lens[2] = pool->master.len;

    if (ngx_http_scale_redis_conn_send(&s->query, 3, argv, lens,
                                       ngx_http_scale_redis_sentinel_answer, s)
        != NGX_OK)
    {
        ngx_http_scale_redis_sentinel_query_failed(s, "out of memory");
        return;
    }

    if (s->query_timer.timer_set) {
        ngx_del_timer(&s->query_timer);
    }

    ngx_add_timer(&s->query_timer, pool->connect_timeout + pool->timeout);
}


/* the same question to the next Sentinel, on a connection to it */

static void
ngx_http_scale_redis_sentinel_ask_next(ngx_http_scale_redis_sentinel_t *s)
{
    ngx_http_scale_redis_conn_close(&s->query, NGX_HTTP_SCALE_REDIS_PROTOCOL);

    s->next = (s->next + 1) % s->pool->sentinels->nelts;
    s->failed++;

    ngx_http_scale_redis_sentinel_ask(s);
}


/* connects to the i-th Sentinel, AUTH queued */

static ngx_int_t
ngx_http_scale_redis_sentinel_open(ngx_http_scale_redis_sentinel_t *s,
    ngx_http_scale_redis_conn_t *rc, ngx_uint_t i)
{
    int                           argc;
    size_t                        lens[3];
    const char                   *argv[3];
    ngx_http_scale_redis_addr_t  *sentinels;
    ngx_http_scale_redis_pool_t  *pool = s->pool;

    sentinels = pool->sentinels->elts;

    if (ngx_http_scale_redis_conn_open(rc, &sentinels[i]) != NGX_OK) {
        return NGX_ERROR;
    }

    if (pool->sentinel_password.len == 0) {
        return NGX_OK;
    }

    argc = 0;
    argv[argc] = "AUTH";
    lens[argc++] = 4;

    if (pool->sentinel_username.len) {
        argv[argc] = (const char *) pool->sentinel_username.data;
        lens[argc++] = pool->sentinel_username.len;
    }

    argv[argc] = (const char *) pool->sentinel_password.data;
    lens[argc++] = pool->sentinel_password.len;

    return ngx_http_scale_redis_conn_send(rc, argc, argv, lens,
                                     ngx_http_scale_redis_sentinel_auth_reply,
                                     s);
}


static void
ngx_http_scale_redis_sentinel_auth_reply(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply)
{
    ngx_http_scale_redis_sentinel_t  *s = data;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, s->pool->log, 0,
                  "redis pool \"%V\" Sentinel %V refused AUTH: %*s",
                  &s->pool->name, &rc->peer_name,
                  (size_t) reply->len, reply->str);

    if (rc == &s->query) {
        ngx_http_scale_redis_sentinel_query_failed(s, "AUTH refused");

    } else {
        ngx_http_scale_redis_sentinel_watch_lost(rc, "AUTH refused");
    }
}


static void
ngx_http_scale_redis_sentinel_answer(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply)
{
    ngx_http_scale_redis_sentinel_t  *s = data;

    redisReply                       *host, *port;
    ngx_http_scale_redis_pool_t      *pool = s->pool;

    if (reply == NULL) {
        /* the query connection closed: its lost handler goes on */
        return;
    }

    if (s->query_timer.timer_set) {
        ngx_del_timer(&s->query_timer);
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" Sentinel %V: %*s",
                          &pool->name, &rc->peer_name,
                          (size_t) reply->len, reply->str);

        } else {
            ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                          "redis pool \"%V\" Sentinel %V does not know "
                          "master \"%V\"",
                          &pool->name, &rc->peer_name, &pool->master);
        }

        ngx_http_scale_redis_sentinel_query_failed(s, "no master from Sentinel");
        return;
    }

    host = reply->element[0];
    port = reply->element[1];

    if (s->doubted
        && s->failed + 1 < pool->sentinels->nelts
        && ngx_http_scale_redis_sentinel_names_master(s, host, port))
    {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                       "redis pool \"%V\" Sentinel %V names the master that "
                       "failed again, asking the next one",
                       &pool->name, &rc->peer_name);

        ngx_http_scale_redis_sentinel_ask_next(s);
        return;
    }

    s->doubted = 0;

    if (ngx_http_scale_redis_sentinel_set_master(s, (u_char *) host->str,
                                                 host->len,
                                                 (u_char *) port->str,
                                                 port->len)
        != NGX_OK)
    {
        ngx_http_scale_redis_sentinel_query_failed(s, "bad master address");
        return;
    }

    s->asking = 0;
    s->failed = 0;

    /* the Sentinel that answered is asked first next time */
    s->watch_next = s->next;

    if (s->watch.connection == NULL && !s->watch_timer.timer_set) {
        ngx_http_scale_redis_sentinel_watch(&s->watch_timer);
    }

    ngx_http_scale_redis_sentinel_wake(s, 1);
}


/* "host" "port" of an answer: an address and port, or NGX_ERROR */

static ngx_int_t
ngx_http_scale_redis_sentinel_parse(u_char *host, size_t hlen, u_char *port,
    size_t plen, ngx_sockaddr_t *sa, socklen_t *socklen)
{
    ngx_int_t  n;
    in_addr_t  inaddr;

    n = ngx_atoi(port, plen);

    ngx_memzero(sa, sizeof(ngx_sockaddr_t));
    *socklen = 0;

    inaddr = ngx_inet_addr(host, hlen);

    if (inaddr != INADDR_NONE) {
        sa->sockaddr_in.sin_family = AF_INET;
        sa->sockaddr_in.sin_addr.s_addr = inaddr;
        *socklen = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(host, hlen, sa->sockaddr_in6.sin6_addr.s6_addr)
               == NGX_OK)
    {
        sa->sockaddr_in6.sin6_family = AF_INET6;
        *socklen = sizeof(struct sockaddr_in6);
#endif
    }

    if (n < 1 || n > 65535 || hlen >= NGX_SOCKADDR_STRLEN || *socklen == 0) {
        return NGX_ERROR;
    }

    ngx_inet_set_port(&sa->sockaddr, (in_port_t) n);

    return NGX_OK;
}


/* whether an answer names the master known */

static ngx_uint_t
ngx_http_scale_redis_sentinel_names_master(ngx_http_scale_redis_sentinel_t *s,
    redisReply *host, redisReply *port)
{
    socklen_t       socklen;
    ngx_sockaddr_t  sa;

    if (!s->known
        || ngx_http_scale_redis_sentinel_parse((u_char *) host->str,
                                               host->len, (u_char *) port->str,
                                               port->len, &sa, &socklen)
           != NGX_OK)
    {
        return 0;
    }

    return socklen == s->master.socklen
           && ngx_cmp_sockaddr(&sa.sockaddr, socklen, s->master.sockaddr,
                               s->master.socklen, 1)
              == NGX_OK;
}


/*
 * Records the master's address; a master that moved moves every
 * connection of the pool.
 */

static ngx_int_t
ngx_http_scale_redis_sentinel_set_master(ngx_http_scale_redis_sentinel_t *s,
    u_char *host, size_t hlen, u_char *port, size_t plen)
{
    size_t                        len;
    ngx_uint_t                    moved;
    ngx_sockaddr_t                sa;
    ngx_addr_t                    a;
    ngx_http_scale_redis_pool_t  *pool = s->pool;

    a.sockaddr = &sa.sockaddr;

    if (ngx_http_scale_redis_sentinel_parse(host, hlen, port, plen, &sa,
                                            &a.socklen)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "redis pool \"%V\" Sentinel named master \"%V\" at "
                      "\"%*s:%*s\", not an address and port",
                      &pool->name, &pool->master, hlen, host, plen, port);
        return NGX_ERROR;
    }

    moved = !s->known
            || a.socklen != s->master.socklen
            || ngx_cmp_sockaddr(a.sockaddr, a.socklen, s->master.sockaddr,
                                s->master.socklen, 1)
               != NGX_OK;

    if (moved) {
        ngx_memcpy(&s->master_sockaddr, a.sockaddr, a.socklen);
        s->master.socklen = a.socklen;

        len = ngx_sock_ntop(s->master.sockaddr, s->master.socklen,
                            s->master_name, NGX_SOCKADDR_STRLEN, 1);
        s->master.name.len = len;

        ngx_memcpy(s->master_host, host, hlen);
        s->master.host.len = hlen;

        ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                      "redis pool \"%V\": master \"%V\" is now %V",
                      &pool->name, &pool->master, &s->master.name);
    }

    s->learned_at = ngx_current_msec;

    if (moved && s->known) {
        s->known = 1;
        ngx_http_scale_redis_failover(pool, "the master moved", 1);
        return NGX_OK;
    }

    s->known = 1;

    return NGX_OK;
}


/* the connections that wait for the answer go on, or fail */

static void
ngx_http_scale_redis_sentinel_wake(ngx_http_scale_redis_sentinel_t *s,
    ngx_uint_t found)
{
    ngx_http_scale_redis_conn_t  *rc;

    while (s->waiting) {
        rc = s->waiting;
        s->waiting = rc->next_waiting;
        rc->next_waiting = NULL;
        rc->locating = 0;

        if (found) {
            ngx_http_scale_redis_open(rc, &s->master, NULL);

        } else {
            ngx_http_scale_redis_open(rc, NULL, "no Sentinel answered");
        }
    }
}


static void
ngx_http_scale_redis_sentinel_query_lost(ngx_http_scale_redis_conn_t *rc,
    const char *reason)
{
    ngx_http_scale_redis_sentinel_t  *s = rc->data;

    if (s->asking) {
        ngx_http_scale_redis_sentinel_query_failed(s, reason);
        return;
    }

    /* idle between questions: asked again on a new connection */
    ngx_http_scale_redis_conn_close(rc, NGX_HTTP_SCALE_REDIS_PROTOCOL);
}


static void
ngx_http_scale_redis_sentinel_query_timeout(ngx_event_t *ev)
{
    ngx_http_scale_redis_sentinel_t  *s = ev->data;

    ngx_log_error(NGX_LOG_ERR, s->pool->log, 0,
                  "redis pool \"%V\" Sentinel %V did not answer in time",
                  &s->pool->name, &s->query.peer_name);

    ngx_http_scale_redis_sentinel_query_failed(s, "Sentinel timed out");
}


/* the next Sentinel is asked; after all of them, the waiting ones fail */

static void
ngx_http_scale_redis_sentinel_query_failed(ngx_http_scale_redis_sentinel_t *s,
    const char *reason)
{
    ngx_http_scale_redis_pool_t  *pool = s->pool;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "redis pool \"%V\" Sentinel query failed: %s",
                   &pool->name, reason);

    if (s->query_timer.timer_set) {
        ngx_del_timer(&s->query_timer);
    }

    s->asking = 0;
    ngx_http_scale_redis_conn_close(&s->query, NGX_HTTP_SCALE_REDIS_PROTOCOL);

    if (ngx_http_scale_redis_exiting()) {
        return;
    }

    s->next = (s->next + 1) % pool->sentinels->nelts;

    if (++s->failed < pool->sentinels->nelts) {
        ngx_http_scale_redis_sentinel_ask(s);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                  "redis pool \"%V\" no Sentinel named master \"%V\": %s",
                  &pool->name, &pool->master, reason);

    s->failed = 0;
    ngx_http_scale_redis_sentinel_wake(s, 0);
}


/* the watch: one connection SUBSCRIBEd to +switch-master */

static void
ngx_http_scale_redis_sentinel_watch(ngx_event_t *ev)
{
    size_t                            lens[2];
    const char                       *argv[2];
    ngx_http_scale_redis_sentinel_t  *s = ev->data;

    if (ngx_http_scale_redis_exiting() || ngx_exiting || ngx_quit) {
        return;
    }

    if (s->watch.connection) {
        /* connected (or still in the TLS handshake), not subscribed in time */
        ngx_http_scale_redis_sentinel_watch_lost(&s->watch,
                                                 "subscribe timed out");
        return;
    }

    s->subscribed = 0;

    if (ngx_http_scale_redis_sentinel_open(s, &s->watch, s->watch_next)
        != NGX_OK)
    {
        ngx_http_scale_redis_sentinel_watch_lost(&s->watch, "connect failed");
        return;
    }

    argv[0] = "SUBSCRIBE";
    lens[0] = 9;
    argv[1] = "+switch-master";
    lens[1] = sizeof("+switch-master") - 1;

    if (ngx_http_scale_redis_conn_send(&s->watch, 2, argv, lens,
                                    ngx_http_scale_redis_sentinel_subscribed,
                                    s)
        != NGX_OK)
    {
        ngx_http_scale_redis_sentinel_watch_lost(&s->watch, "out of memory");
        return;
    }

    ngx_add_timer(&s->watch_timer,
                  s->pool->connect_timeout + s->pool->timeout);
}


static void
ngx_http_scale_redis_sentinel_subscribed(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply)
{
    ngx_http_scale_redis_sentinel_t  *s = data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, s->pool->log, 0,
                      "redis pool \"%V\" Sentinel %V refused SUBSCRIBE: %*s",
                      &s->pool->name, &rc->peer_name,
                      (size_t) reply->len, reply->str);
        ngx_http_scale_redis_sentinel_watch_lost(rc, "SUBSCRIBE refused");
        return;
    }

    if (s->watch_timer.timer_set) {
        ngx_del_timer(&s->watch_timer);
    }

    s->subscribed = 1;
    s->watch_backoff = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, s->pool->log, 0,
                   "redis pool \"%V\" watching +switch-master on %V",
                   &s->pool->name, &rc->peer_name);

    /* a switch while nobody watched is caught by asking once more */

    if (!s->asking) {
        s->failed = 0;
        ngx_http_scale_redis_sentinel_ask(s);
    }
}


/* "message" "+switch-master" "<name> <old ip> <old port> <ip> <port>" */

static void
ngx_http_scale_redis_sentinel_message(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply)
{
    ngx_http_scale_redis_sentinel_t  *s = data;

    u_char                           *p, *last, *f[5];
    size_t                            flen[5];
    ngx_uint_t                        n;
    redisReply                       *msg;
    ngx_http_scale_redis_pool_t      *pool = s->pool;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    msg = reply->element[2];
    p = (u_char *) msg->str;
    last = p + msg->len;

    for (n = 0; n < 5 && p < last; n++) {
        while (p < last && *p == ' ') {
            p++;
        }

        f[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        flen[n] = p - f[n];
    }

    if (n != 5 || flen[0] != pool->master.len
        || ngx_strncmp(f[0], pool->master.data, flen[0]) != 0)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                  "redis pool \"%V\" Sentinel %V: +switch-master %*s",
                  &pool->name, &rc->peer_name, (size_t) msg->len, msg->str);

    (void) ngx_http_scale_redis_sentinel_set_master(s, f[3], flen[3],
                                                    f[4], flen[4]);
}


static void
ngx_http_scale_redis_sentinel_watch_lost(ngx_http_scale_redis_conn_t *rc,
    const char *reason)
{
    ngx_http_scale_redis_sentinel_t  *s = rc->data;
    ngx_http_scale_redis_pool_t      *pool = s->pool;

    if (s->subscribed && !ngx_http_scale_redis_exiting()) {
        ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                      "redis pool \"%V\" lost Sentinel %V: %s",
                      &pool->name, &rc->peer_name, reason);
    }

    s->subscribed = 0;
    ngx_http_scale_redis_conn_close(rc, NGX_HTTP_SCALE_REDIS_PROTOCOL);

    if (ngx_http_scale_redis_exiting()) {
        return;
    }

    /* the next Sentinel, after a capped backoff */

    s->watch_next = (s->watch_next + 1) % pool->sentinels->nelts;

    s->watch_backoff = s->watch_backoff
                       ? ngx_min(2 * s->watch_backoff,
                                 NGX_HTTP_SCALE_REDIS_SENTINEL_BACKOFF_MAX)
                       : NGX_HTTP_SCALE_REDIS_SENTINEL_BACKOFF_MIN;

    if (s->watch_timer.timer_set) {
        ngx_del_timer(&s->watch_timer);
    }

    ngx_add_timer(&s->watch_timer, s->watch_backoff);
}


/*
 * A reply that says the server is not a master to write to: the reason
 * to show, or NULL.  Older Redis versions wrap an error raised inside a
 * script: "ERR Error running script ...: -READONLY ...".
 */

const char *
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


const char *
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
