/*
 * client.h: the laptop side of the same binary (bedrock-sso-proxy login,
 * token, logout, status, relay, setup, aws-credentials), shared by the
 * client*.c files. None of it reads the daemon's configuration.
 *
 * A session is one JSON file per profile in the client directory
 * ($XDG_CONFIG_HOME/bedrock-sso-proxy, or ~/.config/bedrock-sso-proxy;
 * ~/Library/Application Support/bedrock-sso-proxy on macOS when
 * XDG_CONFIG_HOME is not set), mode 0600 in a 0700 directory owned by
 * the user. It is replaced atomically (a new file renamed over it) and
 * changed only under the profile's lock file, so that concurrent
 * processes never both spend one refresh token.
 */

#ifndef CLIENT_H
#define CLIENT_H

#include <sys/types.h>

#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "http-client.h"

/* Exit statuses of the client commands (bedrock-sso-proxy(8)). */
#define CLIENT_EXIT_OK		0
#define CLIENT_EXIT_USAGE	1	/* bad arguments */
#define CLIENT_EXIT_LOCAL	2	/* a file here: refused, corrupt, I/O */
#define CLIENT_EXIT_SIGNIN	3	/* not signed in, or the session ended */
#define CLIENT_EXIT_PROXY	4	/* the proxy is unreachable or failing */
#define CLIENT_EXIT_ABSENT	5	/* the proxy does not offer this */

#define CLIENT_DIR_NAME		"bedrock-sso-proxy"
#define CLIENT_PROFILE_DEFAULT	"default"
#define CLIENT_PROFILE_MAX	64
#define CLIENT_SESSION_MAX	(64 * 1024)	/* a session file's ceiling */
#define CLIENT_BODY_MAX		(1024 * 1024)	/* a JSON answer's ceiling */
/*
 * Seconds to wait for the profile's lock: longer than a refresh can take
 * (client_loop_init(): 120 s in all), so that a slow refresh by another
 * process is waited for, not given up on. BSP_LOCK_WAIT overrides it.
 */
#define CLIENT_LOCK_WAIT	150
#define CLIENT_MARGIN_MAX	300	/* refresh this long before expiry */
#define CLIENT_DEVICE_ID	"bedrock-sso-proxy-cli"
#define CLIENT_SESSION_VERSION	1
#define CLIENT_EXPIRES_IN_MAX	(366 * 86400)	/* a longer expires_in is cut */
#define CLIENT_TIME_MAX		253402300799LL	/* 9999-12-31: times in a file */
#define CLIENT_RELAY_SECRET_FILE "relay-secret"
#define CLIENT_RELAY_SECRET_LEN	43	/* 32 random bytes, base64url */
#define CLIENT_RELAY_DEFAULT	"127.0.0.1:8377"

/* One signed-in profile, as its file holds it. */
struct client_session {
	char		*profile;
	char		*path;		/* the session file */
	char		*lock_path;
	char		*proxy;		/* base URL, no trailing slash */
	char		*ca_file;	/* extra trust for the proxy, or NULL */
	char		*pin;		/* "sha256//BASE64" of its key, or NULL */
	char		*access_token;
	char		*refresh_token;
	time_t		 expires_at;	/* this machine's clock */
	time_t		 obtained_at;	/* this machine's clock */
	time_t		 signed_in_at;
	char		*sub;
	char		*email;
	char		*provider;
	char		*flow;		/* "browser" or "device" */
	/* The file as read: a change means another process wrote it. */
	dev_t		 file_dev;
	ino_t		 file_ino;
	struct timespec	 file_mtime;
};

/* An answer from the proxy, buffered. */
struct client_answer {
	enum hc_error	 error;
	char		 message[256];	/* the network failure, no secrets */
	int		 status;
	json_t		*json;		/* the body if it was a JSON value */
	char		*body;		/* the body, NUL-terminated */
	size_t		 len;
	char		*www_auth;	/* WWW-Authenticate, if any */
};

/* Options every client command takes. */
struct client_opts {
	const char	*profile;
};

/* client.c: directories, profiles, session files, the lock. */
int		 client_profile_ok(const char *);
char		*client_dir_default(const char *, const char *, int);
int		 client_dir(char **, int, char **);
int		 client_check_file(int, const char *, int, char **);
int		 client_session_paths(struct client_session *, const char *,
		     int, char **);
int		 client_session_read(struct client_session *, char **);
int		 client_session_read_any_mode(struct client_session *, int *,
		     char **);
int		 client_session_write(struct client_session *, char **);
int		 client_session_remove(const struct client_session *,
		     char **);
int		 client_session_changed(const struct client_session *);
void		 client_session_clear(struct client_session *);
void		 client_session_take(struct client_session *,
		     struct client_session *);
int		 client_session_load(const struct client_opts *,
		     struct client_session *);
int		 client_lock_try(const struct client_session *, int *,
		     char **);
int		 client_lock_wait_secs(void);
void		 client_unlock(int);
time_t		 client_margin(const struct client_session *);
int		 client_token_fresh(const struct client_session *, time_t);
int		 client_session_from_grant(struct client_session *,
		     const json_t *, char **);
int		 client_url_normalize(const char *, char **, char **);
void		 client_signin_hint(const struct client_session *,
		     const char *);
int		 client_host_loopback(const char *);
int		 client_browser_available(void);
int		 client_browser_open(const char *);
int		 client_relay_secret(char **, int, char **);
int		 client_relay_route(const char *, const char *, const char **);
int		 client_session_same_proxy(const struct client_session *,
		     const struct client_session *);
int		 client_pin_parse(const char *, uint8_t *);
int		 client_ca_file_check(const char *, char **);

/* client-relay.c */
char		*client_relay_url(const char *, int, const char *);

/* client-net.c: the loop, the proxy's HTTP API, the refresh. */
int		 client_loop_init(const struct client_session *, char **);
void		 client_loop_free(void);
struct hc_target *client_target(const struct client_session *, char **);
void		 client_answer_clear(struct client_answer *);
int		 client_call(struct hc_target *, const char *, const char *,
		     const char *, const char *, const char *, size_t,
		     struct client_answer *);
struct hc_req	*client_call_start(struct hc_target *, const char *,
		     const char *, const char *, const char *, const char *,
		     size_t, void (*)(struct client_answer *, void *), void *);
const char	*client_oauth_error(const struct client_answer *);
int		 client_answer_exit(const struct client_answer *, const char *,
		     const char *, char **);
char		*client_escape(const char *);
struct evhttp	*client_listen(const char *, const char *, int *, char **);
int		 client_lock_wait(const struct client_session *, int *,
		     char **);
char		*client_json_text(json_t *);

/*
 * The refresh: lock, re-read, rotate unless another process just did,
 * write, unlock. The callback gets a CLIENT_EXIT_* status and a reason.
 */
struct client_refresh;
struct client_refresh *client_refresh_start(struct client_session *, int,
		     void (*)(int, const char *, void *), void *);
void		 client_refresh_cancel(struct client_refresh *);
int		 client_refresh_wait(struct client_session *, int, char **);

#endif /* CLIENT_H */
