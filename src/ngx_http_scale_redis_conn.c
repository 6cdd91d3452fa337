
/*
 * A connection to Redis on nginx's own event loop: non-blocking connect,
 * TLS, pipelined writes, replies parsed by hiredis's redisReader and
 * handed to the commands in the order they were sent.
 */


#include "ngx_http_scale_redis_conn.h"
#include "ngx_http_scale_module.h"


#define NGX_HTTP_SCALE_REDIS_OUT_SIZE      16384
#define NGX_HTTP_SCALE_REDIS_PENDING_SIZE  64
#define NGX_HTTP_SCALE_REDIS_READ_SIZE     16384

#if (NGX_SSL)
#define ngx_http_scale_redis_conn_tls(c)   ((c)->ssl != NULL)
#else
#define ngx_http_scale_redis_conn_tls(c)   0
#endif


static void ngx_http_scale_redis_conn_connected(
    ngx_http_scale_redis_conn_t *rc);
static ngx_int_t ngx_http_scale_redis_conn_test_connect(ngx_connection_t *c);
#if (NGX_SSL)
static void ngx_http_scale_redis_conn_ssl_start(
    ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_conn_ssl_handshaked(ngx_connection_t *c);
static ngx_int_t ngx_http_scale_redis_conn_ssl_verify(
    ngx_http_scale_redis_conn_t *rc, ngx_connection_t *c);
static void ngx_http_scale_redis_conn_ssl_save_session(ngx_connection_t *c);
#endif
static void ngx_http_scale_redis_conn_read_handler(ngx_event_t *rev);
static void ngx_http_scale_redis_conn_write_handler(ngx_event_t *wev);
static void ngx_http_scale_redis_conn_flush(ngx_http_scale_redis_conn_t *rc);
static ngx_int_t ngx_http_scale_redis_conn_dispatch(
    ngx_http_scale_redis_conn_t *rc);
static void ngx_http_scale_redis_conn_lost(ngx_http_scale_redis_conn_t *rc,
    const char *reason);
static ngx_int_t ngx_http_scale_redis_conn_reserve(
    ngx_http_scale_redis_conn_t *rc, size_t len);
static u_char *ngx_http_scale_redis_conn_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static void ngx_http_scale_redis_conn_log_writer(ngx_log_t *log,
    ngx_uint_t level, u_char *buf, size_t len);


ngx_int_t
ngx_http_scale_redis_conn_init(ngx_http_scale_redis_conn_t *rc,
    ngx_log_t *log, ngx_str_t *pool_name)
{
    rc->parent_log = log;
    rc->pool_name = pool_name;

    rc->log = *log;
    rc->log.handler = ngx_http_scale_redis_conn_log_error;
    rc->log.data = rc;
    rc->log.action = NULL;
    rc->log.writer = ngx_http_scale_redis_conn_log_writer;
    rc->log.wdata = rc;

    rc->peer_name.data = ngx_alloc(2 * (NGX_SOCKADDR_STRLEN + 256), log);
    if (rc->peer_name.data == NULL) {
        return NGX_ERROR;
    }

    rc->tls_name.data = rc->peer_name.data + NGX_SOCKADDR_STRLEN + 256;

    rc->out = ngx_alloc(NGX_HTTP_SCALE_REDIS_OUT_SIZE, log);
    if (rc->out == NULL) {
        return NGX_ERROR;
    }

    rc->out_pos = rc->out;
    rc->out_last = rc->out;
    rc->out_end = rc->out + NGX_HTTP_SCALE_REDIS_OUT_SIZE;

    rc->pending = ngx_alloc(NGX_HTTP_SCALE_REDIS_PENDING_SIZE
                            * sizeof(ngx_http_scale_redis_pending_t), log);
    if (rc->pending == NULL) {
        return NGX_ERROR;
    }

    rc->size = NGX_HTTP_SCALE_REDIS_PENDING_SIZE;

    rc->reader = redisReaderCreate();
    if (rc->reader == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_scale_redis_conn_free(ngx_http_scale_redis_conn_t *rc)
{
    ngx_http_scale_redis_conn_close(rc, 0);

    if (rc->reader) {
        redisReaderFree(rc->reader);
        rc->reader = NULL;
    }

    if (rc->out) {
        ngx_free(rc->out);
        rc->out = NULL;
    }

    if (rc->pending) {
        ngx_free(rc->pending);
        rc->pending = NULL;
    }

    if (rc->peer_name.data) {
        ngx_free(rc->peer_name.data);
        rc->peer_name.data = NULL;
    }
}


ngx_int_t
ngx_http_scale_redis_conn_open(ngx_http_scale_redis_conn_t *rc,
    ngx_http_scale_redis_addr_t *addr)
{
    ngx_int_t          rv;
    ngx_err_t          err;
    ngx_connection_t  *c;

    if (rc->reader == NULL) {
        /* its replacement at the last close ran out of memory */
        rc->reader = redisReaderCreate();
        if (rc->reader == NULL) {
            return NGX_ERROR;
        }
    }

    /* the caller's addr may go: what the connection needs is copied */

    rc->peer_name.len = ngx_min(addr->name.len, NGX_SOCKADDR_STRLEN + 255);
    ngx_memcpy(rc->peer_name.data, addr->name.data, rc->peer_name.len);

    rc->tls_name.len = ngx_min(addr->host.len, NGX_SOCKADDR_STRLEN + 255);
    ngx_memcpy(rc->tls_name.data, addr->host.data, rc->tls_name.len);

    if (addr->socklen > sizeof(ngx_sockaddr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&rc->sockaddr, addr->sockaddr, addr->socklen);

    ngx_memzero(&rc->peer, sizeof(ngx_peer_connection_t));

    rc->peer.sockaddr = &rc->sockaddr.sockaddr;
    rc->peer.socklen = addr->socklen;
    rc->peer.name = &rc->peer_name;
    rc->peer.get = ngx_event_get_peer;
    rc->peer.log = &rc->log;
    rc->peer.log_error = NGX_ERROR_ERR;
    rc->peer.tries = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                   "redis pool \"%V\" connect to %V",
                   rc->pool_name, &rc->peer_name);

    /*
     * A refused connect is an [error] in ngx_event_connect_peer(); here it
     * is what a pool that waits for its Redis does: the pool logs it.
     */

    rc->log.log_level = ngx_min(rc->parent_log->log_level, NGX_LOG_CRIT);
    rc->log.action = "connecting to redis";

    rv = ngx_event_connect_peer(&rc->peer);

    err = ngx_socket_errno;
    rc->log.log_level = rc->parent_log->log_level;

    if (rv == NGX_ERROR || rv == NGX_BUSY || rv == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, rc->parent_log, err,
                      "redis pool \"%V\" connect() to %V failed",
                      rc->pool_name, &rc->peer_name);
        rc->peer.connection = NULL;
        return NGX_ERROR;
    }

    c = rc->peer.connection;

    c->pool = ngx_create_pool(512, &rc->log);
    if (c->pool == NULL) {
        ngx_close_connection(c);
        rc->peer.connection = NULL;
        return NGX_ERROR;
    }

    c->data = rc;
    c->log = &rc->log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->read->handler = ngx_http_scale_redis_conn_read_handler;
    c->write->handler = ngx_http_scale_redis_conn_write_handler;

    rc->connection = c;
    rc->connecting = 1;
    rc->open = 0;

    if (rv == NGX_OK) {
        /* a unix socket: connected already, go on from the event loop */
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_scale_redis_conn_connected(ngx_http_scale_redis_conn_t *rc)
{
    ngx_connection_t  *c;

    c = rc->connection;

    rc->connecting = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                   "redis pool \"%V\" connected to %V",
                   rc->pool_name, &rc->peer_name);

    /* pipelined commands go out at once, not after the last ACK */

    if (rc->peer.sockaddr->sa_family != AF_UNIX) {
        (void) ngx_tcp_nodelay(c);
    }

#if (NGX_SSL)

    if (rc->tls) {
        ngx_http_scale_redis_conn_ssl_start(rc);
        return;
    }

#endif

    rc->open = 1;
    rc->log.action = NULL;

    ngx_http_scale_redis_conn_flush(rc);
}


/* a refused connect is what a pool waiting for its Redis sees: info */

static ngx_int_t
ngx_http_scale_redis_conn_test_connect(ngx_connection_t *c)
{
    int                           err;
    socklen_t                     len;
    ngx_http_scale_redis_conn_t  *rc = c->data;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_log_error(NGX_LOG_INFO, rc->parent_log, err,
                      "redis pool \"%V\" connect() to %V failed",
                      rc->pool_name, &rc->peer_name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


#if (NGX_SSL)

static void
ngx_http_scale_redis_conn_ssl_start(ngx_http_scale_redis_conn_t *rc)
{
    u_char            *p;
    ngx_int_t          rv;
    ngx_str_t         *name;
    ngx_connection_t  *c;

    c = rc->connection;

    if (ngx_ssl_create_connection(rc->tls->ssl, c, NGX_SSL_CLIENT) != NGX_OK) {
        ngx_http_scale_redis_conn_lost(rc, "TLS setup failed");
        return;
    }

    c->sendfile = 0;

    name = rc->tls->server_name.len ? &rc->tls->server_name : &rc->tls_name;

    /* SNI carries names only (RFC 6066) */

    if (name->len && ngx_inet_addr(name->data, name->len) == INADDR_NONE
        && ngx_strlchr(name->data, name->data + name->len, ':') == NULL)
    {
        p = ngx_pnalloc(c->pool, name->len + 1);
        if (p == NULL) {
            ngx_http_scale_redis_conn_lost(rc, "TLS setup failed");
            return;
        }

        (void) ngx_cpystrn(p, name->data, name->len + 1);

        if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) p) == 0) {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "SSL_set_tlsext_host_name(\"%s\") failed", p);
            ngx_http_scale_redis_conn_lost(rc, "TLS setup failed");
            return;
        }
    }

    if (rc->tls->session) {
        if (ngx_ssl_set_session(c, rc->tls->session) != NGX_OK) {
            ngx_http_scale_redis_conn_lost(rc, "TLS setup failed");
            return;
        }
    }

    c->ssl->save_session = ngx_http_scale_redis_conn_ssl_save_session;

    rc->log.action = "SSL handshaking to redis";

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                   "redis pool \"%V\" TLS handshake", rc->pool_name);

    rv = ngx_ssl_handshake(c);

    if (rv == NGX_AGAIN) {
        c->ssl->handler = ngx_http_scale_redis_conn_ssl_handshaked;
        return;
    }

    ngx_http_scale_redis_conn_ssl_handshaked(c);
}


