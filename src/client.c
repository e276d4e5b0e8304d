/*
 * client.c: where the laptop client keeps its sessions, and how: the
 * directory (XDG or macOS), profiles, session files read with their
 * ownership and mode checked and replaced atomically, the profile's lock,
 * and when an access token is due for a refresh. No network here
 * (client-net.c).
 */

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bsp.h"
#include "client.h"
#include "crypto.h"

/* A file's modification time as a timespec (macOS names it otherwise). */
#ifdef __APPLE__
#define CLIENT_MTIM(st)	((st).st_mtimespec)
#else
#define CLIENT_MTIM(st)	((st).st_mtim)
#endif

static int	client_mkdirs(const char *, char **);
static void	client_check_open(const char *, int, mode_t, char **);
static int	client_session_read_mode(struct client_session *, int,
		    char **);

/* Profile names: [A-Za-z0-9_-], 1 to 64 characters. */
int
client_profile_ok(const char *p)
{
	size_t	i, n = strlen(p);

	if (n == 0 || n > CLIENT_PROFILE_MAX)
		return (0);
	for (i = 0; i < n; i++) {
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' &&
		    p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') ||
		    p[i] == '_' || p[i] == '-'))
			return (0);
	}
	return (1);
}

/*
 * The client directory for a home directory and XDG_CONFIG_HOME (NULL or
 * empty if unset; a relative one is ignored, as the XDG specification
 * says): $XDG_CONFIG_HOME/bedrock-sso-proxy, else on macOS
 * ~/Library/Application Support/bedrock-sso-proxy, else
 * ~/.config/bedrock-sso-proxy.
 */
char *
client_dir_default(const char *home, const char *xdg, int macos)
{
	char	*d;

	if (xdg != NULL && xdg[0] == '/')
		xasprintf(&d, "%s/%s", xdg, CLIENT_DIR_NAME);
	else if (macos)
		xasprintf(&d, "%s/Library/Application Support/%s", home,
		    CLIENT_DIR_NAME);
	else
		xasprintf(&d, "%s/.config/%s", home, CLIENT_DIR_NAME);
	return (d);
}

/* The user's home: $HOME, else the password database. */
static const char *
client_home(void)
{
	const char	*h = getenv("HOME");
	struct passwd	*pw;

	if (h != NULL && h[0] == '/')
		return (h);
	if ((pw = getpwuid(getuid())) != NULL && pw->pw_dir != NULL)
		return (pw->pw_dir);
	return (NULL);
}

/*
 * Refuse a file or directory that another user owns or others may read:
 * the message names the path and the fix.
 */
