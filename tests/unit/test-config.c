/*
 * test-config.c: layering, every kind of bad value with its file:line, and
 * the secrecy rules.
 */

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "tap.h"

static char	tmpdir[] = "/tmp/bsp-test-config.XXXXXX";

static char *
write_file(const char *name, const char *text, mode_t mode)
{
	char	*path;
	FILE	*f;

	xasprintf(&path, "%s/%s", tmpdir, name);
	if ((f = fopen(path, "w")) == NULL)
		fatal("fopen");
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
	return (path);
}

/* Writable copies: --enable-debug's -Wwrite-strings makes literals const. */
static char env_port[] = "BEDROCK_SERVER__PORT=9000";
static char env_proxies[] = "BEDROCK_SERVER__TRUSTED_PROXIES=10.0.0.0/8, 192.168.0.0/16";
static char env_other[] = "OTHER=1";
static char env_bad_port[] = "BEDROCK_SERVER__PORT=x";
static char env_nope[] = "BEDROCK_NOPE=1";

static struct config *
load(const char *path, char **env, const char *def,
    struct config_errors *errs)
{
	struct config_source	src;
	struct config_define	d;
	char			*eq;

	memset(&src, 0, sizeof src);
	src.path = path;
	src.path_explicit = path != NULL;
	src.check = modules_config_check;
	src.environ = env;
	if (def != NULL) {
		eq = strchr(def, '=');
		d.key = xstrndup(def, (size_t)(eq - def));
		d.value = xstrdup(eq + 1);
		src.defines = &d;
		src.ndefines = 1;
	}
	cfg = config_load(&src, errs);
	if (def != NULL) {
		free(d.key);
		free(d.value);
	}
	return (cfg);
}

/* Does any error carry this where and contain this text? */
static int
has_error(const struct config_errors *errs, const char *where,
    const char *text)
{
	size_t	i;

	for (i = 0; i < errs->n; i++) {
		if ((where == NULL || strcmp(errs->v[i].where, where) == 0) &&
		    strstr(errs->v[i].msg, text) != NULL)
			return (1);
	}
	for (i = 0; i < errs->n; i++)
		diag("  error: %s: %s", errs->v[i].where, errs->v[i].msg);
	return (0);
}

static char *
at(const char *path, int line)
{
	static char	buf[512];

	snprintf(buf, sizeof buf, "%s:%d", path, line);
	return (buf);
}