static void
ngx_http_scale_redis_conn_ssl_handshaked(ngx_connection_t *c)
{
    ngx_http_scale_redis_conn_t  *rc = c->data;

    if (!c->ssl->handshaked) {
        ngx_log_error(NGX_LOG_ERR, rc->parent_log, 0,
                      "redis pool \"%V\" TLS handshake with %V failed",
                      rc->pool_name, &rc->peer_name);
        ngx_http_scale_redis_conn_lost(rc, "TLS handshake failed");
        return;
    }

    if (rc->tls->verify && ngx_http_scale_redis_conn_ssl_verify(rc, c)
                           != NGX_OK)
    {
        ngx_http_scale_redis_conn_lost(rc, "TLS certificate not verified");
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                   "redis pool \"%V\" TLS established, reused: %d",
                   rc->pool_name, SSL_session_reused(c->ssl->connection));

    c->read->handler = ngx_http_scale_redis_conn_read_handler;
    c->write->handler = ngx_http_scale_redis_conn_write_handler;

    rc->open = 1;
    rc->log.action = NULL;

    ngx_http_scale_redis_conn_flush(rc);

    /* data may have come with the last handshake record */

    if (rc->connection == c && c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_http_scale_redis_conn_ssl_verify(ngx_http_scale_redis_conn_t *rc,
    ngx_connection_t *c)
{
    long        rv;
    u_char     *p;
    X509       *cert;
    ngx_str_t  *name;
    ngx_int_t   ok;

    rv = SSL_get_verify_result(c->ssl->connection);

    if (rv != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, rc->parent_log, 0,
                      "redis pool \"%V\" SSL certificate verify error: "
                      "(%l:%s) from %V", rc->pool_name,
                      rv, X509_verify_cert_error_string(rv), &rc->peer_name);
        return NGX_ERROR;
    }

    name = rc->tls->server_name.len ? &rc->tls->server_name : &rc->tls_name;

    /* an address is checked against the certificate's IP names */

    p = ngx_pnalloc(c->pool, name->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(p, name->data, name->len + 1);

    cert = SSL_get_peer_certificate(c->ssl->connection);

    if (cert && (ngx_inet_addr(p, name->len) != INADDR_NONE
                 || ngx_strlchr(p, p + name->len, ':')))
    {
        ok = (X509_check_ip_asc(cert, (char *) p, 0) == 1);
        X509_free(cert);

    } else {
        if (cert) {
            X509_free(cert);
        }

        ok = (ngx_ssl_check_host(c, name) == NGX_OK);
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, rc->parent_log, 0,
                      "redis pool \"%V\" SSL certificate does not match "
                      "\"%V\" at %V", rc->pool_name, name, &rc->peer_name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* one session per pool and worker, offered on every reconnect */

static void
ngx_http_scale_redis_conn_ssl_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t            *session;
    ngx_http_scale_redis_conn_t  *rc = c->data;

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    if (rc->tls->session) {
        ngx_ssl_free_session(rc->tls->session);
    }

    rc->tls->session = session;
}

#endif


static void
ngx_http_scale_redis_conn_write_handler(ngx_event_t *wev)
{
    ngx_connection_t             *c = wev->data;
    ngx_http_scale_redis_conn_t  *rc = c->data;

    if (rc->connecting) {
        if (ngx_http_scale_redis_conn_test_connect(c) != NGX_OK) {
            ngx_http_scale_redis_conn_lost(rc, "connect failed");
            return;
        }

        ngx_http_scale_redis_conn_connected(rc);
        return;
    }

    if (rc->open) {
        ngx_http_scale_redis_conn_flush(rc);
    }
}


static void
ngx_http_scale_redis_conn_read_handler(ngx_event_t *rev)
{
    ssize_t                       n;
    ngx_uint_t                    generation;
    ngx_connection_t             *c = rev->data;
    ngx_http_scale_redis_conn_t  *rc = c->data;

    static u_char                 buf[NGX_HTTP_SCALE_REDIS_READ_SIZE];

    if (rc->connecting) {
        ngx_http_scale_redis_conn_write_handler(c->write);
        return;
    }

    if (!rc->open) {
        return;
    }

    generation = rc->generation;

    do {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_scale_redis_conn_lost(rc, "closed by the server");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_scale_redis_conn_lost(rc, ngx_http_scale_redis_conn_tls(c) ? "SSL read failed"
                                               : "reset by the server");
            return;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                       "redis pool \"%V\" read %z bytes from %V",
                       rc->pool_name, n, &rc->peer_name);

        if (redisReaderFeed(rc->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_http_scale_redis_conn_lost(rc, "out of memory");
            return;
        }

        if (ngx_http_scale_redis_conn_dispatch(rc) != NGX_OK
            || rc->generation != generation)
        {
            return;
        }

    } while (rev->ready);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_scale_redis_conn_lost(rc, "adding read event failed");
    }
}


/* every complete reply to the oldest command waiting; NGX_DONE: closed */

static ngx_int_t
ngx_http_scale_redis_conn_dispatch(ngx_http_scale_redis_conn_t *rc)
{
    void                            *reply;
    ngx_uint_t                       generation;
    ngx_http_scale_redis_pending_t   p;

    generation = rc->generation;

    for ( ;; ) {
        reply = NULL;

        if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
            ngx_log_error(NGX_LOG_ERR, rc->parent_log, 0,
                          "redis pool \"%V\" protocol error from %V: %s",
                          rc->pool_name, &rc->peer_name, rc->reader->errstr);
            ngx_http_scale_redis_conn_lost(rc, "protocol error");
            return NGX_DONE;
        }

        if (reply == NULL) {
            return NGX_OK;
        }

        if (rc->npending == 0) {
            if (rc->push) {
                rc->push(rc, rc->data, reply);
                freeReplyObject(reply);

                if (rc->generation != generation) {
                    return NGX_DONE;
                }

                continue;
            }

            freeReplyObject(reply);

            ngx_log_error(NGX_LOG_ERR, rc->parent_log, 0,
                          "redis pool \"%V\" unexpected reply from %V",
                          rc->pool_name, &rc->peer_name);
            ngx_http_scale_redis_conn_lost(rc, "unexpected reply");
            return NGX_DONE;
        }

        p = rc->pending[rc->head];
        rc->head = (rc->head + 1) % rc->size;
        rc->npending--;

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                       "redis pool \"%V\" reply type %d, %ui waiting",
                       rc->pool_name, ((redisReply *) reply)->type,
                       rc->npending);

        p.handler(rc, p.data, reply);

        freeReplyObject(reply);

        if (rc->generation != generation) {
            return NGX_DONE;
        }
    }
}


