/*
 * base.c: the process-wide state every file may use: the event loop, the
 * DNS resolver, the flags of the command line and the start time. Here,
 * in the lowest layer, so that every program linking libbsp has it and
 * nothing reaches up for it.
 */

#include <time.h>

#include "bsp.h"

struct event_base	*bsp_base;
struct evdns_base	*bsp_dns;
int			 bsp_debug;
int			 bsp_verbose;
time_t			 bsp_start_time;
