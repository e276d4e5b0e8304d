/*
 * cmd-print.c: how the administrative commands print their tables, one
 * cell at a time. Below cmd.c and every cmd-*.c: the command table in
 * cmd.c names the commands, and they all print through here.
 */

#include <stdio.h>
#include <string.h>

#include "bsp.h"

/*
 * One cell of a table on stdout: s (NULL prints "-"), text from the
 * database or an IdP, with anything that could drive the terminal
 * escaped, left-aligned in width columns (0: as it is), then sep.
 */
void
cmd_cell(const char *s, int width, const char *sep)
{
	char	esc[512];

	if (s == NULL)
		s = "-";
	log_escape(s, strlen(s), esc, sizeof esc);
	printf("%-*s%s", width, esc, sep);
}
