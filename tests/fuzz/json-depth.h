/*
 * json-depth.h: the nesting of a jansson value, for the fuzz targets'
 * oracles (a scalar is 0, {} and [] are 1).
 */

#ifndef FUZZ_JSON_DEPTH_H
#define FUZZ_JSON_DEPTH_H

#include <jansson.h>

static int
fz_depth(json_t *j)
{
	const char	*k;
	json_t		*v;
	size_t		 i;
	int		 d, max = 0;

	if (json_is_object(j)) {
		json_object_foreach(j, k, v) {
			if ((d = fz_depth(v)) > max)
				max = d;
		}
		return (max + 1);
	}
	if (json_is_array(j)) {
		json_array_foreach(j, i, v) {
			if ((d = fz_depth(v)) > max)
				max = d;
		}
		return (max + 1);
	}
	return (0);
}

#endif
