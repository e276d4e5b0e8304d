/*
 * client-setup.c: "setup claude-code", Claude Code's settings for the
 * signed-in proxy, merged into ~/.claude/settings.json (or
 * $CLAUDE_CONFIG_DIR/settings.json) with a backup of what was there, or
 * printed with --print.
 *
 *   anthropic  (the default) ANTHROPIC_BASE_URL is the proxy and
 *              apiKeyHelper is "bedrock-sso-proxy token": Claude Code
 *              asks this program for a token, which refreshes itself.
 *   bedrock    Claude Code's Bedrock mode toward the local relay
 *              (bedrock-sso-proxy relay), which adds the token:
 *              CLAUDE_CODE_USE_BEDROCK, ANTHROPIC_BEDROCK_BASE_URL (the
 *              relay's URL, whose path is the user's relay secret),
 *              CLAUDE_CODE_SKIP_BEDROCK_AUTH; the settings file is then
 *              made 0600.
 * No token is written: it stays with this program. A settings file that
 * is a symbolic link is followed, and the file it points to is updated.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __APPLE__
#include <mach-o/dyld.h>
#endif

#include "bsp.h"
#include "client.h"

#define SETUP_SETTINGS_MAX	(4 * 1024 * 1024)
#define SETUP_RELAY_DEFAULT	CLIENT_RELAY_DEFAULT

/* Keys that would override or contradict what a mode sets. */
static const char *const setup_drop_anthropic[] = {
	"ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK",
	"ANTHROPIC_BEDROCK_BASE_URL", "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
	"AWS_BEARER_TOKEN_BEDROCK", NULL,
};
static const char *const setup_drop_bedrock[] = {
	"ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY",
	"AWS_BEARER_TOKEN_BEDROCK", NULL,
};

/* This program's own path, for the helper command. */
static char *
setup_self(void)
{
	char	buf[PATH_MAX], *r;

#ifdef __APPLE__
	uint32_t	len = sizeof buf;

	if (_NSGetExecutablePath(buf, &len) == 0 &&
	    (r = realpath(buf, NULL)) != NULL)
		return (r);
#else
	if ((r = realpath("/proc/self/exe", NULL)) != NULL)
		return (r);
#endif
	(void)buf;
	return (xstrdup(BSP_NAME));
}

