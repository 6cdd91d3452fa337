
/*
 * The Redis client as the modules see it: pools (src/ngx_http_scale_redis
 * _pool.c), commands and replies (_command.c), the pool's state (_worker.c).
 */


#ifndef _NGX_HTTP_SCALE_REDIS_H_INCLUDED_
#define _NGX_HTTP_SCALE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>


/* a failure "kind", as in nginx_redis_errors_total{kind} */
typedef enum {
    NGX_HTTP_SCALE_REDIS_OK = 0,
    NGX_HTTP_SCALE_REDIS_CONNECT,       /* pool not connected: failed at once */
    NGX_HTTP_SCALE_REDIS_TIMEOUT,       /* no reply within the pool timeout */
    NGX_HTTP_SCALE_REDIS_REPLY,         /* Redis answered with an error */
    NGX_HTTP_SCALE_REDIS_PROTOCOL,      /* connection lost, unexpected reply */
    NGX_HTTP_SCALE_REDIS_NKINDS
} ngx_http_scale_redis_rc_e;


typedef struct ngx_http_scale_redis_pool_s  ngx_http_scale_redis_pool_t;

/* a command sent by ngx_http_scale_redis_send_detached() */
typedef struct ngx_http_scale_redis_token_s  ngx_http_scale_redis_cmd_t;


/*
 * Called once per command sent with ngx_http_scale_redis_send() while the
 * request still exists.  rc is NGX_HTTP_SCALE_REDIS_OK with a reply, or a
 * failure kind (reply is set for NGX_HTTP_SCALE_REDIS_REPLY only).  The reply
 * is freed when the handler returns: copy what is needed.  After the handler
 * the core resumes the request by calling r->write_event_handler(r).
 */
typedef void (*ngx_http_scale_redis_handler_pt)(ngx_http_request_t *r,
    void *data, ngx_int_t rc, redisReply *reply);


/*
 * The same for a command that no single request owns (a batch of them):
 * called once, from the event loop, unless the worker is exiting.
 */
typedef void (*ngx_http_scale_redis_detached_pt)(void *data, ngx_int_t rc,
    redisReply *reply);


typedef struct {
    ngx_str_t                        body;
    u_char                           sha1[40];
} ngx_http_scale_redis_script_t;


/* configuration time */
ngx_http_scale_redis_pool_t *ngx_http_scale_redis_pool_get(ngx_conf_t *cf,
    ngx_str_t *name);
ngx_str_t *ngx_http_scale_redis_pool_name(ngx_http_scale_redis_pool_t *pool);

/*
 * A location uses the pool (a ratelimit_redis zone it applies, its
 * session_redis pool): health_ready checks the pools in use, and only
 * those.  A pool that is only defined, or only named, is not.
 */
void ngx_http_scale_redis_pool_use(ngx_http_scale_redis_pool_t *pool);
ngx_uint_t ngx_http_scale_redis_pool_in_use(ngx_http_scale_redis_pool_t *pool);

/*
 * Computes the SHA-1 and ties the script to a pool that runs it: that
 * pool's connections load it (SCRIPT LOAD) when they connect, no other
 * pool's do.  Adding the same script to a pool again changes nothing.  A
 * refused SCRIPT LOAD (an ACL user without SCRIPT) does not fail the
 * connection: the first EVALSHA gets NOSCRIPT and EVAL loads the script.
 */
ngx_int_t ngx_http_scale_redis_script_init(ngx_conf_t *cf,
    ngx_http_scale_redis_pool_t *pool, ngx_http_scale_redis_script_t *script);

/*
 * Runtime.  With a script, argv holds what follows "EVALSHA <sha1>":
 * numkeys, keys, args; on NOSCRIPT the core retries once with EVAL.
 * argv and the strings it points to must stay valid until the handler is
 * called or the request is freed (r->pool is fine).
 *
 * Returns NGX_AGAIN when the handler will be called later; otherwise the
 * failure kind, at once and without calling the handler.
 */
ngx_int_t ngx_http_scale_redis_send(ngx_http_request_t *r,
    ngx_http_scale_redis_pool_t *pool, ngx_http_scale_redis_script_t *script,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_scale_redis_handler_pt handler, void *data);

/*
 * As ngx_http_scale_redis_send(), for a caller that is not a request:
 * argv must stay valid until the handler is called, the command is
 * abandoned or the worker exits.  With NGX_AGAIN, *cmd is the command.
 *
 * The command's timeout keeps a worker that shuts down alive (the
 * requests waiting on it are answered), so a caller whose requests have
 * all gone must abandon it: then the handler is never called, the
 * timeout goes, and a late reply is dropped.
 */
ngx_int_t ngx_http_scale_redis_send_detached(
    ngx_http_scale_redis_pool_t *pool, ngx_http_scale_redis_script_t *script,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_scale_redis_detached_pt handler, void *data,
    ngx_http_scale_redis_cmd_t **cmd);
void ngx_http_scale_redis_abandon(ngx_http_scale_redis_cmd_t *cmd);

/* whether a command sent now would go out (the pool is up or starting) */
ngx_uint_t ngx_http_scale_redis_usable(ngx_http_scale_redis_pool_t *pool);

/* for replies the caller finds malformed: counts errors_total{kind} */
void ngx_http_scale_redis_count_error(ngx_http_scale_redis_pool_t *pool,
    ngx_uint_t kind);

/* this worker's view of the pool, kept by its periodic PING (or ROLE) */
typedef struct {
    ngx_uint_t                       up;
    ngx_msec_t                       since;      /* state changed, ngx_current_msec */
    ngx_msec_t                       latency;    /* last PING round trip */
    ngx_str_t                        error;      /* why down, static text */
} ngx_http_scale_redis_state_t;

void ngx_http_scale_redis_pool_state(ngx_http_scale_redis_pool_t *pool,
    ngx_http_scale_redis_state_t *state);

/* iterate: pools of the current configuration, in definition order */
ngx_uint_t ngx_http_scale_redis_npools(ngx_cycle_t *cycle);
ngx_http_scale_redis_pool_t *ngx_http_scale_redis_pool_at(ngx_cycle_t *cycle,
    ngx_uint_t i);


#endif /* _NGX_HTTP_SCALE_REDIS_H_INCLUDED_ */