/* KEY_arn: a secret key read from Secrets Manager (config_source.secrets). */
static void
test_arn(void)
{
	struct config_source	 src;
	struct config_secret	 sv;
	struct config_errors	 errs;
	struct config		*c;
	char			*p, *arn;
	const char		*a = "arn:aws:secretsmanager:eu-west-1:"
				    "111122223333:secret:bsp/jwt-AbCdEf";

	xasprintf(&arn, "%s#hmac", a);
	p = write_file("arn.yaml", "jwt:\n  algorithm: HS256\n"
	    "  secret_arn: arn:aws:secretsmanager:eu-west-1:111122223333:"
	    "secret:bsp/jwt-AbCdEf#hmac\n", 0644);
	memset(&src, 0, sizeof src);
	src.path = p;
	src.path_explicit = 1;
	src.check = modules_config_check;
	src.arn_pending = 1;
	c = config_load(&src, &errs);
	ok(c != NULL && c->narns == 1 && strcmp(c->arns[0].name,
	    "jwt.secret") == 0 && strcmp(c->arns[0].arn, arn) == 0 &&
	    c->jwt_secret != NULL, "jwt.secret_arn listed, a stand-in in "
	    "jwt.secret, a 0644 file holds no secret");
	config_unref(c);
	src.arn_pending = 0;
	c = config_load(&src, &errs);
	ok(c == NULL && has_error(&errs, NULL, "was not read"),
	    "without its value: an error naming the ARN");
	config_errors_free(&errs);
	sv.name = xstrdup("jwt.secret");
	sv.arn = arn;
	sv.value = xstrdup("0123456789abcdef0123456789abcdef-from-sm");
	src.secrets = &sv;
	src.nsecrets = 1;
	c = config_load(&src, &errs);
	ok(c != NULL && strcmp(c->jwt_secret, sv.value) == 0,
	    "the value read is the key's");
	config_unref(c);
	free(sv.value);
	sv.value = xstrdup("short");
	c = config_load(&src, &errs);
	ok(c == NULL && has_error(&errs, NULL, "jwt.secret"),
	    "the value read is checked like the key's");
	config_errors_free(&errs);
	free(p);
	src.secrets = NULL;
	src.nsecrets = 0;
	src.arn_pending = 1;

	p = write_file("arn2.yaml", "jwt:\n  algorithm: HS256\n"
	    "  secret: 0123456789abcdef0123456789abcdef0\n"
	    "  secret_arn: arn:aws:secretsmanager:eu-west-1:111122223333:"
	    "secret:x\naws:\n  access_key_id: AKIDEXAMPLE\n"
	    "  secret_access_key_arn: arn:aws:secretsmanager:eu-west-1:1:"
	    "secret:y\n  bearer_token_arn: arn:aws:kms:eu-west-1:1:key/z\n",
	    0600);
	src.path = p;
	c = config_load(&src, &errs);
	ok(c == NULL && has_error(&errs, at(p, 4), "are both set"),
	    "KEY and KEY_arn exclude each other");
	ok(has_error(&errs, at(p, 7), "cannot come from it"),
	    "aws.secret_access_key has no _arn form");
	ok(has_error(&errs, at(p, 8), "expected the ARN of a Secrets Manager "
	    "secret"), "an ARN of something else is refused");
	config_errors_free(&errs);
	free(p);
	free(arn);
	free(sv.name);
	free(sv.value);
}

