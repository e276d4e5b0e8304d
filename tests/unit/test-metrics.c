/*
 * test-metrics.c: the request counters and durations kept through
 * metrics_request()'s cache of series per route and status: every request
 * counted in its own series, whatever the slots hold, the same exposition
 * as labels built by hand, and labels escaped.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "bsp.h"
#include "tap.h"
#include "metrics-text.h"

/* The value of one line "name{labels} value", or -1. */
static double
value(const char *name, const char *labels)
{
	const char	*t = metrics_text(), *p;
	char		 want[512];

	snprintf(want, sizeof want, "\n%s{%s} ", name, labels);
	if ((p = strstr(t, want)) == NULL)
		return (-1);
	return (strtod(p + strlen(want), NULL));
}

int
main(void)
{
	struct metric	*m;
	char		 route[32], labels[256], rname[64];
	int		 i, code, bad = 0;

	metrics_init();

	metrics_request("bedrock", 200, 0.003);
	metrics_request("bedrock", 200, 0.2);
	metrics_request("bedrock", 429, 0.001);
	is_int((int)value("bsp_http_requests_total",
	    "route=\"bedrock\",code=\"200\""), 2, "requests: counted per "
	    "route and code");
	is_int((int)value("bsp_http_requests_total",
	    "route=\"bedrock\",code=\"429\""), 1, "requests: another code, "
	    "another series");
	is_int((int)value("bsp_http_request_duration_seconds_count",
	    "route=\"bedrock\",code=\"200\""), 2, "durations: counted");
	is_int((int)value("bsp_http_request_duration_seconds_bucket",
	    "route=\"bedrock\",code=\"200\",le=\"0.005\""), 1,
	    "durations: bucket le=0.005");
	is_int((int)value("bsp_http_request_duration_seconds_bucket",
	    "route=\"bedrock\",code=\"200\",le=\"0.25\""), 2,
	    "durations: bucket le=0.25");
	ok(value("bsp_http_request_duration_seconds_sum",
	    "route=\"bedrock\",code=\"200\"") > 0.2029 &&
	    value("bsp_http_request_duration_seconds_sum",
	    "route=\"bedrock\",code=\"200\"") < 0.2031, "durations: sum");

	/* The same address holding another name: its own series. */
	snprintf(route, sizeof route, "first");
	metrics_request(route, 200, 0.01);
	snprintf(route, sizeof route, "second");
	metrics_request(route, 200, 0.01);
	metrics_request(route, 200, 0.01);
	is_int((int)value("bsp_http_requests_total",
	    "route=\"first\",code=\"200\""), 1, "reused address: the old "
	    "name's series");
	is_int((int)value("bsp_http_requests_total",
	    "route=\"second\",code=\"200\""), 2, "reused address: the new "
	    "name's series");

	/* Far more pairs than slots, each several times, interleaved. */
	for (i = 0; i < 3 * 300; i++) {
		code = 200 + (i % 300) % 50;
		snprintf(rname, sizeof rname, "r%d", (i % 300) / 50);
		metrics_request(rname, code, 0.5);
	}
	for (i = 0; i < 300; i++) {
		snprintf(labels, sizeof labels, "route=\"r%d\",code=\"%d\"",
		    i / 50, 200 + i % 50);
		if ((int)value("bsp_http_requests_total", labels) != 3)
			bad++;
	}
	is_int(bad, 0, "300 pairs through 128 slots: every request counted "
	    "in its own series");

	metrics_request("a\"b", 200, 0.1);
	ok(value("bsp_http_requests_total", "route=\"a\\\"b\",code=\"200\"") ==
	    1, "labels escaped");

	metric_label(labels, sizeof labels, "k", "v", "other", "x\ny", NULL);
	is_str(labels, "k=\"v\",other=\"x\\ny\"", "metric_label: keys, "
	    "values, escapes");
	metric_label(labels, 12, "key", "value-too-long", NULL);
	ok(strlen(labels) < 12, "metric_label: bounded by its buffer");
	/*
	 * A metric's series found by the labels' text, not their address:
	 * the last one used is tried first, and the same buffer holds other
	 * labels from one call to the next.
	 */
	m = metric_new("bsp_test_alternating_total", METRIC_COUNTER, "test");
	for (i = 0; i < 10; i++) {
		metric_label(labels, sizeof labels, "k", i % 3 == 0 ? "a" : "b",
		    NULL);
		metric_add(m, labels, 1);
	}
	is_int((int)value("bsp_test_alternating_total", "k=\"a\""), 4,
	    "series: a, b, b, a, ... counted in their own (a)");
	is_int((int)value("bsp_test_alternating_total", "k=\"b\""), 6,
	    "series: ... and b");
	return (tap_done());
}
