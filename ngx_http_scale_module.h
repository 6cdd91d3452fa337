
/*
 * nginx-scale: the core shared by ratelimit_redis, session_redis and health.
 *
 * Redis:   redis_pool blocks, one pipelined async hiredis connection (or a
 *          few) per worker per pool, driven by nginx's event loop.
 * Metrics: counters, gauges and histograms registered at configuration
 *          time and kept in one shared memory zone, updated with atomics.
 */


#ifndef _NGX_HTTP_SCALE_MODULE_H_INCLUDED_
#define _NGX_HTTP_SCALE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>
#include <hiredis/hiredis.h>


#define NGX_HTTP_SCALE_VERSION  "0.1.0"


extern ngx_module_t  ngx_http_scale_module;


/* Redis */

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


/* Requests */

/*
 * A module context that survives internal redirects (error_page,
 * try_files wipe r->ctx): a request is limited or checked once, and its
 * status variables still answer after the redirect.
 */
ngx_int_t ngx_http_scale_set_ctx(ngx_http_request_t *r, void *ctx,
    ngx_module_t *module);
void *ngx_http_scale_get_ctx(ngx_http_request_t *r, ngx_module_t *module);

ngx_int_t ngx_http_scale_add_header(ngx_http_request_t *r, ngx_str_t *name,
    u_char *value, size_t len);

/* goes on with a request that waited for Redis (its phase handler runs again) */
void ngx_http_scale_resume(ngx_http_request_t *r);


/* Logging */

/*
 * For messages that come in floods (a failing Redis fails every request,
 * a deny-cached key rejects every request): the first of a burst is
 * logged, then at most one a second, saying how many were left out.
 */
typedef struct {
    ngx_msec_t                       quiet_until;
    ngx_uint_t                       suppressed;
} ngx_http_scale_log_burst_t;

/* NGX_DECLINED: do not log; else log, with the number left out since */
ngx_int_t ngx_http_scale_log_burst(ngx_http_scale_log_burst_t *burst);


/* Metrics */

typedef enum {
    NGX_HTTP_SCALE_COUNTER = 0,
    NGX_HTTP_SCALE_GAUGE,
    NGX_HTTP_SCALE_HISTOGRAM,
    NGX_HTTP_SCALE_WORKER_GAUGE,        /* by ngx_http_scale_worker_gauge_add */
    NGX_HTTP_SCALE_WORKER_COUNT         /* its count of workers */
} ngx_http_scale_metric_type_e;


/* histogram upper bounds, microseconds; +Inf is implicit */
#define NGX_HTTP_SCALE_HISTOGRAM_BUCKETS  14

extern const ngx_msec_t  ngx_http_scale_histogram_bounds_us[];


/*
 * One time series.  Counters and gauges take one slot, histograms
 * NGX_HTTP_SCALE_HISTOGRAM_BUCKETS + 1 (+Inf) bucket counts (not
 * cumulative), then count, then the sum in microseconds.  A worker gauge
 * takes one slot, and its count the next one; the zone keeps a value per
 * worker behind them.
 */
typedef struct {
    ngx_str_t                        family;
    ngx_str_t                        help;
    ngx_str_t                        labels;     /* pool="main",kind="timeout" */
    ngx_uint_t                       type;
    ngx_uint_t                       slot;
} ngx_http_scale_series_t;


/*
 * Registers a series at configuration time; returns its slot (a handle for
 * the update functions below) or NGX_ERROR.  Registering the same family and
 * labels twice returns the same slot.
 */
ngx_int_t ngx_http_scale_series_add(ngx_conf_t *cf, ngx_str_t *family,
    ngx_str_t *help, ngx_uint_t type, ngx_str_t *labels);

/*
 * Declares a family a module serves, whether or not it has series in this
 * configuration (a module not configured, no upstream yet): /metrics names
 * every family (HELP and TYPE), so dashboards and alert rules written for
 * the whole module always refer to served families.
 */
ngx_int_t ngx_http_scale_family_add(ngx_conf_t *cf, ngx_str_t *family,
    ngx_str_t *help, ngx_uint_t type);

/*
 * A gauge each worker process sets for itself, for state that is per
 * worker (its connection to a Redis pool).  family shows the lowest value
 * among the workers of the running configuration, a worker that has not
 * set it counting as 0; count_family shows how many of them have it above
 * 0.  Values are 0 .. 65535.  Set it with ngx_http_scale_gauge_set(); a
 * worker that is shutting down no longer sets it.
 */
ngx_int_t ngx_http_scale_worker_gauge_add(ngx_conf_t *cf, ngx_str_t *family,
    ngx_str_t *help, ngx_str_t *count_family, ngx_str_t *count_help,
    ngx_str_t *labels);

void ngx_http_scale_counter_add(ngx_uint_t slot, ngx_atomic_int_t n);
void ngx_http_scale_gauge_set(ngx_uint_t slot, ngx_atomic_int_t value);
void ngx_http_scale_histogram_observe(ngx_uint_t slot, uint64_t us);

/* reading, for the renderer */
ngx_array_t *ngx_http_scale_series(ngx_cycle_t *cycle);   /* of series_t */
/* of series_t with neither labels nor slot (0): the declared families */
ngx_array_t *ngx_http_scale_families(ngx_cycle_t *cycle);
/* a worker gauge's slot reads as the lowest value, its count's as the count */
ngx_atomic_int_t ngx_http_scale_slot_value(ngx_uint_t slot);
/* 0 for the slots of series that did not fit the zone */
ngx_uint_t ngx_http_scale_slot_fits(ngx_uint_t slot);

/* health_zone SIZE */
char *ngx_http_scale_metrics_zone_size(ngx_conf_t *cf, size_t size);

/* microseconds from a monotonic clock, for durations */
uint64_t ngx_http_scale_now_us(void);


/* escapes a label value for the Prometheus text format into pool memory */
ngx_int_t ngx_http_scale_label_escape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);


#endif /* _NGX_HTTP_SCALE_MODULE_H_INCLUDED_ */
