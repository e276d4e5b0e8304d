/*
 * fuzz-config.c: libFuzzer target for the configuration loader.
 *
 * config_load() reads only files, so each input is written to a file in a
 * fresh private directory (mode 0600, or 0644 for inputs whose bytes add
 * up to an odd number, so that inline secrets in a readable file are
 * refused), loaded with path_explicit set, and removed again. The same
 * bytes (up to a NUL) are then given without a file: as the value of one
 * -D key (the key chosen by the first byte from the keyword table,
 * collections with an element), as an arbitrary "-D key=value" split at
 * the first '=', as a BEDROCK_* variable for the chosen key, as an
 * arbitrary BEDROCK_ variable, and as AWS_REGION. A configuration that
 * loaded must have listeners, a public URL and a database path. Oracles
 * that abort: a load gives a configuration or errors, never both and
 * never neither; every error has a place and a message; a configuration
 * that loaded prints. Everything is freed.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "crypto.h"

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fz_init(void);
static void	 fz_file(const uint8_t *, size_t);
static void	 fz_load(const struct config_source *);
static char	*fz_key(uint8_t);
static char	*fz_env_name(const char *);

static FILE	*fz_null;

static void
fz_init(void)
{
	if (crypto_init() == -1)
		abort();
	if ((fz_null = fopen("/dev/null", "w")) == NULL)
		abort();
}

static void
fz_load(const struct config_source *src)
{
	struct config_errors	 errs;
	struct config		*c;
	size_t			 i;

	c = config_load(src, &errs);
	if ((c == NULL) != (errs.n != 0))
		abort();
	for (i = 0; i < errs.n; i++) {
		if (errs.v[i].where == NULL || errs.v[i].msg == NULL ||
		    *errs.v[i].msg == '\0')
			abort();
	}
	config_errors_print(&errs, fz_null);
	config_errors_free(&errs);
	if (c != NULL) {
		if (c->refcnt != 1 || c->nlisten == 0 ||
		    c->server_public_url == NULL || c->db_path == NULL)
			abort();
		config_print(c, fz_null);
		config_unref(config_ref(c));
		config_unref(c);
	}
}

/* Load the bytes from a file in a directory made for it. */
static void
fz_file(const uint8_t *data, size_t size)
{
	struct config_source	 src;
	char			 dir[] = "/tmp/bsp-fuzz-config.XXXXXX";
	char			 path[sizeof dir + 16], *env[1] = { NULL };
	unsigned int		 sum = 0;
	size_t			 i, off;
	ssize_t			 n;
	int			 fd;

	for (i = 0; i < size; i++)
		sum += data[i];
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof path, "%s/config.yaml", dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) == -1 || fchmod(fd, (sum & 1) ? 0644 : 0600) == -1)
		abort();
	for (off = 0; off < size; off += (size_t)n) {
		if ((n = write(fd, data + off, size - off)) <= 0)
			abort();
	}
	close(fd);
	memset(&src, 0, sizeof src);
	src.path = path;
	src.path_explicit = 1;
	src.check = modules_config_check;
	src.environ = env;
	fz_load(&src);
	if (unlink(path) == -1 || rmdir(dir) == -1)
		abort();
}

/* A key from the table; "*" names a preset provider, "[]" element 0. */
static char *
fz_key(uint8_t b)
{
	static const char *const	 names[] = {
		"google", "github", "microsoft", "gitlab", "auth0", "okta",
		"cognito", "custom"
	};
	const char			*k = config_keys[b % config_nkeys].name;
	char				*out, *star, *br;

	if ((star = strstr(k, ".*.")) != NULL)
		xasprintf(&out, "%.*s.%s%s", (int)(star - k), k,
		    names[(b / config_nkeys) % nitems(names)], star + 2);
	else if ((br = strstr(k, "[].")) != NULL)
		xasprintf(&out, "%.*s.0%s", (int)(br - k), k, br + 2);
	else
		out = xstrdup(k);
	return (out);
}

/* server.tls.cert_file -> BEDROCK_SERVER__TLS__CERT_FILE */
static char *
fz_env_name(const char *key)
{
	char	*out, *o;

	out = o = xmalloc(8 + 2 * strlen(key) + 1);
	memcpy(o, "BEDROCK_", 8);
	o += 8;
	for (; *key != '\0'; key++) {
		if (*key == '.') {
			*o++ = '_';
			*o++ = '_';
		} else
			*o++ = (char)toupper((unsigned char)*key);
	}
	*o = '\0';
	return (out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_source	 src;
	struct config_define	 def[2];
	char			*env[4], *v, *key, *ename, *eq;
	size_t			 i;

	if (fz_null == NULL)
		fz_init();
	if (size > 256 * 1024)
		return (0);

	/* 1: the bytes as the configuration file. */
	fz_file(data, size);

	/* 2: the value of one -D key; 3: an arbitrary -D key=value. */
	env[0] = NULL;
	v = xmemdup0(data, size);
	key = fz_key(size > 0 ? data[0] : 0);
	memset(&src, 0, sizeof src);
	src.check = modules_config_check;
	src.environ = env;
	def[0].key = key;
	def[0].value = v;
	src.defines = def;
	src.ndefines = 1;
	fz_load(&src);
	if ((eq = strchr(v, '=')) != NULL && eq != v) {
		def[1].key = xstrndup(v, (size_t)(eq - v));
		def[1].value = eq + 1;
		src.defines = &def[1];
		fz_load(&src);
		free(def[1].key);
	}

	/* 4: the environment: the chosen key, BEDROCK_<bytes>, AWS_REGION. */
	ename = fz_env_name(key);
	xasprintf(&env[0], "%s=%s", ename, v);
	xasprintf(&env[1], "BEDROCK_%s", v);
	xasprintf(&env[2], "AWS_REGION=%s", v);
	env[3] = NULL;
	memset(&src, 0, sizeof src);
	src.check = modules_config_check;
	src.environ = env;
	fz_load(&src);
	for (i = 0; i < 3; i++)
		free(env[i]);
	free(ename);
	free(key);
	free(v);
	return (0);
}
