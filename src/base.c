/*
 * base.c: the process-wide state every file may use: the event loop, the
 * DNS resolver, the flags of the command line and the start time. Here,
 * in the lowest layer, so that every program linking libbsp has it and
 * nothing reaches up for it.
 */

#include <time.h>
#include <unistd.h>

#include "bsp.h"

struct event_base	*bsp_base;
struct evdns_base	*bsp_dns;
int			 bsp_debug;
int			 bsp_verbose;
time_t			 bsp_start_time;

/* Close every descriptor from lowfd up: a child process, after fork(). */
void
bsp_closefrom(int lowfd)
{
#if defined(__OpenBSD__) || defined(__FreeBSD__) || \
    (defined(__GLIBC__) && (__GLIBC__ > 2 || \
    (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34)))
	closefrom(lowfd);
#else
	long	max = sysconf(_SC_OPEN_MAX), fd;

	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = lowfd; fd < max; fd++)
		close((int)fd);
#endif
}
