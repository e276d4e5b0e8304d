/*
 * metrics-text.h: the metrics exposition as one string, for the tests
 * that read it (test-metrics, test-usage).
 */

#ifndef METRICS_TEXT_H
#define METRICS_TEXT_H

#include <stdlib.h>

#include <event2/buffer.h>

/* The exposition (static; overwritten by the next call). */
static const char *
metrics_text(void)
{
	static char	 text[1 << 20];
	struct evbuffer	*b;
	size_t		 n;

	if ((b = evbuffer_new()) == NULL)
		abort();
	metrics_render(b);
	n = evbuffer_remove(b, text, sizeof text - 1);
	text[n] = '\0';
	evbuffer_free(b);
	return (text);
}

#endif /* METRICS_TEXT_H */