int
main(void)
{
	struct config_errors	 errs;
	struct config		*c;
	char			*p, *key;
	char			*env[4] = { NULL, NULL, NULL, NULL };

	if (mkdtemp(tmpdir) == NULL)
		fatal("mkdtemp");

	/* Defaults. */
	c = load(NULL, NULL, NULL, &errs);
	ok(c != NULL, "built-in defaults load");
	is_int(c->server_port, 3000, "default port");
	is_str(c->server_host, "127.0.0.1", "default host");
	is_str(c->server_public_url, "http://127.0.0.1:3000",
	    "public_url derived from the listener");
	is_int(c->to_header, 10, "default header timeout");
	is_int(c->server_max_body_bytes, 26214400, "default body limit");
	is_int(c->metrics_acl.n, 2, "default metrics allow-list");
	config_unref(c);

	/* A file, then environment, then -D: each layer wins. */
	p = write_file("a.yaml", "server:\n  port: 8080\n  timeouts:\n"
	    "    header: 2m\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c != NULL && c->server_port == 8080, "file sets the port");
	ok(c != NULL && c->to_header == 120, "durations take units");
	config_unref(c);
	env[0] = env_port;
	env[1] = env_proxies;
	env[2] = env_other;
	c = load(p, env, NULL, &errs);
	ok(c != NULL && c->server_port == 9000, "environment beats the file");
	ok(c != NULL && c->trusted_proxies.n == 2,
	    "environment lists are comma-separated");
	config_unref(c);
	c = load(p, env, "server.port=9100", &errs);
	ok(c != NULL && c->server_port == 9100, "-D beats the environment");
	config_unref(c);
	env[0] = env[1] = env[2] = NULL;
	free(p);

	/* Every kind of bad value, all in one run, each with its line. */
	p = write_file("bad.yaml",
	    "server:\n"				/* 1 */
	    "  prot: 80\n"			/* 2 */
	    "  port: eighty\n"			/* 3 */
	    "  max_connections: 0\n"		/* 4 */
	    "logging:\n"			/* 5 */
	    "  level: loud\n"			/* 6 */
	    "  access: maybe\n"			/* 7 */
	    "metrics:\n"			/* 8 */
	    "  allow: [10.0.0.0/33]\n"		/* 9 */
	    "  path: [a, b]\n", 0600);		/* 10 */
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL, "a broken file does not load");
	ok(has_error(&errs, at(p, 2), "unknown key \"server.prot\" (did you "
	    "mean \"server.port\"?)"), "unknown key with suggestion at :2");
	ok(has_error(&errs, at(p, 3), "not an integer"), "wrong type at :3");
	ok(has_error(&errs, at(p, 4), "out of range"), "out of range at :4");
	ok(has_error(&errs, at(p, 6), "not one of the allowed values"),
	    "bad enum at :6");
	ok(has_error(&errs, at(p, 7), "not a boolean"), "bad boolean at :7");
	ok(has_error(&errs, at(p, 10), "expected a single value"),
	    "list where a value belongs at :10");
	ok(errs.n >= 6, "all errors reported at once (%zu)", errs.n);
	config_errors_free(&errs);
	free(p);

	/* Cross-key checks after the values are in. */
	p = write_file("cross.yaml", "metrics:\n  allow: [10.0.0.0/33]\n"
	    "server:\n  public_url: ftp://x\n  listen: [\"nope\"]\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, at(p, 2), "not an address or CIDR"),
	    "bad CIDR reported at its line");
	ok(has_error(&errs, at(p, 4), "must start with http"),
	    "bad public_url reported at its line");
	ok(has_error(&errs, at(p, 5), "not host:port"),
	    "bad listener reported at its line");
	config_errors_free(&errs);
	free(p);

	/*
	 * PostgreSQL: every daemon sharing the database is given the same
	 * key-encryption key, jwt.kek_file; with SQLite it may be left out.
	 */
	p = write_file("pg.yaml", "database:\n  url: postgresql://u@h/d\n",
	    0600);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, NULL, "needs jwt.kek_file"),
	    "a PostgreSQL database.url needs jwt.kek_file");
	config_errors_free(&errs);
	free(p);
	{
		char	*kek, *text;

		kek = write_file("kek", "0123456789abcdef0123456789abcdef",
		    0600);
		xasprintf(&text, "database:\n  url: postgresql://u@h/d\njwt:\n"
		    "  kek_file: %s\n", kek);
		p = write_file("pg2.yaml", text, 0600);
		c = load(p, NULL, NULL, &errs);
		ok(c != NULL && c->jwt_kek_file != NULL &&
		    strcmp(c->jwt_kek_file, kek) == 0, "with jwt.kek_file it "
		    "loads");
		config_unref(c);
		free(p);
		free(text);
		chmod(kek, 0644);
		xasprintf(&text, "jwt:\n  kek_file: %s\n", kek);
		p = write_file("kek.yaml", text, 0600);
		c = load(p, NULL, NULL, &errs);
		ok(c == NULL && has_error(&errs, at(p, 2), "chmod 600"),
		    "a jwt.kek_file others can read is refused");
		config_errors_free(&errs);
		free(p);
		free(text);
		unlink(kek);
		free(kek);
	}

	/* YAML-level problems. */
	p = write_file("syntax.yaml", "server:\n  port: [1, 2\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && errs.n >= 1 && strncmp(errs.v[0].where, p,
	    strlen(p)) == 0 && strstr(errs.v[0].msg, "YAML syntax error"),
	    "syntax error with file:line");
	config_errors_free(&errs);
	free(p);
	p = write_file("alias.yaml", "a: &x 1\nserver:\n  port: *x\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, at(p, 3), "aliases"),
	    "aliases are refused");
	config_errors_free(&errs);
	free(p);
	p = write_file("dup.yaml", "server:\n  port: 1\n  port: 2\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, at(p, 3), "duplicate key"),
	    "duplicate keys are refused");
	config_errors_free(&errs);
	free(p);
	p = write_file("list.yaml", "- a\n- b\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, NULL, "top level must be a mapping"),
	    "a top-level list is refused");
	config_errors_free(&errs);
	free(p);
	p = write_file("empty.yaml", "", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c != NULL, "an empty file means defaults");
	config_unref(c);
	free(p);
	p = write_file("json.yaml", "{\"server\": {\"port\": 4000}}", 0644);
	c = load(p, NULL, NULL, &errs);
	ok(c != NULL && c->server_port == 4000, "JSON is accepted");
	config_unref(c);
	free(p);

	/* An explicit null means the default, never a missing value. */
	p = write_file("null.yaml", "server:\n  host: ~\nmetrics:\n  path:\n"
	    "database:\n  url: null\njwt:\n  audience: ~\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c != NULL && strcmp(c->server_host, "127.0.0.1") == 0 &&
	    strcmp(c->metrics_path, "/metrics") == 0 && c->db_path != NULL &&
	    strcmp(c->jwt_audience, "bedrock-sso-proxy") == 0,
	    "null restores the defaults (crash-null-* fuzz seeds)");
	config_unref(c);
	free(p);

	/* Missing files. */
	xasprintf(&p, "%s/missing.yaml", tmpdir);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, p, "cannot open"),
	    "an explicit missing file is an error");
	config_errors_free(&errs);
	{
		struct config_source src;

		memset(&src, 0, sizeof src);
		src.path = p;
		src.path_explicit = 0;
		src.check = modules_config_check;
		c = config_load(&src, &errs);
		ok(c != NULL && c->path == NULL,
		    "a missing default file means built-in defaults");
		config_unref(c);
	}
	free(p);

	/* Environment and -D errors say where they came from. */
	env[0] = env_bad_port;
	c = load(NULL, env, "server.nope=1", &errs);
	ok(c == NULL && has_error(&errs, "environment BEDROCK_SERVER__PORT",
	    "not an integer"), "environment errors name the variable");
	ok(has_error(&errs, "-D server.nope", "unknown key"),
	    "-D errors name the flag");
	config_errors_free(&errs);
	env[0] = env_nope;
	c = load(NULL, env, NULL, &errs);
	ok(c == NULL && has_error(&errs, "environment BEDROCK_NOPE",
	    "unknown key \"nope\""), "unknown BEDROCK_ variables are errors");
	config_errors_free(&errs);
	env[0] = NULL;

	/* A TLS key readable by others is refused. */
	key = write_file("key.pem", "x", 0644);
	xasprintf(&p, "server:\n  tls:\n    cert_file: %s\n    key_file: %s\n",
	    key, key);
	free(key);
	key = write_file("tls.yaml", p, 0600);
	free(p);
	c = load(key, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, at(key, 4), "readable by group or "
	    "others"), "world-readable TLS key refused at its line");
	config_errors_free(&errs);
	free(key);
	p = write_file("half.yaml", "server:\n  tls:\n    cert_file: /etc/"
	    "hostname\n", 0600);
	c = load(p, NULL, NULL, &errs);
	ok(c == NULL && has_error(&errs, NULL, "must be set together"),
	    "certificate without key refused");
	config_errors_free(&errs);
	free(p);

	/* The effective configuration prints without secrets. */
	p = write_file("print.yaml", "server:\n  port: 1234\n", 0600);
	c = load(p, NULL, NULL, &errs);
	{
		char	*buf = NULL;
		size_t	 len = 0;
		FILE	*f = open_memstream(&buf, &len);

		config_print(c, f);
		fclose(f);
		ok(strstr(buf, "server.port: 1234\n") != NULL,
		    "config_print shows values");
		ok(strstr(buf, "logging.level: info\n") != NULL,
		    "config_print shows defaults");
		free(buf);
	}
	config_unref(c);
	unlink(p);
	free(p);
	test_arn();

	{
		char *cmd;
		xasprintf(&cmd, "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			diag("cleanup failed");
		free(cmd);
	}
	return (tap_done());
}