ngx_int_t
ngx_http_scale_redis_conn_send(ngx_http_scale_redis_conn_t *rc, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_scale_redis_reply_pt handler, void *data)
{
    int                              len;
    char                            *cmd;
    ngx_uint_t                       i, k;
    ngx_http_scale_redis_pending_t  *pending;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    if (ngx_http_scale_redis_conn_reserve(rc, len) != NGX_OK) {
        redisFreeCommand(cmd);
        return NGX_ERROR;
    }

    if (rc->npending == rc->size) {
        pending = ngx_alloc(2 * rc->size
                            * sizeof(ngx_http_scale_redis_pending_t),
                            rc->parent_log);
        if (pending == NULL) {
            redisFreeCommand(cmd);
            return NGX_ERROR;
        }

        for (i = 0; i < rc->npending; i++) {
            k = (rc->head + i) % rc->size;
            pending[i] = rc->pending[k];
        }

        ngx_free(rc->pending);

        rc->pending = pending;
        rc->head = 0;
        rc->size *= 2;
    }

    rc->out_last = ngx_cpymem(rc->out_last, cmd, len);
    redisFreeCommand(cmd);

    k = (rc->head + rc->npending) % rc->size;
    rc->pending[k].handler = handler;
    rc->pending[k].data = data;
    rc->npending++;

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                   "redis pool \"%V\" queued %*s, %ui waiting",
                   rc->pool_name, (size_t) ngx_min(argvlen[0], 16), argv[0],
                   rc->npending);

    /* everything queued in this event loop iteration leaves in one write */

    if (rc->open) {
        ngx_post_event(rc->connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_scale_redis_conn_reserve(ngx_http_scale_redis_conn_t *rc, size_t len)
{
    size_t   used, size;
    u_char  *out;

    if ((size_t) (rc->out_end - rc->out_last) >= len) {
        return NGX_OK;
    }

    used = rc->out_last - rc->out_pos;

    if (rc->out_pos != rc->out) {
        ngx_memmove(rc->out, rc->out_pos, used);
        rc->out_pos = rc->out;
        rc->out_last = rc->out + used;

        if ((size_t) (rc->out_end - rc->out_last) >= len) {
            return NGX_OK;
        }
    }

    size = ngx_max(2 * (size_t) (rc->out_end - rc->out), used + len);

    out = ngx_alloc(size, rc->parent_log);
    if (out == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out, rc->out_pos, used);
    ngx_free(rc->out);

    rc->out = out;
    rc->out_pos = out;
    rc->out_last = out + used;
    rc->out_end = out + size;

    return NGX_OK;
}


size_t
ngx_http_scale_redis_conn_unsent(ngx_http_scale_redis_conn_t *rc)
{
    return rc->out_last - rc->out_pos;
}


static void
ngx_http_scale_redis_conn_flush(ngx_http_scale_redis_conn_t *rc)
{
    ngx_buf_t          b;
    ngx_chain_t        cl, *rv;
    ngx_connection_t  *c;

    c = rc->connection;

    if (rc->out_pos < rc->out_last) {
        ngx_memzero(&b, sizeof(ngx_buf_t));

        b.pos = rc->out_pos;
        b.last = rc->out_last;
        b.memory = 1;
        b.flush = 1;

        cl.buf = &b;
        cl.next = NULL;

        rv = c->send_chain(c, &cl, 0);

        if (rv == NGX_CHAIN_ERROR) {
            ngx_http_scale_redis_conn_lost(rc, ngx_http_scale_redis_conn_tls(c) ? "SSL write failed"
                                               : "write failed");
            return;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                       "redis pool \"%V\" wrote %z of %z bytes",
                       rc->pool_name, b.pos - rc->out_pos,
                       rc->out_last - rc->out_pos);

        rc->out_pos = b.pos;

        if (rc->out_pos == rc->out_last) {
            rc->out_pos = rc->out;
            rc->out_last = rc->out;
        }
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_scale_redis_conn_lost(rc, "adding write event failed");
    }
}


static void
ngx_http_scale_redis_conn_lost(ngx_http_scale_redis_conn_t *rc,
    const char *reason)
{
    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                   "redis pool \"%V\" connection to %V lost: %s",
                   rc->pool_name, &rc->peer_name, reason);

    if (rc->lost) {
        rc->lost(rc, reason);

    } else {
        ngx_http_scale_redis_conn_close(rc, 0);
    }
}


void
ngx_http_scale_redis_conn_close(ngx_http_scale_redis_conn_t *rc,
    ngx_uint_t kind)
{
    ngx_uint_t                       n;
    ngx_pool_t                      *pool;
    ngx_connection_t                *c;
    ngx_http_scale_redis_pending_t   p;

    c = rc->connection;

    rc->connection = NULL;
    rc->open = 0;
    rc->connecting = 0;
    rc->generation++;

    if (c) {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->parent_log, 0,
                       "redis pool \"%V\" close connection to %V",
                       rc->pool_name, &rc->peer_name);

#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            c->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif

        pool = c->pool;
        ngx_close_connection(c);

        if (pool) {
            ngx_destroy_pool(pool);
        }
    }

    rc->out_pos = rc->out;
    rc->out_last = rc->out;

    /* a protocol error stays set in the reader: it fails every feed */

    if (rc->reader
        && (rc->reader->err || rc->reader->len || rc->reader->ridx >= 0))
    {
        redisReaderFree(rc->reader);
        rc->reader = redisReaderCreate();
    }

    /*
     * The commands waiting now fail, in order; what their callers send
     * meanwhile waits for the next connection.
     */

    rc->close_kind = kind;

    for (n = rc->npending; n; n--) {
        p = rc->pending[rc->head];
        rc->head = (rc->head + 1) % rc->size;
        rc->npending--;

        p.handler(rc, p.data, NULL);
    }
}


