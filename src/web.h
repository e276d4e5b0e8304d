/*
 * web.h: the HTML pages (login, success, error, the device flow's) and
 * their static assets, served from the binary. The render functions write
 * into an evbuffer, so that tests can check pages without a server and
 * the routes reply with them.
 */

#ifndef WEB_H
#define WEB_H

#include <stddef.h>
#include <time.h>

struct evbuffer;

/* Ceilings, in bytes before escaping; longer text is cut with "...". */
#define WEB_NAME_MAX		128	/* provider name and display name */
#define WEB_FIELD_MAX		256	/* user, name, region, model, URL */
#define WEB_NOTICE_MAX		1024
#define WEB_TITLE_MAX		200
#define WEB_TEXT_MAX		2048	/* what happened / what to do */
#define WEB_TOKEN_MAX		16384	/* longer tokens are refused, not cut */
#define WEB_PROVIDERS_MAX	64
#define WEB_PAGE_MAX		(1024 * 1024)

struct web_provider {
	const char	*name;		/* [a-z0-9_-]{1,32}, used in the URL */
	const char	*display_name;
};

struct web_tokens {
	const char	*access_token;
	const char	*refresh_token;
	long long	 expires_in;		/* seconds */
	time_t		 expires_at;		/* 0: now + expires_in */
	time_t		 session_expires_at;	/* session end; 0: not shown */
	const char	*user;			/* email or subject */
	const char	*name;			/* may be NULL */
	const char	*provider;		/* display name */
	const char	*public_url;		/* no trailing slash */
	const char	*region;		/* aws.region */
	const char	*example_model;
};

/* The device flow's verification page. */
struct web_device {
	const char			*user_code;	/* pre-filled, or NULL */
	const char			*csrf;		/* the form's token */
	const struct web_provider	*pv;
	size_t				 npv;
	const char			*notice;	/* what went wrong */
};

/* Renderers: 0, or -1 if the page cannot be built (buffer untouched). */
int		 web_render_login(struct evbuffer *,
		     const struct web_provider *, size_t, const char *);
int		 web_render_success(struct evbuffer *,
		     const struct web_tokens *, time_t);
int		 web_render_error(struct evbuffer *, int, const char *,
		     const char *, const char *);
int		 web_render_device(struct evbuffer *, const struct web_device *);
int		 web_render_device_continue(struct evbuffer *, const char *,
		     const char *);
int		 web_render_device_done(struct evbuffer *, const char *,
		     const char *, const char *);
void		 web_human_delta(long long, char *, size_t);
char		*web_escape(const char *);
const char	*web_static(const char *, size_t, const char **, size_t *,
		     const char **);

#endif /* WEB_H */
