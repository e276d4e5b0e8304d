/*
 * replay.c: run a libFuzzer target over saved inputs without libFuzzer.
 *
 * "make check" builds each fuzz target with this main() and the ordinary
 * compiler, and feeds it its seed corpus: every file named on the command
 * line, and every regular file in a directory named there (sorted, dot
 * files skipped). With no arguments it replays REPLAY_CORPUS, set at build
 * time or in the environment. Each input is copied into a buffer of exactly
 * its size so that the sanitizers catch reads past the end. The output is
 * TAP, one line per input; a crash or a failed oracle aborts the program.
 * Finding no input at all is a failure: a guard that cannot find its input
 * fails.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_MAX	(4 * 1024 * 1024)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	replay_file(const char *);
static int	replay_path(const char *, int);

static size_t	replay_count;

/* Feed one file to the target; -1 if it cannot be read. */
static int
replay_file(const char *path)
{
	FILE	*f;
	uint8_t	*buf;
	long	 size;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	if (fseek(f, 0, SEEK_END) == -1 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) == -1) {
		fprintf(stderr, "replay: %s: cannot size\n", path);
		fclose(f);
		return (-1);
	}
	if (size > REPLAY_MAX) {
		fprintf(stderr, "replay: %s: larger than %d bytes\n", path,
		    REPLAY_MAX);
		fclose(f);
		return (-1);
	}
	if ((buf = malloc(size == 0 ? 1 : (size_t)size)) == NULL) {
		fprintf(stderr, "replay: out of memory\n");
		fclose(f);
		return (-1);
	}
	if (size != 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
		fprintf(stderr, "replay: %s: short read\n", path);
		free(buf);
		fclose(f);
		return (-1);
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)size);
	free(buf);
	printf("ok %zu - %s\n", ++replay_count, path);
	fflush(stdout);
	return (0);
}

static int
replay_path(const char *path, int top)
{
	struct dirent	**names;
	struct stat	  st;
	char		 *sub;
	size_t		  len;
	int		  i, n, ret = 0;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	if (S_ISREG(st.st_mode))
		return (replay_file(path));
	if (!S_ISDIR(st.st_mode) || !top) {
		if (top)
			fprintf(stderr, "replay: %s: not a file or a"
			    " directory\n", path);
		return (top ? -1 : 0);
	}
	if ((n = scandir(path, &names, NULL, alphasort)) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	for (i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' && ret == 0) {
			len = strlen(path) + strlen(names[i]->d_name) + 2;
			if ((sub = malloc(len)) == NULL) {
				ret = -1;
			} else {
				snprintf(sub, len, "%s/%s", path,
				    names[i]->d_name);
				if (replay_path(sub, 0) == -1)
					ret = -1;
				free(sub);
			}
		}
		free(names[i]);
	}
	free(names);
	return (ret);
}

int
main(int argc, char **argv)
{
	const char	*dflt = NULL;
	int		 i, ret = 0;

#ifdef REPLAY_CORPUS
	dflt = REPLAY_CORPUS;
#endif
	if (getenv("REPLAY_CORPUS") != NULL)
		dflt = getenv("REPLAY_CORPUS");
	if (argc < 2) {
		if (dflt == NULL) {
			fprintf(stderr, "usage: %s file|directory ...\n",
			    argv[0]);
			return (2);
		}
		ret = replay_path(dflt, 1);
	}
	for (i = 1; i < argc; i++) {
		if (replay_path(argv[i], 1) == -1)
			ret = -1;
	}
	if (ret != 0 || replay_count == 0) {
		printf("not ok %zu - %s\n", ++replay_count, ret != 0 ?
		    "some inputs could not be read" : "no inputs found");
		ret = -1;
	}
	printf("1..%zu\n", replay_count);
	return (ret == 0 ? 0 : 1);
}