/* A word for sh -c: as it is if plain, else in single quotes. */
static char *
setup_shell_word(const char *w)
{
	const char	*p;
	char		*out, *o;

	if (strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789/._-+:,@%") == strlen(w))
		return (xstrdup(w));
	out = o = xmalloc(4 * strlen(w) + 3);
	*o++ = '\'';
	for (p = w; *p != '\0'; p++) {
		if (*p == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else
			*o++ = *p;
	}
	*o++ = '\'';
	*o = '\0';
	return (out);
}

/* Where Claude Code keeps its user settings. */
static char *
setup_settings_path(char **dir)
{
	const char	*c = getenv("CLAUDE_CONFIG_DIR"), *h = getenv("HOME");
	char		*p;

	if (c != NULL && c[0] == '/')
		*dir = xstrdup(c);
	else if (h != NULL && h[0] == '/')
		xasprintf(dir, "%s/.claude", h);
	else
		return (NULL);
	xasprintf(&p, "%s/settings.json", *dir);
	return (p);
}

/* The fragment a mode adds: {"env":{...}, "apiKeyHelper"?}. */
static json_t *
setup_fragment(const struct client_session *s, int bedrock, const char *relay,
    const char *secret)
{
	json_t	*f = json_object(), *env = json_object();
	char	*self, *word, *helper, *u;

	if (bedrock) {
		xasprintf(&u, "http://%s/%s", relay, secret);
		json_object_set_new(env, "CLAUDE_CODE_USE_BEDROCK",
		    json_string("1"));
		json_object_set_new(env, "ANTHROPIC_BEDROCK_BASE_URL",
		    json_string(u));
		json_object_set_new(env, "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
		    json_string("1"));
		freezero_str(u);
		json_object_set_new(f, "env", env);
		return (f);
	}
	self = setup_self();
	word = setup_shell_word(self);
	if (strcmp(s->profile, CLIENT_PROFILE_DEFAULT) == 0)
		xasprintf(&helper, "%s token", word);
	else
		xasprintf(&helper, "%s token --profile %s", word, s->profile);
	json_object_set_new(env, "ANTHROPIC_BASE_URL", json_string(s->proxy));
	json_object_set_new(f, "env", env);
	json_object_set_new(f, "apiKeyHelper", json_string(helper));
	free(helper);
	free(word);
	free(self);
	return (f);
}

/*
 * The file to update: path itself, or the file a symbolic link there
 * points to (*path is replaced by it). 0, or -1 with *cause.
 */
static int
setup_target(char **path, char **cause)
{
	struct stat	 st;
	char		*r;

	if (lstat(*path, &st) == -1 || !S_ISLNK(st.st_mode))
		return (0);
	if ((r = realpath(*path, NULL)) == NULL) {
		xasprintf(cause, "%s is a symbolic link to nothing usable (%s); "
		    "nothing was changed", *path, strerror(errno));
		return (-1);
	}
	if (stat(r, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_uid != getuid()) {
		xasprintf(cause, "%s is a symbolic link to %s, which is not a "
		    "regular file of yours; nothing was changed", *path, r);
		free(r);
		return (-1);
	}
	fprintf(stderr, "%s is a symbolic link: updating the file it points "
	    "to, %s.\n", *path, r);
	free(*path);
	*path = r;
	return (0);
}

/* Read the settings file: a JSON object, {} if there is none. */
static json_t *
setup_read(const char *path, mode_t *mode, int *exists, char **cause)
{
	struct stat	 st;
	json_error_t	 je;
	json_t		*j;

	*exists = 0;
	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return (json_object());
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	if (!S_ISREG(st.st_mode) || st.st_size > SETUP_SETTINGS_MAX) {
		xasprintf(cause, "%s is not a settings file (not a regular file, "
		    "or larger than %d bytes); nothing was changed", path,
		    SETUP_SETTINGS_MAX);
		return (NULL);
	}
	*exists = 1;
	*mode = st.st_mode & 0777;
	if ((j = json_load_file(path, JSON_REJECT_DUPLICATES, &je)) == NULL ||
	    !json_is_object(j)) {
		/* Not je.text: it quotes the file, which may hold secrets. */
		if (j == NULL)
			xasprintf(cause, "%s is not a JSON object (not JSON: "
			    "line %d, column %d); nothing was changed: fix or "
			    "move it, then run this again", path, je.line,
			    je.column);
		else
			xasprintf(cause, "%s is not a JSON object (another JSON "
			    "value); nothing was changed: fix or move it, then "
			    "run this again", path);
		json_decref(j);
		return (NULL);
	}
	if (json_object_get(j, "env") != NULL &&
	    !json_is_object(json_object_get(j, "env"))) {
		xasprintf(cause, "%s: \"env\" is not an object; nothing was "
		    "changed: fix it, then run this again", path);
		json_decref(j);
		return (NULL);
	}
	return (j);
}

/* Copy path to a new backup beside it; *backup is its name. */
static int
setup_backup(const char *path, char **backup, char **cause)
{
	struct tm	 tm;
	time_t		 now = time(NULL);
	char		 stamp[32], buf[8192];
	ssize_t		 n;
	int		 in, out = -1, i;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
	if ((in = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	for (i = 0; i < 100 && out == -1; i++) {
		free(*backup);
		if (i == 0)
			xasprintf(backup, "%s.%s.bak", path, stamp);
		else
			xasprintf(backup, "%s.%s-%d.bak", path, stamp, i);
		out = open(*backup, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0600);
		if (out == -1 && errno != EEXIST)
			break;
	}
	if (out == -1) {
		xasprintf(cause, "cannot make a backup %s: %s", *backup,
		    strerror(errno));
		close(in);
		return (-1);
	}
	while ((n = read(in, buf, sizeof buf)) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	}
	if (n == -1 || fsync(out) == -1 || close(out) == -1) {
		xasprintf(cause, "cannot write the backup %s: %s", *backup,
		    strerror(errno));
		close(in);
		unlink(*backup);
		return (-1);
	}
	close(in);
	return (0);
}

/*
 * Write the settings: a new file (a random name, created exclusively)
 * flushed and renamed over the old one, then the directory flushed.
 */
static int
setup_write(const char *path, json_t *j, mode_t mode, char **cause)
{
	char	*text, *tmp, rnd[17], *d, *slash;
	size_t	 len;
	int	 fd, rc = -1;

	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (text == NULL)
		fatalx("%s: json_dumps", __func__);
	len = strlen(text);
	random_id(rnd, sizeof rnd);
	xasprintf(&tmp, "%s.%s.tmp", path, rnd);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		xasprintf(cause, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fchmod(fd, mode) == -1 || fsync(fd) == -1) {
		xasprintf(cause, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		xasprintf(cause, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	d = xstrdup(path);
	if ((slash = strrchr(d, '/')) != NULL) {
		*slash = '\0';
		if ((fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
			(void)fsync(fd);
			close(fd);
		}
	}
	free(d);
	rc = 0;
out:
	free(tmp);
	free(text);
	return (rc);
}

static int
setup_usage(void)
{
	fprintf(stderr, "usage: %s setup claude-code [--profile NAME] [--mode "
	    "anthropic|bedrock] [--relay ADDRESS:PORT] [--print]\n", BSP_NAME);
	return (CLIENT_EXIT_USAGE);
}

/* setup claude-code [--profile P] [--mode M] [--relay A:P] [--print] */
int
client_cmd_setup_claude_code(int argc, char **argv)
{
	static const struct option	 opts[] = {
		{ "profile", required_argument, NULL, 1 },
		{ "mode", required_argument, NULL, 2 },
		{ "relay", required_argument, NULL, 3 },
		{ "print", no_argument, NULL, 4 },
		{ NULL, 0, NULL, 0 },
	};
	struct client_opts		 o = { CLIENT_PROFILE_DEFAULT };
	struct client_session		 s;
	const char			*mode = "anthropic";
	const char			*relay = SETUP_RELAY_DEFAULT;
	const char *const		*drop;
	const char			*key;
	json_t				*frag, *cur = NULL, *env, *v;
	struct strlist			 removed = { NULL, 0 };
	char				*path = NULL, *dir = NULL, *backup = NULL;
	char				*cause = NULL, *text, *h, *p;
	char				*secret = NULL;
	mode_t				 fmode = 0600;
	int				 ch, print = 0, bedrock, exists, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (ch) {
		case 1:
			o.profile = optarg;
			break;
		case 2:
			mode = optarg;
			break;
		case 3:
			relay = optarg;
			break;
		case 4:
			print = 1;
			break;
		default:
			return (setup_usage());
		}
	}
	if (argc != optind || (strcmp(mode, "anthropic") != 0 &&
	    strcmp(mode, "bedrock") != 0))
		return (setup_usage());
	bedrock = strcmp(mode, "bedrock") == 0;
	if (hostport_split(relay, &h, &p) == -1 || !url_is_loopback_host(h)) {
		fprintf(stderr, "%s: --relay %s: a loopback ADDRESS:PORT, as "
		    "the relay listens on\n", BSP_NAME, relay);
		free(h);
		free(p);
		return (CLIENT_EXIT_USAGE);
	}
	free(h);
	free(p);
	memset(&s, 0, sizeof s);
	if ((rc = client_session_load(&o, &s)) != CLIENT_EXIT_OK) {
		client_session_clear(&s);
		return (rc);
	}
	if (bedrock && client_relay_secret(&secret, 1, &cause) != 0) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		client_session_clear(&s);
		return (CLIENT_EXIT_LOCAL);
	}
	frag = setup_fragment(&s, bedrock, relay, secret);
	if (print) {
		text = json_dumps(frag, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("%s\n", text);
		free(text);
		rc = CLIENT_EXIT_OK;
		goto out;
	}
	rc = CLIENT_EXIT_LOCAL;
	if ((path = setup_settings_path(&dir)) == NULL) {
		fprintf(stderr, "%s: cannot tell where Claude Code's settings "
		    "are: set HOME\n", BSP_NAME);
		goto out;
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		fprintf(stderr, "%s: cannot create %s: %s\n", BSP_NAME, dir,
		    strerror(errno));
		goto out;
	}
	if (setup_target(&path, &cause) == -1 ||
	    (cur = setup_read(path, &fmode, &exists, &cause)) == NULL)
		goto fail;
	/* The relay's URL holds its secret: for the user's eyes only. */
	if (bedrock)
		fmode &= 0700;
	if ((env = json_object_get(cur, "env")) == NULL) {
		env = json_object();
		json_object_set_new(cur, "env", env);
	}
	for (drop = bedrock ? setup_drop_bedrock : setup_drop_anthropic;
	    *drop != NULL; drop++) {
		if (json_object_get(env, *drop) != NULL) {
			strlist_add(&removed, *drop);
			json_object_del(env, *drop);
		}
	}
	json_object_foreach(json_object_get(frag, "env"), key, v)
		json_object_set(env, key, v);
	if (bedrock) {
		v = json_object_get(cur, "apiKeyHelper");
		if (json_is_string(v) && strstr(json_string_value(v),
		    BSP_NAME) != NULL) {
			strlist_add(&removed, "apiKeyHelper");
			json_object_del(cur, "apiKeyHelper");
		}
		if (json_object_get(env, "AWS_REGION") == NULL)
			json_object_set_new(env, "AWS_REGION",
			    json_string("us-east-1"));
	} else
		json_object_set(cur, "apiKeyHelper",
		    json_object_get(frag, "apiKeyHelper"));
	if (exists && setup_backup(path, &backup, &cause) == -1)
		goto fail;
	if (setup_write(path, cur, fmode, &cause) == -1)
		goto fail;
	fprintf(stderr, "Updated %s for the proxy at %s (%s mode)%s%s.\n", path,
	    s.proxy, mode, backup != NULL ? "; the old file is in " : "",
	    backup != NULL ? backup : "");
	if (removed.n > 0) {
		text = strlist_join(&removed, ", ");
		fprintf(stderr, "Removed what would have overridden it: %s.\n",
		    text);
		free(text);
	}
	if (bedrock)
		fprintf(stderr, "Claude Code now goes through the relay at "
		    "http://%s: keep \"%s relay%s%s\" running.\n", relay,
		    BSP_NAME, strcmp(relay, SETUP_RELAY_DEFAULT) != 0 ?
		    " --listen " : "", strcmp(relay, SETUP_RELAY_DEFAULT) !=
		    0 ? relay : "");
	else
		fprintf(stderr, "Claude Code now asks \"%s token\" for its "
		    "token; run claude.\n", BSP_NAME);
	rc = CLIENT_EXIT_OK;
	goto out;
fail:
	fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
	free(cause);
out:
	strlist_free(&removed);
	json_decref(frag);
	json_decref(cur);
	free(path);
	free(dir);
	free(backup);
	freezero_str(secret);
	client_session_clear(&s);
	return (rc);
}
