/*
 * loop.h: running bsp_base from a unit test until something happened
 * or a deadline passed.
 */

#ifndef LOOP_H
#define LOOP_H

#include <event2/event.h>

static int	deadline_hit;

static inline void
deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
	deadline_hit = 1;
}

/* Run the loop until *flag is set or max seconds passed; 0 on success. */
static inline int
run_until(volatile int *flag, double max)
{
	struct event	*ev;
	struct timeval	 tv;

	deadline_hit = 0;
	ev = evtimer_new(bsp_base, deadline_cb, NULL);
	tv.tv_sec = (time_t)max;
	tv.tv_usec = (suseconds_t)((max - (double)tv.tv_sec) * 1e6);
	evtimer_add(ev, &tv);
	while (!*flag && !deadline_hit)
		event_base_loop(bsp_base, EVLOOP_ONCE);
	event_free(ev);
	return (*flag ? 0 : -1);
}

/* Run the loop for a while (lets closes and reaps happen). */
static inline void
run_for(double s)
{
	int	never = 0;

	run_until(&never, s);
}

#endif /* LOOP_H */