int
client_check_file(int fd, const char *path, int dir, char **cause)
{
	struct stat	st;

	if (fstat(fd, &st) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (st.st_uid != getuid()) {
		xasprintf(cause, "%s belongs to user id %lu, not to you (%lu): "
		    "it is not used; remove it%s, or give it to yourself "
		    "(chown)", path, (unsigned long)st.st_uid,
		    (unsigned long)getuid(), dir ? " and sign in again" : "");
		return (-1);
	}
	if (dir && !S_ISDIR(st.st_mode)) {
		xasprintf(cause, "%s is not a directory: move it away", path);
		return (-1);
	}
	if (!dir && !S_ISREG(st.st_mode)) {
		xasprintf(cause, "%s is not a regular file: remove it", path);
		return (-1);
	}
	if ((st.st_mode & 077) != 0) {
		client_check_open(path, dir, st.st_mode, cause);
		return (-1);
	}
	return (0);
}

/*
 * The refusal of a file others may read: a directory is closed with
 * chmod; a file's secrets may have been read, so chmod is no remedy: a
 * session is ended on the proxy by logout (which reads it all the same),
 * anything else is removed and made anew.
 */
static void
client_check_open(const char *path, int dir, mode_t mode, char **cause)
{
	size_t	len = strlen(path);

	if (dir)
		xasprintf(cause, "%s is open to other users (mode %04o), so it "
		    "is not used: chmod 700 %s", path, (unsigned)(mode & 07777),
		    path);
	else if (len > 5 && strcmp(path + len - 5, ".json") == 0)
		xasprintf(cause, "%s is open to other users (mode %04o), so it "
		    "is not used: its tokens may have been read; end the "
		    "session with \"%s logout\" (its --profile too) and sign "
		    "in again", path, (unsigned)(mode & 07777), BSP_NAME);
	else
		xasprintf(cause, "%s is open to other users (mode %04o), so it "
		    "is not used: remove it (a new one is made)", path,
		    (unsigned)(mode & 07777));
}

/* mkdir -p for the parents of path, each new one 0700. */
static int
client_mkdirs(const char *path, char **cause)
{
	char	*p = xstrdup(path), *s;

	for (s = p + 1; (s = strchr(s, '/')) != NULL; s++) {
		*s = '\0';
		if (mkdir(p, 0700) == -1 && errno != EEXIST) {
			xasprintf(cause, "cannot create %s: %s", p,
			    strerror(errno));
			free(p);
			return (-1);
		}
		*s = '/';
	}
	free(p);
	return (0);
}

/*
 * The client directory, checked (ours, 0700); with create, made first
 * (and its parents) if missing.
 */
int
client_dir(char **out, int create, char **cause)
{
	const char	*home = client_home();
	char		*d;
	int		 fd;

	*out = NULL;
	if (home == NULL && (getenv("XDG_CONFIG_HOME") == NULL ||
	    getenv("XDG_CONFIG_HOME")[0] != '/')) {
		xasprintf(cause, "cannot tell where your home directory is: "
		    "set HOME");
		return (-1);
	}
#ifdef __APPLE__
	d = client_dir_default(home, getenv("XDG_CONFIG_HOME"), 1);
#else
	d = client_dir_default(home, getenv("XDG_CONFIG_HOME"), 0);
#endif
	if (create) {
		if (client_mkdirs(d, cause) == -1) {
			free(d);
			return (-1);
		}
		if (mkdir(d, 0700) == -1 && errno != EEXIST) {
			xasprintf(cause, "cannot create %s: %s", d,
			    strerror(errno));
			free(d);
			return (-1);
		}
	}
	if ((fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			xasprintf(cause, "no %s", d);
		else
			xasprintf(cause, "%s: %s", d, strerror(errno));
		free(d);
		return (errno == ENOENT ? -2 : -1);
	}
	if (client_check_file(fd, d, 1, cause) == -1) {
		close(fd);
		free(d);
		return (-1);
	}
	close(fd);
	*out = d;
	return (0);
}

/*
 * The session and lock paths of a profile. Returns 0, -2 when the
 * directory does not exist (and create is 0), -1 with *cause.
 */
int
client_session_paths(struct client_session *s, const char *profile,
    int create, char **cause)
{
	char	*d;
	int	 rc;

	memset(s, 0, sizeof *s);
	s->profile = xstrdup(profile);
	if ((rc = client_dir(&d, create, cause)) != 0)
		return (rc);
	xasprintf(&s->path, "%s/%s.json", d, profile);
	xasprintf(&s->lock_path, "%s/%s.lock", d, profile);
	free(d);
	return (0);
}

/*
 * A time member: an integer from 0 to CLIENT_TIME_MAX (so that sums and
 * differences of two cannot overflow), or absent unless required.
 */
static int
client_json_time(const json_t *o, const char *key, int required)
{
	const json_t	*v = json_object_get(o, key);

	if (v == NULL)
		return (!required);
	return (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= CLIENT_TIME_MAX);
}

/* A string member, copied, or NULL. */
static char *
client_json_strdup(const json_t *o, const char *key)
{
	const char	*v = json_string_value(json_object_get(o, key));

	return (v != NULL ? xstrdup(v) : NULL);
}

/*
 * Read the session file into s (whose paths are set). Returns 0, -2 if
 * there is none, -1 with *cause (refused, unreadable or corrupt).
 */
int
client_session_read(struct client_session *s, char **cause)
{
	return (client_session_read_mode(s, 0, cause));
}

/*
 * The same for logout, which must end a session whose file others could
 * read: the user's own regular file is read whatever its mode. *open is
 * set when its mode lets others read it.
 */
int
client_session_read_any_mode(struct client_session *s, int *open,
    char **cause)
{
	struct stat	st;
	int		rc;

	*open = 0;
	if ((rc = client_session_read_mode(s, 1, cause)) == 0 &&
	    lstat(s->path, &st) == 0 && (st.st_mode & 077) != 0)
		*open = 1;
	return (rc);
}

static int
client_session_read_mode(struct client_session *s, int any_mode,
    char **cause)
{
	struct stat	 st;
	json_error_t	 je;
	json_t		*j = NULL;
	char		*buf = NULL, *base = NULL;
	ssize_t		 n;
	size_t		 len = 0;
	int		 fd, rc = -1;
	json_int_t	 v;
	uint8_t		 pinbuf[32];

	if ((fd = open(s->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return (-2);
		if (errno == ELOOP)
			xasprintf(cause, "%s is a symbolic link, so it is not "
			    "used: remove it and sign in again", s->path);
		else
			xasprintf(cause, "cannot read %s: %s", s->path,
			    strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1) {
		xasprintf(cause, "%s: %s", s->path, strerror(errno));
		goto out;
	}
	if (!any_mode || st.st_uid != getuid() || !S_ISREG(st.st_mode)) {
		if (client_check_file(fd, s->path, 0, cause) == -1)
			goto out;
	}
	if (st.st_size > CLIENT_SESSION_MAX) {
		xasprintf(cause, "%s is not a session file (larger than %d "
		    "bytes): remove it and sign in again", s->path,
		    CLIENT_SESSION_MAX);
		goto out;
	}
	buf = xmalloc(CLIENT_SESSION_MAX + 1);
	while (len < CLIENT_SESSION_MAX && (n = read(fd, buf + len,
	    CLIENT_SESSION_MAX - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			xasprintf(cause, "cannot read %s: %s", s->path,
			    strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	if ((j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je)) == NULL ||
	    !json_is_object(j)) {
		/* Not je.text: it quotes the file, which holds tokens. */
		if (j == NULL)
			xasprintf(cause, "%s is damaged (not JSON: line %d, "
			    "column %d): remove it and sign in again", s->path,
			    je.line, je.column);
		else
			xasprintf(cause, "%s is damaged (not a JSON object): "
			    "remove it and sign in again", s->path);
		goto out;
	}
	v = json_integer_value(json_object_get(j, "version"));
	if (v != CLIENT_SESSION_VERSION) {
		xasprintf(cause, "%s is damaged or from another version "
		    "(version %lld, this program reads %d): remove it and sign "
		    "in again", s->path, (long long)v, CLIENT_SESSION_VERSION);
		goto out;
	}
	if (json_string_value(json_object_get(j, "proxy")) == NULL ||
	    client_url_normalize(json_string_value(json_object_get(j,
	    "proxy")), &base, NULL) == -1 ||
	    json_string_value(json_object_get(j, "access_token")) == NULL ||
	    !client_json_time(j, "expires_at", 1) ||
	    !client_json_time(j, "obtained_at", 1) ||
	    !client_json_time(j, "signed_in_at", 0) ||
	    (json_object_get(j, "pin") != NULL &&
	    !json_is_null(json_object_get(j, "pin")) &&
	    (!json_is_string(json_object_get(j, "pin")) ||
	    client_pin_parse(json_string_value(json_object_get(j, "pin")),
	    pinbuf) == -1)) ||
	    (json_object_get(j, "refresh_token") != NULL &&
	    !json_is_null(json_object_get(j, "refresh_token")) &&
	    !json_is_string(json_object_get(j, "refresh_token")))) {
		xasprintf(cause, "%s is damaged (a member is missing or of the "
		    "wrong type): remove it and sign in again", s->path);
		goto out;
	}
	free(s->proxy);
	s->proxy = base;
	base = NULL;
	freezero_str(s->access_token);
	freezero_str(s->refresh_token);
	free(s->ca_file);
	free(s->pin);
	free(s->sub);
	free(s->email);
	free(s->provider);
	free(s->flow);
	s->access_token = client_json_strdup(j, "access_token");
	s->pin = client_json_strdup(j, "pin");
	s->refresh_token = client_json_strdup(j, "refresh_token");
	s->ca_file = client_json_strdup(j, "ca_file");
	s->sub = client_json_strdup(j, "sub");
	s->email = client_json_strdup(j, "email");
	s->provider = client_json_strdup(j, "provider");
	s->flow = client_json_strdup(j, "flow");
	s->expires_at = (time_t)json_integer_value(json_object_get(j,
	    "expires_at"));
	s->obtained_at = (time_t)json_integer_value(json_object_get(j,
	    "obtained_at"));
	s->signed_in_at = (time_t)json_integer_value(json_object_get(j,
	    "signed_in_at"));
	s->file_dev = st.st_dev;
	s->file_ino = st.st_ino;
	s->file_mtime = CLIENT_MTIM(st);
	rc = 0;
out:
	free(base);
	json_decref(j);
	if (buf != NULL)
		freezero(buf, CLIENT_SESSION_MAX + 1);
	close(fd);
	return (rc);
}

/* fsync a directory so that a rename in it is on the disk. */
static void
client_fsync_dir(const char *path)
{
	char	*d = xstrdup(path), *slash;
	int	 fd;

	if ((slash = strrchr(d, '/')) != NULL)
		*slash = '\0';
	if ((fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(fd);
		close(fd);
	}
	free(d);
}

/*
 * Write the session: a new file (0600, created exclusively) beside the
 * old one, flushed, then renamed over it. A reader sees the old file or
 * the new one, never a part.
 */
int
client_session_write(struct client_session *s, char **cause)
{
	struct stat	 st;
	json_t		*j;
	char		*text, *tmp, rnd[17];
	size_t		 len, off = 0;
	ssize_t		 n;
	int		 fd, rc = -1;

	j = json_pack("{s:i,s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:I,s:I,s:I,s:s?,s:s?,"
	    "s:s?,s:s?}", "version", CLIENT_SESSION_VERSION, "profile",
	    s->profile, "proxy", s->proxy, "ca_file", s->ca_file, "pin", s->pin,
	    "access_token", s->access_token, "refresh_token",
	    s->refresh_token, "expires_at", (json_int_t)s->expires_at,
	    "obtained_at", (json_int_t)s->obtained_at, "signed_in_at",
	    (json_int_t)s->signed_in_at, "sub", s->sub, "email", s->email,
	    "provider", s->provider, "flow", s->flow);
	if (j == NULL)
		fatalx("%s: json_pack", __func__);
	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (text == NULL)
		fatalx("%s: json_dumps", __func__);
	len = strlen(text);
	random_id(rnd, sizeof rnd);
	xasprintf(&tmp, "%s.%s.tmp", s->path, rnd);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		xasprintf(cause, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	while (off < len) {
		if ((n = write(fd, text + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)n;
	}
	if (off < len || write(fd, "\n", 1) != 1 || fsync(fd) == -1) {
		xasprintf(cause, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) == -1 || rename(tmp, s->path) == -1) {
		xasprintf(cause, "cannot write %s: %s", s->path,
		    strerror(errno));
		unlink(tmp);
		goto out;
	}
	client_fsync_dir(s->path);
	/* What we wrote is what we know: not a change by another process. */
	if (stat(s->path, &st) == 0) {
		s->file_dev = st.st_dev;
		s->file_ino = st.st_ino;
		s->file_mtime = CLIENT_MTIM(st);
	}
	rc = 0;
out:
	free(tmp);
	freezero(text, len);
	return (rc);
}

/* Remove the session file (gone already is fine). */
int
client_session_remove(const struct client_session *s, char **cause)
{
	if (unlink(s->path) == -1 && errno != ENOENT) {
		xasprintf(cause, "cannot remove %s: %s", s->path,
		    strerror(errno));
		return (-1);
	}
	client_fsync_dir(s->path);
	return (0);
}

/* Has another process written (or removed) the file since it was read? */
int
client_session_changed(const struct client_session *s)
{
	struct stat	st;

	if (stat(s->path, &st) == -1)
		return (1);
	return (st.st_dev != s->file_dev || st.st_ino != s->file_ino ||
	    CLIENT_MTIM(st).tv_sec != s->file_mtime.tv_sec ||
	    CLIENT_MTIM(st).tv_nsec != s->file_mtime.tv_nsec);
}

void
client_session_clear(struct client_session *s)
{
	free(s->profile);
	free(s->path);
	free(s->lock_path);
	free(s->proxy);
	free(s->ca_file);
	free(s->pin);
	freezero_str(s->access_token);
	freezero_str(s->refresh_token);
	free(s->sub);
	free(s->email);
	free(s->provider);
	free(s->flow);
	memset(s, 0, sizeof *s);
}

/*
 * A TLS public key pin, "sha256//" and the standard base64 of the SHA-256
 * of the DER SubjectPublicKeyInfo (curl's --pinnedpubkey, RFC 7469's
 * pin-sha256), into 32 bytes. 0, or -1 if it is not one.
 */
int
client_pin_parse(const char *pin, uint8_t *out)
{
	size_t	n;

	if (strncmp(pin, "sha256//", 8) != 0 || strlen(pin + 8) != 44 ||
	    crypto_b64_decode(pin + 8, 44, out, 32, &n) == -1 || n != 32)
		return (-1);
	return (0);
}

/*
 * The CA file trusted for the proxy must not be changeable by others
 * (it is read again by every command): a regular file of the user's or
 * root's that only its owner may write. 0, or -1 with *cause.
 */
int
client_ca_file_check(const char *path, char **cause)
{
	struct stat	st;
	int		fd;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		xasprintf(cause, "the CA file %s: %s", path, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (st.st_uid != getuid() && st.st_uid != 0) ||
	    (st.st_mode & 022) != 0) {
		xasprintf(cause, "the CA file %s can be changed by other users "
		    "(or is not a regular file of yours or root's), so it is not "
		    "trusted: make it yours, mode 644 or stricter", path);
		close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

/* Two sessions of one proxy, trusted alike (URL, CA file, pin)? */
static int
client_streq_null(const char *a, const char *b)
{
	return ((a == NULL && b == NULL) || (a != NULL && b != NULL &&
	    strcmp(a, b) == 0));
}

int
client_session_same_proxy(const struct client_session *a,
    const struct client_session *b)
{
	return (client_streq_null(a->proxy, b->proxy) &&
	    client_streq_null(a->ca_file, b->ca_file) &&
	    client_streq_null(a->pin, b->pin));
}

/* Move src into dst (whose contents are freed); src is left empty. */
void
client_session_take(struct client_session *dst, struct client_session *src)
{
	client_session_clear(dst);
	*dst = *src;
	memset(src, 0, sizeof *src);
}

/* On stderr: how to sign in again for this profile. */
void
client_signin_hint(const struct client_session *s, const char *why)
{
	int	other = s->profile != NULL &&
		    strcmp(s->profile, CLIENT_PROFILE_DEFAULT) != 0;

	fprintf(stderr, "%s: %s; sign in again: %s login%s%s %s\n", BSP_NAME,
	    why, BSP_NAME, other ? " --profile " : "", other ? s->profile : "",
	    s->proxy != NULL ? s->proxy : "URL");
}

/*
 * Find and read the profile's session for a command; messages on stderr.
 * Returns a CLIENT_EXIT_* status.
 */
int
client_session_load(const struct client_opts *o, struct client_session *s)
{
	char	*cause = NULL;
	int	 rc;

	if (!client_profile_ok(o->profile)) {
		fprintf(stderr, "%s: --profile: letters, digits, _ and -, at "
		    "most %d\n", BSP_NAME, CLIENT_PROFILE_MAX);
		return (CLIENT_EXIT_USAGE);
	}
	rc = client_session_paths(s, o->profile, 0, &cause);
	if (rc == 0)
		rc = client_session_read(s, &cause);
	if (rc == -2) {
		free(cause);
		client_signin_hint(s, strcmp(o->profile,
		    CLIENT_PROFILE_DEFAULT) == 0 ? "not signed in" :
		    "this profile is not signed in");
		return (CLIENT_EXIT_SIGNIN);
	}
	if (rc == -1) {
		fprintf(stderr, "%s: %s\n", BSP_NAME, cause);
		free(cause);
		return (CLIENT_EXIT_LOCAL);
	}
	return (CLIENT_EXIT_OK);
}

/*
 * Take the profile's lock without waiting: 1 and *fd when taken, 0 when
 * another process holds it, -1 with *cause.
 */
int
client_lock_try(const struct client_session *s, int *fd, char **cause)
{
	int	lfd;

	*fd = -1;
	if ((lfd = open(s->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		xasprintf(cause, "cannot open the lock %s: %s", s->lock_path,
		    strerror(errno));
		return (-1);
	}
	if (client_check_file(lfd, s->lock_path, 0, cause) == -1) {
		close(lfd);
		return (-1);
	}
	if (flock(lfd, LOCK_EX | LOCK_NB) == -1) {
		close(lfd);
		if (errno == EWOULDBLOCK || errno == EINTR)
			return (0);
		xasprintf(cause, "cannot lock %s: %s", s->lock_path,
		    strerror(errno));
		return (-1);
	}
	*fd = lfd;
	return (1);
}

/* How long to wait for a profile's lock: CLIENT_LOCK_WAIT or BSP_LOCK_WAIT. */
int
client_lock_wait_secs(void)
{
	const char	*e = getenv("BSP_LOCK_WAIT");
	char		*end;
	long		 v;

	if (e == NULL || *e == '\0')
		return (CLIENT_LOCK_WAIT);
	v = strtol(e, &end, 10);
	if (*end != '\0' || v < 1 || v > 3600)
		return (CLIENT_LOCK_WAIT);
	return ((int)v);
}

void
client_unlock(int fd)
{
	if (fd != -1)
		close(fd);	/* drops the flock */
}

/*
 * How long before expiry a token is refreshed: five minutes (Claude Code
 * keeps a helper's answer that long), at most half its lifetime.
 */
time_t
client_margin(const struct client_session *s)
{
	time_t	life = s->expires_at - s->obtained_at;

	if (life <= 0)
		return (0);
	return (life / 2 < CLIENT_MARGIN_MAX ? life / 2 : CLIENT_MARGIN_MAX);
}

/* Is the access token good for longer than the margin (or than min)? */
int
client_token_fresh(const struct client_session *s, time_t now)
{
	return (s->access_token != NULL && s->expires_at - now >
	    client_margin(s));
}

/*
 * Take a token answer ({"access_token","expires_in","refresh_token"?})
 * into s. The expiry is counted on this machine's clock from expires_in,
 * so a clock that is off from the proxy's does not matter.
 */
int
client_session_from_grant(struct client_session *s, const json_t *j,
    char **cause)
{
	const char	*at, *rt;
	json_int_t	 in;

	at = json_string_value(json_object_get(j, "access_token"));
	rt = json_string_value(json_object_get(j, "refresh_token"));
	in = json_integer_value(json_object_get(j, "expires_in"));
	if (at == NULL || *at == '\0' || strlen(at) > 16384 ||
	    !json_is_integer(json_object_get(j, "expires_in")) || in <= 0 ||
	    (rt != NULL && strlen(rt) > 1024)) {
		xasprintf(cause, "the proxy's token answer lacks access_token "
		    "or expires_in");
		return (-1);
	}
	freezero_str(s->access_token);
	s->access_token = xstrdup(at);
	if (rt != NULL) {
		freezero_str(s->refresh_token);
		s->refresh_token = xstrdup(rt);
	}
	/* No overflow below: a year at most (no access token lives so long). */
	if (in > CLIENT_EXPIRES_IN_MAX)
		in = CLIENT_EXPIRES_IN_MAX;
	s->obtained_at = now_wall();
	s->expires_at = s->obtained_at + (time_t)in;
	return (0);
}

/*
 * A proxy URL as given on the command line, into a base URL without a
 * trailing slash: https://host[:port][/path], or http:// to a loopback
 * host. A bare host name means https. No query, fragment or user info.
 */
int
client_url_normalize(const char *in, char **out, char **cause)
{
	char		*u, *host, *end;
	size_t		 len;

	*out = NULL;
	if (strstr(in, "://") == NULL)
		xasprintf(&u, "https://%s", in);
	else
		u = xstrdup(in);
	len = strlen(u);
	while (len > 0 && u[len - 1] == '/')
		u[--len] = '\0';
	if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0) {
		if (cause != NULL)
			xasprintf(cause, "%s: the proxy's URL must be https:// "
			    "(or http:// to a loopback address)", in);
		free(u);
		return (-1);
	}
	host = strstr(u, "://") + 3;
	if (*host == '\0' || *host == '/' || strpbrk(u, "?#@ \t\r\n\"<>\\") !=
	    NULL || !str_is_printable(u, len) || len > 1024) {
		if (cause != NULL)
			xasprintf(cause, "%s is not a proxy URL like "
			    "https://proxy.example.com", in);
		free(u);
		return (-1);
	}
	if (strncmp(u, "http://", 7) == 0) {
		char	*h = xstrdup(host), *p;

		if ((end = strchr(h, '/')) != NULL)
			*end = '\0';
		if (h[0] == '[') {
			if ((p = strchr(h, ']')) != NULL)
				p[1] = '\0';
		} else if ((p = strrchr(h, ':')) != NULL)
			*p = '\0';
		if (!url_is_loopback_host(h)) {
			if (cause != NULL)
				xasprintf(cause, "%s: plain http is only for a "
				    "proxy on this machine (127.0.0.1, ::1, "
				    "localhost); use https://", in);
			free(h);
			free(u);
			return (-1);
		}
		free(h);
	}
	*out = u;
	return (0);
}

/*
 * A Host header that names this machine: 127.0.0.0/8, [::1] or
 * localhost, with or without a port. Anything else may be a DNS
 * rebinding: a web page whose name was made to resolve to 127.0.0.1.
 */
int
client_host_loopback(const char *h)
{
	char		 host[256];
	const char	*rest, *d;
	size_t		 len;

	if (h == NULL || strlen(h) == 0 || strlen(h) >= sizeof host)
		return (0);
	if (h[0] == '[') {
		if ((rest = strchr(h, ']')) == NULL)
			return (0);
		rest++;
	} else if ((rest = strchr(h, ':')) == NULL)
		rest = h + strlen(h);
	len = (size_t)(rest - h);
	if (*rest != '\0') {
		if (*rest != ':' || rest[1] == '\0')
			return (0);
		for (d = rest + 1; *d != '\0'; d++)
			if (*d < '0' || *d > '9')
				return (0);
	}
	memcpy(host, h, len);
	host[len] = '\0';
	/* A name that is not an address: only "localhost" itself. */
	if (strcasecmp(host, "localhost") != 0 && host[0] != '[' &&
	    strspn(host, "0123456789.") != len)
		return (0);
	return (url_is_loopback_host(host));
}

/* Is there a browser to open here: $BROWSER, macOS, or a display? */
int
client_browser_available(void)
{
	const char	*b = getenv("BROWSER");

	if (b != NULL && *b != '\0')
		return (1);
#ifdef __APPLE__
	return (1);
#else
	return ((getenv("DISPLAY") != NULL && *getenv("DISPLAY") != '\0') ||
	    (getenv("WAYLAND_DISPLAY") != NULL &&
	    *getenv("WAYLAND_DISPLAY") != '\0'));
#endif
}

/*
 * Open url in the user's browser: $BROWSER (a command, the URL as its
 * argument), else open(1) on macOS, else xdg-open(1). Not waited for:
 * the child is forked twice so that nothing is left to reap. Its output
 * goes to /dev/null. Returns 0 when the opener was started.
 */
int
client_browser_open(const char *url)
{
	const char	*b = getenv("BROWSER");
	pid_t		 pid, grand;
	int		 status, fd;

	if ((pid = fork()) == -1)
		return (-1);
	if (pid == 0) {
		if ((grand = fork()) != 0)
			_exit(grand == -1 ? 1 : 0);
		if ((fd = open("/dev/null", O_RDWR)) != -1) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		setsid();
		if (b != NULL && *b != '\0')
			execl("/bin/sh", "sh", "-c", "$BROWSER \"$1\"", "sh",
			    url, (char *)NULL);
#ifdef __APPLE__
		execlp("open", "open", url, (char *)NULL);
#else
		execlp("xdg-open", "xdg-open", url, (char *)NULL);
#endif
		_exit(127);
	}
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR)
			return (-1);
	}
	return (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1);
}

/*
 * The relay's secret: the first segment of every path the relay takes,
 * kept in the client directory (relay-secret, 0600, ours), made on first
 * use with create. Returns 0 and *out (free it with freezero_str), -2
 * when there is none yet and create is 0, -1 with *cause.
 */
int
client_relay_secret(char **out, int create, char **cause)
{
	char	*d = NULL, *path = NULL, *s = NULL;
	char	 buf[CLIENT_RELAY_SECRET_LEN + 2];
	ssize_t	 n;
	size_t	 len = 0;
	int	 fd = -1, rc = -1;

	*out = NULL;
	if ((rc = client_dir(&d, create, cause)) != 0)
		return (rc);
	rc = -1;
	xasprintf(&path, "%s/%s", d, CLIENT_RELAY_SECRET_FILE);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 &&
	    errno == ENOENT) {
		if (!create) {
			xasprintf(cause, "no %s yet", path);
			rc = -2;
			goto out;
		}
		s = crypto_new_secret("");
		if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600)) != -1) {
			len = strlen(s);
			if (write(fd, s, len) != (ssize_t)len ||
			    write(fd, "\n", 1) != 1 || fsync(fd) == -1) {
				xasprintf(cause, "cannot write %s: %s", path,
				    strerror(errno));
				close(fd);
				fd = -1;
				unlink(path);
				goto out;
			}
			close(fd);
			client_fsync_dir(path);
			*out = s;
			s = NULL;
			rc = 0;
			fd = -1;
			goto out;
		}
		freezero_str(s);
		s = NULL;
		if (errno != EEXIST) {
			xasprintf(cause, "cannot create %s: %s", path,
			    strerror(errno));
			goto out;
		}
		/* Another process made it a moment ago: read that one. */
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd == -1) {
		xasprintf(cause, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (client_check_file(fd, path, 0, cause) == -1)
		goto out;
	while (len < sizeof buf && (n = read(fd, buf + len,
	    sizeof buf - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			xasprintf(cause, "cannot read %s: %s", path,
			    strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len != CLIENT_RELAY_SECRET_LEN || strspn(buf, "ABCDEFGHIJKLMNOP"
	    "QRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") < len) {
		xasprintf(cause, "%s is damaged: remove it, then run \"%s "
		    "setup claude-code --mode bedrock\" again if you use it",
		    path, BSP_NAME);
		goto out;
	}
	*out = xmalloc(len + 1);
	memcpy(*out, buf, len);
	(*out)[len] = '\0';
	rc = 0;
out:
	explicit_bzero(buf, sizeof buf);
	if (fd != -1)
		close(fd);
	freezero_str(s);
	free(path);
	free(d);
	return (rc);
}

/*
 * Is a request's path one the relay carries? uri is as received:
 * /SECRET/model/ID/OPERATION or /SECRET/guardrail/ID/version/V/apply,
 * with an optional query (which the caller drops: no relayed operation
 * has one). Returns 1 with *rest pointing at what follows the secret,
 * 0 when the secret is missing or wrong (compared in constant time),
 * -1 when the path is not one the relay carries.
 */
int
client_relay_route(const char *uri, const char *secret, const char **rest)
{
	static const char *const ops[] = {
		"invoke", "invoke-with-response-stream", "converse",
		"converse-stream", "count-tokens", NULL,
	};
	const char	*p, *seg[8];
	char		 first[CLIENT_RELAY_SECRET_LEN + 1];
	size_t		 seglen[8], n = 0, len, i;
	int		 ok;

	*rest = NULL;
	if (uri == NULL || uri[0] != '/')
		return (0);
	len = strcspn(uri + 1, "/?");
	/* A wrong length gets the same constant-time compare. */
	memset(first, 0, sizeof first);
	if (len <= CLIENT_RELAY_SECRET_LEN)
		memcpy(first, uri + 1, len);
	ok = crypto_streq(first, secret) && len == strlen(secret);
	explicit_bzero(first, sizeof first);
	if (!ok)
		return (0);
	p = uri + 1 + len;
	*rest = p;
	/* Split the rest of the path (up to any query) into segments. */
	while (*p == '/') {
		p++;
		if (n == nitems(seg))
			return (-1);
		seg[n] = p;
		seglen[n] = strcspn(p, "/?");
		if (seglen[n] == 0 || (seglen[n] == 1 && p[0] == '.') ||
		    (seglen[n] == 2 && p[0] == '.' && p[1] == '.'))
			return (-1);
		p += seglen[n++];
	}
	if (*p != '\0' && *p != '?')
		return (-1);
#define SEG_IS(k, w)	(seglen[k] == strlen(w) && \
	    strncmp(seg[k], (w), seglen[k]) == 0)
	if (n == 3 && SEG_IS(0, "model")) {
		for (i = 0; ops[i] != NULL; i++)
			if (SEG_IS(2, ops[i]))
				return (1);
		return (-1);
	}
	if (n == 5 && SEG_IS(0, "guardrail") && SEG_IS(2, "version") &&
	    SEG_IS(4, "apply"))
		return (1);
#undef SEG_IS
	return (-1);
}
