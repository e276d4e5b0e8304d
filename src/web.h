/*
 * web.h: the HTML pages (login, success, error, the device flow's, the
 * self-service page) and their static assets, served from the binary. The
 * render functions write into an evbuffer, so that tests can check pages
 * without a server and the routes reply with them.
 */

#ifndef WEB_H
#define WEB_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

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
	int		 self_service;		/* link the self-service page */
	json_t		*me;			/* GET /auth/me's answer, or NULL */
};

/* The device flow's verification page. */
struct web_device {
	const char			*user_code;	/* pre-filled, or NULL */
	const char			*csrf;		/* the form's token */
	const struct web_provider	*pv;
	size_t				 npv;
	const char			*notice;	/* what went wrong */
};

/*
 * The self-service page (route-self.c): who, its form token, what just
 * happened, and the lists as the identity layer gives them (usage_by_day,
 * budget_me, apikey_list, tokens_sessions_list); amounts of money come as
 * text (dollars with six decimals).
 */
struct web_self {
	const char	*user;		/* email or id */
	const char	*name;		/* may be NULL */
	const char	*csrf;		/* every form's token */
	const char	*notice;	/* what happened, or NULL */
	int		 notice_error;	/* ... and it went wrong */
	const char	*new_key;	/* a key just made: shown once */
	json_t		*new_key_info;	/* its id, name, hint, ... */
	json_t		*usage;		/* rows: day, model, requests, ...,
					   cost_usd (text) or none */
	const char	*usage_cost;	/* their total cost, dollars */
	long long	 usage_days;
	json_t		*me;		/* what GET /auth/me answers: today's
					   usage and the budgets */
	json_t		*keys;		/* NULL: API keys are off */
	long long	 key_default_ttl;	/* api_keys.default_ttl */
	long long	 key_max_ttl;		/* api_keys.max_ttl */
	json_t		*sessions;
	const char	*sid;		/* this browser's session */
	time_t		 expires;	/* this page's session ends */
	time_t		 now;
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
int		 web_render_self(struct evbuffer *, const struct web_self *);
int		 web_render_self_out(struct evbuffer *, const char *,
		     const char *);
void		 web_human_delta(long long, char *, size_t);
char		*web_escape(const char *);
const char	*web_static(const char *, size_t, const char **, size_t *,
		     const char **);

#endif /* WEB_H */
