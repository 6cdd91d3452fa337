
/*
 * nginx-scale: the core module.  It owns the redis_pool blocks and the
 * metrics zone (their code lives in src/), ties them to nginx's process
 * life, and offers the modules a few request helpers.
 */


#ifndef _NGX_HTTP_SCALE_MODULE_H_INCLUDED_
#define _NGX_HTTP_SCALE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_SCALE_VERSION  "0.1.0"


extern ngx_module_t  ngx_http_scale_module;


typedef struct ngx_http_scale_metrics_conf_s  ngx_http_scale_metrics_conf_t;

typedef struct {
    ngx_array_t                      redis_pools;  /* of redis pool_t * */
    ngx_http_scale_metrics_conf_t   *metrics;
} ngx_http_scale_main_conf_t;


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


#endif /* _NGX_HTTP_SCALE_MODULE_H_INCLUDED_ */
