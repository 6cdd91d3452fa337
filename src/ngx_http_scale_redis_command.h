
/*
 * Commands and their replies: what ngx_http_scale_redis_send() and
 * _send_detached() (declared in ngx_http_scale_module.h) queue, the token
 * a waiting request holds, EVALSHA with its NOSCRIPT retry, timeouts.
 */


#ifndef _NGX_HTTP_SCALE_REDIS_COMMAND_H_INCLUDED_
#define _NGX_HTTP_SCALE_REDIS_COMMAND_H_INCLUDED_


#include "ngx_http_scale_redis_pool.h"


/* exit_process: the spare tokens go */
void ngx_http_scale_redis_command_exit(void);


#endif /* _NGX_HTTP_SCALE_REDIS_COMMAND_H_INCLUDED_ */