static u_char *
ngx_http_scale_redis_conn_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                       *p;
    ngx_http_scale_redis_conn_t  *rc = log->data;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    p = ngx_snprintf(p, len, ", redis pool: \"%V\", server: %V",
                     rc->pool_name, &rc->peer_name);

    return p;
}


/*
 * nginx's own messages about a Redis connection ("SSL_read() failed ...
 * alert certificate required") are the pool's errors: a [crit] there is
 * a server that refused, not a fault of this host.
 */

static void
ngx_http_scale_redis_conn_log_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len)
{
    u_char                       *p, *tag;
    u_char                        line[NGX_MAX_ERROR_STR + 16];
    ngx_log_t                    *parent;
    ngx_http_scale_redis_conn_t  *rc = log->wdata;

    parent = rc->parent_log;

    if (level == NGX_LOG_CRIT && len < NGX_MAX_ERROR_STR) {
        tag = ngx_strlcasestrn(buf, buf + ngx_min(len, 64),
                               (u_char *) " [crit] ", sizeof(" [crit] ") - 2);

        if (tag) {
            p = ngx_cpymem(line, buf, tag - buf);
            p = ngx_cpymem(p, " [error] ", sizeof(" [error] ") - 1);
            p = ngx_cpymem(p, tag + sizeof(" [crit] ") - 1,
                           len - (tag - buf) - (sizeof(" [crit] ") - 1));

            buf = line;
            len = p - line;
            level = NGX_LOG_ERR;
        }
    }

    if (parent->log_level < level) {
        return;
    }

    if (parent->writer) {
        parent->writer(parent, level, buf, len);
        return;
    }

    (void) ngx_write_fd(parent->file->fd, buf, len);
}
