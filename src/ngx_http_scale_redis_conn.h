
/*
 * One connection to a Redis server (or a Sentinel), owned by nginx:
 * ngx_event_connect_peer, TLS through ngx_ssl_*, c->send_chain and
 * c->recv.  hiredis only formats commands and parses replies.  Replies
 * are matched to commands in the order sent, one FIFO per connection.
 */


#ifndef _NGX_HTTP_SCALE_REDIS_CONN_H_INCLUDED_
#define _NGX_HTTP_SCALE_REDIS_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <hiredis/hiredis.h>
#include "ngx_http_scale_module.h"
#include "ngx_http_scale_redis.h"


typedef struct ngx_http_scale_redis_conn_s  ngx_http_scale_redis_conn_t;


/*
 * The reply to a command, or NULL when the connection closed first
 * (conn->close_kind says why).  The reply is freed when it returns.
 */
typedef void (*ngx_http_scale_redis_reply_pt)(ngx_http_scale_redis_conn_t *rc,
    void *data, redisReply *reply);

/* the connection failed on its own (connect, TLS, read, write) */
typedef void (*ngx_http_scale_redis_lost_pt)(ngx_http_scale_redis_conn_t *rc,
    const char *reason);


typedef struct {
    ngx_http_scale_redis_reply_pt    handler;
    void                            *data;
} ngx_http_scale_redis_pending_t;


/* where to connect, and how to check who answers */
typedef struct {
    struct sockaddr                 *sockaddr;
    socklen_t                        socklen;
    ngx_str_t                        name;         /* "host:port", for logs */
    ngx_str_t                        host;         /* checked in the cert */
} ngx_http_scale_redis_addr_t;


#if (NGX_SSL)

/* TLS settings shared by the connections of a pool */
typedef struct {
    ngx_ssl_t                       *ssl;
    ngx_flag_t                       verify;
    ngx_str_t                        server_name;  /* empty: the host */
    ngx_ssl_session_t               *session;      /* this worker's, reused */
} ngx_http_scale_redis_tls_t;

#endif


struct ngx_http_scale_redis_conn_s {
    ngx_http_scale_redis_pool_t     *pool;
    ngx_connection_t                *connection;
    ngx_peer_connection_t            peer;
    ngx_log_t                        log;          /* names pool and peer */
    ngx_log_t                       *parent_log;
    ngx_str_t                       *pool_name;
    ngx_str_t                        peer_name;
    ngx_sockaddr_t                   sockaddr;     /* copied from addr_t */

    redisReader                     *reader;

    /* formatted commands not yet written */
    u_char                          *out;
    u_char                          *out_pos;
    u_char                          *out_last;
    u_char                          *out_end;

    /* commands waiting for a reply, oldest first (a ring) */
    ngx_http_scale_redis_pending_t  *pending;
    ngx_uint_t                       npending;
    ngx_uint_t                       head;
    ngx_uint_t                       size;

    ngx_uint_t                       close_kind;   /* for the failed ones */
    ngx_uint_t                       generation;   /* bumped on close */

    ngx_http_scale_redis_lost_pt     lost;
    ngx_http_scale_redis_reply_pt    push;         /* replies nobody asked */
    void                            *data;

#if (NGX_SSL)
    ngx_http_scale_redis_tls_t      *tls;
#endif
    ngx_str_t                        tls_name;     /* addr_t's host */

    unsigned                         open:1;       /* TCP (and TLS) up */
    unsigned                         connecting:1;

    /* the pool's state of the connection (ngx_http_scale_redis_pool.c) */
    unsigned                         ready:1;      /* handshake done */
    unsigned                         starting:1;   /* first connect of the worker */
    unsigned                         role:1;       /* ROLE allowed: checked */
    /*
     * Dropped because the server was not the master: not counted up, and
     * the backoff goes on growing, until it answers as the master (ROLE,
     * or without ROLE a PING interval with no -READONLY).
     */
    unsigned                         failover:1;
    unsigned                         locating:1;   /* resolver, Sentinel */
    ngx_event_t                      timer;        /* connect timeout, backoff */
    ngx_msec_t                       backoff;
    ngx_msec_t                       ready_at;     /* ngx_current_msec */
    ngx_uint_t                       ping_pending;
    ngx_msec_t                       ping_sent;    /* ngx_current_msec */
    uint64_t                         ping_sent_us;
    void                            *resolving;    /* ngx_resolver_ctx_t */
    ngx_http_scale_redis_conn_t     *next_waiting; /* for the Sentinels */
};


/* once per worker: the log is the pool's, buffers are made here */
ngx_int_t ngx_http_scale_redis_conn_init(ngx_http_scale_redis_conn_t *rc,
    ngx_log_t *log, ngx_str_t *pool_name);
void ngx_http_scale_redis_conn_free(ngx_http_scale_redis_conn_t *rc);

/* starts a non-blocking connect (and TLS); NGX_ERROR: failed at once */
ngx_int_t ngx_http_scale_redis_conn_open(ngx_http_scale_redis_conn_t *rc,
    ngx_http_scale_redis_addr_t *addr);

/*
 * Queues a command (written at the end of this event loop iteration, with
 * the others); commands may be queued before the connection is open.
 */
ngx_int_t ngx_http_scale_redis_conn_send(ngx_http_scale_redis_conn_t *rc,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_scale_redis_reply_pt handler, void *data);

/* bytes queued and not yet written */
size_t ngx_http_scale_redis_conn_unsent(ngx_http_scale_redis_conn_t *rc);

/*
 * Closes the connection; every command still waiting on it gets a NULL
 * reply, with rc->close_kind set to kind, and none sent later does.
 */
void ngx_http_scale_redis_conn_close(ngx_http_scale_redis_conn_t *rc,
    ngx_uint_t kind);


#endif /* _NGX_HTTP_SCALE_REDIS_CONN_H_INCLUDED_ */
