
/*
 * cache_redis: the types the module file and its internals share.
 */


#ifndef _NGX_HTTP_CACHE_REDIS_H_INCLUDED_
#define _NGX_HTTP_CACHE_REDIS_H_INCLUDED_


#include "ngx_http_scale_module.h"
#include "ngx_http_cache_redis_entry.h"
#include "ngx_http_scale_redis.h"


/* $cache_redis_status, also the metric's result label */
#define NGX_HTTP_CACHE_REDIS_HIT           1
#define NGX_HTTP_CACHE_REDIS_MISS          2
#define NGX_HTTP_CACHE_REDIS_BYPASS        3
#define NGX_HTTP_CACHE_REDIS_EXPIRED       4
#define NGX_HTTP_CACHE_REDIS_STALE         5
#define NGX_HTTP_CACHE_REDIS_UPDATING      6
#define NGX_HTTP_CACHE_REDIS_REVALIDATED   7
#define NGX_HTTP_CACHE_REDIS_ERROR         8
#define NGX_HTTP_CACHE_REDIS_NRESULTS      9

/* cache_redis_use_stale */
#define NGX_HTTP_CACHE_REDIS_STALE_UPDATING  0x0002
#define NGX_HTTP_CACHE_REDIS_STALE_ERROR     0x0004
#define NGX_HTTP_CACHE_REDIS_STALE_TIMEOUT   0x0008
#define NGX_HTTP_CACHE_REDIS_STALE_500       0x0010
#define NGX_HTTP_CACHE_REDIS_STALE_502       0x0020
#define NGX_HTTP_CACHE_REDIS_STALE_503       0x0040
#define NGX_HTTP_CACHE_REDIS_STALE_504       0x0080

/* lookup states */
#define NGX_HTTP_CACHE_REDIS_LOOKUP        1     /* a GET in flight */
#define NGX_HTTP_CACHE_REDIS_LOCKING       2     /* SET NX in flight */
#define NGX_HTTP_CACHE_REDIS_SLEEPING      3     /* waiting for the lock */
#define NGX_HTTP_CACHE_REDIS_POLLING       4     /* a poll in flight */
#define NGX_HTTP_CACHE_REDIS_PURGING       5
#define NGX_HTTP_CACHE_REDIS_SEND          6     /* answer from ctx->entry */
#define NGX_HTTP_CACHE_REDIS_PURGED        7     /* answer the PURGE */
#define NGX_HTTP_CACHE_REDIS_PASS          8     /* to the content handler */
#define NGX_HTTP_CACHE_REDIS_DONE          9

#define NGX_HTTP_CACHE_REDIS_POLL          50    /* ms between polls */
#define NGX_HTTP_CACHE_REDIS_TOKEN_LEN     32
#define NGX_HTTP_CACHE_REDIS_ARGS          8
#define NGX_HTTP_CACHE_REDIS_SEEN          32    /* head: stored, lifetime */


typedef struct {
    ngx_uint_t                       status;
    time_t                           valid;
} ngx_http_cache_redis_valid_t;


typedef struct {
    ngx_uint_t                       enabled;
    ngx_uint_t                       slots[NGX_HTTP_CACHE_REDIS_NRESULTS];
    ngx_uint_t                       stored_slot;
    ngx_uint_t                       stored_bytes_slot;
    ngx_int_t                        session_index;
    ngx_int_t                        session_status_index;
    ngx_http_complex_value_t         default_key;
    ngx_http_scale_log_burst_t       burst;
} ngx_http_cache_redis_main_conf_t;


typedef struct {
    ngx_http_scale_redis_pool_t     *pool;         /* NULL: off */
    ngx_http_complex_value_t        *key;          /* NULL: the default */
    ngx_str_t                        prefix;
    ngx_uint_t                       methods;
    ngx_array_t                     *valid;        /* of valid_t */
    ngx_array_t                     *bypass;       /* of complex values */
    ngx_array_t                     *no_store;
    size_t                           max_size;
    ngx_flag_t                       lock;
    ngx_msec_t                       lock_timeout;
    ngx_uint_t                       use_stale;
    time_t                           stale;
    ngx_flag_t                       revalidate;
    ngx_http_complex_value_t        *tags;
    ngx_flag_t                       purge;
    ngx_flag_t                       header;
} ngx_http_cache_redis_loc_conf_t;


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_cache_redis_loc_conf_t *conf;

    ngx_uint_t                       status;       /* HIT ... ERROR, 0: none */
    ngx_uint_t                       state;
    ngx_int_t                        rc;

    ngx_str_t                        base;         /* prefix + key */
    ngx_str_t                        key;          /* base, or a variant */
    ngx_str_t                        lock;         /* key + "#lock" */
    ngx_str_t                        user;         /* "#s:" session id */
    ngx_str_t                        seen;         /* head of an old entry */
    ngx_uint_t                       purged;
    u_char                           token[NGX_HTTP_CACHE_REDIS_TOKEN_LEN];
    size_t                           token_len;

    /* the Vary record found under the base key */
    uint32_t                         nonce;
    ngx_str_t                        vary;

    ngx_http_cache_redis_entry_t     entry;        /* a HIT, or a stale one */
    time_t                           age;

    ngx_msec_t                       wait_start;
    ngx_event_t                      sleep;

    /* headers_out before the response: not the origin's */
    ngx_list_part_t                 *part;
    ngx_uint_t                       nelts;

    /* the copy being made by the store filter, ngx_alloc()ed */
    u_char                          *copy;
    size_t                           copy_len;
    size_t                           copy_size;
    size_t                           body_start;
    off_t                            expect;       /* Content-Length, or -1 */
    time_t                           lifetime;

    const char                      *argv[NGX_HTTP_CACHE_REDIS_ARGS];
    size_t                           argvlen[NGX_HTTP_CACHE_REDIS_ARGS];

    unsigned                         has_entry:1;  /* ctx->entry is set */
    unsigned                         stale_ok:1;   /* and may be served stale */
    unsigned                         store:1;      /* may be stored */
    unsigned                         storing:1;    /* the copy goes on */
    unsigned                         lock_held:1;
    unsigned                         followed:1;   /* a Vary record */
    unsigned                         invalidate:1; /* an unsafe method */
    unsigned                         stale_sent:1;
    unsigned                         replace:1;    /* stale for an error */
    unsigned                         revalidating:1;
    unsigned                         no_store:1;   /* session not checked */
    unsigned                         pass:1;       /* answer not storable */
} ngx_http_cache_redis_ctx_t;


extern ngx_module_t  ngx_http_cache_redis_module;


#endif /* _NGX_HTTP_CACHE_REDIS_H_INCLUDED_ */
